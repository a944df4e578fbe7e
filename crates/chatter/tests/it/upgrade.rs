//! Safe upgrades. A database of today's schema with data of every kind (the fixture
//! `tests/fixtures/schema_m0014.json`: a `chatter demo` database, plus one row in each table the
//! demo leaves empty) takes every later migration through `chatter migrate` and keeps every
//! row as it was; the upgraded instance then serves that data. An older binary started on a
//! database a newer one migrated refuses to start, naming the versions that differ.
//!
//! The fixture is made once per schema worth freezing, with `CHATTER_WRITE_FIXTURE=1 cargo test
//! -p chatter --test it -- upgrade::the_fixture_has` (it runs the demo for half a minute).

use crate::cli::{chatter, run, run_ok, text, Running};
use chatter_testkit::{Session, TestDb};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use serde_json::{json, Value as Json};
use std::path::PathBuf;
use std::time::Duration;

const FIXTURE: &str = "tests/fixtures/schema_m0014.json";
/// The schema the fixture was made with: the last migration of the day it was frozen.
const FIXTURE_MIGRATION: &str = "m0014_signup_confirmations";

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)
}

/// A column's kind in the fixture, the same on both databases.
fn bind(kind: &str, v: &Json) -> Value {
    match (kind, v) {
        ("uuid", Json::Null) => Value::Uuid(None),
        ("uuid", Json::String(s)) => {
            Value::Uuid(Some(Box::new(uuid::Uuid::parse_str(s).expect("uuid"))))
        }
        ("i64", Json::Null) => Value::BigInt(None),
        ("i64", v) => Value::BigInt(Some(v.as_i64().expect("integer"))),
        ("bool", Json::Null) => Value::Bool(None),
        ("bool", v) => Value::Bool(Some(v.as_bool().expect("bool"))),
        (_, Json::Null) => Value::String(None),
        (_, v) => Value::String(Some(Box::new(v.as_str().expect("text").to_string()))),
    }
}

/// Every row of `table` as fixture JSON, sorted, reading only `columns`.
async fn rows_of(
    db: &impl ConnectionTrait,
    table: &str,
    columns: &[(String, String)],
) -> Vec<Json> {
    let select: Vec<String> = columns
        .iter()
        .map(|(c, k)| match k.as_str() {
            "i64" => format!("CAST(\"{c}\" AS BIGINT)"),
            _ => format!("\"{c}\""),
        })
        .collect();
    let sql = format!("SELECT {} FROM \"{table}\"", select.join(", "));
    let rows = db
        .query_all(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("read {table}: {e}"));
    let mut out: Vec<Json> = rows
        .iter()
        .map(|r| {
            Json::Array(
                columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, k))| match k.as_str() {
                        "uuid" => json!(r
                            .try_get_by_index::<Option<uuid::Uuid>>(i)
                            .expect("uuid")
                            .map(|u| u.to_string())),
                        "i64" => json!(r.try_get_by_index::<Option<i64>>(i).expect("i64")),
                        "bool" => json!(r.try_get_by_index::<Option<bool>>(i).expect("bool")),
                        _ => json!(r.try_get_by_index::<Option<String>>(i).expect("text")),
                    })
                    .collect(),
            )
        })
        .collect();
    out.sort_by_key(|r| r.to_string());
    out
}

struct Table {
    name: String,
    columns: Vec<(String, String)>,
    rows: Vec<Json>,
}

fn tables_of(fixture: &Json) -> Vec<Table> {
    fixture["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| Table {
            name: t["name"].as_str().expect("name").to_string(),
            columns: t["columns"]
                .as_array()
                .expect("columns")
                .iter()
                .map(|c| {
                    (
                        c[0].as_str().expect("column").to_string(),
                        c[1].as_str().expect("kind").to_string(),
                    )
                })
                .collect(),
            rows: t["rows"].as_array().expect("rows").clone(),
        })
        .collect()
}

