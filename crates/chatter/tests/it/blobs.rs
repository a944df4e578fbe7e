//! Where the files customers send are kept (issue 15, item 7): each blob store keeps and gives
//! back the same bytes; with two `chatter serve` nodes on one PostgreSQL database a photo one
//! node downloaded is served by the other (the `postgres` store, the default there, and an
//! S3-compatible server); `chatter blobs migrate` copies a node's local files into the shared
//! store, once.
//!
//! The S3 tests need a real S3-compatible server: `.ci/run` starts one (moto) and exports its
//! address as `TEST_S3_URL`; without it they say they were skipped (in CI they fail instead).

use crate::nodes::{node, postgres_db};
use crate::server_process::Server;
use crate::telegram::{conversation_with, thread_shows};
use chatter_core::blobs::{self, BlobStore, BlobsConfig, S3Config, StoreKind};
use chatter_fakes::{CustomerMessage, FakeTelegram};
use chatter_testkit::{Session, TestDb};
use sea_orm::{ConnectionTrait, Statement};
use std::sync::Arc;

const PW: &str = "correct horse battery";

/// The S3-compatible test server's address, or `None` saying the test was skipped (a failure
/// in CI, where `.ci/run` must have started one).
fn s3_url(test: &str) -> Option<String> {
    match std::env::var("TEST_S3_URL") {
        Ok(u) if !u.is_empty() => Some(u.trim_end_matches('/').to_string()),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: TEST_S3_URL is not set in CI; .ci/run starts an S3-compatible server"
            );
            eprintln!("skipped {test}: set TEST_S3_URL to an S3-compatible server to run it");
            None
        }
    }
}

/// A new bucket on the test server (moto creates it on an unsigned PUT; other servers take
/// the same request with their open test credentials).
async fn new_bucket(url: &str) -> String {
    let bucket = format!("chatter-{}", uuid::Uuid::new_v4().simple());
    let r = reqwest::Client::new()
        .put(format!("{url}/{bucket}"))
        .send()
        .await
        .expect("create the bucket");
    assert!(
        r.status().is_success(),
        "create bucket: {}",
        r.text().await.unwrap_or_default()
    );
    bucket
}

fn s3_config(url: &str, bucket: &str) -> BlobsConfig {
    BlobsConfig {
        store: Some(StoreKind::S3),
        s3: Some(S3Config {
            endpoint: Some(url.to_string()),
            bucket: bucket.to_string(),
            region: "us-east-1".into(),
            access_key_id: "testing".into(),
            secret_access_key: chatter_core::Secret::new("testing-secret"),
            path_style: true,
        }),
    }
}

/// The environment that points a node at the bucket.
fn s3_env(url: &str, bucket: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CHATTER_BLOBS__STORE", "s3".to_string()),
        ("CHATTER_BLOBS__S3__ENDPOINT", url.to_string()),
        ("CHATTER_BLOBS__S3__BUCKET", bucket.to_string()),
        ("CHATTER_BLOBS__S3__REGION", "us-east-1".to_string()),
        ("CHATTER_BLOBS__S3__ACCESS_KEY_ID", "testing".to_string()),
        (
            "CHATTER_BLOBS__S3__SECRET_ACCESS_KEY",
            "testing-secret".to_string(),
        ),
    ]
}

/// A JPEG by its first bytes, `n` bytes long.
fn photo(seed: u32, n: u32) -> Vec<u8> {
    [0xff, 0xd8, 0xff, 0xe0]
        .into_iter()
        .chain((0..n).map(|i| ((i * 7 + seed) % 251) as u8))
        .collect()
}

async fn rows(db: &TestDb, sql: &str) -> i64 {
    let row = db
        .db
        .query_one(Statement::from_string(
            db.db.get_database_backend(),
            sql.to_string(),
        ))
        .await
        .expect("query")
        .expect("a row");
    row.try_get("", "n").expect("n")
}

