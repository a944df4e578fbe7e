//! The job runtime: claims due jobs with a lease, runs their handler, and records the
//! outcome — done, retried with backoff and jitter, or parked as dead. A heartbeat keeps the
//! lease while a handler runs; if the node dies, the lease expires and another node runs the
//! job again, so every handler is idempotent.

pub use super::registry::{JobHandler, Registry};
use crate::Core;
use chatter_store::jobs::{self, Claimed};
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

/// Why a handler failed, which decides what happens next.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth retrying later (network, 5xx, timeouts).
    #[error("transient: {0}")]
    Transient(String),
    /// The provider asked us to wait.
    #[error("rate limited for {retry_after_ms} ms: {message}")]
    RateLimited {
        retry_after_ms: i64,
        message: String,
    },
    /// Retrying cannot help; park the job as dead.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Not ready yet (e.g. an earlier reply of the conversation is still pending): run again
    /// later without using up an attempt, however long the wait.
    #[error("waiting {retry_after_ms} ms: {message}")]
    Wait {
        retry_after_ms: i64,
        message: String,
    },
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Jobs run at once on this node.
    pub concurrency: usize,
    /// How long a claim holds without a heartbeat: after a node dies, another node runs its
    /// jobs again once this has passed. The heartbeat renews it every third of it.
    pub lease_ms: i64,
    /// Idle poll interval (in-process enqueues wake the worker at once).
    pub poll_ms: u64,
    /// On shutdown, how long running jobs may take before they are stopped and handed back.
    pub shutdown_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            lease_ms: 10_000,
            poll_ms: 500,
            shutdown_ms: 20_000,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct JobMetrics {
    pub done: AtomicU64,
    pub retried: AtomicU64,
    pub dead: AtomicU64,
    /// Jobs this node claimed after another holder's lease expired (a dead or stalled node).
    pub taken_over: AtomicU64,
    /// Handlers stopped because their lease was lost, so that a job never runs twice at once.
    pub lease_lost: AtomicU64,
    /// Jobs handed back to the queue unfinished when this node stopped.
    pub handed_back: AtomicU64,
    /// Shutdowns whose running jobs all finished within the deadline.
    pub shutdown_clean: AtomicU64,
    /// Shutdowns that had to stop running jobs at the deadline.
    pub shutdown_deadline: AtomicU64,
    /// Handlers running on this node now.
    pub running: AtomicU64,
}

pub static METRICS: JobMetrics = JobMetrics {
    done: AtomicU64::new(0),
    retried: AtomicU64::new(0),
    dead: AtomicU64::new(0),
    taken_over: AtomicU64::new(0),
    lease_lost: AtomicU64::new(0),
    handed_back: AtomicU64::new(0),
    shutdown_clean: AtomicU64::new(0),
    shutdown_deadline: AtomicU64::new(0),
    running: AtomicU64::new(0),
};

/// This process's name in claim tokens and logs: host name and process id.
pub fn node_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().replace('/', "-"))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".to_string());
        format!("{host}:{}", std::process::id())
    })
}

/// Claims held by this node's running handlers, by job id, so that a stop can hand back the
/// ones that did not finish.
type Held = Arc<Mutex<HashMap<Uuid, String>>>;

/// Runs until `shutdown` turns true, then stops claiming, gives running jobs up to
/// `shutdown_ms` to finish, and hands the rest back to the queue for another node.
pub async fn run(
    core: Core,
    registry: Registry,
    cfg: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let registry = Arc::new(registry);
    let held: Held = Arc::default();
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        while running.try_join_next().is_some() {}
        let free = cfg.concurrency.saturating_sub(running.len());
        let claimed = if free > 0 {
            match jobs::claim_as(&core.db, node_name(), core.now(), cfg.lease_ms, free as u64).await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim jobs");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        report_takeovers(&claimed);
        let got = !claimed.is_empty();
        for job in claimed {
            let (core, registry, lease, held) =
                (core.clone(), registry.clone(), cfg.lease_ms, held.clone());
            lock(&held).insert(job.id, job.locked_by.clone());
            METRICS.running.fetch_add(1, Ordering::Relaxed);
            running.spawn(async move {
                let _running = RunningGuard;
                let id = job.id;
                execute(&core, &registry, job, lease).await;
                lock(&held).remove(&id);
            });
        }
        if got && running.len() < cfg.concurrency {
            continue;
        }
        tokio::select! {
            _ = core.jobs_notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(cfg.poll_ms)) => {}
            _ = running.join_next(), if !running.is_empty() => {}
            _ = shutdown.changed() => {}
        }
    }
    let n = running.len();
    if n == 0 {
        METRICS.shutdown_clean.fetch_add(1, Ordering::Relaxed);
        return;
    }
    tracing::info!(
        jobs = n,
        deadline_ms = cfg.shutdown_ms,
        "waiting for running jobs to finish"
    );
    let finished = tokio::time::timeout(Duration::from_millis(cfg.shutdown_ms), async {
        while running.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if finished {
        METRICS.shutdown_clean.fetch_add(1, Ordering::Relaxed);
        return;
    }
    running.abort_all();
    while running.join_next().await.is_some() {}
    let left: Vec<(Uuid, String)> = lock(&held).drain().collect();
    let mut handed = Vec::new();
    for (id, token) in left {
        match jobs::release(&core.db, id, &token, core.now()).await {
            Ok(true) => handed.push(id),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot hand a job back; it runs again when its lease expires")
            }
        }
    }
    METRICS.shutdown_deadline.fetch_add(1, Ordering::Relaxed);
    METRICS
        .handed_back
        .fetch_add(handed.len() as u64, Ordering::Relaxed);
    tracing::warn!(
        jobs = handed.len(),
        ids = ?handed,
        "shutdown deadline reached: stopped running jobs and handed them back to the queue"
    );
}

