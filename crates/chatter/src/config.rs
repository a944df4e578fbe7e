//! Configuration: defaults, then `chatter.toml` (or `--config`), then `CHATTER_*` environment
//! variables (nested keys with `__`, e.g. `CHATTER_SMTP__HOST`), then command-line flags.
//! `DATABASE_URL` is honoured as well. Every key is documented in the README.

use chatter_core::mailer::SmtpConfig;
use chatter_core::Secret;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// Address to listen on.
    pub bind: String,
    /// Where the SQLite database, master key, backups, outbox and files live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: SQLite in the data directory.
    pub database_url: Option<String>,
    /// The address people reach Chatter at (for links in mail). Default: `http://<bind>`.
    pub public_url: Option<String>,
    /// 64 hex characters; default: generated into `<data_dir>/master.key`.
    pub master_key: Option<Secret>,
    /// `text` or `json`.
    pub log_format: String,
    /// Mark cookies Secure. Default: on when `public_url` is https.
    pub secure_cookies: Option<bool>,
    /// Trust `X-Forwarded-For` (behind a reverse proxy).
    pub trust_proxy: bool,
    /// Address blocks of the proxies whose `X-Forwarded-For` entries are believed.
    pub trusted_proxies: Vec<String>,
    pub body_limit_bytes: usize,
    /// SQLite only: read-only connections beside the writer for pages and live streams
    /// (0: none, everything shares the writer's one connection).
    pub sqlite_readers: u32,
    pub backup_keep: usize,
    pub pg_bin_dir: Option<PathBuf>,
    pub smtp: Option<SmtpConfig>,
    pub telegram_login: Option<TelegramLogin>,
    pub worker: WorkerSection,
    pub telegram: TelegramSection,
    pub amocrm: Option<chatter_core::crm::AmoConfig>,
    /// Public HTTPS base URL every messenger can reach for webhooks (VK, Max, Avito; Telegram
    /// too unless `telegram.webhook_base` is set); unset: those sources are polled.
    #[serde(default)]
    pub public_webhook_base: Option<String>,
    pub vk: VkSection,
    pub max: MaxSection,
    pub avito: AvitoSection,
    pub whatsapp: WhatsappSection,
    pub sms: SmsSection,
    /// Telegram personal accounts (kind 2).
    #[serde(default)]
    pub telegram_personal: TelegramPersonalSection,
    /// Let URLs people type (an API source's webhook) reach loopback and private-network
    /// addresses. Off: only internet addresses (the guard against request forgery).
    pub allow_private_targets: bool,
    /// How many days a signed link to a stored file works (the files amoCRM downloads from
    /// Chatter, the links in deal notes and in SMS). Default 7.
    pub media_link_days: u32,
    /// HTTPS served by Chatter itself.
    #[serde(default)]
    pub tls: TlsSection,
    /// Where the files customers send are kept: `local`, `postgres` or `s3`.
    #[serde(default)]
    pub blobs: chatter_core::blobs::BlobsConfig,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct TlsSection {
    /// PEM certificate chain; with `key`, `bind` serves HTTPS.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// A plain-HTTP listener (`0.0.0.0:80`) that redirects to HTTPS and answers ACME HTTP-01.
    pub http_bind: Option<String>,
    /// Certificates from an ACME CA instead of files.
    pub acme: Option<AcmeSection>,
}

