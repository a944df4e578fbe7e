//! Per-kind dispatch: the one place that knows which provider client speaks for a source of a
//! given kind, how such a source is set up (webhook when a public base URL is configured,
//! polling otherwise), how it is polled once, how one part of a reply goes out, and which
//! refusals mean the customer blocked us. Everything else in the message path (`runner`,
//! `inbox`, the web hooks) is kind-blind and goes through here.
//!
//! What every kind does alike (text limit, sending a part, download, blocked refusals) goes
//! through `chatter_channels::Connector`; a new kind is a new `SourceClient` variant, its arm
//! in `connector` and in the set-up, stop and poll `match`es below (they read and write the
//! source's stored settings); the compiler lists every place to fill in.

pub mod model;

use crate::{Core, CoreConfig, CoreError, Result};
use chatter_channels::avito::{AvitoClient, PollCursor};
use chatter_channels::max::MaxClient;
use chatter_channels::sms::{SmsClient, SmsGatewayConfig};
use chatter_channels::telegram::{parse_update, TelegramClient};
use chatter_channels::vk::{LongPollServer, VkClient};
use chatter_channels::whatsapp::{MediaKind, MediaRef, WhatsAppClient};
use chatter_channels::{Channel, ChannelError, Connector, Download, InboundEvent};
use chatter_domain::SourceKind;
use chatter_store::entity::source;
use model::SourceSettings;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

/// The kinds that run as sources today (the Sources page offers these).
pub const SUPPORTED: [SourceKind; 6] = [
    SourceKind::TelegramBot,
    SourceKind::VkBot,
    SourceKind::MaxBot,
    SourceKind::Avito,
    SourceKind::Whatsapp,
    SourceKind::SipoutSms,
];

/// Longest reply sent as one SMS request (the gateway splits it into concatenated parts; the
/// reply box shows how many before sending).
pub const SMS_MAX_TEXT: usize = chatter_channels::sms::MAX_TEXT;

/// Provider clients that must outlive one call: Max's HTTP client with its extra root CA, and
/// Avito clients, whose access token is cached per account (a fresh client per job would ask
/// Avito for a token every time).
pub struct ClientCache {
    max_http: Option<reqwest::Client>,
    avito: Mutex<HashMap<Uuid, AvitoClient>>,
}

impl ClientCache {
    pub(crate) fn new(cfg: &CoreConfig) -> Self {
        let max_http = cfg.kinds.max.extra_ca_pem.as_ref().and_then(|path| {
            let built = std::fs::read(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|pem| {
                    chatter_channels::max::http_client_with_extra_ca(
                        &pem,
                        Duration::from_secs(90),
                    )
                });
            match built {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "max.extra_ca_pem is unusable; Max calls use the built-in roots only");
                    None
                }
            }
        });
        ClientCache {
            max_http,
            avito: Mutex::new(HashMap::new()),
        }
    }
}

impl ClientCache {
    /// Drops the cached client of a source whose credentials changed.
    pub(crate) fn forget(&self, id: Uuid) {
        if let Ok(mut m) = self.avito.lock() {
            m.remove(&id);
        }
    }
}

impl Core {
    /// The HTTP client for Max (with `max.extra_ca_pem` trusted when configured).
    pub fn max_http(&self) -> reqwest::Client {
        self.clients
            .max_http
            .clone()
            .unwrap_or_else(|| self.http.clone())
    }
}

/// A source's provider client.
pub enum SourceClient {
    Telegram(TelegramClient),
    Vk(VkClient),
    Max(MaxClient),
    Avito(AvitoClient),
    WhatsApp(WhatsAppClient),
    // Boxed: the gateway mapping makes it several times larger than the other clients.
    Sms(Box<SmsClient>),
}

