//! `TestDb`: one fresh, migrated database per test. SQLite in a temporary directory by default;
//! a new PostgreSQL database on the server named by `TEST_DATABASE_URL` when that is set.

use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

/// The environment variable that selects PostgreSQL for tests.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// `"postgres"` when `TEST_DATABASE_URL` is set (and not empty), else `"sqlite"`.
pub fn backend_name() -> &'static str {
    if postgres_admin_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

fn postgres_admin_url() -> Option<String> {
    std::env::var(TEST_DATABASE_URL)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A fresh database, migrated to the latest schema, that lives as long as this value.
pub struct TestDb {
    /// The open connection pool.
    pub db: DatabaseConnection,
    /// The URL of this database, for code under test that opens its own connection.
    pub url: String,
    dir: TempDir,
    postgres: Option<PostgresDb>,
}

/// What is needed to drop the per-test PostgreSQL database afterwards.
struct PostgresDb {
    admin_url: String,
    name: String,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password; the backend and directory are what a failing test needs.
        f.debug_struct("TestDb")
            .field(
                "backend",
                &if self.is_postgres() {
                    "postgres"
                } else {
                    "sqlite"
                },
            )
            .field("data_dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl TestDb {
    /// Creates and migrates a new database. Panics if that fails: a test cannot run without it.
    pub async fn new() -> TestDb {
        Self::create(true).await
    }

    /// A new database with no tables at all, for tests of migrating itself.
    pub async fn empty() -> TestDb {
        Self::create(false).await
    }

    async fn create(migrate: bool) -> TestDb {
        let dir = tempfile::Builder::new()
            .prefix("chatter-test-")
            .tempdir()
            .expect("create a temporary data directory");
        match postgres_admin_url() {
            Some(admin_url) => Self::new_postgres(admin_url, dir, migrate).await,
            None => {
                let url = chatter_store::sqlite_url_in(dir.path());
                let db = chatter_store::connect(&url)
                    .await
                    .expect("open the test SQLite database");
                if migrate {
                    chatter_store::migrate(&db)
                        .await
                        .expect("migrate the test SQLite database");
                }
                TestDb {
                    db,
                    url,
                    dir,
                    postgres: None,
                }
            }
        }
    }

    async fn new_postgres(admin_url: String, dir: TempDir, migrate: bool) -> TestDb {
        let name = format!("chatter_t_{}", uuid::Uuid::new_v4().simple());
        let admin = connect_admin(&admin_url)
            .await
            .unwrap_or_else(|err| panic!("connect to {TEST_DATABASE_URL}: {err}"));
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|err| panic!("create test database {name}: {err}"));
        // Only a handful of connections per test database: tests run in parallel on one server.
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        let postgres = Some(PostgresDb { admin_url, name });
        let db = chatter_store::connect(&url)
            .await
            .expect("open the test PostgreSQL database");
        let test_db = TestDb {
            db,
            url,
            dir,
            postgres,
        };
        // Built before migrating so that a failed migration still drops the database.
        if migrate {
            chatter_store::migrate(&test_db.db)
                .await
                .expect("migrate the test PostgreSQL database");
        }
        test_db
    }

    /// Whether this database is PostgreSQL (else SQLite).
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// A temporary directory usable as the application's data directory; for SQLite it also
    /// holds the database file. Removed when the `TestDb` is dropped.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(PostgresDb { admin_url, name }) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime, where blocking on async work is not allowed, so
        // the cleanup gets its own thread and runtime. FORCE ends the pool's open connections.
        let (done, finished) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("testdb-drop".into())
            .spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(async {
                        if let Ok(admin) = connect_admin(&admin_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                            let _ = admin.execute_unprepared(&sql).await;
                            let _ = admin.close().await;
                        }
                    });
                }
                let _ = done.send(());
            });
        if spawned.is_ok() {
            // Waiting keeps the process from exiting first; the bound keeps a stuck server from
            // hanging the test run.
            let _ = finished.recv_timeout(Duration::from_secs(15));
        }
    }
}

/// Connects to the maintenance database: the URL as given, or its `postgres` database if the
/// named one does not exist (CI's URL names a database that may not have been created).
async fn connect_admin(admin_url: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    // No idle timeout or lifetime: sqlx 0.8's sweep task can spin forever (see
    // `chatter_store::connect`), and this pool is shared by every test of the process.
    let open = |url: String| async move {
        use sea_orm::sqlx::ConnectOptions as _;
        let err = |e| sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e));
        let opts = url
            .parse::<sea_orm::sqlx::postgres::PgConnectOptions>()
            .map_err(err)?
            .disable_statement_logging();
        let pool = sea_orm::sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await
            .map_err(err)?;
        Ok::<_, sea_orm::DbErr>(sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(
            pool,
        ))
    };
    match open(admin_url.to_string()).await {
        Ok(db) => Ok(db),
        Err(first) => match open(with_database(admin_url, "postgres")).await {
            Ok(db) => Ok(db),
            Err(_) => Err(first),
        },
    }
}

/// The same server URL with its database (the path) replaced; query parameters are kept.
fn with_database(url: &str, database: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_path(&format!("/{database}"));
            parsed.to_string()
        }
        // Not a URL the url crate understands: replace what follows the last '/'.
        Err(_) => {
            let (base, query) = match url.split_once('?') {
                Some((base, query)) => (base, Some(query)),
                None => (url, None),
            };
            let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
            match query {
                Some(query) => format!("{prefix}/{database}?{query}"),
                None => format!("{prefix}/{database}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@db:5432/test?sslmode=disable", "x"),
            "postgres://u:p@db:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@db:5432", "x"),
            "postgres://u@db:5432/x"
        );
    }
}
