//! A manager's picture to an Avito buyer (§4.2): `uploadImages` (multipart `uploadfile[]`, one
//! JPEG/HEIC/GIF/BMP/PNG up to 24 MB) answers `{"<image_id>": {"<W>x<H>": url, …}}`; then
//! `POST …/chats/{chat_id}/messages/image` with `{"image_id"}` sends it. Avito's image messages
//! carry no text, so a caption follows as a text message of its own. Other files never reach
//! here: the kind's `FileRules::only_images` refuses them before they are stored.

use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

use super::{decode, path_segment, AvitoClient, SentMessage};
use crate::common::read_answer;
use crate::{ChannelError, FileToSend};

/// The picture types Avito's `uploadImages` takes that Chatter recognises by their bytes
/// (HEIC and BMP, which Avito takes too, are not told apart from other files here).
pub const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif"];

/// Avito's limit for one uploaded image (§4.2).
pub const MAX_IMAGE_BYTES: u64 = 24 * crate::kind::MB;

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
        let image_id = self.upload_image(uid, file).await?;
        let path = format!("/messenger/v1/accounts/{uid}/chats/{chat}/messages/image");
        let sent: SentMessage = self
            .call(Method::POST, &path, Some(json!({ "image_id": image_id })))
            .await?;
        if let Some(text) = caption.filter(|c| !c.trim().is_empty()) {
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
