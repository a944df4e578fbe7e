//! The error every use case returns. The web edge turns each variant into a page or a JSON
//! body; `Internal` and `Store` are logged in full and shown as a bare 500.

use chatter_domain::FieldError;
use chatter_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Input was refused; each entry names a field and a translation key.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// Wrong email or password (one message, so accounts cannot be enumerated).
    #[error("wrong email or password")]
    BadCredentials,
    #[error("wrong or used code")]
    BadCode,
    #[error("not signed in")]
    Unauthenticated,
    #[error("not allowed")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// `what` cannot go: these (rules, by name) use it.
    #[error("{what} is in use by {by:?}")]
    InUse { what: &'static str, by: Vec<String> },
    /// Too many attempts; try again after this many seconds.
    #[error("too many attempts, retry in {0} s")]
    Throttled(i64),
    /// The link expired or was already used.
    #[error("link expired or already used")]
    LinkExpired,
    /// A feature is not configured on this server (message key says which and how).
    #[error("not configured: {0}")]
    NotConfigured(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sea_orm::DbErr> for CoreError {
    fn from(e: sea_orm::DbErr) -> Self {
        CoreError::Store(StoreError::Db(e))
    }
}

impl CoreError {
    pub fn field(field: &'static str, key: &'static str) -> Self {
        CoreError::Invalid(vec![FieldError::new(field, key)])
    }

    /// Several refused fields at once, as (field, translation key).
    pub fn fields(errs: &[(&'static str, &'static str)]) -> Self {
        CoreError::Invalid(errs.iter().map(|(f, k)| FieldError::new(f, k)).collect())
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
