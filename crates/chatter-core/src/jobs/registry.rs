//! Handlers by job kind. The queue runtime (`worker`) looks a claimed row's `kind` up here;
//! typed jobs are added with [`Registry::register`], and the full list the product runs is
//! built once, in `crate::job_registry`. This module knows no capability, so every capability
//! can depend on it without depending back on the others.

use super::background::{BackgroundJob, Typed};
use super::worker::JobError;
use crate::Core;
use async_trait::async_trait;
use chatter_store::jobs::Claimed;
use std::collections::HashMap;
use std::sync::Arc;

/// A handler for one job kind, untyped: it gets the claimed row as stored. Typed jobs
/// ([`BackgroundJob`]) get one through [`Registry::register`]; tests may write their own.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, core: &Core, job: &Claimed) -> Result<(), JobError>;

    /// Called when the job is parked as dead.
    async fn dead(&self, _core: &Core, _job: &Claimed, _reason: &str) {}

    /// Called after the job was recorded as done.
    async fn done(&self, _core: &Core, _job: &Claimed) {}
}

/// Handlers by job kind.
#[derive(Clone, Default)]
pub struct Registry(HashMap<String, Arc<dyn JobHandler>>);

impl Registry {
    /// Adds the typed job `J` under its name. Two job types with one name would run each
    /// other's rows: debug builds refuse it.
    pub fn register<J: BackgroundJob>(self) -> Self {
        debug_assert!(
            !self.0.contains_key(J::NAME),
            "two job types are named {:?}",
            J::NAME
        );
        self.with(J::NAME, Typed::<J>::new())
    }

    /// Adds (or replaces) the handler of `kind`.
    pub fn with(mut self, kind: &str, h: impl JobHandler) -> Self {
        self.0.insert(kind.to_string(), Arc::new(h));
        self
    }

    /// The handler of `kind`, if registered.
    pub fn handler(&self, kind: &str) -> Option<&Arc<dyn JobHandler>> {
        self.0.get(kind)
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.0.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }
}