/// What every store must do: the same bytes back, written once, a missing or malformed name
/// answered with "missing" (no panic), and the files of the local directory still readable.
async fn round_trip(store: &BlobStore, data_dir: &std::path::Path) {
    let bytes = photo(3, 300_000);
    let hash = blobs::put(store, &bytes).await.expect("put");
    assert_eq!(hash.len(), 64, "the SHA-256, hex");
    assert_eq!(
        blobs::get(store, &hash).await.as_deref(),
        Some(&bytes[..]),
        "{store:?}: the same bytes back"
    );
    assert_eq!(
        blobs::put(store, &bytes).await.expect("put again"),
        hash,
        "{store:?}: the same name for the same bytes"
    );
    assert_eq!(
        blobs::get(store, &hash).await.as_deref(),
        Some(&bytes[..]),
        "{store:?}: still the same bytes after a second put"
    );
    assert_eq!(blobs::get(store, &"ab".repeat(32)).await, None, "missing");
    assert_eq!(blobs::get(store, "../../etc/passwd").await, None, "no path");
    assert_eq!(blobs::get(store, "").await, None, "empty name");
    assert_eq!(
        blobs::put(store, b"").await.map(|h| h.len()).ok(),
        Some(64),
        "an empty file is a blob too"
    );
    // A file kept in the data directory before this store was chosen is still served.
    let old = photo(9, 1000);
    let old_hash = blobs::put(&BlobStore::local(data_dir), &old)
        .await
        .expect("local put");
    assert_eq!(
        blobs::get(store, &old_hash).await,
        Some(old),
        "{store:?}: a local blob of before stays readable"
    );
}

#[tokio::test]
async fn each_blob_store_gives_back_the_bytes_it_was_given() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("dir");
    round_trip(&BlobStore::local(dir.path()), dir.path()).await;
    assert!(
        blobs::dir(dir.path()).exists(),
        "the local store writes under <data-dir>/blobs"
    );

    let dir = tempfile::tempdir().expect("dir");
    let store = BlobStore::open(
        StoreKind::Postgres,
        &BlobsConfig::default(),
        dir.path(),
        &db.db,
    )
    .expect("the database store");
    round_trip(&store, dir.path()).await;
    assert_eq!(
        rows(&db, "SELECT count(*) AS n FROM blobs").await,
        2,
        "one row per distinct blob (the photo, the empty file)"
    );
    assert_eq!(
        rows(
            &db,
            "SELECT CAST(coalesce(sum(size), 0) AS BIGINT) AS n FROM blobs"
        )
        .await,
        300_004,
        "sizes recorded"
    );

    let Some(url) = s3_url("each_blob_store_gives_back_the_bytes_it_was_given (s3)") else {
        return;
    };
    let bucket = new_bucket(&url).await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = s3_config(&url, &bucket);
    let store = BlobStore::open(StoreKind::S3, &cfg, dir.path(), &db.db).expect("s3 store");
    store.probe().await.expect("the server answers");
    round_trip(&store, dir.path()).await;
    let shown = format!("{store:?} {cfg:?}");
    assert!(
        !shown.contains("testing-secret"),
        "the secret key never shows: {shown}"
    );
    // A bucket that does not exist: a clear error, no panic.
    let wrong = s3_config(&url, "no-such-bucket-chatter");
    let store = BlobStore::open(StoreKind::S3, &wrong, dir.path(), &db.db).expect("s3 store");
    let err = store.probe().await.expect_err("no bucket");
    assert!(
        err.contains("no-such-bucket-chatter"),
        "names the bucket: {err}"
    );
    let err = blobs::put(&store, b"x").await.expect_err("no bucket");
    assert!(
        err.to_string().contains("no-such-bucket-chatter"),
        "names the bucket: {err}"
    );
    assert_eq!(blobs::get(&store, &"cd".repeat(32)).await, None);
}

