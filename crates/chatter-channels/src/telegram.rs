//! Telegram Bot API (specs/channels.md §1): client, update parsing, webhook secret check.
//!
//! The client speaks `{base}/bot{token}/{method}` with JSON bodies (multipart for uploads) and
//! turns every failure into a `ChannelError` by `classify` (§1.9). The token never appears in
//! `Debug` output or in an error message: reqwest errors are stripped of their URL and every
//! message is scrubbed of the token before it leaves this module.

mod text;
mod update;

use std::fmt;
use std::time::Duration;

use reqwest::multipart::{Form, Part};
use reqwest::RequestBuilder;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{ChannelError, Identity, OutboundMessage, Sent};

pub use text::{new_secret_token, secret_matches, split_text};
pub use update::parse_update;

/// Longest `sendMessage` text, in characters.
pub const MAX_TEXT: usize = 4096;

/// The update types we ask for, in polling and webhook mode alike.
pub const ALLOWED_UPDATES: [&str; 4] = [
    "message",
    "edited_message",
    "my_chat_member",
    "callback_query",
];

/// Files larger than this are refused while downloading (the cloud Bot API serves ≤ 20 MB).
pub const MAX_DOWNLOAD_BYTES: usize = 64 * 1024 * 1024;

/// `retry_after` when a 429 does not say how long to wait.
const DEFAULT_RETRY_AFTER_SECS: u64 = 5;

/// Added to a long poll's `timeout` for the HTTP timeout, so Telegram answers first.
const LONG_POLL_MARGIN_SECS: u64 = 10;

const UNAUTHORIZED: &str =
    "the bot token was revoked or is wrong: create a new token with @BotFather";
const MALFORMED_TOKEN: &str =
    "Telegram does not know this bot token (404 Not Found): check the token from @BotFather";

/// One raw update from `getUpdates`; parse it with `parse_update`, keep `update_id` as the cursor.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub update_id: i64,
    pub raw: Value,
}

/// `getWebhookInfo`, the parts the Sources page shows. `url` is empty when no webhook is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct WebhookInfo {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub pending_update_count: i64,
    pub last_error_date: Option<i64>,
    pub last_error_message: Option<String>,
}

/// `getFile`: `file_path` is what `download` needs (valid for at least an hour).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct FileInfo {
    pub file_id: String,
    pub file_path: Option<String>,
    pub file_size: Option<i64>,
}

/// A Bot API client for one bot token.
#[derive(Clone)]
pub struct TelegramClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl fmt::Debug for TelegramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramClient")
            .field("base_url", &self.base_url)
            .field("bot_id", &self.bot_id())
            .field("token", &"<redacted>")
            .finish()
    }
}

#[derive(Deserialize)]
struct Envelope {
    ok: bool,
    result: Option<Value>,
    error_code: Option<i64>,
    description: Option<String>,
    parameters: Option<ResponseParameters>,
}

#[derive(Deserialize)]
struct ResponseParameters {
    retry_after: Option<u64>,
    migrate_to_chat_id: Option<i64>,
}

#[derive(Deserialize)]
struct User {
    id: i64,
    first_name: String,
    username: Option<String>,
}

#[derive(Deserialize)]
struct MessageId {
    message_id: i64,
}

