//! Background jobs: the queue runtime (`worker`) that claims, runs and settles them. The
//! handlers live beside the capability they serve and register themselves through
//! `Registry::with`.

pub mod worker;
