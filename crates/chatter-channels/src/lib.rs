//! Messengers. Each module speaks one provider's API exactly as `docs/providers/channels.md`
//! describes (base URL from configuration, so tests point it at `chatter-fakes`), turns what
//! the provider sends into `InboundMessage`s, and sends our messages out. Nothing here touches
//! the database; nothing provider-shaped leaks out of this crate's common types.

pub mod api;
pub mod avito;
pub mod common;
mod connector;
mod env;
pub mod form;
pub mod kind;
pub mod max;
pub mod sms;
mod source;
pub mod telegram;
pub mod telegram_personal;
pub mod vk;
pub mod whatsapp;

use serde::{Deserialize, Serialize};

pub use connector::{
    Connector, EarlierTry, FileToSend, HookSite, HookStatus, OutgoingFile, Part, PollState, Polled,
    SaveSettings, SenderRef,
};
pub use env::{BuildError, KindEnv, Sleeper, TokioSleeper};
pub use form::{FormField, FormRefusal, FormValues, Validated};
pub use kind::{
    connected_kinds, hook_url, kind_by_slug, kind_of, kind_of_id, FileRules, HookAck,
    HookCredentials, HookMethod, HookOutcome, HookRefusal, HookRequest, Kind, LoginFlow,
    LoginPending, LoginProgress, KINDS, MB,
};
pub use source::{Credentials, KindConfig, SourceSettings};
/// A message template an account may send (WhatsApp's), as `Connector::templates` lists them.
pub use whatsapp::Template;

/// What went wrong talking to a provider, classified by what the caller should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Network trouble, timeouts, 5xx: retry with backoff.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// The provider asked us to wait this many seconds.
    #[error("rate limited, retry after {retry_after_secs} s: {message}")]
    RateLimited {
        retry_after_secs: u64,
        message: String,
    },
    /// The credentials are invalid or revoked (bot token revoked, …): the source needs fixing.
    #[error("credentials rejected: {0}")]
    Unauthorized(String),
    /// Retrying will not help (bad request, chat not found…).
    #[error("refused: {0}")]
    Permanent(String),
    /// Refused because the customer blocked us or disallowed messages, as the kind read the
    /// provider's refusal: like `Permanent`, and the conversation is marked blocked.
    #[error("refused: {0}")]
    Blocked(String),
}

impl ChannelError {
    /// Whether trying again later may succeed (network trouble, rate limits).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ChannelError::Transient(_) | ChannelError::RateLimited { .. }
        )
    }
}

/// The person who wrote, as the provider describes them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The provider's stable id of the person (Telegram user id, VK user id, phone for SMS…).
    pub external_id: String,
    pub name: String,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub language: Option<String>,
}

/// The conversation a message belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRef {
    /// The provider's id of the chat (what we send replies to).
    pub external_id: String,
    /// `private` or `group`.
    pub kind: ChatKind,
    /// A group's title.
    pub title: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    #[default]
    Private,
    Group,
}

impl ChatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatKind::Private => "private",
            ChatKind::Group => "group",
        }
    }
}

/// A file attached to a message, as the provider references it (fetched later into our blob store).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// photo | document | voice | audio | video | sticker
    pub kind: String,
    /// The provider's handle to download it (Telegram `file_id`).
    pub file_ref: String,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
}

/// What the message carries besides text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Extra {
    Contact { phone: String, name: String },
    Location { latitude: f64, longitude: f64 },
}

/// One event from a provider, normalised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InboundEvent {
    /// A new message from a customer (or an edit of one: `edited` is set).
    Message(InboundMessage),
    /// The customer blocked the bot (`blocked = true`) or started it again.
    Blocked {
        chat: ChatRef,
        sender: Sender,
        blocked: bool,
        at: i64,
    },
    /// The provider reports what happened to a message we sent (WhatsApp statuses, SMS
    /// delivery reports, VK read marks…). `external_id` is the id `send` returned in `Sent`.
    Status {
        external_id: String,
        state: DeliveryState,
        /// The provider's explanation when `state` is `Failed`.
        error: Option<String>,
        at: i64,
    },
    /// A message the account's own person sent to the customer from another device (a
    /// personal account's phone), mirrored as an outgoing message already sent. `sender` is
    /// the customer the chat is with; its `external_id` is unique per source like any message.
    Mirrored(InboundMessage),
    /// Something we do not handle (kept only as a cursor position).
    Ignored { reason: String },
}