impl TelegramClient {
    /// `base_url` is `https://api.telegram.org` in production, the fake's `http://127.0.0.1:PORT`
    /// in tests. The token is trimmed (pasted tokens often carry a newline). Timeouts come from
    /// `http`, except for `get_updates`, which sets its own.
    pub fn new(http: reqwest::Client, base_url: &str, token: &str) -> Self {
        TelegramClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
        }
    }

    /// The bot's user id: the numeric prefix of the token (§1.1), if the token has one.
    pub fn bot_id(&self) -> Option<i64> {
        self.token.split_once(':')?.0.parse().ok()
    }

    /// Validates the token and names the bot: `id`, `first_name` as the name, `username`.
    pub async fn get_me(&self) -> Result<Identity, ChannelError> {
        let me: User = self.call("getMe", &json!({})).await?;
        Ok(Identity {
            id: me.id.to_string(),
            name: me.first_name,
            username: me.username,
        })
    }

    /// One long poll (§1.3). `offset` confirms every update below it; the HTTP timeout is
    /// `timeout_secs` + 10 s so an idle poll ends with Telegram's empty answer, not ours.
    pub async fn get_updates(
        &self,
        offset: Option<i64>,
        timeout_secs: u32,
        limit: u32,
    ) -> Result<Vec<Update>, ChannelError> {
        let mut body = json!({
            "timeout": timeout_secs,
            "limit": limit.clamp(1, 100),
            "allowed_updates": ALLOWED_UPDATES,
        });
        if let Some(offset) = offset {
            body["offset"] = json!(offset);
        }
        let http_timeout = Duration::from_secs(u64::from(timeout_secs) + LONG_POLL_MARGIN_SECS);
        let req = self.post("getUpdates").json(&body).timeout(http_timeout);
        let (status, body) = self.send_raw("getUpdates", req).await?;
        parse_get_updates(status, &body).map_err(|e| self.scrub(e))
    }

    /// Switches the bot to webhook mode (§1.4) with our `secret_token`, the same update types as
    /// polling and 40 connections.
    pub async fn set_webhook(&self, url: &str, secret_token: &str) -> Result<(), ChannelError> {
        let body = json!({
            "url": url,
            "secret_token": secret_token,
            "allowed_updates": ALLOWED_UPDATES,
            "max_connections": 40,
        });
        let _: Value = self.call("setWebhook", &body).await?;
        Ok(())
    }

    /// Back to polling; `drop_pending` forgets updates Telegram still holds.
    pub async fn delete_webhook(&self, drop_pending: bool) -> Result<(), ChannelError> {
        let body = json!({ "drop_pending_updates": drop_pending });
        let _: Value = self.call("deleteWebhook", &body).await?;
        Ok(())
    }

    pub async fn get_webhook_info(&self) -> Result<WebhookInfo, ChannelError> {
        self.call("getWebhookInfo", &json!({})).await
    }

    /// Sends a text, split at `MAX_TEXT` characters into consecutive messages; only the first
    /// part replies to `reply_to_external_id` (`"{chat_id}:{message_id}"` of the same chat, or a
    /// bare message id). Returns `"{chat_id}:{message_id}"` per part, in order.
    ///
    /// If a later part fails, the error is returned and the earlier parts stay sent; a caller
    /// that must not repeat them sends part by part with `split_text` + `send_text_part`.
    pub async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError> {
        let parts = split_text(&m.text, MAX_TEXT);
        if parts.is_empty() {
            return Err(ChannelError::Permanent("message text is empty".into()));
        }
        let mut reply_to = m
            .reply_to_external_id
            .as_deref()
            .and_then(|r| reply_message_id(&m.chat_external_id, r));
        let mut external_ids = Vec::with_capacity(parts.len());
        for part in &parts {
            let id = self
                .send_text_part(&m.chat_external_id, part, reply_to.take())
                .await?;
            external_ids.push(format!("{}:{}", m.chat_external_id, id));
        }
        Ok(Sent { external_ids })
    }

    /// One `sendMessage` (§1.6); returns the new message's id. A reply that no longer exists
    /// does not fail the send (`allow_sending_without_reply`).
    pub async fn send_text_part(
        &self,
        chat_id: &str,
        text: &str,
        reply_to_message_id: Option<i64>,
    ) -> Result<i64, ChannelError> {
        let mut body = json!({ "chat_id": chat_id, "text": text });
        if let Some(id) = reply_to_message_id {
            body["reply_parameters"] =
                json!({ "message_id": id, "allow_sending_without_reply": true });
        }
        let sent: MessageId = self.call("sendMessage", &body).await?;
        Ok(sent.message_id)
    }

    /// `sendPhoto` with the image uploaded as multipart (§1.7, ≤ 10 MB); returns the message id.
    pub async fn send_photo(
        &self,
        chat_id: &str,
        bytes: Vec<u8>,
        file_name: &str,
        caption: Option<&str>,
    ) -> Result<i64, ChannelError> {
        let part = Part::bytes(bytes).file_name(file_name.to_owned());
        self.upload("sendPhoto", "photo", chat_id, part, caption)
            .await
    }

    /// `sendDocument` with the file uploaded as multipart (§1.7, ≤ 50 MB); returns the message id.
    pub async fn send_document(
        &self,
        chat_id: &str,
        bytes: Vec<u8>,
        file_name: &str,
        mime: &str,
        caption: Option<&str>,
    ) -> Result<i64, ChannelError> {
        let part = Part::bytes(bytes)
            .file_name(file_name.to_owned())
            .mime_str(mime)
            .map_err(|_| ChannelError::Permanent(format!("not a MIME type: {mime}")))?;
        self.upload("sendDocument", "document", chat_id, part, caption)
            .await
    }

    /// `getFile` (§1.8): where to download a file a customer sent.
    pub async fn get_file(&self, file_id: &str) -> Result<FileInfo, ChannelError> {
        self.call("getFile", &json!({ "file_id": file_id })).await
    }

    /// Downloads `{base}/file/bot{token}/{file_path}` (a `FileInfo::file_path`).
    pub async fn download(&self, file_path: &str) -> Result<bytes::Bytes, ChannelError> {
        let url = format!(
            "{}/file/bot{}/{}",
            self.base_url,
            self.token,
            file_path.trim_start_matches('/')
        );
        let result = self.download_inner(self.http.get(url)).await;
        result.map_err(|e| self.scrub(e))
    }

    async fn download_inner(&self, req: RequestBuilder) -> Result<bytes::Bytes, ChannelError> {
        let mut resp = req
            .send()
            .await
            .map_err(|e| transport_error("download", e))?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(match status {
                // The path expired or never existed; getFile again gives a fresh one.
                404 => ChannelError::Permanent(
                    "download: file not found (call getFile again for a fresh path)".into(),
                ),
                _ => match serde_json::from_slice::<Envelope>(&body) {
                    Ok(env) => envelope_error(status, env),
                    Err(_) => classify(status, None, &format!("download: HTTP {status}"), None),
                },
            });
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOWNLOAD_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| transport_error("download", e))?
        {
            if buf.len() + chunk.len() > MAX_DOWNLOAD_BYTES {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(bytes::Bytes::from(buf))
    }

    async fn upload(
        &self,
        method: &str,
        field: &str,
        chat_id: &str,
        part: Part,
        caption: Option<&str>,
    ) -> Result<i64, ChannelError> {
        let mut form = Form::new()
            .text("chat_id", chat_id.to_owned())
            .part(field.to_owned(), part);
        if let Some(caption) = caption {
            form = form.text("caption", caption.to_owned());
        }
        let sent: MessageId = self
            .send_request(method, self.post(method).multipart(form))
            .await?;
        Ok(sent.message_id)
    }

    fn post(&self, method: &str) -> RequestBuilder {
        self.http
            .post(format!("{}/bot{}/{}", self.base_url, self.token, method))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &Value,
    ) -> Result<T, ChannelError> {
        self.send_request(method, self.post(method).json(body))
            .await
    }

    async fn send_request<T: DeserializeOwned>(
        &self,
        method: &str,
        req: RequestBuilder,
    ) -> Result<T, ChannelError> {
        let (status, body) = self.send_raw(method, req).await?;
        decode(method, status, &body).map_err(|e| self.scrub(e))
    }

    /// Sends `req` and reads the whole answer: its HTTP status and body.
    async fn send_raw(
        &self,
        method: &str,
        req: RequestBuilder,
    ) -> Result<(u16, bytes::Bytes), ChannelError> {
        let result = async {
            let resp = req.send().await.map_err(|e| transport_error(method, e))?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(|e| transport_error(method, e))?;
            Ok((status, body))
        }
        .await;
        result.map_err(|e| self.scrub(e))
    }

    /// Removes the token from an error message, whatever put it there.
    fn scrub(&self, e: ChannelError) -> ChannelError {
        if self.token.is_empty() {
            return e;
        }
        let clean = |s: String| s.replace(&self.token, "<token>");
        match e {
            ChannelError::Transient(m) => ChannelError::Transient(clean(m)),
            ChannelError::RateLimited {
                retry_after_secs,
                message,
            } => ChannelError::RateLimited {
                retry_after_secs,
                message: clean(message),
            },
            ChannelError::Unauthorized(m) => ChannelError::Unauthorized(clean(m)),
            ChannelError::Permanent(m) => ChannelError::Permanent(clean(m)),
        }
    }
}

