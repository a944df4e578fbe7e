//! WhatsApp Business Cloud API (docs/providers/channels.md §5): client, webhook handshake,
//! signature check, notification parsing and the 24-hour customer-service window.
//!
//! The client speaks `{api_base}/{version}/…` with `Authorization: Bearer <token>` and turns every
//! failure into a `ChannelError` by `classify` (§5.7). Every classified Graph error ends with
//! `(code N)`, and so does the error text of a `failed` delivery status, so `error_code` reads the
//! code back from either (see `is_outside_window`). The token never appears in `Debug` output or
//! in an error message.
//!
//! Sending has no idempotency key on this API: a send that timed out may have gone out, and
//! retrying it may deliver the text twice. `OutboundMessage::idempotency_key` is not sent.

mod answer;
mod connector;
mod form;
mod kind;
mod notification;

pub use kind::WhatsAppKind;

use std::fmt;

use reqwest::multipart::{Form, Part};
use reqwest::RequestBuilder;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::common::{self, read_limited, too_large, transport_error};
use crate::{ChannelError, Download, Identity, OutboundMessage, Sent};

use answer::error_from_body;
pub use answer::{classify, error_code, is_outside_window};

pub use notification::{
    parse_notification, parse_notification_routed, verify_signature, verify_subscription,
    HookError, RoutedEvent,
};

/// The Graph API version the product pins (§5.1); configurable per source.
pub const DEFAULT_API_VERSION: &str = "v23.0";
/// `https://graph.facebook.com`: production API base (the version is added per request).
pub const DEFAULT_API_BASE: &str = "https://graph.facebook.com";
/// Longest text body, in characters (§5.2). Longer texts go out as several messages.
pub const MAX_TEXT: usize = 4096;
/// Free-form messages are allowed this long after the customer's last message (§5.3).
pub const WINDOW_MS: i64 = 24 * 3600 * 1000;
/// "Re-engagement message": a free-form send outside the 24-hour window (§5.3, §5.7).
pub const OUTSIDE_WINDOW_CODE: i64 = 131_047;
/// Media larger than this are refused while downloading (the Cloud API caps media at 100 MB).
pub const MAX_DOWNLOAD_BYTES: usize = 100 * 1024 * 1024;

/// True while free-form messages may be sent: less than 24 hours since the customer last wrote
/// (§5.3). A timestamp in the future (clock skew) counts as "just now".
pub fn window_open(last_customer_message_at_ms: i64, now_ms: i64) -> bool {
    now_ms.saturating_sub(last_customer_message_at_ms) < WINDOW_MS
}

/// The kinds of media message (§5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Document,
    Audio,
    Video,
    Sticker,
}

impl MediaKind {
    /// The `type` value (and the name of the object carrying the media).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Document => "document",
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Sticker => "sticker",
        }
    }

    /// Audio and stickers carry no caption.
    fn takes_caption(self) -> bool {
        matches!(
            self,
            MediaKind::Image | MediaKind::Document | MediaKind::Video
        )
    }
}

/// Where the media of an outgoing message comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaRef<'a> {
    /// A public HTTPS URL WhatsApp fetches.
    Link(&'a str),
    /// A media id from `upload_media`.
    Id(&'a str),
}

/// The phone number behind `phone_number_id`, as the Sources page shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PhoneNumberInfo {
    pub id: String,
    /// Formatted by Meta, e.g. `+7 999 123-45-67`.
    #[serde(default)]
    pub display_phone_number: String,
    /// The business name Meta approved for the number.
    #[serde(default)]
    pub verified_name: String,
    pub quality_rating: Option<String>,
}

/// `GET /{media_id}` (§5.6): where to fetch a medium (the URL lives ~5 minutes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct MediaInfo {
    pub id: String,
    pub url: String,
    pub mime_type: Option<String>,
    pub sha256: Option<String>,
    pub file_size: Option<i64>,
}

/// A message template of the business account (§5.3), for the template picker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Template {
    #[serde(default)]
    pub id: String,
    pub name: String,
    /// Language code, e.g. `ru`, `en_US`.
    pub language: String,
    /// `APPROVED`, `PENDING`, `REJECTED`, …
    #[serde(default)]
    pub status: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    #[serde(default)]
    pub category: String,
    /// The raw components (header, body with `{{1}}` placeholders, footer, buttons).
    #[serde(default)]
    pub components: Vec<Value>,
}

impl Template {
    /// The body text with its `{{n}}` placeholders, if the template has a body.
    pub fn body_text(&self) -> Option<&str> {
        self.components
            .iter()
            .find(|c| {
                c["type"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case("body"))
            })
            .and_then(|c| c["text"].as_str())
    }

