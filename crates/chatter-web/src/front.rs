//! The front door: the listening sockets and every connection on them. A listener is plain
//! HTTP or TLS (rustls, its certificate asked of a resolver on each handshake, so a reloaded
//! or renewed certificate reaches new connections while open ones keep theirs). Each
//! connection is served by hyper (HTTP/1.1, and HTTP/2 when TLS negotiates it) with the
//! client's address and whether it came over TLS in the request's extensions, and stops
//! gracefully with the node.
//!
//! Requests go to an app slot, filled once the database is migrated. Until then `/healthz`
//! answers `ok` (the process is alive), `/readyz` answers 503 (a balancer sends nothing yet),
//! and every other request gets 503 with `Retry-After`, so a long migration neither looks like
//! a dead process nor swallows requests.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request extension: whether this request's connection is TLS served by Chatter itself.
#[derive(Clone, Copy, Debug)]
pub struct ConnTls(pub bool);

/// Where a listener's requests go once the application is up.
#[derive(Clone, Default)]
pub struct AppSlot(Arc<OnceLock<Router>>);

impl AppSlot {
    /// Serves `app` from the next request on. A second call is ignored.
    pub fn install(&self, app: Router) {
        let _ = self.0.set(app);
    }

    pub fn is_installed(&self) -> bool {
        self.0.get().is_some()
    }
}

/// One listening socket, plain or TLS, and the slot its requests go to.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub slot: AppSlot,
}

/// The running listeners of this node.
pub struct Front {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    /// Starts accepting on every listener.
    pub fn start(listeners: Vec<Listener>) -> Front {
        let (stop, rx) = watch::channel(false);
        let mut loops = JoinSet::new();
        for l in listeners {
            loops.spawn(accept_loop(l, rx.clone()));
        }
        let task = tokio::spawn(async move { while loops.join_next().await.is_some() {} });
        Front { stop, task }
    }

    /// Stops accepting and lets open connections finish: HTTP/1.1 after the request in
    /// flight, HTTP/2 after a GOAWAY. Waits until they have, or until `deadline`; whatever is
    /// still open then is closed.
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "connections still open at the shutdown deadline; closing them"
            );
            task.abort();
            let _ = task.await;
        }
    }
}

async fn accept_loop(l: Listener, mut stop: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    // Dropped (with the task that owns it) when the deadline passes: every connection ends.
    let mut conns = JoinSet::new();
    let acceptor = l.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            a = l.tcp.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        while conns.try_join_next().is_some() {}
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let slot = l.slot.clone();
        match acceptor.clone() {
            None => {
                conns.spawn(serve_io(tcp, peer, false, slot, watcher));
            }
            Some(acceptor) => {
                conns.spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => serve_io(tls, peer, true, slot, watcher).await,
                        // Port scanners, plain HTTP sent to the TLS port, clients that hang:
                        // not worth more than a debug line each.
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(l.tcp);
    graceful.shutdown().await;
    while conns.join_next().await.is_some() {}
}

async fn serve_io<I>(io: I, peer: SocketAddr, tls: bool, slot: AppSlot, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(ConnTls(tls));
        let app = slot.0.get().cloned();
        async move {
            Ok::<_, Infallible>(match app {
                Some(app) => match app.oneshot(req.map(Body::new)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                },
                None => starting(req.uri().path()),
            })
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its request headers is dropped after 30 s.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection_with_upgrades(
        TokioIo::new(io),
        hyper_util::service::TowerToHyperService::new(svc),
    );
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The answer before the application is installed.
fn starting(path: &str) -> Response<Body> {
    let (status, body) = match path {
        "/healthz" => (StatusCode::OK, "ok"),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: applying database migrations",
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Chatter is starting (applying database migrations); try again in a few seconds.\n",
        ),
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status != StatusCode::OK {
        h.insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    r
}