#[tokio::test]
async fn a_database_of_today_takes_every_later_migration_and_keeps_its_data() {
    let fixture: Json =
        serde_json::from_str(&std::fs::read_to_string(fixture_path()).expect("the fixture"))
            .expect("fixture JSON");
    assert_eq!(fixture["migration"], FIXTURE_MIGRATION);
    let db = TestDb::empty().await;
    let known = chatter_store::schema::known();
    chatter_store::schema::migrate_up_to(&db.db, FIXTURE_MIGRATION)
        .await
        .expect("today's schema");
    let tables = tables_of(&fixture);
    let backend = db.db.get_database_backend();
    for t in &tables {
        assert!(!t.rows.is_empty(), "the fixture has no {} row", t.name);
        let cols: Vec<String> = t.columns.iter().map(|(c, _)| format!("\"{c}\"")).collect();
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO \"{}\" ({}) VALUES ({})",
            t.name,
            cols.join(", "),
            marks.join(", ")
        );
        for row in &t.rows {
            let values: Vec<Value> = t
                .columns
                .iter()
                .zip(row.as_array().expect("row"))
                .map(|((_, k), v)| bind(k, v))
                .collect();
            db.db
                .execute(chatter_store::stmt(backend, &sql, values))
                .await
                .unwrap_or_else(|e| panic!("insert into {}: {e}", t.name));
        }
    }
    if backend == DbBackend::Postgres {
        for (table, col) in [("events", "id"), ("crm_outbox", "id")] {
            db.db
                .execute_unprepared(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{col}'), (SELECT max({col}) FROM {table}))"
                ))
                .await
                .expect("advance the sequence");
        }
    }
    // Every table of today's schema has data in the fixture.
    let fixture_tables: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let missing: Vec<String> = tables_in(&db.db)
        .await
        .into_iter()
        .filter(|t| t != "seaql_migrations" && !fixture_tables.contains(&t.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "tables without fixture rows: {missing:?}"
    );

    // Every later migration, through the product.
    let mut cmd = chatter(db.data_dir());
    if db.is_postgres() {
        cmd.env("DATABASE_URL", &db.url);
    }
    let out = run_ok(cmd.args(["migrate", "--data-dir"]).arg(db.data_dir()));
    assert!(out.contains("migrations applied"), "{out}");
    let applied = chatter_store::schema::applied(&db.db)
        .await
        .expect("applied");
    assert_eq!(applied, known, "every migration is applied, in order");
    for t in &tables {
        let mut now = rows_of(&db.db, &t.name, &t.columns).await;
        // The one row the upgrade itself writes: which version migrated last.
        now.retain(|r| r[0] != "schema_migrated_by");
        let mut then = t.rows.clone();
        then.sort_by_key(|r| r.to_string());
        assert_eq!(now, then, "{} changed in the upgrade", t.name);
    }

    // The upgraded instance serves the old data with the old master key.
    let mut cmd = chatter(db.data_dir());
    if db.is_postgres() {
        cmd.env("DATABASE_URL", &db.url);
    }
    let mut server = Running::spawn(
        cmd.env(
            "CHATTER_MASTER_KEY",
            fixture["master_key"].as_str().expect("master key"),
        )
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(db.data_dir()),
    );
    let url = server.url();
    let s = Session {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        base: url.clone(),
    };
    let r = s
        .post_from(
            "/sign-in",
            "/sign-in",
            &[
                ("email", fixture["owner"]["email"].as_str().expect("email")),
                (
                    "password",
                    fixture["owner"]["password"].as_str().expect("password"),
                ),
            ],
        )
        .await;
    assert_eq!(
        r.status(),
        303,
        "the owner signs in to the upgraded instance"
    );
    // The API key made before the upgrade still works and lists the same conversations.
    let listed: Json = reqwest::Client::new()
        .get(format!("{url}/api/v1/conversations?limit=100"))
        .bearer_auth(fixture["api_key"].as_str().expect("api key"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let conversations = tables
        .iter()
        .find(|t| t.name == "conversations")
        .expect("conversations");
    let mut before: Vec<String> = conversations
        .rows
        .iter()
        .filter_map(|r| r[0].as_str().map(str::to_string))
        .collect();
    let mut after: Vec<String> = listed["items"]
        .as_array()
        .or(listed.as_array())
        .unwrap_or_else(|| panic!("a list of conversations: {listed}"))
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    before.sort();
    after.sort();
    assert_eq!(after, before, "the API lists the conversations from before");
    server.stop();
}

#[tokio::test]
async fn an_older_binary_refuses_a_database_a_newer_one_migrated() {
    let db = TestDb::new().await;
    let backend = db.db.get_database_backend();
    db.db
        .execute(chatter_store::stmt(
            backend,
            "INSERT INTO seaql_migrations (version, applied_at) VALUES ($1, $2)",
            vec!["m9999_from_a_newer_chatter".into(), 1_900_000_000i64.into()],
        ))
        .await
        .expect("a newer migration");
    db.db
        .execute(chatter_store::stmt(
            backend,
            "UPDATE instance_facts SET value = $1 WHERE name = 'schema_migrated_by'",
            vec!["9.9.9".into()],
        ))
        .await
        .expect("migrated by a newer version");
    let before = chatter_store::schema::applied(&db.db)
        .await
        .expect("applied");
    let newest = chatter_store::schema::known().pop().expect("a migration");
    for command in ["migrate", "serve"] {
        let mut cmd = chatter(db.data_dir());
        if db.is_postgres() {
            cmd.env("DATABASE_URL", &db.url);
        }
        let out = run(cmd
            .args([command, "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(db.data_dir()));
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{command} refused:\n{err}");
        for part in [
            "this database was migrated by Chatter 9.9.9",
            "m9999_from_a_newer_chatter",
            &format!("this binary (Chatter {})", env!("CARGO_PKG_VERSION")),
            &format!("knows up to {newest}"),
        ] {
            assert!(err.contains(part), "{command}: no `{part}` in:\n{err}");
        }
    }
    let after = chatter_store::schema::applied(&db.db)
        .await
        .expect("applied");
    assert_eq!(before, after, "nothing was applied");
}

/// The fixture is worth its name: it has every table of its schema and a row in each, so a
/// later migration that rewrites any table is tried on data. With `CHATTER_WRITE_FIXTURE=1` it
/// is made again first (when freezing a new schema: change `FIXTURE` and `FIXTURE_MIGRATION`).
#[tokio::test]
async fn the_fixture_has_a_row_in_every_table_of_its_schema() {
    if std::env::var("CHATTER_WRITE_FIXTURE").as_deref() == Ok("1") {
        write_the_fixture().await;
    }
    let fixture: Json =
        serde_json::from_str(&std::fs::read_to_string(fixture_path()).expect("the fixture file"))
            .expect("the fixture is JSON");
    assert_eq!(fixture["migration"], FIXTURE_MIGRATION);
    let tmp = tempfile::tempdir().expect("tempdir");
    let scratch = chatter_store::connect(&chatter_store::sqlite_url_in(tmp.path()))
        .await
        .expect("a scratch database");
    chatter_store::schema::migrate_up_to(&scratch, FIXTURE_MIGRATION)
        .await
        .expect("migrate");
    let mut wanted: Vec<String> = tables_in(&scratch)
        .await
        .into_iter()
        .filter(|t| t != "seaql_migrations")
        .collect();
    wanted.sort();
    let tables = tables_of(&fixture);
    let mut have: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    have.sort();
    assert_eq!(have, wanted, "the fixture's tables are its schema's");
    for t in &tables {
        assert!(
            !t.rows.is_empty(),
            "table {} has no row in the fixture",
            t.name
        );
    }
}

/// Makes the fixture: a `chatter demo` database after its customers wrote for a while, one
/// row added to each table the demo leaves empty, dumped with each column's kind.
async fn write_the_fixture() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut demo = Running::spawn(
        chatter(tmp.path())
            .args(["demo", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(&data),
    );
    demo.line_with("Demo sign-in");
    let api_key = demo
        .line_with("API key: ")
        .split("API key: ")
        .nth(1)
        .expect("key")
        .trim()
        .to_string();
    tokio::time::sleep(Duration::from_secs(20)).await;
    demo.stop();
    let db = chatter_store::connect(&chatter_store::sqlite_url_in(&data))
        .await
        .expect("the demo database");
    let master_key = std::fs::read_to_string(data.join("master.key")).expect("master.key");
    // The tables of the fixture's schema, in creation order (parents before children).
    let scratch = chatter_store::connect(&chatter_store::sqlite_url_in(tmp.path()))
        .await
        .expect("a scratch database");
    chatter_store::schema::migrate_up_to(&scratch, FIXTURE_MIGRATION)
        .await
        .expect("migrate");
    let names = tables_in(&db).await;
    let wanted = tables_in(&scratch).await;
    let mut tables = Vec::new();
    for name in names.into_iter().filter(|n| wanted.contains(n)) {
        if name == "seaql_migrations" {
            continue;
        }
        let info = db
            .query_all(Statement::from_string(
                DbBackend::Sqlite,
                format!("PRAGMA table_info(\"{name}\")"),
            ))
            .await
            .expect("table info");
        let columns: Vec<(String, String)> = info
            .iter()
            .map(|r| {
                let c: String = r.try_get_by_index(1).expect("name");
                let t: String = r.try_get_by_index(2).expect("type");
                let kind = match t.to_lowercase().as_str() {
                    "uuid_text" => "uuid",
                    "bigint" | "integer" => "i64",
                    "boolean" => "bool",
                    _ => "text",
                };
                (c, kind.to_string())
            })
            .collect();
        let mut rows = rows_of(&db, &name, &columns).await;
        // Written by every migrating binary since this fixture was made; not data of the day.
        rows.retain(|r| r[0] != "schema_migrated_by");
        tables.push(Table {
            name,
            columns,
            rows,
        });
    }
    let mut out = tables_json(&tables);
    fill_empty(&mut out);
    let fixture = json!({
        "about": "A database of schema m0014 with data of every kind: a `chatter demo` run plus one row in each table the demo leaves empty. Made by upgrade::write_the_fixture; the test loads it and runs every later migration on it.",
        "migration": FIXTURE_MIGRATION,
        "master_key": master_key.trim(),
        "owner": {"email": "demo@chatter.local", "password": "demo-password"},
        "api_key": api_key,
        "tables": out,
    });
    std::fs::create_dir_all(fixture_path().parent().expect("dir")).expect("mkdir");
    std::fs::write(
        fixture_path(),
        serde_json::to_string_pretty(&fixture).expect("json") + "\n",
    )
    .expect("write the fixture");
}

fn tables_json(tables: &[Table]) -> Vec<Json> {
    tables
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "columns": t.columns.iter().map(|(c, k)| json!([c, k])).collect::<Vec<_>>(),
                "rows": t.rows,
            })
        })
        .collect()
}

/// The database's tables (SQLite: in creation order, parents before children).
async fn tables_in(db: &impl ConnectionTrait) -> Vec<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() ORDER BY 1"
        }
        _ => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        }
    };
    db.query_all(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("tables")
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("name"))
        .collect()
}