    /// How many parameters the body expects (the highest `{{n}}`).
    pub fn body_params(&self) -> usize {
        let Some(text) = self.body_text() else {
            return 0;
        };
        text.split("{{")
            .skip(1)
            .filter_map(|s| s.split_once("}}")?.0.trim().parse::<usize>().ok())
            .max()
            .unwrap_or(0)
    }
}

/// A Cloud API client for one phone number.
#[derive(Clone)]
pub struct WhatsAppClient {
    http: reqwest::Client,
    api_base: String,
    api_version: String,
    phone_number_id: String,
    token: String,
}

impl fmt::Debug for WhatsAppClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhatsAppClient")
            .field("api_base", &self.api_base)
            .field("api_version", &self.api_version)
            .field("phone_number_id", &self.phone_number_id)
            .field("access_token", &"<redacted>")
            .finish()
    }
}

#[derive(Deserialize)]
struct SendResponse {
    #[serde(default)]
    messages: Vec<SentId>,
}

#[derive(Deserialize)]
struct SentId {
    id: String,
}

#[derive(Deserialize)]
struct TemplatePage {
    #[serde(default)]
    data: Vec<Template>,
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    cursors: Option<Cursors>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct Cursors {
    after: Option<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// Pages of templates read at most (100 templates each).
const MAX_TEMPLATE_PAGES: usize = 20;

impl WhatsAppClient {
    /// `api_base` is `https://graph.facebook.com` in production (the fake's URL in tests),
    /// `api_version` e.g. `v23.0`. The token is trimmed (pasted tokens often carry a newline).
    pub fn new(
        http: reqwest::Client,
        api_base: &str,
        api_version: &str,
        phone_number_id: &str,
        access_token: &str,
    ) -> Self {
        WhatsAppClient {
            http,
            api_base: api_base.trim_end_matches('/').to_owned(),
            api_version: api_version.trim_matches('/').to_owned(),
            phone_number_id: phone_number_id.trim().to_owned(),
            token: access_token.trim().to_owned(),
        }
    }

    pub fn phone_number_id(&self) -> &str {
        &self.phone_number_id
    }

    /// Validates the token against the number: its display number and verified name.
    pub async fn phone_number(&self) -> Result<PhoneNumberInfo, ChannelError> {
        let url = format!(
            "{}?fields=display_phone_number,verified_name,quality_rating",
            self.url(&self.phone_number_id)
        );
        self.request("phone number", self.http.get(url)).await
    }

    /// Sends `text` (≤ `MAX_TEXT` characters), as a quote-reply to `reply_to` (a wamid) when
    /// given. Returns the new message's wamid; delivery is reported later as statuses.
    pub async fn send_text(
        &self,
        to: &str,
        text: &str,
        reply_to: Option<&str>,
    ) -> Result<String, ChannelError> {
        let mut body = self.envelope(to, "text");
        body["text"] = json!({ "preview_url": false, "body": text });
        if let Some(id) = reply_to.filter(|id| !id.is_empty()) {
            body["context"] = json!({ "message_id": id });
        }
        self.send_message(&body).await
    }

    /// Sends an image, document, audio, video or sticker by link or uploaded media id, with a
    /// caption where the kind takes one. Returns the wamid.
    pub async fn send_media(
        &self,
        to: &str,
        kind: MediaKind,
        media: MediaRef<'_>,
        caption: Option<&str>,
    ) -> Result<String, ChannelError> {
        self.send_media_inner(to, kind, media, caption, None).await
    }

    /// Sends a document under `filename` (what the customer sees). Returns the wamid.
    pub async fn send_document(
        &self,
        to: &str,
        media: MediaRef<'_>,
        filename: &str,
        caption: Option<&str>,
    ) -> Result<String, ChannelError> {
        self.send_media_inner(to, MediaKind::Document, media, caption, Some(filename))
            .await
    }

    async fn send_media_inner(
        &self,
        to: &str,
        kind: MediaKind,
        media: MediaRef<'_>,
        caption: Option<&str>,
        filename: Option<&str>,
    ) -> Result<String, ChannelError> {
        let mut object = match media {
            MediaRef::Link(link) => json!({ "link": link }),
            MediaRef::Id(id) => json!({ "id": id }),
        };
        if let Some(caption) = caption.filter(|c| !c.is_empty() && kind.takes_caption()) {
            object["caption"] = json!(caption);
        }
        if let Some(filename) = filename {
            object["filename"] = json!(filename);
        }
        let mut body = self.envelope(to, kind.as_str());
        body[kind.as_str()] = object;
        self.send_message(&body).await
    }

    /// Sends an approved template (the only thing allowed outside the 24-hour window) with
    /// `params` filling its body's `{{1}}`, `{{2}}`, …. Returns the wamid.
    pub async fn send_template(
        &self,
        to: &str,
        name: &str,
        language: &str,
        params: &[String],
    ) -> Result<String, ChannelError> {
        let mut template = json!({ "name": name, "language": { "code": language } });
        if !params.is_empty() {
            let parameters: Vec<Value> = params
                .iter()
                .map(|p| json!({ "type": "text", "text": p }))
                .collect();
            template["components"] = json!([{ "type": "body", "parameters": parameters }]);
        }
        let mut body = self.envelope(to, "template");
        body["template"] = template;
        self.send_message(&body).await
    }

    /// Marks a customer's message as read (blue ticks).
    pub async fn mark_read(&self, message_id: &str) -> Result<(), ChannelError> {
        let body = json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        });
        let url = self.url(&format!("{}/messages", self.phone_number_id));
        let _: Value = self
            .request("mark read", self.http.post(url).json(&body))
            .await?;
        Ok(())
    }