/// Builds the client of `src` from its kind, its decrypted credentials and the configured base
/// URLs.
pub fn client_for(core: &Core, src: &source::Model) -> Result<SourceClient> {
    let secret = model::secret_of(core, src)?;
    let cfg = &core.config;
    match SourceKind::from_id(src.kind) {
        Some(SourceKind::TelegramBot) => Ok(SourceClient::Telegram(TelegramClient::new(
            core.http.clone(),
            &cfg.kinds.telegram.api_base,
            &secret.token,
        ))),
        Some(SourceKind::VkBot) => {
            let group_id = model::settings_of(src)
                .bot_id
                .parse()
                .map_err(|_| CoreError::Internal("VK source without a community id".into()))?;
            Ok(SourceClient::Vk(VkClient::new(
                core.http.clone(),
                &cfg.kinds.vk.api_base,
                &secret.token,
                group_id,
            )))
        }
        Some(SourceKind::MaxBot) => Ok(SourceClient::Max(MaxClient::new(
            core.max_http(),
            &cfg.kinds.max.api_base,
            &secret.token,
        ))),
        Some(SourceKind::Avito) => {
            let mut cache = core
                .clients
                .avito
                .lock()
                .map_err(|_| CoreError::Internal("Avito client cache poisoned".into()))?;
            let client = cache.entry(src.id).or_insert_with(|| {
                AvitoClient::new(
                    core.http.clone(),
                    &cfg.kinds.avito.api_base,
                    secret.client_id.as_deref().unwrap_or_default(),
                    &secret.token,
                )
            });
            Ok(SourceClient::Avito(client.clone()))
        }
        Some(SourceKind::Whatsapp) => Ok(SourceClient::WhatsApp(WhatsAppClient::new(
            core.http.clone(),
            &cfg.kinds.whatsapp.api_base,
            &cfg.kinds.whatsapp.api_version,
            &model::settings_of(src).bot_id,
            &secret.token,
        ))),
        Some(SourceKind::SipoutSms) => Ok(SourceClient::Sms(Box::new(SmsClient::new(
            core.http.clone(),
            SmsGatewayConfig::sipout(
                &cfg.kinds.sms.api_base,
                &secret.token,
                model::settings_of(src).sms_sender.as_deref(),
            ),
        )))),
        _ => Err(CoreError::Internal(format!(
            "no connector for source kind {}",
            src.kind
        ))),
    }
}

/// The public base URL webhooks of `kind` go to, if any (Telegram keeps its own key).
pub fn webhook_base(cfg: &CoreConfig, kind: i32) -> Option<&str> {
    let general = cfg.kinds.webhook_base.as_deref().filter(|b| !b.is_empty());
    if kind == SourceKind::TelegramBot.id() {
        cfg.kinds.telegram.webhook_base.as_deref().or(general)
    } else {
        general
    }
}

/// Where people reach us from outside: the webhook base, else the public URL. WhatsApp and
/// SMS sources are configured by hand at the provider, so their pages show URLs on this base.
pub fn public_hook_base(cfg: &CoreConfig, kind: i32) -> &str {
    webhook_base(cfg, kind).unwrap_or(&cfg.public_url)
}

/// The SMS gateway's callback URLs of a source: (delivery reports, incoming SMS). The path
/// token is the only proof a callback comes from the gateway.
pub fn sms_hook_urls(base: &str, source_id: Uuid, token: &str) -> (String, String) {
    let at = format!("{}/{token}", hook_url(base, "sms", source_id));
    (format!("{at}/status"), format!("{at}/inbound"))
}

/// `{base}/hooks/{path}/{source_id}`: where a provider posts a source's events.
pub fn hook_url(base: &str, path: &str, source_id: Uuid) -> String {
    format!("{}/hooks/{path}/{source_id}", base.trim_end_matches('/'))
}

impl SourceClient {
    /// The kind's connector: the one match from a source's client to what every kind does.
    pub fn connector(&self) -> &dyn Connector {
        match self {
            SourceClient::Telegram(c) => c,
            SourceClient::Vk(c) => c,
            SourceClient::Max(c) => c,
            SourceClient::Avito(c) => c,
            SourceClient::WhatsApp(c) => c,
            SourceClient::Sms(c) => c.as_ref(),
        }
    }

    /// The kind-neutral side of the client.
    pub fn channel(&self) -> &dyn Channel {
        self.connector()
    }

    /// Longest text of one message; longer replies go out in parts.
    pub fn max_text(&self) -> usize {
        self.connector().max_text()
    }

