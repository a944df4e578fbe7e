//! Several `chatter serve` processes on one PostgreSQL database, as an installation runs them:
//! started at the same instant on a fresh database and on one a migration behind, all become
//! ready and every migration is applied once. PostgreSQL only (SQLite has one node per file);
//! on SQLite-only runs each test says it was skipped.

use crate::server_process::Server;
use chatter_testkit::TestDb;
use sea_orm::ConnectionTrait;
use std::sync::Arc;
use std::time::Duration;

/// The master key every node of these installations shares (a node with another one refuses
/// to start).
pub(crate) const MASTER_KEY: &str =
    "5c2b7e01a9d4f3368e1bc0d7a25f49e6b3d80c1f7a6e5d4c3b2a19087f6e5d4c";

/// A fresh PostgreSQL database, or `None` (saying so) on SQLite-only runs.
pub(crate) async fn postgres_db(test: &str) -> Option<Arc<TestDb>> {
    if chatter_testkit::db::backend_name() != "postgres" {
        eprintln!(
            "skipped {test}: nodes share one PostgreSQL database; set TEST_DATABASE_URL to run it"
        );
        return None;
    }
    Some(Arc::new(TestDb::new().await))
}

/// Node `name` of the installation on `db`, with `env` on top of the shared master key.
pub(crate) fn node(db: &Arc<TestDb>, name: &str, env: &[(&'static str, String)]) -> Server {
    let env = env.to_vec();
    Server::sharing(db, name, move |_| {
        let mut all = vec![("CHATTER_MASTER_KEY", MASTER_KEY.to_string())];
        all.extend(env);
        all
    })
}

/// The migrations table: (rows, distinct versions).
async fn migrations(db: &TestDb) -> (i64, i64) {
    let row = db
        .db
        .query_one(sea_orm::Statement::from_string(
            db.db.get_database_backend(),
            "SELECT count(*) AS n, count(DISTINCT version) AS d FROM seaql_migrations",
        ))
        .await
        .expect("the migrations table exists")
        .expect("a row");
    (
        row.try_get("", "n").expect("count"),
        row.try_get("", "d").expect("distinct"),
    )
}

/// Info logs of the migration lock, so a test can tell that a node waited for another.
fn migration_log() -> Vec<(&'static str, String)> {
    vec![("CHATTER_LOG", "warn,chatter_store=info".to_string())]
}

fn waited(nodes: &[Server]) -> usize {
    nodes
        .iter()
        .filter(|n| n.log().contains("another node is migrating"))
        .count()
}

/// Without the migration lock, nodes started together race on `CREATE TABLE` and all but one
/// exit with a duplicate-key error from PostgreSQL's catalog.
#[tokio::test]
async fn four_nodes_started_at_once_on_a_fresh_database_all_become_ready() {
    let Some(db) = postgres_db("four_nodes_started_at_once").await else {
        return;
    };
    // The test database was migrated by the library; what a fresh one gets is that many rows.
    let (all, _) = migrations(&db).await;
    assert!(all > 0);
    db.db
        .execute_unprepared("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .await
        .expect("empty the database");
    let mut nodes: Vec<Server> = (0..4)
        .map(|i| node(&db, &format!("node{i}"), &migration_log()))
        .collect();
    for n in &mut nodes {
        n.start();
    }
    for n in &mut nodes {
        n.wait_for("/readyz", 120).await;
    }
    assert_eq!(
        migrations(&db).await,
        (all, all),
        "every migration applied exactly once"
    );
    println!(
        "nodes: 4 started at once on a fresh database; {} waited for another's migrations",
        waited(&nodes)
    );
}

/// A rolling upgrade: the database lacks the newest migration; two new nodes and a
/// `chatter migrate` start together, all succeed, and the migration is applied once.
#[tokio::test]
async fn two_nodes_and_a_migrate_on_a_database_one_migration_behind_all_start() {
    let Some(db) = postgres_db("two_nodes_and_a_migrate_one_migration_behind").await else {
        return;
    };
    let (all, _) = migrations(&db).await;
    // The newest migration undone by hand, as a database of the previous release has it.
    let newest = "m0043_crm_imports";
    let last: String = db
        .db
        .query_one(sea_orm::Statement::from_string(
            db.db.get_database_backend(),
            "SELECT version FROM seaql_migrations ORDER BY version DESC LIMIT 1",
        ))
        .await
        .expect("newest migration")
        .expect("a row")
        .try_get("", "version")
        .expect("version");
    assert_eq!(
        last, newest,
        "a newer migration exists: undo that one here instead (delete its row, drop its tables)"
    );
    db.db
        .execute_unprepared(&format!(
            "DELETE FROM seaql_migrations WHERE version = '{newest}'; DROP TABLE crm_imports; \
             DROP INDEX ix_crm_outbox_import; ALTER TABLE crm_outbox DROP COLUMN import_id;"
        ))
        .await
        .expect("undo the newest migration");
    assert_eq!(migrations(&db).await.0, all - 1);

    let mut nodes = vec![
        node(&db, "node0", &migration_log()),
        node(&db, "node1", &migration_log()),
    ];
    let migrator = node(&db, "migrate", &migration_log());
    let mut migrate = migrator.command(&["migrate"]);
    for n in &mut nodes {
        n.start();
    }
    for n in &mut nodes {
        n.wait_for("/readyz", 120).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = migrate.try_wait().expect("wait for chatter migrate") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "chatter migrate hangs:\n{}",
            migrator.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "chatter migrate failed ({status}):\n{}",
        migrator.log()
    );
    assert_eq!(
        migrations(&db).await,
        (all, all),
        "the missing migration applied exactly once"
    );
    let back: i64 = db
        .db
        .query_one(sea_orm::Statement::from_string(
            db.db.get_database_backend(),
            "SELECT count(*) AS n FROM information_schema.tables \
             WHERE table_name = 'source_logins'",
        ))
        .await
        .expect("count the index")
        .expect("a row")
        .try_get("", "n")
        .expect("n");
    assert_eq!(back, 1, "the newest migration's table is back");
    let mut all_nodes = nodes;
    all_nodes.push(migrator);
    println!(
        "nodes: 2 serve + 1 migrate on a database one migration behind; {} waited for another's migrations",
        waited(&all_nodes)
    );
}
