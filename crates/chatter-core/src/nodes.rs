//! The nodes sharing one database: each running process keeps a row with its version and a
//! heartbeat, so operators see who is alive and which version each runs; and the master-key
//! check that stops a node whose key differs from the others' before it writes secrets no
//! other node can read.

use crate::{Core, CoreError, Result};
use chatter_store::entity::{instance_fact, node};
use chatter_store::stmt;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
};
use std::time::Duration;
use tokio::sync::watch;

/// How often a node renews its row.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A node whose last heartbeat is older than this is shown as gone.
pub const ALIVE_MS: i64 = 30_000;

const KEY_CHECK: &str = "master_key_check";
const KEY_CHECK_TEXT: &str = "chatter master key check";

/// One node as the operator sees it.
#[derive(Clone, Debug, FromQueryResult, serde::Serialize)]
pub struct Node {
    pub name: String,
    pub version: String,
    pub role: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

impl Node {
    /// The translation key of the node's role.
    pub fn role_key(&self) -> &'static str {
        match self.role.as_str() {
            "web" => "nodes.role_web",
            "worker" => "nodes.role_worker",
            _ => "nodes.role_both",
        }
    }
}

/// Refuses a master key that differs from the one this database was first used with. The
/// first node to start writes a value encrypted with its key; every later node must be able to
/// decrypt it.
pub async fn check_master_key(core: &Core) -> std::result::Result<(), String> {
    check_key(core).await.map_err(|e| e.to_string())?
}

async fn check_key(core: &Core) -> Result<std::result::Result<(), String>> {
    let db = &core.db;
    db.execute(stmt(
        db.get_database_backend(),
        "INSERT INTO instance_facts (name, value, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
        vec![
            KEY_CHECK.into(),
            core.secrets.encrypt(KEY_CHECK_TEXT).into(),
            core.now().into(),
        ],
    ))
    .await?;
    let stored = instance_fact::Entity::find_by_id(KEY_CHECK)
        .one(db)
        .await?
        .ok_or_else(|| CoreError::Internal("the master key check value vanished".into()))?
        .value;
    Ok(match core.secrets.decrypt(&stored) {
        Ok(plain) if plain.expose() == KEY_CHECK_TEXT => Ok(()),
        _ => Err(
            "this node's master key differs from the one the database was first used with, so it \
             could not read the secrets other nodes wrote (nor they its own). Give every node the \
             same key: copy `master_key` (or the data directory's master.key) from a running node."
                .into(),
        ),
    })
}

/// How often a node refreshes SQLite's query statistics (`chatter_store::optimize`).
const OPTIMIZE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Keeps this node's row fresh until `stop` turns true, then removes it; hourly it refreshes
/// SQLite's query statistics.
pub async fn heartbeat(core: Core, role: &'static str, mut stop: watch::Receiver<bool>) {
    let name = crate::jobs::worker::node_name();
    let version = env!("CARGO_PKG_VERSION");
    let started = core.now();
    let mut optimized = tokio::time::Instant::now();
    loop {
        if optimized.elapsed() >= OPTIMIZE_EVERY {
            optimized = tokio::time::Instant::now();
            if let Err(e) = chatter_store::optimize(&core.db).await {
                tracing::warn!(error = %e, "cannot refresh the database's query statistics");
            }
        }
        let db = &core.db;
        let r = db
            .execute(stmt(
                db.get_database_backend(),
                "INSERT INTO nodes (name, version, role, started_at, heartbeat_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET \
                 heartbeat_at = excluded.heartbeat_at, version = excluded.version, role = excluded.role",
                vec![
                    name.into(),
                    version.into(),
                    role.into(),
                    started.into(),
                    core.now().into(),
                ],
            ))
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot record this node's heartbeat");
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let db = &core.db;
    let _ = db
        .execute(stmt(
            db.get_database_backend(),
            "DELETE FROM nodes WHERE name = $1",
            vec![name.into()],
        ))
        .await;
}

/// The nodes that renewed their row recently, newest start first.
pub async fn list_alive(core: &Core) -> Result<Vec<Node>> {
    let db = &core.db;
    Ok(node::Entity::find()
        .filter(node::Column::HeartbeatAt.gt(core.now() - ALIVE_MS))
        .order_by_desc(node::Column::StartedAt)
        .order_by_asc(node::Column::Name)
        .into_model::<Node>()
        .all(db)
        .await?)
}
