//! Storage contract: the job outbox, leases, the worker runtime and backups behave the same on
//! SQLite and PostgreSQL (each test runs on whatever `TestDb` gives). These are the promises the
//! rest of the product leans on: a job runs once, a dead worker's job is picked up again, a lease
//! has one holder, and a backup restores every row.

use async_trait::async_trait;
use chatter_core::jobs::worker::{self, JobError, JobHandler, Registry, WorkerConfig};
use chatter_core::jobs::BackgroundJob;
use chatter_core::mailer::FileMailer;
use chatter_core::{backup, Clock, Core, CoreConfig, ManualClock, Secrets, SystemClock};
use chatter_store::entity::job;
use chatter_store::jobs::{self, Claimed, NewJob};
use chatter_store::leases;
use chatter_testkit::{Session, TestApp, TestDb};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Statement};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// 2026-01-01T00:00:00Z, a fixed start for tests that move time by hand.
const T0: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 3600 * 1000;

/// Every table of the foundation schema.
const TABLES: &[&str] = &[
    "companies",
    "users",
    "memberships",
    "sessions",
    "invites",
    "audit_log",
    "api_keys",
    "jobs",
    "backups",
    "password_resets",
    "recovery_codes",
    "sources",
    "leases",
    "sign_in_throttle",
];

async fn enqueue(db: &DatabaseConnection, job: NewJob, now: i64) -> Uuid {
    jobs::enqueue(db, job, now)
        .await
        .expect("enqueue")
        .expect("a job without a dedup key is always enqueued")
}

async fn job_row(db: &DatabaseConnection, id: Uuid) -> job::Model {
    job::Entity::find_by_id(id)
        .one(db)
        .await
        .expect("read job")
        .expect("job exists")
}

async fn claim_one(db: &DatabaseConnection, now: i64, lease_ms: i64) -> Option<Claimed> {
    let mut got = jobs::claim(db, now, lease_ms, 1).await.expect("claim");
    assert!(got.len() <= 1, "claim returned more than its limit");
    got.pop()
}

async fn count_rows(db: &DatabaseConnection, table: &str) -> i64 {
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT count(*) AS n FROM {table}"),
        ))
        .await
        .unwrap_or_else(|e| panic!("count {table}: {e}"))
        .expect("count returns a row");
    row.try_get::<i64>("", "n").expect("count is an integer")
}

async fn table_counts(db: &DatabaseConnection) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for t in TABLES {
        out.push((*t, count_rows(db, t).await));
    }
    out
}

/// A core over `db` with a hand-moved clock and mail written to files.
fn core_with_clock(db: &TestDb) -> (Core, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let (secrets, _) = Secrets::load_or_create(None, db.data_dir()).expect("master key");
    let mailer = FileMailer {
        dir: db.data_dir().join("outbox"),
    };
    let core = Core::new(
        db.db.clone(),
        clock.clone(),
        secrets,
        Arc::new(mailer),
        CoreConfig::new("http://127.0.0.1:9", db.data_dir().to_path_buf()),
    );
    (core, clock)
}

// ---------------------------------------------------------------------------------------------
// Schema and connection settings

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_foreign_keys_on() {
    let db = TestDb::new().await;
    if db.is_postgres() {
        return;
    }
    let pragma = |sql: &'static str| {
        let conn = db.db.clone();
        async move {
            conn.query_one(Statement::from_string(conn.get_database_backend(), sql))
                .await
                .expect(sql)
                .expect("pragma answers")
        }
    };
    let mode: String = pragma("PRAGMA journal_mode")
        .await
        .try_get_by_index(0)
        .expect("journal_mode is text");
    assert_eq!(mode.to_lowercase(), "wal");
    let fk: i64 = pragma("PRAGMA foreign_keys")
        .await
        .try_get_by_index(0)
        .expect("foreign_keys is a number");
    assert_eq!(fk, 1, "foreign keys must be enforced");
    // And it really is enforced: a membership of a company that does not exist is refused.
    let orphan = db
        .db
        .execute_unprepared(&format!(
            "INSERT INTO memberships (company_id, user_id, role, created_at) \
             VALUES ('{}', '{}', 'owner', 0)",
            Uuid::new_v4(),
            Uuid::new_v4()
        ))
        .await;
    let err = orphan.expect_err("an orphan row was accepted").to_string();
    assert!(err.to_lowercase().contains("foreign key"), "{err}");
}

