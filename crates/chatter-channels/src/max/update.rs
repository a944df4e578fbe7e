//! Max `Update` objects (spec §3.4) turned into provider-neutral `InboundEvent`s.

use serde::Deserialize;
use serde_json::Value;

use crate::{Attachment, ChatKind, ChatRef, Extra, InboundEvent, InboundMessage, Sender};

#[derive(Deserialize)]
struct User {
    user_id: i64,
    #[serde(default)]
    first_name: String,
    last_name: Option<String>,
    name: Option<String>,
    username: Option<String>,
    #[serde(default)]
    is_bot: bool,
}

impl User {
    fn sender(&self, locale: Option<&str>) -> Sender {
        let full = match self.last_name.as_deref().filter(|l| !l.is_empty()) {
            Some(last) => format!("{} {last}", self.first_name),
            None => self.first_name.clone(),
        };
        let name = if full.trim().is_empty() {
            self.name.clone().unwrap_or_default()
        } else {
            full
        };
        Sender {
            external_id: self.user_id.to_string(),
            name,
            username: self.username.clone().filter(|u| !u.is_empty()),
            phone: None,
            language: locale.map(str::to_owned),
        }
    }
}

#[derive(Deserialize)]
struct Recipient {
    chat_id: Option<i64>,
    #[serde(default)]
    chat_type: String,
    user_id: Option<i64>,
}

