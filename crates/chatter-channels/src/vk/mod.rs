//! VK community bot (docs/providers/channels.md §2): method calls, sends deduplicated by
//! `random_id`, files uploaded and sent as attachments (`upload`), Callback API parsing and
//! set-up, Bots Long Poll, error classification.
//!
//! Methods are `POST {api_base}/method/<name>` with a form body carrying `access_token` and
//! `v` (§2.1); the token therefore never sits in a URL. Every failure becomes a `ChannelError`
//! by `classify` (§2.5), and every error message is scrubbed of the token and of long-poll keys
//! before it leaves this module; `Debug` shows neither.

mod answer;
mod catch_up;
mod connector;
mod event;
mod form;
mod kind;
mod upload;

pub use form::parse_vk_group_id;
pub use kind::VkKind;

use std::fmt;
use std::time::Duration;

use reqwest::RequestBuilder;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::common::{read_limited, scrub, split_text, transport_error};
use crate::{ChannelError, Download, Identity, InboundEvent, OutboundMessage, Sent};

pub use answer::{classify, parse_long_poll};
use answer::{decode, http_status_error, ts_string};
pub use event::{parse_callback, parse_event, CallbackError, CallbackOutcome};

/// The API version every call and every callback/long-poll subscription uses.
pub const API_VERSION: &str = "5.199";

/// Longest text per `messages.send`, in characters. VK documents 9000; clients split at 4096
/// (§2.4 calls the limit unconfirmed), so we take the lower one.
pub const MAX_TEXT: usize = 4096;

/// Peer ids from here up are group conversations (`2000000000 + chat_id`, §2.2).
pub const CHAT_PEER_OFFSET: i64 = 2_000_000_000;

/// The body VK expects from a callback server for every event but `confirmation` (§2.2).
pub const CALLBACK_OK: &str = "ok";

/// The event types Chatter subscribes to, for Callback servers and Long Poll alike.
pub const EVENT_TYPES: [&str; 4] = [
    "message_new",
    "message_edit",
    "message_allow",
    "message_deny",
];

/// Files larger than this are refused while downloading.
pub const MAX_DOWNLOAD_BYTES: usize = 64 * 1024 * 1024;

/// Longest long-poll `wait` VK accepts; 25 s is what it recommends (§2.3).
pub const MAX_LONG_POLL_WAIT_SECS: u32 = 90;

/// Added to a long poll's `wait` for the HTTP timeout, so VK answers first.
const LONG_POLL_MARGIN_SECS: u64 = 10;

/// Where the community's Bots Long Poll session lives (`groups.getLongPollServer`, §2.3).
#[derive(Clone, PartialEq, Eq)]
pub struct LongPollServer {
    /// The poll URL, e.g. `https://lp.vk.com/whp/<group_id>`.
    pub server: String,
    /// The session key; a secret of this community's event stream.
    pub key: String,
    /// The position to poll from (opaque; VK sends it as a string).
    pub ts: String,
    /// Unix seconds from which a message may not have been returned yet: the date of the
    /// newest message returned, or (a minute before) when the session began. After VK loses
    /// events (`failed: 1` or `3`) the customers' messages from here on are read again from the
    /// conversations (`missed_since`).
    pub since: i64,
}

impl fmt::Debug for LongPollServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LongPollServer")
            .field("server", &self.server)
            .field("key", &"<redacted>")
            .field("ts", &self.ts)
            .finish()
    }
}

/// One `a_check` answer (§2.3), as something the poller acts on.
#[derive(Clone, Debug, PartialEq)]
pub enum LongPoll {
    /// Events in order; poll next from `ts` with the same server and key.
    Events {
        ts: String,
        events: Vec<InboundEvent>,
    },
    /// `failed: 1`: the history is (partly) lost; continue from this `ts`, there may be a gap.
    HistoryLost { ts: String },
    /// `failed: 2`: the key expired; call `get_long_poll_server` for a new key, keep our `ts`.
    KeyExpired,
    /// `failed: 3`: the session is lost; call `get_long_poll_server` and take its key and `ts`.
    SessionLost,
}

