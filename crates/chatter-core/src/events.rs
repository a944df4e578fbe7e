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

/// A live stream's position in the event log: the last event it has read. On PostgreSQL event
/// ids are taken before commit, so with several writers a smaller id can commit after a larger
/// one; there the log is read in the order of the writing transaction (`events.tx`, then `id`),
/// and only up to the oldest transaction still running, so nothing can later appear behind a
/// position. SQLite has one writer: ids are in commit order and `tx` is always 0.
///
/// Written as `<tx>_<id>` on PostgreSQL and as the plain id on SQLite (the SSE `id:`, given back
/// as `Last-Event-ID` or `?after=`). A plain id from an older version is resolved to the
/// position of that event (`resolve`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub tx: i64,
    pub id: i64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tx == 0 {
            write!(f, "{}", self.id)
        } else {
            write!(f, "{}_{}", self.tx, self.id)
        }
    }
}

/// A position as a browser gives it back: a full one, or a plain event id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Given {
    At(Position),
    PlainId(i64),
}

impl Given {
    /// `None` when it is neither (the stream then starts at the newest position).
    pub fn parse(s: &str) -> Option<Given> {
        let s = s.trim();
        match s.split_once('_') {
            Some((tx, id)) => Some(Given::At(Position {
                tx: tx.parse().ok().filter(|t: &i64| *t >= 0)?,
                id: id.parse().ok()?,
            })),
            None => s.parse().ok().map(Given::PlainId),
        }
    }
}

/// The position a given one stands for. A plain id on PostgreSQL: right after that event in
/// `(tx, id)` order (the event with the largest id not above it, when it is gone); a full
/// position on SQLite: its id.
pub async fn resolve(
    conn: &impl ConnectionTrait,
    company_id: Uuid,
    given: Given,
) -> Result<Position> {
    let backend = conn.get_database_backend();
    match (given, backend) {
        (Given::At(p), DbBackend::Postgres) => Ok(p),
        (Given::At(p), _) => Ok(Position { tx: 0, id: p.id }),
        (Given::PlainId(id), DbBackend::Postgres) => {
            let row = conn
                .query_one(chatter_store::stmt(
                    backend,
                    "SELECT tx::text AS tx FROM events WHERE company_id = $1 AND id <= $2 \
                     ORDER BY id DESC LIMIT 1",
                    vec![company_id.into(), id.into()],
                ))
                .await?;
            Ok(match row {
                Some(r) => Position { tx: tx_of(&r)?, id },
                None => Position::default(),
            })
        }
        (Given::PlainId(id), _) => Ok(Position { tx: 0, id }),
    }
}

fn tx_of(r: &sea_orm::QueryResult) -> Result<i64> {
    let t: String = r.try_get("", "tx")?;
    t.parse()
        .map_err(|_| crate::CoreError::Internal(format!("events.tx {t:?} is not a number")))
}

/// Events of a company after a position, in commit order (see `Position`).
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<(Position, event::Model)>,
    /// The page was full: read again at once.
    pub full: bool,
    /// Committed events exist after the last one returned that are not final yet (an older
    /// transaction is still running): look again shortly even without a notification.
    pub held_back: bool,
}

/// Events of a company after `after`, oldest first (catch-up and the live stream).
pub async fn since(
    conn: &impl ConnectionTrait,
    company_id: chatter_domain::CompanyId,
    after: Position,
    limit: u64,
) -> Result<Batch> {
    use sea_orm::FromQueryResult;
    let backend = conn.get_database_backend();
    if backend != DbBackend::Postgres {
        let events: Vec<(Position, event::Model)> = event::Entity::find()
            .filter(event::Column::CompanyId.eq(company_id))
            .filter(event::Column::Id.gt(after.id))
            .order_by_asc(event::Column::Id)
            .limit(limit)
            .all(conn)
            .await?
            .into_iter()
            .map(|e| (Position { tx: 0, id: e.id }, e))
            .collect();
        let full = events.len() as u64 >= limit;
        return Ok(Batch {
            events,
            full,
            held_back: false,
        });
    }
    // One statement, so the horizon (`xmin`) is that of the very snapshot the rows are read
    // in: every transaction below it has ended, so no event can appear below it later. One row
    // more than the page is read, so a page that ends at the horizon is not taken for full.
    let rows = conn
        .query_all(chatter_store::stmt(
            backend,
            "SELECT e.id, e.company_id, e.kind, e.payload, e.created_at, e.tx::text AS tx, \
             (e.tx < pg_snapshot_xmin(pg_current_snapshot())) AS final \
             FROM events e WHERE e.company_id = $1 AND (e.tx, e.id) > ($2::text::xid8, $3) \
             ORDER BY e.tx, e.id LIMIT $4",
            vec![
                company_id.0.into(),
                after.tx.to_string().into(),
                after.id.into(),
                ((limit + 1) as i64).into(),
            ],
        ))
        .await?;
    let mut batch = Batch::default();
    for r in rows {
        let is_final: bool = r.try_get("", "final")?;
        if !is_final {
            batch.held_back = true;
            break;
        }
        if batch.events.len() as u64 == limit {
            batch.full = true;
            break;
        }
        let pos = Position {
            tx: tx_of(&r)?,
            id: r.try_get("", "id")?,
        };
        batch
            .events
            .push((pos, event::Model::from_query_result(&r, "")?));
    }
    Ok(batch)
}

