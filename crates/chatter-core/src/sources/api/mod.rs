//! The API source (kind 6): any system talks to Chatter through signed webhooks.
//!
//! Inbound: `POST /hooks/api/{source_id}` with a JSON message, signed with the source's secret
//! (`X-Chatter-Signature: sha256=HMAC-SHA256(secret, "{timestamp}.{body}")`, timestamp within
//! five minutes). The message goes through the ordinary ingest path (group commit) and is
//! unique per (source, `message_id`), so a replay answers what the first call answered.
//!
//! Outbound: a dispatcher job follows the `events` log with a stored cursor and turns what
//! happened in an API source's conversations into webhook deliveries (message created, message
//! status changed, conversation status changed or assigned), written in the same transaction
//! that moves the cursor. Each delivery is one durable job, signed the same way, retried with
//! backoff, logged, and replayable. A manager's reply is delivered as its `message.created`
//! webhook, and marked sent when the customer's system answers 2xx.

use crate::events::{self, Pending};
use crate::inbox::ingest::Ingester;
use crate::inbox::Ingested;
use crate::jobs::worker::{JobError, JobHandler, Registry};
use crate::{audit, egress, Actor, Core, CoreError, Result};
use async_trait::async_trait;
use chatter_channels::{ChatKind, ChatRef, InboundEvent, InboundMessage, Sender};
use chatter_domain::values::{limits, required_text};
use chatter_domain::{FieldError, Permission, SourceKind};
use chatter_store::entity::{
    api_inbound, api_webhook_delivery as delivery, contact, conversation, event, job, message,
    source, user,
};
use chatter_store::jobs::{self, Claimed, NewJob};
use chatter_store::stmt;
use hmac::{Hmac, Mac};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use uuid::Uuid;

/// Posts one webhook delivery.
pub const JOB_DELIVER: &str = "api_webhook_deliver";
/// Follows the event log and creates deliveries (one at a time across all nodes).
pub const JOB_DISPATCH: &str = "api_webhook_dispatch";
/// How far a request's timestamp may be from our clock.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;
/// Attempts per delivery: with the job backoff (1 s doubling, capped at an hour) about four
/// hours of the receiver being down.
pub const DELIVERY_ATTEMPTS: i32 = 15;
/// How long the receiver has to answer.
const DELIVERY_TIMEOUT_SECS: u64 = 10;
/// How often the dispatcher looks at the event log.
const DISPATCH_EVERY_MS: i64 = 300;
const CURSOR: &str = "webhooks";
const MAX_TEXT: usize = 20_000;
const MAX_ID: usize = 200;

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// A reply's error when its API source has nowhere to deliver it (the inbox explains it and
/// links to the source's webhook setting).
pub const NO_WEBHOOK: &str =
    "no outgoing webhook URL is set for this API source; set it on the source's page and retry";

/// The signing secret, stored encrypted in `sources.secret`.
#[derive(Clone, Serialize, Deserialize)]
struct ApiSecret {
    signing_secret: String,
}

impl std::fmt::Debug for ApiSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiSecret(***)")
    }
}

/// Public settings of an API source (JSON in `sources.settings`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ApiSettings {
    /// Where outgoing webhooks go; none: nothing is sent.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// When the URL was set (Unix ms): earlier events are not sent.
    #[serde(default)]
    pub webhook_since: i64,
}

pub fn settings_of(s: &source::Model) -> ApiSettings {
    serde_json::from_str(&s.settings).unwrap_or_default()
}

fn secret_of(core: &Core, s: &source::Model) -> Result<String> {
    let enc = s
        .secret
        .as_deref()
        .ok_or(CoreError::Internal("API source has no secret".into()))?;
    let plain = core
        .secrets
        .decrypt(enc)
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    let s: ApiSecret = serde_json::from_str(plain.expose())
        .map_err(|e| CoreError::Internal(format!("bad API source secret: {e}")))?;
    Ok(s.signing_secret)
}

fn new_secret(core: &Core) -> (String, String) {
    let (plain, _) = crate::new_token();
    let plain = format!("whsec_{plain}");
    let enc = core.secrets.encrypt(
        &serde_json::to_string(&ApiSecret {
            signing_secret: plain.clone(),
        })
        .unwrap_or_default(),
    );
    (plain, enc)
}

/// `sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`: the signature of both directions.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    #[allow(clippy::expect_used)]
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// Checks a signature header in constant time.
pub fn verify(secret: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&sig).is_ok()
}

/// The URL a customer's system posts messages of `source_id` to.
pub fn inbound_url(core: &Core, source_id: Uuid) -> String {
    format!("{}/hooks/api/{source_id}", core.config.public_url)
}

// ---- managing API sources ----

