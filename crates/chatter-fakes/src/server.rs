//! The scaffolding every fake server shares, written once: listening on an ephemeral loopback
//! port, the state its handlers and its handles share (one lock, the base URL, an HTTP client for
//! webhooks and callbacks, the stop signal), stopping gracefully when the last handle drops or on
//! `shutdown`, and the random strings, clock readings and HTML escaping the fakes' answers need.
//!
//! A fake keeps only what is its own: its world (the `S` of [`Shared`]), anything it deliberately
//! keeps outside that lock (the `E`), its routes and its public handle type.

use axum::Router;
use rand::Rng;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// What a running fake's handles and request handlers share.
pub(crate) struct Shared<S, E = ()> {
    state: Mutex<S>,
    /// Kept outside the main lock, e.g. a second lock that may be taken while the first is held,
    /// or an atomic read on every answer.
    pub(crate) extra: E,
    /// `http://127.0.0.1:PORT` plus the fake's path prefix, if it has one.
    pub(crate) base_url: String,
    /// For the fake's own outgoing calls (webhooks, callbacks); its timeout bounds a hanging one.
    pub(crate) http: reqwest::Client,
    stop: watch::Receiver<bool>,
}

impl<S, E> Shared<S, E> {
    /// The fake's world. A handler that panicked mid-change poisons nothing: tests go on to see
    /// the state as it was left, as a real server's would be.
    pub(crate) fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves when the fake is shut down (or every handle is gone).
    pub(crate) async fn stopped(&self) {
        let mut stop = self.stop.clone();
        let _ = stop.wait_for(|stopped| *stopped).await;
    }

    /// Sleeps for `duration`; false when the fake stopped first, and the caller's task should end.
    pub(crate) async fn sleep(&self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.stopped() => false,
        }
    }

    /// What an injected hang does: answer only when the fake stops (or after a day).
    pub(crate) async fn hang(&self) {
        self.sleep(Duration::from_secs(24 * 3600)).await;
    }
}

/// Doubling delays between a fake's delivery attempts, from `start` up to `cap`, so a client's
/// endpoint that is down a while is neither hammered nor waited on for long once it is back.
pub(crate) struct Backoff {
    start: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(start: Duration, cap: Duration) -> Self {
        Backoff {
            start,
            cap,
            next: start,
        }
    }

    /// After a success: the next failure waits `start` again.
    pub(crate) fn reset(&mut self) {
        self.next = self.start;
    }

    /// The delay to wait now; the one after is twice as long, up to the cap.
    pub(crate) fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.cap);
        now
    }
}

/// What a fake's delivery queue holds at its front, as [`Shared::deliver_in_order`] asks.
pub(crate) enum Next<C> {
    /// Make this call; the `usize` (its place in the fake's record) goes back to `settle`.
    Call(usize, C),
    /// Nothing to send now: wait for the queue's `Notify`.
    Idle,
    /// The queue's owner (account, number) is gone: the delivery task ends.
    Gone,
}

impl<S, E> Shared<S, E> {
    /// Delivers a queue of outgoing calls (webhooks, callbacks) one by one, in order, each until
    /// accepted, waiting `backoff` between failed attempts; ends when the fake stops or the
    /// queue's owner is gone. Under the lock, `doorbell` gives the queue's `Notify`, `next` its
    /// front call and `settle` records an attempt (status, accepted; false: the owner is gone),
    /// popping an accepted call; `send` makes the call outside the lock and says how it went.
    pub(crate) async fn deliver_in_order<C, F>(
        &self,
        mut backoff: Backoff,
        doorbell: impl Fn(&S) -> Option<Arc<Notify>>,
        mut next: impl FnMut(&mut S) -> Next<C>,
        send: impl Fn(C) -> F,
        mut settle: impl FnMut(&mut S, usize, Option<u16>, bool) -> bool,
    ) where
        F: Future<Output = (Option<u16>, bool)>,
    {
        loop {
            let notify = doorbell(&self.lock());
            let Some(notify) = notify else {
                return;
            };
            // Armed before the queue is read, so a call queued in between still wakes us.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let front = next(&mut self.lock());
            let (index, call) = match front {
                Next::Call(index, call) => (index, call),
                Next::Gone => return,
                Next::Idle => {
                    tokio::select! {
                        () = &mut notified => continue,
                        () = self.stopped() => return,
                    }
                }
            };
            let (status, ok) = send(call).await;
            let owned = settle(&mut self.lock(), index, status, ok);
            if !owned {
                return;
            }
            if ok {
                backoff.reset();
                continue;
            }
            if !self.sleep(backoff.step()).await {
                return;
            }
        }
    }
}

