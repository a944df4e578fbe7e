//! Running the application: the HTTP server and this node's job workers, with a graceful
//! stop that finishes in-flight requests and running jobs.

use crate::{router, AppState, WebConfig};
use chatter_core::worker::{self, Registry, WorkerConfig};
use chatter_core::Core;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Server {
    pub addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    http: Option<JoinHandle<()>>,
    workers: Option<JoinHandle<()>>,
    deadline: std::time::Duration,
    /// This node's heartbeat row (removed on stop).
    node: JoinHandle<()>,
    /// Set when the stop begins: `/readyz` answers 503 from then on.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Server {
    /// Asks everything to stop and waits until in-flight requests and running jobs are done,
    /// requests for at most the shutdown deadline: a connection still open then (a live
    /// stream a browser keeps) is closed, so a stop never waits on a client.
    pub async fn shutdown(mut self) {
        // First of all, so a load balancer stops sending new requests here.
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.stop.send(true);
        if let Some(mut h) = self.http.take() {
            if tokio::time::timeout(self.deadline, &mut h).await.is_err() {
                tracing::warn!(
                    deadline_ms = self.deadline.as_millis() as u64,
                    "connections still open at the shutdown deadline; closing them"
                );
                h.abort();
                let _ = h.await;
            }
        }
        if let Some(w) = self.workers.take() {
            let _ = w.await;
        }
        let _ = self.node.await;
    }

    /// Waits until the server stops by itself (it does not; used with a signal elsewhere).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Starts the HTTP server on `listener` (if any) and the workers (if any).
pub async fn start(
    core: Core,
    cfg: WebConfig,
    listener: Option<TcpListener>,
    workers: Option<(Registry, WorkerConfig)>,
) -> Server {
    let (stop, stop_rx) = watch::channel(false);
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deadline = std::time::Duration::from_millis(
        workers
            .as_ref()
            .map_or(WorkerConfig::default().shutdown_ms, |(_, w)| w.shutdown_ms),
    );
    let workers_absent = workers.is_none();
    let role = match (listener.is_some(), workers_absent) {
        (true, false) => "web+worker",
        (true, true) => "web",
        (false, _) => "worker",
    };
    let node = tokio::spawn(chatter_core::nodes::heartbeat(
        core.clone(),
        role,
        stop_rx.clone(),
    ));
    let workers = workers.map(|(registry, wcfg)| {
        let (core, rx) = (core.clone(), stop_rx.clone());
        let pollers = tokio::spawn(chatter_core::runner::run_pollers(core.clone(), rx.clone()));
        let listener = tokio::spawn(chatter_core::events::listen_postgres(
            core.db.clone(),
            core.events.clone(),
            rx.clone(),
        ));
        let registry = chatter_core::crm_sync::register(chatter_core::runner::register(registry));
        let registry = chatter_core::api_source::register(registry);
        tokio::spawn(async move {
            worker::run(core, registry, wcfg, rx).await;
            let _ = pollers.await;
            let _ = listener.await;
        })
    });
    let mut addr = None;
    let http = listener.map(|l| {
        addr = l.local_addr().ok();
        if workers_absent {
            // A web-only process still needs live events from the other nodes.
            tokio::spawn(chatter_core::events::listen_postgres(
                core.db.clone(),
                core.events.clone(),
                stop_rx.clone(),
            ));
        }
        let ingester = chatter_core::ingest::Ingester::start(core.clone());
        let app = router(AppState {
            core,
            stopping: stopping.clone(),
            stop: stop_rx.clone(),
            cfg: Arc::new(cfg),
            ingester,
            hook_sources: Default::default(),
            live_streams: Default::default(),
        });
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let serve = axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        })
    });
    Server {
        addr,
        stop,
        http,
        workers,
        deadline,
        node,
        stopping,
    }
}
