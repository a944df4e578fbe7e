//! Avito Messenger API (docs/providers/channels.md §4): OAuth client credentials, messenger calls,
//! webhook v3 parsing and a polling fallback over chats and messages.
//!
//! The client fetches an access token with its client id and secret (§4.1), keeps it in a cache
//! shared by its clones, refreshes it ahead of expiry and once more when a call answers 401.
//! Avito webhooks carry no documented signature (§4.3: a header exists, its algorithm is not
//! published), so `parse_webhook` checks nothing: core protects the hook URL with an
//! unguessable path token. The client secret and access tokens never appear in `Debug` output
//! or in error messages. What Avito sends is read in `parse`.

mod connector;
mod form;
mod kind;
mod parse;
mod upload;

pub use kind::AvitoKind;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::common::{self, download_url, parse_success, read_answer};
use crate::{
    ChannelError, Download, Identity, InboundEvent, InboundMessage, OutboundMessage, Sent,
};

use parse::{chat_info, RawChat};

pub use connector::hook_url;
pub use parse::{parse_chats, parse_messages, parse_webhook};

/// Longest message text, in characters (§4.2).
pub const MAX_TEXT: usize = 1000;

/// Files larger than this are refused while downloading (uploads are ≤ 24 MB).
pub const MAX_DOWNLOAD_BYTES: usize = 32 * 1024 * 1024;

/// Chats per page of the chat list, and the largest offset Avito accepts (§4.2).
const CHAT_PAGE: usize = 100;
const MAX_CHAT_OFFSET: usize = 1000;

/// Messages read per chat while polling (the newest ones).
const MESSAGE_PAGE: usize = 100;

/// `retry_after` when a 429 gives no `Retry-After`: Avito's limit is per minute (§4.4).
const DEFAULT_RETRY_AFTER_SECS: u64 = 60;

/// A token is refreshed this long before it expires (at most a tenth of its lifetime).
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

const UNAUTHORIZED: &str =
    "Avito refused the client id / client secret: copy them again from avito.ru/professionals/api";

/// Why a webhook delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The body is not a v3 webhook payload.
    #[error("malformed webhook body: {0}")]
    Malformed(String),
}

/// A webhook subscription as `POST /messenger/v1/subscriptions` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Subscription {
    pub url: String,
    #[serde(default)]
    pub version: String,
}

/// Where the polling fallback stopped: messages created before `since` (unix seconds) were
/// returned, and so were those created at `since` whose ids are in `seen`. Store it between
/// polls; `Default` starts from the beginning of what the newest page of each chat holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollCursor {
    pub since: i64,
    pub seen: Vec<String>,
}

/// A chat of the account's chat list (§4.2), the parts polling and core need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatInfo {
    pub id: String,
    /// Unix seconds of the last change.
    pub updated: i64,
    /// The item the chat is about: id and title.
    pub item: Option<(i64, String)>,
    /// Everyone in the chat other than the account: (user id, name).
    pub users: Vec<(i64, String)>,
}

/// An Avito Messenger client for one account's API credentials.
#[derive(Clone)]
pub struct AvitoClient {
    http: reqwest::Client,
    base_url: String,
    client_id: String,
    client_secret: String,
    cache: Arc<Mutex<Cache>>,
    /// Pause between two polls (`Config::poll_interval_secs`, at least 1 s).
    poll_pause: Duration,
}

#[derive(Default)]
struct Cache {
    token: Option<Token>,
    user_id: Option<i64>,
}

#[derive(Clone)]
struct Token {
    access: String,
    refresh_at: Instant,
}

impl fmt::Debug for AvitoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AvitoClient")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct Account {
    id: i64,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

#[derive(Deserialize)]
struct OkAnswer {
    #[serde(default)]
    ok: bool,
}

#[derive(Deserialize)]
struct SubscriptionList {
    #[serde(default)]
    subscriptions: Vec<Subscription>,
}