    /// Uploads a file for `MediaRef::Id` (§5.2); returns the media id.
    pub async fn upload_media(
        &self,
        bytes: Vec<u8>,
        mime: &str,
        file_name: &str,
    ) -> Result<String, ChannelError> {
        let part = Part::bytes(bytes)
            .file_name(file_name.to_owned())
            .mime_str(mime)
            .map_err(|_| ChannelError::Permanent(format!("not a MIME type: {mime}")))?;
        let form = Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", mime.to_owned())
            .part("file", part);
        let url = self.url(&format!("{}/media", self.phone_number_id));
        let uploaded: IdOnly = self
            .request("upload media", self.http.post(url).multipart(form))
            .await?;
        Ok(uploaded.id)
    }

    /// `GET /{media_id}` (§5.6).
    pub async fn media_info(&self, media_id: &str) -> Result<MediaInfo, ChannelError> {
        let url = self.url(media_id);
        self.request("media info", self.http.get(url)).await
    }

    /// Downloads a medium a customer sent: its URL, then the bytes with the same token (§5.6).
    pub async fn download_media(&self, media_id: &str) -> Result<Download, ChannelError> {
        let info = self.media_info(media_id).await?;
        if info
            .file_size
            .is_some_and(|n| n > MAX_DOWNLOAD_BYTES as i64)
        {
            return Err(too_large(MAX_DOWNLOAD_BYTES));
        }
        let result = self.fetch(&info).await;
        result.map_err(|e| self.scrub(e))
    }

    async fn fetch(&self, info: &MediaInfo) -> Result<Download, ChannelError> {
        let resp = self
            .http
            .get(&info.url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| transport_error("download", e))?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(match status {
                // The URL expired (they live minutes): asking for the media again gives a new one.
                404 | 410 => ChannelError::Transient("download: the media URL expired".into()),
                _ => error_from_body("download", status, &body, None),
            });
        }
        let header_mime = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Download {
            bytes: read_limited(resp, MAX_DOWNLOAD_BYTES).await?,
            mime_type: info.mime_type.clone().or(header_mime),
            file_name: None,
        })
    }

    /// The business account's approved templates (`GET /{waba_id}/message_templates`, §5.3),
    /// every page. Templates are created and approved in Meta's WhatsApp Manager, not here.
    pub async fn templates(&self, waba_id: &str) -> Result<Vec<Template>, ChannelError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_TEMPLATE_PAGES {
            let mut url = url::Url::parse(&self.url(&format!("{waba_id}/message_templates")))
                .map_err(|e| ChannelError::Permanent(format!("templates: bad URL: {e}")))?;
            url.query_pairs_mut()
                .append_pair("fields", "id,name,language,status,category,components")
                .append_pair("status", "APPROVED")
                .append_pair("limit", "100");
            if let Some(after) = &after {
                url.query_pairs_mut().append_pair("after", after);
            }
            let page: TemplatePage = self.request("templates", self.http.get(url)).await?;
            all.extend(
                page.data
                    .into_iter()
                    .filter(|t| t.status.is_empty() || t.status == "APPROVED"),
            );
            after = page
                .paging
                .filter(|p| p.next.is_some())
                .and_then(|p| p.cursors?.after);
            if after.is_none() {
                break;
            }
        }
        Ok(all)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.api_base, self.api_version, path)
    }

    fn envelope(&self, to: &str, kind: &str) -> Value {
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to.trim().trim_start_matches('+'),
            "type": kind,
        })
    }

    async fn send_message(&self, body: &Value) -> Result<String, ChannelError> {
        let url = self.url(&format!("{}/messages", self.phone_number_id));
        let sent: SendResponse = self.request("send", self.http.post(url).json(body)).await?;
        sent.messages
            .into_iter()
            .next()
            .map(|m| m.id)
            .ok_or_else(|| {
                // Not retryable: the message may well have been accepted.
                ChannelError::Permanent("send: the answer carries no message id".into())
            })
    }

    async fn request<T: DeserializeOwned>(
        &self,
        what: &str,
        req: RequestBuilder,
    ) -> Result<T, ChannelError> {
        let result = async {
            let (status, retry_after, body) =
                common::read_answer(what, req.bearer_auth(&self.token)).await?;
            if !(200..300).contains(&status) {
                return Err(error_from_body(what, status, &body, retry_after));
            }
            serde_json::from_slice(&body).map_err(|e| {
                ChannelError::Permanent(format!("{what}: unexpected answer (HTTP {status}): {e}"))
            })
        }
        .await;
        result.map_err(|e| self.scrub(e))
    }

    /// Removes the token from an error message, whatever put it there.
    fn scrub(&self, e: ChannelError) -> ChannelError {
        common::scrub(e, &[&self.token])
    }
}

