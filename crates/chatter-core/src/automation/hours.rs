//! Working hours of a company and of its sources (requirement R5.2): stored as one JSON document
//! per scope (`default`, or a source id for a source's own hours), replaced as a whole, checked
//! before storing, read loudly (a damaged document is logged and counted, and treated as unset).

use crate::{audit, Actor, Core, CoreError, Result};
use chatter_domain::hours::{Hours, Now};
use chatter_domain::{CompanyId, Permission, SourceId};
use chatter_store::entity::working_hours;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, TransactionTrait};

const DEFAULT_SCOPE: &str = "default";

/// The hours that apply to a scope, as the page and the API show them.
#[derive(Clone, Debug)]
pub struct HoursView {
    /// The source asked about (`None`: the company).
    pub source: Option<SourceId>,
    /// What applies: the source's own hours, else the company's; `None` when none are set.
    pub hours: Option<Hours>,
    /// The source has hours of its own (always `false` for the company).
    pub own: bool,
    /// Open or closed at the time asked about, and until when.
    pub now: Option<Now>,
}

fn scope_of(source: Option<SourceId>) -> String {
    source.map_or_else(|| DEFAULT_SCOPE.to_owned(), |s| s.to_string())
}

async fn load(
    conn: &impl ConnectionTrait,
    company: CompanyId,
    scope: &str,
) -> Result<Option<Hours>> {
    let row = working_hours::Entity::find_by_id((company, scope.to_owned()))
        .one(conn)
        .await?;
    Ok(row.and_then(|r| {
        chatter_store::stored_json::read_opt(
            "working_hours.hours",
            format_args!("{company}/{scope}"),
            Some(&r.hours),
        )
    }))
}

/// The hours that apply to conversations of `source`: its own, else the company's.
pub async fn effective(
    conn: &impl ConnectionTrait,
    company: CompanyId,
    source: SourceId,
) -> Result<Option<Hours>> {
    match load(conn, company, &source.to_string()).await? {
        Some(h) => Ok(Some(h)),
        None => load(conn, company, DEFAULT_SCOPE).await,
    }
}

/// The hours of the company (`source: None`) or of one of its sources.
pub async fn get(core: &Core, actor: &Actor, source: Option<SourceId>) -> Result<HoursView> {
    actor.require(Permission::Read)?;
    let at = chrono::DateTime::from_timestamp_millis(core.now()).unwrap_or_default();
    let (hours, own) = match source {
        None => (load(&core.db, actor.company(), DEFAULT_SCOPE).await?, false),
        Some(s) => {
            crate::connectors::model::get(core, actor, s).await?;
            match load(&core.db, actor.company(), &s.to_string()).await? {
                Some(h) => (Some(h), true),
                None => (load(&core.db, actor.company(), DEFAULT_SCOPE).await?, false),
            }
        }
    };
    Ok(HoursView {
        source,
        now: hours.as_ref().map(|h| h.at(at)),
        hours,
        own,
    })
}

/// Stores the hours of the company or of one source (checked first; nothing changes when a
/// field is refused).
pub async fn save(
    core: &Core,
    actor: &Actor,
    source: Option<SourceId>,
    hours: Hours,
) -> Result<HoursView> {
    actor.require(Permission::Manage)?;
    if let Some(s) = source {
        crate::connectors::model::get(core, actor, s).await?;
    }
    let hours = hours.checked().map_err(CoreError::Invalid)?;
    let json = serde_json::to_string(&hours).map_err(|e| CoreError::Internal(e.to_string()))?;
    let (now, scope) = (core.now(), scope_of(source));
    let txn = core.db.begin().await?;
    let row = working_hours::ActiveModel {
        company_id: Set(actor.company()),
        scope: Set(scope.clone()),
        hours: Set(json),
        updated_at: Set(now),
    };
    working_hours::Entity::insert(row)
        .on_conflict(
            sea_orm::sea_query::OnConflict::columns([
                working_hours::Column::CompanyId,
                working_hours::Column::Scope,
            ])
            .update_columns([
                working_hours::Column::Hours,
                working_hours::Column::UpdatedAt,
            ])
            .to_owned(),
        )
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        actor,
        now,
        "hours.save",
        &scope,
        serde_json::to_value(&hours).unwrap_or_default(),
    )
    .await?;
    txn.commit().await?;
    get(core, actor, source).await
}

/// Removes a source's own hours: the company's apply to it again.
pub async fn reset(core: &Core, actor: &Actor, source: SourceId) -> Result<HoursView> {
    actor.require(Permission::Manage)?;
    crate::connectors::model::get(core, actor, source).await?;
    let (now, scope) = (core.now(), source.to_string());
    let txn = core.db.begin().await?;
    let gone = working_hours::Entity::delete_by_id((actor.company(), scope.clone()))
        .exec(&txn)
        .await?;
    if gone.rows_affected > 0 {
        audit::record(
            &txn,
            actor,
            now,
            "hours.reset",
            &scope,
            serde_json::Value::Null,
        )
        .await?;
    }
    txn.commit().await?;
    get(core, actor, Some(source)).await
}
