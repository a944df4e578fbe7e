//! The amoCRM Chats API, "amojo" (§4): signed requests (§4.2), connecting the channel to an
//! account (§4.3), chats (§4.4), messages into amoCRM (§4.5), delivery statuses (§4.7), and the
//! outgoing-message webhook that brings managers' replies (§4.6).
//!
//! Every request is signed with the channel secret over method, Content-MD5, Content-Type,
//! Date and path; the body is serialised once and those exact bytes are hashed and sent.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use sha1::Sha1;

use super::{transport_error, HookError};
use crate::{
    ChatDirection, ChatMessage, ChatParty, ChatSent, Clock, CrmError, CrmReply, DeliveryFailure,
    DeliveryStatus,
};

/// The Chats API host for amocrm.ru accounts (§0).
pub const AMOJO_RU: &str = "https://amojo.amocrm.ru";
/// The only content type amojo accepts.
pub const CONTENT_TYPE: &str = "application/json";

/// Lowercase hex MD5 of the exact body bytes (`d41d8cd98f00b204e9800998ecf8427e` for none).
pub fn content_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// `METHOD\nContent-MD5\nContent-Type\nDate\npath` (§4.2): no trailing newline, `path` without
/// scheme, host or query.
pub fn string_to_sign(
    method: &str,
    content_md5: &str,
    content_type: &str,
    date: &str,
    path: &str,
) -> String {
    format!(
        "{}\n{content_md5}\n{content_type}\n{date}\n{path}",
        method.to_ascii_uppercase()
    )
}

/// Lowercase hex HMAC-SHA1 keyed by the channel secret's ASCII bytes.
pub fn hmac_sha1_hex(secret: &str, msg: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// The `Date` header (§4.2): RFC 2822 in UTC with a two-digit day, as amoCRM's own examples
/// and PHP's `date('r')` write it (`Thu, 29 Oct 2020 11:59:55 +0000`).
pub fn rfc2822_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// The headers of one signed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeaders {
    pub date: String,
    pub content_type: &'static str,
    pub content_md5: String,
    pub signature: String,
}

/// Signs a request (§4.2); `date` in RFC 2822 (`Thu, 29 Oct 2020 11:59:55 +0000`).
pub fn sign(secret: &str, method: &str, path: &str, body: &[u8], date: &str) -> SignedHeaders {
    let md5 = content_md5(body);
    let sts = string_to_sign(method, &md5, CONTENT_TYPE, date, path);
    SignedHeaders {
        date: date.to_owned(),
        content_type: CONTENT_TYPE,
        signature: hmac_sha1_hex(secret, sts.as_bytes()),
        content_md5: md5,
    }
}

/// Checks the `X-Signature` of an outgoing-message webhook (§4.6): HMAC-SHA1 of the raw body,
/// compared in constant time. Bodies with trailing whitespace are also accepted signed without
/// it, as community validators do.
pub fn verify_webhook(secret: &str, body: &[u8], signature: &str) -> Result<(), HookError> {
    let sig = hex::decode(signature.trim()).map_err(|_| HookError::BadSignature)?;
    let check = |msg: &[u8]| {
        let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(msg);
        mac.verify_slice(&sig).is_ok()
    };
    let trimmed = body.trim_ascii_end();
    if check(body) || (trimmed.len() != body.len() && check(trimmed)) {
        Ok(())
    } else {
        Err(HookError::BadSignature)
    }
}

/// What an amojo webhook carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatsHook {
    /// A manager (or Salesbot) wrote to the customer.
    Reply(Box<CrmReply>),
    /// Typing, reactions and anything else we do not act on.
    Ignored { reason: String },
}

#[derive(Deserialize)]
struct HookBody {
    account_id: Option<String>,
    message: Option<HookMessage>,
    action: Option<Value>,
}

