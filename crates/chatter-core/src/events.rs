//! Live events. A change writes an `events` row in its own transaction; after the commit the
//! event id reaches every node's subscribers: in-process on SQLite, and through PostgreSQL's
//! `LISTEN/NOTIFY` (sent inside the transaction, so delivered exactly at commit) across nodes.
//! Browsers that reconnect catch up from the table with `Last-Event-ID`.

use crate::Result;
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
    company_id: Uuid,
    kind: &str,
    payload: serde_json::Value,
    now: i64,
) -> Result<i64> {
    let r = event::Entity::insert(event::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        company_id: Set(company_id),
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
    pending.0.push(Published { company_id, id });
    Ok(id)
}

/// Records several events of one company in one statement; subscribers are woken once, with
/// the last id (they read everything after their position).
pub async fn emit_many(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    company_id: Uuid,
    kind: &str,
    payloads: Vec<serde_json::Value>,
    now: i64,
) -> Result<()> {
    use sea_orm::QueryTrait;
    let mut last = None;
    for chunk in payloads.chunks(200) {
        let rows = chunk.iter().map(|p| event::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            company_id: Set(company_id),
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
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute(chatter_store::stmt(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            vec![CHANNEL.into(), format!("{company_id}:{id}").into()],
        ))
        .await?;
    }
    pending.0.push(Published { company_id, id });
    Ok(())
}

/// Events of a company after `after_id`, oldest first (catch-up).
pub async fn since(
    conn: &impl ConnectionTrait,
    company_id: Uuid,
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