impl TlsSection {
    /// Whether `bind` serves HTTPS.
    pub fn enabled(&self) -> bool {
        self.cert.is_some() || self.key.is_some() || self.acme.is_some()
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct AcmeSection {
    pub domains: Vec<String>,
    pub email: String,
    #[serde(default = "lets_encrypt")]
    pub directory: String,
    /// An extra root CA for the ACME server's own HTTPS (a test CA).
    pub ca_pem: Option<PathBuf>,
    #[serde(default = "thirty")]
    pub renew_before_days: u32,
}

fn lets_encrypt() -> String {
    chatter_tls::acme::LETS_ENCRYPT.into()
}

fn thirty() -> u32 {
    30
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct WhatsappSection {
    /// WhatsApp Cloud API (Graph API) base URL, without the version.
    pub api_base: String,
    /// The Graph API version every call names (`v23.0`).
    pub api_version: String,
}

/// `[telegram_personal]`: where personal accounts' Telegram is reached.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct TelegramPersonalSection {
    /// The base URL of a gateway speaking the fake's JSON protocol (`chatter demo`, tests).
    /// Unset: MTProto itself, which this build does not include, so accounts cannot connect.
    #[serde(default)]
    pub gateway_url: Option<String>,
    /// Private chats with other businesses' bots become conversations too (default: ignored).
    #[serde(default)]
    pub include_bots: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SmsSection {
    /// The SMS gateway's API base URL (Sipout's user API).
    pub api_base: String,
    /// SMSC.ru's API root.
    #[serde(default = "smsc_base")]
    pub smsc_base: String,
    /// SMS.ru's API root.
    #[serde(default = "smsru_base")]
    pub smsru_base: String,
    /// SMS Aero's gate.
    #[serde(default = "smsaero_base")]
    pub smsaero_base: String,
}

fn smsc_base() -> String {
    chatter_channels::sms::SMSC_BASE_URL.into()
}

fn smsru_base() -> String {
    chatter_channels::sms::SMSRU_BASE_URL.into()
}

fn smsaero_base() -> String {
    chatter_channels::sms::SMSAERO_BASE_URL.into()
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct VkSection {
    /// VK API base URL.
    pub api_base: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MaxSection {
    /// Max Bot API base URL.
    pub api_base: String,
    /// A PEM file with the extra root CA Max's host is signed by (the Russian Ministry of
    /// Digital Development root).
    #[serde(default)]
    pub extra_ca_pem: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AvitoSection {
    /// Avito API base URL.
    pub api_base: String,
    /// Seconds between two polls of an account when there is no public webhook URL.
    pub poll_interval_secs: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct TelegramSection {
    /// Bot API base URL.
    pub api_base: String,
    /// Public HTTPS base URL Telegram can reach (webhooks); unset: long polling.
    pub webhook_base: Option<String>,
    pub poll_timeout_secs: u32,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TelegramLogin {
    pub bot_token: Secret,
    pub bot_username: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct WorkerSection {
    pub concurrency: usize,
    pub lease_secs: u64,
    pub shutdown_timeout_secs: u64,
}

#[derive(Serialize)]
struct Defaults {
    bind: &'static str,
    data_dir: &'static str,
    log_format: &'static str,
    trust_proxy: bool,
    trusted_proxies: Vec<&'static str>,
    body_limit_bytes: usize,
    sqlite_readers: u32,
    backup_keep: usize,
    worker: WorkerSection,
    telegram: TelegramSection,
    vk: VkSection,
    max: MaxSection,
    avito: AvitoSection,
    whatsapp: WhatsappSection,
    sms: SmsSection,
    allow_private_targets: bool,
    media_link_days: u32,
}

impl Config {
    /// Loads from the file (if it exists), the environment, and the given overrides; also
    /// returns the merged sources, for unknown keys and the effective configuration.
    pub fn load(
        file: Option<&Path>,
        bind: Option<&str>,
        data_dir: Option<&Path>,
    ) -> Result<(Config, Figment), String> {
        let defaults = Defaults {
            bind: "127.0.0.1:8080",
            data_dir: "./data",
            log_format: "text",
            trust_proxy: false,
            trusted_proxies: vec!["127.0.0.0/8", "::1/128"],
            body_limit_bytes: 1024 * 1024,
            sqlite_readers: 4,
            backup_keep: 7,
            worker: WorkerSection {
                concurrency: 8,
                lease_secs: 10,
                shutdown_timeout_secs: 20,
            },
            telegram: TelegramSection {
                api_base: "https://api.telegram.org".into(),
                webhook_base: None,
                poll_timeout_secs: 25,
            },
            vk: VkSection {
                api_base: "https://api.vk.com".into(),
            },
            max: MaxSection {
                api_base: "https://platform-api2.max.ru".into(),
                extra_ca_pem: None,
            },
            avito: AvitoSection {
                api_base: "https://api.avito.ru".into(),
                poll_interval_secs: 15,
            },
            whatsapp: WhatsappSection {
                api_base: chatter_channels::whatsapp::DEFAULT_API_BASE.into(),
                api_version: chatter_channels::whatsapp::DEFAULT_API_VERSION.into(),
            },
            sms: SmsSection {
                api_base: chatter_channels::sms::SIPOUT_BASE_URL.into(),
                smsc_base: smsc_base(),
                smsru_base: smsru_base(),
                smsaero_base: smsaero_base(),
            },
            allow_private_targets: false,
            media_link_days: 7,
        };
        let path = file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("chatter.toml"));
        if file.is_some() && !path.exists() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        let mut fig = Figment::from(Serialized::defaults(defaults)).merge(Toml::file(&path));
        if let Ok(url) = std::env::var("DATABASE_URL") {
            fig = fig.merge(("database_url", url));
        }
        fig = fig.merge(Env::prefixed("CHATTER_").split("__"));
        if let Some(b) = bind {
            fig = fig.merge(("bind", b));
        }
        if let Some(d) = data_dir {
            fig = fig.merge(("data_dir", d.display().to_string()));
        }
        let cfg = fig
            .extract()
            .map_err(|e| format!("configuration error: {e}"))?;
        Ok((cfg, fig))
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| chatter_store::sqlite_url_in(&self.data_dir))
    }

    /// The blob store in use: `blobs.store`, else `postgres` with a PostgreSQL database (every
    /// node reads it), else `local`.
    pub fn blob_store(&self) -> chatter_core::blobs::StoreKind {
        self.blobs
            .effective(self.database_url().starts_with("postgres"))
    }

    /// The configured public URL, else the address served: `https://` with TLS (the first
    /// ACME domain, with the port unless it is 443), else `http://<bound>`.
    pub fn public_url(&self, bound: &str) -> String {
        if let Some(u) = &self.public_url {
            return u.clone();
        }
        if !self.tls.enabled() {
            return format!("http://{bound}");
        }
        let port = bound.rsplit(':').next().unwrap_or("443");
        let host = match self.tls.acme.as_ref().and_then(|a| a.domains.first()) {
            Some(d) => d.clone(),
            None => bound[..bound.len() - port.len()]
                .trim_end_matches(':')
                .to_string(),
        };
        if port == "443" {
            format!("https://{host}")
        } else {
            format!("https://{host}:{port}")
        }
    }
}
