//! Conversations: storing what customers write (the heart of the message path), and what
//! managers do in the inbox — read, reply, assign, close, reopen, retry a failed reply.
//!
//! Inbound: contact, conversation, message, follow-up jobs and the live event are written in
//! ONE transaction by `ingest_in`; a message is unique per (source, external id), so a
//! provider's retry or a replayed update is a no-op. The provider is acknowledged only after
//! the caller commits.

mod batch;
mod bulk;
pub mod contacts;
pub mod dead_letters;
pub mod ingest;
pub mod labels;
pub mod search;
pub mod send;
pub mod templates;

use crate::attachments::StoredAttachment;
use crate::events::{self, Pending};
use crate::jobs::{BackgroundJob, JobOptions};
use crate::{audit, Actor, Core, CoreError, Result};
use chatter_channels::Template;
use chatter_channels::{Attachment, DeliveryState, InboundEvent, InboundMessage};
use chatter_domain::values::{limits, multi_line_text, optional_text};
use chatter_domain::{
    ContactId, ConversationId, ConversationStatus, Direction, FieldError, MessageId, MessageStatus,
    Permission, SourceId, SourceKind, UserId,
};
use chatter_store::entity::{contact, conversation, message, source};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use send::{FetchFile, SendMessage};
use serde::Deserialize;
use uuid::Uuid;

mod files;
mod list;
mod notes;
mod receive;
mod reply;
pub use bulk::*;
pub use files::*;
pub use labels::{set_labels, toggle_label};
pub use list::*;
pub use notes::*;
pub use receive::*;
pub use reply::*;

/// What one ingested event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    New(MessageId),
    Edited(MessageId),
    Duplicate,
    Other,
    /// Unstorable as it is: parked as this dead letter (and acknowledged).
    Parked(Uuid),
    /// The source is turned off: nothing was stored.
    SourceOff,
}

pub(crate) fn preview(text: Option<&str>, atts: &[Attachment], extra: bool) -> String {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => t.chars().take(140).collect(),
        None if !atts.is_empty() => format!("[{}]", atts[0].kind),
        None if extra => "[contact/location]".to_string(),
        None => String::new(),
    }
}

/// Assigns the conversation (None: unassigned). The assignee must be a member who may reply.
pub async fn assign(
    core: &Core,
    actor: &Actor,
    id: ConversationId,
    assignee: Option<UserId>,
) -> Result<()> {
    actor.require(Permission::Reply)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    if let Some(u) = assignee {
        check_assignee(&txn, actor, u).await?;
    }
    let n = conversation::Entity::update_many()
        .col_expr(conversation::Column::AssigneeId, Expr::value(assignee))
        .col_expr(conversation::Column::UpdatedAt, Expr::value(now))
        .filter(conversation::Column::Id.eq(id))
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .exec(&txn)
        .await?;
    if n.rows_affected == 0 {
        return Err(CoreError::NotFound);
    }
    crate::crm::sync::outbox::on_assign(&txn, actor.company_id, id, assignee.map(|u| u.0), now)
        .await?;
    let mut pending = Pending::default();
    if let Some(u) = assignee {
        notify_assigned(&txn, &mut pending, actor, id, u, now).await?;
    }
    let details = serde_json::json!({"assignee": assignee});
    conversation_changed(
        core,
        txn,
        pending,
        actor,
        id,
        "conversation.assign",
        details,
        now,
    )
    .await
}

/// Closes (`open = false`) or reopens a conversation.
pub async fn set_open(core: &Core, actor: &Actor, id: ConversationId, open: bool) -> Result<()> {
    actor.require(Permission::Reply)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let n = conversation::Entity::update_many()
        .col_expr(
            conversation::Column::Status,
            Expr::value(if open {
                ConversationStatus::Open
            } else {
                ConversationStatus::Closed
            }),
        )
        .col_expr(conversation::Column::UpdatedAt, Expr::value(now))
        .filter(conversation::Column::Id.eq(id))
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .exec(&txn)
        .await?;
    if n.rows_affected == 0 {
        return Err(CoreError::NotFound);
    }
    let action = if open {
        "conversation.reopen"
    } else {
        "conversation.close"
    };
    let pending = Pending::default();
    conversation_changed(
        core,
        txn,
        pending,
        actor,
        id,
        action,
        serde_json::json!({}),
        now,
    )
    .await
}

/// Refuses (on `assignee`) anyone who is not a member of the company who may reply.
async fn check_assignee(conn: &impl ConnectionTrait, actor: &Actor, u: UserId) -> Result<()> {
    let m = chatter_store::entity::membership::Entity::find_by_id((actor.company_id.uuid(), u.0))
        .one(conn)
        .await?;
    let ok = m
        .and_then(|m| chatter_domain::Role::parse(&m.role))
        .is_some_and(|r| r.can(Permission::Reply));
    if ok {
        Ok(())
    } else {
        Err(CoreError::field("assignee", "err.assignee_invalid"))
    }
}

/// Finishes a change of a conversation: its live event and audit entry, then the commit.
#[allow(clippy::too_many_arguments)]
async fn conversation_changed(
    core: &Core,
    txn: sea_orm::DatabaseTransaction,
    mut pending: Pending,
    actor: &Actor,
    id: ConversationId,
    action: &str,
    details: serde_json::Value,
    now: i64,
) -> Result<()> {
    record_change(&txn, &mut pending, actor, id, action, details, now).await?;
    txn.commit().await?;
    core.published(pending);
    Ok(())
}

/// A conversation's change, in the caller's transaction: its live event and audit entry.
async fn record_change(
    txn: &sea_orm::DatabaseTransaction,
    pending: &mut Pending,
    actor: &Actor,
    id: ConversationId,
    action: &str,
    details: serde_json::Value,
    now: i64,
) -> Result<()> {
    let payload = serde_json::json!({"conversation_id": id});
    events::emit(txn, pending, actor.company_id, "conversation", payload, now).await?;
    audit::record(txn, actor, now, action, &id.to_string(), details).await
}

/// Tells member `u` that conversation `id` was given to them, unless they took it themselves
/// (a single assignment and a bulk one alike).
pub(crate) async fn notify_assigned(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    actor: &Actor,
    id: ConversationId,
    u: chatter_domain::UserId,
    now: i64,
) -> Result<()> {
    if Some(u) == actor.user_id {
        return Ok(());
    }
    let by = match actor.user_id {
        Some(me) => chatter_store::entity::user::Entity::find_by_id(me)
            .one(conn)
            .await?
            .map(|u| u.name),
        None => None,
    };
    crate::notifications::notify(
        conn,
        pending,
        crate::notifications::New {
            company: actor.company_id,
            kind: crate::notifications::ASSIGNED,
            conversation: id,
            note: None,
            actor_name: by.as_deref(),
        },
        &[u.0],
        now,
    )
    .await?;
    Ok(())
}
