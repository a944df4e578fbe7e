//! amoCRM (docs/providers/amocrm.md): OAuth and account hosts (`oauth`), the REST v4 client that
//! implements `Crm` (`api`), the Chats API "amojo" with its request signing and webhooks
//! (`chats`), and the per-account request limiter (`limiter`).

pub mod api;
pub mod chats;
pub mod limiter;
pub mod oauth;

pub use api::AmoCrm;
pub use chats::ChatsClient;
pub use limiter::{RateLimit, RateLimiter};
pub use oauth::{AccountHosts, OAuthApp};

/// amoCRM's system status ids, the same in every pipeline (§3.2).
pub const STATUS_WON: i64 = 142;
pub const STATUS_LOST: i64 = 143;

/// A webhook we refuse: the web layer answers 401 to `BadSignature`, 400 to `Malformed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("bad signature")]
    BadSignature,
    #[error("malformed payload: {0}")]
    Malformed(String),
}

/// Renders a reqwest failure without its URL, with its cause chain; always `Transient`.
pub(crate) fn transport_error(what: &str, e: reqwest::Error) -> crate::CrmError {
    let timed_out = e.is_timeout();
    let e = e.without_url();
    let mut msg = format!("{what}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if timed_out && !msg.contains("timed out") {
        msg.push_str(" (timed out)");
    }
    crate::CrmError::Transient(msg)
}