/// How a message answers an earlier one (§2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyTo {
    /// `reply_to`: a community-local message id (what `send` returns), private dialogs.
    MessageId(i64),
    /// `forward` with `is_reply`: a message by its `conversation_message_id`, which works in
    /// group conversations (where `id` is 0) as well as in private ones.
    Conversation { peer_id: i64, cmid: i64 },
}

impl ReplyTo {
    /// Reads a `reply_to_external_id` for a message to `peer_id`: `"{peer_id}:{cmid}"` (an
    /// inbound `external_id`) or a bare message id (an id `send` returned). A message of another
    /// peer cannot be replied to and gives `None`.
    pub fn parse(peer_id: i64, reply_to: &str) -> Option<ReplyTo> {
        match reply_to.split_once(':') {
            Some((peer, cmid)) => {
                let (peer, cmid) = (peer.parse::<i64>().ok()?, cmid.parse::<i64>().ok()?);
                if peer != peer_id {
                    tracing::warn!("reply target is in another VK chat; sending without a reply");
                    return None;
                }
                Some(ReplyTo::Conversation { peer_id, cmid })
            }
            None => reply_to.parse().ok().map(ReplyTo::MessageId),
        }
    }
}

/// How far before a session began a message may be and still be read again after a gap.
const CATCH_UP_SLACK_SECS: i64 = 60;

/// Whether two events are the same customer message.
fn same_message(a: &InboundEvent, b: &InboundEvent) -> bool {
    match (a, b) {
        (InboundEvent::Message(a), InboundEvent::Message(b)) => a.external_id == b.external_id,
        _ => false,
    }
}

/// A VK API client for one community token.
#[derive(Clone)]
pub struct VkClient {
    http: reqwest::Client,
    api_base: String,
    token: String,
    group_id: i64,
    /// Where a poller without a stored cursor starts (`SourceSettings::vk_poll_ts`, set by
    /// `setup`): shared by the clones of this client.
    start_ts: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl fmt::Debug for VkClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VkClient")
            .field("api_base", &self.api_base)
            .field("group_id", &self.group_id)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[derive(Deserialize)]
struct Group {
    id: i64,
    name: String,
    screen_name: Option<String>,
}

/// `groups.getById`: a bare list before 5.194, `{groups, profiles}` since.
#[derive(Deserialize)]
#[serde(untagged)]
enum Groups {
    Wrapped { groups: Vec<Group> },
    List(Vec<Group>),
}

#[derive(Deserialize)]
struct RawLongPollServer {
    server: String,
    key: String,
    ts: Value,
}

#[derive(Deserialize)]
struct Code {
    code: String,
}

#[derive(Deserialize)]
struct ServerId {
    server_id: i64,
}

impl VkClient {
    /// `api_base` is `https://api.vk.com` in production (or `https://api.vk.ru`), the fake's
    /// `http://127.0.0.1:PORT` in tests. The token is trimmed (pasted tokens often carry a
    /// newline). Timeouts come from `http`, except for `long_poll`, which sets its own.
    pub fn new(http: reqwest::Client, api_base: &str, group_token: &str, group_id: i64) -> Self {
        VkClient {
            http,
            api_base: api_base.trim_end_matches('/').to_owned(),
            token: group_token.trim().to_owned(),
            group_id,
            start_ts: Default::default(),
        }
    }

    /// The same client whose poller, without a stored cursor, starts at `ts` (the position
    /// taken when the community was connected, `SourceSettings::vk_poll_ts`).
    pub fn with_start_ts(self, ts: Option<String>) -> Self {
        self.set_start_ts(ts);
        self
    }

    fn set_start_ts(&self, ts: Option<String>) {
        if let Ok(mut start) = self.start_ts.lock() {
            *start = ts.filter(|t| !t.is_empty());
        }
    }

    fn start_ts(&self) -> Option<String> {
        self.start_ts.lock().ok().and_then(|s| s.clone())
    }

