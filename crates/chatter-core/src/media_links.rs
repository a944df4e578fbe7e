//! Signed links to a message's stored attachment, opened without a session: what amoCRM
//! downloads a customer's photo, document or voice message from (its Chats API takes files by
//! URL), what a deal note links to, and what a customer whose messenger takes no files (SMS)
//! gets instead of the file.
//!
//! A link is `{base}/media/{message id}/{index}?expires={unix seconds}&sig={hex}` where `sig`
//! is HMAC-SHA256 over the message id, the attachment's index and the expiry, under a key
//! derived from the master key (`Secrets::link_mac`): every node opens what any node made,
//! nothing else opens it, and it stops working at `expires` (`CoreConfig::media_link_ttl_ms`,
//! 7 days unless configured). `base` is the public webhook base when one is set (the address
//! the internet reaches), else the public URL.

use crate::attachments::{attachments_of, StoredAttachment};
use crate::Core;
use chatter_domain::MessageId;
use chatter_store::entity::message;
use sea_orm::EntityTrait;

/// The route's path prefix.
pub const PATH: &str = "/media";

/// A link made for an attachment, and when it stops working.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub url: String,
    /// Unix milliseconds.
    pub expires_at_ms: i64,
}

/// Why a link does not open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The signature does not match: the link was changed, or made under another master key.
    BadSignature,
    /// It was genuine and has expired (at this unix second).
    Expired { at: i64 },
    /// The message, the attachment or its bytes are gone (or not fetched yet).
    Missing,
}

/// An attachment as a signed link serves it.
#[derive(Clone, Debug)]
pub struct Served {
    pub attachment: StoredAttachment,
    pub bytes: Vec<u8>,
    /// The type it is served as: what the bytes are for pictures, the stored type where it is
    /// one that cannot run in a browser, else `application/octet-stream`.
    pub content_type: String,
    /// Shown in place (pictures, audio, video, PDF) rather than downloaded.
    pub inline: bool,
}

/// Where links point: the public webhook base when set, else the public URL.
pub fn base(core: &Core) -> &str {
    core.config
        .kinds
        .webhook_base
        .as_deref()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or(&core.config.public_url)
        .trim_end_matches('/')
}

fn signed_text(message_id: MessageId, index: usize, expires: i64) -> String {
    format!("media:v1:{message_id}:{index}:{expires}")
}

/// A link to attachment `index` of message `message_id`, good for the configured time from now.
pub fn link(core: &Core, message_id: MessageId, index: usize) -> Link {
    let expires_at_ms = core.now().saturating_add(core.config.media_link_ttl_ms);
    let expires = expires_at_ms.div_euclid(1000);
    let sig = hex::encode(
        core.secrets
            .link_mac(signed_text(message_id, index, expires).as_bytes()),
    );
    Link {
        url: format!(
            "{}{PATH}/{message_id}/{index}?expires={expires}&sig={sig}",
            base(core)
        ),
        expires_at_ms: expires * 1000,
    }
}

/// Checks a link's signature and expiry, then reads the attachment's bytes from the blob store.
pub async fn open(
    core: &Core,
    message_id: MessageId,
    index: usize,
    expires: i64,
    sig: &str,
) -> Result<Served, Refusal> {
    let mac = hex::decode(sig.trim()).map_err(|_| Refusal::BadSignature)?;
    if !core
        .secrets
        .link_mac_matches(signed_text(message_id, index, expires).as_bytes(), &mac)
    {
        return Err(Refusal::BadSignature);
    }
    if core.now().div_euclid(1000) >= expires {
        return Err(Refusal::Expired { at: expires });
    }
    let m = message::Entity::find_by_id(message_id)
        .one(&core.db)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot read a message for a signed link");
            Refusal::Missing
        })?
        .ok_or(Refusal::Missing)?;
    let a = attachments_of(&m)
        .into_iter()
        .nth(index)
        .ok_or(Refusal::Missing)?;
    let blob = a.blob.as_deref().ok_or(Refusal::Missing)?;
    let bytes = crate::blobs::get(&core.blobs, blob)
        .await
        .ok_or(Refusal::Missing)?;
    let (content_type, inline) = served_type(a.mime_type.as_deref(), &bytes);
    Ok(Served {
        attachment: a,
        bytes,
        content_type,
        inline,
    })
}

/// Types a browser never runs, served as they are.
const PLAIN_TYPES: &[&str] = &[
    "application/pdf",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/zip",
    "text/plain",
    "text/csv",
];

/// The type a file is served as and whether it is shown in place: pictures by their bytes
/// (whatever was declared), audio and video and the office types as declared, anything else
/// (HTML, SVG, scripts) as opaque bytes to download.
pub fn served_type(declared: Option<&str>, bytes: &[u8]) -> (String, bool) {
    if let Some(t) = crate::blobs::raster_type(bytes) {
        return (t.to_owned(), true);
    }
    if let Some(t) = crate::blobs::picture_type(bytes) {
        return (t.to_owned(), false);
    }
    let declared = declared
        .and_then(|d| d.split(';').next())
        .map(|d| d.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let media = (declared.starts_with("audio/") || declared.starts_with("video/"))
        && declared
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/.+-".contains(&b));
    if media {
        return (declared, true);
    }
    if PLAIN_TYPES.contains(&declared.as_str()) {
        let inline = declared == "application/pdf";
        return (declared, inline);
    }
    ("application/octet-stream".to_owned(), false)
}

#[cfg(test)]
mod tests {
    use super::served_type;

    #[test]
    fn pictures_by_their_bytes_and_nothing_that_runs() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(
            served_type(Some("text/html"), png),
            ("image/png".into(), true)
        );
        assert_eq!(
            served_type(Some("audio/ogg"), b"OggS"),
            ("audio/ogg".into(), true)
        );
        assert_eq!(
            served_type(Some("application/pdf"), b"%PDF-1.4"),
            ("application/pdf".into(), true)
        );
        for bad in ["text/html", "image/svg+xml", "application/javascript", ""] {
            assert_eq!(
                served_type(Some(bad), b"<svg onload=alert(1)>"),
                ("application/octet-stream".into(), false),
                "{bad}"
            );
        }
        assert_eq!(
            served_type(Some("audio/x\"y"), b"x"),
            ("application/octet-stream".into(), false)
        );
    }
}
