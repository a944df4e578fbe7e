//! Running the application: the HTTP server and this node's job workers, with a graceful
//! stop that finishes in-flight requests and running jobs.

use crate::front::{AppSlot, Front, Listener};
use crate::{router, AppState, WebConfig};
use chatter_core::jobs::worker::{self, Registry, WorkerConfig};
use chatter_core::Core;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Server {
    pub addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    http: Option<Front>,
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
        if let Some(front) = self.http.take() {
            front.shutdown(self.deadline).await;
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

/// Listeners already accepting (and answering 503 until the application is installed), as
/// `chatter serve` starts them before migrating the database.
pub struct Started {
    pub front: Front,
    /// The application's slot (the main listener, plain or TLS).
    pub app: AppSlot,
    pub addr: Option<SocketAddr>,
    /// The plain listener beside HTTPS and the HTTPS origin it redirects to.
    pub redirect: Option<(AppSlot, String)>,
}

impl Started {
    /// One plain listener (tests, and `chatter serve` without TLS).
    pub fn plain(l: TcpListener) -> Started {
        let addr = l.local_addr().ok();
        let app = AppSlot::default();
        let front = Front::start(vec![Listener {
            tcp: l,
            tls: None,
            slot: app.clone(),
        }]);
        Started {
            front,
            app,
            addr,
            redirect: None,
        }
    }
}

/// Starts the HTTP server on `listener` (if any) and the workers (if any). The workers run
/// exactly the registry given: `Registry::standard()` holds every job type.
pub async fn start(
    core: Core,
    cfg: WebConfig,
    listener: Option<TcpListener>,
    workers: Option<(Registry, WorkerConfig)>,
) -> Server {
    start_with(core, cfg, listener.map(Started::plain), workers).await
}

/// Installs the application in listeners that are already accepting, and starts the workers.
pub async fn start_with(
    core: Core,
    cfg: WebConfig,
    listener: Option<Started>,
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
        let pollers = tokio::spawn(chatter_core::sources::runtime::run_pollers(
            core.clone(),
            rx.clone(),
        ));
        let listener = tokio::spawn(chatter_core::events::listen_postgres(
            core.db.clone(),
            core.events.clone(),
            rx.clone(),
        ));
        tokio::spawn(async move {
            worker::run(core, registry, wcfg, rx).await;
            let _ = pollers.await;
            let _ = listener.await;
        })
    });
    let mut addr = None;
    let core_for_redirect = core.clone();
    let http = listener.map(|l| {
        addr = l.addr;
        if workers_absent {
            // A web-only process still needs live events from the other nodes.
            tokio::spawn(chatter_core::events::listen_postgres(
                core.db.clone(),
                core.events.clone(),
                stop_rx.clone(),
            ));
        }
        let ingester = chatter_core::inbox::ingest::Ingester::start(core.clone());
        let app = router(AppState {
            core,
            stopping: stopping.clone(),
            stop: stop_rx.clone(),
            cfg: Arc::new(cfg),
            ingester,
            hook_sources: Default::default(),
            live_streams: Default::default(),
        });
        if let Some((slot, origin)) = &l.redirect {
            slot.install(crate::redirect::router(
                core_for_redirect.clone(),
                origin.clone(),
            ));
        }
        l.app.install(app);
        l.front
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