#[derive(Deserialize)]
struct Body {
    mid: String,
    text: Option<String>,
    #[serde(default)]
    attachments: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct LinkedMessage {
    mid: String,
}

#[derive(Deserialize)]
struct Link {
    #[serde(rename = "type")]
    kind: String,
    message: Option<LinkedMessage>,
}

#[derive(Deserialize)]
struct Message {
    sender: Option<User>,
    recipient: Recipient,
    timestamp: i64,
    body: Body,
    link: Option<Link>,
}

#[derive(Deserialize)]
struct ChatEvent {
    chat_id: i64,
    user: User,
}

/// Turns one Update (a polled one or a webhook body) into an event. Never fails: an update we
/// cannot read or do not handle becomes `Ignored` with the reason, so a poll's marker still
/// moves past it.
pub fn parse_update(update: &Value) -> InboundEvent {
    let kind = update
        .get("update_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let at = update.get("timestamp").and_then(Value::as_i64).unwrap_or(0);
    let locale = update.get("user_locale").and_then(Value::as_str);
    let result = match kind {
        "message_created" => message(update, locale, None),
        "message_edited" => message(update, locale, Some(at)),
        "bot_started" => chat_event(update, locale, false, at, ChatKind::Private),
        "bot_stopped" => chat_event(update, locale, true, at, ChatKind::Private),
        // A member left or was removed from a group the bot is in: they are unreachable there.
        "user_removed" => chat_event(update, locale, true, at, ChatKind::Group),
        "" => Err("an update without update_type".to_owned()),
        other => Err(format!("Max update {other} is not handled")),
    };
    result.unwrap_or_else(|reason| InboundEvent::Ignored { reason })
}

fn chat_event(
    update: &Value,
    locale: Option<&str>,
    blocked: bool,
    at: i64,
    kind: ChatKind,
) -> Result<InboundEvent, String> {
    let event = ChatEvent::deserialize(update).map_err(|e| format!("bad chat event: {e}"))?;
    Ok(InboundEvent::Blocked {
        chat: ChatRef {
            external_id: event.chat_id.to_string(),
            kind,
            title: None,
        },
        sender: event.user.sender(locale),
        blocked,
        at,
    })
}

/// `edited_at` is the update's timestamp for `message_edited`, `None` for a new message.
fn message(
    update: &Value,
    locale: Option<&str>,
    edited_at: Option<i64>,
) -> Result<InboundEvent, String> {
    let raw = update
        .get("message")
        .ok_or_else(|| "a message update without message".to_owned())?;
    let m = Message::deserialize(raw).map_err(|e| format!("bad message: {e}"))?;
    let sender = m
        .sender
        .ok_or_else(|| "a channel post without sender".to_owned())?;
    if sender.is_bot {
        return Err("a message from a bot".into());
    }
    let chat_id = match (m.recipient.chat_id, m.recipient.user_id) {
        (Some(id), _) => id,
        // A dialog addressed by user: the dialog's id is not given, reply by the sender.
        (None, Some(_)) => sender.user_id,
        (None, None) => return Err("a message without recipient".into()),
    };
    let kind = match m.recipient.chat_type.as_str() {
        "chat" | "channel" => ChatKind::Group,
        _ => ChatKind::Private,
    };
    let mut attachments = Vec::new();
    let mut extra = None;
    for a in m.body.attachments.iter().flatten() {
        match attachment(a) {
            Some(Part::File(f)) => attachments.push(f),
            Some(Part::Extra(e)) => extra = Some(e),
            None => {}
        }
    }
    let reply_to_external_id = m
        .link
        .filter(|l| l.kind == "reply")
        .and_then(|l| l.message)
        .map(|l| l.mid);
    Ok(InboundEvent::Message(InboundMessage {
        external_id: m.body.mid,
        chat: ChatRef {
            external_id: chat_id.to_string(),
            kind,
            title: None,
        },
        sender: sender.sender(locale),
        text: m.body.text.filter(|t| !t.is_empty()),
        attachments,
        extra,
        reply_to_external_id,
        sent_at: edited_at.unwrap_or(m.timestamp),
        edited: edited_at.is_some(),
    }))
}

enum Part {
    File(Attachment),
    Extra(Extra),
}

/// One incoming attachment (§3.4). Media become attachments whose `file_ref` is the payload's
/// URL; contact and location become `Extra`; keyboards, shares and data are dropped.
fn attachment(a: &Value) -> Option<Part> {
    let kind = a.get("type")?.as_str()?;
    let payload = a.get("payload");
    let url = || payload?.get("url")?.as_str().map(str::to_owned);
    let file = |kind: &str| {
        Some(Part::File(Attachment {
            kind: kind.to_owned(),
            file_ref: url()?,
            file_name: a.get("filename").and_then(Value::as_str).map(str::to_owned),
            mime_type: None,
            size: a.get("size").and_then(Value::as_i64),
        }))
    };
    match kind {
        "image" => file("photo"),
        "file" => file("document"),
        "video" => file("video"),
        "audio" => file("audio"),
        "sticker" => file("sticker"),
        "location" => Some(Part::Extra(Extra::Location {
            latitude: a.get("latitude")?.as_f64()?,
            longitude: a.get("longitude")?.as_f64()?,
        })),
        "contact" => contact(payload?),
        _ => None,
    }
}

/// The phone is the vCard's `TEL` line; the name its `FN`, else the Max user's name.
fn contact(payload: &Value) -> Option<Part> {
    let vcf = payload
        .get("vcf_info")
        .and_then(Value::as_str)
        .unwrap_or("");
    let field = |name: &str| {
        vcf.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            let key = key.split(';').next()?.trim();
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let phone = field("TEL")?;
    let name = field("FN")
        .or_else(|| {
            let user = payload.get("max_info")?;
            let first = user.get("first_name")?.as_str()?;
            Some(match user.get("last_name").and_then(Value::as_str) {
                Some(last) if !last.is_empty() => format!("{first} {last}"),
                _ => first.to_owned(),
            })
        })
        .unwrap_or_default();
    Some(Part::Extra(Extra::Contact { phone, name }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn created(message: Value) -> Value {
        json!({"update_type": "message_created", "timestamp": 1767225600123_i64,
               "user_locale": "ru", "message": message})
    }

    fn sample() -> Value {
        json!({"sender": {"user_id": 123456789, "first_name": "Ivan", "last_name": "Petrov",
                          "username": null, "is_bot": false, "last_activity_time": 1767225590000_i64},
               "recipient": {"chat_id": 182182182, "chat_type": "dialog", "user_id": 229229229},
               "timestamp": 1767225600000_i64,
               "body": {"mid": "mid.0000000000adf429c019d47d58f2b3d9e", "seq": 116328147937082782_i64,
                        "text": "Hello", "attachments": []},
               "link": null})
    }

    #[test]
    fn the_spec_sample_is_a_message_in_a_private_chat() {
        let InboundEvent::Message(m) = parse_update(&created(sample())) else {
            panic!("a message");
        };
        assert_eq!(m.external_id, "mid.0000000000adf429c019d47d58f2b3d9e");
        assert_eq!(m.chat.external_id, "182182182");
        assert_eq!(m.chat.kind, ChatKind::Private);
        assert_eq!(m.sender.external_id, "123456789");
        assert_eq!(m.sender.name, "Ivan Petrov");
        assert_eq!(m.sender.language.as_deref(), Some("ru"));
        assert_eq!(m.text.as_deref(), Some("Hello"));
        assert_eq!(m.sent_at, 1767225600000);
        assert!(!m.edited);
    }

    #[test]
    fn attachments_replies_and_extras() {
        let mut msg = sample();
        msg["recipient"]["chat_type"] = json!("chat");
        msg["recipient"]["chat_id"] = json!(-5000);
        msg["link"] = json!({"type": "reply", "message": {"mid": "mid.earlier", "seq": 1}});
        msg["body"]["text"] = json!("");
        msg["body"]["attachments"] = json!([
            {"type": "image", "payload": {"photo_id": 1, "token": "t", "url": "https://i.example/1.jpg"}},
            {"type": "file", "payload": {"url": "https://f.example/a.pdf", "token": "t"}, "filename": "a.pdf", "size": 10},
            {"type": "contact", "payload": {"vcf_info": "BEGIN:VCARD\r\nFN:Anna\r\nTEL;TYPE=cell:+79991234567\r\nEND:VCARD"}},
            {"type": "inline_keyboard", "payload": {"buttons": []}}
        ]);
        let InboundEvent::Message(m) = parse_update(&created(msg)) else {
            panic!("a message");
        };
        assert_eq!(m.chat.kind, ChatKind::Group);
        assert_eq!(m.chat.external_id, "-5000");
        assert_eq!(m.text, None);
        assert_eq!(m.reply_to_external_id.as_deref(), Some("mid.earlier"));
        assert_eq!(m.attachments.len(), 2);
        assert_eq!(m.attachments[0].kind, "photo");
        assert_eq!(m.attachments[0].file_ref, "https://i.example/1.jpg");
        assert_eq!(m.attachments[1].file_name.as_deref(), Some("a.pdf"));
        assert_eq!(
            m.extra,
            Some(Extra::Contact {
                phone: "+79991234567".into(),
                name: "Anna".into()
            })
        );
    }

    #[test]
    fn an_edit_carries_the_edit_time() {
        let mut update = created(sample());
        update["update_type"] = json!("message_edited");
        update["timestamp"] = json!(1767225700000_i64);
        let InboundEvent::Message(m) = parse_update(&update) else {
            panic!("a message");
        };
        assert!(m.edited);
        assert_eq!(m.sent_at, 1767225700000);
    }

    #[test]
    fn bot_started_stopped_and_user_removed_are_block_events() {
        let user = json!({"user_id": 7, "first_name": "Oleg", "is_bot": false});
        for (kind, blocked, chat_kind) in [
            ("bot_started", false, ChatKind::Private),
            ("bot_stopped", true, ChatKind::Private),
            ("user_removed", true, ChatKind::Group),
        ] {
            let update = json!({"update_type": kind, "timestamp": 5, "chat_id": 99, "user": user});
            assert_eq!(
                parse_update(&update),
                InboundEvent::Blocked {
                    chat: ChatRef {
                        external_id: "99".into(),
                        kind: chat_kind,
                        title: None
                    },
                    sender: Sender {
                        external_id: "7".into(),
                        name: "Oleg".into(),
                        ..Sender::default()
                    },
                    blocked,
                    at: 5,
                },
                "{kind}"
            );
        }
    }

    #[test]
    fn other_updates_and_bots_are_ignored() {
        for update in [
            json!({"update_type": "message_callback", "timestamp": 1, "callback": {"callback_id": "c"}}),
            json!({"update_type": "message_removed", "timestamp": 1, "message_id": "m", "chat_id": 1, "user_id": 2}),
            json!({"update_type": "dialog_muted", "timestamp": 1}),
            json!({"timestamp": 1}),
            json!({"update_type": "message_created", "timestamp": 1}),
        ] {
            assert!(
                matches!(parse_update(&update), InboundEvent::Ignored { .. }),
                "{update}"
            );
        }
        let mut msg = sample();
        msg["sender"]["is_bot"] = json!(true);
        assert!(matches!(
            parse_update(&created(msg)),
            InboundEvent::Ignored { .. }
        ));
    }
}