#[derive(Deserialize)]
struct HookMessage {
    receiver: Option<HookPerson>,
    sender: Option<HookPerson>,
    conversation: Option<HookConversation>,
    source: Option<HookSource>,
    #[serde(default)]
    timestamp: i64,
    msec_timestamp: Option<i64>,
    message: Option<HookContent>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HookPerson {
    id: String,
    client_id: Option<String>,
    name: String,
    phone: Option<String>,
}

#[derive(Deserialize)]
struct HookConversation {
    id: String,
    client_id: Option<String>,
}

#[derive(Deserialize)]
struct HookSource {
    external_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HookContent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    text: String,
    media: String,
    file_name: String,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// Parses a verified amojo webhook body (§4.6) into a neutral reply.
pub fn parse_webhook(body: &[u8]) -> Result<ChatsHook, HookError> {
    let hook: HookBody = serde_json::from_slice(body)
        .map_err(|e| HookError::Malformed(format!("not a Chats API hook: {e}")))?;
    let account_ref = non_empty(hook.account_id)
        .ok_or_else(|| HookError::Malformed("account_id is missing".into()))?;
    let Some(m) = hook.message else {
        let reason = match hook
            .action
            .as_ref()
            .and_then(Value::as_object)
            .and_then(|a| a.keys().next())
        {
            Some(k) => format!("action {k}"),
            None => "no message".to_owned(),
        };
        return Ok(ChatsHook::Ignored { reason });
    };
    let conversation = m
        .conversation
        .ok_or_else(|| HookError::Malformed("message.conversation is missing".into()))?;
    let content = m
        .message
        .ok_or_else(|| HookError::Malformed("message.message is missing".into()))?;
    if conversation.id.is_empty() || content.id.is_empty() {
        return Err(HookError::Malformed(
            "conversation.id and message.id are required".into(),
        ));
    }
    let sender = m.sender.unwrap_or_default();
    let receiver = m.receiver.unwrap_or_default();
    Ok(ChatsHook::Reply(Box::new(CrmReply {
        account_ref,
        conversation_ref: conversation.id,
        conversation_id: non_empty(conversation.client_id),
        customer_id: non_empty(receiver.client_id),
        customer_name: receiver.name,
        customer_phone: non_empty(receiver.phone),
        msgid: content.id,
        kind: if content.kind.is_empty() {
            "text".to_owned()
        } else {
            content.kind
        },
        text: content.text,
        media: non_empty(Some(content.media)),
        file_name: non_empty(Some(content.file_name)),
        manager_ref: sender.id,
        manager_name: sender.name,
        source_external_id: m.source.and_then(|s| non_empty(s.external_id)),
        sent_at_ms: m.msec_timestamp.unwrap_or(m.timestamp.saturating_mul(1000)),
    })))
}

/// The answer to `connect` (§4.3).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ChannelConnection {
    /// The account's amojo id.
    pub account_id: String,
    /// `{channel_id}_{amojo_id}`: the path segment of every later call; store it.
    pub scope_id: String,
    #[serde(default)]
    pub title: Option<String>,
}

/// The answer to `create_chat` (§4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedChat {
    /// The amojo chat id (what `/api/v4/contacts/chats` links).
    pub conversation_ref: String,
    /// The customer's amojo user id.
    pub user_ref: String,
}

