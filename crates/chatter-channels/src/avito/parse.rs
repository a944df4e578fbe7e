//! Reading what Avito sends: webhook v3 deliveries (§4.3) and the chat and message lists the
//! polling fallback reads (§4.2), as `InboundEvent`s and `InboundMessage`s.

use serde::Deserialize;
use serde_json::Value;

use super::{decode, ChatInfo, HookError, PollCursor};
use crate::{
    Attachment, ChannelError, ChatKind, ChatRef, Extra, InboundEvent, InboundMessage, Sender,
};

#[derive(Deserialize)]
struct ChatList {
    #[serde(default)]
    chats: Vec<RawChat>,
}

#[derive(Deserialize)]
pub(super) struct RawChat {
    id: String,
    #[serde(default)]
    updated: i64,
    context: Option<Value>,
    #[serde(default)]
    users: Vec<RawUser>,
}

#[derive(Deserialize)]
struct RawUser {
    id: i64,
    #[serde(default)]
    name: String,
}

/// A message of `GET …/messages/` (§4.2) or a webhook `value` (§4.3).
#[derive(Deserialize)]
struct RawMessage {
    id: String,
    #[serde(default)]
    author_id: i64,
    #[serde(default)]
    created: i64,
    direction: Option<String>,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    content: Value,
    quote: Option<Value>,
}

/// Parses a webhook v3 delivery (§4.3). Customers' messages become `Message` events (the
/// sender's name is empty: the payload has none, fetch it with `AvitoClient::chat`); our own
/// messages (`author_id == user_id`), system messages and payloads of other types are
/// `Ignored`. Avito signs nothing documented, so there is nothing to verify here.
pub fn parse_webhook(body: &[u8]) -> Result<Vec<InboundEvent>, HookError> {
    let hook: Value =
        serde_json::from_slice(body).map_err(|e| HookError::Malformed(e.to_string()))?;
    let payload = hook
        .get("payload")
        .ok_or_else(|| HookError::Malformed("no payload".into()))?;
    let kind = payload.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "message" {
        return Ok(vec![InboundEvent::Ignored {
            reason: format!("Avito webhook payload of type {kind:?}"),
        }]);
    }
    let value = payload
        .get("value")
        .ok_or_else(|| HookError::Malformed("no payload.value".into()))?;
    let raw = RawMessage::deserialize(value)
        .map_err(|e| HookError::Malformed(format!("payload.value: {e}")))?;
    let chat_id = value
        .get("chat_id")
        .and_then(Value::as_str)
        .ok_or_else(|| HookError::Malformed("no chat_id".into()))?
        .to_owned();
    let owner = value.get("user_id").and_then(Value::as_i64);
    if owner == Some(raw.author_id) {
        return Ok(vec![InboundEvent::Ignored {
            reason: "our own message".into(),
        }]);
    }
    let chat = ChatInfo {
        id: chat_id.clone(),
        updated: raw.created,
        item: None,
        users: Vec::new(),
    };
    let event = match message(raw, &chat_id, &chat) {
        Ok(m) => InboundEvent::Message(m),
        Err(reason) => InboundEvent::Ignored { reason },
    };
    Ok(vec![event])
}

/// Reads a chat list answer (`GET /messenger/v2/accounts/{uid}/chats`, §4.2) of HTTP
/// `status` for account `uid`: the chats, the account itself left out of their people.
pub fn parse_chats(
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
    uid: i64,
) -> Result<Vec<ChatInfo>, ChannelError> {
    let list: ChatList = decode(status, retry_after, body)?;
    Ok(list.chats.into_iter().map(|c| chat_info(c, uid)).collect())
}

/// Reads one chat's message page (`GET /messenger/v3/…/messages/`, §4.2) of HTTP `status`:
/// the customers' messages of `chat` that `cursor` has not returned yet, with their creation
/// time (Unix seconds), oldest first. Our own (`uid`'s) and outgoing messages are skipped.
pub fn parse_messages(
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
    uid: i64,
    chat: &ChatInfo,
    cursor: &PollCursor,
) -> Result<Vec<(i64, InboundMessage)>, ChannelError> {
    let raw: Vec<RawMessage> = decode(status, retry_after, body)?;
    let mut found = Vec::new();
    // Avito lists newest first.
    for m in raw.into_iter().rev() {
        let new =
            m.created > cursor.since || (m.created == cursor.since && !cursor.seen.contains(&m.id));
        if !new || m.direction.as_deref() != Some("in") || m.author_id == uid {
            continue;
        }
        let created = m.created;
        if let Ok(msg) = message(m, &chat.id, chat) {
            found.push((created, msg));
        }
    }
    Ok(found)
}

pub(super) fn chat_info(c: RawChat, uid: i64) -> ChatInfo {
    let item = c.context.as_ref().and_then(|ctx| {
        let v = ctx.get("value")?;
        Some((
            v.get("id")?.as_i64()?,
            v.get("title")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ))
    });
    ChatInfo {
        id: c.id,
        updated: c.updated,
        item,
        users: c
            .users
            .into_iter()
            .filter(|u| u.id != uid)
            .map(|u| (u.id, u.name))
            .collect(),
    }
}