/// Where a live stream opened now starts, so that it gets every event committed after this
/// call (and, on PostgreSQL, possibly a few committed just before it: a page made after this
/// call already shows them, and the browser replaces what it already has). SQLite: the newest
/// id. PostgreSQL: before the oldest transaction still running.
pub async fn newest(conn: &impl ConnectionTrait, company_id: Uuid) -> Result<Position> {
    let backend = conn.get_database_backend();
    if backend == DbBackend::Postgres {
        let r = conn
            .query_one(chatter_store::stmt(
                backend,
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS tx",
                vec![],
            ))
            .await?
            .ok_or(crate::CoreError::Internal("no snapshot".into()))?;
        return Ok(Position {
            tx: tx_of(&r)?,
            id: 0,
        });
    }
    let id = event::Entity::find()
        .filter(event::Column::CompanyId.eq(company_id))
        .order_by_desc(event::Column::Id)
        .select_only()
        .column(event::Column::Id)
        .into_tuple::<i64>()
        .one(conn)
        .await?
        .unwrap_or(0);
    Ok(Position { tx: 0, id })
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

/// One company's live stream: reads the log after its position whenever a committed event may
/// be new to it (a notification for its company, a held-back event to look at again, a page
/// that was full). The SSE endpoint and the tests use it alike.
pub struct Reader {
    company_id: CompanyId,
    position: Position,
    rx: broadcast::Receiver<Published>,
    full: bool,
    held_back: bool,
    idle: std::time::Duration,
    /// When the next read happens without a notification (set by each read, so a caller that
    /// cancels `changed` every few seconds still gets it).
    idle_at: tokio::time::Instant,
}

impl Reader {
    /// How often an idle stream reads anyway. A notification can be lost (a node killed
    /// between its commit and its NOTIFY, a listener reconnecting): the event is in the log,
    /// and this read finds it.
    pub const IDLE_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

    /// How often a stream looks again while an event is held back behind a running transaction.
    pub const RECHECK_MS: u64 = 50;
    /// Events per read.
    pub const PAGE: u64 = 1000;

    /// Subscribes first, so nothing committed after this falls between reading and listening.
    pub fn new(hub: &EventHub, company_id: CompanyId, position: Position) -> Self {
        Self {
            company_id,
            position,
            rx: hub.subscribe(),
            full: true,
            held_back: false,
            idle: Self::IDLE_RECHECK,
            idle_at: tokio::time::Instant::now() + Self::IDLE_RECHECK,
        }
    }

    /// Reads after `idle` without a notification (default `IDLE_RECHECK`).
    pub fn idle_recheck(mut self, idle: std::time::Duration) -> Self {
        self.idle = idle;
        self.idle_at = tokio::time::Instant::now() + idle;
        self
    }

    pub fn position(&self) -> Position {
        self.position
    }

    /// Waits until a read may find something new. Cancel-safe (for `select!`). `Err` when the
    /// hub is gone.
    pub async fn changed(&mut self) -> std::result::Result<(), broadcast::error::RecvError> {
        if self.full {
            return Ok(());
        }
        loop {
            let r = if self.held_back {
                tokio::select! {
                    r = self.rx.recv() => r,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(Self::RECHECK_MS)) => return Ok(()),
                }
            } else {
                tokio::select! {
                    r = self.rx.recv() => r,
                    _ = tokio::time::sleep_until(self.idle_at) => return Ok(()),
                }
            };
            match r {
                Ok(p) if p.company_id == self.company_id.0 => break,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(e) => return Err(e),
            }
        }
        // Several notifications fold into one read.
        while self.rx.try_recv().is_ok() {}
        Ok(())
    }

    /// The events after the position, in commit order; moves the position past them.
    pub async fn read(
        &mut self,
        conn: &impl ConnectionTrait,
    ) -> Result<Vec<(Position, event::Model)>> {
        let b = since(conn, self.company_id, self.position, Self::PAGE).await?;
        self.idle_at = tokio::time::Instant::now() + self.idle;
        self.full = b.full;
        self.held_back = b.held_back;
        if let Some((p, _)) = b.events.last() {
            self.position = *p;
        }
        Ok(b.events)
    }
}

#[cfg(test)]
mod tests {
    use super::{Given, Position};

    #[test]
    fn positions_round_trip_and_plain_ids_still_parse() {
        let p = Position {
            tx: 7_000_123,
            id: 42,
        };
        assert_eq!(p.to_string(), "7000123_42");
        assert_eq!(Given::parse(&p.to_string()), Some(Given::At(p)));
        assert_eq!(Position { tx: 0, id: 42 }.to_string(), "42");
        assert_eq!(Given::parse("42"), Some(Given::PlainId(42)));
        assert_eq!(Given::parse("x"), None);
        assert_eq!(Given::parse("-1_2"), None);
        assert!(
            Position { tx: 1, id: 900 } < Position { tx: 2, id: 3 },
            "transaction first"
        );
    }
}