/// Creates an API source; returns its id and the signing secret (shown once).
pub async fn create(core: &Core, actor: &Actor, name: &str) -> Result<(Uuid, String)> {
    actor.require(Permission::Manage)?;
    let name =
        required_text("name", name, limits::SHORT_NAME).map_err(|e| CoreError::Invalid(vec![e]))?;
    let (plain, enc) = new_secret(core);
    let now = core.now();
    let id = Uuid::now_v7();
    let txn = core.db.begin().await?;
    source::ActiveModel {
        id: Set(id),
        company_id: Set(actor.company_id),
        kind: Set(SourceKind::Api.id()),
        name: Set(name.clone()),
        secret: Set(Some(enc)),
        settings: Set(serde_json::to_string(&ApiSettings::default()).unwrap_or_default()),
        status: Set(crate::sources::CONNECTED.into()),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        cursor: Set(None),
        last_inbound_at: Set(None),
        last_ok_at: Set(Some(now)),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        now,
        "source.create",
        &name,
        json!({"kind": SourceKind::Api.as_str(), "source_id": id}),
    )
    .await?;
    txn.commit().await?;
    Ok((id, plain))
}

/// An API source of the actor's company.
pub async fn get(core: &Core, actor: &Actor, id: Uuid) -> Result<source::Model> {
    actor.require(Permission::Read)?;
    source::Entity::find_by_id(id)
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .filter(source::Column::Kind.eq(SourceKind::Api.id()))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)
}

/// Replaces the signing secret; the old one stops working at once. Returns the new one.
pub async fn rotate_secret(core: &Core, actor: &Actor, id: Uuid) -> Result<String> {
    actor.require(Permission::Manage)?;
    let s = get(core, actor, id).await?;
    let (plain, enc) = new_secret(core);
    let now = core.now();
    let txn = core.db.begin().await?;
    let name = s.name.clone();
    let mut am = s.into_active_model();
    am.secret = Set(Some(enc));
    am.updated_at = Set(now);
    am.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        now,
        "source.rotate_secret",
        &name,
        json!({"source_id": id}),
    )
    .await?;
    txn.commit().await?;
    Ok(plain)
}

/// Sets (or, with an empty `url`, clears) where the source's outgoing webhooks go.
pub async fn set_webhook_url(core: &Core, actor: &Actor, id: Uuid, url: &str) -> Result<()> {
    actor.require(Permission::Manage)?;
    let url = url.trim();
    let s = get(core, actor, id).await?;
    let url = if url.is_empty() {
        None
    } else {
        if url.chars().count() > limits::URL {
            return Err(CoreError::Invalid(vec![FieldError::too_long(
                "webhook_url",
                limits::URL,
            )]));
        }
        egress::check_url(url, core.config.allow_private_targets)
            .await
            .map_err(|r| CoreError::field("webhook_url", r.key()))?;
        Some(url.to_string())
    };
    let now = core.now();
    let mut settings = settings_of(&s);
    if settings.webhook_url == url {
        return Ok(());
    }
    if settings.webhook_url.is_none() {
        settings.webhook_since = now;
    }
    settings.webhook_url = url.clone();
    let txn = core.db.begin().await?;
    let name = s.name.clone();
    let mut am = s.into_active_model();
    am.settings = Set(serde_json::to_string(&settings).unwrap_or_default());
    am.updated_at = Set(now);
    am.update(&txn).await?;
    if url.is_some() {
        start_dispatcher(&txn, now).await?;
    }
    audit::record(
        &txn,
        actor,
        now,
        "source.webhook_url",
        &name,
        json!({"source_id": id, "url": url}),
    )
    .await?;
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// Makes sure the dispatcher runs, starting at the end of the event log the first time.
async fn start_dispatcher(conn: &impl ConnectionTrait, now: i64) -> Result<()> {
    // `WHERE TRUE`: without it SQLite reads `ON CONFLICT` as a join constraint.
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO api_webhook_cursor (name, last_event_id, updated_at) \
         SELECT $1, COALESCE(MAX(id), 0), $2 FROM events WHERE TRUE ON CONFLICT (name) DO NOTHING",
        vec![CURSOR.into(), now.into()],
    ))
    .await?;
    jobs::enqueue(
        conn,
        NewJob::new(JOB_DISPATCH, json!({}), now)
            .dedup(JOB_DISPATCH)
            .max_attempts(1_000_000),
        now,
    )
    .await?;
    Ok(())
}

/// A delivery as the log shows it.
#[derive(Clone, Debug)]
pub struct DeliveryRow {
    pub delivery: delivery::Model,
    /// When the next attempt is due, while one is.
    pub next_retry_at: Option<i64>,
}