    /// The community this client speaks for.
    pub fn group_id(&self) -> i64 {
        self.group_id
    }

    /// Checks the token and names its community (`groups.getById` without `group_id` answers
    /// for the token's own community): id, name and `screen_name` as the username. A token of
    /// another community than the configured `group_id` is `Unauthorized`.
    pub async fn get_group(&self) -> Result<Identity, ChannelError> {
        let groups: Groups = self.call("groups.getById", &[]).await?;
        let groups = match groups {
            Groups::Wrapped { groups } | Groups::List(groups) => groups,
        };
        let group = groups.into_iter().next().ok_or_else(|| {
            ChannelError::Permanent("groups.getById: VK named no community".into())
        })?;
        if self.group_id != 0 && group.id != self.group_id {
            return Err(ChannelError::Unauthorized(format!(
                "the token belongs to community {} ({}), not to community {}",
                group.id, group.name, self.group_id
            )));
        }
        Ok(Identity {
            id: group.id.to_string(),
            name: group.name,
            username: group.screen_name.filter(|s| !s.is_empty()),
        })
    }

    /// Sends a text to `chat_external_id` (a peer id), split at `MAX_TEXT` characters into
    /// consecutive messages; only the first part replies to `reply_to_external_id` (see
    /// `ReplyTo::parse`). Part `i` gets `random_id_for(idempotency_key, i)`, so a retry of the
    /// same message returns the same ids instead of sending again (§2.4). Returns VK's
    /// community-local message id per part, in order.
    pub async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError> {
        let peer_id: i64 = m.chat_external_id.trim().parse().map_err(|_| {
            ChannelError::Permanent(format!("not a VK peer id: {:?}", m.chat_external_id))
        })?;
        let parts = split_text(&m.text, MAX_TEXT);
        if parts.is_empty() {
            return Err(ChannelError::Permanent("message text is empty".into()));
        }
        let mut reply_to = m
            .reply_to_external_id
            .as_deref()
            .and_then(|r| ReplyTo::parse(peer_id, r));
        let mut external_ids = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let random_id = match &m.idempotency_key {
                Some(key) => random_id_for(key, i),
                // No key, no dedup wanted: any fresh non-zero id.
                None => rand::random::<i32>().checked_abs().unwrap_or(1).max(1),
            };
            let id = self
                .send_text_part(peer_id, part, random_id, reply_to.take())
                .await?;
            external_ids.push(id.to_string());
        }
        Ok(Sent { external_ids })
    }

    /// One `messages.send` (§2.4); returns the message id. A repeat with the same non-zero
    /// `random_id` returns the first message's id and sends nothing.
    pub async fn send_text_part(
        &self,
        peer_id: i64,
        text: &str,
        random_id: i32,
        reply_to: Option<ReplyTo>,
    ) -> Result<i64, ChannelError> {
        let mut params = vec![
            ("peer_id", peer_id.to_string()),
            ("random_id", random_id.to_string()),
            ("message", text.to_owned()),
        ];
        push_reply(&mut params, reply_to);
        self.call("messages.send", &params).await
    }

    /// `groups.getCallbackConfirmationCode` (§2.2): the string a callback server answers to a
    /// `confirmation` request. It changes when servers are added or edited.
    pub async fn get_callback_confirmation_code(&self) -> Result<String, ChannelError> {
        let code: Code = self
            .call(
                "groups.getCallbackConfirmationCode",
                &[("group_id", self.group_id.to_string())],
            )
            .await?;
        Ok(code.code)
    }

    /// `groups.addCallbackServer` (§2.2): registers `url` with our `secret_key`; returns the
    /// server id for `set_callback_settings`. VK keeps at most 10 servers per community.
    pub async fn add_callback_server(
        &self,
        url: &str,
        title: &str,
        secret_key: &str,
    ) -> Result<i64, ChannelError> {
        let id: ServerId = self
            .call(
                "groups.addCallbackServer",
                &[
                    ("group_id", self.group_id.to_string()),
                    ("url", url.to_owned()),
                    ("title", title.to_owned()),
                    ("secret_key", secret_key.to_owned()),
                ],
            )
            .await?;
        Ok(id.server_id)
    }

