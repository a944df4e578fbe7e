//! What is stored about one source, kind-blind: its credentials (kept encrypted by the caller)
//! and its public settings (JSON in `sources.settings`), and the per-kind configuration of the
//! installation (`KindConfig`). Each kind reads and writes only the fields it uses.

use serde::{Deserialize, Serialize};

/// Credentials, stored encrypted. One shape for every kind (rows written before VK, Max and
/// Avito existed read unchanged); what each field holds depends on the kind.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// Telegram, Max: the bot token. VK: the community token. Avito: the client secret.
    /// WhatsApp: the (system-user) access token. SMS: the gateway's API key.
    pub token: String,
    /// What the provider must present on webhooks: Telegram's
    /// `X-Telegram-Bot-Api-Secret-Token`, VK's callback `secret`, Max's `X-Max-Bot-Api-Secret`,
    /// Avito's and the SMS gateway's path token (they sign nothing, so the hook URL itself is
    /// the secret), WhatsApp's verify token (Meta's subscription handshake).
    pub webhook_secret: Option<String>,
    /// Avito: the client id that goes with the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// WhatsApp: the Meta app secret notifications are signed with (`X-Hub-Signature-256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_secret: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***)")
    }
}

/// Public settings of a source (JSON in `sources.settings`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSettings {
    /// webhook | polling
    #[serde(default)]
    pub mode: String,
    /// The provider's id of the bot / community / account the credentials belong to.
    #[serde(default)]
    pub bot_id: String,
    #[serde(default)]
    pub bot_name: String,
    #[serde(default)]
    pub bot_username: Option<String>,
    /// The webhook URL we subscribed (Max, Avito), so it can be removed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// VK: our callback server's id in the community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vk_server_id: Option<i64>,
    /// VK: the string our callback server answers VK's `confirmation` request with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vk_confirmation: Option<String>,
    /// VK: the Long Poll position (`ts`) taken when the community was connected for polling;
    /// the first poll starts there, so what customers write before it is not missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vk_poll_ts: Option<String>,
    /// WhatsApp: the business account (WABA) whose message templates the inbox offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waba_id: Option<String>,
    /// SMS: the sender name SMS go out under (`None`: the gateway's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_sender: Option<String>,
    /// SMS: what one billed part costs, in kopecks (`None`: not said, no cost shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_part_price_kopecks: Option<u32>,
}

/// The installation's configuration of every kind: what is shared (where providers reach us,
/// how long a long poll waits) and each kind's own section, defined in the kind's folder.
#[derive(Clone, Debug)]
pub struct KindConfig {
    /// Public base URL every messenger can reach for webhooks (VK, Max, Avito, and Telegram
    /// when its own `webhook_base` is unset); without it those sources are polled.
    pub webhook_base: Option<String>,
    /// Long-poll wait in seconds for VK and Max.
    pub poll_timeout_secs: u32,
    pub telegram: crate::telegram::Config,
    pub telegram_personal: crate::telegram_personal::Config,
    pub vk: crate::vk::Config,
    pub max: crate::max::Config,
    pub avito: crate::avito::Config,
    pub whatsapp: crate::whatsapp::Config,
    pub sms: crate::sms::Config,
}

impl Default for KindConfig {
    fn default() -> Self {
        KindConfig {
            webhook_base: None,
            poll_timeout_secs: 25,
            telegram: crate::telegram::Config::default(),
            telegram_personal: crate::telegram_personal::Config::default(),
            vk: crate::vk::Config::default(),
            max: crate::max::Config::default(),
            avito: crate::avito::Config::default(),
            whatsapp: crate::whatsapp::Config::default(),
            sms: crate::sms::Config::default(),
        }
    }
}

impl KindConfig {
    /// The general webhook base, when one is set and not empty.
    pub fn general_webhook_base(&self) -> Option<&str> {
        self.webhook_base.as_deref().filter(|b| !b.is_empty())
    }
}
