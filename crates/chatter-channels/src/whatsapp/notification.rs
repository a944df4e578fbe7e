//! WhatsApp webhooks (§5.4, §5.5): the GET subscription handshake, the `X-Hub-Signature-256`
//! check and notification parsing into `InboundEvent`s.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use crate::{
    Attachment, ChatKind, ChatRef, DeliveryState, Extra, InboundEvent, InboundMessage, Sender,
};

/// Why a webhook request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The handshake's mode or verify token is wrong: answer 403.
    #[error("verification refused")]
    Forbidden,
    /// `X-Hub-Signature-256` is missing or does not match the body: answer 401/403, parse nothing.
    #[error("bad or missing X-Hub-Signature-256")]
    BadSignature,
    /// The body is not a notification: answer 400.
    #[error("malformed notification: {0}")]
    Malformed(String),
}

/// Answers Meta's `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…` (§5.4): the
/// challenge to echo verbatim (200, text/plain) when the mode is `subscribe` and the token is
/// ours (compared in constant time), `Forbidden` (403) otherwise.
pub fn verify_subscription(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&str>,
    expected_token: &str,
) -> Result<String, HookError> {
    if mode != Some("subscribe") || !crate::common::secret_matches(token, expected_token) {
        return Err(HookError::Forbidden);
    }
    match challenge {
        Some(c) if !c.is_empty() => Ok(c.to_owned()),
        _ => Err(HookError::Forbidden),
    }
}

/// Checks `X-Hub-Signature-256: sha256=<hex>` = HMAC-SHA256(app secret, raw body) (§5.5) in
/// constant time. Call it on the bytes as received, before any JSON parsing.
pub fn verify_signature(
    app_secret: &str,
    body: &[u8],
    header_value: Option<&str>,
) -> Result<(), HookError> {
    let hex_sig = header_value
        .map(str::trim)
        .and_then(|h| h.strip_prefix("sha256="))
        .ok_or(HookError::BadSignature)?;
    let sig = hex::decode(hex_sig).map_err(|_| HookError::BadSignature)?;
    if app_secret.is_empty() {
        return Err(HookError::BadSignature);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
        .map_err(|_| HookError::BadSignature)?;
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| HookError::BadSignature)
}

/// An event with the `phone_number_id` it was addressed to (`value.metadata`), for routing a
/// shared app callback to the right source.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutedEvent {
    pub phone_number_id: String,
    pub event: InboundEvent,
}

/// Parses a notification body (already signature-checked) into events, in payload order:
/// customer messages as `Message`, our messages' `statuses` as `Status`, everything else
/// (reactions, system messages, other fields) as `Ignored`.
pub fn parse_notification(body: &[u8]) -> Result<Vec<InboundEvent>, HookError> {
    Ok(parse_notification_routed(body)?
        .into_iter()
        .map(|r| r.event)
        .collect())
}

