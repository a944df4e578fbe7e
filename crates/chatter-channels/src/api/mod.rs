//! The API source (kind 6): a customer's own system talks to Chatter through signed webhooks.
//! Its receiving and signing live in `chatter_core::sources::api` (its hooks are stored with
//! their idempotency keys and answered with JSON); this folder holds only its `Kind` facts.

mod kind;

pub use kind::ApiKind;
