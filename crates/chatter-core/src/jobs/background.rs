//! Typed background jobs, on the model of crates.io's `BackgroundJob`: a job is a payload
//! struct with its name (the `jobs.kind` string) and its handler beside it, in the module that
//! owns the capability. [`BackgroundJob::enqueue`] writes the row the queue runs (kind,
//! JSON payload, dedup key, due time, attempts); the registry decodes the payload back into the
//! struct before `run`. The database format is the one the string-kind jobs wrote, so rows
//! queued before the types existed run unchanged.

use super::worker::{JobError, JobHandler};
use crate::{Core, CoreError, Result};
use async_trait::async_trait;
use chatter_store::jobs::{self, Claimed, NewJob};
use sea_orm::ConnectionTrait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use uuid::Uuid;

/// What a handler knows about the queued row it runs: its id, company, attempts and claim.
pub type JobMeta = Claimed;

/// A kind of background job. The struct is the payload, stored as JSON in `jobs.payload`.
#[async_trait]
pub trait BackgroundJob: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The `jobs.kind` string; never change it, queued rows name their handler by it.
    const NAME: &'static str;
    /// Attempts before the job is parked as dead.
    const MAX_ATTEMPTS: i32 = 10;

    /// While a job with this key is queued or running, enqueueing another is a no-op.
    /// [`JobOptions::dedup`] overrides it for one enqueue.
    fn dedup_key(&self) -> Option<String> {
        None
    }

    /// Does the work. Runs at least once per enqueue, maybe more (a lost lease), so it must be
    /// idempotent.
    async fn run(&self, core: &Core, job: &JobMeta) -> Result<(), JobError>;

    /// Called when the job is parked as dead, so that what it stood for (a reply, say) can be
    /// marked failed where people see it, instead of waiting forever.
    async fn dead(&self, _core: &Core, _job: &JobMeta, _reason: &str) {}

    /// Called after the job was recorded as done (its dedup key is free again), so that a job
    /// draining a queue can enqueue itself again for work that arrived meanwhile.
    async fn done(&self, _core: &Core, _job: &JobMeta) {}

    /// The row this job is queued as.
    fn to_new_job(&self, opts: &JobOptions) -> Result<NewJob> {
        let payload = serde_json::to_value(self)
            .map_err(|e| CoreError::Internal(format!("cannot encode a {} job: {e}", Self::NAME)))?;
        let mut job = NewJob::new(Self::NAME, payload, opts.now).max_attempts(Self::MAX_ATTEMPTS);
        if let Some(c) = opts.company {
            job = job.company(c);
        }
        if let Some(at) = opts.run_at {
            job = job.run_at(at);
        }
        if let Some(key) = opts.dedup.clone().or_else(|| self.dedup_key()) {
            job = job.dedup(key);
        }
        Ok(job)
    }

    /// Queues this job on `conn` (the caller's transaction, so it exists exactly when the
    /// change that caused it does). Returns its id, or `None` when a job with the same dedup
    /// key is pending. Does not wake the workers; callers do after their commit.
    async fn enqueue<C: ConnectionTrait>(
        &self,
        conn: &C,
        opts: JobOptions,
    ) -> Result<Option<Uuid>> {
        let job = self.to_new_job(&opts)?;
        Ok(jobs::enqueue(conn, job, opts.now).await?)
    }
}

/// How one job is queued beyond its payload: when, for which company, under which dedup key.
#[derive(Clone, Debug)]
pub struct JobOptions {
    now: i64,
    company: Option<Uuid>,
    run_at: Option<i64>,
    dedup: Option<String>,
}

impl JobOptions {
    /// Queued at `now` (Unix ms), due at once.
    pub fn at(now: i64) -> Self {
        Self {
            now,
            company: None,
            run_at: None,
            dedup: None,
        }
    }

    /// The company the job works for (shown with dead jobs, scopes retries).
    pub fn company(mut self, id: impl Into<Uuid>) -> Self {
        self.company = Some(id.into());
        self
    }

    /// Due at `at` (Unix ms) instead of now.
    pub fn run_at(mut self, at: i64) -> Self {
        self.run_at = Some(at);
        self
    }

    /// A dedup key for this enqueue instead of the job type's own.
    pub fn dedup(mut self, key: impl Into<String>) -> Self {
        self.dedup = Some(key.into());
        self
    }
}

/// Decodes a claimed row's payload into `J`. A payload that does not parse can never run:
/// it fails as permanent, with the job's name in the message and the log.
pub fn decode<J: BackgroundJob>(job: &JobMeta) -> Result<J, JobError> {
    serde_json::from_str(&job.payload).map_err(|e| {
        tracing::warn!(job = %job.id, kind = J::NAME, error = %e, "job payload does not parse");
        JobError::Permanent(format!("{} job: bad payload: {e}", J::NAME))
    })
}

/// Runs a typed job behind the queue's untyped handler interface.
pub(super) struct Typed<J>(PhantomData<fn() -> J>);

impl<J> Typed<J> {
    pub(super) fn new() -> Self {
        Self(PhantomData)
    }
}

#[async_trait]
impl<J: BackgroundJob> JobHandler for Typed<J> {
    async fn run(&self, core: &Core, job: &Claimed) -> Result<(), JobError> {
        decode::<J>(job)?.run(core, job).await
    }

    // A payload that does not parse was logged when it failed to run; nothing to add here.
    async fn dead(&self, core: &Core, job: &Claimed, reason: &str) {
        if let Ok(j) = serde_json::from_str::<J>(&job.payload) {
            j.dead(core, job, reason).await;
        }
    }

    async fn done(&self, core: &Core, job: &Claimed) {
        if let Ok(j) = serde_json::from_str::<J>(&job.payload) {
            j.done(core, job).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Ping {
        id: Uuid,
    }

    #[async_trait]
    impl BackgroundJob for Ping {
        const NAME: &'static str = "ping";
        async fn run(&self, _core: &Core, _job: &JobMeta) -> Result<(), JobError> {
            Ok(())
        }
    }

    fn claimed(payload: &str) -> Claimed {
        Claimed {
            id: Uuid::now_v7(),
            company_id: None,
            kind: Ping::NAME.into(),
            payload: payload.into(),
            attempts: 1,
            max_attempts: 10,
            locked_by: "node/x".into(),
            prev_locked_by: None,
        }
    }

    #[test]
    fn a_payload_that_does_not_parse_fails_for_good_naming_the_job() {
        let id = Uuid::now_v7();
        let ok = decode::<Ping>(&claimed(&format!(r#"{{"id":"{id}"}}"#))).expect("parses");
        assert_eq!(ok.id, id);
        match decode::<Ping>(&claimed(r#"{"id":42}"#)) {
            Err(JobError::Permanent(m)) => assert!(m.starts_with("ping job: bad payload"), "{m}"),
            Err(e) => panic!("not permanent: {e}"),
            Ok(_) => panic!("a number is not a UUID"),
        }
    }

    #[test]
    fn options_and_the_job_type_make_the_row() {
        let (id, company) = (Uuid::now_v7(), Uuid::now_v7());
        let row = Ping { id }
            .to_new_job(&JobOptions::at(5).company(company).run_at(9).dedup("k"))
            .expect("encodes");
        assert_eq!(row.kind, "ping");
        assert_eq!(row.payload, serde_json::json!({ "id": id }));
        assert_eq!(
            (
                row.company_id,
                row.run_at,
                row.dedup_key.as_deref(),
                row.max_attempts
            ),
            (Some(company), 9, Some("k"), 10)
        );
    }
}
