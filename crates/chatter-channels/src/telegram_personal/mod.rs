//! Telegram personal accounts (kind 2): a person's own Telegram, signed in over MTProto with
//! the company's api_id and api_hash, a phone, the login code and the 2FA password.
//!
//! Everything here talks to Telegram through the `TelegramGateway` trait, in our own types
//! (`Me`, `TgMessage`, `GatewayError` …), so the login steps (`login`), the live source
//! (`connector`) and the kind's facts (`kind`) never name an MTProto library. One adapter
//! implements the trait: `fake_gateway`, a small JSON protocol spoken by the loopback fake in
//! `chatter-fakes` (selected by `[telegram_personal] gateway_url`), always wrapped in the
//! account-health governor (`governor`: quotas, FLOOD_WAIT, PEER_FLOOD). A real MTProto server
//! cannot run in tests; the grammers adapter that would be used when no gateway URL is set is
//! not part of this build, and connecting then says so (`err.tgp_no_gateway`).

mod connector;
mod fake_gateway;
mod governor;
mod kind;
mod login;

pub use fake_gateway::FakeGateway;
pub use kind::TelegramPersonalKind;

use crate::{ChannelError, Download, KindEnv};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The longest text of one message (as for bots).
pub const MAX_TEXT: usize = 4096;

/// The installation's `[telegram_personal]` section.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The base URL of a gateway speaking the fake's JSON protocol (`chatter-fakes`'
    /// `FakeTelegramPersonal`, tests and the demo); `None`: MTProto itself, which this build
    /// does not include.
    pub gateway_url: Option<String>,
    /// Private chats with other businesses' bots become conversations too (default: ignored).
    pub include_bots: bool,
}

/// The company's own application pair from my.telegram.org. `Debug` hides the hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCredentials {
    pub api_id: i32,
    pub api_hash: String,
}

impl std::fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCredentials")
            .field("api_id", &self.api_id)
            .finish_non_exhaustive()
    }
}

/// A signed-in session (the auth key, serialised). `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Session(pub String);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session(***)")
    }
}

/// One signed-in account: the application pair and its session.
#[derive(Clone, Debug)]
pub struct Account {
    pub api: ApiCredentials,
    pub session: Session,
}

/// The signed-in person.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub id: i64,
    pub first_name: String,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

impl Me {
    /// First and last name.
    pub fn full_name(&self) -> String {
        match &self.last_name {
            Some(l) if !l.is_empty() => format!("{} {l}", self.first_name),
            _ => self.first_name.clone(),
        }
    }
}

/// After the code: signed in, or the account has a 2FA password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignIn {
    Done(Me, Session),
    /// The password is needed; `token` goes with it to `check_password`.
    PasswordNeeded {
        hint: Option<String>,
        token: String,
    },
}

/// What kind of chat a peer is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerKind {
    #[default]
    User,
    Bot,
    Group,
    Channel,
}

/// A chat: a person, a bot, a group or a channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub id: i64,
    #[serde(default)]
    pub kind: PeerKind,
}

/// A person as Telegram describes them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TgUser {
    pub id: i64,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

/// A medium attached to a message, by the handle `download_media` takes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// photo | document | voice | video | audio | sticker
    pub kind: String,
    /// The handle to download it by.
    pub media_ref: String,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub size: Option<i64>,
}

/// One message in a chat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TgMessage {
    /// The account's id of the message (per account, increasing).
    pub id: i64,
    pub peer: Peer,
    /// Sent by the account's own person (from the phone or from Chatter).
    #[serde(default)]
    pub out: bool,
    /// Who wrote it (the peer, in a private chat with a customer).
    #[serde(default)]
    pub from: Option<TgUser>,
    #[serde(default)]
    pub text: Option<String>,
    /// Unix seconds.
    pub date: i64,
    #[serde(default)]
    pub media: Option<Media>,
    #[serde(default)]
    pub reply_to: Option<i64>,
}

/// A dialog in the account's chat list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialog {
    pub peer: Peer,
    pub title: String,
    #[serde(default)]
    pub top_message: i64,
    #[serde(default)]
    pub unread: i32,
}

/// What `updates` brought: the new messages, in order, and the position after them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Updates {
    pub messages: Vec<TgMessage>,
    /// The opaque position to ask from next time.
    pub state: String,
}

/// A file going out (`send_file`).
#[derive(Clone, Debug)]
pub struct OutFile<'a> {
    pub bytes: &'a [u8],
    pub file_name: &'a str,
    pub mime_type: &'a str,
    pub as_photo: bool,
}