/// The error body of §4.4: `{"error":{"code":..,"message":..}}`; OAuth errors are flat.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<Value>,
    message: Option<String>,
}

impl AvitoClient {
    /// `api_base` is `https://api.avito.ru` in production, the fake's `http://127.0.0.1:PORT` in
    /// tests. Clones share the token cache.
    pub fn new(
        http: reqwest::Client,
        api_base: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Self {
        AvitoClient {
            http,
            base_url: api_base.trim_end_matches('/').to_owned(),
            client_id: client_id.trim().to_owned(),
            client_secret: client_secret.trim().to_owned(),
            cache: Arc::new(Mutex::new(Cache::default())),
            poll_pause: Duration::from_secs(u64::from(Config::default().poll_interval_secs)),
        }
    }

    /// The same client, pausing `secs` (at least 1) between two polls as a `Connector`.
    pub fn with_poll_interval(mut self, secs: u32) -> Self {
        self.poll_pause = Duration::from_secs(u64::from(secs).max(1));
        self
    }

    /// `GET /core/v1/accounts/self` (§4.1): whose credentials these are. The account number is
    /// remembered for the messenger paths.
    pub async fn account(&self) -> Result<Identity, ChannelError> {
        let me: Account = self
            .call(Method::GET, "/core/v1/accounts/self", None)
            .await?;
        self.cache.lock().await.user_id = Some(me.id);
        Ok(Identity {
            id: me.id.to_string(),
            name: me.name,
            username: None,
        })
    }

    /// The account number (`user_id` in messenger paths), asked once.
    pub async fn user_id(&self) -> Result<i64, ChannelError> {
        if let Some(id) = self.cache.lock().await.user_id {
            return Ok(id);
        }
        let me = self.account().await?;
        me.id
            .parse()
            .map_err(|_| ChannelError::Permanent("Avito gave a non-numeric account id".into()))
    }

    /// Sends a text to chat `m.chat_external_id`, split at `MAX_TEXT` characters; returns the
    /// message id of each part. Avito has no reply-to on send and no idempotency key (§4.4):
    /// after a timeout, look at the chat's recent messages before sending again.
    pub async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError> {
        common::send_in_parts(self, m).await
    }

    /// One `POST /messenger/v1/accounts/{user_id}/chats/{chat_id}/messages`; returns its id.
    pub async fn send_text_part(&self, chat_id: &str, text: &str) -> Result<String, ChannelError> {
        let uid = self.user_id().await?;
        let path = format!(
            "/messenger/v1/accounts/{uid}/chats/{}/messages",
            path_segment(chat_id)?
        );
        let body = json!({ "message": { "text": text }, "type": "text" });
        let sent: SentMessage = self.call(Method::POST, &path, Some(body)).await?;
        Ok(sent.id)
    }

    /// `POST /messenger/v3/webhook`: Avito starts POSTing v3 payloads to `url`.
    pub async fn subscribe(&self, url: &str) -> Result<(), ChannelError> {
        self.ok("/messenger/v3/webhook", json!({ "url": url }))
            .await
    }

    /// `POST /messenger/v1/webhook/unsubscribe`.
    pub async fn unsubscribe(&self, url: &str) -> Result<(), ChannelError> {
        self.ok("/messenger/v1/webhook/unsubscribe", json!({ "url": url }))
            .await
    }

    /// `POST /messenger/v1/subscriptions` (a POST that lists).
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, ChannelError> {
        let list: SubscriptionList = self
            .call(Method::POST, "/messenger/v1/subscriptions", Some(json!({})))
            .await?;
        Ok(list.subscriptions)
    }

    /// One page of the account's chats (`u2i` and `u2u`), as Avito orders them.
    pub async fn chats(&self, offset: usize) -> Result<Vec<ChatInfo>, ChannelError> {
        let uid = self.user_id().await?;
        let path = format!(
            "/messenger/v2/accounts/{uid}/chats?chat_types=u2i,u2u&limit={CHAT_PAGE}&offset={offset}"
        );
        let (status, retry_after, body) = self.call_raw(Method::GET, &path, None).await?;
        parse_chats(status, retry_after, &body, uid).map_err(|e| self.scrub(e))
    }

    /// One chat with its item and people (to name the author of a webhook message).
    pub async fn chat(&self, chat_id: &str) -> Result<ChatInfo, ChannelError> {
        let uid = self.user_id().await?;
        let path = format!(
            "/messenger/v2/accounts/{uid}/chats/{}",
            path_segment(chat_id)?
        );
        let chat: RawChat = self.call(Method::GET, &path, None).await?;
        Ok(chat_info(chat, uid))
    }

    /// The polling fallback: every customer message created since `cursor` in chats updated
    /// since then, oldest first, and the cursor to pass next time. Messages keep Avito's ids as
    /// `external_id`, and the cursor remembers which ones at its second were returned, so a
    /// re-poll returns nothing twice. Only the newest page of each chat is read: a chat with
    /// more than 100 new messages between two polls loses the oldest.
    pub async fn poll(
        &self,
        cursor: &PollCursor,
    ) -> Result<(Vec<InboundEvent>, PollCursor), ChannelError> {
        let uid = self.user_id().await?;
        let mut changed = Vec::new();
        let mut offset = 0;
        'pages: loop {
            let page = self.chats(offset).await?;
            let full = page.len() == CHAT_PAGE;
            for chat in page {
                // The list is newest first: the rest did not change either.
                if chat.updated < cursor.since {
                    break 'pages;
                }
                changed.push(chat);
            }
            offset += CHAT_PAGE;
            if !full || offset > MAX_CHAT_OFFSET {
                break;
            }
        }
        let mut found: Vec<(i64, InboundMessage)> = Vec::new();
        for chat in &changed {
            let path = format!(
                "/messenger/v3/accounts/{uid}/chats/{}/messages/?limit={MESSAGE_PAGE}&offset=0",
                path_segment(&chat.id)?
            );
            let (status, retry_after, body) = self.call_raw(Method::GET, &path, None).await?;
            found.extend(
                parse_messages(status, retry_after, &body, uid, chat, cursor)
                    .map_err(|e| self.scrub(e))?,
            );
        }
        found.sort_by_key(|(created, _)| *created);
        let mut next = cursor.clone();
        for (created, m) in &found {
            if *created > next.since {
                next.since = *created;
                next.seen.clear();
            }
            next.seen.push(m.external_id.clone());
        }
        let events = found
            .into_iter()
            .map(|(_, m)| InboundEvent::Message(m))
            .collect();
        Ok((events, next))
    }

