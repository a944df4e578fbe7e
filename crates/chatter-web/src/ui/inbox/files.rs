//! A message's stored attachment, served to members of its company: shown inline only when its
//! bytes are a raster picture, otherwise a download, with a safe file name either way.

use crate::ctx::Ctx;
use crate::error::AppError;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chatter_core::attachments::attachments_of;
use chatter_core::inbox;
use chatter_core::CoreError;
use chatter_domain::MessageId;

pub(super) async fn file(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((mid, index)): Path<(MessageId, usize)>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let m = inbox::get_message(&st.core, &actor, mid).await?;
    let atts = attachments_of(&m);
    let a = atts.get(index).ok_or(CoreError::NotFound)?;
    let blob = a.blob.as_deref().ok_or(CoreError::NotFound)?;
    let bytes = chatter_core::blobs::get(&st.core.blobs, blob)
        .await
        .ok_or(CoreError::NotFound)?;
    // Never trust the provider's type: only bytes that are a raster picture are shown inline
    // (with the type they really are); everything else is a download of opaque bytes.
    let inline = chatter_core::blobs::raster_type(&bytes);
    Ok(served(a, index, bytes, inline))
}

/// A kept file as a response: `inline` with that type (a raster picture, on pages), else a
/// download of opaque bytes (SVG and HTML included); sandboxed by its CSP either way.
pub(crate) fn served(
    a: &chatter_core::attachments::StoredAttachment,
    index: usize,
    bytes: Vec<u8>,
    inline: Option<&str>,
) -> Response {
    let fallback = format!("{}-{}", a.kind, index);
    let name = a.file_name.as_deref().unwrap_or(&fallback);
    let (mime, disposition) = match inline {
        Some(t) => (t, content_disposition("inline", name)),
        None => (
            "application/octet-stream",
            content_disposition("attachment", name),
        ),
    };
    (
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::CONTENT_SECURITY_POLICY,
                crate::security::FILE_CSP.to_string(),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        bytes,
    )
        .into_response()
}

/// `inline` or `attachment` with the file's name (RFC 6266): a plain-ASCII `filename=` for old
/// clients and the exact name as UTF-8 in `filename*=`. Path separators, quotes and control
/// characters never get through.
pub(crate) fn content_disposition(kind: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | '"') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let clean = clean.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let clean = if clean.is_empty() { "file" } else { clean };
    let ascii: String = clean
        .chars()
        .map(|c| if c.is_ascii() { c } else { '_' })
        .collect();
    let mut encoded = String::new();
    for b in clean.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}
