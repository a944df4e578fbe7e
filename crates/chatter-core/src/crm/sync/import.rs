//! Sending what is already there (issue 15, item 11). A company's conversations reach amoCRM
//! from the moment it is connected; the customers who wrote before that would get a deal only
//! with their next message, and the amoCRM chat would start there. On request the open
//! conversations whose last message is at most N days old (default 14) and which amoCRM has
//! not seen are sent with their whole history: their messages (the customers', and the
//! managers' that reached the customer) go into the outbox in the order they were written, as
//! if they had just arrived, so the drain makes the deals in `leads/complex` batches and fills
//! the chats under the same rate limit, retries and holds as everything else. The import is a
//! row; its progress is how many of its outbox rows are still there.

use super::outbox::{queue_drain, queues_work, K_MESSAGE, PENDING};
use crate::{audit, Actor, Core, CoreError, Result};
use chatter_domain::Permission;
use chatter_store::entity::{crm_import, crm_integration};
use chatter_store::stmt;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait, Value,
};
use serde::Serialize;
use uuid::Uuid;

/// The period offered when amoCRM is connected.
pub const DEFAULT_DAYS: i64 = 14;
/// The longest period one import may cover.
pub const MAX_DAYS: i64 = 90;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// What an import would send now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportPreview {
    pub days: i64,
    pub conversations: i64,
    pub messages: i64,
}

/// An import and how far it has got.
#[derive(Clone, Debug, Serialize)]
pub struct ImportProgress {
    pub id: Uuid,
    pub days: i64,
    pub conversations: i64,
    pub messages: i64,
    /// Messages amoCRM has accepted.
    pub sent: i64,
    /// Messages still waiting in the outbox (sent in order, under the rate limit).
    pub pending: i64,
    /// Messages amoCRM refused for good (listed with its words on the diagnostics page).
    pub failed: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

impl ImportProgress {
    pub fn done(&self) -> bool {
        self.pending == 0
    }

    /// Sent share in whole percent (100 when there was nothing to send).
    pub fn percent(&self) -> i64 {
        if self.messages == 0 {
            100
        } else {
            (self.messages - self.pending) * 100 / self.messages
        }
    }
}

fn check_days(days: i64) -> Result<()> {
    if (1..=MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(CoreError::field("days", "crm.import.days_range"))
    }
}

/// The conversations an import of `days` takes: open, written in the period, and never handed
/// to the CRM (no deal and nothing in the outbox). `$1` company, `$2` since (ms).
const CANDIDATES: &str = "c.company_id = $1 AND c.status = 'open' AND c.last_message_at >= $2 \
     AND NOT EXISTS (SELECT 1 FROM crm_conversations x WHERE x.conversation_id = c.id) \
     AND NOT EXISTS (SELECT 1 FROM crm_outbox o WHERE o.conversation_id = c.id)";
/// The messages of a candidate that belong in amoCRM: every customer message, and the team's
/// that reached the customer (not those still sending or failed).
const MESSAGES: &str = "(m.direction = 'in' OR m.status IN ('sent', 'delivered', 'read'))";

async fn count(conn: &impl ConnectionTrait, company_id: Uuid, since: i64) -> Result<(i64, i64)> {
    let backend = conn.get_database_backend();
    let n = |r: Option<sea_orm::QueryResult>| {
        r.and_then(|r| r.try_get::<i64>("", "n").ok()).unwrap_or(0)
    };
    let conversations = n(conn
        .query_one(stmt(
            backend,
            &format!("SELECT count(*) AS n FROM conversations c WHERE {CANDIDATES}"),
            vec![company_id.into(), since.into()],
        ))
        .await?);
    let messages = n(conn
        .query_one(stmt(
            backend,
            &format!(
                "SELECT count(*) AS n FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                 WHERE {CANDIDATES} AND {MESSAGES}"
            ),
            vec![company_id.into(), since.into()],
        ))
        .await?);
    Ok((conversations, messages))
}

async fn connected(conn: &impl ConnectionTrait, company_id: Uuid) -> Result<bool> {
    Ok(crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(company_id))
        .one(conn)
        .await?
        .is_some_and(|i| queues_work(&i.status)))
}

/// What an import of the last `days` days would send now. `None` when amoCRM is not connected.
pub async fn preview(core: &Core, actor: &Actor, days: i64) -> Result<Option<ImportPreview>> {
    actor.require(Permission::Read)?;
    check_days(days)?;
    let company = actor.company_id.uuid();
    if !connected(&core.read, company).await? {
        return Ok(None);
    }
    let (conversations, messages) = count(&core.read, company, core.now() - days * DAY_MS).await?;
    Ok(Some(ImportPreview {
        days,
        conversations,
        messages,
    }))
}

