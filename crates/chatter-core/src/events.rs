//! Live events. A change writes an `events` row in its own transaction; after the commit the
//! event id reaches every node's subscribers: in-process on SQLite, and through PostgreSQL's
//! `LISTEN/NOTIFY` across nodes: sent inside the transaction by [`emit`] (so delivered exactly
//! at commit), and right after the commit for the ingester's batches ([`emit_many`], see there).
//! Browsers that reconnect catch up from the table with `Last-Event-ID`.

use crate::Result;
use chatter_domain::CompanyId;
use chatter_store::entity::event;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use tokio::sync::broadcast;
use uuid::Uuid;

pub const CHANNEL: &str = "chatter_events";

/// A committed event: which company, and its id in the `events` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    pub company_id: Uuid,
    pub id: i64,
}

/// Fans committed events out to this node's subscribers.
pub struct EventHub {
    tx: broadcast::Sender<Published>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(4096).0,
        }
    }
}

impl EventHub {
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }

    pub fn publish(&self, p: Published) {
        let _ = self.tx.send(p);
    }
}

/// Events written in a transaction, to publish after it commits (SQLite) — on PostgreSQL the
/// NOTIFY already rides on the commit.
#[derive(Default, Debug)]
pub struct Pending(pub Vec<Published>);

impl Pending {
    pub fn flush(self, hub: &EventHub, backend: DbBackend) {
        if backend != DbBackend::Postgres {
            for p in self.0 {
                hub.publish(p);
            }
        }
    }
}

/// Records an event inside the caller's transaction.
pub async fn emit(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    company_id: CompanyId,
    kind: &str,
    payload: serde_json::Value,
    now: i64,
) -> Result<i64> {
    let r = event::Entity::insert(event::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        company_id: Set(company_id.0),
        kind: Set(kind.to_string()),
        payload: Set(payload.to_string()),
        created_at: Set(now),
    })
    .exec(conn)
    .await?;
    let id = r.last_insert_id;
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute(chatter_store::stmt(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            vec![CHANNEL.into(), format!("{company_id}:{id}").into()],
        ))
        .await?;
    }
    pending.0.push(Published {
        company_id: company_id.0,
        id,
    });
    Ok(id)
}

/// Records several events of one company in one statement. Unlike [`emit`], it sends no
/// NOTIFY inside the transaction: the caller commits, then calls
/// `Core::published_after_commit`, which wakes every node's subscribers once per company.
///
/// Why: PostgreSQL serialises the commits of all transactions that NOTIFY (a database-wide
/// lock held from just before commit until after its flush), so a NOTIFY in each ingest batch
/// would let only one writer's commit reach the disk at a time. Sent after the commit, the
/// notification needs no flush of its own and holds that lock only for an instant.
pub async fn emit_many(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    company_id: CompanyId,
    kind: &str,
    payloads: Vec<serde_json::Value>,
    now: i64,
) -> Result<()> {
    use sea_orm::QueryTrait;
    let mut last = None;
    for chunk in payloads.chunks(200) {
        let rows = chunk.iter().map(|p| event::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            company_id: Set(company_id.0),
            kind: Set(kind.to_string()),
            payload: Set(p.to_string()),
            created_at: Set(now),
        });
        let mut st = event::Entity::insert_many(rows).build(conn.get_database_backend());
        st.sql.push_str(" RETURNING id");
        for r in conn.query_all(st).await? {
            let id: i64 = r.try_get("", "id")?;
            last = Some(last.map_or(id, |l: i64| l.max(id)));
        }
    }
    let Some(id) = last else {
        return Ok(());
    };
    pending.0.push(Published {
        company_id: company_id.0,
        id,
    });
    Ok(())
}

/// After the commit of a transaction whose events are `pending`: on PostgreSQL one NOTIFY per
/// company (its newest event id) on `db`, outside any transaction; on SQLite nothing (the
/// caller publishes in process). A lost notification delays a stream, it loses nothing: the
/// next event of the company wakes it and it reads everything after its position.
pub async fn notify_committed(db: &impl ConnectionTrait, pending: &Pending) {
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    let mut newest: std::collections::HashMap<Uuid, i64> = std::collections::HashMap::new();
    for p in &pending.0 {
        let e = newest.entry(p.company_id).or_insert(p.id);
        *e = (*e).max(p.id);
    }
    for (company, id) in newest {
        let sent = db
            .execute(chatter_store::stmt(
                DbBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                vec![CHANNEL.into(), format!("{company}:{id}").into()],
            ))
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, %company, "could not notify other nodes of new events");
        }
    }
}