/// `parse_notification` keeping each event's `phone_number_id`.
pub fn parse_notification_routed(body: &[u8]) -> Result<Vec<RoutedEvent>, HookError> {
    let n: Notification =
        serde_json::from_slice(body).map_err(|e| HookError::Malformed(e.to_string()))?;
    if n.object != "whatsapp_business_account" {
        return Err(HookError::Malformed(format!(
            "object is {:?}, not whatsapp_business_account",
            n.object
        )));
    }
    let mut out = Vec::new();
    for change in n.entry.into_iter().flat_map(|e| e.changes) {
        let number = change
            .value
            .metadata
            .as_ref()
            .map(|m| m.phone_number_id.clone())
            .unwrap_or_default();
        let mut push = |event| {
            out.push(RoutedEvent {
                phone_number_id: number.clone(),
                event,
            })
        };
        if change.field != "messages" {
            push(InboundEvent::Ignored {
                reason: format!("field {}", change.field),
            });
            continue;
        }
        let value = change.value;
        for m in &value.messages {
            push(message_event(m, &value.contacts));
        }
        for s in &value.statuses {
            push(status_event(s));
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Notification {
    #[serde(default)]
    object: String,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    field: String,
    #[serde(default)]
    value: ChangeValue,
}

#[derive(Deserialize, Default)]
struct ChangeValue {
    metadata: Option<Metadata>,
    #[serde(default)]
    contacts: Vec<Value>,
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    statuses: Vec<Value>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    phone_number_id: String,
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?.as_str().filter(|s| !s.is_empty())
}

/// `timestamp` is a string of unix seconds (§5.5); milliseconds out.
fn millis(v: &Value) -> i64 {
    let secs = match v.get("timestamp") {
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    };
    secs.saturating_mul(1000)
}

fn message_event(m: &Value, contacts: &[Value]) -> InboundEvent {
    let kind = str_of(m, "type").unwrap_or("");
    let (Some(id), Some(from)) = (str_of(m, "id"), str_of(m, "from")) else {
        return InboundEvent::Ignored {
            reason: format!("{kind} message without id or sender"),
        };
    };
    // The sender's profile: matched by wa_id, else by the business-scoped user id (2026).
    let contact = contacts
        .iter()
        .find(|c| str_of(c, "wa_id") == Some(from) || str_of(c, "user_id") == Some(from));
    let profile = contact.and_then(|c| c.get("profile"));
    let wa_id = contact.and_then(|c| str_of(c, "wa_id")).or(Some(from));
    let phone = wa_id
        .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
        .map(|w| format!("+{w}"));
    let name = profile.and_then(|p| str_of(p, "name")).map_or_else(
        || phone.clone().unwrap_or_else(|| from.to_owned()),
        str::to_owned,
    );
    let sender = Sender {
        external_id: from.to_owned(),
        name,
        username: profile
            .and_then(|p| str_of(p, "username"))
            .map(str::to_owned),
        phone,
        language: None,
    };
    let mut msg = InboundMessage {
        external_id: id.to_owned(),
        chat: ChatRef {
            external_id: from.to_owned(),
            kind: ChatKind::Private,
            title: None,
        },
        sender,
        text: None,
        attachments: Vec::new(),
        extra: None,
        reply_to_external_id: m
            .get("context")
            .and_then(|c| str_of(c, "id"))
            .map(str::to_owned),
        sent_at: millis(m),
        edited: false,
    };
    let body = m.get(kind).unwrap_or(&Value::Null);
    match kind {
        "text" => msg.text = str_of(body, "body").map(str::to_owned),
        "image" | "document" | "audio" | "video" | "sticker" => {
            let Some(media_id) = str_of(body, "id") else {
                return InboundEvent::Ignored {
                    reason: format!("{kind} without a media id"),
                };
            };
            let our_kind = match kind {
                "image" => "photo",
                "audio" if body.get("voice").and_then(Value::as_bool) == Some(true) => "voice",
                other => other,
            };
            msg.attachments.push(Attachment {
                kind: our_kind.to_owned(),
                file_ref: media_id.to_owned(),
                file_name: str_of(body, "filename").map(str::to_owned),
                mime_type: str_of(body, "mime_type").map(str::to_owned),
                size: None,
            });
            msg.text = str_of(body, "caption").map(str::to_owned);
        }
        "location" => {
            let (Some(latitude), Some(longitude)) = (
                body.get("latitude").and_then(Value::as_f64),
                body.get("longitude").and_then(Value::as_f64),
            ) else {
                return InboundEvent::Ignored {
                    reason: "location without coordinates".into(),
                };
            };
            msg.extra = Some(Extra::Location {
                latitude,
                longitude,
            });
            let place: Vec<&str> = [str_of(body, "name"), str_of(body, "address")]
                .into_iter()
                .flatten()
                .collect();
            msg.text = Some(place.join(", ")).filter(|t| !t.is_empty());
        }
        "contacts" => {
            let cards: Vec<(String, String)> = m
                .get("contacts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| {
                    let name = c
                        .get("name")
                        .and_then(|n| str_of(n, "formatted_name"))
                        .unwrap_or("")
                        .to_owned();
                    let phone = c
                        .get("phones")
                        .and_then(Value::as_array)
                        .and_then(|p| p.first())
                        .and_then(|p| str_of(p, "phone"))
                        .unwrap_or("")
                        .to_owned();
                    (name, phone)
                })
                .collect();
            let Some((name, phone)) = cards.first().cloned() else {
                return InboundEvent::Ignored {
                    reason: "contacts without a card".into(),
                };
            };
            msg.extra = Some(Extra::Contact { phone, name });
            // Several cards: the first is the structured contact, all are listed as text.
            if cards.len() > 1 {
                let lines: Vec<String> = cards.iter().map(|(n, p)| format!("{n}: {p}")).collect();
                msg.text = Some(lines.join("\n"));
            }
        }
        "interactive" => {
            let reply = body
                .get("button_reply")
                .or_else(|| body.get("list_reply"))
                .unwrap_or(&Value::Null);
            msg.text = str_of(reply, "title").map(str::to_owned);
        }
        "button" => {
            msg.text = str_of(body, "text")
                .or_else(|| str_of(body, "payload"))
                .map(str::to_owned);
        }
        other => {
            return InboundEvent::Ignored {
                reason: format!("{other} message"),
            }
        }
    }
    if msg.text.is_none() && msg.attachments.is_empty() && msg.extra.is_none() {
        return InboundEvent::Ignored {
            reason: format!("empty {kind} message"),
        };
    }
    InboundEvent::Message(msg)
}

fn status_event(s: &Value) -> InboundEvent {
    let Some(id) = str_of(s, "id") else {
        return InboundEvent::Ignored {
            reason: "status without id".into(),
        };
    };
    let state = match str_of(s, "status") {
        Some("sent") => DeliveryState::Sent,
        Some("delivered") => DeliveryState::Delivered,
        Some("read") => DeliveryState::Read,
        Some("failed") => DeliveryState::Failed,
        other => {
            return InboundEvent::Ignored {
                reason: format!("status {}", other.unwrap_or("(none)")),
            }
        }
    };
    let error = s
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
        .map(|e| {
            let title = str_of(e, "title").or_else(|| str_of(e, "message"));
            let details = e.get("error_data").and_then(|d| str_of(d, "details"));
            let mut text = match (title, details) {
                (Some(t), Some(d)) if t != d => format!("{t}: {d}"),
                (Some(t), _) => t.to_owned(),
                (None, Some(d)) => d.to_owned(),
                (None, None) => "failed".to_owned(),
            };
            if let Some(code) = e.get("code").and_then(Value::as_i64) {
                text.push_str(&format!(" (code {code})"));
            }
            text
        });
    InboundEvent::Status {
        external_id: id.to_owned(),
        state,
        error: error.or_else(|| {
            (state == DeliveryState::Failed).then(|| "failed without a reason".to_owned())
        }),
        at: millis(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wrap(value: Value) -> Vec<u8> {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [
            {"field": "messages", "value": value}]}]})
        .to_string()
        .into_bytes()
    }

    fn meta() -> Value {
        json!({"display_phone_number": "15550001111", "phone_number_id": "123456123"})
    }

    #[test]
    fn subscription_echoes_the_challenge_only_for_our_token() {
        assert_eq!(
            verify_subscription(Some("subscribe"), Some("tok"), Some("1158201444"), "tok"),
            Ok("1158201444".into())
        );
        for (mode, token) in [
            (Some("subscribe"), Some("other")),
            (Some("unsubscribe"), Some("tok")),
            (None, Some("tok")),
            (Some("subscribe"), None),
        ] {
            assert_eq!(
                verify_subscription(mode, token, Some("1"), "tok"),
                Err(HookError::Forbidden)
            );
        }
    }

    #[test]
    fn signature_is_hmac_sha256_of_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"app-secret").expect("key");
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(verify_signature("app-secret", body, Some(&good)), Ok(()));
        assert_eq!(
            verify_signature("other", body, Some(&good)),
            Err(HookError::BadSignature)
        );
        assert_eq!(
            verify_signature("app-secret", b"{}", Some(&good)),
            Err(HookError::BadSignature)
        );
        for bad in [None, Some("sha1=00"), Some("sha256=zz"), Some("")] {
            assert_eq!(
                verify_signature("app-secret", body, bad),
                Err(HookError::BadSignature)
            );
        }
    }

    #[test]
    fn a_text_message_names_the_customer_and_the_reply() {
        let body = wrap(json!({"messaging_product": "whatsapp", "metadata": meta(),
            "contacts": [{"profile": {"name": "Ivan"}, "wa_id": "79991234567"}],
            "messages": [{"from": "79991234567", "id": "wamid.A", "timestamp": "1767225600",
                "type": "text", "text": {"body": "Hi"}, "context": {"from": "15550001111", "id": "wamid.Q"}}]}));
        let events = parse_notification_routed(&body).expect("parsed");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].phone_number_id, "123456123");
        let InboundEvent::Message(m) = &events[0].event else {
            panic!("{events:?}")
        };
        assert_eq!(m.external_id, "wamid.A");
        assert_eq!(m.chat.external_id, "79991234567");
        assert_eq!(m.sender.name, "Ivan");
        assert_eq!(m.sender.phone.as_deref(), Some("+79991234567"));
        assert_eq!(m.text.as_deref(), Some("Hi"));
        assert_eq!(m.reply_to_external_id.as_deref(), Some("wamid.Q"));
        assert_eq!(m.sent_at, 1_767_225_600_000);
    }

    #[test]
    fn media_location_contacts_and_replies_become_messages() {
        let body = wrap(json!({"metadata": meta(), "contacts": [], "messages": [
            {"from": "7999", "id": "w1", "timestamp": "1", "type": "image",
             "image": {"id": "m1", "mime_type": "image/jpeg", "sha256": "x", "caption": "look"}},
            {"from": "7999", "id": "w2", "timestamp": "1", "type": "document",
             "document": {"id": "m2", "filename": "a.pdf", "mime_type": "application/pdf"}},
            {"from": "7999", "id": "w3", "timestamp": "1", "type": "audio",
             "audio": {"id": "m3", "mime_type": "audio/ogg", "voice": true}},
            {"from": "7999", "id": "w4", "timestamp": "1", "type": "location",
             "location": {"latitude": 55.75, "longitude": 37.61, "name": "Office"}},
            {"from": "7999", "id": "w5", "timestamp": "1", "type": "contacts",
             "contacts": [{"name": {"formatted_name": "Anna"}, "phones": [{"phone": "+7 999 000"}]}]},
            {"from": "7999", "id": "w6", "timestamp": "1", "type": "interactive",
             "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Да"}}},
            {"from": "7999", "id": "w7", "timestamp": "1", "type": "reaction",
             "reaction": {"message_id": "w1", "emoji": "👍"}}]}));
        let events = parse_notification(&body).expect("parsed");
        let msgs: Vec<&InboundMessage> = events
            .iter()
            .filter_map(|e| match e {
                InboundEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(msgs.len(), 6);
        assert_eq!(msgs[0].attachments[0].kind, "photo");
        assert_eq!(msgs[0].attachments[0].file_ref, "m1");
        assert_eq!(msgs[0].text.as_deref(), Some("look"));
        assert_eq!(msgs[1].attachments[0].file_name.as_deref(), Some("a.pdf"));
        assert_eq!(msgs[2].attachments[0].kind, "voice");
        assert_eq!(
            msgs[3].extra,
            Some(Extra::Location {
                latitude: 55.75,
                longitude: 37.61
            })
        );
        assert_eq!(msgs[3].text.as_deref(), Some("Office"));
        assert_eq!(
            msgs[4].extra,
            Some(Extra::Contact {
                phone: "+7 999 000".into(),
                name: "Anna".into()
            })
        );
        assert_eq!(msgs[5].text.as_deref(), Some("Да"));
        assert!(matches!(events[6], InboundEvent::Ignored { .. }));
    }

    #[test]
    fn statuses_carry_state_time_and_error_code() {
        let body = wrap(json!({"metadata": meta(), "statuses": [
            {"id": "wamid.S", "status": "delivered", "timestamp": "1767225601", "recipient_id": "7999"},
            {"id": "wamid.S", "status": "failed", "timestamp": "1767225602", "recipient_id": "7999",
             "errors": [{"code": 131047, "title": "Re-engagement message",
                         "error_data": {"details": "More than 24 hours have passed"}}]}]}));
        let events = parse_notification(&body).expect("parsed");
        assert_eq!(
            events[0],
            InboundEvent::Status {
                external_id: "wamid.S".into(),
                state: DeliveryState::Delivered,
                error: None,
                at: 1_767_225_601_000
            }
        );
        let InboundEvent::Status { state, error, .. } = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(*state, DeliveryState::Failed);
        let error = error.as_deref().expect("an error text");
        assert!(
            error.starts_with("Re-engagement message: More than 24"),
            "{error}"
        );
        assert_eq!(super::super::error_code(error), Some(131_047));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            parse_notification(b"not json"),
            Err(HookError::Malformed(_))
        ));
        assert!(matches!(
            parse_notification(br#"{"object":"page","entry":[]}"#),
            Err(HookError::Malformed(_))
        ));
    }
}