    /// `groups.setCallbackSettings` (§2.2): our API version and `EVENT_TYPES` on, for server
    /// `server_id`.
    pub async fn set_callback_settings(&self, server_id: i64) -> Result<(), ChannelError> {
        let mut params = vec![
            ("group_id", self.group_id.to_string()),
            ("server_id", server_id.to_string()),
            ("api_version", API_VERSION.to_owned()),
        ];
        params.extend(EVENT_TYPES.iter().map(|t| (*t, "1".to_owned())));
        let _: Value = self.call("groups.setCallbackSettings", &params).await?;
        Ok(())
    }

    /// `groups.deleteCallbackServer` (§2.2): VK stops posting the community's events to
    /// server `server_id`.
    pub async fn delete_callback_server(&self, server_id: i64) -> Result<(), ChannelError> {
        let _: Value = self
            .call(
                "groups.deleteCallbackServer",
                &[
                    ("group_id", self.group_id.to_string()),
                    ("server_id", server_id.to_string()),
                ],
            )
            .await?;
        Ok(())
    }

    /// `groups.setLongPollSettings` (§2.3): Long Poll on (or off) with our API version and
    /// `EVENT_TYPES`.
    pub async fn set_long_poll_settings(&self, enabled: bool) -> Result<(), ChannelError> {
        let mut params = vec![
            ("group_id", self.group_id.to_string()),
            ("enabled", u8::from(enabled).to_string()),
            ("api_version", API_VERSION.to_owned()),
        ];
        params.extend(EVENT_TYPES.iter().map(|t| (*t, "1".to_owned())));
        let _: Value = self.call("groups.setLongPollSettings", &params).await?;
        Ok(())
    }

    /// `groups.getLongPollServer` (§2.3): a fresh key and the current `ts`.
    pub async fn get_long_poll_server(&self) -> Result<LongPollServer, ChannelError> {
        let raw: RawLongPollServer = self
            .call(
                "groups.getLongPollServer",
                &[("group_id", self.group_id.to_string())],
            )
            .await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Ok(LongPollServer {
            server: raw.server,
            key: raw.key,
            ts: ts_string(&raw.ts)
                .ok_or_else(|| ChannelError::Permanent("groups.getLongPollServer: no ts".into()))?,
            since: now - CATCH_UP_SLACK_SECS,
        })
    }