fn too_large() -> ChannelError {
    ChannelError::Permanent(format!(
        "download: the file is larger than {} MB",
        MAX_DOWNLOAD_BYTES / (1024 * 1024)
    ))
}

/// The message id to reply to, if `reply_to` names a message of `chat_id`.
fn reply_message_id(chat_id: &str, reply_to: &str) -> Option<i64> {
    match reply_to.rsplit_once(':') {
        Some((chat, id)) if chat == chat_id => id.parse().ok(),
        Some(_) => {
            tracing::warn!("reply target is in another chat; sending without a reply");
            None
        }
        None => reply_to.parse().ok(),
    }
}

/// Network trouble of any kind (refused, reset, timed out, body cut off) is worth a retry.
/// The URL (it holds the token) is dropped from the error before it is rendered.
fn transport_error(method: &str, e: reqwest::Error) -> ChannelError {
    let timed_out = e.is_timeout();
    let e = e.without_url();
    let mut msg = format!("{method}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if timed_out && !msg.contains("timed out") {
        msg.push_str(" (timed out)");
    }
    ChannelError::Transient(msg)
}

/// Reads a `getUpdates` answer (§1.3) of HTTP `status`: the raw updates with their ids, or a
/// classified error. Each update is then read by `parse_update`.
pub fn parse_get_updates(status: u16, body: &[u8]) -> Result<Vec<Update>, ChannelError> {
    let raw: Vec<Value> = decode("getUpdates", status, body)?;
    raw.into_iter()
        .map(|raw| match raw.get("update_id").and_then(Value::as_i64) {
            Some(update_id) => Ok(Update { update_id, raw }),
            None => Err(ChannelError::Permanent(
                "getUpdates: an update without update_id".into(),
            )),
        })
        .collect()
}

