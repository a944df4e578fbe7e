//! Background jobs: typed jobs (`BackgroundJob`, in `background`), handlers by kind
//! (`Registry`, in `registry`) and the queue runtime (`worker`) that claims, runs and settles
//! them. Jobs themselves live beside the capability they serve; the list the product runs is
//! `crate::job_registry`. Nothing here imports a capability.

mod background;
mod registry;
pub mod worker;

pub use background::{decode, BackgroundJob, JobMeta, JobOptions};
pub use registry::{JobHandler, Registry};
pub use worker::JobError;