/// Telegram's refusals (RPC errors) and transport trouble, as callers act on them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// `FLOOD_WAIT_X`: wait this many seconds.
    #[error("FLOOD_WAIT_{0}")]
    FloodWait(u64),
    /// `PEER_FLOOD`: the account may not write to people who did not write first for a while.
    #[error("PEER_FLOOD")]
    PeerFlood,
    #[error("PHONE_NUMBER_INVALID")]
    PhoneNumberInvalid,
    #[error("PHONE_NUMBER_BANNED")]
    PhoneNumberBanned,
    #[error("PHONE_CODE_INVALID")]
    PhoneCodeInvalid,
    #[error("PHONE_CODE_EXPIRED")]
    PhoneCodeExpired,
    #[error("PASSWORD_HASH_INVALID")]
    PasswordHashInvalid,
    /// `API_ID_INVALID` (or the hash does not go with the id).
    #[error("API_ID_INVALID")]
    ApiIdInvalid,
    /// `AUTH_KEY_UNREGISTERED` / `SESSION_REVOKED`: the session was ended from the phone.
    #[error("AUTH_KEY_UNREGISTERED")]
    SessionRevoked,
    /// `USER_DEACTIVATED_BAN`: Telegram banned the account.
    #[error("USER_DEACTIVATED_BAN")]
    Banned,
    /// `PEER_ID_INVALID`, `USER_IS_BLOCKED`: the person cannot be written to.
    #[error("{0}")]
    PeerRefused(String),
    /// Network trouble, disconnects, the gateway's 5xx: try again.
    #[error("{0}")]
    Network(String),
    /// Any other refusal, as Telegram named it.
    #[error("{0}")]
    Other(String),
}

impl GatewayError {
    /// Reads an RPC error name (`FLOOD_WAIT_30`, `PHONE_CODE_INVALID` …).
    pub fn from_rpc(name: &str) -> Self {
        if let Some(secs) = name.strip_prefix("FLOOD_WAIT_") {
            return GatewayError::FloodWait(secs.parse().unwrap_or(60));
        }
        match name {
            "PEER_FLOOD" => GatewayError::PeerFlood,
            "PHONE_NUMBER_INVALID" => GatewayError::PhoneNumberInvalid,
            "PHONE_NUMBER_BANNED" => GatewayError::PhoneNumberBanned,
            "PHONE_CODE_INVALID" | "PHONE_CODE_EMPTY" => GatewayError::PhoneCodeInvalid,
            "PHONE_CODE_EXPIRED" => GatewayError::PhoneCodeExpired,
            "PASSWORD_HASH_INVALID" => GatewayError::PasswordHashInvalid,
            "API_ID_INVALID" | "API_ID_PUBLISHED_FLOOD" => GatewayError::ApiIdInvalid,
            "AUTH_KEY_UNREGISTERED" | "SESSION_REVOKED" | "SESSION_EXPIRED" => {
                GatewayError::SessionRevoked
            }
            "USER_DEACTIVATED_BAN" | "USER_DEACTIVATED" => GatewayError::Banned,
            "PEER_ID_INVALID" | "USER_IS_BLOCKED" | "INPUT_USER_DEACTIVATED" => {
                GatewayError::PeerRefused(name.to_owned())
            }
            other => GatewayError::Other(other.to_owned()),
        }
    }
}

impl From<GatewayError> for ChannelError {
    /// What core does about it: wait, fix the account, or give up on this message.
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::FloodWait(secs) => ChannelError::RateLimited {
                retry_after_secs: secs,
                message: format!("Telegram asked to wait {secs} s (FLOOD_WAIT)"),
            },
            GatewayError::SessionRevoked => ChannelError::Unauthorized(
                "the Telegram session was ended from the phone (AUTH_KEY_UNREGISTERED)".into(),
            ),
            GatewayError::Banned => {
                ChannelError::Unauthorized("Telegram banned the account (USER_DEACTIVATED_BAN)".into())
            }
            GatewayError::PeerFlood => ChannelError::Permanent(
                "Telegram limits this account's messages to people who did not write first (PEER_FLOOD)"
                    .into(),
            ),
            GatewayError::PeerRefused(m) => ChannelError::Blocked(m),
            GatewayError::Network(m) => ChannelError::Transient(m),
            other => ChannelError::Permanent(other.to_string()),
        }
    }
}

/// Telegram as one account sees it, in our own types. Calls that need no session take the
/// application pair; the rest take the signed-in `Account`.
#[async_trait::async_trait]
pub trait TelegramGateway: Send + Sync {
    /// Asks Telegram to send a login code to `phone` (E.164); returns the code's token.
    async fn send_code(&self, api: &ApiCredentials, phone: &str) -> Result<String, GatewayError>;

    /// Signs in with the `code` sent for `token`.
    async fn sign_in(
        &self,
        api: &ApiCredentials,
        phone: &str,
        token: &str,
        code: &str,
    ) -> Result<SignIn, GatewayError>;

    /// Checks the 2FA `password` of a sign-in that needs it.
    async fn check_password(
        &self,
        api: &ApiCredentials,
        token: &str,
        password: &str,
    ) -> Result<(Me, Session), GatewayError>;

