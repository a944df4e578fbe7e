//! Jobs across nodes: a dead node's running jobs are taken over once their short lease runs
//! out (and the takeover is counted), a live node's heartbeat keeps its jobs from being run
//! twice, a handler whose lease was taken stops, and a stopping node hands its unfinished jobs
//! back at once; on PostgreSQL, a node whose clock is minutes off neither takes a live node's
//! job nor leaves a dead node's job waiting, since the database's clock decides when a lease
//! ends. Each "node" is a worker runtime over the same database.

use async_trait::async_trait;
use chatter_core::jobs::worker::{self, JobError, JobHandler, Registry, WorkerConfig, METRICS};
use chatter_core::mailer::FileMailer;
use chatter_core::{Clock, Core, CoreConfig, OffsetClock, Secrets, SystemClock};
use chatter_store::entity::job;
use chatter_store::jobs::{self, Claimed, NewJob};
use chatter_testkit::TestDb;
use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

fn core(db: &TestDb) -> Core {
    core_with_clock(db, Arc::new(SystemClock))
}

fn core_with_clock(db: &TestDb, clock: Arc<dyn Clock>) -> Core {
    let (secrets, _) = Secrets::load_or_create(None, db.data_dir()).expect("master key");
    Core::new(
        db.db.clone(),
        clock,
        secrets,
        Arc::new(FileMailer {
            dir: db.data_dir().join("outbox"),
        }),
        CoreConfig::new("http://127.0.0.1:9", db.data_dir().to_path_buf()),
    )
}

/// Counts its runs, then waits `hold` (forever when `None`); sets `finished` if it completes.
struct Hold {
    runs: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    hold: Option<Duration>,
}