/// A customer's message (§4.2 Message) as an `InboundMessage`; `Err(reason)` for what we do
/// not show (system, deleted, calls, content-less types).
fn message(m: RawMessage, chat_id: &str, chat: &ChatInfo) -> Result<InboundMessage, String> {
    if m.author_id == 0 {
        return Err("a system message".into());
    }
    let content = &m.content;
    let str_at = |ptr: &str| {
        content
            .pointer(ptr)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut text = None;
    let mut attachments = Vec::new();
    let mut extra = None;
    match m.kind.as_str() {
        "text" => text = str_at("/text"),
        "image" => {
            let url = largest_image(content.pointer("/image/sizes"))
                .ok_or_else(|| "an image without sizes".to_owned())?;
            attachments.push(Attachment {
                kind: "photo".into(),
                file_ref: url,
                ..Attachment::default()
            });
        }
        "link" => {
            text = match (str_at("/link/text"), str_at("/link/url")) {
                (Some(t), Some(u)) if !t.contains(&u) => Some(format!("{t}\n{u}")),
                (t, u) => t.or(u),
            }
        }
        "item" => {
            text = match (str_at("/item/title"), str_at("/item/item_url")) {
                (Some(t), Some(u)) => Some(format!("{t}\n{u}")),
                (t, u) => t.or(u),
            }
        }
        "location" => {
            let coord = |k: &str| content.pointer(&format!("/location/{k}"))?.as_f64();
            if let (Some(latitude), Some(longitude)) = (coord("lat"), coord("lon")) {
                extra = Some(Extra::Location {
                    latitude,
                    longitude,
                });
            }
            text = str_at("/location/text");
        }
        other => return Err(format!("Avito message of type {other:?} is not handled")),
    }
    let name = chat
        .users
        .iter()
        .find(|(id, _)| *id == m.author_id)
        .map(|(_, n)| n.clone())
        .unwrap_or_default();
    let reply_to_external_id = m
        .quote
        .as_ref()
        .and_then(|q| q.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(InboundMessage {
        external_id: m.id,
        chat: ChatRef {
            external_id: chat_id.to_owned(),
            kind: ChatKind::Private,
            title: chat.item.as_ref().map(|(_, title)| title.clone()),
        },
        sender: Sender {
            external_id: m.author_id.to_string(),
            name,
            ..Sender::default()
        },
        text: text.filter(|t| !t.is_empty()),
        attachments,
        extra,
        reply_to_external_id,
        sent_at: m.created.saturating_mul(1000),
        edited: false,
    })
}

/// The URL of the largest `WxH` entry of an image's `sizes`.
fn largest_image(sizes: Option<&Value>) -> Option<String> {
    let sizes = sizes?.as_object()?;
    sizes
        .iter()
        .filter_map(|(dims, url)| {
            let (w, h) = dims.split_once('x')?;
            let area = w
                .parse::<u64>()
                .ok()?
                .saturating_mul(h.parse::<u64>().ok()?);
            Some((area, url.as_str()?.to_owned()))
        })
        .max_by_key(|(area, _)| *area)
        .map(|(_, url)| url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_spec_webhook_sample_is_a_message() {
        let body = br#"{"id":"4a5c2f","version":"v3.0.0","timestamp":1767225600,
 "payload":{"type":"message","value":{
   "id":"bdcc5bac2d00345f1cc66fa657813958","chat_id":"u2i-abc123","user_id":94235311,"author_id":141906442,
   "created":1767225600,"published_at":"2026-01-01T00:00:00Z","type":"text","chat_type":"u2i",
   "item_id":1768287444,"content":{"text":"Is it available?"},"read":null}}}"#;
        let events = parse_webhook(body).expect("parsed");
        let [InboundEvent::Message(m)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(m.external_id, "bdcc5bac2d00345f1cc66fa657813958");
        assert_eq!(m.chat.external_id, "u2i-abc123");
        assert_eq!(m.sender.external_id, "141906442");
        assert_eq!(m.text.as_deref(), Some("Is it available?"));
        assert_eq!(m.sent_at, 1767225600000);
    }

    #[test]
    fn own_system_and_unknown_messages_are_ignored() {
        let hook = |author: i64, kind: &str, content: &str| {
            format!(
                r#"{{"id":"1","version":"v3.0.0","timestamp":1,"payload":{{"type":"message","value":{{
                "id":"m1","chat_id":"u2i-1","user_id":5,"author_id":{author},"created":1,
                "type":"{kind}","chat_type":"u2i","content":{content}}}}}}}"#
            )
        };
        for body in [
            hook(5, "text", r#"{"text":"ours"}"#),
            hook(0, "system", r#"{"text":"system"}"#),
            hook(
                7,
                "call",
                r#"{"call":{"status":"missed","target_user_id":5}}"#,
            ),
            hook(7, "file", "{}"),
            r#"{"id":"1","payload":{"type":"something_else","value":{}}}"#.to_owned(),
        ] {
            let events = parse_webhook(body.as_bytes()).expect("parsed");
            assert!(
                matches!(events.as_slice(), [InboundEvent::Ignored { .. }]),
                "{body}: {events:?}"
            );
        }
        let events = parse_webhook(
            hook(
                7,
                "image",
                r#"{"image":{"sizes":{"140x105":"http://s","1280x960":"http://l"}}}"#,
            )
            .as_bytes(),
        )
        .expect("parsed");
        let [InboundEvent::Message(m)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(m.attachments[0].file_ref, "http://l");
    }

    #[test]
    fn malformed_webhooks_are_errors() {
        for body in [
            &b"nope"[..],
            b"{}",
            br#"{"payload":{"type":"message"}}"#,
            br#"{"payload":{"type":"message","value":{"id":"x"}}}"#,
        ] {
            assert!(
                matches!(parse_webhook(body), Err(HookError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Found by fuzzing (`avito_webhook`): image sizes whose area overflows a u64 panicked.
    #[test]
    fn image_sizes_whose_area_overflows_still_pick_one() {
        let sizes = json!({"99999999999x99999999999": "https://img/huge.jpg", "140x105": "https://img/s.jpg"});
        assert_eq!(
            largest_image(Some(&sizes)).as_deref(),
            Some("https://img/huge.jpg")
        );
    }
}