    /// Ends the session at Telegram.
    async fn log_out(&self, account: &Account) -> Result<(), GatewayError>;

    /// The signed-in person (checks the session is alive).
    async fn get_me(&self, account: &Account) -> Result<Me, GatewayError>;

    /// The account's chat list.
    async fn dialogs(&self, account: &Account) -> Result<Vec<Dialog>, GatewayError>;

    /// Messages of chat `peer` after message `since_id`, oldest first.
    async fn history_since(
        &self,
        account: &Account,
        peer: i64,
        since_id: i64,
    ) -> Result<Vec<TgMessage>, GatewayError>;

    /// Sends `text` to `peer`; `random_id` makes a retry of the same send a no-op. Returns the
    /// message's id.
    async fn send_text(
        &self,
        account: &Account,
        peer: i64,
        text: &str,
        reply_to: Option<i64>,
        random_id: i64,
    ) -> Result<i64, GatewayError>;

    /// Uploads and sends a file with an optional caption. Returns the message's id.
    async fn send_file(
        &self,
        account: &Account,
        peer: i64,
        file: OutFile<'_>,
        caption: Option<&str>,
        random_id: i64,
    ) -> Result<i64, GatewayError>;

    /// Downloads a medium by its `Media::media_ref`.
    async fn download_media(
        &self,
        account: &Account,
        media_ref: &str,
    ) -> Result<Download, GatewayError>;

    /// Marks chat `peer` read up to message `max_id`.
    async fn mark_read(
        &self,
        account: &Account,
        peer: i64,
        max_id: i64,
    ) -> Result<(), GatewayError>;

    /// New messages after position `state` (`None`: since the session signed in), waiting up
    /// to `wait_secs` for one. A gap in Telegram's sequence is filled (its difference fetched)
    /// before returning, so nothing between two positions is skipped. What this client sent
    /// itself (`send_text`, `send_file`, recognised by their `random_id` as MTProto clients
    /// do) is not returned; what the person sent from other devices is, with `out` set.
    async fn updates(
        &self,
        account: &Account,
        state: Option<&str>,
        wait_secs: u32,
    ) -> Result<Updates, GatewayError>;
}

/// The gateway this installation talks to, behind the account-health governor: the fake's
/// protocol at `gateway_url`, or `None` when none is configured (MTProto itself is not in this
/// build).
pub fn gateway(env: &KindEnv) -> Option<Arc<dyn TelegramGateway>> {
    let url = env.config.telegram_personal.gateway_url.as_deref()?;
    let url = url.trim();
    if url.is_empty() {
        return None;
    }
    let inner: Arc<dyn TelegramGateway> = Arc::new(FakeGateway::new(env.http.clone(), url));
    Some(Arc::new(governor::Governed { inner }))
}

/// A `random_id` derived from our message key and part, the same on every retry.
pub(crate) fn random_id(key: &str, index: usize) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{key}:{index}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_become_what_callers_act_on() {
        assert_eq!(
            GatewayError::from_rpc("FLOOD_WAIT_42"),
            GatewayError::FloodWait(42)
        );
        assert_eq!(
            GatewayError::from_rpc("AUTH_KEY_UNREGISTERED"),
            GatewayError::SessionRevoked
        );
        assert_eq!(
            GatewayError::from_rpc("USER_DEACTIVATED_BAN"),
            GatewayError::Banned
        );
        assert!(matches!(
            ChannelError::from(GatewayError::FloodWait(7)),
            ChannelError::RateLimited {
                retry_after_secs: 7,
                ..
            }
        ));
        assert!(matches!(
            ChannelError::from(GatewayError::SessionRevoked),
            ChannelError::Unauthorized(_)
        ));
        assert!(matches!(
            ChannelError::from(GatewayError::Banned),
            ChannelError::Unauthorized(_)
        ));
        assert!(matches!(
            ChannelError::from(GatewayError::PeerFlood),
            ChannelError::Permanent(_)
        ));
        assert!(matches!(
            ChannelError::from(GatewayError::from_rpc("USER_IS_BLOCKED")),
            ChannelError::Blocked(_)
        ));
        assert!(ChannelError::from(GatewayError::Network("reset".into())).is_retryable());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let api = ApiCredentials {
            api_id: 12345,
            api_hash: "0123456789abcdef0123456789abcdef".into(),
        };
        let s = format!(
            "{:?}",
            Account {
                api,
                session: Session("auth-key".into())
            }
        );
        assert!(s.contains("12345") && !s.contains("0123456789abcdef") && !s.contains("auth-key"));
    }

    #[test]
    fn random_ids_repeat_per_part_and_differ_between_parts() {
        assert_eq!(random_id("m1", 0), random_id("m1", 0));
        assert_ne!(random_id("m1", 0), random_id("m1", 1));
    }
}
