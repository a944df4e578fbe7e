//! VK events (spec §2.2, the same shape in Callback and Long Poll) turned into provider-neutral
//! `InboundEvent`s, and the Callback API's envelope checks.

use serde::Deserialize;
use serde_json::Value;

use super::CHAT_PEER_OFFSET;
use crate::common::secret_matches;
use crate::{Attachment, ChatKind, ChatRef, Extra, InboundEvent, InboundMessage, Sender};

/// What a callback request asks of the server that received it.
#[derive(Clone, Debug, PartialEq)]
pub enum CallbackOutcome {
    /// `confirmation`: answer 200 with the community's confirmation code
    /// (`VkClient::get_callback_confirmation_code`) as the whole plain-text body.
    Confirmation { group_id: i64 },
    /// Any other event: store `events`, then answer 200 with exactly `ok` (`CALLBACK_OK`).
    /// VK re-sends an event until it gets `ok`; `event_id` is its dedup key.
    Events {
        event_id: Option<String>,
        events: Vec<InboundEvent>,
    },
}

/// Why a callback request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// Not from VK for this community: the `secret` is missing or wrong, or `group_id` names
    /// another community. Answer 401 and store nothing.
    #[error("the callback is not signed with this community's secret")]
    Unauthenticated,
    /// Not a VK callback at all (not JSON, no `type` or `group_id`). Answer 400.
    #[error("malformed VK callback: {0}")]
    Malformed(String),
}

/// Reads one Callback API request (§2.2) for community `group_id` whose servers were set up
/// with `secret`.
///
/// `confirmation` needs no secret (VK sends none); every other type must carry `secret` equal
/// to ours, compared in constant time. An empty configured `secret` accepts nothing but
/// confirmations: Chatter always sets one.
pub fn parse_callback(
    body: &[u8],
    secret: &str,
    group_id: i64,
) -> Result<CallbackOutcome, CallbackError> {
    let raw: Value = serde_json::from_slice(body)
        .map_err(|_| CallbackError::Malformed("the body is not JSON".into()))?;
    let Some(obj) = raw.as_object() else {
        return Err(CallbackError::Malformed(
            "the body is not a JSON object".into(),
        ));
    };
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| CallbackError::Malformed("no type".into()))?;
    let from_group = obj
        .get("group_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| CallbackError::Malformed("no group_id".into()))?;
    if from_group != group_id {
        return Err(CallbackError::Unauthenticated);
    }
    if kind == "confirmation" {
        return Ok(CallbackOutcome::Confirmation { group_id });
    }
    if !secret_matches(obj.get("secret").and_then(Value::as_str), secret) {
        return Err(CallbackError::Unauthenticated);
    }
    Ok(CallbackOutcome::Events {
        event_id: obj
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        events: vec![parse_event(&raw, group_id)],
    })
}

#[derive(Deserialize)]
struct Message {
    date: i64,
    peer_id: i64,
    from_id: i64,
    #[serde(default)]
    text: String,
    conversation_message_id: Option<i64>,
    #[serde(default)]
    out: i64,
    #[serde(default)]
    attachments: Vec<Value>,
    reply_message: Option<Box<Replied>>,
    geo: Option<Geo>,
    update_time: Option<i64>,
}

#[derive(Deserialize)]
struct Replied {
    conversation_message_id: Option<i64>,
}

#[derive(Deserialize)]
struct Geo {
    coordinates: Coordinates,
}

#[derive(Deserialize)]
struct Coordinates {
    latitude: f64,
    longitude: f64,
}

#[derive(Deserialize)]
struct Allow {
    user_id: i64,
}

#[derive(Deserialize)]
struct PhotoSize {
    #[serde(default, rename = "type")]
    kind: String,
    url: String,
    #[serde(default)]
    width: i64,
    #[serde(default)]
    height: i64,
}

/// Photo size letters from small to large, for old photos whose sizes carry no dimensions.
const SIZE_ORDER: &str = "smxopqryzw";