/// Sends the open conversations of the last `days` days that amoCRM has not seen, with their
/// history. Refused (nothing changed) when amoCRM is not connected, the period is out of range
/// or there is nothing to send; two requests at once send each conversation once.
pub async fn start(core: &Core, actor: &Actor, days: i64) -> Result<ImportProgress> {
    actor.require(Permission::Manage)?;
    check_days(days)?;
    let company = actor.company_id.uuid();
    let now = core.now();
    let since = now - days * DAY_MS;
    let txn = core.db.begin().await?;
    let backend = txn.get_database_backend();
    // The integration's row serialises imports of one company (PostgreSQL: a row lock; the
    // next statement of a waiting import sees the outbox rows of the one before it).
    let touched = txn
        .execute(stmt(
            backend,
            "UPDATE crm_integrations SET status = status WHERE company_id = $1",
            vec![company.into()],
        ))
        .await?;
    if touched.rows_affected() == 0 || !connected(&txn, company).await? {
        return Err(CoreError::NotFound);
    }
    let (conversations, messages) = count(&txn, company, since).await?;
    if conversations == 0 {
        return Err(CoreError::field("days", "crm.import.nothing"));
    }
    let id = Uuid::now_v7();
    crm_import::Entity::insert(crm_import::ActiveModel {
        id: Set(id),
        company_id: Set(company),
        days: Set(days),
        conversations: Set(conversations),
        messages: Set(messages),
        created_by: Set(actor.user_id.map(|u| u.uuid())),
        created_at: Set(now),
        finished_at: Set(None),
    })
    .exec(&txn)
    .await?;
    // In the order they were written, across conversations, so the first batches already
    // hold many conversations (deals go out 50 per request) and each conversation's own
    // messages keep their order.
    let values: Vec<Value> = vec![company.into(), since.into(), now.into(), id.into()];
    txn.execute(stmt(
        backend,
        &format!(
            "INSERT INTO crm_outbox (company_id, conversation_id, message_id, kind, payload, status, attempts, next_at, created_at, import_id) \
             SELECT m.company_id, m.conversation_id, m.id, '{K_MESSAGE}', '{{}}', '{PENDING}', 0, $3, $3, $4 \
             FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE {CANDIDATES} AND {MESSAGES} ORDER BY m.created_at, m.id"
        ),
        values,
    ))
    .await?;
    audit::record(
        &txn,
        actor,
        now,
        "crm.import",
        &id.to_string(),
        serde_json::json!({ "days": days, "conversations": conversations, "messages": messages }),
    )
    .await?;
    queue_drain(&txn, company, now, now).await?;
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    progress_of(core, company, id)
        .await?
        .ok_or_else(|| CoreError::Internal("the import just stored is gone".into()))
}

/// The company's latest import and its progress; `None` before the first.
pub async fn latest(core: &Core, actor: &Actor) -> Result<Option<ImportProgress>> {
    actor.require(Permission::Read)?;
    let company = actor.company_id.uuid();
    let last = crm_import::Entity::find()
        .filter(crm_import::Column::CompanyId.eq(company))
        .order_by_desc(crm_import::Column::CreatedAt)
        .one(&core.read)
        .await?;
    match last {
        Some(i) => progress_of(core, company, i.id).await,
        None => Ok(None),
    }
}

async fn progress_of(core: &Core, company: Uuid, id: Uuid) -> Result<Option<ImportProgress>> {
    let Some(i) = crm_import::Entity::find_by_id(id)
        .filter(crm_import::Column::CompanyId.eq(company))
        .one(&core.db)
        .await?
    else {
        return Ok(None);
    };
    let row = core
        .db
        .query_one(stmt(
            core.db.get_database_backend(),
            "SELECT coalesce(sum(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS p, \
             coalesce(sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS f \
             FROM crm_outbox WHERE import_id = $1",
            vec![id.into()],
        ))
        .await?;
    let get = |c: &str| {
        row.as_ref()
            .and_then(|r| r.try_get::<i64>("", c).ok())
            .unwrap_or(0)
    };
    let (pending, failed) = (get("p"), get("f"));
    let mut finished_at = i.finished_at;
    if pending == 0 && finished_at.is_none() {
        let now = core.now();
        core.db
            .execute(stmt(
                core.db.get_database_backend(),
                "UPDATE crm_imports SET finished_at = $1 WHERE id = $2 AND finished_at IS NULL",
                vec![now.into(), id.into()],
            ))
            .await?;
        finished_at = Some(now);
    }
    Ok(Some(ImportProgress {
        id,
        days: i.days,
        conversations: i.conversations,
        messages: i.messages,
        sent: (i.messages - pending - failed).max(0),
        pending,
        failed,
        created_at: i.created_at,
        finished_at,
    }))
}
