//! The reports page (`/app/reports`): the team's response and resolution times, per source and
//! per manager, and the days of a chosen period; `/app/reports.csv` is the same as CSV.
//! Owners and admins.

use super::{render, render_status, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chatter_core::reports::period::{self, Report, Times};
use chatter_core::CoreError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/reports", get(page))
        .route("/app/reports.csv", get(csv))
}

/// The period as the form sends it (`YYYY-MM-DD`, either may be empty).
#[derive(serde::Deserialize, Default)]
struct Q {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Template)]
#[template(path = "app/reports.html")]
struct ReportsTpl {
    p: Page,
    from: String,
    to: String,
    r: Option<Report>,
    query: String,
}

impl ReportsTpl {
    fn took(&self, ms: &Option<i64>) -> String {
        super::app::took(&self.p, *ms)
    }

    fn times(&self, t: &Times) -> String {
        if t.count == 0 {
            return "—".into();
        }
        format!("{} / {}", self.took(&t.median_ms), self.took(&t.p90_ms))
    }

    /// The bar of a day: its share of the busiest day, in percent.
    fn bar(&self, n: &i64) -> i64 {
        let max = self
            .r
            .as_ref()
            .and_then(|r| r.days.iter().map(|d| d.messages_in).max())
            .unwrap_or(0);
        if max == 0 {
            0
        } else {
            (*n * 100 / max).clamp(0, 100)
        }
    }
}

async fn page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Q>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let (from, to) = (q.from.unwrap_or_default(), q.to.unwrap_or_default());
    let query = serde_urlencoded::to_string([("from", &from), ("to", &to)]).unwrap_or_default();
    match period::report(&st.core, &actor, &from, &to).await {
        Ok(r) => Ok(render(ReportsTpl {
            p: Page::new(&ctx, "reports"),
            from: r.from.clone(),
            to: r.to.clone(),
            r: Some(r),
            query,
        })),
        Err(CoreError::Invalid(errs)) => Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            ReportsTpl {
                p: Page::new(&ctx, "reports").errors(errs),
                from,
                to,
                r: None,
                query,
            },
        )),
        Err(e) => Err(e.into()),
    }
}

async fn csv(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Q>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let r = period::report(
        &st.core,
        &actor,
        q.from.as_deref().unwrap_or(""),
        q.to.as_deref().unwrap_or(""),
    )
    .await?;
    let body = period::to_csv(&r)?;
    let disposition = format!(
        "attachment; filename=\"chatter-report-{}-{}.csv\"",
        r.from, r.to
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}
