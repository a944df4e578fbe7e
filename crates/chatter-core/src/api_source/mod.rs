//! The API source (kind 6): any system talks to Chatter through signed webhooks. This module
//! holds what does not need the inbox: the source's management, its signing, and the outbound
//! dispatcher; the inbound endpoint that stores messages is `sources::api` (above the inbox).
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
use crate::jobs::{BackgroundJob, JobError, JobMeta, JobOptions};
use crate::{audit, egress, Actor, Core, CoreError, Result};
use async_trait::async_trait;
use chatter_domain::values::{limits, required_text};
use chatter_domain::{
    Direction, FieldError, MessageId, MessageStatus, Permission, SourceId, SourceKind,
};
use chatter_store::entity::{
    api_webhook_delivery as delivery, api_webhook_mark, contact, conversation, event, job, message,
    source, user,
};
use chatter_store::jobs;
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

mod dispatch;
mod handlers;
mod manage;
mod replies;
use dispatch::*;
pub use handlers::*;
pub use manage::*;
pub use replies::*;

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
pub(crate) const MAX_TEXT: usize = 20_000;
pub(crate) const MAX_ID: usize = 200;

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
    chatter_store::stored_json::read("sources.settings", s.id, &s.settings)
}

pub(crate) fn secret_of(core: &Core, s: &source::Model) -> Result<String> {
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
pub fn inbound_url(core: &Core, source_id: SourceId) -> String {
    format!("{}/hooks/api/{source_id}", core.config.public_url)
}