#[tokio::test]
async fn migrating_an_up_to_date_database_changes_nothing() {
    let db = TestDb::new().await;
    let before = count_rows(&db.db, "seaql_migrations").await;
    assert!(before >= 1, "the test database was migrated");
    chatter_store::migrate(&db.db)
        .await
        .expect("second migrate");
    chatter_store::migrate(&db.db).await.expect("third migrate");
    assert_eq!(count_rows(&db.db, "seaql_migrations").await, before);
    for t in TABLES {
        count_rows(&db.db, t).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The job outbox

#[tokio::test]
async fn concurrent_workers_never_run_a_job_twice() {
    let db = TestDb::new().await;
    const JOBS: usize = 300;
    const WORKERS: usize = 6;
    let now = SystemClock.now_ms();
    let mut ids = Vec::new();
    for i in 0..JOBS {
        ids.push(
            enqueue(
                &db.db,
                NewJob::new("count", serde_json::json!({ "i": i }), now),
                now,
            )
            .await,
        );
    }
    // Every claim of every job, by worker.
    let seen: Arc<Mutex<HashMap<Uuid, Vec<usize>>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let (conn, seen) = (db.db.clone(), seen.clone());
        tasks.spawn(async move {
            loop {
                let batch = jobs::claim(&conn, SystemClock.now_ms(), 60_000, 5)
                    .await
                    .expect("claim");
                if batch.is_empty() {
                    break;
                }
                for j in batch {
                    assert_eq!(j.attempts, 1, "job {} was claimed before", j.id);
                    seen.lock()
                        .expect("not poisoned")
                        .entry(j.id)
                        .or_default()
                        .push(w);
                    tokio::task::yield_now().await;
                    let done = jobs::complete(&conn, j.id, &j.locked_by, SystemClock.now_ms())
                        .await
                        .expect("complete");
                    assert!(done, "a worker lost a claim it held under a valid lease");
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("worker task");
    }
    let seen = seen.lock().expect("not poisoned").clone();
    assert_eq!(seen.len(), JOBS, "every job was claimed");
    let twice: Vec<_> = seen.iter().filter(|(_, w)| w.len() != 1).collect();
    assert!(twice.is_empty(), "claimed more than once: {twice:?}");
    for id in ids {
        let row = job_row(&db.db, id).await;
        assert_eq!(row.status, jobs::DONE);
        assert_eq!(row.attempts, 1);
    }
    assert_eq!(
        jobs::count(&db.db, jobs::DONE).await.expect("count"),
        JOBS as u64
    );
    assert!(jobs::claim(&db.db, SystemClock.now_ms() + DAY, 60_000, 10)
        .await
        .expect("claim")
        .is_empty());
}

// Leases run on the database's clock on PostgreSQL, which no test can move: the two tests
// below wait out short real leases (on SQLite the same code passes the system clock as `now`).

#[tokio::test]
async fn a_job_whose_worker_died_is_claimed_again_after_its_lease() {
    let db = TestDb::new().await;
    let now = || SystemClock.now_ms();
    let id = enqueue(
        &db.db,
        NewJob::new("send", serde_json::json!({}), now()),
        now(),
    )
    .await;
    // The first worker claims it for 1.5 s and then dies without a word.
    let first = claim_one(&db.db, now(), 1_500).await.expect("first claim");
    assert_eq!((first.id, first.attempts), (id, 1));
    assert!(
        claim_one(&db.db, now(), 1_500).await.is_none(),
        "a job was handed out while its lease was valid"
    );
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let second = claim_one(&db.db, now(), 30_000)
        .await
        .expect("claimed again once the lease ran out");
    assert_eq!((second.id, second.attempts), (id, 2));
    assert_ne!(second.locked_by, first.locked_by);
    // The dead worker comes back: its word no longer counts.
    assert!(!jobs::complete(&db.db, id, &first.locked_by, now())
        .await
        .expect("complete"));
    assert!(
        !jobs::fail(&db.db, id, &first.locked_by, now(), "late", None)
            .await
            .expect("fail")
    );
    assert_eq!(job_row(&db.db, id).await.status, jobs::RUNNING);
    assert!(jobs::complete(&db.db, id, &second.locked_by, now())
        .await
        .expect("complete"));
    let row = job_row(&db.db, id).await;
    assert_eq!((row.status.as_str(), row.attempts), (jobs::DONE, 2));
}

#[tokio::test]
async fn a_heartbeat_keeps_a_long_job_from_being_taken() {
    let db = TestDb::new().await;
    let now = || SystemClock.now_ms();
    let id = enqueue(
        &db.db,
        NewJob::new("long", serde_json::json!({}), now()),
        now(),
    )
    .await;
    let c = claim_one(&db.db, now(), 1_000).await.expect("claim");
    assert!(jobs::extend(&db.db, id, &c.locked_by, now(), 3_000)
        .await
        .expect("extend"));
    assert!(!jobs::extend(&db.db, id, "not-the-token", now(), 60_000)
        .await
        .expect("extend"));
    // Past the first lease, within the renewed one.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(claim_one(&db.db, now(), 30_000).await.is_none());
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    assert!(claim_one(&db.db, now(), 30_000).await.is_some());
}

#[tokio::test]
async fn a_finished_job_is_never_run_again() {
    let db = TestDb::new().await;
    let id = enqueue(&db.db, NewJob::new("send", serde_json::json!({}), T0), T0).await;
    let c = claim_one(&db.db, T0, 1_000).await.expect("claim");
    assert!(jobs::complete(&db.db, id, &c.locked_by, T0 + 10)
        .await
        .expect("complete"));
    // Not even once its (former) lease is long gone.
    assert!(claim_one(&db.db, T0 + DAY, 1_000).await.is_none());
    assert!(!jobs::complete(&db.db, id, &c.locked_by, T0 + DAY)
        .await
        .expect("complete twice"));
    let row = job_row(&db.db, id).await;
    assert_eq!(row.status, jobs::DONE);
    assert_eq!(row.finished_at, Some(T0 + 10));
    assert_eq!(row.locked_by, None);
}

#[tokio::test]
async fn a_scheduled_job_waits_for_its_time() {
    let db = TestDb::new().await;
    let at = T0 + 10 * MINUTE;
    let later = enqueue(
        &db.db,
        NewJob::new("remind", serde_json::json!({}), T0).run_at(at),
        T0,
    )
    .await;
    let now = enqueue(&db.db, NewJob::new("now", serde_json::json!({}), T0), T0).await;
    let all = jobs::claim(&db.db, T0, 1_000, 10).await.expect("claim");
    assert_eq!(all.iter().map(|c| c.id).collect::<Vec<_>>(), vec![now]);
    assert!(jobs::complete(&db.db, now, &all[0].locked_by, T0 + 1)
        .await
        .expect("complete"));
    assert!(claim_one(&db.db, at - 1, 1_000).await.is_none());
    let c = claim_one(&db.db, at, 1_000).await.expect("due now");
    assert_eq!(c.id, later);
}

#[tokio::test]
async fn due_jobs_are_claimed_oldest_first() {
    let db = TestDb::new().await;
    let late = enqueue(
        &db.db,
        NewJob::new("x", serde_json::json!({}), T0).run_at(T0 + 2),
        T0,
    )
    .await;
    let early = enqueue(
        &db.db,
        NewJob::new("x", serde_json::json!({}), T0).run_at(T0 + 1),
        T0,
    )
    .await;
    assert_eq!(
        claim_one(&db.db, T0 + 5, 1_000).await.map(|c| c.id),
        Some(early)
    );
    assert_eq!(
        claim_one(&db.db, T0 + 5, 1_000).await.map(|c| c.id),
        Some(late)
    );
    assert!(claim_one(&db.db, T0 + 5, 1_000).await.is_none());
}

#[tokio::test]
async fn a_dedup_key_admits_one_pending_job() {
    let db = TestDb::new().await;
    let job = || NewJob::new("sync", serde_json::json!({}), T0).dedup("sync:contact-1");
    let first = jobs::enqueue(&db.db, job(), T0)
        .await
        .expect("enqueue")
        .expect("first is enqueued");
    assert_eq!(
        jobs::enqueue(&db.db, job(), T0).await.expect("enqueue"),
        None
    );
    // Still one while it runs.
    let c = claim_one(&db.db, T0, 1_000).await.expect("claim");
    assert_eq!(
        jobs::enqueue(&db.db, job(), T0).await.expect("enqueue"),
        None
    );
    assert!(jobs::complete(&db.db, first, &c.locked_by, T0 + 1)
        .await
        .expect("complete"));
    let second = jobs::enqueue(&db.db, job(), T0 + 2)
        .await
        .expect("enqueue")
        .expect("the key is free once the first is done");
    assert_ne!(second, first);
    // A dead job frees its key as well.
    let c = claim_one(&db.db, T0 + 2, 1_000).await.expect("claim");
    assert!(jobs::fail(&db.db, second, &c.locked_by, T0 + 3, "no", None)
        .await
        .expect("fail"));
    assert!(jobs::enqueue(&db.db, job(), T0 + 4)
        .await
        .expect("enqueue")
        .is_some());
}

#[tokio::test]
async fn a_failed_job_is_retried_later_or_parked_as_dead() {
    let db = TestDb::new().await;
    let company = Uuid::now_v7();
    let id = enqueue(
        &db.db,
        NewJob::new("crm", serde_json::json!({}), T0).company(company),
        T0,
    )
    .await;
    let c = claim_one(&db.db, T0, 1_000).await.expect("claim");
    let retry_at = T0 + 5_000;
    assert!(jobs::fail(
        &db.db,
        id,
        &c.locked_by,
        T0 + 1,
        "CRM said 503",
        Some(retry_at)
    )
    .await
    .expect("fail"));
    let row = job_row(&db.db, id).await;
    assert_eq!(row.status, jobs::QUEUED);
    assert_eq!(row.last_error.as_deref(), Some("CRM said 503"));
    assert!(claim_one(&db.db, retry_at - 1, 1_000).await.is_none());
    let c = claim_one(&db.db, retry_at, 1_000)
        .await
        .expect("claimed at retry_at");
    assert_eq!(c.attempts, 2);
    assert_eq!(
        job_row(&db.db, id).await.last_error.as_deref(),
        Some("CRM said 503"),
        "the error stays visible while the retry runs"
    );

    // Without a retry time it is dead: never claimed again on its own.
    assert!(
        jobs::fail(&db.db, id, &c.locked_by, retry_at + 1, "CRM said 400", None)
            .await
            .expect("fail")
    );
    let row = job_row(&db.db, id).await;
    assert_eq!(row.status, jobs::DEAD);
    assert_eq!(row.last_error.as_deref(), Some("CRM said 400"));
    assert!(claim_one(&db.db, T0 + DAY, 1_000).await.is_none());
    let dead = jobs::list(&db.db, jobs::DEAD, Some(company), 10)
        .await
        .expect("list");
    assert_eq!(dead.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
    assert!(jobs::list(&db.db, jobs::DEAD, Some(Uuid::now_v7()), 10)
        .await
        .expect("list")
        .is_empty());

    // Another company cannot bring it back; its own can, with a fresh set of attempts.
    assert!(
        !jobs::retry_dead(&db.db, id, Some(Uuid::now_v7()), T0 + DAY)
            .await
            .expect("retry")
    );
    assert_eq!(job_row(&db.db, id).await.status, jobs::DEAD);
    assert!(jobs::retry_dead(&db.db, id, Some(company), T0 + DAY)
        .await
        .expect("retry"));
    let row = job_row(&db.db, id).await;
    assert_eq!((row.status.as_str(), row.attempts), (jobs::QUEUED, 0));
    // Retrying something that is not dead does nothing.
    assert!(!jobs::retry_dead(&db.db, id, Some(company), T0 + DAY)
        .await
        .expect("retry"));
    let c = claim_one(&db.db, T0 + DAY, 1_000)
        .await
        .expect("runs again");
    assert_eq!((c.id, c.attempts), (id, 1));
}

// ---------------------------------------------------------------------------------------------
// The worker runtime

/// Fails with a transient error `failures` times, then succeeds.
struct Flaky {
    failures: usize,
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl JobHandler for Flaky {
    async fn run(&self, _core: &Core, _job: &Claimed) -> Result<(), JobError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.failures {
            Err(JobError::Transient(format!("mail server busy ({n})")))
        } else {
            Ok(())
        }
    }
}

struct Refuses;

#[async_trait]
impl JobHandler for Refuses {
    async fn run(&self, _core: &Core, _job: &Claimed) -> Result<(), JobError> {
        Err(JobError::Permanent("the CRM rejected the lead".into()))
    }
}

struct Counts(Arc<AtomicUsize>);

#[async_trait]
impl JobHandler for Counts {
    async fn run(&self, _core: &Core, _job: &Claimed) -> Result<(), JobError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Says it started, then takes a while: a job in flight when shutdown comes.
struct Slow(tokio::sync::mpsc::UnboundedSender<()>);

#[async_trait]
impl JobHandler for Slow {
    async fn run(&self, _core: &Core, _job: &Claimed) -> Result<(), JobError> {
        let _ = self.0.send(());
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }
}

/// Claims the one due job at the clock's time and runs it through the runtime.
async fn run_due(core: &Core, registry: &Registry) -> Claimed {
    let c = claim_one(&core.db, core.now(), 30_000)
        .await
        .expect("a job is due");
    worker::execute(core, registry, c.clone(), 30_000).await;
    c
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_until_the_job_succeeds() {
    let db = TestDb::new().await;
    let (core, clock) = core_with_clock(&db);
    let calls = Arc::new(AtomicUsize::new(0));
    let registry = Registry::default().with(
        "flaky",
        Flaky {
            failures: 2,
            calls: calls.clone(),
        },
    );
    let id = enqueue(&db.db, NewJob::new("flaky", serde_json::json!({}), T0), T0).await;

    run_due(&core, &registry).await;
    let row = job_row(&db.db, id).await;
    assert_eq!(row.status, jobs::QUEUED);
    assert!(row
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("mail server busy (0)"));
    // Backoff: not due again at once, due within the first step's bound (1 s).
    assert!(
        row.run_at > T0 && row.run_at <= T0 + 1_000,
        "run_at {}",
        row.run_at - T0
    );
    assert!(claim_one(&db.db, T0, 30_000).await.is_none());

    clock.set(row.run_at);
    run_due(&core, &registry).await;
    let row2 = job_row(&db.db, id).await;
    assert_eq!((row2.status.as_str(), row2.attempts), (jobs::QUEUED, 2));
    assert!(
        row2.run_at - clock.now_ms() >= 1_000,
        "the second wait is longer"
    );

    clock.set(row2.run_at);
    run_due(&core, &registry).await;
    let row3 = job_row(&db.db, id).await;
    assert_eq!((row3.status.as_str(), row3.attempts), (jobs::DONE, 3));
    assert_eq!(row3.last_error, None);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_job_that_keeps_failing_is_parked_after_its_last_attempt() {
    let db = TestDb::new().await;
    let (core, clock) = core_with_clock(&db);
    let calls = Arc::new(AtomicUsize::new(0));
    let registry = Registry::default().with(
        "flaky",
        Flaky {
            failures: usize::MAX,
            calls: calls.clone(),
        },
    );
    let id = enqueue(
        &db.db,
        NewJob::new("flaky", serde_json::json!({}), T0).max_attempts(2),
        T0,
    )
    .await;
    run_due(&core, &registry).await;
    clock.set(job_row(&db.db, id).await.run_at);
    run_due(&core, &registry).await;
    let row = job_row(&db.db, id).await;
    assert_eq!((row.status.as_str(), row.attempts), (jobs::DEAD, 2));
    assert!(row
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("mail server busy (1)"));
    assert!(claim_one(&db.db, T0 + DAY, 1_000).await.is_none());
}

#[tokio::test]
async fn permanent_failures_and_unknown_kinds_are_parked_with_their_reason() {
    let db = TestDb::new().await;
    let (core, _clock) = core_with_clock(&db);
    let registry = Registry::default().with("crm_lead", Refuses);
    let refused = enqueue(
        &db.db,
        NewJob::new("crm_lead", serde_json::json!({}), T0),
        T0,
    )
    .await;
    run_due(&core, &registry).await;
    let row = job_row(&db.db, refused).await;
    assert_eq!((row.status.as_str(), row.attempts), (jobs::DEAD, 1));
    assert!(row
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("the CRM rejected the lead"));

    let unknown = enqueue(
        &db.db,
        NewJob::new("no_such_kind", serde_json::json!({}), T0),
        T0,
    )
    .await;
    run_due(&core, &registry).await;
    let row = job_row(&db.db, unknown).await;
    assert_eq!(row.status, jobs::DEAD);
    assert!(row
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("no_such_kind"));
    assert!(claim_one(&db.db, T0 + DAY, 1_000).await.is_none());
}

/// Polls until `f` holds, for at most `secs` (a bound for a hang, not a timing assert).
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_worker_runs_every_queued_job_and_stops_gracefully() {
    let db = TestDb::new().await;
    let (secrets, _) = Secrets::load_or_create(None, db.data_dir()).expect("master key");
    let core = Core::new(
        db.db.clone(),
        Arc::new(SystemClock),
        secrets,
        Arc::new(FileMailer {
            dir: db.data_dir().join("outbox"),
        }),
        CoreConfig::new("http://127.0.0.1:9", db.data_dir().to_path_buf()),
    );
    let count = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let registry = Registry::default()
        .with("count", Counts(count.clone()))
        .with("slow", Slow(started_tx));
    let now = core.now();
    for i in 0..50 {
        enqueue(
            &db.db,
            NewJob::new("count", serde_json::json!({ "i": i }), now),
            now,
        )
        .await;
    }
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = WorkerConfig {
        concurrency: 4,
        lease_ms: 30_000,
        poll_ms: 20,
        ..Default::default()
    };
    let runner = tokio::spawn(worker::run(core.clone(), registry, cfg, stop_rx));
    eventually(60, "50 jobs done", || async {
        jobs::count(&db.db, jobs::DONE).await.expect("count") == 50
    })
    .await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        50,
        "each job ran exactly once"
    );

    // A job in flight when shutdown comes is finished, not abandoned.
    let slow = enqueue(
        &db.db,
        NewJob::new("slow", serde_json::json!({}), core.now()),
        core.now(),
    )
    .await;
    core.jobs_notify.notify_waiters();
    tokio::time::timeout(Duration::from_secs(30), started.recv())
        .await
        .expect("the slow job starts")
        .expect("sender alive");
    stop.send(true).expect("worker listens");
    tokio::time::timeout(Duration::from_secs(30), runner)
        .await
        .expect("the worker stops after shutdown")
        .expect("worker task");
    assert_eq!(job_row(&db.db, slow).await.status, jobs::DONE);

    // Nothing is claimed after it stopped.
    let after = enqueue(
        &db.db,
        NewJob::new("count", serde_json::json!({}), core.now()),
        core.now(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(job_row(&db.db, after).await.status, jobs::QUEUED);
}

// ---------------------------------------------------------------------------------------------
// Leases

// Like job leases, these run on the database's clock on PostgreSQL: real time, short leases.
#[tokio::test]
async fn a_lease_has_one_holder_until_it_expires() {
    let db = TestDb::new().await;
    let conn = &db.db;
    let now = || SystemClock.now_ms();
    let name = "telegram_bot:42";
    let ttl = 2_000;
    assert!(leases::acquire(conn, name, "node-a", now(), ttl)
        .await
        .expect("acquire"));
    assert!(!leases::acquire(conn, name, "node-b", now(), ttl)
        .await
        .expect("acquire"));
    if db.is_postgres() {
        // A node whose clock runs 5 minutes ahead does not see the lease as expired.
        assert!(
            !leases::acquire(conn, name, "node-c", now() + 5 * MINUTE, ttl)
                .await
                .expect("acquire")
        );
    }
    // A renews at 1 s: the lease now runs to 3 s.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(leases::acquire(conn, name, "node-a", now(), ttl)
        .await
        .expect("renew"));
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(!leases::acquire(conn, name, "node-b", now(), ttl)
        .await
        .expect("acquire"));
    // A stops renewing; after expiry B takes over.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(leases::acquire(conn, name, "node-b", now(), ttl)
        .await
        .expect("take over"));
    assert!(!leases::acquire(conn, name, "node-a", now(), ttl)
        .await
        .expect("acquire"));
    assert!(!leases::release(conn, name, "node-a")
        .await
        .expect("release"));
    assert!(!leases::acquire(conn, name, "node-a", now(), ttl)
        .await
        .expect("acquire"));
    // Other names are independent.
    assert!(
        leases::acquire(conn, "telegram_bot:43", "node-a", now(), ttl)
            .await
            .expect("acquire")
    );
    assert!(leases::release(conn, name, "node-b")
        .await
        .expect("release"));
    assert!(leases::acquire(conn, name, "node-a", now(), ttl)
        .await
        .expect("acquire"));
}

#[tokio::test]
async fn racing_nodes_get_exactly_one_lease() {
    let db = TestDb::new().await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..10 {
        let conn = db.db.clone();
        tasks.spawn(async move {
            let holder = format!("node-{n}");
            let won = leases::acquire(&conn, "vk_poll:7", &holder, T0, 30_000)
                .await
                .expect("acquire");
            (holder, won)
        });
    }
    let mut winners = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (holder, won) = r.expect("task");
        if won {
            winners.push(holder);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    // The table agrees with the winner.
    let row = db
        .db
        .query_one(Statement::from_string(
            db.db.get_database_backend(),
            "SELECT holder FROM leases WHERE name = 'vk_poll:7'",
        ))
        .await
        .expect("select")
        .expect("lease row");
    assert_eq!(
        row.try_get::<String>("", "holder").expect("holder"),
        winners[0]
    );
}

// ---------------------------------------------------------------------------------------------
// Backups

/// Two companies made through the product: members, an invite, an API key, sessions, audit.
async fn populate(app: &TestApp) {
    let owner = Session::sign_up(
        app,
        "Рога и Копыта",
        "Анна",
        "anna@example.com",
        "correct horse 1",
    )
    .await;
    Session::sign_up(
        app,
        "Other Co",
        "Boris",
        "boris@example.com",
        "correct horse 2",
    )
    .await;
    let r = owner
        .post_from(
            "/app/team",
            "/app/team/invite",
            &[("email", "vera@example.com"), ("role", "manager")],
        )
        .await;
    assert_eq!(r.status(), 200, "invite");
    let r = owner
        .post_from(
            "/app/settings",
            "/app/settings/api-keys",
            &[("name", "zapier")],
        )
        .await;
    assert!(
        r.status().is_success() || r.status() == 303,
        "api key: {}",
        r.status()
    );
}

#[tokio::test]
async fn a_backup_restores_every_row() {
    let app = TestApp::builder().without_workers().start().await;
    populate(&app).await;
    let before = table_counts(&app.db.db).await;
    for (table, n) in &before {
        if [
            "companies",
            "users",
            "memberships",
            "sessions",
            "invites",
            "audit_log",
            "api_keys",
            "jobs",
        ]
        .contains(table)
        {
            assert!(*n > 0, "the product wrote no {table}");
        }
    }
    let made = backup::backup_now(&app.core, &app.db.url, "manual")
        .await
        .expect("backup");
    assert_eq!(made.status, "ok");
    let path = std::path::PathBuf::from(&made.path);
    assert!(path.starts_with(app.db.data_dir().join("backups")));
    assert!(std::fs::metadata(&path).expect("backup file").len() > 0);
    assert_eq!(
        made.size_bytes as u64,
        std::fs::metadata(&path).expect("file").len()
    );
    // The backup is recorded for Settings (after the copy was taken).
    assert_eq!(count_rows(&app.db.db, "backups").await, 1);
    let people_before = people(&app.db.db).await;

    if app.db.is_postgres() {
        // Into a brand-new empty database, as on a new server: a fresh TestDb with its schema
        // removed (TestDb drops it afterwards).
        let target = TestDb::new().await;
        target
            .db
            .execute_unprepared("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
            .await
            .expect("empty the target database");
        let msg = backup::restore(&target.url, target.data_dir(), &path, None)
            .await
            .expect("pg_restore into an empty database");
        assert!(msg.contains("restored"), "{msg}");
        let restored = chatter_store::connect(&target.url).await.expect("connect");
        assert_eq!(table_counts(&restored).await, before);
        assert_eq!(people(&restored).await, people_before);
        let _ = restored.close().await;

        // And over an existing database of the same schema (restore on the same server).
        let target = TestDb::new().await;
        backup::restore(&target.url, target.data_dir(), &path, None)
            .await
            .expect("pg_restore over an existing schema");
        assert_eq!(table_counts(&target.db).await, before);
    } else {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = chatter_store::sqlite_url_in(dir.path());
        let msg = backup::restore(&url, dir.path(), &path, None)
            .await
            .expect("restore");
        assert!(msg.contains("chatter.db"), "{msg}");
        let restored = chatter_store::connect(&url)
            .await
            .expect("open the restored db");
        assert_eq!(table_counts(&restored).await, before);
        assert_eq!(people(&restored).await, people_before);
        // The restored database is current: migrating it is a no-op, and it takes writes.
        chatter_store::migrate(&restored)
            .await
            .expect("migrate restored");
        enqueue(&restored, NewJob::new("x", serde_json::json!({}), T0), T0).await;
        let _ = restored.close().await;
    }
    app.stop().await;
}

/// Who is in the database: every company and user, by id and name.
async fn people(db: &DatabaseConnection) -> (Vec<(Uuid, String)>, Vec<(Uuid, String)>) {
    use chatter_store::entity::{company, user};
    let mut companies: Vec<_> = company::Entity::find()
        .all(db)
        .await
        .expect("companies")
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let mut users: Vec<_> = user::Entity::find()
        .all(db)
        .await
        .expect("users")
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect();
    companies.sort();
    users.sort();
    (companies, users)
}

#[tokio::test]
async fn restore_refuses_a_file_that_is_not_a_backup_and_keeps_the_current_database() {
    let db = TestDb::new().await;
    if db.is_postgres() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let current = dir.path().join("chatter.db");
    std::fs::write(&current, b"the current database").expect("write");
    let bogus = dir.path().join("notes.txt");
    std::fs::write(&bogus, "these are not the rows you are looking for").expect("write");
    let url = chatter_store::sqlite_url_in(dir.path());
    let err = backup::restore(&url, dir.path(), &bogus, None)
        .await
        .expect_err("a text file is refused");
    assert!(err.contains("not a SQLite database"), "{err}");
    assert!(
        err.contains("notes.txt"),
        "the message names the file: {err}"
    );
    let short = dir.path().join("short");
    std::fs::write(&short, "SQLite").expect("write");
    let err = backup::restore(&url, dir.path(), &short, None)
        .await
        .expect_err("a truncated file is refused");
    assert!(err.contains("not a Chatter SQLite backup"), "{err}");
    let err = backup::restore(&url, dir.path(), &dir.path().join("missing.db"), None)
        .await
        .expect_err("a missing file is refused");
    assert!(err.contains("missing.db"), "{err}");
    assert_eq!(
        std::fs::read(&current).expect("still there"),
        b"the current database",
        "a refused restore left the current database alone"
    );
}

#[tokio::test]
async fn the_daily_backup_is_queued_once_and_makes_a_backup() {
    let db = TestDb::new().await;
    let (core, clock) = core_with_clock(&db);
    backup::schedule_daily(&core).await.expect("schedule");
    backup::schedule_daily(&core).await.expect("schedule again");
    let queued = jobs::list(&db.db, jobs::QUEUED, None, 10)
        .await
        .expect("list");
    let daily: Vec<_> = queued
        .iter()
        .filter(|j| j.kind == backup::DailyBackup::NAME)
        .collect();
    assert_eq!(daily.len(), 1, "exactly one daily backup is queued");
    // At the next 02:00 UTC.
    assert_eq!(daily[0].run_at, T0 + 2 * 3600 * 1000);
    assert!(claim_one(&db.db, T0, 30_000).await.is_none());

    // The job needs the database URL for pg_dump; it is process-wide, so run it only when it
    // names this test's database.
    let _ = backup::DATABASE_URL.set(db.url.clone());
    if backup::DATABASE_URL.get() != Some(&db.url) && db.is_postgres() {
        return;
    }
    clock.set(daily[0].run_at);
    let ran = run_due(&core, &Registry::standard()).await;
    let row = job_row(&db.db, ran.id).await;
    assert_eq!(row.status, jobs::DONE, "{:?}", row.last_error);
    let made = backup::list(&core, 10).await.expect("list backups");
    assert_eq!(made.len(), 1);
    assert_eq!(
        (made[0].trigger.as_str(), made[0].status.as_str()),
        ("daily", "ok")
    );
    assert!(Path::new(&made[0].path).exists());
    // The next day's is queued, still only one.
    let next: Vec<_> = jobs::list(&db.db, jobs::QUEUED, None, 10)
        .await
        .expect("list")
        .into_iter()
        .filter(|j| j.kind == backup::DailyBackup::NAME)
        .collect();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].run_at, daily[0].run_at + DAY);
    backup::schedule_daily(&core).await.expect("schedule");
    assert_eq!(
        jobs::list(&db.db, jobs::QUEUED, None, 10)
            .await
            .expect("list")
            .iter()
            .filter(|j| j.kind == backup::DailyBackup::NAME)
            .count(),
        1
    );
}

#[tokio::test]
async fn jobs_queued_by_the_string_kind_code_run_after_the_upgrade() {
    let db = TestDb::new().await;
    let (core, _clock) = core_with_clock(&db);
    let registry = Registry::standard();
    // A mail as `mailer::enqueue` queued it before jobs were typed: kind string + JSON.
    let mail = enqueue(
        &db.db,
        NewJob::new(
            "send_email",
            serde_json::json!({
                "to": "old@example.com",
                "subject": "Queued before the upgrade",
                "body": core.secrets.encrypt("Still delivered."),
            }),
            T0,
        ),
        T0,
    )
    .await;
    run_due(&core, &registry).await;
    let row = job_row(&db.db, mail).await;
    assert_eq!(row.status, jobs::DONE, "{:?}", row.last_error);
    let sent: Vec<String> = std::fs::read_dir(db.data_dir().join("outbox"))
        .expect("outbox")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("mail"))
        .collect();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("To: old@example.com"), "{}", sent[0]);
    assert!(sent[0].contains("Still delivered."), "{}", sent[0]);

    // A reply whose message is gone by now: decoded and finished, not refused.
    let reply = enqueue(
        &db.db,
        NewJob::new(
            "send_message",
            serde_json::json!({"message_id": Uuid::now_v7()}),
            T0,
        )
        .max_attempts(12),
        T0,
    )
    .await;
    run_due(&core, &registry).await;
    assert_eq!(job_row(&db.db, reply).await.status, jobs::DONE);

    // A payload that does not parse can never run: dead at once, the job named in the error.
    let broken = enqueue(
        &db.db,
        NewJob::new("fetch_file", serde_json::json!({"message": 1}), T0),
        T0,
    )
    .await;
    run_due(&core, &registry).await;
    let row = job_row(&db.db, broken).await;
    assert_eq!((row.status.as_str(), row.attempts), (jobs::DEAD, 1));
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("fetch_file"), "{error}");
}