/// Reads a Bot API answer: `result` on `ok`, a classified error otherwise.
fn decode<T: DeserializeOwned>(method: &str, status: u16, body: &[u8]) -> Result<T, ChannelError> {
    let env: Envelope = match serde_json::from_slice(body) {
        Ok(env) => env,
        // A proxy's HTML error page or a cut-off body: judge by the status alone.
        Err(_) if (200..300).contains(&status) => {
            return Err(ChannelError::Transient(format!(
                "{method}: the answer is not Bot API JSON (HTTP {status})"
            )))
        }
        Err(_) => {
            return Err(classify(
                status,
                None,
                &format!("{method}: HTTP {status}"),
                None,
            ))
        }
    };
    if !env.ok {
        return Err(envelope_error(status, env));
    }
    serde_json::from_value(env.result.unwrap_or(Value::Null)).map_err(|e| {
        // Not retryable: the call may well have taken effect (a message sent).
        ChannelError::Permanent(format!("{method}: unexpected result: {e}"))
    })
}

fn envelope_error(status: u16, env: Envelope) -> ChannelError {
    let description = env.description.unwrap_or_else(|| format!("HTTP {status}"));
    let params = env.parameters;
    let retry_after = params.as_ref().and_then(|p| p.retry_after);
    let migrate_to = params.as_ref().and_then(|p| p.migrate_to_chat_id);
    match classify(status, env.error_code, &description, retry_after) {
        ChannelError::Permanent(m) => match migrate_to {
            Some(id) => ChannelError::Permanent(format!("{m} (migrate_to_chat_id={id})")),
            None => ChannelError::Permanent(m),
        },
        other => other,
    }
}

