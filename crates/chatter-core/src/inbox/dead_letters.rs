//! Dead letters: an inbound event that can never be stored as it is (the database refuses its
//! data, or an identifier is longer than Chatter stores) is parked here and acknowledged, so
//! the provider stops retrying it and the poller's cursor moves on — one poison message never
//! stops a channel. Owners and admins see the parked events with the reason, retry one (its
//! stored event is ingested again) or delete it; the source's health shows how many it has.
//! A failure that a retry may fix (the database unreachable, a lock, a race) is never parked:
//! it stays unacknowledged and the provider delivers it again.

use crate::connectors;
use crate::connectors::model::DISABLED;
use crate::inbox::{self, Ingested};
use crate::{audit, Actor, Core, CoreError, Result};
use chatter_channels::InboundEvent;
use chatter_domain::{text, Permission, SourceId};
use chatter_store::entity::{dead_letter, source};
use chatter_store::StoreError;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    RuntimeErr,
};
use std::collections::HashMap;
use uuid::Uuid;

/// The field error `inbox_batch` raises for an identifier over `text::MAX_ID_BYTES`.
pub(crate) const ID_TOO_LONG: &str = "err.id_too_long";

/// Refuses an event whose identifiers cannot be stored the same way on both databases.
pub(crate) fn check_storable(ev: &InboundEvent) -> Result<()> {
    if ev.ids().into_iter().all(text::id_fits) {
        Ok(())
    } else {
        Err(CoreError::field("external_id", ID_TOO_LONG))
    }
}

/// Whether storing an event failed for a reason every retry will meet again.
pub fn is_permanent(e: &CoreError) -> bool {
    match e {
        CoreError::Invalid(_) => true,
        CoreError::Store(StoreError::Db(db)) => db_refused_data(db),
        _ => false,
    }
}

/// A database error about the data itself (not the connection, a lock or a race).
fn db_refused_data(e: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(sqlx::Error::Database(d)))
    | DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::Database(d)))) = e
    else {
        return false;
    };
    use sqlx::error::ErrorKind;
    match d.kind() {
        // Two writers inserting the same row: the retry finds it.
        ErrorKind::UniqueViolation => false,
        ErrorKind::ForeignKeyViolation
        | ErrorKind::NotNullViolation
        | ErrorKind::CheckViolation => true,
        _ => {
            let code = d.code().unwrap_or_default();
            if code.len() == 5 {
                // PostgreSQL SQLSTATE: 22 data exception (a NUL, a bad encoding, out of range),
                // 23 integrity constraint, 54 program limit (an index row too big).
                matches!(&code[..2], "22" | "23" | "54")
            } else {
                // SQLite result codes: 18 TOOBIG, 20 MISMATCH, 19 CONSTRAINT (extended).
                code.parse::<i32>()
                    .is_ok_and(|n| matches!(n & 0xff, 18..=20))
            }
        }
    }
}

/// What to show as the reason `e` made an event unstorable.
pub fn reason(e: &CoreError) -> String {
    let r = match e {
        CoreError::Invalid(f) if f.iter().any(|f| f.key == ID_TOO_LONG) => format!(
            "an identifier of the event is longer than {} bytes, more than Chatter stores",
            text::MAX_ID_BYTES
        ),
        CoreError::Invalid(f) => f
            .iter()
            .map(|f| format!("{}: {}", f.field, f.key))
            .collect::<Vec<_>>()
            .join(", "),
        e => e.to_string(),
    };
    let r = text::clean(&r).into_owned();
    r.chars().take(2000).collect()
}

