//! The audit log page with filters, and its CSV export.

use super::{render, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chatter_core::audit::{self, AuditFilter};
use chatter_store::entity::audit as row;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/audit", get(audit_page))
        .route("/app/audit.csv", get(audit_csv))
}

/// Filters as the form sends them (dates as YYYY-MM-DD).
#[derive(serde::Deserialize, Default)]
struct Q {
    action: Option<String>,
    actor: Option<String>,
    from: Option<String>,
    to: Option<String>,
    page: Option<u64>,
}

fn day_ms(s: &Option<String>, end: bool) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(s.as_deref()?.trim(), "%Y-%m-%d").ok()?;
    let d = if end { d.succ_opt()? } else { d };
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis() - 3 * 3600 * 1000)
}

impl Q {
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            action: self.action.clone(),
            actor: self.actor.clone(),
            from: day_ms(&self.from, false),
            to: day_ms(&self.to, true),
        }
    }
}

const PER_PAGE: u64 = 50;

#[derive(Template)]
#[template(path = "app/audit.html")]
struct AuditTpl {
    p: Page,
    rows: Vec<row::Model>,
    action: String,
    actor: String,
    from: String,
    to: String,
    page: u64,
    more: bool,
    query: String,
}

async fn audit_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Q>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let page = q.page.unwrap_or(0);
    let mut rows = audit::list(
        &st.core.db,
        &actor,
        &q.filter(),
        PER_PAGE + 1,
        page * PER_PAGE,
    )
    .await?;
    let more = rows.len() as u64 > PER_PAGE;
    rows.truncate(PER_PAGE as usize);
    let query = serde_urlencoded::to_string([
        ("action", q.action.clone().unwrap_or_default()),
        ("actor", q.actor.clone().unwrap_or_default()),
        ("from", q.from.clone().unwrap_or_default()),
        ("to", q.to.clone().unwrap_or_default()),
    ])
    .unwrap_or_default();
    Ok(render(AuditTpl {
        p: Page::new(&ctx, "audit"),
        rows,
        action: q.action.unwrap_or_default(),
        actor: q.actor.unwrap_or_default(),
        from: q.from.unwrap_or_default(),
        to: q.to.unwrap_or_default(),
        page,
        more,
        query,
    }))
}

async fn audit_csv(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Q>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let csv = audit::export_csv(&st.core.db, &actor, &q.filter()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"chatter-audit.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}
