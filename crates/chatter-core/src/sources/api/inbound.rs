//! Inbound calls: the signed headers checked against the source's secret within the timestamp
//! tolerance, the body parsed strictly into one message, stored through the durable ingest.

use super::{secret_of, verify, Ingested, Ingester, MAX_ID, MAX_TEXT, TIMESTAMP_TOLERANCE_SECS};
use crate::{Core, CoreError, Result};
use chatter_channels::{ChatKind, ChatRef, InboundEvent, InboundMessage, Sender};
use chatter_domain::{ConversationId, MessageId, SourceId, SourceKind};
use chatter_store::entity::{api_inbound, message, source};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::Serialize;
use serde_json::Value;

/// The signed headers of an inbound call.
#[derive(Clone, Debug, Default)]
pub struct Signed<'a> {
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
}

/// Why an inbound call was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("no such API source")]
    NotFound,
    #[error("the source is turned off")]
    Disabled,
    /// Nothing was stored.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Nothing was stored; `field` names what is wrong.
    #[error("{field}: {message}")]
    Malformed { field: String, message: String },
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// What an accepted call stored (or had stored before, for a replay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Received {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
}

/// The body of an inbound call, validated.
#[derive(Debug)]
pub(super) struct InboundBody {
    pub(super) message_id: String,
    pub(super) chat_id: String,
    pub(super) sender: Sender,
    pub(super) email: Option<String>,
    pub(super) text: String,
    pub(super) sent_at: Option<i64>,
    pub(super) utm: [Option<String>; 5],
}

pub(super) fn malformed(field: &str, message: &str) -> ReceiveError {
    ReceiveError::Malformed {
        field: field.into(),
        message: message.into(),
    }
}

/// A required id: a non-empty string (or an integer, taken as its decimal text).
pub(super) fn id_field(v: &Value, key: &str, field: &str) -> Result<String, ReceiveError> {
    let s = match v.get(key) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        None | Some(Value::Null) => return Err(malformed(field, "is required")),
        Some(_) => return Err(malformed(field, "must be a string")),
    };
    if s.is_empty() {
        return Err(malformed(field, "must not be empty"));
    }
    if s.chars().count() > MAX_ID {
        return Err(malformed(field, "is longer than 200 characters"));
    }
    Ok(s)
}

pub(super) fn opt_text(
    v: &Value,
    key: &str,
    field: &str,
    max: usize,
) -> Result<Option<String>, ReceiveError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > max => Err(malformed(
            field,
            &format!("is longer than {max} characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
        Some(_) => Err(malformed(field, "must be a string")),
    }
}

/// Checks an inbound message body as `receive` reads it, storing nothing: `Ok` when it would
/// be accepted, else the `Malformed` error naming the field. The fuzz targets call it.
pub fn check_body(body: &[u8]) -> Result<(), ReceiveError> {
    parse_body(body).map(|_| ())
}

pub(super) fn parse_body(body: &[u8]) -> Result<InboundBody, ReceiveError> {
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| malformed("body", &format!("is not valid JSON ({e})")))?;
    // A NUL anywhere (text, names, UTM tags) would be refused by PostgreSQL, forever.
    chatter_domain::text::clean_json(&mut v);
    if !v.is_object() {
        return Err(malformed("body", "must be a JSON object"));
    }
    let message_id = id_field(&v, "message_id", "message_id")?;
    let chat_id = id_field(&v, "chat_id", "chat_id")?;
    let sender_v = match v.get("sender") {
        Some(s @ Value::Object(_)) => s,
        None | Some(Value::Null) => return Err(malformed("sender", "is required")),
        Some(_) => return Err(malformed("sender", "must be an object")),
    };
    let sender_id = id_field(sender_v, "id", "sender.id")?;
    let name = opt_text(sender_v, "name", "sender.name", 200)?
        .ok_or_else(|| malformed("sender.name", "is required"))?;
    let phone = opt_text(sender_v, "phone", "sender.phone", 50)?;
    let email = opt_text(sender_v, "email", "sender.email", 200)?;
    let username = opt_text(sender_v, "username", "sender.username", 200)?;
    let text = match v.get("text") {
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(malformed("text", "must not be empty"))
        }
        Some(Value::String(s)) if s.chars().count() > MAX_TEXT => {
            return Err(malformed("text", "is longer than 20000 characters"))
        }
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(malformed("text", "is required")),
        Some(_) => return Err(malformed("text", "must be a string")),
    };
    let sent_at = match v.get("sent_at") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(ms) if ms > 0 => Some(ms),
            _ => return Err(malformed("sent_at", "must be Unix milliseconds")),
        },
        Some(_) => return Err(malformed("sent_at", "must be Unix milliseconds (a number)")),
    };
    let mut utm: [Option<String>; 5] = Default::default();
    match v.get("utm") {
        None | Some(Value::Null) => {}
        Some(u @ Value::Object(_)) => {
            for (i, k) in ["source", "medium", "campaign", "content", "term"]
                .iter()
                .enumerate()
            {
                utm[i] = opt_text(u, k, &format!("utm.{k}"), 500)?;
            }
        }
        Some(_) => return Err(malformed("utm", "must be an object")),
    }
    Ok(InboundBody {
        message_id,
        chat_id,
        sender: Sender {
            external_id: sender_id,
            name,
            username,
            phone,
            language: None,
        },
        email,
        text,
        sent_at,
        utm,
    })
}