    /// One `a_check` (§2.3) waiting up to `wait_secs` (clamped to 1..=90) for events. The HTTP
    /// timeout is `wait_secs` + 10 s so an idle poll ends with VK's empty answer, not ours.
    pub async fn long_poll(
        &self,
        server: &str,
        key: &str,
        ts: &str,
        wait_secs: u32,
    ) -> Result<LongPoll, ChannelError> {
        let wait = wait_secs.clamp(1, MAX_LONG_POLL_WAIT_SECS);
        let server = if server.contains("://") {
            server.to_owned()
        } else {
            // Older answers name the server without a scheme.
            format!("https://{server}")
        };
        let mut url = url::Url::parse(&server)
            .map_err(|_| ChannelError::Permanent("long poll: the server is not a URL".into()))?;
        url.query_pairs_mut()
            .append_pair("act", "a_check")
            .append_pair("key", key)
            .append_pair("ts", ts)
            .append_pair("wait", &wait.to_string());
        let timeout = Duration::from_secs(u64::from(wait) + LONG_POLL_MARGIN_SECS);
        let result = async {
            let resp = self
                .http
                .get(url)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| transport_error("long poll", e))?;
            let status = resp.status().as_u16();
            let body = resp
                .bytes()
                .await
                .map_err(|e| transport_error("long poll", e))?;
            parse_long_poll(status, &body, self.group_id)
        }
        .await;
        result.map_err(|e| scrub(e, &[&self.token, key]))
    }

    /// Polls `session` once and acts on `failed` codes as §2.3 says (new `ts`; new key keeping
    /// `ts`; new key and `ts`), polling again after each, at most three times. Returns the
    /// events of the first good answer (possibly none) with `session.ts` moved past them; the
    /// caller stores `session.ts` as its cursor.
    pub async fn poll(
        &self,
        session: &mut LongPollServer,
        wait_secs: u32,
    ) -> Result<Vec<InboundEvent>, ChannelError> {
        let mut gap_since = None;
        for _ in 0..3 {
            match self
                .long_poll(&session.server, &session.key, &session.ts, wait_secs)
                .await?
            {
                LongPoll::Events { ts, mut events } => {
                    if let Some(since) = gap_since {
                        // What VK lost, read again from the conversations, before what the
                        // new session brought.
                        let mut missed = self.missed_since(since).await?;
                        missed.retain(|m| !events.iter().any(|e| same_message(e, m)));
                        missed.append(&mut events);
                        events = missed;
                    }
                    session.ts = ts;
                    let newest = events.iter().filter_map(|e| match e {
                        InboundEvent::Message(m) => Some(m.sent_at / 1000),
                        _ => None,
                    });
                    session.since = newest.fold(session.since, i64::max);
                    return Ok(events);
                }
                LongPoll::HistoryLost { ts } => {
                    tracing::warn!(
                        "VK long poll history lost: reading the gap from the conversations"
                    );
                    gap_since.get_or_insert(session.since);
                    session.ts = ts;
                }
                LongPoll::KeyExpired => {
                    let fresh = self.get_long_poll_server().await?;
                    session.server = fresh.server;
                    session.key = fresh.key;
                }
                LongPoll::SessionLost => {
                    gap_since.get_or_insert(session.since);
                    let since = session.since;
                    *session = self.get_long_poll_server().await?;
                    session.since = since;
                }
            }
        }
        Err(ChannelError::Transient(
            "long poll: VK kept failing the session".into(),
        ))
    }

    /// Downloads an attachment by the URL VK gave for it (`Attachment::file_ref`). No token is
    /// sent: VK's file URLs carry their own access hash.
    pub async fn download(&self, url: &str) -> Result<Download, ChannelError> {
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ChannelError::Permanent("download: not an http(s) URL".into()))?;
        let file_name = parsed
            .path_segments()
            .and_then(|mut s| s.next_back())
            .filter(|n| n.contains('.'))
            .map(str::to_owned);
        let result = async {
            let resp = self
                .http
                .get(parsed)
                .send()
                .await
                .map_err(|e| transport_error("download", e))?;
            let status = resp.status().as_u16();
            if !resp.status().is_success() {
                return Err(http_status_error("download", status));
            }
            let mime_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
            Ok(Download {
                bytes: read_limited(resp, MAX_DOWNLOAD_BYTES).await?,
                mime_type,
                file_name,
            })
        }
        .await;
        result.map_err(|e| scrub(e, &[&self.token]))
    }

    fn post(&self, method: &str) -> RequestBuilder {
        self.http.post(format!("{}/method/{method}", self.api_base))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: &[(&str, String)],
    ) -> Result<T, ChannelError> {
        let mut form: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        form.push(("access_token", &self.token));
        form.push(("v", API_VERSION));
        let req = self.post(method).form(&form);
        let result = async {
            let resp = req.send().await.map_err(|e| transport_error(method, e))?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(|e| transport_error(method, e))?;
            decode(method, status, &body)
        }
        .await;
        result.map_err(|e| scrub(e, &[&self.token]))
    }
}