#[tokio::test]
async fn an_s3_store_that_cannot_work_is_refused_with_the_reason() {
    let cfg = BlobsConfig {
        store: Some(StoreKind::S3),
        s3: None,
    };
    let p = blobs::config_problem(&cfg, StoreKind::S3).expect("a problem");
    assert!(p.contains("[blobs.s3]"), "{p}");
    let mut bad = s3_config("ftp://example.org", "b");
    let p = blobs::config_problem(&bad, StoreKind::S3).expect("a problem");
    assert!(p.contains("blobs.s3.endpoint"), "{p}");
    bad = s3_config("http://127.0.0.1:9", "");
    let p = blobs::config_problem(&bad, StoreKind::S3).expect("a problem");
    assert!(p.contains("blobs.s3.bucket"), "{p}");
    assert_eq!(
        blobs::config_problem(&s3_config("http://127.0.0.1:9", "b"), StoreKind::S3),
        None
    );
    // A store nobody answers for: every use fails with the reason, nothing panics.
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("dir");
    let store = BlobStore::configured(&cfg, dir.path(), &db.db);
    assert_eq!(store.kind(), None);
    let err = blobs::put(&store, b"x").await.expect_err("unusable");
    assert!(err.to_string().contains("[blobs.s3]"), "{err}");
    assert_eq!(blobs::get(&store, &"ef".repeat(32)).await, None);
    // Without a choice: the database with PostgreSQL (every node reads it), else local.
    let default = BlobStore::configured(&BlobsConfig::default(), dir.path(), &db.db);
    let expected = if db.is_postgres() {
        StoreKind::Postgres
    } else {
        StoreKind::Local
    };
    assert_eq!(default.kind(), Some(expected));
}

fn session(base: &str) -> Session {
    Session {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        base: base.to_string(),
    }
}

