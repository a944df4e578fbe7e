//! Attachments as stored with a message (a JSON column): what the inbound path writes, the
//! senders and the file fetcher read, and the CRM mirrors. Kept apart from `inbox` so the
//! capabilities that only read a message's files do not depend on the inbox.

use chatter_channels::Attachment;
use chatter_store::entity::message;
use serde::{Deserialize, Serialize};

/// `file_ref` of an outgoing attachment still to be downloaded from the URL after the prefix
/// before it is sent (a file a manager sent from amoCRM).
pub const FETCH_PREFIX: &str = "fetch:";
/// `file_ref` of such an attachment once downloaded, sent as a file.
pub const FETCHED_PREFIX: &str = "fetched:";
/// `file_ref` of such an attachment once downloaded, that the messenger cannot carry (SMS, or
/// over its limits): the customer gets a signed link to it in the text instead.
pub const LINKED_PREFIX: &str = "linked:";

/// An attachment as stored with a message: the provider's reference and, once fetched, our blob.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAttachment {
    pub kind: String,
    pub file_ref: String,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
    /// SHA-256 name in the blob store, once downloaded.
    pub blob: Option<String>,
    /// The image type the downloaded bytes really are (PNG, JPEG, GIF, WebP: see
    /// `blobs::raster_type`); only these are shown as pictures. `None`: not a raster image,
    /// or stored before files were checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raster: Option<String>,
}

impl From<&Attachment> for StoredAttachment {
    fn from(a: &Attachment) -> Self {
        Self {
            kind: a.kind.clone(),
            file_ref: a.file_ref.clone(),
            file_name: a.file_name.clone(),
            mime_type: a.mime_type.clone(),
            size: a.size,
            blob: None,
            raster: None,
        }
    }
}

/// A message's attachments (none when the column is empty).
pub fn attachments_of(m: &message::Model) -> Vec<StoredAttachment> {
    chatter_store::stored_json::read("messages.attachments", m.id, &m.attachments)
}