/// Counts a handler as running until its task ends, finished or aborted.
struct RunningGuard;

impl Drop for RunningGuard {
    fn drop(&mut self) {
        METRICS.running.fetch_sub(1, Ordering::Relaxed);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<Uuid, String>> {
    // A panic while holding this map cannot leave it inconsistent: inserts and removes only.
    held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Logs, once per claim and previous node, the jobs taken over from a node whose lease ran out.
fn report_takeovers(claimed: &[Claimed]) {
    let mut by_node: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for job in claimed {
        if let Some(node) = job.taken_over_from() {
            *by_node
                .entry(node)
                .or_default()
                .entry(job.kind.as_str())
                .or_default() += 1;
        }
    }
    for (node, kinds) in by_node {
        let total: usize = kinds.values().sum();
        METRICS
            .taken_over
            .fetch_add(total as u64, Ordering::Relaxed);
        tracing::warn!(
            from_node = node,
            by_node = node_name(),
            jobs = total,
            kinds = ?kinds,
            "took over jobs whose node stopped renewing their lease"
        );
    }
}

/// Runs one claimed job to its outcome. A heartbeat renews the lease every third of it; if
/// the lease is lost (another node took the job, or the database could not confirm it in
/// time), the handler is stopped, so that the job never runs on two nodes at once.
pub async fn execute(core: &Core, registry: &Registry, job: Claimed, lease_ms: i64) {
    let token = job.locked_by.clone();
    let outcome = if job.attempts > job.max_attempts {
        Err(JobError::Permanent(format!(
            "gave up after {} attempts",
            job.max_attempts
        )))
    } else if let Some(h) = registry.handler(&job.kind) {
        let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
        // Aborted when this future ends or is dropped (a stop that abandons the handler), so a
        // heartbeat never outlives its handler and keeps a lease no one is using.
        let _heartbeat = AbortOnDrop({
            let (core, id, token) = (core.clone(), job.id, token.clone());
            tokio::spawn(async move {
                let mut confirmed_until = core.now() + lease_ms;
                loop {
                    tokio::time::sleep(Duration::from_millis((lease_ms / 3).max(10) as u64)).await;
                    let now = core.now();
                    match jobs::extend(&core.db, id, &token, now, lease_ms).await {
                        Ok(true) => confirmed_until = now + lease_ms,
                        Ok(false) => break,
                        Err(e) => {
                            tracing::warn!(job = %id, error = %e, "cannot renew a job's lease");
                            // Stop before the lease can run out while we still run.
                            if core.now() + lease_ms / 3 >= confirmed_until {
                                break;
                            }
                        }
                    }
                }
                let _ = lost_tx.send(());
            })
        });
        let r = tokio::select! {
            r = h.run(core, &job) => Some(r),
            _ = lost_rx => None,
        };
        match r {
            Some(r) => r,
            None => {
                METRICS.lease_lost.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(job = %job.id, kind = job.kind, "lost the job's lease; stopped its handler so it does not run twice at once");
                return;
            }
        }
    } else {
        Err(JobError::Permanent(format!(
            "no handler for job kind {:?}",
            job.kind
        )))
    };
    let now = core.now();
    let recorded = match &outcome {
        Ok(()) => {
            METRICS.done.fetch_add(1, Ordering::Relaxed);
            jobs::complete(&core.db, job.id, &token, now).await
        }
        Err(JobError::Permanent(msg)) => {
            METRICS.dead.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(job = %job.id, kind = job.kind, error = msg, "job failed permanently");
            if let Some(h) = registry.handler(&job.kind) {
                h.dead(core, &job, msg).await;
            }
            jobs::fail(&core.db, job.id, &token, now, msg, None).await
        }
        Err(JobError::Wait { retry_after_ms, .. }) => {
            jobs::postpone(&core.db, job.id, &token, now, now + retry_after_ms).await
        }
        Err(e) => {
            let (at, msg) = match e {
                JobError::RateLimited { retry_after_ms, .. } => {
                    (now + retry_after_ms, e.to_string())
                }
                _ => (
                    now + jobs::backoff_ms(job.attempts, rand::thread_rng().gen()),
                    e.to_string(),
                ),
            };
            // Rate limits do not use up attempts beyond the normal budget plus a margin.
            let give_up =
                job.attempts >= job.max_attempts && !matches!(e, JobError::RateLimited { .. });
            if give_up {
                METRICS.dead.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(job = %job.id, kind = job.kind, error = msg, "job failed, no attempts left");
                if let Some(h) = registry.handler(&job.kind) {
                    h.dead(core, &job, &msg).await;
                }
                jobs::fail(&core.db, job.id, &token, now, &msg, None).await
            } else {
                METRICS.retried.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job = %job.id, kind = job.kind, error = msg, retry_in_ms = at - now, "job will be retried");
                jobs::fail(&core.db, job.id, &token, now, &msg, Some(at)).await
            }
        }
    };
    match recorded {
        Ok(true) => {
            if outcome.is_ok() {
                if let Some(h) = registry.handler(&job.kind) {
                    h.done(core, &job).await;
                }
            }
        }
        Ok(false) => {
            tracing::warn!(job = %job.id, "job lease was lost before its outcome was recorded")
        }
        Err(e) => tracing::error!(job = %job.id, error = %e, "cannot record job outcome"),
    }
}