    /// Downloads an image by the URL in its `sizes` (`Attachment::file_ref`), without
    /// credentials (Avito's image links are public).
    pub async fn download(&self, url: &str) -> Result<Download, ChannelError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ChannelError::Permanent(
                "download: the attachment reference is not a URL".into(),
            ));
        }
        let result = download_url(&self.http, url, MAX_DOWNLOAD_BYTES).await;
        result.map_err(|e| self.scrub(e))
    }

    async fn ok(&self, path: &str, body: Value) -> Result<(), ChannelError> {
        let answer: OkAnswer = self.call(Method::POST, path, Some(body)).await?;
        if answer.ok {
            Ok(())
        } else {
            Err(ChannelError::Permanent(format!(
                "{path}: Avito said not ok"
            )))
        }
    }

    /// A messenger call with a valid token: a 401 drops the cached token and retries once with
    /// a fresh one (it may have been revoked early); a second 401 means the credentials are bad.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ChannelError> {
        let (status, retry_after, bytes) = self.call_raw(method, path, body).await?;
        decode(status, retry_after, &bytes).map_err(|e| self.scrub(e))
    }

    /// `call` without the decoding: the answer's status, `Retry-After` and body.
    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Option<u64>, bytes::Bytes), ChannelError> {
        let result = async {
            let mut refreshed = false;
            loop {
                let token = self.token(refreshed).await?;
                let mut req = self
                    .http
                    .request(method.clone(), format!("{}{path}", self.base_url))
                    .bearer_auth(&token);
                if let Some(body) = &body {
                    req = req.json(body);
                }
                let (status, retry_after, bytes) = read_answer("Avito API", req).await?;
                if status == 401 && !refreshed {
                    tracing::debug!("Avito answered 401: fetching a new token once");
                    refreshed = true;
                    continue;
                }
                return Ok((status, retry_after, bytes));
            }
        }
        .await;
        result.map_err(|e| self.scrub(e))
    }

    /// The cached token, or a new one when it is due for refresh or `force`d.
    async fn token(&self, force: bool) -> Result<String, ChannelError> {
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.token.as_ref().filter(|_| !force) {
            if Instant::now() < token.refresh_at {
                return Ok(token.access.clone());
            }
        }
        // The lock is held while fetching: concurrent callers wait for one refresh.
        let token = self.fetch_token().await?;
        let access = token.access.clone();
        cache.token = Some(token);
        Ok(access)
    }

    /// `POST /token` with `grant_type=client_credentials` (§4.1).
    async fn fetch_token(&self) -> Result<Token, ChannelError> {
        let req = self.http.post(format!("{}/token", self.base_url)).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
        ]);
        let started = Instant::now();
        let (status, retry_after, bytes) = read_answer("Avito API", req).await?;
        match status {
            200..=299 => {}
            429 | 500..=599 => return Err(error_of(status, retry_after, &bytes)),
            _ => return Err(ChannelError::Unauthorized(UNAUTHORIZED.into())),
        }
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| ChannelError::Transient(format!("token: unexpected answer: {e}")))?;
        let Some(access) = answer.access_token.filter(|t| !t.is_empty()) else {
            // An OAuth error with status 200 (`{"error":"invalid_client"}`).
            return Err(ChannelError::Unauthorized(UNAUTHORIZED.into()));
        };
        Ok(Token {
            access,
            refresh_at: refresh_at(started, answer.expires_in),
        })
    }

    fn scrub(&self, e: ChannelError) -> ChannelError {
        // Tokens are only in headers, but a proxy could echo them; the secret never goes out.
        common::scrub(e, &[&self.client_secret])
    }
}