/// One plausible row in each empty table, pointing at the demo's company, owner, source,
/// conversation and message where a column names one.
fn fill_empty(tables: &mut [Json]) {
    let first = |tables: &[Json], table: &str| -> Json {
        tables
            .iter()
            .find(|t| t["name"] == table)
            .and_then(|t| t["rows"].get(0))
            .and_then(|r| r.get(0))
            .cloned()
            .unwrap_or(Json::Null)
    };
    let refs: Vec<(&str, Json)> = vec![
        ("company_id", first(tables, "companies")),
        ("user_id", first(tables, "users")),
        ("source_id", first(tables, "sources")),
        ("conversation_id", first(tables, "conversations")),
        ("contact_id", first(tables, "contacts")),
        ("message_id", first(tables, "messages")),
        ("job_id", first(tables, "jobs")),
    ];
    let at = 1_767_225_600_000i64;
    for t in tables.iter_mut() {
        if !t["rows"].as_array().is_some_and(|r| r.is_empty()) {
            continue;
        }
        let table = t["name"].as_str().unwrap_or_default().to_string();
        let row: Vec<Json> = t["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| {
                let (col, kind) = (
                    c[0].as_str().unwrap_or_default(),
                    c[1].as_str().unwrap_or_default(),
                );
                let user = [
                    "created_by",
                    "invited_by",
                    "requested_by",
                    "author_id",
                    "assignee_id",
                ];
                match kind {
                    "uuid" => refs
                        .iter()
                        .find(|(n, _)| *n == col)
                        .map(|(_, v)| v.clone())
                        .or_else(|| user.contains(&col).then(|| refs[1].1.clone()))
                        .unwrap_or_else(|| json!(uuid::Uuid::now_v7().to_string())),
                    "i64"
                        if col.ends_with("_at")
                            || col == "window_start"
                            || col == "locked_until" =>
                    {
                        json!(at)
                    }
                    "i64" => json!(1),
                    "bool" => json!(false),
                    _ => json!(match col {
                        "status" => "pending".to_string(),
                        "payload" | "settings" | "metadata" | "details" | "event" | "extra" =>
                            "{}".to_string(),
                        "rules" | "attachments" | "sent_parts" => "[]".to_string(),
                        "role" => "manager".to_string(),
                        "email" => "olga@romashka.test".to_string(),
                        "provider" => "telegram".to_string(),
                        "locale" => "ru".to_string(),
                        "trigger" => "manual".to_string(),
                        "version" => "0.1.0".to_string(),
                        "kind" => "note".to_string(),
                        c if c.ends_with("_hash") => format!("{:064x}", table.len()),
                        c => format!("fixture {table}.{c}"),
                    }),
                }
            })
            .collect();
        t["rows"] = json!([row]);
    }
}
