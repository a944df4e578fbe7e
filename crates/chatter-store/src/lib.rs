//! Storage: SeaORM entities and migrations for SQLite and PostgreSQL, the durable job outbox,
//! and leases for single-owner work. Store functions take `&impl ConnectionTrait`, so the
//! caller (core) decides the transaction.

pub mod entity;
pub mod jobs;
pub mod leases;
pub mod migration;
mod sql;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};
use sea_orm_migration::MigratorTrait;
use std::path::Path;
use std::time::Duration;

pub use sea_orm;
pub use sql::stmt;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(&'static str),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The SQLite URL for the default file under a data directory.
pub fn sqlite_url_in(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("chatter.db").display()
    )
}

/// Opens the database at `url` (`sqlite://…` or `postgres://…`).
///
/// SQLite gets WAL, a busy timeout and foreign keys, and one pooled connection: SQLite has a
/// single writer anyway, and one connection means no `SQLITE_BUSY` on lock upgrades.
pub async fn connect(url: &str) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_string());
    opts.sqlx_logging(false);
    if url.starts_with("sqlite:") {
        opts.max_connections(1)
            .min_connections(1)
            .idle_timeout(Duration::from_secs(365 * 24 * 3600))
            .max_lifetime(Duration::from_secs(365 * 24 * 3600));
    } else {
        opts.max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10));
    }
    let db = Database::connect(opts).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        for pragma in [
            "PRAGMA journal_mode = WAL",
            "PRAGMA busy_timeout = 5000",
            "PRAGMA foreign_keys = ON",
            "PRAGMA synchronous = FULL",
        ] {
            db.execute_unprepared(pragma).await?;
        }
    }
    Ok(db)
}

/// Brings the schema up to date.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    migration::Migrator::up(db, None).await?;
    Ok(())
}

/// Whether the database answers a trivial query (for `/readyz`).
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.execute_unprepared("SELECT 1").await.is_ok()
}

/// Maps a unique-constraint violation to `Conflict(what)`, anything else to `Db`.
pub fn on_unique(err: DbErr, what: &'static str) -> StoreError {
    let msg = err.to_string().to_lowercase();
    if msg.contains("unique") || msg.contains("duplicate key") {
        StoreError::Conflict(what)
    } else {
        StoreError::Db(err)
    }
}
