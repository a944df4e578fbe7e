//! A manager's file to a VK customer (§2.4 `attachment`): uploaded to the upload server VK
//! names for the peer, saved, then sent by `messages.send` as `photo<owner>_<id>` or
//! `doc<owner>_<id>`.
//!
//! §2 names the methods but not their fields; these follow VK's documented API
//! (dev.vk.com/ru/api/upload/photo-in-message and …/upload/document-in-message):
//! `photos.getMessagesUploadServer {peer_id}` → `{upload_url}`; a multipart POST of the
//! picture as `photo` → `{server, photo, hash}`; `photos.saveMessagesPhoto {photo, server,
//! hash}` → `[{id, owner_id, access_key?}]`. Documents: `docs.getMessagesUploadServer
//! {type: doc, peer_id}` → `{upload_url}`; the file as `file` → `{file}`; `docs.save {file,
//! title}` → `{type: "doc", doc: {id, owner_id, access_key?}}`. An upload server that refuses
//! answers `{error, error_descr?}` (or `photo: "[]"`) with HTTP 200.

use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use serde_json::Value;

use super::answer::http_status_error;
use super::{ReplyTo, VkClient};
use crate::common::{scrub, transport_error};
use crate::{ChannelError, FileToSend};

/// VK takes message photos in JPEG, PNG and GIF only (dev.vk.com, "photo in message"); another
/// picture (WebP) goes as a document.
const PHOTO_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/gif"];

#[derive(Deserialize)]
struct UploadServer {
    upload_url: String,
}

/// What the photo upload server answers.
#[derive(Deserialize)]
struct UploadedPhoto {
    server: Value,
    photo: String,
    hash: String,
}

/// What the document upload server answers.
#[derive(Deserialize)]
struct UploadedDoc {
    file: String,
}

/// A saved photo or document: what an attachment string is made of.
#[derive(Deserialize)]
struct Saved {
    id: i64,
    owner_id: i64,
    access_key: Option<String>,
}

#[derive(Deserialize)]
struct SavedDoc {
    doc: Saved,
}

impl Saved {
    /// `<type><owner_id>_<id>[_<access_key>]` (§2.4).
    fn attachment(&self, kind: &str) -> String {
        match self.access_key.as_deref().filter(|k| !k.is_empty()) {
            Some(key) => format!("{kind}{}_{}_{key}", self.owner_id, self.id),
            None => format!("{kind}{}_{}", self.owner_id, self.id),
        }
    }
}

impl VkClient {
    /// Uploads `file` for `peer_id` (a photo when it is a picture VK shows as one, a document
    /// otherwise) and sends it with `caption`, answering `reply_to`; returns the message id.
    /// The `random_id` is `random_id_for(file.key, 0)`, the same on every try: a retry whose
    /// earlier `messages.send` VK took (its answer lost) uploads again but sends nothing new, VK
    /// answering with the first message's id (§2.4). Without a key it is fresh.
    pub async fn send_upload(
        &self,
        peer_id: i64,
        file: &FileToSend,
        caption: Option<&str>,
        reply_to: Option<ReplyTo>,
    ) -> Result<i64, ChannelError> {
        let as_photo = file.as_image && PHOTO_TYPES.contains(&file.mime_type.as_str());
        let attachment = match as_photo {
            true => self.upload_photo(peer_id, file).await?,
            false => self.upload_doc(peer_id, file).await?,
        };
        let random_id = match file.key.is_empty() {
            false => super::random_id_for(&file.key, 0),
            true => rand::random::<i32>().checked_abs().unwrap_or(1).max(1),
        };
        let mut params = vec![
            ("peer_id", peer_id.to_string()),
            ("random_id", random_id.to_string()),
            ("attachment", attachment),
        ];
        if let Some(text) = caption.filter(|c| !c.trim().is_empty()) {
            params.push(("message", text.to_owned()));
        }
        super::push_reply(&mut params, reply_to);
        self.call("messages.send", &params).await
    }

    /// `photos.getMessagesUploadServer` → upload as `photo` → `photos.saveMessagesPhoto`.
    async fn upload_photo(&self, peer_id: i64, file: &FileToSend) -> Result<String, ChannelError> {
        let server: UploadServer = self
            .call(
                "photos.getMessagesUploadServer",
                &[("peer_id", peer_id.to_string())],
            )
            .await?;
        let up: UploadedPhoto = self
            .post_file("photo upload", &server.upload_url, "photo", file)
            .await?;
        if up.photo.is_empty() || up.photo == "[]" {
            return Err(ChannelError::Permanent(
                "photo upload: VK did not take the picture".into(),
            ));
        }
        let server_id = match &up.server {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let saved: Vec<Saved> = self
            .call(
                "photos.saveMessagesPhoto",
                &[
                    ("photo", up.photo),
                    ("server", server_id),
                    ("hash", up.hash),
                ],
            )
            .await?;
        let photo = saved.first().ok_or_else(|| {
            ChannelError::Permanent("photos.saveMessagesPhoto: VK saved no photo".into())
        })?;
        Ok(photo.attachment("photo"))
    }

    /// `docs.getMessagesUploadServer` (`type=doc`) → upload as `file` → `docs.save`, titled
    /// with the file's name.
    async fn upload_doc(&self, peer_id: i64, file: &FileToSend) -> Result<String, ChannelError> {
        let server: UploadServer = self
            .call(
                "docs.getMessagesUploadServer",
                &[("type", "doc".to_owned()), ("peer_id", peer_id.to_string())],
            )
            .await?;
        let up: UploadedDoc = self
            .post_file("document upload", &server.upload_url, "file", file)
            .await?;
        let saved: SavedDoc = self
            .call(
                "docs.save",
                &[("file", up.file), ("title", file.file_name.clone())],
            )
            .await?;
        Ok(saved.doc.attachment("doc"))
    }

    /// POSTs the bytes as multipart field `field` to an upload server and reads its answer:
    /// `{error, error_descr?}` is `Permanent` (the file is refused), an HTTP failure is judged
    /// by its status (5xx and a cut-off answer retried, 429 after a pause).
    async fn post_file<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        field: &str,
        file: &FileToSend,
    ) -> Result<T, ChannelError> {
        let part = Part::bytes(file.bytes.clone())
            .file_name(file.file_name.clone())
            .mime_str(&file.mime_type)
            .map_err(|_| ChannelError::Permanent(format!("not a MIME type: {}", file.mime_type)))?;
        let form = Form::new().part(field.to_owned(), part);
        let result = async {
            let resp = self
                .http
                .post(url)
                .multipart(form)
                .send()
                .await
                .map_err(|e| transport_error(what, e))?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(|e| transport_error(what, e))?;
            let value: Value = match serde_json::from_slice(&body) {
                Ok(v) if (200..300).contains(&status) => v,
                _ => return Err(http_status_error(what, status)),
            };
            if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
                let descr = value
                    .get("error_descr")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| match error {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                return Err(ChannelError::Permanent(format!(
                    "{what}: VK refused the file: {descr}"
                )));
            }
            serde_json::from_value(value)
                .map_err(|e| ChannelError::Permanent(format!("{what}: unexpected answer: {e}")))
        }
        .await;
        result.map_err(|e| scrub(e, &[&self.token, url]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_name_owner_id_and_key() {
        let s = Saved {
            id: 457239017,
            owner_id: -214167102,
            access_key: Some("ab12".into()),
        };
        assert_eq!(s.attachment("photo"), "photo-214167102_457239017_ab12");
        let s = Saved {
            access_key: None,
            ..s
        };
        assert_eq!(s.attachment("doc"), "doc-214167102_457239017");
    }
}