/// Classifies a Bot API failure (§1.9) by `error_code` (the HTTP status when absent) and the
/// description's prefix:
///
/// | code | class |
/// |---|---|
/// | 401 | `Unauthorized` ("revoked or wrong: create a new token with @BotFather") |
/// | 404 | `Unauthorized`: Telegram answers 404 to a malformed token (getMe's check) |
/// | 429 | `RateLimited` after `retry_after` s (5 s when absent) |
/// | 5xx, any status with a 5xx code | `Transient` |
/// | 400, 403, 409, other 4xx | `Permanent` with Telegram's description |
///
/// A 400 carrying `parameters.migrate_to_chat_id` (a group upgraded to a supergroup) becomes a
/// `Permanent` whose message ends with `(migrate_to_chat_id=<id>)`: the caller rewrites the
/// stored chat id (see `migrate_to_chat_id`) and sends again. Network errors and timeouts never
/// reach here: they are always `Transient`.
pub fn classify(
    status: u16,
    error_code: Option<i64>,
    description: &str,
    retry_after: Option<u64>,
) -> ChannelError {
    let code = error_code.unwrap_or(i64::from(status));
    if status >= 500 || code >= 500 {
        return ChannelError::Transient(description.to_owned());
    }
    match code {
        401 => ChannelError::Unauthorized(UNAUTHORIZED.into()),
        404 => ChannelError::Unauthorized(MALFORMED_TOKEN.into()),
        429 => rate_limited(description, retry_after),
        400..=499 => ChannelError::Permanent(description.to_owned()),
        // Codes Telegram does not document: fall back on the description's prefix.
        _ if description.starts_with("Unauthorized") => {
            ChannelError::Unauthorized(UNAUTHORIZED.into())
        }
        _ if description.starts_with("Too Many Requests") => rate_limited(description, retry_after),
        _ if description.starts_with("Bad Request")
            || description.starts_with("Forbidden")
            || description.starts_with("Conflict") =>
        {
            ChannelError::Permanent(description.to_owned())
        }
        _ => ChannelError::Transient(description.to_owned()),
    }
}

fn rate_limited(description: &str, retry_after: Option<u64>) -> ChannelError {
    ChannelError::RateLimited {
        retry_after_secs: retry_after.unwrap_or(DEFAULT_RETRY_AFTER_SECS),
        message: description.to_owned(),
    }
}

/// The supergroup id a `Permanent` error from `classify` points to, when Telegram said the group
/// was upgraded (§1.9): store it as the chat's new id and send again.
pub fn migrate_to_chat_id(e: &ChannelError) -> Option<i64> {
    let ChannelError::Permanent(m) = e else {
        return None;
    };
    let (_, rest) = m.rsplit_once("(migrate_to_chat_id=")?;
    rest.strip_suffix(')')?.parse().ok()
}

