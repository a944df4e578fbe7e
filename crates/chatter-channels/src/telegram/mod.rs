//! Telegram Bot API (docs/providers/channels.md §1): the client here, answers and their error
//! classes in `answer`, update parsing in `update`; the webhook secret is checked with
//! `common::secret_matches`.
//!
//! The client speaks `{base}/bot{token}/{method}` with JSON bodies (multipart for uploads) and
//! turns every failure into a `ChannelError` by `classify` (§1.9). The token never appears in
//! `Debug` output or in an error message: reqwest errors are stripped of their URL and every
//! message is scrubbed of the token before it leaves this module.

mod answer;
mod connector;
mod form;
mod kind;
mod update;

pub use kind::TelegramKind;

use std::fmt;
use std::time::Duration;

use reqwest::multipart::{Form, Part};
use reqwest::RequestBuilder;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::common::{self, read_limited, split_text, transport_error};
use crate::{ChannelError, Identity, OutboundMessage, Sent};

pub use answer::{classify, migrate_to_chat_id, parse_get_updates};
use answer::{decode, envelope_error, Envelope};
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

/// Added to a long poll's `timeout` for the HTTP timeout, so Telegram answers first.
const LONG_POLL_MARGIN_SECS: u64 = 10;

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
    /// Long-poll wait of `Connector::poll`, seconds (`Config::poll_timeout_secs`).
    poll_timeout_secs: u32,
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
            poll_timeout_secs: Config::default().poll_timeout_secs,
        }
    }

    /// The same client, long-polling `secs` at a time when polled as a `Connector`.
    pub fn with_poll_timeout(mut self, secs: u32) -> Self {
        self.poll_timeout_secs = secs;
        self
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
        self.upload("sendPhoto", "photo", chat_id, part, caption, None)
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
        self.upload("sendDocument", "document", chat_id, part, caption, None)
            .await
    }

    /// A manager's file: `sendPhoto` for a picture within 10 MB, `sendDocument` otherwise,
    /// answering `reply_to_message_id` when given; returns the message id.
    pub async fn send_upload(
        &self,
        chat_id: &str,
        file: &crate::FileToSend,
        caption: Option<&str>,
        reply_to_message_id: Option<i64>,
    ) -> Result<i64, ChannelError> {
        let part = Part::bytes(file.bytes.clone())
            .file_name(file.file_name.clone())
            .mime_str(&file.mime_type)
            .map_err(|_| ChannelError::Permanent(format!("not a MIME type: {}", file.mime_type)))?;
        let (method, field) = match file.as_image {
            true => ("sendPhoto", "photo"),
            false => ("sendDocument", "document"),
        };
        self.upload(method, field, chat_id, part, caption, reply_to_message_id)
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
        let resp = req
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
        read_limited(resp, MAX_DOWNLOAD_BYTES).await
    }

    async fn upload(
        &self,
        method: &str,
        field: &str,
        chat_id: &str,
        part: Part,
        caption: Option<&str>,
        reply_to_message_id: Option<i64>,
    ) -> Result<i64, ChannelError> {
        let mut form = Form::new()
            .text("chat_id", chat_id.to_owned())
            .part(field.to_owned(), part);
        if let Some(caption) = caption {
            form = form.text("caption", caption.to_owned());
        }
        if let Some(id) = reply_to_message_id {
            let reply = json!({ "message_id": id, "allow_sending_without_reply": true });
            form = form.text("reply_parameters", reply.to_string());
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
        common::scrub(e, &[&self.token])
    }
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

/// Telegram's section of the configuration (`[telegram]`).
#[derive(Clone, Debug)]
pub struct Config {
    /// Bot API base URL (the fake's in tests and the demo).
    pub api_base: String,
    /// Public base URL Telegram can reach for webhooks; without it (and without the general
    /// `webhook_base`) bots are long-polled.
    pub webhook_base: Option<String>,
    /// Long-poll wait in seconds for getUpdates.
    pub poll_timeout_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_base: "https://api.telegram.org".into(),
            webhook_base: None,
            poll_timeout_secs: 25,
        }
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