#[async_trait]
impl JobHandler for Hold {
    async fn run(&self, _core: &Core, _job: &Claimed) -> Result<(), JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        match self.hold {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Node {
    runs: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start_node(core: &Core, hold: Option<Duration>, lease_ms: i64, shutdown_ms: u64) -> Node {
    let runs = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let registry = Registry::default().with(
        "test.hold",
        Hold {
            runs: runs.clone(),
            finished: finished.clone(),
            hold,
        },
    );
    let (stop, rx) = watch::channel(false);
    let cfg = WorkerConfig {
        concurrency: 4,
        lease_ms,
        poll_ms: 20,
        shutdown_ms,
    };
    let task = tokio::spawn(worker::run(core.clone(), registry, cfg, rx));
    Node {
        runs,
        finished,
        stop,
        task,
    }
}

async fn enqueue(core: &Core) -> Uuid {
    jobs::enqueue(
        &core.db,
        NewJob::new("test.hold", serde_json::json!({}), core.now()),
        core.now(),
    )
    .await
    .expect("enqueue")
    .expect("new job")
}

async fn row(core: &Core, id: Uuid) -> job::Model {
    job::Entity::find_by_id(id)
        .one(&core.db)
        .await
        .expect("read job")
        .expect("job exists")
}

async fn wait_until<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_dead_nodes_running_job_is_taken_over_when_its_short_lease_ends() {
    let db = TestDb::new().await;
    let core = core(&db);
    let lease_ms = 1_500;
    let a = start_node(&core, None, lease_ms, 20_000);
    let id = enqueue(&core).await;
    wait_until(30, "node A runs the job", || async {
        a.runs.load(Ordering::SeqCst) == 1
    })
    .await;
    // Node A dies: its handler and heartbeat vanish without recording anything.
    a.task.abort();
    let _ = a.task.await;
    let died = Instant::now();
    let before = METRICS.taken_over.load(Ordering::SeqCst);
    let b = start_node(&core, Some(Duration::ZERO), lease_ms, 20_000);
    wait_until(30, "node B finishes the job", || async {
        row(&core, id).await.status == jobs::DONE
    })
    .await;
    let took = died.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "taken over only after {took:?}"
    );
    assert_eq!(b.runs.load(Ordering::SeqCst), 1, "node B ran it once");
    assert_eq!(row(&core, id).await.attempts, 2, "A's claim and B's");
    assert!(
        METRICS.taken_over.load(Ordering::SeqCst) > before,
        "the takeover is counted"
    );
    let _ = b.stop.send(true);
    let _ = b.task.await;
}

#[tokio::test]
async fn a_live_nodes_heartbeat_keeps_its_job_from_running_twice() {
    let db = TestDb::new().await;
    let core = core(&db);
    // A lease of 600 ms and a job of 3 s: only the heartbeat keeps the claim.
    let a = start_node(&core, Some(Duration::from_secs(3)), 600, 20_000);
    let id = enqueue(&core).await;
    wait_until(30, "node A runs the job", || async {
        a.runs.load(Ordering::SeqCst) == 1
    })
    .await;
    let b = start_node(&core, Some(Duration::ZERO), 600, 20_000);
    wait_until(30, "the job is done", || async {
        row(&core, id).await.status == jobs::DONE
    })
    .await;
    assert_eq!(a.finished.load(Ordering::SeqCst), 1, "A finished it");
    assert_eq!(b.runs.load(Ordering::SeqCst), 0, "B never ran it");
    assert_eq!(row(&core, id).await.attempts, 1);
    for n in [a, b] {
        let _ = n.stop.send(true);
        let _ = n.task.await;
    }
}

#[tokio::test]
async fn a_handler_whose_lease_was_taken_stops() {
    let db = TestDb::new().await;
    let core = core(&db);
    let a = start_node(&core, Some(Duration::from_secs(30)), 900, 20_000);
    let id = enqueue(&core).await;
    wait_until(30, "node A runs the job", || async {
        a.runs.load(Ordering::SeqCst) == 1
    })
    .await;
    let before = METRICS.lease_lost.load(Ordering::SeqCst);
    // Another node's claim replaced A's (as after a long pause of A's process).
    db.db
        .execute(Statement::from_sql_and_values(
            db.db.get_database_backend(),
            match db.db.get_database_backend() {
                sea_orm::DbBackend::Postgres => {
                    "UPDATE jobs SET locked_by = 'other-node/x' WHERE id = $1"
                }
                _ => "UPDATE jobs SET locked_by = 'other-node/x' WHERE id = ?",
            },
            [id.into()],
        ))
        .await
        .expect("take the claim");
    wait_until(10, "A's handler is stopped", || async {
        METRICS.lease_lost.load(Ordering::SeqCst) > before
    })
    .await;
    assert_eq!(a.finished.load(Ordering::SeqCst), 0);
    let _ = a.stop.send(true);
    let _ = a.task.await;
}

#[tokio::test]
async fn a_stopping_node_hands_unfinished_jobs_back_at_its_deadline() {
    let db = TestDb::new().await;
    let core = core(&db);
    let a = start_node(&core, None, 30_000, 300);
    let id = enqueue(&core).await;
    wait_until(30, "node A runs the job", || async {
        a.runs.load(Ordering::SeqCst) == 1
    })
    .await;
    let asked = Instant::now();
    a.stop.send(true).expect("worker listens");
    tokio::time::timeout(Duration::from_secs(10), a.task)
        .await
        .expect("the worker stops at its deadline")
        .expect("worker task");
    let stopped = asked.elapsed();
    assert!(
        stopped < Duration::from_secs(5),
        "stopped after {stopped:?}"
    );
    let r = row(&core, id).await;
    assert_eq!(r.status, jobs::QUEUED, "handed back, not left running");
    assert_eq!(r.attempts, 0, "the abandoned attempt is not counted");
    assert!(r.locked_by.is_none());
    // Another node takes it at once, without waiting for the 30 s lease.
    let b = start_node(&core, Some(Duration::ZERO), 30_000, 300);
    wait_until(5, "node B finishes the handed-back job", || async {
        row(&core, id).await.status == jobs::DONE
    })
    .await;
    let _ = b.stop.send(true);
    let _ = b.task.await;
}

const FIVE_MINUTES: i64 = 5 * 60_000;

/// `None` (saying so) unless the database is PostgreSQL, where leases follow its clock.
async fn postgres(test: &str) -> Option<TestDb> {
    let db = TestDb::new().await;
    if db.is_postgres() {
        Some(db)
    } else {
        eprintln!(
            "skipped {test}: on SQLite all nodes are one process with one clock; set \
             TEST_DATABASE_URL to test clocks that disagree on PostgreSQL"
        );
        None
    }
}

#[tokio::test]
async fn a_node_whose_clock_is_minutes_off_never_takes_a_live_nodes_job() {
    let Some(db) = postgres("a_node_whose_clock_is_minutes_off_never_takes_a_live_nodes_job").await
    else {
        return;
    };
    // The other node 5 minutes ahead (it would think every lease long expired), then the
    // holder 5 minutes behind (its leases would end before they were granted).
    let plain = core(&db);
    for (holder_off, other_off) in [(0, FIVE_MINUTES), (-FIVE_MINUTES, 0)] {
        let holder = core_with_clock(&db, Arc::new(OffsetClock(holder_off)));
        let other = core_with_clock(&db, Arc::new(OffsetClock(other_off)));
        // A lease of 1.5 s renewed every 0.5 s, a job of 3 s.
        let a = start_node(&holder, Some(Duration::from_secs(3)), 1_500, 20_000);
        // Enqueued by the holder: due times follow the enqueuing node's clock.
        let id = enqueue(&holder).await;
        wait_until(30, "the holder runs the job", || async {
            a.runs.load(Ordering::SeqCst) == 1
        })
        .await;
        let b = start_node(&other, Some(Duration::ZERO), 1_500, 20_000);
        wait_until(30, "the job is done", || async {
            row(&plain, id).await.status == jobs::DONE
        })
        .await;
        let clocks = format!("holder {holder_off:+} ms, other node {other_off:+} ms");
        assert_eq!(
            a.finished.load(Ordering::SeqCst),
            1,
            "{clocks}: holder finished it"
        );
        assert_eq!(
            b.runs.load(Ordering::SeqCst),
            0,
            "{clocks}: other node ran it"
        );
        assert_eq!(row(&plain, id).await.attempts, 1, "{clocks}");
        for n in [a, b] {
            let _ = n.stop.send(true);
            let _ = n.task.await;
        }
    }
}

#[tokio::test]
async fn a_node_minutes_behind_takes_a_dead_nodes_job_within_the_lease() {
    let Some(db) = postgres("a_node_minutes_behind_takes_a_dead_nodes_job_within_the_lease").await
    else {
        return;
    };
    let lease_ms = 1_500;
    // The dead node's clock ran 5 minutes ahead, the survivor's runs 5 minutes behind: by
    // either node's clock the lease would last another 10 minutes.
    let plain = core(&db);
    let ahead = core_with_clock(&db, Arc::new(OffsetClock(FIVE_MINUTES)));
    let behind = core_with_clock(&db, Arc::new(OffsetClock(-FIVE_MINUTES)));
    let a = start_node(&ahead, None, lease_ms, 20_000);
    let id = enqueue(&plain).await;
    wait_until(30, "the node ahead runs the job", || async {
        a.runs.load(Ordering::SeqCst) == 1
    })
    .await;
    a.task.abort();
    let _ = a.task.await;
    let died = Instant::now();
    let b = start_node(&behind, Some(Duration::ZERO), lease_ms, 20_000);
    wait_until(
        30,
        "the node behind finishes the dead node's job",
        || async { row(&plain, id).await.status == jobs::DONE },
    )
    .await;
    let took = died.elapsed();
    assert!(
        took < Duration::from_millis(lease_ms as u64 + 3_000),
        "taken over only after {took:?}"
    );
    assert_eq!(b.runs.load(Ordering::SeqCst), 1);
    assert_eq!(row(&plain, id).await.attempts, 2);
    let _ = b.stop.send(true);
    let _ = b.task.await;
}
