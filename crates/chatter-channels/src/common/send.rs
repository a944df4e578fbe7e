//! A message sent the way every kind sends one: the text split at the kind's limit
//! (`Connector::max_text`), the parts sent in order through `Connector::send_part`, only the
//! first quoting the message answered. Written once so no kind can send parts out of order or
//! quote the answered message twice.

use super::split_text;
use crate::{ChannelError, Connector, OutboundMessage, Part, Sent};

/// Sends `m` through `c` in parts and returns the provider's id of each part, in order. An
/// empty text is `Permanent`. If a later part fails, the earlier parts stay sent and the error
/// is returned; a caller that must not repeat them sends part by part (as the send job does).
pub async fn send_in_parts<C: Connector + ?Sized>(
    c: &C,
    m: &OutboundMessage,
) -> Result<Sent, ChannelError> {
    let parts = split_text(&m.text, c.max_text());
    if parts.is_empty() {
        return Err(ChannelError::Permanent("message text is empty".into()));
    }
    let key = m.idempotency_key.as_deref().unwrap_or_default();
    let mut reply_to = m.reply_to_external_id.as_deref();
    let mut external_ids = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let id = c
            .send_part(Part {
                chat: &m.chat_external_id,
                text: part,
                reply_to: reply_to.take(),
                key,
                index: i,
            })
            .await?;
        external_ids.push(id);
    }
    Ok(Sent { external_ids })
}