#[async_trait::async_trait]
impl crate::Channel for VkClient {
    async fn identify(&self) -> Result<Identity, ChannelError> {
        self.get_group().await
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError> {
        VkClient::send(self, m).await
    }

    async fn download(&self, file_ref: &str) -> Result<Download, ChannelError> {
        VkClient::download(self, file_ref).await
    }
}

/// Adds how a `messages.send` answers an earlier message (§2.4): `reply_to` by message id, or
/// `forward` with `is_reply` by `conversation_message_id`.
fn push_reply(params: &mut Vec<(&str, String)>, reply_to: Option<ReplyTo>) {
    match reply_to {
        Some(ReplyTo::MessageId(id)) => params.push(("reply_to", id.to_string())),
        Some(ReplyTo::Conversation { peer_id, cmid }) => params.push((
            "forward",
            json!({"peer_id": peer_id, "conversation_message_ids": [cmid], "is_reply": true})
                .to_string(),
        )),
        None => {}
    }
}

/// The `random_id` of part `part` of the message with idempotency key `key`: FNV-1a over both,
/// folded to a positive 31-bit number (VK's `random_id` is at least an int32, and 0 would switch
/// the dedup off). The same inputs give the same id in every process and version.
pub fn random_id_for(key: &str, part: usize) -> i32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let bytes = key
        .as_bytes()
        .iter()
        .copied()
        .chain([0xff])
        .chain((part as u64).to_le_bytes());
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(PRIME);
    }
    let folded = ((hash >> 32) ^ hash) & 0x7fff_ffff;
    // Lossless: masked to 31 bits.
    i32::try_from(folded).unwrap_or(1).max(1)
}

/// VK's section of the configuration (`[vk]`).
#[derive(Clone, Debug)]
pub struct Config {
    /// VK API base URL (`https://api.vk.com`).
    pub api_base: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_base: "https://api.vk.com".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "vk1.a.SecretCommunityToken_0123456789abcdef";

    #[test]
    fn debug_hides_the_token_and_the_long_poll_key() {
        let c = VkClient::new(
            reqwest::Client::new(),
            "https://api.vk.com/",
            TOKEN,
            214167102,
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("SecretCommunityToken"), "{dbg}");
        assert!(
            dbg.contains("214167102") && dbg.contains("https://api.vk.com\""),
            "{dbg}"
        );
        let s = LongPollServer {
            server: "https://lp.vk.com/whp/1".into(),
            key: "sessionkey123".into(),
            ts: "7".into(),
            since: 0,
        };
        assert!(!format!("{s:?}").contains("sessionkey123"));
    }

    #[test]
    fn random_ids_are_stable_positive_and_differ_by_part() {
        let a = random_id_for("msg-0195f7a2", 0);
        assert_eq!(a, random_id_for("msg-0195f7a2", 0));
        assert!(a > 0);
        assert_ne!(a, random_id_for("msg-0195f7a2", 1));
        assert_ne!(a, random_id_for("msg-0195f7a3", 0));
        assert!((0..1000).all(|i| random_id_for(&format!("k{i}"), i) > 0));
    }

    #[test]
    fn replies_by_cmid_in_the_same_peer_or_by_message_id() {
        assert_eq!(
            ReplyTo::parse(2000000001, "2000000001:42"),
            Some(ReplyTo::Conversation {
                peer_id: 2000000001,
                cmid: 42
            })
        );
        assert_eq!(
            ReplyTo::parse(612444319, "513"),
            Some(ReplyTo::MessageId(513))
        );
        assert_eq!(ReplyTo::parse(612444319, "1:2"), None);
        assert_eq!(ReplyTo::parse(612444319, "x"), None);
    }

    #[test]
    fn scrub_removes_every_secret_from_every_class() {
        for e in [
            ChannelError::Transient(format!("a {TOKEN} b")),
            ChannelError::Permanent(format!("key=lpkey&{TOKEN}")),
            ChannelError::Unauthorized(TOKEN.into()),
            ChannelError::RateLimited {
                retry_after_secs: 1,
                message: "lpkey".into(),
            },
        ] {
            let s = scrub(e, &[TOKEN, "lpkey", ""]).to_string();
            assert!(!s.contains(TOKEN) && !s.contains("lpkey"), "{s}");
        }
    }
}
