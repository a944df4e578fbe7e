//! Max messenger Bot API (docs/providers/channels.md §3): client, update parsing, webhook
//! secret check, and the HTTP client that trusts Max's extra root CA.
//!
//! The client sends the raw token in `Authorization` (no `Bearer`, §3.1) to a configurable base
//! URL and classifies every failure by `classify` (§3.5). The token is never in a URL, never in
//! `Debug` output, and every error message is scrubbed of it before it leaves this module.

mod connector;
mod form;
mod kind;
mod update;
mod upload;

pub use kind::MaxKind;

use std::fmt;
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::common::{
    self, download_url, error_chain, new_secret_token, parse_success, read_answer, secret_matches,
};
use crate::{ChannelError, Download, Identity, InboundEvent, OutboundMessage, Sent};

pub use update::parse_update;

/// Longest message text, in characters (§3.1).
pub const MAX_TEXT: usize = 4000;

/// The header carrying the subscription secret on every webhook delivery (§3.3).
pub const SECRET_HEADER: &str = "X-Max-Bot-Api-Secret";

/// The update types we ask for, in polling and webhook mode alike (§3.4).
pub const UPDATE_TYPES: [&str; 6] = [
    "message_created",
    "message_edited",
    "message_callback",
    "bot_started",
    "bot_stopped",
    "user_removed",
];

/// Files larger than this are refused while downloading.
pub const MAX_DOWNLOAD_BYTES: usize = 64 * 1024 * 1024;

/// `retry_after` when a 429 does not say how long to wait (Max allows 30 rps per bot).
const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// Added to a long poll's `timeout` for the HTTP timeout, so Max answers first.
const LONG_POLL_MARGIN_SECS: u64 = 10;

/// Longest long poll Max accepts (§3.2).
const MAX_POLL_TIMEOUT_SECS: u32 = 90;

const UNAUTHORIZED: &str =
    "the Max bot token was revoked or is wrong: copy the token again from MAX for partners";

/// Why a webhook delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// `X-Max-Bot-Api-Secret` is missing or is not our secret: answer 401/403 and drop it.
    #[error("the webhook secret does not match")]
    Forged,
    /// The secret matched but the body is not an Update object.
    #[error("malformed webhook body: {0}")]
    Malformed(String),
}

/// A webhook subscription as `GET /subscriptions` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Subscription {
    pub url: String,
    /// Unix milliseconds when it was created.
    #[serde(default)]
    pub time: i64,
    #[serde(default)]
    pub update_types: Option<Vec<String>>,
    #[serde(default)]
    pub version: Option<String>,
}

/// A Max Bot API client for one bot token.
#[derive(Clone)]
pub struct MaxClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
    /// Pauses between tries of a message whose attachment is not ready (`upload`).
    sleeper: std::sync::Arc<dyn crate::Sleeper>,
}

impl fmt::Debug for MaxClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaxClient")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[derive(Deserialize)]
struct BotInfo {
    user_id: i64,
    #[serde(default)]
    first_name: String,
    last_name: Option<String>,
    name: Option<String>,
    username: Option<String>,
}

#[derive(Deserialize)]
struct UpdateList {
    #[serde(default)]
    updates: Vec<Value>,
    marker: Option<i64>,
}

#[derive(Deserialize)]
struct SentMessage {
    message: SentBody,
}

#[derive(Deserialize)]
struct SentBody {
    body: SentMid,
}

#[derive(Deserialize)]
struct SentMid {
    mid: String,
}

#[derive(Deserialize)]
struct Success {
    #[serde(default)]
    success: bool,
    message: Option<String>,
}

#[derive(Deserialize)]
struct SubscriptionList {
    #[serde(default)]
    subscriptions: Vec<Subscription>,
}

/// The error body of §3.5: `{"code":"<key>","message":"<text>"}`.
#[derive(Deserialize)]
struct ApiError {
    code: Option<String>,
    message: Option<String>,
    error: Option<String>,
}

impl MaxClient {
    /// `api_base` is `https://platform-api2.max.ru` in production (build `http` with
    /// [`http_client_with_extra_ca`]), the fake's `http://127.0.0.1:PORT` in tests. The token is
    /// trimmed (pasted tokens often carry a newline). Timeouts come from `http`, except for
    /// `updates`, which sets its own.
    pub fn new(http: reqwest::Client, api_base: &str, token: &str) -> Self {
        MaxClient {
            http,
            base_url: api_base.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            sleeper: std::sync::Arc::new(crate::TokioSleeper),
        }
    }