/// Receives one signed call: verifies it, stores the message (once), and answers with our ids.
/// Returns only after the commit.
pub async fn receive(
    core: &Core,
    ingester: &Ingester,
    source_id: SourceId,
    h: &Signed<'_>,
    body: &[u8],
) -> Result<Received, ReceiveError> {
    let src = source::Entity::find_by_id(source_id)
        .filter(source::Column::Kind.eq(SourceKind::Api))
        .one(&core.db)
        .await
        .map_err(CoreError::from)?
        .ok_or(ReceiveError::NotFound)?;
    let secret = secret_of(core, &src)?;
    let ts = h
        .timestamp
        .and_then(|t| t.trim().parse::<i64>().ok())
        .ok_or(ReceiveError::Unauthorized(
            "X-Chatter-Timestamp is missing or not Unix seconds",
        ))?;
    // Saturating: a timestamp near i64::MIN or MAX must be refused, not overflow.
    if (core.now() / 1000).saturating_sub(ts).unsigned_abs()
        > TIMESTAMP_TOLERANCE_SECS.unsigned_abs()
    {
        return Err(ReceiveError::Unauthorized(
            "X-Chatter-Timestamp is more than 5 minutes away from our clock",
        ));
    }
    let sig = h
        .signature
        .ok_or(ReceiveError::Unauthorized("X-Chatter-Signature is missing"))?;
    if !verify(&secret, ts, body, sig) {
        return Err(ReceiveError::Unauthorized(
            "X-Chatter-Signature does not match the body",
        ));
    }
    if src.status == crate::connectors::model::DISABLED {
        return Err(ReceiveError::Disabled);
    }
    let b = parse_body(body)?;
    let key = h
        .idempotency_key
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| k.chars().take(MAX_ID).collect::<String>());
    if let Some(k) = &key {
        let seen = api_inbound::Entity::find()
            .filter(api_inbound::Column::SourceId.eq(src.id))
            .filter(api_inbound::Column::IdempotencyKey.eq(k.as_str()))
            .one(&core.db)
            .await
            .map_err(CoreError::from)?;
        if let Some(seen) = seen {
            return Ok(answer(core, seen.message_id.into()).await?);
        }
    }
    let ev = InboundEvent::Message(InboundMessage {
        external_id: b.message_id.clone(),
        chat: ChatRef {
            external_id: b.chat_id.clone(),
            kind: ChatKind::Private,
            title: None,
        },
        sender: b.sender.clone(),
        text: Some(b.text.clone()),
        attachments: vec![],
        extra: None,
        reply_to_external_id: None,
        sent_at: b.sent_at.unwrap_or_else(|| core.now()),
        edited: false,
    });
    let [utm_source, utm_medium, utm_campaign, utm_content, utm_term] = b.utm;
    let side = crate::inbox::ingest::ApiInboundRow {
        idempotency_key: key,
        utm: [utm_source, utm_medium, utm_campaign, utm_content, utm_term],
        email: b.email,
    };
    let message_id = match ingester.submit_api(src.clone(), ev, side.clone()).await? {
        // Stored with its side row in one transaction.
        Ingested::New(id) => return Ok(answer(core, id).await?),
        Ingested::Edited(id) => id,
        Ingested::SourceOff => return Err(ReceiveError::Disabled),
        Ingested::Parked(_) => {
            return Err(malformed(
                "message_id",
                "cannot be stored as sent; it is kept in Settings → undelivered events",
            ))
        }
        Ingested::Duplicate | Ingested::Other => message::Entity::find()
            .filter(message::Column::SourceId.eq(src.id))
            .filter(message::Column::ExternalId.eq(&b.message_id))
            .select_only()
            .column(message::Column::Id)
            .into_tuple::<MessageId>()
            .one(&core.db)
            .await
            .map_err(CoreError::from)?
            .ok_or(CoreError::Internal("stored message not found".into()))?,
    };
    // A message stored before (a replay with another idempotency key, or one stored by a
    // build that wrote the row after the commit): its row, if it has none yet (first one wins).
    side.insert(&core.db, src.id, message_id, core.now())
        .await?;
    Ok(answer(core, message_id).await?)
}

pub(super) async fn answer(core: &Core, message_id: MessageId) -> Result<Received> {
    let m = message::Entity::find_by_id(message_id)
        .one(&core.db)
        .await?
        .ok_or(CoreError::Internal("stored message not found".into()))?;
    Ok(Received {
        message_id: m.id,
        conversation_id: m.conversation_id,
    })
}