/// Normalises one event object `{type, event_id, v, object, group_id}` (§2.2, §2.3).
///
/// - `message_new` / `message_edit` → `Message` (`edited` for an edit). `external_id` is
///   `"{peer_id}:{conversation_message_id}"`: `id` is 0 in group conversations, the
///   conversation message id is not, and it is the same on every re-delivery.
///   `reply_to_external_id` is built the same way from `reply_message`.
/// - Chat: `peer_id`; `Group` from `2000000000` up, `Private` below. Sender: `from_id`, with
///   `username` `id<from_id>` (VK's address of a profile; names need a separate lookup, so
///   `name` is empty).
/// - `photo` → its largest size's URL; `doc` → `document` with its title; `audio_message` →
///   `voice` (OGG link); `geo` → `Extra::Location`. Other attachment types are skipped; a
///   message with nothing left is `Ignored` naming them.
/// - `message_deny` / `message_allow` → `Blocked` (`at` is 0: VK sends no time; the caller
///   stamps its own).
/// - `message_reply` (our own sends echoed), messages written by communities, other types and
///   events of another community → `Ignored`.
pub fn parse_event(raw: &Value, group_id: i64) -> InboundEvent {
    let Some(kind) = raw.get("type").and_then(Value::as_str) else {
        return ignored("the event has no type".into());
    };
    if raw
        .get("group_id")
        .and_then(Value::as_i64)
        .is_some_and(|g| g != group_id)
    {
        return ignored(format!("{kind} of another community"));
    }
    let object = raw.get("object").unwrap_or(&Value::Null);
    match kind {
        // Since 5.103 the message sits in `object.message`; before, it is the object itself.
        "message_new" => parse_message(object.get("message").unwrap_or(object), false),
        "message_edit" => parse_message(object, true),
        "message_allow" | "message_deny" => match Allow::deserialize(object) {
            Ok(a) => InboundEvent::Blocked {
                chat: ChatRef {
                    external_id: a.user_id.to_string(),
                    kind: ChatKind::Private,
                    title: None,
                },
                sender: sender(a.user_id),
                blocked: kind == "message_deny",
                at: 0,
            },
            Err(e) => ignored(format!("{kind} without user_id: {e}")),
        },
        "message_reply" => ignored("message_reply: the community's own message".into()),
        other => ignored(format!("{other}: not handled")),
    }
}

fn parse_message(object: &Value, edited: bool) -> InboundEvent {
    let m = match Message::deserialize(object) {
        Ok(m) => m,
        Err(e) => return ignored(format!("a message VK described oddly: {e}")),
    };
    if m.out == 1 || m.from_id <= 0 {
        return ignored("a message of a community, not a customer".into());
    }
    let Some(cmid) = m.conversation_message_id else {
        return ignored("a message without conversation_message_id".into());
    };
    let mut attachments = Vec::new();
    let mut skipped = Vec::new();
    for a in &m.attachments {
        match attachment(a) {
            Ok(a) => attachments.push(a),
            Err(kind) => skipped.push(kind),
        }
    }
    let text = Some(m.text).filter(|t| !t.trim().is_empty());
    let extra = m.geo.map(|g| Extra::Location {
        latitude: g.coordinates.latitude,
        longitude: g.coordinates.longitude,
    });
    if text.is_none() && attachments.is_empty() && extra.is_none() {
        return ignored(if skipped.is_empty() {
            "an empty message".into()
        } else {
            format!("only unsupported content: {}", skipped.join(", "))
        });
    }
    let at = if edited {
        m.update_time.unwrap_or(m.date)
    } else {
        m.date
    };
    InboundEvent::Message(InboundMessage {
        external_id: format!("{}:{cmid}", m.peer_id),
        chat: ChatRef {
            external_id: m.peer_id.to_string(),
            kind: if m.peer_id >= CHAT_PEER_OFFSET {
                ChatKind::Group
            } else {
                ChatKind::Private
            },
            title: None,
        },
        sender: sender(m.from_id),
        text,
        attachments,
        extra,
        reply_to_external_id: m
            .reply_message
            .and_then(|r| r.conversation_message_id)
            .map(|c| format!("{}:{c}", m.peer_id)),
        sent_at: at.saturating_mul(1000),
        edited,
    })
}

