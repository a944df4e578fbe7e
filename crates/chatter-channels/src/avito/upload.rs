//! A manager's picture to an Avito buyer (§4.2): `uploadImages` (multipart `uploadfile[]`, one
//! JPEG/HEIC/GIF/BMP/PNG up to 24 MB) answers `{"<image_id>": {"<W>x<H>": url, …}}`; then
//! `POST …/chats/{chat_id}/messages/image` with `{"image_id"}` sends it. Avito's image messages
//! carry no text, so a caption follows as a text message of its own. Other files never reach
//! here: the kind's `FileRules::only_images` refuses them before they are stored.
//!
//! Avito has no idempotency key (§4.4: "after a send timeout, check recent messages before
//! retrying"). A retry whose earlier try may have been taken (`FileToSend::retry`) first reads
//! the chat's newest messages (`GET /messenger/v3/…/messages/`, newest first) and takes as its
//! own an outgoing `image` message created since the first try that Chatter did not record for
//! another reply; the caption then goes only when no outgoing text with it follows that
//! picture. Only when there is none does it upload and send.

use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

use super::{decode, path_segment, AvitoClient, SentMessage};
use crate::common::read_answer;
use crate::{ChannelError, EarlierTry, FileToSend};

/// The picture types Avito's `uploadImages` takes (§4.2: JPEG, HEIC, GIF, BMP, PNG), as
/// Chatter names them after reading the file's first bytes (`blobs::picture_type`).
pub const IMAGE_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/bmp",
    "image/heic",
];

/// Avito's limit for one uploaded image (§4.2).
pub const MAX_IMAGE_BYTES: u64 = 24 * crate::kind::MB;

/// How many of the chat's newest messages a retry reads looking for its earlier try.
const RECENT: usize = 50;

/// In `recent` (newest first, as Avito lists them): the id of an outgoing picture created
/// since `earlier.since_ms` that is not a message Chatter recorded for another reply, and
/// whether the `caption` went after it as an outgoing text.
fn earlier_image(
    recent: &[Value],
    earlier: &EarlierTry,
    caption: Option<&str>,
) -> Option<(String, bool)> {
    let since = earlier.since_ms.div_euclid(1000);
    let out = |m: &Value, kind: &str| {
        m["direction"] == "out"
            && m["type"] == kind
            && m["created"].as_i64().is_some_and(|c| c >= since)
    };
    let at = recent.iter().position(|m| {
        out(m, "image")
            && m["id"]
                .as_str()
                .is_some_and(|id| !earlier.known.iter().any(|k| k == id))
    })?;
    let id = recent[at]["id"].as_str()?.to_owned();
    let captioned = caption.is_some_and(|text| {
        recent[..at]
            .iter()
            .any(|m| out(m, "text") && m["content"]["text"].as_str() == Some(text))
    });
    Some((id, captioned))
}

#[derive(Deserialize)]
struct Sizes(BTreeMap<String, Value>);

impl AvitoClient {
    /// Uploads the picture and sends it to `chat_id`, then `caption` as a text; returns the
    /// image message's id. A caption that fails after the picture went is that send's error
    /// (the retry sends the picture again: Avito has no idempotency key, §4.4).
    pub async fn send_image(
        &self,
        chat_id: &str,
        file: &FileToSend,
        caption: Option<&str>,
    ) -> Result<String, ChannelError> {
        if !file.as_image || !IMAGE_TYPES.contains(&file.mime_type.as_str()) {
            return Err(ChannelError::Permanent(format!(
                "Avito takes only pictures, not {}",
                file.mime_type
            )));
        }
        let chat = path_segment(chat_id)?;
        let uid = self.user_id().await?;
        let caption = caption.filter(|c| !c.trim().is_empty());
        if let Some(earlier) = &file.retry {
            let path = format!(
                "/messenger/v3/accounts/{uid}/chats/{chat}/messages/?limit={RECENT}&offset=0"
            );
            let recent: Vec<Value> = self.call(Method::GET, &path, None).await?;
            if let Some((id, captioned)) = earlier_image(&recent, earlier, caption) {
                if let (Some(text), false) = (caption, captioned) {
                    self.send_text_part(chat_id, text).await?;
                }
                return Ok(id);
            }
        }
        let image_id = self.upload_image(uid, file).await?;
        let path = format!("/messenger/v1/accounts/{uid}/chats/{chat}/messages/image");
        let sent: SentMessage = self
            .call(Method::POST, &path, Some(json!({ "image_id": image_id })))
            .await?;
        if let Some(text) = caption {
            self.send_text_part(chat_id, text).await?;
        }
        Ok(sent.id)
    }

    /// `POST /messenger/v1/accounts/{uid}/uploadImages`; returns the image id. A 401 fetches a
    /// new token once, as every call does.
    async fn upload_image(&self, uid: i64, file: &FileToSend) -> Result<String, ChannelError> {
        let path = format!("/messenger/v1/accounts/{uid}/uploadImages");
        let result = async {
            let mut refreshed = false;
            loop {
                let token = self.token(refreshed).await?;
                let part = Part::bytes(file.bytes.clone())
                    .file_name(file.file_name.clone())
                    .mime_str(&file.mime_type)
                    .map_err(|_| {
                        ChannelError::Permanent(format!("not a MIME type: {}", file.mime_type))
                    })?;
                let req = self
                    .http
                    .post(format!("{}{path}", self.base_url))
                    .bearer_auth(&token)
                    .multipart(Form::new().part("uploadfile[]", part));
                let (status, retry_after, bytes) = read_answer("Avito API", req).await?;
                if status == 401 && !refreshed {
                    refreshed = true;
                    continue;
                }
                let sizes: Sizes = decode(status, retry_after, &bytes)?;
                return sizes.0.into_keys().next().ok_or_else(|| {
                    ChannelError::Permanent("uploadImages: Avito named no image".into())
                });
            }
        }
        .await;
        result.map_err(|e| self.scrub(e))
    }
}