#[async_trait::async_trait]
impl crate::Channel for WhatsAppClient {
    /// The number's id, verified name (or the number when Meta has no name yet) and display
    /// number as the username.
    async fn identify(&self) -> Result<Identity, ChannelError> {
        let info = self.phone_number().await?;
        let name = if info.verified_name.is_empty() {
            info.display_phone_number.clone()
        } else {
            info.verified_name
        };
        Ok(Identity {
            id: if info.id.is_empty() {
                self.phone_number_id.clone()
            } else {
                info.id
            },
            name,
            username: Some(info.display_phone_number).filter(|n| !n.is_empty()),
        })
    }

    /// Sends the text to `chat_external_id` (the customer's wa_id), split at `MAX_TEXT`
    /// characters; only the first part quotes `reply_to_external_id`. A closed window fails the
    /// first part with a `Permanent` error `is_outside_window` recognises (when Meta reports it
    /// synchronously; otherwise it arrives as a failed status).
    async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError> {
        common::send_in_parts(self, m).await
    }

    /// `file_ref` is the media id from the notification.
    async fn download(&self, file_ref: &str) -> Result<Download, ChannelError> {
        self.download_media(file_ref).await
    }
}

/// WhatsApp's section of the configuration (`[whatsapp]`).
#[derive(Clone, Debug)]
pub struct Config {
    /// Cloud API base URL (`https://graph.facebook.com`; the version is added per call).
    pub api_base: String,
    /// The Graph API version calls use (`v23.0`).
    pub api_version: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_base: DEFAULT_API_BASE.into(),
            api_version: DEFAULT_API_VERSION.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "EAAGm0PX4ZCpsBAsecretsecretsecret";

    #[test]
    fn debug_hides_the_token() {
        let c = WhatsAppClient::new(
            reqwest::Client::new(),
            DEFAULT_API_BASE,
            DEFAULT_API_VERSION,
            "1234567890",
            TOKEN,
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("secretsecret"), "{dbg}");
        assert!(dbg.contains("1234567890"), "{dbg}");
    }

    #[test]
    fn window_is_open_for_24_hours() {
        let t = 1_767_225_600_000;
        assert!(window_open(t, t));
        assert!(window_open(t, t + WINDOW_MS - 1));
        assert!(!window_open(t, t + WINDOW_MS));
        assert!(window_open(t + 5_000, t), "clock skew counts as just now");
    }

    #[test]
    fn template_body_params_count_the_highest_placeholder() {
        let t = Template {
            components: vec![json!({"type": "BODY", "text": "Hi {{1}}, order {{2}} is {{2}}"})],
            ..Template::default()
        };
        assert_eq!(t.body_params(), 2);
        assert_eq!(Template::default().body_params(), 0);
    }

    #[test]
    fn scrub_removes_the_token() {
        let c = WhatsAppClient::new(reqwest::Client::new(), "http://x", "v23.0", "1", TOKEN);
        let s = c
            .scrub(ChannelError::Transient(format!("Bearer {TOKEN}")))
            .to_string();
        assert!(!s.contains(TOKEN), "{s}");
    }
}