/// One attachment, or its type when we do not carry it.
fn attachment(a: &Value) -> Result<Attachment, String> {
    let kind = a.get("type").and_then(Value::as_str).unwrap_or("unknown");
    let body = a.get(kind).unwrap_or(&Value::Null);
    let unsupported = || kind.to_owned();
    match kind {
        "photo" => {
            let sizes: Vec<PhotoSize> = body
                .get("sizes")
                .cloned()
                .and_then(|s| serde_json::from_value(s).ok())
                .unwrap_or_default();
            let rank = |s: &PhotoSize| {
                let letter = s.kind.chars().next().and_then(|c| SIZE_ORDER.find(c));
                (s.width.saturating_mul(s.height), letter)
            };
            let best = sizes.into_iter().max_by_key(rank).ok_or_else(unsupported)?;
            Ok(Attachment {
                kind: "photo".into(),
                file_ref: best.url,
                ..Attachment::default()
            })
        }
        "doc" => {
            let url = body
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(unsupported)?;
            let title = body.get("title").and_then(Value::as_str).unwrap_or("file");
            let ext = body.get("ext").and_then(Value::as_str).unwrap_or("");
            let file_name = if ext.is_empty() || title.ends_with(&format!(".{ext}")) {
                title.to_owned()
            } else {
                format!("{title}.{ext}")
            };
            Ok(Attachment {
                kind: "document".into(),
                file_ref: url.to_owned(),
                file_name: Some(file_name),
                mime_type: None,
                size: body.get("size").and_then(Value::as_i64),
            })
        }
        "audio_message" => {
            let (url, mime) = match body.get("link_ogg").and_then(Value::as_str) {
                Some(ogg) => (ogg, "audio/ogg"),
                None => (
                    body.get("link_mp3")
                        .and_then(Value::as_str)
                        .ok_or_else(unsupported)?,
                    "audio/mpeg",
                ),
            };
            Ok(Attachment {
                kind: "voice".into(),
                file_ref: url.to_owned(),
                mime_type: Some(mime.into()),
                ..Attachment::default()
            })
        }
        _ => Err(unsupported()),
    }
}

fn sender(user_id: i64) -> Sender {
    Sender {
        external_id: user_id.to_string(),
        username: Some(format!("id{user_id}")),
        ..Sender::default()
    }
}

