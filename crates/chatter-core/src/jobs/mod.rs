//! Background jobs: the queue runtime (`worker`) that claims, runs and settles them, and the
//! standard registry (`Registry::standard`, in `registry`). Handlers live beside the capability
//! they serve; each capability adds its own through `Registry::with`.

mod registry;
pub mod worker;
