//! Operations endpoints: liveness, readiness (the database answers), Prometheus metrics.

use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicU64, Ordering};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

static REQUESTS: [AtomicU64; 5] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];

/// Counts responses by status class.
pub async fn count_requests(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let class = (resp.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    REQUESTS[class].fetch_add(1, Ordering::Relaxed);
    resp
}

async fn readyz(State(st): State<AppState>) -> Response {
    if st.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping").into_response()
    } else if chatter_store::ping(&st.core.db).await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP chatter_http_responses_total HTTP responses by status class.\n# TYPE chatter_http_responses_total counter");
    for (i, c) in REQUESTS.iter().enumerate() {
        let _ = writeln!(
            out,
            "chatter_http_responses_total{{class=\"{}xx\"}} {}",
            i + 1,
            c.load(Ordering::Relaxed)
        );
    }
    let m = &chatter_core::jobs::worker::METRICS;
    let _ = writeln!(out, "# HELP chatter_jobs_finished_total Jobs finished on this node by outcome.\n# TYPE chatter_jobs_finished_total counter");
    let _ = writeln!(
        out,
        "chatter_jobs_finished_total{{outcome=\"done\"}} {}",
        m.done.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "chatter_jobs_finished_total{{outcome=\"retried\"}} {}",
        m.retried.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "chatter_jobs_finished_total{{outcome=\"dead\"}} {}",
        m.dead.load(Ordering::Relaxed)
    );
    for (name, help, value) in [
        (
            "chatter_jobs_taken_over_total",
            "Jobs this node claimed after another holder's lease expired (a dead or stalled node).",
            &m.taken_over,
        ),
        (
            "chatter_jobs_lease_lost_total",
            "Handlers stopped because their lease was lost, so a job never runs twice at once.",
            &m.lease_lost,
        ),
        (
            "chatter_jobs_handed_back_total",
            "Jobs handed back to the queue unfinished when this node stopped.",
            &m.handed_back,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP chatter_shutdowns_total Worker stops on this node by outcome.\n# TYPE chatter_shutdowns_total counter\nchatter_shutdowns_total{{outcome=\"clean\"}} {}\nchatter_shutdowns_total{{outcome=\"deadline\"}} {}",
        m.shutdown_clean.load(Ordering::Relaxed),
        m.shutdown_deadline.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP chatter_stored_json_unreadable_total Stored JSON values (settings, metadata, payloads) that did not read as their type; each is in the log.\n# TYPE chatter_stored_json_unreadable_total counter\nchatter_stored_json_unreadable_total {}",
        chatter_store::stored_json::UNREADABLE.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP chatter_jobs_count Jobs in the queue by state.\n# TYPE chatter_jobs_count gauge"
    );
    for s in [
        chatter_store::jobs::QUEUED,
        chatter_store::jobs::RUNNING,
        chatter_store::jobs::DEAD,
    ] {
        if let Ok(n) = chatter_store::jobs::count(&st.core.db, s).await {
            let _ = writeln!(out, "chatter_jobs_count{{state=\"{s}\"}} {n}");
        }
    }
    let up = if chatter_store::ping(&st.core.db).await {
        1
    } else {
        0
    };
    let _ = writeln!(
        out,
        "# HELP chatter_live_streams Live inbox streams open on this node.\n# TYPE chatter_live_streams gauge\nchatter_live_streams {}",
        st.live_streams.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# HELP chatter_database_up Whether the database answers.\n# TYPE chatter_database_up gauge\nchatter_database_up {up}");
    if let Some(c) = st
        .cfg
        .tls
        .as_ref()
        .and_then(|t| t.status())
        .and_then(|s| s.current)
    {
        let _ = writeln!(
            out,
            "# HELP chatter_tls_certificate_expiry_seconds When the HTTPS certificate this node serves expires (Unix time).\n# TYPE chatter_tls_certificate_expiry_seconds gauge\nchatter_tls_certificate_expiry_seconds {}",
            c.not_after / 1000
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