#[async_trait::async_trait]
impl crate::Channel for TelegramClient {
    async fn identify(&self) -> Result<Identity, ChannelError> {
        self.get_me().await
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError> {
        TelegramClient::send(self, m).await
    }

    async fn download(&self, file_ref: &str) -> Result<crate::Download, ChannelError> {
        let info = self.get_file(file_ref).await?;
        let path = info.file_path.ok_or_else(|| {
            ChannelError::Permanent("Telegram gave no file_path (file too big?)".into())
        })?;
        let bytes = TelegramClient::download(self, &path).await?;
        Ok(crate::Download {
            bytes,
            mime_type: None,
            file_name: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

    #[test]
    fn debug_hides_the_token() {
        let c = TelegramClient::new(reqwest::Client::new(), "https://api.telegram.org/", TOKEN);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"), "{dbg}");
        assert!(dbg.contains("123456789"), "{dbg}");
        assert!(dbg.contains("https://api.telegram.org"), "{dbg}");
    }

    #[test]
    fn bot_id_is_the_tokens_numeric_prefix() {
        let c = TelegramClient::new(reqwest::Client::new(), "http://x", &format!(" {TOKEN}\n"));
        assert_eq!(c.bot_id(), Some(123456789));
        let c = TelegramClient::new(reqwest::Client::new(), "http://x", "garbage");
        assert_eq!(c.bot_id(), None);
        let c = TelegramClient::new(reqwest::Client::new(), "http://x", "abc:def");
        assert_eq!(c.bot_id(), None);
    }

    #[test]
    fn classify_401_is_unauthorized_with_the_fix() {
        assert_eq!(
            classify(401, Some(401), "Unauthorized", None),
            ChannelError::Unauthorized(
                "the bot token was revoked or is wrong: create a new token with @BotFather".into()
            )
        );
    }

    #[test]
    fn classify_404_is_a_malformed_token() {
        let e = classify(404, Some(404), "Not Found", None);
        assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
    }

    #[test]
    fn classify_429_uses_retry_after_or_5() {
        assert_eq!(
            classify(
                429,
                Some(429),
                "Too Many Requests: retry after 17",
                Some(17)
            ),
            ChannelError::RateLimited {
                retry_after_secs: 17,
                message: "Too Many Requests: retry after 17".into()
            }
        );
        assert_eq!(
            classify(429, Some(429), "Too Many Requests", None),
            ChannelError::RateLimited {
                retry_after_secs: 5,
                message: "Too Many Requests".into()
            }
        );
    }

    #[test]
    fn classify_5xx_is_transient() {
        for status in [500, 502, 503, 504] {
            let e = classify(status, None, "Bad Gateway", None);
            assert!(matches!(e, ChannelError::Transient(_)), "{status}: {e:?}");
        }
        let e = classify(200, Some(500), "Internal Server Error", None);
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
    }

    #[test]
    fn classify_403_is_permanent_with_the_description() {
        for d in [
            "Forbidden: bot was blocked by the user",
            "Forbidden: user is deactivated",
            "Forbidden: bot was kicked from the group chat",
            "Forbidden: bot can't initiate conversation with a user",
        ] {
            assert_eq!(
                classify(403, Some(403), d, None),
                ChannelError::Permanent(d.into())
            );
        }
    }

    #[test]
    fn classify_400_and_409_are_permanent() {
        let d = "Bad Request: chat not found";
        assert_eq!(
            classify(400, Some(400), d, None),
            ChannelError::Permanent(d.into())
        );
        let d = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
        assert_eq!(
            classify(409, Some(409), d, None),
            ChannelError::Permanent(d.into())
        );
    }

    #[test]
    fn classify_without_error_code_uses_the_http_status() {
        let e = classify(403, None, "Forbidden: bot was blocked by the user", None);
        assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");
        let e = classify(429, None, "Too Many Requests: retry after 3", Some(3));
        assert!(matches!(
            e,
            ChannelError::RateLimited {
                retry_after_secs: 3,
                ..
            }
        ));
    }

    #[test]
    fn migrate_to_chat_id_is_in_the_message_and_readable() {
        let body = br#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234567890}}"#;
        let e = decode::<Value>("sendMessage", 400, body).expect_err("an error");
        assert_eq!(
            e,
            ChannelError::Permanent(
                "Bad Request: group chat was upgraded to a supergroup chat (migrate_to_chat_id=-1001234567890)".into()
            )
        );
        assert_eq!(migrate_to_chat_id(&e), Some(-1001234567890));
        assert_eq!(
            migrate_to_chat_id(&ChannelError::Permanent(
                "Bad Request: chat not found".into()
            )),
            None
        );
    }

    #[test]
    fn decode_reads_result_and_judges_non_json_by_status() {
        let ok: MessageId = decode(
            "sendMessage",
            200,
            br#"{"ok":true,"result":{"message_id":9}}"#,
        )
        .expect("ok");
        assert_eq!(ok.message_id, 9);
        let e = decode::<Value>("getMe", 502, b"<html>Bad Gateway</html>").expect_err("error");
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
        let e = decode::<Value>("getMe", 200, b"<html>hi</html>").expect_err("error");
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
        let e = decode::<Value>("getMe", 401, b"").expect_err("error");
        assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
        let e = decode::<Value>(
            "sendMessage",
            429,
            br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 30","parameters":{"retry_after":30}}"#,
        )
        .expect_err("error");
        assert!(matches!(
            e,
            ChannelError::RateLimited {
                retry_after_secs: 30,
                ..
            }
        ));
    }

    #[test]
    fn reply_ids_of_the_same_chat_only() {
        assert_eq!(reply_message_id("-100123", "-100123:55"), Some(55));
        assert_eq!(reply_message_id("42", "55"), Some(55));
        assert_eq!(reply_message_id("42", "43:55"), None);
        assert_eq!(reply_message_id("42", "42:x"), None);
    }

    #[test]
    fn scrub_removes_the_token_from_every_class() {
        let c = TelegramClient::new(reqwest::Client::new(), "http://x", TOKEN);
        for e in [
            ChannelError::Transient(format!("a {TOKEN} b")),
            ChannelError::Permanent(format!("/bot{TOKEN}/getMe")),
            ChannelError::Unauthorized(TOKEN.into()),
            ChannelError::RateLimited {
                retry_after_secs: 1,
                message: TOKEN.into(),
            },
        ] {
            let s = c.scrub(e).to_string();
            assert!(!s.contains(TOKEN), "{s}");
        }
    }
}