/// Events of a company after `after_id`, oldest first (catch-up).
pub async fn since(
    conn: &impl ConnectionTrait,
    company_id: chatter_domain::CompanyId,
    after_id: i64,
    limit: u64,
) -> Result<Vec<event::Model>> {
    Ok(event::Entity::find()
        .filter(event::Column::CompanyId.eq(company_id))
        .filter(event::Column::Id.gt(after_id))
        .order_by_asc(event::Column::Id)
        .limit(limit)
        .all(conn)
        .await?)
}

/// The company's newest event id (0: none yet): a live stream opened later starts after it.
pub async fn newest(conn: &impl ConnectionTrait, company_id: Uuid) -> Result<i64> {
    Ok(event::Entity::find()
        .filter(event::Column::CompanyId.eq(company_id))
        .order_by_desc(event::Column::Id)
        .select_only()
        .column(event::Column::Id)
        .into_tuple::<i64>()
        .one(conn)
        .await?
        .unwrap_or(0))
}

pub async fn get(conn: &impl ConnectionTrait, id: i64) -> Result<Option<event::Model>> {
    Ok(event::Entity::find_by_id(id).one(conn).await?)
}

/// On PostgreSQL: forwards NOTIFYs from every node to this node's hub until `stop`.
pub async fn listen_postgres(
    db: sea_orm::DatabaseConnection,
    hub: std::sync::Arc<EventHub>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    let pool = db.get_postgres_connection_pool().clone();
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for events; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        loop {
            tokio::select! {
                n = listener.recv() => match n {
                    Ok(n) => {
                        let mut it = n.payload().splitn(2, ':');
                        if let (Some(c), Some(i)) = (it.next(), it.next()) {
                            if let (Ok(company_id), Ok(id)) = (c.parse(), i.parse()) {
                                hub.publish(Published { company_id, id });
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener lost its connection; reconnecting");
                        break;
                    }
                },
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}

/// A live stream's position in the event log. Event ids are handed out before commit, so on
/// PostgreSQL (several writers) a smaller id can become visible after a larger one. The
/// cursor remembers what it sent above its low-water mark and waits a little for the gaps to
/// fill before moving past them (a gap that stays is a rolled-back transaction).
#[derive(Debug, Default)]
pub struct Cursor {
    low: i64,
    sent: std::collections::BTreeSet<i64>,
    gaps: std::collections::BTreeMap<i64, i64>,
}

impl Cursor {
    /// How long a missing id is waited for.
    pub const GAP_WAIT_MS: i64 = 2_000;

    pub fn new(start: i64) -> Self {
        Self {
            low: start,
            ..Self::default()
        }
    }

    /// Read the log after this id.
    pub fn after(&self) -> i64 {
        self.low
    }

    /// Whether `id` is new to this stream (and now counts as sent).
    pub fn fresh(&mut self, id: i64) -> bool {
        if id <= self.low || !self.sent.insert(id) {
            return false;
        }
        self.gaps.remove(&id);
        true
    }

    /// Moves the low-water mark over what was sent and over gaps older than the wait.
    pub fn settle(&mut self, now_ms: i64) {
        let Some(&max) = self.sent.iter().next_back() else {
            return;
        };
        if max - self.low > 50_000 {
            // Far too many holes to track: start afresh from the newest.
            self.low = max;
            self.sent.clear();
            self.gaps.clear();
            return;
        }
        for id in self.low + 1..max {
            if !self.sent.contains(&id) {
                self.gaps.entry(id).or_insert(now_ms);
            }
        }
        loop {
            let next = self.low + 1;
            if self.sent.remove(&next) {
                self.low = next;
            } else if self
                .gaps
                .get(&next)
                .is_some_and(|t| now_ms - t >= Self::GAP_WAIT_MS)
            {
                self.gaps.remove(&next);
                self.low = next;
            } else {
                break;
            }
        }
    }

    /// Whether some ids below what was sent are still missing.
    pub fn waiting(&self) -> bool {
        !self.gaps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn a_late_commit_with_a_smaller_id_is_still_delivered_once() {
        let mut c = Cursor::new(10);
        assert!(c.fresh(11));
        assert!(c.fresh(13));
        c.settle(0);
        assert_eq!(c.after(), 11, "waits below the hole at 12");
        assert!(c.waiting());
        assert!(!c.fresh(13), "not sent twice");
        assert!(c.fresh(12), "the late one is delivered");
        c.settle(10);
        assert_eq!(c.after(), 13);
        assert!(!c.waiting());
    }

    #[test]
    fn a_hole_that_never_fills_is_passed_after_the_wait() {
        let mut c = Cursor::new(0);
        assert!(c.fresh(2));
        c.settle(1_000);
        assert_eq!(c.after(), 0);
        c.settle(1_000 + Cursor::GAP_WAIT_MS);
        assert_eq!(c.after(), 2);
        assert!(!c.fresh(1), "too late: below the mark");
    }
}