fn ignored(reason: String) -> InboundEvent {
    InboundEvent::Ignored { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GROUP: i64 = 214167102;

    fn envelope(kind: &str, object: Value) -> Value {
        json!({"type": kind, "event_id": "e1", "v": "5.199", "group_id": GROUP, "object": object})
    }

    #[test]
    fn a_group_chat_message_with_photo_doc_geo_and_reply() {
        let msg = json!({"date": 1767225600, "from_id": 612444319, "id": 0, "out": 0,
            "peer_id": 2000000007, "text": "", "conversation_message_id": 55,
            "reply_message": {"conversation_message_id": 50, "from_id": -GROUP, "text": "hi"},
            "geo": {"type": "point", "coordinates": {"latitude": 55.75, "longitude": 37.61}},
            "attachments": [
                {"type": "photo", "photo": {"id": 1, "owner_id": 612444319, "sizes": [
                    {"type": "s", "url": "https://x/s.jpg", "width": 75, "height": 50},
                    {"type": "z", "url": "https://x/z.jpg", "width": 1280, "height": 853},
                    {"type": "m", "url": "https://x/m.jpg", "width": 130, "height": 87}]}},
                {"type": "doc", "doc": {"id": 2, "owner_id": 612444319, "title": "invoice",
                    "size": 1234, "ext": "pdf", "url": "https://x/doc"}},
                {"type": "sticker", "sticker": {"sticker_id": 9}}]});
        let InboundEvent::Message(m) =
            parse_event(&envelope("message_new", json!({"message": msg})), GROUP)
        else {
            panic!("a message");
        };
        assert_eq!(m.external_id, "2000000007:55");
        assert_eq!(m.chat.kind, ChatKind::Group);
        assert_eq!(m.sender.external_id, "612444319");
        assert_eq!(m.reply_to_external_id.as_deref(), Some("2000000007:50"));
        assert_eq!(m.text, None);
        assert_eq!(m.attachments.len(), 2);
        assert_eq!(m.attachments[0].file_ref, "https://x/z.jpg");
        assert_eq!(m.attachments[1].file_name.as_deref(), Some("invoice.pdf"));
        assert_eq!(m.sent_at, 1767225600000);
        assert!(matches!(m.extra, Some(Extra::Location { .. })));
    }

    #[test]
    fn old_photos_without_dimensions_pick_the_largest_letter() {
        let a = json!({"type": "photo", "photo": {"sizes": [
            {"type": "x", "url": "https://x/x.jpg", "width": 0, "height": 0},
            {"type": "w", "url": "https://x/w.jpg", "width": 0, "height": 0},
            {"type": "s", "url": "https://x/s.jpg", "width": 0, "height": 0}]}});
        assert_eq!(attachment(&a).expect("photo").file_ref, "https://x/w.jpg");
    }

    #[test]
    fn stickers_alone_echoes_and_other_communities_are_ignored() {
        let sticker = json!({"message": {"date": 1, "from_id": 5, "peer_id": 5, "text": "",
            "conversation_message_id": 1, "attachments": [{"type": "sticker", "sticker": {}}]}});
        assert_eq!(
            parse_event(&envelope("message_new", sticker), GROUP),
            InboundEvent::Ignored {
                reason: "only unsupported content: sticker".into()
            }
        );
        let echo = json!({"date": 1, "from_id": -GROUP, "peer_id": 5, "text": "hi", "out": 1,
            "conversation_message_id": 2});
        assert!(matches!(
            parse_event(&envelope("message_reply", echo.clone()), GROUP),
            InboundEvent::Ignored { .. }
        ));
        assert!(matches!(
            parse_event(&envelope("message_edit", echo), GROUP),
            InboundEvent::Ignored { .. }
        ));
        let mut other = envelope("message_deny", json!({"user_id": 5}));
        other["group_id"] = json!(1);
        assert!(matches!(
            parse_event(&other, GROUP),
            InboundEvent::Ignored { .. }
        ));
    }

    #[test]
    fn message_new_before_5_103_is_the_message_itself() {
        let msg = json!({"date": 1, "from_id": 5, "peer_id": 5, "text": "old", "conversation_message_id": 3});
        let InboundEvent::Message(m) = parse_event(&envelope("message_new", msg), GROUP) else {
            panic!("a message");
        };
        assert_eq!(m.text.as_deref(), Some("old"));
        assert_eq!(m.chat.kind, ChatKind::Private);
    }

    #[test]
    fn callback_secret_and_group_are_checked_before_anything_is_read() {
        let mut body = envelope("message_deny", json!({"user_id": 5}));
        body["secret"] = json!("s3cr3t");
        let bytes = body.to_string();
        assert!(matches!(
            parse_callback(bytes.as_bytes(), "s3cr3t", GROUP),
            Ok(CallbackOutcome::Events { .. })
        ));
        assert_eq!(
            parse_callback(bytes.as_bytes(), "other", GROUP),
            Err(CallbackError::Unauthenticated)
        );
        assert_eq!(
            parse_callback(bytes.as_bytes(), "s3cr3t", 1),
            Err(CallbackError::Unauthenticated)
        );
        assert_eq!(
            parse_callback(bytes.as_bytes(), "", GROUP),
            Err(CallbackError::Unauthenticated)
        );
        assert!(matches!(
            parse_callback(b"[1]", "s3cr3t", GROUP),
            Err(CallbackError::Malformed(_))
        ));
    }

    /// Found by fuzzing (`vk_callback`): sizes whose area overflows an i64 panicked.
    #[test]
    fn photo_sizes_whose_area_overflows_still_pick_one() {
        let a = json!({"type": "photo", "photo": {"sizes": [
            {"type": "s", "url": "https://x/s.jpg", "width": 75, "height": 50},
            {"type": "w", "url": "https://x/w.jpg", "width": 9223372036854775807_i64, "height": -9}]}});
        assert_eq!(attachment(&a).expect("photo").file_ref, "https://x/s.jpg");
    }
}
