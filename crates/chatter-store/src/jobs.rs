//! The durable job outbox. A job is enqueued inside the caller's transaction, so it exists
//! exactly when the change that caused it does. Workers claim due jobs with a lease in one
//! statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has a single writer), finish them
//! with the claim token they were given, and a job whose lease ran out (its worker died) is
//! claimed again. A finished job is never claimed again. Leases are measured on the database's
//! clock on PostgreSQL ([`crate::sql::lease_now`]); due times (`run_at`) on the caller's.

use crate::{entity::job, sql::lease_now, stmt, Result};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Value,
};
use uuid::Uuid;

pub use chatter_domain::JobState;

/// The stored text of [`JobState::Queued`], for filters and hand-written SQL.
pub const QUEUED: &str = JobState::Queued.as_str();
/// The stored text of [`JobState::Running`].
pub const RUNNING: &str = JobState::Running.as_str();
/// The stored text of [`JobState::Done`].
pub const DONE: &str = JobState::Done.as_str();
/// The stored text of [`JobState::Dead`].
pub const DEAD: &str = JobState::Dead.as_str();

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub kind: String,
    pub payload: serde_json::Value,
    pub company_id: Option<Uuid>,
    /// When it becomes due (Unix ms).
    pub run_at: i64,
    /// While a job with this key is queued or running, enqueueing another is a no-op.
    pub dedup_key: Option<String>,
    pub max_attempts: i32,
}