    /// The same client pausing through `sleeper` (the `KindEnv`'s; tests: one that does not
    /// wait).
    pub fn with_sleeper(mut self, sleeper: std::sync::Arc<dyn crate::Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// `GET /me`: validates the token and names the bot (`name`, else first + last name).
    pub async fn me(&self) -> Result<Identity, ChannelError> {
        let me: BotInfo = self.call(self.request(Method::GET, "/me")).await?;
        let full_name = match me.last_name.filter(|l| !l.is_empty()) {
            Some(last) => format!("{} {last}", me.first_name),
            None => me.first_name,
        };
        Ok(Identity {
            id: me.user_id.to_string(),
            name: me.name.filter(|n| !n.is_empty()).unwrap_or(full_name),
            username: me.username.filter(|u| !u.is_empty()),
        })
    }

    /// One long poll of `GET /updates` (§3.2). Passing `marker` commits every update before it;
    /// `None` returns everything not yet committed. Returns the parsed events (one per update,
    /// in order; what we do not handle is `Ignored`) and the marker to pass next time (the one
    /// passed in when Max answers `null`). `timeout_secs` is capped at 90; the HTTP timeout is
    /// 10 s longer so an idle poll ends with Max's empty answer, not ours.
    pub async fn updates(
        &self,
        marker: Option<i64>,
        timeout_secs: u32,
    ) -> Result<(Vec<InboundEvent>, Option<i64>), ChannelError> {
        let timeout_secs = timeout_secs.min(MAX_POLL_TIMEOUT_SECS);
        let mut query = vec![
            ("limit", "100".to_owned()),
            ("timeout", timeout_secs.to_string()),
            ("types", UPDATE_TYPES.join(",")),
        ];
        if let Some(marker) = marker {
            query.push(("marker", marker.to_string()));
        }
        let http_timeout = Duration::from_secs(u64::from(timeout_secs) + LONG_POLL_MARGIN_SECS);
        let req = self
            .request(Method::GET, "/updates")
            .query(&query)
            .timeout(http_timeout);
        let (status, retry_after, body) = self.call_raw(req).await?;
        parse_updates(status, retry_after, &body, marker).map_err(|e| self.scrub(e))
    }

    /// `POST /subscriptions` (§3.2): switches the bot to webhook delivery to `url` (polling
    /// stops working). `secret` (5–256 of `[A-Za-z0-9_-]`, see [`new_webhook_secret`]) comes
    /// back in `X-Max-Bot-Api-Secret` on every delivery.
    pub async fn subscribe(&self, url: &str, secret: Option<&str>) -> Result<(), ChannelError> {
        let mut body = json!({ "url": url, "update_types": UPDATE_TYPES });
        if let Some(secret) = secret {
            body["secret"] = json!(secret);
        }
        let req = self.request(Method::POST, "/subscriptions").json(&body);
        self.success("subscribe", req).await
    }

    /// `DELETE /subscriptions?url=` (§3.2): long polling is available again.
    pub async fn unsubscribe(&self, url: &str) -> Result<(), ChannelError> {
        let req = self
            .request(Method::DELETE, "/subscriptions")
            .query(&[("url", url)]);
        self.success("unsubscribe", req).await
    }

    /// `GET /subscriptions`.
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, ChannelError> {
        let list: SubscriptionList = self
            .call(self.request(Method::GET, "/subscriptions"))
            .await?;
        Ok(list.subscriptions)
    }

    /// Sends a text to `m.chat_external_id` (a chat id, as in `ChatRef`), split at `MAX_TEXT`
    /// characters; only the first part replies to `reply_to_external_id` (a message `mid`).
    /// Returns the `mid` of each part, in order.
    ///
    /// Max has no idempotency key: if a later part fails, the earlier parts stay sent and the
    /// error is returned; a caller that must not repeat them uses `send_text_part` per part.
    pub async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError> {
        common::send_in_parts(self, m).await
    }

    /// One `POST /messages?chat_id=` (§3.2); returns the new message's `mid`.
    pub async fn send_text_part(
        &self,
        chat_id: &str,
        text: &str,
        reply_to_mid: Option<&str>,
    ) -> Result<String, ChannelError> {
        let chat_id: i64 = chat_id
            .trim()
            .parse()
            .map_err(|_| ChannelError::Permanent(format!("not a Max chat id: {chat_id:?}")))?;
        let mut body = json!({ "text": text, "notify": true });
        if let Some(mid) = reply_to_mid {
            body["link"] = json!({ "type": "reply", "mid": mid });
        }
        let req = self
            .request(Method::POST, "/messages")
            .query(&[("chat_id", chat_id)])
            .json(&body);
        let sent: SentMessage = self.call(req).await?;
        Ok(sent.message.body.mid)
    }

    /// Downloads an attachment by the URL Max put in its payload (`Attachment::file_ref`). The
    /// token is not sent: media URLs carry their own access key and may be on another host.
    pub async fn download(&self, url: &str) -> Result<Download, ChannelError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ChannelError::Permanent(
                "download: the attachment reference is not a URL".into(),
            ));
        }
        let result = download_url(&self.http, url, MAX_DOWNLOAD_BYTES).await;
        result.map_err(|e| self.scrub(e))
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .header(reqwest::header::AUTHORIZATION, &self.token)
    }

    async fn success(&self, what: &str, req: RequestBuilder) -> Result<(), ChannelError> {
        let answer: Success = self.call(req).await?;
        if answer.success {
            Ok(())
        } else {
            Err(ChannelError::Permanent(format!(
                "{what}: {}",
                answer.message.as_deref().unwrap_or("Max refused")
            )))
        }
    }

    async fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ChannelError> {
        let (status, retry_after, body) = self.call_raw(req).await?;
        decode(status, retry_after, &body).map_err(|e| self.scrub(e))
    }

    /// Sends `req` and reads the whole answer: status, `Retry-After` and body.
    async fn call_raw(
        &self,
        req: RequestBuilder,
    ) -> Result<(u16, Option<u64>, bytes::Bytes), ChannelError> {
        let result = read_answer("Max API", req).await;
        result.map_err(|e| self.scrub(e))
    }

    /// Removes the token from an error message, whatever put it there.
    fn scrub(&self, e: ChannelError) -> ChannelError {
        common::scrub(e, &[&self.token])
    }
}