#[async_trait::async_trait]
impl crate::Channel for AvitoClient {
    async fn identify(&self) -> Result<Identity, ChannelError> {
        self.account().await
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError> {
        AvitoClient::send(self, m).await
    }

    async fn download(&self, file_ref: &str) -> Result<Download, ChannelError> {
        AvitoClient::download(self, file_ref).await
    }
}

/// When a token issued at `started` for `expires_in` seconds (a day when absent; at most 30
/// days, whatever the answer says, so no lifetime overflows the clock) is due for refresh.
fn refresh_at(started: Instant, expires_in: Option<u64>) -> Instant {
    let lifetime = Duration::from_secs(expires_in.unwrap_or(86_400).min(30 * 86_400));
    let ahead = REFRESH_AHEAD.min(lifetime / 10);
    started + lifetime - ahead
}

/// A chat id as a path segment: Avito's ids are `u2i-…` style tokens, nothing to escape.
fn path_segment(id: &str) -> Result<&str, ChannelError> {
    let ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~:".contains(&b));
    if ok {
        Ok(id)
    } else {
        Err(ChannelError::Permanent(format!(
            "not an Avito chat id: {id:?}"
        )))
    }
}

pub(super) fn decode<T: DeserializeOwned>(
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
) -> Result<T, ChannelError> {
    if (200..300).contains(&status) {
        return parse_success("Avito", body);
    }
    Err(error_of(status, retry_after, body))
}

/// A non-2xx answer, classified with the message of its error body.
fn error_of(status: u16, retry_after: Option<u64>, body: &[u8]) -> ChannelError {
    let err: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let message = err
        .and_then(|e| {
            let nested = e.error.as_ref().and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                v => v.get("message")?.as_str().map(str::to_owned),
            });
            nested.or(e.message)
        })
        .unwrap_or_else(|| format!("HTTP {status}"));
    classify(status, &message, retry_after)
}