    /// Lease prefix of the source's poller (`telegram-poll:{id}` …).
    pub fn lease_prefix(&self) -> &'static str {
        self.connector().lease_prefix()
    }

    /// Sends part `part` of our message `key` into `chat` (see `Connector::send_part`).
    pub async fn send_part(
        &self,
        chat: &str,
        text: &str,
        reply_to: Option<&str>,
        key: &str,
        part: usize,
    ) -> Result<String, ChannelError> {
        self.connector()
            .send_part(chat, text, reply_to, key, part)
            .await
    }

    /// Sends what is not plain text as one message: a WhatsApp template (`extra` of type
    /// `template`) or a WhatsApp medium by link (an outgoing attachment). `None`: nothing
    /// special, send the text in parts.
    pub async fn send_special(
        &self,
        chat: &str,
        text: Option<&str>,
        extra: Option<&str>,
        attachments: &[crate::attachments::StoredAttachment],
    ) -> Option<Result<String, ChannelError>> {
        let SourceClient::WhatsApp(c) = self else {
            return None;
        };
        let extra: Option<serde_json::Value> = extra.and_then(|e| serde_json::from_str(e).ok());
        if let Some(t) = extra.filter(|e| e["type"] == "template") {
            let params: Vec<String> = t["params"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let name = t["name"].as_str().unwrap_or_default();
            let language = t["language"].as_str().unwrap_or_default();
            return Some(c.send_template(chat, name, language, &params).await);
        }
        let a = attachments.first()?;
        let caption = text.filter(|t| !t.trim().is_empty());
        Some(match a.kind.as_str() {
            "document" => {
                let name = a.file_name.as_deref().unwrap_or("file");
                c.send_document(chat, MediaRef::Link(&a.file_ref), name, caption)
                    .await
            }
            kind => {
                let kind = match kind {
                    "video" => MediaKind::Video,
                    "audio" => MediaKind::Audio,
                    _ => MediaKind::Image,
                };
                c.send_media(chat, kind, MediaRef::Link(&a.file_ref), caption)
                    .await
            }
        })
    }

    /// Downloads an attachment by its `file_ref`.
    pub async fn download(&self, file_ref: &str) -> Result<Download, ChannelError> {
        self.channel().download(file_ref).await
    }

    /// Whether a `Permanent` refusal of a send means the customer blocked us (or disallowed
    /// messages): the conversation is marked blocked and nothing is retried.
    pub fn is_blocked(&self, error: &str) -> bool {
        self.connector().is_blocked(error)
    }

    /// Pause between two polls (Avito has no long poll); `None` for long-polled kinds.
    pub fn poll_pause(&self, cfg: &CoreConfig) -> Option<Duration> {
        match self {
            SourceClient::Avito(_) => Some(Duration::from_secs(
                u64::from(cfg.kinds.avito.poll_interval_secs).max(1),
            )),
            _ => None,
        }
    }
}

fn internal(e: CoreError) -> ChannelError {
    ChannelError::Transient(e.to_string())
}