impl InboundEvent {
    /// Calls `f` on every string the event carries (texts, names, ids, file names), so the
    /// caller can clean them all in one place before anything is stored.
    pub fn for_each_text_mut(&mut self, f: &mut dyn FnMut(&mut String)) {
        fn opt(s: &mut Option<String>, f: &mut dyn FnMut(&mut String)) {
            if let Some(s) = s {
                f(s);
            }
        }
        fn sender(s: &mut Sender, f: &mut dyn FnMut(&mut String)) {
            f(&mut s.external_id);
            f(&mut s.name);
            opt(&mut s.username, f);
            opt(&mut s.phone, f);
            opt(&mut s.language, f);
        }
        fn chat(c: &mut ChatRef, f: &mut dyn FnMut(&mut String)) {
            f(&mut c.external_id);
            opt(&mut c.title, f);
        }
        match self {
            InboundEvent::Message(m) | InboundEvent::Mirrored(m) => {
                f(&mut m.external_id);
                chat(&mut m.chat, f);
                sender(&mut m.sender, f);
                opt(&mut m.text, f);
                for a in &mut m.attachments {
                    f(&mut a.kind);
                    f(&mut a.file_ref);
                    opt(&mut a.file_name, f);
                    opt(&mut a.mime_type, f);
                }
                if let Some(Extra::Contact { phone, name }) = &mut m.extra {
                    f(phone);
                    f(name);
                }
                opt(&mut m.reply_to_external_id, f);
            }
            InboundEvent::Blocked {
                chat: c, sender: s, ..
            } => {
                chat(c, f);
                sender(s, f);
            }
            InboundEvent::Status {
                external_id, error, ..
            } => {
                f(external_id);
                opt(error, f);
            }
            InboundEvent::Ignored { reason } => f(reason),
        }
    }

    /// The provider identifiers the event would be stored under (they are indexed).
    pub fn ids(&self) -> Vec<&str> {
        match self {
            InboundEvent::Message(m) | InboundEvent::Mirrored(m) => {
                let mut v = vec![
                    m.external_id.as_str(),
                    m.chat.external_id.as_str(),
                    m.sender.external_id.as_str(),
                ];
                v.extend(m.reply_to_external_id.as_deref());
                v
            }
            InboundEvent::Blocked { chat, sender, .. } => {
                vec![chat.external_id.as_str(), sender.external_id.as_str()]
            }
            InboundEvent::Status { external_id, .. } => vec![external_id.as_str()],
            InboundEvent::Ignored { .. } => Vec::new(),
        }
    }
}

/// Delivery states a provider reports for our outgoing messages, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Sent,
    Delivered,
    Read,
    Failed,
}

/// What every source kind's client offers core. Receiving differs by kind (webhook parsing
/// functions and long-poll methods live on each module's client); these are the common parts.
#[async_trait::async_trait]
pub trait Channel: Send + Sync {
    /// Checks the credentials against the provider and says whom they belong to. Used by the
    /// add-source form: `Unauthorized` means the credentials are wrong.
    async fn identify(&self) -> Result<Identity, ChannelError>;
    /// Sends a text message (split into parts as the provider requires).
    async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError>;
    /// Downloads an attachment by its `Attachment::file_ref`.
    async fn download(&self, file_ref: &str) -> Result<Download, ChannelError>;
}

/// A downloaded attachment.
#[derive(Clone, Debug)]
pub struct Download {
    pub bytes: bytes::Bytes,
    pub mime_type: Option<String>,
    pub file_name: Option<String>,
}

/// A customer's message, normalised across providers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// Unique per source, stable across the provider's retries: dedup key.
    pub external_id: String,
    pub chat: ChatRef,
    pub sender: Sender,
    pub text: Option<String>,
    pub attachments: Vec<Attachment>,
    pub extra: Option<Extra>,
    /// The provider's id of the message this one replies to (same id space as `external_id`).
    pub reply_to_external_id: Option<String>,
    /// Unix milliseconds when the provider says it was sent (or edited, for an edit).
    pub sent_at: i64,
    /// Set when this is an edit of an earlier message with the same `external_id`.
    pub edited: bool,
}

/// A message to send to a customer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundMessage {
    pub chat_external_id: String,
    pub text: String,
    /// The provider's id of the message we answer.
    pub reply_to_external_id: Option<String>,
    /// Our stable id of this message (the same on every retry), for providers that dedupe
    /// sends (VK `random_id`, Avito/WhatsApp client ids). Part `i` of a split text may derive
    /// its own key from it.
    pub idempotency_key: Option<String>,
}

/// What the provider said about a sent message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The provider's ids of what was sent (several when a long text was split).
    pub external_ids: Vec<String>,
}

/// Who the credentials belong to (a bot's name), for the Sources page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub username: Option<String>,
}