/// Parks `ev` of `src` with `reason`; `raw` is what the provider sent, when known.
pub async fn park(
    core: &Core,
    src: &source::Model,
    ev: &InboundEvent,
    raw: Option<&str>,
    reason: &str,
) -> Result<Uuid> {
    let now = core.now();
    let id = Uuid::now_v7();
    let event = serde_json::to_string(ev).map_err(|e| CoreError::Internal(e.to_string()))?;
    let kind = src.kind.as_str().to_string();
    dead_letter::Entity::insert(dead_letter::ActiveModel {
        id: Set(id),
        company_id: Set(src.company_id.0),
        source_id: Set(src.id.0),
        kind: Set(kind),
        reason: Set(text::clean(reason).into_owned()),
        event: Set(event),
        raw: Set(raw.map(|r| text::clean(r).into_owned())),
        attempts: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(&core.db)
    .await?;
    tracing::warn!(source = %src.id, dead_letter = %id, reason, "an inbound event cannot be stored; parked");
    Ok(id)
}

/// Stores polled events with the poller's new cursor. When the batch fails for a reason a
/// retry will not fix, the events are stored one by one, the unstorable ones parked, and the
/// cursor still advances; any other failure leaves everything (cursor included) unstored.
pub async fn ingest_polled(
    core: &Core,
    src: &source::Model,
    evs: &[InboundEvent],
    raws: &[Option<String>],
    cursor: Option<String>,
) -> Result<()> {
    let e = match inbox::ingest_batch(core, src, evs, cursor.clone()).await {
        Ok(_) => return Ok(()),
        Err(e) if is_permanent(&e) => e,
        Err(e) => return Err(e),
    };
    tracing::warn!(error = %e, source = %src.id, "polled batch refused; storing one by one");
    for (i, ev) in evs.iter().enumerate() {
        match inbox::ingest_batch(core, src, std::slice::from_ref(ev), None).await {
            Ok(_) => {}
            Err(e) if is_permanent(&e) => {
                let raw = raws.get(i).and_then(|r| r.as_deref());
                park(core, src, ev, raw, &reason(&e)).await?;
            }
            Err(e) => return Err(e),
        }
    }
    inbox::ingest_batch(core, src, &[], cursor)
        .await
        .map(|_| ())
}

/// The company's parked events, newest first.
pub async fn list(core: &Core, actor: &Actor, limit: u64) -> Result<Vec<dead_letter::Model>> {
    actor.require(Permission::Manage)?;
    Ok(dead_letter::Entity::find()
        .filter(dead_letter::Column::CompanyId.eq(actor.company_id))
        .order_by_desc(dead_letter::Column::CreatedAt)
        .limit(limit)
        .all(&core.db)
        .await?)
}

/// The company's parked events stored before `after` (when parked, id), newest first (the
/// API's cursor pagination). Owners and admins.
pub async fn list_after(
    core: &Core,
    actor: &Actor,
    after: Option<(i64, Uuid)>,
    limit: u64,
) -> Result<Vec<dead_letter::Model>> {
    use sea_orm::Condition;
    actor.require(Permission::Manage)?;
    let mut q =
        dead_letter::Entity::find().filter(dead_letter::Column::CompanyId.eq(actor.company_id));
    if let Some((at, id)) = after {
        q = q.filter(
            Condition::any()
                .add(dead_letter::Column::CreatedAt.lt(at))
                .add(
                    Condition::all()
                        .add(dead_letter::Column::CreatedAt.eq(at))
                        .add(dead_letter::Column::Id.lt(id)),
                ),
        );
    }
    Ok(q.order_by_desc(dead_letter::Column::CreatedAt)
        .order_by_desc(dead_letter::Column::Id)
        .limit(limit)
        .all(&core.db)
        .await?)
}

/// How many parked events each of the company's sources has.
pub async fn counts_by_source(
    core: &Core,
    company_id: chatter_domain::CompanyId,
) -> Result<HashMap<SourceId, i64>> {
    let rows: Vec<(SourceId, i64)> = dead_letter::Entity::find()
        .filter(dead_letter::Column::CompanyId.eq(company_id))
        .select_only()
        .column(dead_letter::Column::SourceId)
        .column_as(Expr::col(dead_letter::Column::Id).count(), "n")
        .group_by(dead_letter::Column::SourceId)
        .into_tuple()
        .all(&core.db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// What a retry came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retried {
    /// Stored (or found stored before): the dead letter is gone.
    Stored,
    /// Still refused, for this reason; the dead letter stays with the reason updated.
    StillRefused(String),
}

async fn get(core: &Core, actor: &Actor, id: Uuid) -> Result<dead_letter::Model> {
    actor.require(Permission::Manage)?;
    dead_letter::Entity::find_by_id(id)
        .filter(dead_letter::Column::CompanyId.eq(actor.company_id))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)
}

/// Ingests a parked event again (after a fix, or when the refusal was a one-off).
pub async fn retry(core: &Core, actor: &Actor, id: Uuid) -> Result<Retried> {
    let d = get(core, actor, id).await?;
    let src = source::Entity::find_by_id(d.source_id)
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)?;
    if src.status == DISABLED {
        return Err(CoreError::Conflict("source_disabled"));
    }
    let now = core.now();
    let outcome = match serde_json::from_str::<InboundEvent>(&d.event) {
        Ok(mut ev) => {
            connectors::normalize(&mut ev);
            match inbox::ingest_batch(core, &src, std::slice::from_ref(&ev), None).await {
                Ok(r) if r.iter().all(|i| !matches!(i, Ingested::SourceOff)) => Retried::Stored,
                Ok(_) => return Err(CoreError::Conflict("source_disabled")),
                Err(e) if is_permanent(&e) => Retried::StillRefused(reason(&e)),
                Err(e) => return Err(e),
            }
        }
        Err(e) => Retried::StillRefused(format!("the stored event is unreadable: {e}")),
    };
    match &outcome {
        Retried::Stored => {
            dead_letter::Entity::delete_by_id(d.id)
                .exec(&core.db)
                .await?;
        }
        Retried::StillRefused(r) => {
            dead_letter::Entity::update_many()
                .col_expr(dead_letter::Column::Reason, Expr::value(r.clone()))
                .col_expr(
                    dead_letter::Column::Attempts,
                    Expr::col(dead_letter::Column::Attempts).add(1),
                )
                .col_expr(dead_letter::Column::UpdatedAt, Expr::value(now))
                .filter(dead_letter::Column::Id.eq(d.id))
                .exec(&core.db)
                .await?;
        }
    }
    let stored = outcome == Retried::Stored;
    audit::record(
        &core.db,
        actor,
        now,
        "dead_letter.retry",
        &d.id.to_string(),
        serde_json::json!({"source_id": d.source_id, "stored": stored}),
    )
    .await?;
    Ok(outcome)
}

/// Deletes a parked event for good.
pub async fn delete(core: &Core, actor: &Actor, id: Uuid) -> Result<()> {
    let d = get(core, actor, id).await?;
    dead_letter::Entity::delete_by_id(d.id)
        .exec(&core.db)
        .await?;
    audit::record(
        &core.db,
        actor,
        core.now(),
        "dead_letter.delete",
        &d.id.to_string(),
        serde_json::json!({"source_id": d.source_id, "reason": d.reason}),
    )
    .await?;
    Ok(())
}