/// A photo sent to the company's bot reaches node a (the only one running), which downloads
/// it; node a is then killed and node b, started afterwards with an empty data directory,
/// serves the photo's bytes to a signed-in browser session.
async fn photo_from_node_a_is_served_by_node_b(
    test: &str,
    env: Vec<(&'static str, String)>,
) -> Option<(Arc<TestDb>, Server)> {
    let db = postgres_db(test).await?;
    let telegram = FakeTelegram::start().await.expect("fake Telegram");
    let mut env = env;
    env.push(("CHATTER_TELEGRAM__API_BASE", telegram.base_url()));
    let mut a = node(&db, "a", &env);
    let mut b = node(&db, "b", &env);
    a.spawn().await;

    let s = session(&a.url());
    let token = crate::prod::company_with_bot(&s, &telegram).await;
    let jpeg = photo(5, 40_000);
    telegram.customer_writes(
        &token,
        CustomerMessage {
            photo: Some(jpeg.clone()),
            caption: Some("Такой диван есть?".into()),
            ..CustomerMessage::text(7001, "Ольга", "")
        },
    );
    let conv = conversation_with(&s, "Ольга").await;
    let page = thread_shows(&s, &conv, "<img src=\"/app/files/").await;
    let img = page
        .split("<img src=\"")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .expect("the photo's address")
        .to_string();
    let r = s.get(&img).await;
    assert_eq!(r.status(), 200, "node a serves the photo it downloaded");
    assert_eq!(r.bytes().await.expect("body").to_vec(), jpeg);
    a.kill9();

    b.spawn().await;
    let s = session(&b.url());
    let r = s
        .post_from(
            "/sign-in",
            "/sign-in",
            &[("email", "anna@romashka.test"), ("password", PW)],
        )
        .await;
    assert_eq!(r.status(), 303, "signed in on node b");
    let r = s.get(&img).await;
    assert_eq!(r.status(), 200, "node b serves the photo node a downloaded");
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(ctype, "image/jpeg");
    assert_eq!(
        r.bytes().await.expect("body").to_vec(),
        jpeg,
        "the same bytes on node b"
    );
    let local = db.data_dir().join("a").join("blobs");
    assert!(
        !local.exists(),
        "node a kept nothing in its data directory ({})",
        local.display()
    );
    telegram.shutdown();
    Some((db, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_downloaded_by_one_node_is_served_by_the_other_from_postgres() {
    // No blobs.store: with PostgreSQL the default is the database.
    let Some((db, _b)) = photo_from_node_a_is_served_by_node_b(
        "a_photo_downloaded_by_one_node_is_served_by_the_other_from_postgres",
        Vec::new(),
    )
    .await
    else {
        return;
    };
    assert_eq!(
        rows(&db, "SELECT count(*) AS n FROM blobs").await,
        1,
        "the photo is one row of the blobs table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_downloaded_by_one_node_is_served_by_the_other_from_s3() {
    let test = "a_photo_downloaded_by_one_node_is_served_by_the_other_from_s3";
    if chatter_testkit::db::backend_name() != "postgres" {
        // Say so through the usual message.
        let _ = postgres_db(test).await;
        return;
    }
    let Some(url) = s3_url(test) else {
        return;
    };
    let bucket = new_bucket(&url).await;
    let Some((db, _b)) = photo_from_node_a_is_served_by_node_b(test, s3_env(&url, &bucket)).await
    else {
        return;
    };
    assert_eq!(
        rows(&db, "SELECT count(*) AS n FROM blobs").await,
        0,
        "the photo went to the bucket, not the database"
    );
    let listing = reqwest::get(format!("{url}/{bucket}?list-type=2&prefix=blobs/"))
        .await
        .expect("list the bucket")
        .text()
        .await
        .expect("body");
    assert_eq!(
        listing.matches("<Key>blobs/").count(),
        1,
        "one object in the bucket: {listing}"
    );
}

/// Runs `chatter <args>` for `node` to its end; returns (success, what it printed).
async fn run(node: &Server, args: &[&str]) -> (bool, String) {
    let before = node.log().len();
    let mut child = node.command(args);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    (status.success(), node.log()[before..].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_migrate_copies_local_files_into_the_shared_store_once() {
    let db = Arc::new(TestDb::new().await);
    let mut env = vec![("CHATTER_MASTER_KEY", crate::nodes::MASTER_KEY.to_string())];
    let s3 = s3_url("blobs_migrate_copies_local_files_into_the_shared_store_once (s3)");
    let bucket = match &s3 {
        Some(url) => Some(new_bucket(url).await),
        None => None,
    };
    if let (Some(url), Some(bucket)) = (&s3, &bucket) {
        env.extend(s3_env(url, bucket));
        // The node keeps its files locally until the operator switches (the test's choice).
        env.retain(|(k, _)| *k != "CHATTER_BLOBS__STORE");
    }
    let n = Server::sharing(&db, "old", |_| env);
    let dir = db.data_dir().join("old");
    let local = BlobStore::local(&dir);
    let files = [photo(1, 5000), photo(2, 7000), b"%PDF-1.4 price".to_vec()];
    let mut names = Vec::new();
    for f in &files {
        names.push(blobs::put(&local, f).await.expect("local put"));
    }
    // A damaged file (its bytes no longer hash to its name) and a half-written one.
    let damaged = "00".repeat(32);
    let shard = blobs::dir(&dir).join("00");
    std::fs::create_dir_all(&shard).expect("dir");
    std::fs::write(shard.join(&damaged[2..]), b"not what the name says").expect("write");
    std::fs::write(shard.join("abc.tmp-1"), b"half").expect("write");

    let (ok, out) = run(&n, &["blobs", "migrate", "--to", "ftp"]).await;
    assert!(!ok, "an unknown store is refused: {out}");
    assert!(out.contains("choose local, postgres or s3"), "{out}");

    if db.is_postgres() {
        let (ok, out) = run(&n, &["blobs", "migrate", "--to", "postgres"]).await;
        assert!(ok, "{out}");
        assert!(
            out.contains("3 copied, 0 already there, 1 damaged"),
            "{out}"
        );
        assert!(out.contains(&damaged[2..]), "names the damaged file: {out}");
        let (ok, out) = run(&n, &["blobs", "migrate", "--to", "postgres"]).await;
        assert!(ok, "{out}");
        assert!(
            out.contains("0 copied, 3 already there, 1 damaged"),
            "idempotent: {out}"
        );
        assert_eq!(rows(&db, "SELECT count(*) AS n FROM blobs").await, 3);
        let shared = BlobStore::open(
            StoreKind::Postgres,
            &BlobsConfig::default(),
            &db.data_dir().join("elsewhere"),
            &db.db,
        )
        .expect("store");
        for (f, h) in files.iter().zip(&names) {
            assert_eq!(blobs::get(&shared, h).await.as_ref(), Some(f), "{h}");
        }
    } else {
        let (ok, out) = run(&n, &["blobs", "migrate", "--to", "postgres"]).await;
        assert!(!ok, "SQLite has no shared database to copy into: {out}");
        assert!(out.contains("needs a PostgreSQL database_url"), "{out}");
    }

    let (Some(url), Some(bucket)) = (s3, bucket) else {
        return;
    };
    let (ok, out) = run(&n, &["blobs", "migrate", "--to", "s3"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("3 copied, 0 already there, 1 damaged"),
        "{out}"
    );
    let (ok, out) = run(&n, &["blobs", "migrate", "--to", "s3"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("0 copied, 3 already there, 1 damaged"),
        "idempotent: {out}"
    );
    assert!(
        out.contains("blobs.store = \"s3\""),
        "tells to switch the store: {out}"
    );
    assert!(!out.contains("testing-secret"), "no secret printed: {out}");
    let shared = BlobStore::open(
        StoreKind::S3,
        &s3_config(&url, &bucket),
        &db.data_dir().join("elsewhere"),
        &db.db,
    )
    .expect("store");
    for (f, h) in files.iter().zip(&names) {
        assert_eq!(blobs::get(&shared, h).await.as_ref(), Some(f), "{h}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_the_blob_store_and_what_is_wrong_with_it() {
    let db = Arc::new(TestDb::new().await);
    let expected = if db.is_postgres() {
        "postgres"
    } else {
        "local"
    };
    let n = Server::sharing(&db, "default", |_| Vec::new());
    let (ok, out) = run(&n, &["check-config"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("blobs.store = \"{expected}\"")),
        "the store in use is shown: {out}"
    );

    let n = Server::sharing(&db, "no-section", |_| {
        vec![("CHATTER_BLOBS__STORE", "s3".to_string())]
    });
    let (ok, out) = run(&n, &["check-config"]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("error: blobs.store = \"s3\" needs [blobs.s3]"),
        "{out}"
    );

    // Nobody listens on port 9: the error names the store, never the secret.
    let n = Server::sharing(&db, "unreachable", |_| {
        s3_env("http://127.0.0.1:9", "files")
    });
    let (ok, out) = run(&n, &["check-config"]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "error: the blob store s3 (bucket files at http://127.0.0.1:9) does not answer"
        ),
        "{out}"
    );
    assert!(!out.contains("testing-secret"), "{out}");
    assert!(
        out.contains("blobs.s3.secret_access_key = \"(redacted)\""),
        "{out}"
    );
    // And `serve` refuses what cannot work without the network, before starting.
    let n = Server::sharing(&db, "refused", |_| {
        vec![
            ("CHATTER_BLOBS__STORE", "s3".to_string()),
            ("CHATTER_BLOBS__S3__BUCKET", "files".to_string()),
            ("CHATTER_BLOBS__S3__ACCESS_KEY_ID", "k".to_string()),
            (
                "CHATTER_BLOBS__S3__SECRET_ACCESS_KEY",
                "testing-secret".to_string(),
            ),
            ("CHATTER_BLOBS__S3__ENDPOINT", "minio:9000".to_string()),
        ]
    });
    let (ok, out) = run(&n, &["serve", "--bind", "127.0.0.1:0"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("blobs.s3.endpoint"), "{out}");

    let Some(url) = s3_url("check_config_names_the_blob_store_and_what_is_wrong_with_it (s3)")
    else {
        return;
    };
    let bucket = new_bucket(&url).await;
    let n = Server::sharing(&db, "s3", |_| s3_env(&url, &bucket));
    let (ok, out) = run(&n, &["check-config"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("blobs.store = \"s3\""), "{out}");
    let n = Server::sharing(&db, "s3-missing", |_| {
        s3_env(&url, "no-such-bucket-chatter")
    });
    let (ok, out) = run(&n, &["check-config"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("no-such-bucket-chatter"), "{out}");
}
