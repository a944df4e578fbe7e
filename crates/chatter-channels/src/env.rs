//! `KindEnv`: what every kind's `build` gets from the process besides the source's own
//! credentials and settings: the shared HTTP client, the installation's `KindConfig`, and the
//! state built once per process that a kind needs (Max's HTTP client trusting an extra root CA).

use crate::KindConfig;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Pauses a client takes inside one call (Max's `attachment.not.ready` backoff), through this
/// trait so tests pass one that returns at once and records what was asked.
pub trait Sleeper: Send + Sync + 'static {
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// Real time: `tokio::time::sleep`.
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The process-wide things connectors are built from. Built once at start-up.
pub struct KindEnv {
    /// One HTTP client for every provider call (rustls, connection pooling).
    pub http: reqwest::Client,
    /// The installation's configuration of every kind.
    pub config: KindConfig,
    /// Max's HTTP client when `max.extra_ca_pem` is configured and usable.
    max_http: Option<reqwest::Client>,
    /// How clients pause inside a call (`TokioSleeper` unless replaced by `with_sleeper`).
    pub sleeper: Arc<dyn Sleeper>,
}

impl KindEnv {
    /// Builds what is built once: an unusable `max.extra_ca_pem` is logged and Max calls then
    /// use the built-in roots only.
    pub fn new(http: reqwest::Client, config: KindConfig) -> Self {
        let max_http = config.max.extra_ca_pem.as_ref().and_then(|path| {
            let built = std::fs::read(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|pem| {
                    crate::max::http_client_with_extra_ca(&pem, Duration::from_secs(90))
                });
            match built {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "max.extra_ca_pem is unusable; Max calls use the built-in roots only");
                    None
                }
            }
        });
        KindEnv {
            http,
            config,
            max_http,
            sleeper: Arc::new(TokioSleeper),
        }
    }

    /// The same with pauses taken by `sleeper` (tests: one that does not wait).
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The HTTP client for Max (with `max.extra_ca_pem` trusted when configured).
    pub fn max_http(&self) -> reqwest::Client {
        self.max_http.clone().unwrap_or_else(|| self.http.clone())
    }
}

/// Why a source's connector cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The kind has no provider connector (the API source: its customer's system calls us).
    #[error("no connector for source kind {0}")]
    NoConnector(i32),
    /// The stored settings lack what the kind needs (a VK source without its community id).
    #[error("{0}")]
    Settings(&'static str),
}