#[async_trait::async_trait]
impl crate::Channel for MaxClient {
    async fn identify(&self) -> Result<Identity, ChannelError> {
        self.me().await
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError> {
        MaxClient::send(self, m).await
    }

    async fn download(&self, file_ref: &str) -> Result<Download, ChannelError> {
        MaxClient::download(self, file_ref).await
    }
}

/// Reads a `GET /updates` answer (§3.2) of HTTP `status`: one event per update, in order, and
/// the marker to pass next time (`marker`, the one passed in, when Max answers `null`).
pub fn parse_updates(
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
    marker: Option<i64>,
) -> Result<(Vec<InboundEvent>, Option<i64>), ChannelError> {
    let list: UpdateList = decode(status, retry_after, body)?;
    let events = list.updates.iter().map(parse_update).collect();
    Ok((events, list.marker.or(marker)))
}

/// Checks a webhook delivery (§3.3) and parses its body, one Update, into events. `header` is
/// the `X-Max-Bot-Api-Secret` value, `expected` the secret we subscribed with; they are compared
/// in constant time and a mismatch (or a missing header) is `Forged` before the body is read.
pub fn parse_webhook(
    body: &[u8],
    header: Option<&str>,
    expected: &str,
) -> Result<Vec<InboundEvent>, HookError> {
    if !secret_matches(header, expected) {
        return Err(HookError::Forged);
    }
    let update: Value =
        serde_json::from_slice(body).map_err(|e| HookError::Malformed(e.to_string()))?;
    if update.get("update_type").and_then(Value::as_str).is_none() {
        return Err(HookError::Malformed("no update_type".into()));
    }
    Ok(vec![parse_update(&update)])
}

/// A fresh subscription secret: 48 characters of `[A-Za-z0-9_-]`, within Max's 5–256 (§3.3).
pub fn new_webhook_secret() -> String {
    new_secret_token()
}

/// A reqwest client that trusts the root certificate(s) in `pem` in addition to the built-in
/// roots. Max's current host is signed by the Russian Ministry of Digital Development root CA
/// (§3.1), which the usual root stores lack. Fails when `pem` holds no certificate or a
/// certificate rustls cannot use.
pub fn http_client_with_extra_ca(pem: &[u8], timeout: Duration) -> Result<reqwest::Client, String> {
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| format!("the CA file is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("the CA file holds no certificate".into());
    }
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .tls_built_in_root_certs(true);
    for cert in certs {
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| format!("the CA certificate is not usable: {}", error_chain(&e)))
}

/// Classifies a Max API failure (§3.5) by HTTP status and the error key:
///
/// | status / code | class |
/// |---|---|
/// | 401, `verify.token` | `Unauthorized` ("revoked or wrong") |
/// | 429 | `RateLimited` after `Retry-After` s (1 s when absent) |
/// | 5xx, `attachment.not.ready` | `Transient` |
/// | 400, 403 (no access), 404, 405 (webhook set), other 4xx | `Permanent` |
/// | … saying `blocked`, `chat.denied` or `dialog.suspended` | `Blocked` |
pub fn classify(
    status: u16,
    code: Option<&str>,
    message: &str,
    retry_after: Option<u64>,
) -> ChannelError {
    let text = match code {
        Some(code) if !message.contains(code) => format!("{code}: {message}"),
        _ => message.to_owned(),
    };
    match (status, code) {
        (401, _) | (_, Some("verify.token")) => ChannelError::Unauthorized(UNAUTHORIZED.into()),
        (429, _) => ChannelError::RateLimited {
            retry_after_secs: retry_after.unwrap_or(DEFAULT_RETRY_AFTER_SECS),
            message: text,
        },
        (500..=599, _) | (_, Some("attachment.not.ready")) => ChannelError::Transient(text),
        (405, _) => ChannelError::Permanent(format!(
            "{text} (a webhook subscription is active: long polling is unavailable)"
        )),
        _ => common::blocked_if(ChannelError::Permanent(text), |m| {
            m.contains("blocked") || m.contains("chat.denied") || m.contains("dialog.suspended")
        }),
    }
}

fn decode<T: DeserializeOwned>(
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
) -> Result<T, ChannelError> {
    if (200..300).contains(&status) {
        return parse_success("Max", body);
    }
    let err: Option<ApiError> = serde_json::from_slice(body).ok();
    let code = err.as_ref().and_then(|e| e.code.clone());
    let message = err
        .and_then(|e| e.message.or(e.error))
        .unwrap_or_else(|| format!("HTTP {status}"));
    Err(classify(status, code.as_deref(), &message, retry_after))
}

/// Max's section of the configuration (`[max]`).
#[derive(Clone, Debug)]
pub struct Config {
    /// Max Bot API base URL (`https://platform-api2.max.ru`).
    pub api_base: String,
    /// A PEM file with the extra root CA Max's host needs (the Russian Ministry of Digital
    /// Development root); read once at start.
    pub extra_ca_pem: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_base: "https://platform-api2.max.ru".into(),
            extra_ca_pem: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "f9LHodD0cOIhp_a-secret-token-Zz09";

