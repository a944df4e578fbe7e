//! Every TestDb is a fresh, migrated database on the backend the environment selects.

use chatter_store::sea_orm::{ConnectionTrait, Statement};
use chatter_testkit::db::{backend_name, TestDb};

async fn count_jobs(test_db: &TestDb) -> i64 {
    let backend = test_db.db.get_database_backend();
    let row = test_db
        .db
        .query_one(Statement::from_string(
            backend,
            "SELECT count(*) AS n FROM jobs",
        ))
        .await
        .expect("query jobs")
        .expect("one row");
    row.try_get::<i64>("", "n").expect("count")
}

#[tokio::test]
async fn fresh_database_has_the_schema_and_no_jobs() {
    let test_db = TestDb::new().await;
    assert_eq!(test_db.is_postgres(), backend_name() == "postgres");
    assert!(test_db.data_dir().is_dir());
    assert_eq!(count_jobs(&test_db).await, 0);
    if !test_db.is_postgres() {
        assert!(test_db.data_dir().join("chatter.db").is_file());
    }
}

#[tokio::test]
async fn each_test_db_is_separate() {
    let a = TestDb::new().await;
    let b = TestDb::new().await;
    assert_ne!(a.url, b.url);
    assert_ne!(a.data_dir(), b.data_dir());
    a.db.execute_unprepared("CREATE TABLE only_in_a (id INTEGER)")
        .await
        .expect("create table in a");
    let in_b =
        b.db.execute_unprepared("SELECT count(*) FROM only_in_a")
            .await;
    assert!(in_b.is_err(), "b must not see a's table");
}

#[tokio::test]
async fn postgres_database_is_dropped_with_the_test_db() {
    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        return;
    };
    let test_db = TestDb::new().await;
    let name = test_db
        .url
        .rsplit('/')
        .next()
        .expect("database name")
        .to_string();
    drop(test_db);
    let admin = chatter_store::connect(&admin_url)
        .await
        .expect("connect admin");
    let row = admin
        .query_one(Statement::from_sql_and_values(
            admin.get_database_backend(),
            "SELECT count(*) AS n FROM pg_database WHERE datname = $1",
            [name.clone().into()],
        ))
        .await
        .expect("query pg_database")
        .expect("one row");
    assert_eq!(
        row.try_get::<i64>("", "n").expect("count"),
        0,
        "{name} still exists"
    );
}