/// A Chats API client for one registered channel. `Debug` never shows the secret.
#[derive(Clone)]
pub struct ChatsClient {
    http: reqwest::Client,
    base_url: String,
    channel_id: String,
    secret: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for ChatsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatsClient")
            .field("base_url", &self.base_url)
            .field("channel_id", &self.channel_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn party_json(p: &ChatParty) -> Value {
    let mut o = json!({ "id": p.id, "name": p.name });
    if let Some(r) = &p.ref_id {
        o["ref_id"] = json!(r);
    }
    if let Some(a) = &p.avatar {
        o["avatar"] = json!(a);
    }
    let mut profile = serde_json::Map::new();
    if let Some(phone) = &p.phone {
        profile.insert("phone".into(), json!(phone));
    }
    if let Some(email) = &p.email {
        profile.insert("email".into(), json!(email));
    }
    if !profile.is_empty() {
        o["profile"] = Value::Object(profile);
    }
    if let Some(l) = &p.profile_link {
        o["profile_link"] = json!(l);
    }
    o
}

/// The `new_message` body (§4.5): no `receiver` for the customer's own messages; for ours the
/// customer is the receiver and the sender is the manager or the channel bot.
pub fn new_message_body(m: &ChatMessage) -> Value {
    let mut payload = json!({
        "timestamp": m.sent_at_ms.div_euclid(1000),
        "msec_timestamp": m.sent_at_ms,
        "msgid": m.msgid,
        "conversation_id": m.conversation_id,
        "sender": party_json(&m.sender),
        "message": { "type": "text", "text": m.text },
        "silent": m.silent,
    });
    // A file goes as its own type with the URL amoCRM downloads it from; `file_name` and
    // `file_size` are required for files, videos and pictures (§4.5), sent for every kind.
    if let Some(f) = &m.media {
        payload["message"] = json!({
            "type": f.kind.as_str(),
            "text": m.text,
            "media": f.url,
            "file_name": f.file_name,
            "file_size": f.file_size,
        });
    }
    if let Some(r) = &m.conversation_ref {
        payload["conversation_ref_id"] = json!(r);
    }
    if let ChatDirection::ToCustomer { customer } = &m.direction {
        payload["receiver"] = party_json(customer);
    }
    if let Some(s) = &m.source_external_id {
        payload["source"] = json!({ "external_id": s });
    }
    json!({ "event_type": "new_message", "payload": payload })
}

/// The delivery-status body (§4.7). The docs' table says `status_code`, their example and the
/// SDKs `delivery_status`: we send `delivery_status`.
pub fn delivery_status_body(message_ref: &str, status: &DeliveryStatus) -> Value {
    match status {
        DeliveryStatus::Delivered => json!({ "msgid": message_ref, "delivery_status": 1 }),
        DeliveryStatus::Read => json!({ "msgid": message_ref, "delivery_status": 2 }),
        DeliveryStatus::Failed { reason, text } => {
            let code = match reason {
                DeliveryFailure::ConversationDeleted => 901,
                DeliveryFailure::ChannelDisabled => 902,
                DeliveryFailure::Internal => 903,
                DeliveryFailure::CannotCreateConversation => 904,
                DeliveryFailure::Other => 905,
            };
            // `error` is required and shown to the manager.
            let text = if text.trim().is_empty() {
                "not delivered"
            } else {
                text.as_str()
            };
            json!({ "msgid": message_ref, "delivery_status": -1, "error_code": code, "error": text })
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AmojoError {
    error_type: Option<String>,
    error_description: Option<String>,
}

/// Classifies a failed amojo answer (§4.2 errors): 403 is a refused signature (wrong secret or
/// a clock more than 15 minutes off), 404 an unknown channel or message; both `Permanent`.
pub fn classify(status: u16, body: &[u8], retry_after: Option<u64>) -> CrmError {
    let e: AmojoError = serde_json::from_slice(body).unwrap_or_default();
    let said = [e.error_type.as_deref(), e.error_description.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
    let said = if said.is_empty() {
        format!("HTTP {status}")
    } else {
        said
    };
    match status {
        429 => CrmError::RateLimited {
            retry_after_secs: retry_after.unwrap_or(1),
            message: format!("amoCRM chats: too many requests ({said})"),
        },
        500..=599 => CrmError::Transient(format!("amoCRM chats server error ({said})")),
        403 => CrmError::permanent(format!(
            "amoCRM chats refused the request signature ({said}): check the channel secret and the server clock"
        )),
        404 => CrmError::permanent(format!(
            "amoCRM chats does not know this channel, chat or message ({said})"
        )),
        _ => CrmError::permanent(format!("amoCRM chats refused the request ({said})")),
    }
}

impl ChatsClient {
    /// `base_url` is `AMOJO_RU` in production; `channel_id` and `secret` are what amoCRM support
    /// issued for our channel.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        channel_id: &str,
        secret: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        ChatsClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            channel_id: channel_id.trim().to_owned(),
            secret: secret.trim().to_owned(),
            clock,
        }
    }

    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// Checks an incoming webhook's `X-Signature` against this channel's secret.
    pub fn verify_webhook(&self, body: &[u8], signature: &str) -> Result<(), HookError> {
        verify_webhook(&self.secret, body, signature)
    }

    /// One signed request; `Ok(None)` for an empty answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, CrmError> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b)
                .map_err(|e| CrmError::permanent(format!("serialising: {e}")))?,
            None => Vec::new(),
        };
        let url = format!("{}{path}", self.base_url);
        // The signed path is the URL's whole path, so a base URL with a prefix still signs right.
        let signed_path = url::Url::parse(&url)
            .map_err(|e| CrmError::permanent(format!("bad Chats API URL: {e}")))?
            .path()
            .to_owned();
        let date = rfc2822_date(self.clock.now());
        let h = sign(&self.secret, method.as_str(), &signed_path, &bytes, &date);
        let what = format!("{method} {path}");
        let resp = self
            .http
            .request(method, url)
            .header("Date", h.date)
            .header("Content-Type", h.content_type)
            .header("Content-MD5", h.content_md5)
            .header("X-Signature", h.signature)
            .body(bytes)
            .send()
            .await
            .map_err(|e| transport_error(&what, e))?;
        let status = resp.status().as_u16();
        let retry_after = super::api::retry_after(resp.headers());
        let body = resp.bytes().await.map_err(|e| transport_error(&what, e))?;
        if !(200..300).contains(&status) {
            return Err(classify(status, &body, retry_after));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| CrmError::permanent(format!("{what}: unexpected answer: {e}")))
    }

    /// Connects the channel to an account (§4.3), by its amojo id; call after every
    /// (re)install. Always asks for hook API v2.
    pub async fn connect(
        &self,
        amojo_account_id: &str,
        title: &str,
    ) -> Result<ChannelConnection, CrmError> {
        let body = json!({
            "account_id": amojo_account_id,
            "title": title,
            "hook_api_version": "v2",
            "is_time_window_disabled": false,
        });
        let v = self
            .call(
                Method::POST,
                &format!("/v2/origin/custom/{}/connect", self.channel_id),
                Some(&body),
            )
            .await?
            .ok_or_else(|| CrmError::permanent("connect: empty answer"))?;
        serde_json::from_value(v)
            .map_err(|e| CrmError::permanent(format!("connect: unexpected answer: {e}")))
    }

    /// Disconnects the channel from an account (§4.3).
    pub async fn disconnect(&self, amojo_account_id: &str) -> Result<(), CrmError> {
        let body = json!({ "account_id": amojo_account_id });
        self.call(
            Method::DELETE,
            &format!("/v2/origin/custom/{}/disconnect", self.channel_id),
            Some(&body),
        )
        .await?;
        Ok(())
    }

    /// Creates (or returns, idempotent per `conversation_id`) a chat without a message (§4.4).
    pub async fn create_chat(
        &self,
        scope_id: &str,
        conversation_id: &str,
        source_external_id: Option<&str>,
        user: &ChatParty,
    ) -> Result<CreatedChat, CrmError> {
        let mut body = json!({ "conversation_id": conversation_id, "user": party_json(user) });
        if let Some(s) = source_external_id {
            body["source"] = json!({ "external_id": s });
        }
        let v = self
            .call(
                Method::POST,
                &format!("/v2/origin/custom/{scope_id}/chats"),
                Some(&body),
            )
            .await?
            .ok_or_else(|| CrmError::permanent("create chat: empty answer"))?;
        match (v["id"].as_str(), v["user"]["id"].as_str()) {
            (Some(id), Some(user)) => Ok(CreatedChat {
                conversation_ref: id.to_owned(),
                user_ref: user.to_owned(),
            }),
            _ => Err(CrmError::permanent(
                "create chat: the answer has no chat id",
            )),
        }
    }

    /// Sends a message into amoCRM (§4.5); accepted for asynchronous processing.
    pub async fn send_message(
        &self,
        scope_id: &str,
        message: &ChatMessage,
    ) -> Result<ChatSent, CrmError> {
        let body = new_message_body(message);
        let v = self
            .call(
                Method::POST,
                &format!("/v2/origin/custom/{scope_id}"),
                Some(&body),
            )
            .await?
            .ok_or_else(|| CrmError::permanent("new_message: empty answer"))?;
        let m = &v["new_message"];
        let (Some(chat), Some(msgid)) = (m["conversation_id"].as_str(), m["msgid"].as_str()) else {
            return Err(CrmError::permanent("new_message: the answer has no ids"));
        };
        // The docs say `msgid` is amojo's id and `ref_id` ours; one SDK reads them the other
        // way round (§7.3), so whichever is not our own id is amojo's.
        let message_ref = match m["ref_id"].as_str() {
            Some(r) if msgid == message.msgid && r != message.msgid => r,
            _ => msgid,
        };
        Ok(ChatSent {
            conversation_ref: chat.to_owned(),
            message_ref: message_ref.to_owned(),
        })
    }

    /// Reports what happened to a manager's message (§4.7).
    pub async fn delivery_status(
        &self,
        scope_id: &str,
        message_ref: &str,
        status: &DeliveryStatus,
    ) -> Result<(), CrmError> {
        let body = delivery_status_body(message_ref, status);
        self.call(
            Method::POST,
            &format!("/v2/origin/custom/{scope_id}/{message_ref}/delivery_status"),
            Some(&body),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "5a44c5dff55f3c15a4cce8d7c4cc27e207c7e189";

    #[test]
    fn signs_the_official_post_vector() {
        let body = br#"{"account_id":"af9945ff-1490-4cad-807d-945c15d88bec","title":"ScopeTitle","hook_api_version":"v2"}"#;
        let h = sign(
            SECRET,
            "post",
            "/v2/origin/custom/f90ba33d-c9d9-44da-b76c-c349b0ecbe41/connect",
            body,
            "Thu, 29 Oct 2020 11:59:55 +0000",
        );
        assert_eq!(h.content_md5, "a5e8ae04332a6d0aac15f01ad05d40e3");
        assert_eq!(h.signature, "e0dcc1936d766a7d5f53fe19887fafa50bef92e0");
        assert_eq!(h.content_type, "application/json");
    }

    #[test]
    fn signs_the_get_vector_with_the_empty_body_md5() {
        let h = sign(
            SECRET,
            "GET",
            "/v2/origin/custom/f90ba33d-c9d9-44da-b76c-c349b0ecbe41_af9945ff-1490-4cad-807d-945c15d88bec/chats/6cbab3d5-c4c1-46ff-b710-ad59ad10805f/history",
            b"",
            "Thu, 29 Oct 2020 12:00:00 +0000",
        );
        assert_eq!(h.content_md5, "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(h.signature, "45f62b19780e133526d67e7506b9db514abc33d5");
    }

    /// Own vector, computed by hand from §4.2 with Python's hashlib.md5 and
    /// hmac.new(secret, sts, hashlib.sha1): secret `0123456789abcdef0123456789abcdef01234567`,
    /// `DELETE`, body `{"account_id":"acc"}` → MD5 `9e14a6e03bbae531a1ae7f7f4e2ec24c`;
    /// date `Mon, 01 Jan 2024 00:00:00 +0000`; path `/v2/origin/custom/chan/disconnect`;
    /// StringToSign = "DELETE\n9e14…c24c\napplication/json\nMon, 01 Jan 2024 00:00:00 +0000\n
    /// /v2/origin/custom/chan/disconnect" → `b1bb7da90aa99c2bdb6926c5196e79645daeef25`.
    #[test]
    fn signs_an_own_delete_vector() {
        let sts = string_to_sign(
            "delete",
            "md5",
            "application/json",
            "Mon, 01 Jan 2024 00:00:00 +0000",
            "/p",
        );
        assert_eq!(
            sts,
            "DELETE\nmd5\napplication/json\nMon, 01 Jan 2024 00:00:00 +0000\n/p"
        );
        let h = sign(
            "0123456789abcdef0123456789abcdef01234567",
            "DELETE",
            "/v2/origin/custom/chan/disconnect",
            br#"{"account_id":"acc"}"#,
            "Mon, 01 Jan 2024 00:00:00 +0000",
        );
        assert_eq!(h.content_md5, "9e14a6e03bbae531a1ae7f7f4e2ec24c");
        assert_eq!(h.signature, "b1bb7da90aa99c2bdb6926c5196e79645daeef25");
    }

    #[test]
    fn dates_are_rfc2822_with_a_two_digit_day() {
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("valid")
                .with_timezone(&chrono::Utc)
        };
        assert_eq!(
            rfc2822_date(t("2020-10-29T11:59:55Z")),
            "Thu, 29 Oct 2020 11:59:55 +0000"
        );
        assert_eq!(
            rfc2822_date(t("2024-01-01T03:00:00+03:00")),
            "Mon, 01 Jan 2024 00:00:00 +0000"
        );
    }

    fn hook_json() -> String {
        r#"{"account_id":"af9945ff-1490-4cad-807d-945c15d88bec","time":1700000100,
 "message":{"receiver":{"id":"2b1a6e0c-0000-4000-8000-000000000001","client_id":"tg-u-987654321","name":"Ivan","phone":"79991234567","email":""},
  "sender":{"id":"8f3c0e0c-0000-4000-8000-000000000002","name":"Manager"},
  "conversation":{"id":"6cbab3d5-c4c1-46ff-b710-ad59ad10805f","client_id":"tg-987654321"},
  "source":{"external_id":"tg-acme"},
  "timestamp":1700000100,"msec_timestamp":1700000100456,
  "message":{"id":"0d1e2f3a-0000-4000-8000-000000000003","type":"text","text":"Hello!","tag":"","markup":null,
   "media":"","thumbnail":"","file_name":"","file_size":0}}}"#
            .to_owned()
    }

    #[test]
    fn webhook_signature_is_checked_over_the_raw_body() {
        let body = hook_json();
        let sig = hmac_sha1_hex(SECRET, body.as_bytes());
        assert_eq!(verify_webhook(SECRET, body.as_bytes(), &sig), Ok(()));
        assert_eq!(
            verify_webhook(SECRET, body.as_bytes(), &sig.to_uppercase()),
            Ok(())
        );
        // Signed without the trailing newline the transport added.
        let with_nl = format!("{body}\n");
        assert_eq!(verify_webhook(SECRET, with_nl.as_bytes(), &sig), Ok(()));
        let tampered = body.replace("Hello!", "Hellp!");
        assert_eq!(
            verify_webhook(SECRET, tampered.as_bytes(), &sig),
            Err(HookError::BadSignature)
        );
        assert_eq!(
            verify_webhook("another-secret", body.as_bytes(), &sig),
            Err(HookError::BadSignature)
        );
        assert_eq!(
            verify_webhook(SECRET, body.as_bytes(), "nothex"),
            Err(HookError::BadSignature)
        );
        assert_eq!(
            verify_webhook(SECRET, body.as_bytes(), ""),
            Err(HookError::BadSignature)
        );
    }

    #[test]
    fn webhook_parses_into_a_reply() {
        let hook = parse_webhook(hook_json().as_bytes()).expect("valid");
        assert_eq!(
            hook,
            ChatsHook::Reply(Box::new(CrmReply {
                account_ref: "af9945ff-1490-4cad-807d-945c15d88bec".into(),
                conversation_ref: "6cbab3d5-c4c1-46ff-b710-ad59ad10805f".into(),
                conversation_id: Some("tg-987654321".into()),
                customer_id: Some("tg-u-987654321".into()),
                customer_name: "Ivan".into(),
                customer_phone: Some("79991234567".into()),
                msgid: "0d1e2f3a-0000-4000-8000-000000000003".into(),
                kind: "text".into(),
                text: "Hello!".into(),
                media: None,
                file_name: None,
                manager_ref: "8f3c0e0c-0000-4000-8000-000000000002".into(),
                manager_name: "Manager".into(),
                source_external_id: Some("tg-acme".into()),
                sent_at_ms: 1_700_000_100_456,
            }))
        );
    }

    #[test]
    fn write_first_hook_has_no_client_ids() {
        let body = hook_json()
            .replace(r#","client_id":"tg-u-987654321""#, "")
            .replace(r#","client_id":"tg-987654321""#, "");
        let ChatsHook::Reply(r) = parse_webhook(body.as_bytes()).expect("valid") else {
            panic!("a reply");
        };
        assert_eq!(r.conversation_id, None);
        assert_eq!(r.customer_id, None);
        assert_eq!(r.customer_phone.as_deref(), Some("79991234567"));
    }

    #[test]
    fn typing_hooks_are_ignored_and_garbage_is_malformed() {
        let typing = br#"{"account_id":"a","time":1,"action":{"typing":{"user":{"id":"u"},"conversation":{"id":"c"},"expired_at":6}}}"#;
        assert_eq!(
            parse_webhook(typing),
            Ok(ChatsHook::Ignored {
                reason: "action typing".into()
            })
        );
        assert!(matches!(
            parse_webhook(b"not json"),
            Err(HookError::Malformed(_))
        ));
        assert!(matches!(
            parse_webhook(br#"{"time":1}"#),
            Err(HookError::Malformed(_))
        ));
        let no_conv = br#"{"account_id":"a","message":{"message":{"id":"m","text":"x"}}}"#;
        assert!(matches!(
            parse_webhook(no_conv),
            Err(HookError::Malformed(_))
        ));
    }

    #[test]
    fn new_message_shapes_incoming_and_outgoing() {
        let customer = ChatParty {
            id: "tg-u-987654321".into(),
            name: "Ivan Petrov".into(),
            phone: Some("+79991234567".into()),
            ..ChatParty::default()
        };
        let mut m = ChatMessage {
            conversation_id: "tg-987654321".into(),
            conversation_ref: None,
            msgid: "tg-m-555".into(),
            sender: customer.clone(),
            direction: ChatDirection::FromCustomer,
            text: "Hi, how much?".into(),
            sent_at_ms: 1_700_000_000_123,
            source_external_id: Some("tg-acme".into()),
            silent: false,
            media: None,
        };
        assert_eq!(
            new_message_body(&m),
            json!({"event_type":"new_message","payload":{"timestamp":1700000000,"msec_timestamp":1_700_000_000_123_i64,
                "msgid":"tg-m-555","conversation_id":"tg-987654321",
                "sender":{"id":"tg-u-987654321","name":"Ivan Petrov","profile":{"phone":"+79991234567"}},
                "message":{"type":"text","text":"Hi, how much?"},"source":{"external_id":"tg-acme"},"silent":false}})
        );
        m.sender = ChatParty {
            id: "bot".into(),
            ref_id: Some("bot-amojo-id".into()),
            name: "Chatter".into(),
            ..ChatParty::default()
        };
        m.direction = ChatDirection::ToCustomer { customer };
        m.conversation_ref = Some("6cbab3d5".into());
        let v = new_message_body(&m);
        assert_eq!(v["payload"]["receiver"]["id"], "tg-u-987654321");
        assert_eq!(v["payload"]["sender"]["ref_id"], "bot-amojo-id");
        assert_eq!(v["payload"]["conversation_ref_id"], "6cbab3d5");
        m.media = Some(crate::ChatMedia {
            kind: crate::ChatMediaKind::Picture,
            url: "https://chatter.example/media/x/0?expires=1&sig=ab".into(),
            file_name: "photo.jpg".into(),
            file_size: 1234,
        });
        m.text = "Вот фото".into();
        let v = new_message_body(&m);
        assert_eq!(
            v["payload"]["message"],
            json!({"type":"picture","text":"Вот фото","media":"https://chatter.example/media/x/0?expires=1&sig=ab",
                "file_name":"photo.jpg","file_size":1234})
        );
    }

    #[test]
    fn delivery_failure_carries_code_and_text() {
        let s = DeliveryStatus::Failed {
            reason: DeliveryFailure::Other,
            text: "Telegram: bot was blocked by the user".into(),
        };
        assert_eq!(
            delivery_status_body("m1", &s),
            json!({"msgid": "m1", "delivery_status": -1, "error_code": 905,
                   "error": "Telegram: bot was blocked by the user"})
        );
        assert_eq!(
            delivery_status_body("m1", &DeliveryStatus::Read),
            json!({"msgid": "m1", "delivery_status": 2})
        );
    }

    #[test]
    fn amojo_errors_are_classified() {
        let body = br#"{"status":0,"error_code":403,"error_type":"ORIGIN_INVALID_SIGNATURE","error_description":"invalid signature"}"#;
        let CrmError::Permanent { message, .. } = classify(403, body, None) else {
            panic!("permanent");
        };
        assert!(message.contains("ORIGIN_INVALID_SIGNATURE"), "{message}");
        assert!(matches!(classify(503, b"", None), CrmError::Transient(_)));
        assert!(matches!(
            classify(429, b"", Some(2)),
            CrmError::RateLimited {
                retry_after_secs: 2,
                ..
            }
        ));
    }

    /// Found by fuzzing (`amojo_hook`): a `timestamp` past i64::MAX / 1000 panicked.
    #[test]
    fn a_huge_timestamp_without_msec_does_not_overflow() {
        let body = br#"{"account_id":"a","message":{"conversation":{"id":"c"},
            "timestamp":9223372036854775807,"message":{"id":"m","type":"text","text":"x"}}}"#;
        let Ok(ChatsHook::Reply(r)) = parse_webhook(body) else {
            panic!("a reply");
        };
        assert_eq!(r.sent_at_ms, i64::MAX);
    }
}
