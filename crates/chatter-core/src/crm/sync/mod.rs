//! Conversations into the CRM (requirement R3.2–R3.5). Every new message of a company with a
//! connected CRM puts a row into `crm_outbox` in the same transaction that stores the message,
//! and wakes one `crm_drain` job per company. The drain holds the company's lease, so all of an
//! account's CRM traffic runs on one node at a time through one rate limiter, and works the
//! outbox in order:
//!
//! 1. conversations without a deal: the routing decision, the contact (our mapping, else a
//!    search by phone or email, else a new one), the customer's open deal or a new one — new
//!    deals go out up to 50 per `leads/complex` call, keyed by our conversation id;
//! 2. then each message, in order per conversation: into amoCRM's chat (Chats API) when the
//!    channel is configured, else as a note on the deal (notes batched too);
//! 3. delivery statuses of managers' replies written in amoCRM, and the responsible of deals
//!    set to the first manager who answered.
//!
//! A rate limit stops the run and resumes when amoCRM says; a 5xx or timeout retries that item
//! with backoff; a refused item is parked as failed with amoCRM's words (the troubleshooting
//! page retries it); a revoked token holds everything — nothing is dropped — until the account
//! is connected again.

use crate::crm::settings::{self as crm_settings, ChatsState, SyncSettings};
use crate::crm::{self, integration::Metadata};
use crate::events::Pending;
use crate::jobs::{BackgroundJob, JobError, JobMeta};
use crate::{audit, Actor, Core, CoreError, Result};
use async_trait::async_trait;
use chatter_crm::amocrm::chats::ChatsClient;
use chatter_crm::amocrm::AmoCrm;
use chatter_crm::{
    ChatDirection, ChatMedia, ChatMediaKind, ChatMessage, ChatParty, ChatSent, ContactQuery, Crm,
    CrmError, CrmReply, DealDraft, DeliveryFailure, DeliveryStatus, DraftContact, FieldScalar,
    FieldValue, MessengerKey, NewContact, NewDeal,
};
use chatter_domain::routing::{self, Actions, Decision, Responsible};
use chatter_domain::{
    CompanyId, ContactId, ConversationId, Direction, MessageId, Permission, SourceId, SourceKind,
};
use chatter_store::entity::{
    contact, conversation, crm_contact, crm_integration, crm_turn, message, source,
};
use chatter_store::jobs;
use chatter_store::{leases, stmt};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait, Value,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

mod chats;
mod deals;
mod drain;
mod health;
pub mod import;
mod lost;
pub mod outbox;
mod people;
mod responsible;
pub use chats::*;
pub use deals::*;
pub use drain::*;
pub use health::*;
use lost::*;
use outbox::*;
pub use people::*;
pub use responsible::*;

/// Attempts of one item before it is parked as failed.
const MAX_ATTEMPTS: i32 = 8;
/// A drain gives its slot back after this long and runs again at once.
const RUN_BUDGET_MS: i64 = 45_000;
const LEASE_TTL_MS: i64 = 60_000;
/// How long held work waits before looking again at a revoked token.
const HOLD_MS: i64 = 5 * 60_000;

/// Starts a drain for `company_id` now (after a reconnect, a retry, or held work).
pub async fn wake(core: &Core, company_id: chatter_domain::CompanyId) -> Result<()> {
    let now = core.now();
    let key = format!("{}:{company_id}", CrmDrain::NAME);
    // A queued drain may be waiting (held on a revoked token): bring it forward.
    core.db
        .execute(stmt(
            core.db.get_database_backend(),
            "UPDATE jobs SET run_at = $1 WHERE dedup_key = $2 AND status = 'queued'",
            vec![now.into(), key.into()],
        ))
        .await?;
    queue_drain(&core.db, company_id.uuid(), now, now).await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

// ---- what the drain knows about one conversation ----

/// The sync record of a conversation, for the inbox and the API.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CrmLink {
    pub deal_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub chat_ref: Option<String>,
    /// The routing rule that placed the deal; `None` = the default.
    pub rule_id: Option<String>,
    pub rule_name: Option<String>,
    /// A link to the deal in amoCRM.
    pub deal_url: Option<String>,
    /// Items not yet in the CRM, and how many of them failed for good.
    pub pending: i64,
    pub failed: i64,
    pub last_error: Option<String>,
}

/// The CRM side of a conversation.
pub async fn link_of(
    core: &Core,
    actor: &Actor,
    conversation_id: ConversationId,
) -> Result<Option<CrmLink>> {
    actor.require(Permission::Read)?;
    let db = &core.db;
    let backend = db.get_database_backend();
    let row = db
        .query_one(stmt(
            backend,
            "SELECT deal_id, remote_contact_id, chat_ref, rule_id, rule_name FROM crm_conversations \
             WHERE conversation_id = $1 AND company_id = $2",
            vec![conversation_id.into(), actor.company_id.into()],
        ))
        .await?;
    let counts = db
        .query_one(stmt(
            backend,
            "SELECT count(*) AS n, coalesce(sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS f, \
             max(last_error) AS e FROM crm_outbox WHERE conversation_id = $1 AND company_id = $2",
            vec![conversation_id.into(), actor.company_id.into()],
        ))
        .await?;
    let (pending, failed, last_error) = match counts {
        Some(r) => (
            r.try_get::<i64>("", "n").unwrap_or(0),
            r.try_get::<i64>("", "f").unwrap_or(0),
            r.try_get::<Option<String>>("", "e").unwrap_or(None),
        ),
        None => (0, 0, None),
    };
    if row.is_none() && pending == 0 {
        return Ok(None);
    }
    let base = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(actor.company_id))
        .one(db)
        .await?
        .map(|i| i.base_url);
    let mut link = CrmLink {
        pending,
        failed,
        last_error,
        ..CrmLink::default()
    };
    if let Some(r) = row {
        link.deal_id = r.try_get("", "deal_id")?;
        link.contact_id = r.try_get("", "remote_contact_id")?;
        link.chat_ref = r.try_get("", "chat_ref")?;
        link.rule_id = r.try_get("", "rule_id")?;
        link.rule_name = r.try_get("", "rule_name")?;
        link.deal_url = match (&base, link.deal_id) {
            (Some(b), Some(d)) => Some(format!("{b}/leads/detail/{d}")),
            _ => None,
        };
    }
    Ok(Some(link))
}
