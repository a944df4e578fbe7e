//! Storage: SeaORM entities and migrations for SQLite and PostgreSQL, the durable job outbox,
//! and leases for single-owner work. Store functions take `&impl ConnectionTrait`, so the
//! caller (core) decides the transaction.

pub mod entity;
pub mod figures;
pub mod jobs;
pub mod leases;
pub mod migration;
pub mod schema;
pub mod search;
mod sql;
pub mod stored_json;
pub mod tls;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};
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
    /// The database has migrations this binary does not know (a newer version migrated it).
    #[error("{0}")]
    NewerSchema(String),
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
///
/// Neither pool has an idle timeout or a maximum lifetime. With either, sqlx 0.8 runs a sweep
/// task whose loop bound is the pool's idle count; a release racing an acquire can wrap that
/// count to `usize::MAX` (sqlx issue 3645, fixed after 0.8.6), and the sweep then spins a core
/// forever without yielding, starving every task behind it: a node seen at 100% CPU with
/// "connection pool timed out" on every query. Connections are checked before use instead
/// (`test_before_acquire`, sqlx's default), so a PostgreSQL restart is still survived.
pub async fn connect(url: &str) -> Result<DatabaseConnection> {
    use sea_orm::sqlx;
    use sea_orm::sqlx::ConnectOptions as _;
    let db = if url.starts_with("sqlite:") {
        let opts = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?
            .disable_statement_logging();
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?;
        sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
    } else {
        let opts = url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?
            .disable_statement_logging();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?;
        sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
    };
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

/// A pool of `readers` read-only connections beside the writer's single one, for pages and
/// live streams that only read (SQLite only; `None` for PostgreSQL, whose one pool serves
/// readers and writers alike, and for `readers == 0`, which turns it off).
///
/// In WAL mode readers do not wait for the writer nor it for them: each read sees the database
/// as of its start, which includes every transaction committed before it, so a page that reads
/// after its own write has committed sees it. Read-only connections cannot write by mistake.
/// Open after [`connect`] (which sets WAL on the file) and after [`migrate`].
pub async fn connect_read(url: &str, readers: u32) -> Result<Option<DatabaseConnection>> {
    use sea_orm::sqlx;
    use sea_orm::sqlx::ConnectOptions as _;
    if !url.starts_with("sqlite:") || readers == 0 {
        return Ok(None);
    }
    let opts = url
        .parse::<sqlx::sqlite::SqliteConnectOptions>()
        .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?
        .create_if_missing(false)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
        .disable_statement_logging();
    // No idle timeout nor lifetime, as in `connect` (sqlx issue 3645).
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(readers)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(opts)
        .await
        .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?;
    Ok(Some(sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(
        pool,
    )))
}

/// The key of the PostgreSQL advisory lock that serialises migrations across nodes
/// ("chatter migrate" as eight bytes).
const MIGRATION_LOCK_KEY: i64 = 0x6368_6174_6d69_6772;

/// Brings the schema up to date.
///
/// On PostgreSQL the run holds a database-wide advisory lock on one connection (a transaction
/// that only takes `pg_advisory_xact_lock`), so nodes started at the same instant migrate one
/// after another: the first applies what is pending, the others wait, then find nothing to do.
/// Without it two nodes race on `CREATE TABLE` and one fails on a duplicate catalogue row.
/// SQLite has one writer per file already.
///
/// A database migrated by a newer binary is refused before anything is applied
/// ([`StoreError::NewerSchema`]).
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    if db.get_database_backend() != DbBackend::Postgres {
        schema::refuse_newer(db).await?;
        migration::Migrator::up(db, None).await?;
        schema::record_migrated(db, now_ms()).await?;
        return optimize(db).await;
    }
    use sea_orm::TransactionTrait;
    let lock = db.begin().await?;
    let got = lock
        .query_one(stmt(
            DbBackend::Postgres,
            "SELECT pg_try_advisory_xact_lock($1) AS got",
            vec![MIGRATION_LOCK_KEY.into()],
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "got"))
        .transpose()?
        .unwrap_or(false);
    if !got {
        tracing::info!("another node is migrating the database; waiting for it to finish");
        lock.execute(stmt(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            vec![MIGRATION_LOCK_KEY.into()],
        ))
        .await?;
        tracing::info!("the other node finished migrating; checking what is left");
    }
    let outcome = match schema::refuse_newer(db).await {
        Ok(()) => migration::Migrator::up(db, None)
            .await
            .map_err(StoreError::from),
        Err(e) => Err(e),
    };
    // Committing the lock's transaction releases the lock whatever the outcome.
    lock.commit().await?;
    outcome?;
    schema::record_migrated(db, now_ms()).await
}

/// Keeps SQLite's query planner informed: `PRAGMA optimize` gathers statistics
/// (`sqlite_stat1`) for the tables that changed enough since the last time, reading at most
/// `analysis_limit` rows of each index. Without statistics the planner guesses that an
/// equality on any index finds a handful of rows, and chose to walk a company's 200,000
/// messages by `company_id` rather than look 50 ids up by key (1.5 s instead of milliseconds).
/// Run after migrating and hourly by each node (`nodes::heartbeat`); PostgreSQL's autovacuum
/// does this itself, so there it does nothing.
pub async fn optimize(db: &DatabaseConnection) -> Result<()> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return Ok(());
    }
    db.execute_unprepared("PRAGMA analysis_limit = 1000")
        .await?;
    db.execute_unprepared("PRAGMA optimize = 0x10002").await?;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