    #[test]
    fn debug_hides_the_token() {
        let c = MaxClient::new(
            reqwest::Client::new(),
            "https://platform-api2.max.ru/",
            TOKEN,
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(TOKEN), "{dbg}");
        assert!(dbg.contains("https://platform-api2.max.ru"), "{dbg}");
    }

    #[test]
    fn classify_follows_the_spec_table() {
        let e = classify(401, Some("verify.token"), "Invalid access_token", None);
        assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
        let e = classify(400, Some("verify.token"), "Invalid access_token", None);
        assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
        assert_eq!(
            classify(429, Some("too.many.requests"), "slow down", Some(7)),
            ChannelError::RateLimited {
                retry_after_secs: 7,
                message: "too.many.requests: slow down".into()
            }
        );
        let e = classify(429, None, "HTTP 429", None);
        assert!(
            matches!(
                e,
                ChannelError::RateLimited {
                    retry_after_secs: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        for status in [500, 502, 503] {
            let e = classify(status, None, "oops", None);
            assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
        }
        let e = classify(400, Some("attachment.not.ready"), "not processed yet", None);
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
        for status in [400, 403, 404, 405] {
            let e = classify(status, Some("x"), "no", None);
            assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");
        }
    }

    #[test]
    fn decode_judges_non_json_errors_by_status() {
        let e = decode::<Value>(502, None, b"<html>Bad Gateway</html>").expect_err("error");
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
        let e = decode::<Value>(401, None, b"").expect_err("error");
        assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
        let e = decode::<Value>(200, None, b"<html>").expect_err("error");
        assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");
    }

    #[test]
    fn scrub_removes_the_token_from_every_class() {
        let c = MaxClient::new(reqwest::Client::new(), "http://x", TOKEN);
        for e in [
            ChannelError::Transient(format!("a {TOKEN} b")),
            ChannelError::Permanent(TOKEN.into()),
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

    #[test]
    fn webhook_secret_is_checked_before_the_body() {
        let secret = new_webhook_secret();
        assert_eq!(
            parse_webhook(b"not json", Some("wrong"), &secret),
            Err(HookError::Forged)
        );
        assert_eq!(parse_webhook(b"{}", None, &secret), Err(HookError::Forged));
        assert!(matches!(
            parse_webhook(b"not json", Some(&secret), &secret),
            Err(HookError::Malformed(_))
        ));
        assert!(matches!(
            parse_webhook(b"{\"timestamp\":1}", Some(&secret), &secret),
            Err(HookError::Malformed(_))
        ));
    }

    #[test]
    fn extra_ca_rejects_what_is_not_a_certificate() {
        let t = Duration::from_secs(5);
        assert!(http_client_with_extra_ca(b"", t).is_err());
        assert!(http_client_with_extra_ca(b"hello", t).is_err());
        let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(http_client_with_extra_ca(broken, t).is_err());
    }
}