/// Classifies an Avito API failure (§4.4) by HTTP status:
///
/// | status | class |
/// |---|---|
/// | 401 (after one token refresh) | `Unauthorized` |
/// | 402 | `Permanent`: the account's tariff has no Messenger API |
/// | 429 | `RateLimited` after `Retry-After` s (60 s, Avito's window, when absent) |
/// | 5xx | `Transient` |
/// | 400, 403, 404, other 4xx | `Permanent` with Avito's message |
/// | … saying `blocked` | `Blocked` |
pub fn classify(status: u16, message: &str, retry_after: Option<u64>) -> ChannelError {
    match status {
        401 => ChannelError::Unauthorized(UNAUTHORIZED.into()),
        402 => ChannelError::Permanent(format!(
            "{message} (the Avito tariff does not include the Messenger API)"
        )),
        429 => ChannelError::RateLimited {
            retry_after_secs: retry_after.unwrap_or(DEFAULT_RETRY_AFTER_SECS),
            message: message.to_owned(),
        },
        500..=599 => ChannelError::Transient(message.to_owned()),
        _ => common::blocked_if(ChannelError::Permanent(message.to_owned()), |m| {
            m.contains("blocked")
        }),
    }
}

/// Avito's section of the configuration (`[avito]`).
#[derive(Clone, Debug)]
pub struct Config {
    /// Avito API base URL (`https://api.avito.ru`).
    pub api_base: String,
    /// Seconds between two polls of an account without webhooks.
    pub poll_interval_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_base: "https://api.avito.ru".into(),
            poll_interval_secs: 15,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let c = AvitoClient::new(
            reqwest::Client::new(),
            "https://api.avito.ru",
            "cid",
            "s3cr3t-value",
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t-value"), "{dbg}");
        assert!(dbg.contains("cid"), "{dbg}");
    }

    #[test]
    fn classify_follows_the_spec_table() {
        assert!(matches!(
            classify(401, "x", None),
            ChannelError::Unauthorized(_)
        ));
        assert!(matches!(
            classify(402, "x", None),
            ChannelError::Permanent(_)
        ));
        assert!(matches!(
            classify(403, "x", None),
            ChannelError::Permanent(_)
        ));
        assert!(matches!(
            classify(404, "x", None),
            ChannelError::Permanent(_)
        ));
        assert_eq!(
            classify(429, "too many", None),
            ChannelError::RateLimited {
                retry_after_secs: 60,
                message: "too many".into()
            }
        );
        assert!(matches!(
            classify(429, "x", Some(3)),
            ChannelError::RateLimited {
                retry_after_secs: 3,
                ..
            }
        ));
        assert!(matches!(
            classify(500, "x", None),
            ChannelError::Transient(_)
        ));
        assert!(matches!(
            classify(503, "x", None),
            ChannelError::Transient(_)
        ));
        let e = decode::<Value>(400, None, br#"{"error":{"code":400,"message":"bad chat"}}"#)
            .expect_err("error");
        assert_eq!(e, ChannelError::Permanent("bad chat".into()));
    }

    /// A token answer with an absurd `expires_in` overflowed `Instant` (a panic in release too).
    #[test]
    fn an_absurd_token_lifetime_is_capped() {
        let now = Instant::now();
        let at = refresh_at(now, Some(u64::MAX));
        assert!(at > now && at <= now + Duration::from_secs(30 * 86_400));
        assert_eq!(
            refresh_at(now, None),
            now + Duration::from_secs(86_400) - REFRESH_AHEAD
        );
    }
}