/// Sets a source up to receive: a webhook to us when a public base URL is configured, the
/// provider's polling otherwise. Returns the settings to store (mode included).
pub async fn setup(
    core: &Core,
    src: &source::Model,
    client: &SourceClient,
) -> Result<SourceSettings, ChannelError> {
    let mut settings = model::settings_of(src);
    let base = webhook_base(&core.config, src.kind).map(str::to_owned);
    let hook_secret = model::secret_of(core, src)
        .map_err(internal)?
        .webhook_secret
        .unwrap_or_default();
    match (client, base) {
        (SourceClient::Telegram(c), Some(base)) => {
            c.set_webhook(&hook_url(&base, "telegram", src.id), &hook_secret)
                .await?;
            settings.mode = "webhook".into();
        }
        (SourceClient::Telegram(c), None) => {
            c.delete_webhook(false).await?;
            settings.mode = "polling".into();
        }
        (SourceClient::Vk(c), Some(base)) => {
            // Reuse our callback server when VK still has it; add one otherwise.
            let reused = match settings.vk_server_id {
                Some(id) => match c.set_callback_settings(id).await {
                    Ok(()) => true,
                    Err(ChannelError::Permanent(_)) => false,
                    Err(e) => return Err(e),
                },
                None => false,
            };
            settings.mode = "webhook".into();
            if !reused {
                let url = hook_url(&base, "vk", src.id);
                let id = c.add_callback_server(&url, "Chatter", &hook_secret).await?;
                settings.vk_server_id = Some(id);
            }
            // VK confirms the server right away with the code current after the change; the
            // hook answers from the stored code, and VK retries until it matches.
            settings.vk_confirmation = Some(c.get_callback_confirmation_code().await?);
            model::save_settings(&core.db, src.id, &settings)
                .await
                .map_err(internal)?;
            if let (false, Some(id)) = (reused, settings.vk_server_id) {
                c.set_callback_settings(id).await?;
            }
        }
        (SourceClient::Vk(c), None) => {
            c.set_long_poll_settings(true).await?;
            settings.mode = "polling".into();
        }
        (SourceClient::Max(c), Some(base)) => {
            let url = hook_url(&base, "max", src.id);
            c.subscribe(&url, Some(&hook_secret)).await?;
            settings.webhook_url = Some(url);
            settings.mode = "webhook".into();
        }
        (SourceClient::Max(c), None) => {
            // Polling works only without subscriptions (as Telegram's deleteWebhook).
            for sub in c.subscriptions().await? {
                c.unsubscribe(&sub.url).await?;
            }
            settings.webhook_url = None;
            settings.mode = "polling".into();
        }
        (SourceClient::Avito(c), Some(base)) => {
            c.subscribe(&avito_hook_url(&base, src.id, &hook_secret))
                .await?;
            settings.mode = "webhook".into();
        }
        // Meta's and the gateway's callbacks are set by hand (the source's page shows the URLs
        // and the verify token): setting up checks the credentials still work.
        (SourceClient::WhatsApp(c), base) => {
            c.phone_number().await?;
            let base = base.unwrap_or_else(|| core.config.public_url.clone());
            settings.webhook_url = Some(hook_url(&base, "whatsapp", src.id));
            settings.mode = "webhook".into();
        }
        (SourceClient::Sms(c), _) => {
            c.balance().await?;
            settings.mode = "webhook".into();
        }
        (SourceClient::Avito(c), None) => {
            let ours = format!("/hooks/avito/{}/", src.id);
            for sub in c.subscriptions().await? {
                if sub.url.contains(&ours) {
                    c.unsubscribe(&sub.url).await?;
                }
            }
            settings.mode = "polling".into();
        }
    }
    Ok(settings)
}

/// The Avito hook URL: the path token is the only proof a delivery comes from Avito.
pub fn avito_hook_url(base: &str, source_id: Uuid, token: &str) -> String {
    format!("{}/{token}", hook_url(base, "avito", source_id))
}

