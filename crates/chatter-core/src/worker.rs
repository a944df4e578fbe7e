//! The job runtime: claims due jobs with a lease, runs their handler, and records the
//! outcome — done, retried with backoff and jitter, or parked as dead. A heartbeat keeps the
//! lease while a handler runs; if the node dies, the lease expires and another node runs the
//! job again, so every handler is idempotent.

use crate::Core;
use async_trait::async_trait;
use chatter_store::jobs::{self, Claimed};
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

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

#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, core: &Core, job: &Claimed) -> Result<(), JobError>;

    /// Called when the job is parked as dead, so that what it stood for (a reply, say) can be
    /// marked failed where people see it, instead of waiting forever.
    async fn dead(&self, _core: &Core, _job: &Claimed, _reason: &str) {}

    /// Called after the job was recorded as done (its dedup key is free again), so that a
    /// handler draining a queue can enqueue itself again for work that arrived meanwhile.
    async fn done(&self, _core: &Core, _job: &Claimed) {}
}

/// Handlers by job kind.
#[derive(Clone, Default)]
pub struct Registry(HashMap<String, Arc<dyn JobHandler>>);

impl Registry {
    pub fn with(mut self, kind: &str, h: impl JobHandler) -> Self {
        self.0.insert(kind.to_string(), Arc::new(h));
        self
    }

    /// The handlers this crate provides (mail, backups).
    pub fn standard() -> Self {
        Registry::default()
            .with(crate::mailer::JOB_SEND_EMAIL, SendEmail)
            .with(crate::backup::JOB_BACKUP_DAILY, crate::backup::DailyBackup)
            .with(
                crate::accounts::JOB_PASSWORD_RESET,
                crate::accounts::PasswordResetMail,
            )
    }
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Jobs run at once on this node.
    pub concurrency: usize,
    pub lease_ms: i64,
    /// Idle poll interval (in-process enqueues wake the worker at once).
    pub poll_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            lease_ms: 60_000,
            poll_ms: 500,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct JobMetrics {
    pub done: AtomicU64,
    pub retried: AtomicU64,
    pub dead: AtomicU64,
}

pub static METRICS: JobMetrics = JobMetrics {
    done: AtomicU64::new(0),
    retried: AtomicU64::new(0),
    dead: AtomicU64::new(0),
};

/// Runs until `shutdown` turns true, then stops claiming and waits for running jobs.
pub async fn run(
    core: Core,
    registry: Registry,
    cfg: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let registry = Arc::new(registry);
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        while running.try_join_next().is_some() {}
        let free = cfg.concurrency.saturating_sub(running.len());
        let claimed = if free > 0 {
            match jobs::claim(&core.db, core.now(), cfg.lease_ms, free as u64).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim jobs");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let got = !claimed.is_empty();
        for job in claimed {
            let (core, registry, lease) = (core.clone(), registry.clone(), cfg.lease_ms);
            running.spawn(async move { execute(&core, &registry, job, lease).await });
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
    if n > 0 {
        tracing::info!(jobs = n, "waiting for running jobs to finish");
    }
    while running.join_next().await.is_some() {}
}

/// Runs one claimed job to its outcome.
pub async fn execute(core: &Core, registry: &Registry, job: Claimed, lease_ms: i64) {
    let token = job.locked_by.clone();
    let outcome = if job.attempts > job.max_attempts {
        Err(JobError::Permanent(format!(
            "gave up after {} attempts",
            job.max_attempts
        )))
    } else if let Some(h) = registry.0.get(&job.kind) {
        let heartbeat = {
            let (core, id, token) = (core.clone(), job.id, token.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis((lease_ms / 3).max(10) as u64)).await;
                    if !matches!(
                        jobs::extend(&core.db, id, &token, core.now() + lease_ms).await,
                        Ok(true)
                    ) {
                        break;
                    }
                }
            })
        };
        let r = h.run(core, &job).await;
        heartbeat.abort();
        r
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
            if let Some(h) = registry.0.get(&job.kind) {
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
                if let Some(h) = registry.0.get(&job.kind) {
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
                if let Some(h) = registry.0.get(&job.kind) {
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

/// Sends a queued mail.
struct SendEmail;

#[async_trait]
impl JobHandler for SendEmail {
    async fn run(&self, core: &Core, job: &Claimed) -> Result<(), JobError> {
        #[derive(serde::Deserialize)]
        struct P {
            to: String,
            subject: String,
            body: String,
        }
        let p: P = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::Permanent(format!("bad payload: {e}")))?;
        let body = core
            .secrets
            .decrypt(&p.body)
            .map_err(|e| JobError::Permanent(e.to_string()))?;
        core.mailer
            .send(&p.to, &p.subject, body.expose())
            .await
            .map_err(|e| match e {
                crate::mailer::MailError::Transient(m) => JobError::Transient(m),
                crate::mailer::MailError::Permanent(m) => JobError::Permanent(m),
            })
    }
}