impl NewJob {
    pub fn new(kind: &str, payload: serde_json::Value, now: i64) -> Self {
        Self {
            kind: kind.to_string(),
            payload,
            company_id: None,
            run_at: now,
            dedup_key: None,
            max_attempts: 10,
        }
    }
    pub fn company(mut self, id: Uuid) -> Self {
        self.company_id = Some(id);
        self
    }
    pub fn run_at(mut self, at: i64) -> Self {
        self.run_at = at;
        self
    }
    pub fn dedup(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
}

/// Enqueues `job`. Returns its id, or `None` when a pending job with the same dedup key exists.
pub async fn enqueue(conn: &impl ConnectionTrait, job: NewJob, now: i64) -> Result<Option<Uuid>> {
    let id = Uuid::now_v7();
    let sql = "INSERT INTO jobs (id, company_id, kind, payload, status, attempts, max_attempts, run_at, \
               dedup_key, created_at, updated_at) VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $8, $8) \
               ON CONFLICT (dedup_key) DO NOTHING RETURNING id";
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            sql,
            vec![
                id.into(),
                job.company_id.into(),
                job.kind.into(),
                job.payload.to_string().into(),
                job.max_attempts.into(),
                job.run_at.into(),
                job.dedup_key.into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(row.map(|_| id))
}

/// A job handed to a worker. `token` proves the claim when finishing it.
#[derive(Clone, Debug, FromQueryResult)]
pub struct Claimed {
    pub id: Uuid,
    pub company_id: Option<Uuid>,
    pub kind: String,
    pub payload: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub locked_by: String,
    /// The claim token of the node that held this job before its lease expired, when this
    /// claim took over a dead (or stalled) node's work; `None` for a queued job.
    pub prev_locked_by: Option<String>,
}

impl Claimed {
    /// The node named in the previous holder's token, when this claim was a takeover.
    pub fn taken_over_from(&self) -> Option<&str> {
        self.prev_locked_by.as_deref().map(token_node)
    }
}

/// The node part of a claim token (`<node>/<random>`); older tokens are a bare UUID.
pub fn token_node(token: &str) -> &str {
    token
        .rsplit_once('/')
        .map_or("unknown node", |(node, _)| node)
}

/// Claims up to `limit` due jobs (queued and due by `now`, or running with a lease expired by
/// the lease clock) for `lease_ms`, in one statement. Each claim counts as an attempt.
pub async fn claim(
    conn: &impl ConnectionTrait,
    now: i64,
    lease_ms: i64,
    limit: u64,
) -> Result<Vec<Claimed>> {
    claim_as(conn, "node", now, lease_ms, limit).await
}

/// [`claim`] for a named node: its claim tokens start with `node/`, so a node that later takes
/// over this work can say whose it was.
pub async fn claim_as(
    conn: &impl ConnectionTrait,
    node: &str,
    now: i64,
    lease_ms: i64,
    limit: u64,
) -> Result<Vec<Claimed>> {
    let backend = conn.get_database_backend();
    let lock = if backend == DbBackend::Postgres {
        "FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let token = format!("{node}/{}", Uuid::new_v4().simple());
    let mut values: Vec<Value> = vec![
        lease_ms.into(),
        token.into(),
        now.into(),
        (limit as i64).into(),
    ];
    let clock = lease_now(backend, &mut values, now);
    let sql = format!(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_until = {clock} + $1, locked_by = $2, \
         prev_locked_by = CASE WHEN status = 'running' THEN locked_by ELSE NULL END, \
         updated_at = $3 WHERE id IN (SELECT id FROM jobs WHERE (status = 'queued' AND run_at <= $3) \
         OR (status = 'running' AND lease_until < {clock}) ORDER BY run_at, id LIMIT $4 {lock}) \
         RETURNING id, company_id, kind, payload, attempts, max_attempts, locked_by, prev_locked_by"
    );
    let rows = Claimed::find_by_statement(stmt(backend, &sql, values))
        .all(conn)
        .await?;
    Ok(rows)
}

/// Marks a claimed job done. `false` if the claim was lost (the lease expired and another
/// worker took it).
pub async fn complete(
    conn: &impl ConnectionTrait,
    id: Uuid,
    token: &str,
    now: i64,
) -> Result<bool> {
    let r = conn
        .execute(stmt(
            conn.get_database_backend(),
            "UPDATE jobs SET status = 'done', lease_until = NULL, locked_by = NULL, dedup_key = NULL, \
             last_error = NULL, finished_at = $3, updated_at = $3 WHERE id = $1 AND locked_by = $2 AND status = 'running'",
            vec![id.into(), token.into(), now.into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Puts a claimed job back in the queue until `at` without using up an attempt: the job was
/// not ready to run (it waits for another one), which is not a failure.
pub async fn postpone(
    conn: &impl ConnectionTrait,
    id: Uuid,
    token: &str,
    now: i64,
    at: i64,
) -> Result<bool> {
    let r = conn
        .execute(stmt(
            conn.get_database_backend(),
            "UPDATE jobs SET status = 'queued', run_at = $3, attempts = attempts - 1, lease_until = NULL, \
             locked_by = NULL, updated_at = $4 WHERE id = $1 AND locked_by = $2 AND status = 'running'",
            vec![id.into(), token.into(), at.into(), now.into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Records a failure: with `retry_at`, the job goes back to the queue; without, it is parked
/// as dead (shown in the UI, retryable by hand).
pub async fn fail(
    conn: &impl ConnectionTrait,
    id: Uuid,
    token: &str,
    now: i64,
    error: &str,
    retry_at: Option<i64>,
) -> Result<bool> {
    let error: String = error.chars().take(2000).collect();
    let (sql, values): (&str, Vec<Value>) = match retry_at {
        Some(at) => (
            "UPDATE jobs SET status = 'queued', run_at = $4, lease_until = NULL, locked_by = NULL, last_error = $3, \
             updated_at = $5 WHERE id = $1 AND locked_by = $2 AND status = 'running'",
            vec![id.into(), token.into(), error.into(), at.into(), now.into()],
        ),
        None => (
            "UPDATE jobs SET status = 'dead', lease_until = NULL, locked_by = NULL, dedup_key = NULL, last_error = $3, \
             finished_at = $4, updated_at = $4 WHERE id = $1 AND locked_by = $2 AND status = 'running'",
            vec![id.into(), token.into(), error.into(), now.into()],
        ),
    };
    let r = conn
        .execute(stmt(conn.get_database_backend(), sql, values))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Hands a running job back to the queue at once (a node stopping before its handler
/// finished): due now, its attempt not counted, so another node claims it on its next pass
/// instead of waiting for the lease to expire. `false` if the claim was already lost.
pub async fn release(conn: &impl ConnectionTrait, id: Uuid, token: &str, now: i64) -> Result<bool> {
    let r = conn
        .execute(stmt(
            conn.get_database_backend(),
            "UPDATE jobs SET status = 'queued', run_at = $3, updated_at = $3, lease_until = NULL, \
             locked_by = NULL, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
             WHERE id = $1 AND locked_by = $2 AND status = 'running'",
            vec![id.into(), token.into(), now.into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Renews a running job's lease for `lease_ms` from now on the lease clock (a heartbeat for
/// long handlers). `false` if the claim was lost.
pub async fn extend(
    conn: &impl ConnectionTrait,
    id: Uuid,
    token: &str,
    now: i64,
    lease_ms: i64,
) -> Result<bool> {
    let backend = conn.get_database_backend();
    let mut values: Vec<Value> = vec![id.into(), token.into(), lease_ms.into()];
    let clock = lease_now(backend, &mut values, now);
    let sql = format!(
        "UPDATE jobs SET lease_until = {clock} + $3 WHERE id = $1 AND locked_by = $2 AND status = 'running'"
    );
    let r = conn.execute(stmt(backend, &sql, values)).await?;
    Ok(r.rows_affected() == 1)
}

/// Puts a dead job back in the queue with a fresh set of attempts. Scoped by company when given.
pub async fn retry_dead(
    conn: &impl ConnectionTrait,
    id: Uuid,
    company_id: Option<Uuid>,
    now: i64,
) -> Result<bool> {
    let mut sql = "UPDATE jobs SET status = 'queued', attempts = 0, run_at = $2, finished_at = NULL, updated_at = $2 \
                   WHERE id = $1 AND status = 'dead'"
        .to_string();
    let mut values: Vec<Value> = vec![id.into(), now.into()];
    if let Some(c) = company_id {
        sql.push_str(" AND company_id = $3");
        values.push(c.into());
    }
    let r = conn
        .execute(stmt(conn.get_database_backend(), &sql, values))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Jobs in a state, newest first, optionally of one company.
pub async fn list(
    conn: &impl ConnectionTrait,
    status: &str,
    company_id: Option<Uuid>,
    limit: u64,
) -> Result<Vec<job::Model>> {
    let mut q = job::Entity::find().filter(job::Column::Status.eq(status));
    if let Some(c) = company_id {
        q = q.filter(job::Column::CompanyId.eq(c));
    }
    Ok(q.order_by_desc(job::Column::UpdatedAt)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Counts jobs in a state.
pub async fn count(conn: &impl ConnectionTrait, status: &str) -> Result<u64> {
    Ok(job::Entity::find()
        .filter(job::Column::Status.eq(status))
        .count(conn)
        .await?)
}

/// Exponential backoff with full jitter in [d/2, d]: 1 s, 2 s, 4 s … capped at 1 hour.
/// `unit` is a random number in [0, 1).
pub fn backoff_ms(attempt: i32, unit: f64) -> i64 {
    let exp = attempt.clamp(1, 30) - 1;
    let d = (1000i64 << exp.min(22)).min(3_600_000);
    let half = d / 2;
    half + (half as f64 * unit.clamp(0.0, 1.0)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(1, 1.0), 1000);
        assert_eq!(backoff_ms(1, 0.0), 500);
        assert_eq!(backoff_ms(3, 1.0), 4000);
        assert_eq!(backoff_ms(30, 1.0), 3_600_000);
    }
}
