//! Reading a reply's file from a `multipart/form-data` body (the inbox's file form and
//! `POST /api/v1/conversations/{id}/attachments`): the fields `file`, `text`, `reply_to` (and
//! `_csrf` on pages), the file's size checked chunk by chunk against the kind's limit so a
//! file too large is refused while it streams, never read whole. Only these routes take a body
//! larger than `WebConfig::body_limit` (`upload_limit`).

use axum::extract::multipart::{Multipart, MultipartError};
use chatter_channels::FileRules;
use chatter_core::inbox::Upload;

/// The largest body an upload route takes: the largest file any kind sends, and room for the
/// other fields.
pub fn upload_limit() -> usize {
    let largest = chatter_channels::KINDS
        .iter()
        .filter_map(|k| k.files())
        .map(|r| r.max_bytes)
        .max()
        .unwrap_or(0);
    usize::try_from(largest).unwrap_or(usize::MAX) + 1024 * 1024
}

/// The fields of a file form.
#[derive(Default)]
pub struct FileForm {
    /// `None` when the form has no `file` field with a file name (nothing chosen).
    pub file: Option<Upload>,
    pub text: String,
    pub reply_to: Option<String>,
    pub csrf: Option<String>,
}

/// Why a file form could not be read.
pub enum UploadError {
    /// The file is larger than the kind's `FileRules::max_bytes`.
    TooLarge,
    /// The body is not well-formed multipart (or was cut off).
    Malformed(String),
}

impl From<MultipartError> for UploadError {
    fn from(e: MultipartError) -> Self {
        match e.status() {
            axum::http::StatusCode::PAYLOAD_TOO_LARGE => UploadError::TooLarge,
            _ => UploadError::Malformed(e.body_text()),
        }
    }
}

/// Reads the form, keeping at most `rules.max_bytes` of the file; short text fields are bounded
/// to 64 KB each (what the core checks afterwards is far less).
pub async fn read(mut mp: Multipart, rules: &FileRules) -> Result<FileForm, UploadError> {
    const TEXT_MAX: usize = 64 * 1024;
    let mut form = FileForm::default();
    while let Some(mut field) = mp.next_field().await? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let Some(file_name) = field.file_name().map(str::to_owned) else {
                continue;
            };
            let mime_type = field.content_type().map(str::to_owned);
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await? {
                if (bytes.len() + chunk.len()) as u64 > rules.max_bytes {
                    return Err(UploadError::TooLarge);
                }
                bytes.extend_from_slice(&chunk);
            }
            // A file input left empty sends a part with an empty name and no bytes.
            if file_name.is_empty() && bytes.is_empty() {
                continue;
            }
            form.file = Some(Upload {
                file_name,
                mime_type,
                bytes,
            });
            continue;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await? {
            if value.len() + chunk.len() > TEXT_MAX {
                return Err(UploadError::Malformed(format!(
                    "the field {name} is too long"
                )));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8_lossy(&value).replace('\u{0}', "");
        match name.as_str() {
            "text" | "caption" => form.text = value,
            "reply_to" => form.reply_to = Some(value).filter(|v| !v.trim().is_empty()),
            "_csrf" => form.csrf = Some(value),
            _ => {}
        }
    }
    Ok(form)
}