/// Held by every clone of a fake's handle: when the last one drops, the server stops.
pub(crate) struct StopGuard(watch::Sender<bool>);

impl StopGuard {
    /// Stops the server now (hanging requests and outgoing deliveries end too).
    pub(crate) fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How one fake is started.
pub(crate) struct Spec<S, E = ()> {
    pub(crate) state: S,
    pub(crate) extra: E,
    /// Appended to `http://127.0.0.1:PORT` to make the base URL (`""` for none).
    pub(crate) path: &'static str,
    /// Timeout of the fake's own outgoing HTTP calls.
    pub(crate) http_timeout: Duration,
    /// Logged with the error if the server fails, e.g. "fake VK server stopped".
    pub(crate) what: &'static str,
}

impl<S> Spec<S> {
    /// A fake with no state outside its lock, no path prefix and a 10 s callback timeout.
    pub(crate) fn new(state: S, what: &'static str) -> Self {
        Spec {
            state,
            extra: (),
            path: "",
            http_timeout: Duration::from_secs(10),
            what,
        }
    }
}

impl<S, E> Spec<S, E> {
    /// The same fake with `extra` kept outside its lock.
    pub(crate) fn with_extra<X>(self, extra: X) -> Spec<S, X> {
        Spec {
            state: self.state,
            extra,
            path: self.path,
            http_timeout: self.http_timeout,
            what: self.what,
        }
    }
}

/// Binds an ephemeral loopback port, builds the fake's routes over its shared state with `app`,
/// and serves them in the background until the returned guard (or its last clone) drops.
pub(crate) async fn start<S, E>(
    spec: Spec<S, E>,
    app: impl FnOnce(Arc<Shared<S, E>>) -> Router,
) -> io::Result<(Arc<Shared<S, E>>, Arc<StopGuard>)>
where
    S: Send + 'static,
    E: Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let http = reqwest::Client::builder()
        .timeout(spec.http_timeout)
        .build()
        .map_err(io::Error::other)?;
    let (tx, rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        state: Mutex::new(spec.state),
        extra: spec.extra,
        base_url: format!("http://{addr}{}", spec.path),
        http,
        stop: rx,
    });
    let stop = shared.clone();
    spawn_server(
        listener,
        app(shared.clone()),
        async move { stop.stopped().await },
        spec.what,
    );
    Ok((shared, Arc::new(StopGuard(tx))))
}

/// Serves `app` on `listener` in the background until `stopped` resolves.
fn spawn_server(
    listener: TcpListener,
    app: Router,
    stopped: impl Future<Output = ()> + Send + 'static,
    what: &'static str,
) {
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(%error, "{what}");
        }
    });
}

/// A page server with no handle to share (the demo's mail page, the company website): it is
/// aborted, not drained, when its owner drops this.
pub(crate) struct PageServer {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base_url: String,
    task: JoinHandle<()>,
}

impl PageServer {
    /// Binds an ephemeral loopback port and serves `app` there.
    pub(crate) async fn start(app: Router, what: &'static str) -> io::Result<PageServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "{what}");
            }
        });
        Ok(PageServer { base_url, task })
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Letters and digits (Avito's and WhatsApp's tokens and ids).
pub(crate) const ALPHANUMERIC: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Letters, digits, `_` and `-` (Telegram's and Max's tokens and file ids).
pub(crate) const URL_SAFE: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
/// Lower-case letters and digits (the SMS gateway's API keys).
pub(crate) const LOWER_ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

/// `len` characters drawn at random from `alphabet` (ASCII): each provider's tokens look like
/// its own, so clients' format checks see what they would in production.
pub(crate) fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
        .collect()
}

/// `len` random lower-case hex digits.
pub(crate) fn random_hex(len: usize) -> String {
    random_string(HEX, len)
}

/// The wall clock in Unix seconds (0 before 1970, which no test machine is).
pub(crate) fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The wall clock in Unix milliseconds.
pub(crate) fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Text made safe inside HTML elements and double-quoted attributes.
pub(crate) fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