/// The source's latest deliveries, newest first.
pub async fn deliveries(
    core: &Core,
    actor: &Actor,
    source_id: Uuid,
    limit: u64,
) -> Result<Vec<DeliveryRow>> {
    get(core, actor, source_id).await?;
    let ds = delivery::Entity::find()
        .filter(delivery::Column::SourceId.eq(source_id))
        .order_by_desc(delivery::Column::CreatedAt)
        .order_by_desc(delivery::Column::Id)
        .limit(limit)
        .all(&core.db)
        .await?;
    let job_ids: Vec<Uuid> = ds
        .iter()
        .filter(|d| d.status == PENDING)
        .filter_map(|d| d.job_id)
        .collect();
    let queued = job::Entity::find()
        .filter(job::Column::Id.is_in(job_ids))
        .filter(job::Column::Status.eq(jobs::QUEUED))
        .all(&core.db)
        .await?;
    Ok(ds
        .into_iter()
        .map(|d| DeliveryRow {
            next_retry_at: d
                .job_id
                .and_then(|j| queued.iter().find(|q| q.id == j))
                .filter(|_| d.status == PENDING)
                .map(|q| q.run_at),
            delivery: d,
        })
        .collect())
}

/// Sends a delivery again (whatever its state), with a fresh set of attempts.
pub async fn replay(core: &Core, actor: &Actor, source_id: Uuid, delivery_id: Uuid) -> Result<()> {
    actor.require(Permission::Manage)?;
    let s = get(core, actor, source_id).await?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let d = delivery::Entity::find_by_id(delivery_id)
        .filter(delivery::Column::SourceId.eq(s.id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    requeue(&txn, d.clone(), now).await?;
    audit::record(
        &txn,
        actor,
        now,
        "source.webhook_replay",
        &s.name,
        json!({"source_id": s.id, "delivery_id": d.id, "type": d.event_type}),
    )
    .await?;
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// Puts a delivery back to pending with a new job.
async fn requeue(conn: &impl ConnectionTrait, d: delivery::Model, now: i64) -> Result<()> {
    let job = deliver_job(&d, now);
    let job_id = jobs::enqueue(conn, job, now).await?;
    let mut am = d.into_active_model();
    am.status = Set(PENDING.into());
    am.updated_at = Set(now);
    if job_id.is_some() {
        am.job_id = Set(job_id);
    }
    am.update(conn).await?;
    Ok(())
}

fn deliver_job(d: &delivery::Model, now: i64) -> NewJob {
    NewJob::new(JOB_DELIVER, json!({"delivery_id": d.id}), now)
        .company(d.company_id)
        .dedup(format!("{JOB_DELIVER}:{}", d.id))
        .max_attempts(DELIVERY_ATTEMPTS)
}

// ---- inbound ----

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
    pub message_id: Uuid,
    pub conversation_id: Uuid,
}

/// The body of an inbound call, validated.
#[derive(Debug)]
struct InboundBody {
    message_id: String,
    chat_id: String,
    sender: Sender,
    email: Option<String>,
    text: String,
    sent_at: Option<i64>,
    utm: [Option<String>; 5],
}

fn malformed(field: &str, message: &str) -> ReceiveError {
    ReceiveError::Malformed {
        field: field.into(),
        message: message.into(),
    }
}

/// A required id: a non-empty string (or an integer, taken as its decimal text).
fn id_field(v: &Value, key: &str, field: &str) -> Result<String, ReceiveError> {
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

fn opt_text(v: &Value, key: &str, field: &str, max: usize) -> Result<Option<String>, ReceiveError> {
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

fn parse_body(body: &[u8]) -> Result<InboundBody, ReceiveError> {
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
    source_id: Uuid,
    h: &Signed<'_>,
    body: &[u8],
) -> Result<Received, ReceiveError> {
    let src = source::Entity::find_by_id(source_id)
        .filter(source::Column::Kind.eq(SourceKind::Api.id()))
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
    if src.status == crate::sources::DISABLED {
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
            return Ok(answer(core, seen.message_id).await?);
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
    let message_id = match ingester.submit(src.clone(), ev).await? {
        Ingested::New(id) | Ingested::Edited(id) => id,
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
            .into_tuple::<Uuid>()
            .one(&core.db)
            .await
            .map_err(CoreError::from)?
            .ok_or(CoreError::Internal("stored message not found".into()))?,
    };
    // After the message's commit; a replay after a crash here writes it then (first one wins).
    let [utm_source, utm_medium, utm_campaign, utm_content, utm_term] = b.utm;
    let db = &core.db;
    db.execute(stmt(
        db.get_database_backend(),
        "INSERT INTO api_inbound (message_id, source_id, idempotency_key, utm_source, utm_medium, \
         utm_campaign, utm_content, utm_term, sender_email, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        vec![
            message_id.into(),
            src.id.into(),
            key.into(),
            utm_source.into(),
            utm_medium.into(),
            utm_campaign.into(),
            utm_content.into(),
            utm_term.into(),
            b.email.into(),
            core.now().into(),
        ],
    ))
    .await
    .map_err(CoreError::from)?;
    Ok(answer(core, message_id).await?)
}

async fn answer(core: &Core, message_id: Uuid) -> Result<Received> {
    let m = message::Entity::find_by_id(message_id)
        .one(&core.db)
        .await?
        .ok_or(CoreError::Internal("stored message not found".into()))?;
    Ok(Received {
        message_id: m.id,
        conversation_id: m.conversation_id,
    })
}

/// The UTM tags and email that came with an inbound message (for the CRM sync).
pub async fn inbound_meta(
    conn: &impl ConnectionTrait,
    message_id: Uuid,
) -> Result<Option<api_inbound::Model>> {
    Ok(api_inbound::Entity::find_by_id(message_id)
        .one(conn)
        .await?)
}

// ---- outbound: replies ----

/// Delivers a manager's reply in an API-source conversation: hands it to the outgoing webhook
/// as its `message.created` delivery. The message stays `pending` until the customer's system
/// answers 2xx (then `sent`), or the delivery gives up (then `failed`). Idempotent: a retried
/// send job finds the delivery and sends a failed one again.
///
/// Called by the `send_message` job for sources of kind 6.
pub async fn deliver_reply(core: &Core, m: &message::Model) -> Result<(), JobError> {
    let transient = |e: CoreError| JobError::Transient(e.to_string());
    let src = source::Entity::find_by_id(m.source_id)
        .one(&core.db)
        .await
        .map_err(|e| transient(e.into()))?
        .ok_or_else(|| JobError::Permanent("source gone".into()))?;
    if src.kind != SourceKind::Api.id() {
        return Err(JobError::Permanent("not an API source".into()));
    }
    if settings_of(&src).webhook_url.is_none() {
        return Err(JobError::Permanent(NO_WEBHOOK.into()));
    }
    let now = core.now();
    let txn = core.db.begin().await.map_err(|e| transient(e.into()))?;
    let conv = conversation::Entity::find_by_id(m.conversation_id)
        .one(&txn)
        .await
        .map_err(|e| transient(e.into()))?
        .ok_or_else(|| JobError::Permanent("conversation gone".into()))?;
    let dedup = format!("message.created:{}", m.id);
    let created = create_delivery(
        &txn,
        &src,
        &conv,
        "message.created",
        &dedup,
        None,
        Some(m.id),
        |id| {
            envelope(
                id,
                "message.created",
                now,
                message_data(&src, &conv, None, m),
            )
        },
        now,
    )
    .await
    .map_err(transient)?;
    let mut pending = Pending::default();
    if !created {
        let d = delivery::Entity::find()
            .filter(delivery::Column::SourceId.eq(src.id))
            .filter(delivery::Column::DedupKey.eq(&dedup))
            .one(&txn)
            .await
            .map_err(|e| transient(e.into()))?;
        match d {
            Some(d) if d.status == FAILED => requeue(&txn, d, now).await.map_err(transient)?,
            Some(d) if d.status == DELIVERED => {
                mark_message(&txn, &mut pending, m.id, "sent", None, now)
                    .await
                    .map_err(transient)?
            }
            _ => {}
        }
    }
    txn.commit().await.map_err(|e| transient(e.into()))?;
    core.published(pending);
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// Records an outgoing message's outcome (only while it is pending) with its live event.
async fn mark_message(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    message_id: Uuid,
    status: &str,
    error: Option<String>,
    now: i64,
) -> Result<()> {
    let mut q = message::Entity::update_many()
        .col_expr(message::Column::Status, Expr::value(status))
        .col_expr(message::Column::Error, Expr::value(error))
        .filter(message::Column::Id.eq(message_id))
        .filter(message::Column::Direction.eq("out"));
    // A reply delivered after it was given up on (a replay) is sent after all.
    q = if status == "sent" {
        q.filter(message::Column::Status.is_in(["pending", "failed"]))
    } else {
        q.filter(message::Column::Status.eq("pending"))
    };
    if status == "sent" {
        q = q.col_expr(message::Column::SentAt, Expr::value(now));
    }
    if q.exec(conn).await?.rows_affected == 0 {
        return Ok(());
    }
    let m = message::Entity::find_by_id(message_id)
        .one(conn)
        .await?
        .ok_or(CoreError::NotFound)?;
    events::emit(
        conn,
        pending,
        m.company_id,
        "message",
        json!({"conversation_id": m.conversation_id, "message_id": m.id}),
        now,
    )
    .await?;
    Ok(())
}

// ---- outbound: the dispatcher ----

fn envelope(id: Uuid, kind: &str, now: i64, data: Value) -> String {
    json!({"id": id, "type": kind, "created_at": now, "data": data}).to_string()
}

fn message_data(
    src: &source::Model,
    conv: &conversation::Model,
    contact: Option<&contact::Model>,
    m: &message::Model,
) -> Value {
    json!({
        "source_id": src.id,
        "conversation_id": conv.id,
        "chat_id": conv.external_chat_id,
        "contact": contact.map(|c| json!({"id": c.external_id, "name": c.name})),
        "message": {
            "id": m.id,
            "direction": m.direction,
            "text": m.text,
            "status": m.status,
            "error": m.error,
            "external_id": m.external_id,
            "sender_name": m.sender_name,
            "author_id": m.author_id,
            "reply_to_id": m.reply_to_id,
            "created_at": m.created_at,
            "sent_at": m.sent_at,
        },
    })
}

/// Inserts a delivery with its job unless one with the same key exists; `true` if inserted.
#[allow(clippy::too_many_arguments)]
async fn create_delivery(
    conn: &impl ConnectionTrait,
    src: &source::Model,
    conv: &conversation::Model,
    kind: &str,
    dedup: &str,
    event_id: Option<i64>,
    message_id: Option<Uuid>,
    body: impl FnOnce(Uuid) -> String,
    now: i64,
) -> Result<bool> {
    let id = Uuid::now_v7();
    let url = settings_of(src).webhook_url.unwrap_or_default();
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            "INSERT INTO api_webhook_deliveries (id, company_id, source_id, dedup_key, event_type, event_id, \
             conversation_id, message_id, payload, url, status, attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', 0, $11, $11) \
             ON CONFLICT (source_id, dedup_key) DO NOTHING RETURNING id",
            vec![
                id.into(),
                src.company_id.into(),
                src.id.into(),
                dedup.into(),
                kind.into(),
                event_id.into(),
                conv.id.into(),
                message_id.into(),
                body(id).into(),
                url.into(),
                now.into(),
            ],
        ))
        .await?;
    if row.is_none() {
        return Ok(false);
    }
    let d = delivery::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or(CoreError::Internal("delivery vanished".into()))?;
    let job_id = jobs::enqueue(conn, deliver_job(&d, now), now).await?;
    delivery::Entity::update_many()
        .col_expr(delivery::Column::JobId, Expr::value(job_id))
        .filter(delivery::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(true)
}

/// Event ids up to which the log is final: no transaction still holding a smaller id can
/// commit later. SQLite has one writer, so every visible id is final. On PostgreSQL ids are
/// taken before commit, so a watermark is taken in steps: a maximum id seen at one run, the
/// snapshot's `xmax` at the next (by then every holder of a smaller id has a transaction id
/// below it), and the maximum becomes final once the oldest running transaction is past that
/// `xmax`. Steps are stored in the cursor row, so a restart only delays them.
async fn horizon(core: &Core) -> Result<i64> {
    let db = &core.db;
    let backend = db.get_database_backend();
    if backend != DbBackend::Postgres {
        let row = db
            .query_one(stmt(
                backend,
                "SELECT COALESCE(MAX(id), 0) AS m FROM events",
                vec![],
            ))
            .await?
            .ok_or(CoreError::Internal("no max".into()))?;
        return Ok(row.try_get::<i64>("", "m")?);
    }
    let snap = db
        .query_one(stmt(
            backend,
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin, \
             pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax, \
             COALESCE((SELECT MAX(id) FROM events), 0) AS m",
            vec![],
        ))
        .await?
        .ok_or(CoreError::Internal("no snapshot".into()))?;
    let (xmin, xmax, max_id): (i64, i64, i64) = (
        snap.try_get("", "xmin")?,
        snap.try_get("", "xmax")?,
        snap.try_get("", "m")?,
    );
    let c = db
        .query_one(stmt(
            backend,
            "SELECT last_event_id, candidate_max, pending_max, pending_xmax FROM api_webhook_cursor WHERE name = $1",
            vec![CURSOR.into()],
        ))
        .await?
        .ok_or(CoreError::Internal("no cursor".into()))?;
    let last: i64 = c.try_get("", "last_event_id")?;
    let mut candidate: Option<i64> = c.try_get("", "candidate_max")?;
    let mut pending: Option<(i64, i64)> = match (
        c.try_get::<Option<i64>>("", "pending_max")?,
        c.try_get::<Option<i64>>("", "pending_xmax")?,
    ) {
        (Some(m), Some(x)) => Some((m, x)),
        _ => None,
    };
    let mut final_up_to = last;
    if let Some((m, x)) = pending {
        if xmin >= x {
            final_up_to = final_up_to.max(m);
            pending = None;
        }
    }
    if pending.is_none() {
        if let Some(m) = candidate.take() {
            pending = Some((m, xmax));
        }
    }
    if candidate.is_none() {
        candidate = Some(max_id);
    }
    db.execute(stmt(
        backend,
        "UPDATE api_webhook_cursor SET candidate_max = $2, pending_max = $3, pending_xmax = $4 WHERE name = $1",
        vec![
            CURSOR.into(),
            candidate.into(),
            pending.map(|p| p.0).into(),
            pending.map(|p| p.1).into(),
        ],
    ))
    .await?;
    Ok(final_up_to)
}

/// API sources with a webhook URL, by id.
async fn endpoints(conn: &impl ConnectionTrait) -> Result<Vec<source::Model>> {
    Ok(source::Entity::find()
        .filter(source::Column::Kind.eq(SourceKind::Api.id()))
        .filter(source::Column::Status.ne(crate::sources::DISABLED))
        .all(conn)
        .await?
        .into_iter()
        .filter(|s| settings_of(s).webhook_url.is_some())
        .collect())
}

/// One dispatcher run: turns the final part of the event log after the cursor into
/// deliveries, moving the cursor in the same transactions. Returns whether any endpoint exists.
async fn dispatch(core: &Core) -> Result<bool> {
    if endpoints(&core.db).await?.is_empty() {
        return Ok(false);
    }
    let up_to = horizon(core).await?;
    loop {
        let txn = core.db.begin().await?;
        let last: i64 = txn
            .query_one(stmt(
                txn.get_database_backend(),
                "SELECT last_event_id FROM api_webhook_cursor WHERE name = $1",
                vec![CURSOR.into()],
            ))
            .await?
            .ok_or(CoreError::Internal("no cursor".into()))?
            .try_get("", "last_event_id")?;
        if last >= up_to {
            return Ok(true);
        }
        let evs = event::Entity::find()
            .filter(event::Column::Id.gt(last))
            .filter(event::Column::Id.lte(up_to))
            .order_by_asc(event::Column::Id)
            .limit(500)
            .all(&txn)
            .await?;
        let new_last = evs.last().map_or(up_to, |e| e.id);
        let eps = endpoints(&txn).await?;
        for ev in &evs {
            if !eps.iter().any(|s| s.company_id == ev.company_id) {
                continue;
            }
            derive(&txn, &eps, ev).await?;
        }
        let moved = txn
            .execute(stmt(
                txn.get_database_backend(),
                "UPDATE api_webhook_cursor SET last_event_id = $2, updated_at = $3 WHERE name = $1 AND last_event_id = $4",
                vec![CURSOR.into(), new_last.into(), core.now().into(), last.into()],
            ))
            .await?
            .rows_affected();
        if moved != 1 {
            return Err(CoreError::Internal(
                "the webhook cursor moved under us".into(),
            ));
        }
        txn.commit().await?;
        core.jobs_notify.notify_waiters();
    }
}

async fn mark_of(conn: &impl ConnectionTrait, subject: Uuid) -> Result<Option<String>> {
    Ok(conn
        .query_one(stmt(
            conn.get_database_backend(),
            "SELECT state FROM api_webhook_marks WHERE subject_id = $1",
            vec![subject.into()],
        ))
        .await?
        .map(|r| r.try_get::<String>("", "state"))
        .transpose()?)
}

async fn set_mark(conn: &impl ConnectionTrait, subject: Uuid, state: &str, now: i64) -> Result<()> {
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO api_webhook_marks (subject_id, state, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (subject_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        vec![subject.into(), state.into(), now.into()],
    ))
    .await?;
    Ok(())
}

/// A `message.status_changed` delivery when the message's status is one integrators are told
/// about (`sent`, `failed`). Deduplicated per message and status, so each outcome is reported
/// exactly once however many events mention it.
async fn status_changed(
    conn: &impl ConnectionTrait,
    src: &source::Model,
    conv: &conversation::Model,
    m: &message::Model,
    event_id: i64,
    now: i64,
) -> Result<()> {
    if !matches!(m.status.as_str(), "sent" | "failed") {
        return Ok(());
    }
    let dedup = format!("message.status_changed:{}:{}", m.id, m.status);
    let data = json!({
        "source_id": src.id,
        "conversation_id": conv.id,
        "chat_id": conv.external_chat_id,
        "message": {"id": m.id, "direction": m.direction, "status": m.status,
                    "error": m.error, "external_id": m.external_id, "sent_at": m.sent_at},
    });
    create_delivery(
        conn,
        src,
        conv,
        "message.status_changed",
        &dedup,
        Some(event_id),
        Some(m.id),
        |id| envelope(id, "message.status_changed", now, data),
        now,
    )
    .await?;
    Ok(())
}

/// What one event means for the API source of its conversation, as deliveries.
async fn derive(
    conn: &impl ConnectionTrait,
    eps: &[source::Model],
    ev: &event::Model,
) -> Result<()> {
    let payload: Value = serde_json::from_str(&ev.payload).unwrap_or_default();
    let id_of = |k: &str| {
        payload
            .get(k)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Uuid>().ok())
    };
    let Some(conv_id) = id_of("conversation_id") else {
        return Ok(());
    };
    let Some(conv) = conversation::Entity::find_by_id(conv_id).one(conn).await? else {
        return Ok(());
    };
    let Some(src) = eps.iter().find(|s| s.id == conv.source_id) else {
        return Ok(());
    };
    if ev.created_at < settings_of(src).webhook_since {
        return Ok(());
    }
    let now = ev.created_at;
    if let Some(mid) = id_of("message_id") {
        if let Some(m) = message::Entity::find_by_id(mid).one(conn).await? {
            match mark_of(conn, m.id).await? {
                None => {
                    let contact = contact::Entity::find_by_id(conv.contact_id)
                        .one(conn)
                        .await?;
                    let dedup = format!("message.created:{}", m.id);
                    create_delivery(
                        conn,
                        src,
                        &conv,
                        "message.created",
                        &dedup,
                        Some(ev.id),
                        Some(m.id),
                        |id| {
                            envelope(
                                id,
                                "message.created",
                                now,
                                message_data(src, &conv, contact.as_ref(), &m),
                            )
                        },
                        now,
                    )
                    .await?;
                    // A reply that was already sent (or failed) when the dispatcher first saw
                    // it still gets its status event: every reply reports its outcome once.
                    if m.direction == "out" {
                        status_changed(conn, src, &conv, &m, ev.id, now).await?;
                    }
                    set_mark(conn, m.id, &m.status, now).await?;
                }
                Some(seen) if seen != m.status => {
                    status_changed(conn, src, &conv, &m, ev.id, now).await?;
                    set_mark(conn, m.id, &m.status, now).await?;
                }
                Some(_) => {}
            }
        }
    }
    // The conversation's status and assignee, against what was last reported.
    let seen = mark_of(conn, conv.id)
        .await?
        .unwrap_or_else(|| "open|".into());
    let (seen_status, seen_assignee) = seen.split_once('|').unwrap_or(("open", ""));
    let assignee = conv.assignee_id.map(|a| a.to_string()).unwrap_or_default();
    if seen_status == conv.status && seen_assignee == assignee {
        return Ok(());
    }
    if seen_status != conv.status {
        let dedup = format!("conversation.status_changed:{}:{}", conv.id, ev.id);
        let data = json!({"source_id": src.id, "conversation_id": conv.id,
                          "chat_id": conv.external_chat_id, "status": conv.status});
        create_delivery(
            conn,
            src,
            &conv,
            "conversation.status_changed",
            &dedup,
            Some(ev.id),
            None,
            |id| envelope(id, "conversation.status_changed", now, data),
            now,
        )
        .await?;
    }
    if seen_assignee != assignee {
        let who = match conv.assignee_id {
            Some(u) => user::Entity::find_by_id(u)
                .one(conn)
                .await?
                .map(|u| json!({"id": u.id, "name": u.name})),
            None => None,
        };
        let dedup = format!("conversation.assigned:{}:{}", conv.id, ev.id);
        let data = json!({"source_id": src.id, "conversation_id": conv.id,
                          "chat_id": conv.external_chat_id, "assignee": who});
        create_delivery(
            conn,
            src,
            &conv,
            "conversation.assigned",
            &dedup,
            Some(ev.id),
            None,
            |id| envelope(id, "conversation.assigned", now, data),
            now,
        )
        .await?;
    }
    set_mark(conn, conv.id, &format!("{}|{assignee}", conv.status), now).await
}

// ---- jobs ----

/// Registers the API source's job handlers.
pub fn register(r: Registry) -> Registry {
    r.with(JOB_DISPATCH, Dispatch).with(JOB_DELIVER, Deliver)
}

fn job_uuid(job: &Claimed, key: &str) -> Result<Uuid, JobError> {
    serde_json::from_str::<Value>(&job.payload)
        .ok()
        .and_then(|v| {
            v.get(key)
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
        })
        .ok_or_else(|| JobError::Permanent(format!("payload has no {key}")))
}

fn internal(e: impl std::fmt::Display) -> JobError {
    JobError::Transient(e.to_string())
}

struct Dispatch;

#[async_trait]
impl JobHandler for Dispatch {
    async fn run(&self, core: &Core, _job: &Claimed) -> Result<(), JobError> {
        match dispatch(core).await {
            // Runs again shortly for as long as some source has a webhook URL.
            Ok(true) => Err(JobError::Wait {
                retry_after_ms: DISPATCH_EVERY_MS,
                message: "following the event log".into(),
            }),
            Ok(false) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatch failed; will run again");
                Err(JobError::Wait {
                    retry_after_ms: 1_000,
                    message: e.to_string(),
                })
            }
        }
    }
}

struct Deliver;

/// An error with its causes ("error sending request: … : Connection refused"), never a body.
fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// Why a delivery got no answer.
enum Failure {
    Refused(egress::Refusal),
    Timeout,
    Connect(String),
}

#[async_trait]
impl JobHandler for Deliver {
    async fn run(&self, core: &Core, job: &Claimed) -> Result<(), JobError> {
        let id = job_uuid(job, "delivery_id")?;
        let Some(d) = delivery::Entity::find_by_id(id)
            .one(&core.db)
            .await
            .map_err(internal)?
        else {
            return Ok(());
        };
        if d.status != PENDING {
            return Ok(());
        }
        // Per conversation, in the order they were made: wait for an earlier one still going.
        if let Some(c) = d.conversation_id {
            let earlier = delivery::Entity::find()
                .filter(delivery::Column::SourceId.eq(d.source_id))
                .filter(delivery::Column::ConversationId.eq(c))
                .filter(delivery::Column::Status.eq(PENDING))
                .filter(delivery::Column::Id.lt(d.id))
                .one(&core.db)
                .await
                .map_err(internal)?;
            if earlier.is_some() {
                return Err(JobError::Wait {
                    retry_after_ms: 250,
                    message: "waiting for an earlier delivery of this conversation".into(),
                });
            }
        }
        let src = source::Entity::find_by_id(d.source_id)
            .one(&core.db)
            .await
            .map_err(internal)?
            .ok_or_else(|| JobError::Permanent("source gone".into()))?;
        let Some(url) = settings_of(&src).webhook_url else {
            return Err(JobError::Permanent("no outgoing webhook URL is set".into()));
        };
        let secret = secret_of(core, &src).map_err(|e| JobError::Permanent(e.to_string()))?;
        let ts = core.now() / 1000;
        // A person typed this URL: only public addresses (a literal IP here, names in the
        // resolver), no redirects; the log keeps the status and timing, never the answer.
        let allow = core.config.allow_private_targets;
        let started = std::time::Instant::now();
        let target = egress::parse(&url).and_then(|u| egress::check_literal(&u, allow).map(|()| u));
        let r = match target {
            Err(refusal) => Err(Failure::Refused(refusal)),
            Ok(target) => core
                .outbound
                .post(target)
                .timeout(std::time::Duration::from_secs(DELIVERY_TIMEOUT_SECS))
                .header("content-type", "application/json")
                .header("x-chatter-timestamp", ts.to_string())
                .header(
                    "x-chatter-signature",
                    sign(&secret, ts, d.payload.as_bytes()),
                )
                .header("x-chatter-event", d.event_type.as_str())
                .header("x-chatter-delivery", d.id.to_string())
                .body(d.payload.clone())
                .send()
                .await
                .map_err(|e| match egress::refusal_in(&e) {
                    Some(r) => Failure::Refused(r),
                    None if e.is_timeout() => Failure::Timeout,
                    None => Failure::Connect(cause_chain(&e.without_url())),
                }),
        };
        let ms = started.elapsed().as_millis();
        let mut refused = false;
        let (code, error) = match r {
            Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16() as i32), None),
            Ok(resp) => {
                let code = resp.status().as_u16();
                (Some(code as i32), Some(format!("HTTP {code} in {ms} ms")))
            }
            Err(Failure::Timeout) => (
                None,
                Some(format!("no answer within {DELIVERY_TIMEOUT_SECS} s")),
            ),
            Err(Failure::Refused(why)) => {
                refused = true;
                (None, Some(why.to_string()))
            }
            Err(Failure::Connect(e)) => (None, Some(format!("cannot connect: {e}"))),
        };
        let now = core.now();
        let txn = core.db.begin().await.map_err(internal)?;
        let mut pending = Pending::default();
        let mut am = d.clone().into_active_model();
        am.attempts = Set(d.attempts + 1);
        am.url = Set(url);
        am.status_code = Set(code);
        am.last_error = Set(error.clone());
        am.updated_at = Set(now);
        if error.is_none() {
            am.status = Set(DELIVERED.into());
            am.delivered_at = Set(Some(now));
        }
        am.update(&txn).await.map_err(internal)?;
        if d.event_type == "message.created" {
            if let Some(mid) = d.message_id {
                match &error {
                    None => mark_message(&txn, &mut pending, mid, "sent", None, now).await,
                    // Shown on the pending reply while it is retried.
                    Some(e) => message::Entity::update_many()
                        .col_expr(
                            message::Column::Error,
                            Expr::value(format!("retrying: {e}")),
                        )
                        .filter(message::Column::Id.eq(mid))
                        .filter(message::Column::Status.eq("pending"))
                        .exec(&txn)
                        .await
                        .map(|_| ())
                        .map_err(CoreError::from),
                }
                .map_err(internal)?;
            }
        }
        txn.commit().await.map_err(internal)?;
        core.published(pending);
        match error {
            None => Ok(()),
            // The address will not become public by waiting.
            Some(e) if refused => Err(JobError::Permanent(e)),
            Some(e) => Err(JobError::Transient(e)),
        }
    }

    async fn dead(&self, core: &Core, job: &Claimed, reason: &str) {
        let Ok(id) = job_uuid(job, "delivery_id") else {
            return;
        };
        let now = core.now();
        let r: Result<()> = async {
            let txn = core.db.begin().await?;
            let Some(d) = delivery::Entity::find_by_id(id).one(&txn).await? else {
                return Ok(());
            };
            let mut pending = Pending::default();
            if d.event_type == "message.created" {
                if let Some(mid) = d.message_id {
                    mark_message(
                        &txn,
                        &mut pending,
                        mid,
                        "failed",
                        Some(reason.to_string()),
                        now,
                    )
                    .await?;
                }
            }
            let mut am = d.into_active_model();
            am.status = Set(FAILED.into());
            am.last_error = Set(Some(reason.chars().take(2000).collect()));
            am.updated_at = Set(now);
            am.update(&txn).await?;
            txn.commit().await?;
            core.published(pending);
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::error!(error = %e, delivery = %id, "cannot record a failed webhook delivery");
        }
    }
}
