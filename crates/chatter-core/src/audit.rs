//! The audit log: every state-changing operation, written in the same transaction as the
//! change. Owners and admins read it with filters and export it as CSV.

use crate::{Actor, CoreError, Result};
use chatter_domain::Permission;
use chatter_domain::UserId;
use chatter_store::entity::audit;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

/// Records `action` on `target` by `actor`.
pub async fn record(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    now: i64,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<()> {
    insert(
        conn,
        Some(actor.company_id.uuid()),
        actor.user_id.map(UserId::uuid),
        &actor.label,
        &actor.meta,
        now,
        action,
        target,
        details,
    )
    .await
}

/// Records an event that has no company actor (sign-in attempts, sign-up).
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    conn: &impl ConnectionTrait,
    company_id: Option<Uuid>,
    user_id: Option<Uuid>,
    label: &str,
    meta: &crate::ReqMeta,
    now: i64,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<()> {
    let m = audit::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(company_id),
        user_id: Set(user_id),
        actor: Set(label.to_string()),
        action: Set(action.to_string()),
        target: Set(target.to_string()),
        ip: Set(meta.ip.clone()),
        user_agent: Set(meta.user_agent.chars().take(300).collect()),
        details: Set(details.to_string()),
        created_at: Set(now),
    };
    audit::Entity::insert(m)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Filters for the audit page and export.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct AuditFilter {
    /// Action prefix, e.g. `team.` or `user.sign_in`.
    pub action: Option<String>,
    /// Substring of the actor (email).
    pub actor: Option<String>,
    /// Unix ms bounds.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// The company's audit entries, newest first.
pub async fn list(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    f: &AuditFilter,
    limit: u64,
    offset: u64,
) -> Result<Vec<audit::Model>> {
    actor.require(Permission::ReadAudit)?;
    let mut q = audit::Entity::find().filter(audit::Column::CompanyId.eq(actor.company_id));
    if let Some(a) = f.action.as_deref().filter(|s| !s.is_empty()) {
        q = q.filter(audit::Column::Action.starts_with(a));
    }
    if let Some(a) = f.actor.as_deref().filter(|s| !s.is_empty()) {
        q = q.filter(audit::Column::Actor.contains(a));
    }
    if let Some(t) = f.from {
        q = q.filter(audit::Column::CreatedAt.gte(t));
    }
    if let Some(t) = f.to {
        q = q.filter(audit::Column::CreatedAt.lt(t));
    }
    Ok(q.order_by_desc(audit::Column::CreatedAt)
        .order_by_desc(audit::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(conn)
        .await?)
}

/// CSV of the filtered entries (at most 100,000 rows).
pub async fn export_csv(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    f: &AuditFilter,
) -> Result<String> {
    let rows = list(conn, actor, f, 100_000, 0).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| CoreError::Internal(e.to_string());
    w.write_record([
        "time_utc",
        "actor",
        "action",
        "target",
        "ip",
        "user_agent",
        "details",
    ])
    .map_err(internal)?;
    for r in rows {
        let time = chrono::DateTime::from_timestamp_millis(r.created_at)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        w.write_record([
            time,
            cell(&r.actor),
            cell(&r.action),
            cell(&r.target),
            cell(&r.ip),
            cell(&r.user_agent),
            cell(&r.details),
        ])
        .map_err(internal)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| CoreError::Internal(e.to_string()))
}

/// A CSV cell that a spreadsheet will not run as a formula: text starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return gets a leading `'`.
pub(crate) fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}