/// Stops receiving for a turned-off source, as far as the provider allows: Telegram's webhook
/// is deleted, VK's callback server and Max's and Avito's subscriptions removed (the provider
/// keeps what arrives meanwhile where it can). Whatever still reaches a turned-off source's
/// hook is answered 410 and stored nowhere.
pub async fn stop(core: &Core, src: &source::Model, client: &SourceClient) {
    let mut settings = model::settings_of(src);
    let result = match client {
        SourceClient::Telegram(c) => c.delete_webhook(false).await,
        // Long poll stops with our poller.
        SourceClient::Vk(c) => match settings.vk_server_id.take() {
            Some(id) => match c.delete_callback_server(id).await {
                // Gone already (deleted in VK by hand): nothing more to stop.
                Ok(()) | Err(ChannelError::Permanent(_)) => {
                    model::save_settings(&core.db, src.id, &settings)
                        .await
                        .map_err(internal)
                }
                Err(e) => Err(e),
            },
            None => Ok(()),
        },
        // Callbacks configured by hand stay at the provider; our hook answers them 410.
        SourceClient::WhatsApp(_) | SourceClient::Sms(_) => Ok(()),
        SourceClient::Max(c) => match &settings.webhook_url {
            Some(url) => c.unsubscribe(url).await,
            None => Ok(()),
        },
        SourceClient::Avito(c) => {
            let secret = model::secret_of(core, src)
                .ok()
                .and_then(|s| s.webhook_secret);
            match (webhook_base(&core.config, src.kind), secret) {
                (Some(base), Some(token)) => {
                    c.unsubscribe(&avito_hook_url(base, src.id, &token)).await
                }
                _ => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::info!(error = %e, source = %src.id, "could not stop the provider's deliveries");
    }
}

/// What a poller keeps between polls of one source.
#[derive(Default)]
pub struct PollState {
    /// VK: the Long Poll session (its key is never stored; `ts` is the source's cursor).
    vk: Option<LongPollServer>,
}

impl PollState {
    /// Forgets in-memory positions, so the next poll starts from the stored cursor.
    pub fn reset(&mut self) {
        self.vk = None;
    }
}

/// What one poll brought: the events in order, what the provider sent for each when the kind
/// keeps it (kept if an event has to be parked), and the cursor to store with them in the
/// same transaction (`None`: nothing to store).
pub struct Polled {
    pub events: Vec<InboundEvent>,
    pub raws: Vec<Option<String>>,
    pub cursor: Option<String>,
}

impl Polled {
    fn new((events, cursor): (Vec<InboundEvent>, Option<String>)) -> Self {
        Polled {
            events,
            raws: Vec::new(),
            cursor,
        }
    }
}

/// One poll of `src`.
pub async fn poll_once(
    core: &Core,
    src: &source::Model,
    client: &SourceClient,
    state: &mut PollState,
) -> Result<Polled, ChannelError> {
    let wait = core.config.kinds.poll_timeout_secs;
    match client {
        SourceClient::Telegram(c) => {
            let offset = src.cursor.as_deref().and_then(|c| c.parse::<i64>().ok());
            let updates = c
                .get_updates(offset, core.config.kinds.telegram.poll_timeout_secs, 100)
                .await?;
            let cursor = updates.last().map(|u| (u.update_id + 1).to_string());
            Ok(Polled {
                events: updates.iter().map(|u| parse_update(&u.raw)).collect(),
                raws: updates.iter().map(|u| Some(u.raw.to_string())).collect(),
                cursor,
            })
        }
        SourceClient::Vk(c) => {
            let session = match &mut state.vk {
                Some(s) => s,
                None => {
                    let mut fresh = c.get_long_poll_server().await?;
                    if let Some(ts) = src.cursor.as_deref().filter(|t| !t.is_empty()) {
                        fresh.ts = ts.to_string();
                    }
                    state.vk.insert(fresh)
                }
            };
            let events = c.poll(session, wait).await?;
            let changed = src.cursor.as_deref() != Some(session.ts.as_str());
            Ok(Polled::new((events, changed.then(|| session.ts.clone()))))
        }
        SourceClient::Max(c) => {
            let marker = src.cursor.as_deref().and_then(|c| c.parse::<i64>().ok());
            let (events, next) = c.updates(marker, wait).await?;
            let cursor = next.filter(|n| Some(*n) != marker).map(|n| n.to_string());
            Ok(Polled::new((events, cursor)))
        }
        SourceClient::Avito(c) => {
            let cursor: PollCursor = src
                .cursor
                .as_deref()
                .and_then(|c| {
                    chatter_store::stored_json::read_opt("sources.cursor", src.id, Some(c))
                })
                .unwrap_or_default();
            let (events, next) = c.poll(&cursor).await?;
            let stored = (next != cursor)
                .then(|| serde_json::to_string(&next).ok())
                .flatten();
            Ok(Polled::new((events, stored)))
        }
        // Nothing to poll: both only call us back.
        SourceClient::WhatsApp(_) | SourceClient::Sms(_) => Ok(Polled::new((Vec::new(), None))),
    }
}

/// Makes every string of the event storable on both databases (a NUL from the provider would
/// otherwise fail the whole batch on PostgreSQL, forever) and gives every sender a name to
/// show: providers that send none (VK, Avito webhooks) get their username or id, so the inbox
/// never lists a blank conversation.
pub fn normalize(ev: &mut InboundEvent) {
    ev.for_each_text_mut(&mut chatter_domain::text::clean_in_place);
    let sender = match ev {
        InboundEvent::Message(m) => &mut m.sender,
        InboundEvent::Blocked { sender, .. } => sender,
        _ => return,
    };
    if sender.name.trim().is_empty() {
        sender.name = sender
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| format!("#{}", sender.external_id));
    }
}
