//! The signed-in shell: the dashboard and companies (create another, switch between them).

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::accounts::team;
use chatter_core::{accounts, CoreError};
use chatter_domain::Permission;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app", get(dashboard))
        .route("/app/companies/new", get(new_company_page))
        .route("/app/companies", post(create_company))
        .route("/app/companies/{id}/switch", post(switch_company))
}

#[derive(Template)]
#[template(path = "app/dashboard.html")]
struct DashboardTpl {
    p: Page,
    members: usize,
    role: &'static str,
    d: chatter_core::reports::Dashboard,
    /// The 30-day chart of inbound messages per source (inline SVG; empty without messages).
    chart: String,
}

impl DashboardTpl {
    fn took(&self, m: &chatter_core::reports::Median) -> String {
        took(&self.p, m.ms)
    }

    fn swatch(&self, k: &usize) -> String {
        super::chart::swatch(*k)
    }
}

/// A duration as people say it: «45 с», «12 мин», «1 ч 5 мин», «2 дн 3 ч»; «—» for none.
pub(super) fn took(p: &Page, ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "—".into();
    };
    let s = ms.max(0) / 1000;
    let t = |k| p.t(k);
    if s < 60 {
        format!("{s} {}", t("unit.s"))
    } else if s < 3600 {
        format!("{} {}", s / 60, t("unit.min"))
    } else if s < 86_400 {
        format!(
            "{} {} {} {}",
            s / 3600,
            t("unit.h"),
            (s % 3600) / 60,
            t("unit.min")
        )
    } else {
        format!(
            "{} {} {} {}",
            s / 86_400,
            t("unit.d"),
            (s % 86_400) / 3600,
            t("unit.h")
        )
    }
}

async fn dashboard(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    actor.require(Permission::Read).map_err(AppError::from)?;
    let members = team::list_members(&st.core.read, &actor).await?.len();
    let d = chatter_core::reports::dashboard(&st.core, &actor).await?;
    let p = Page::new(&ctx, "dashboard").flash(&q);
    let role = p.role_name(&actor.role);
    let last = d.since + (chatter_core::reports::PERIOD_DAYS - 1) * chatter_core::reports::DAY_MS;
    let day = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| {
                t.with_timezone(&chrono_tz::Europe::Moscow)
                    .format("%d.%m")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let lines: Vec<(String, Vec<i64>)> = d
        .series
        .iter()
        .map(|s| (s.name.clone(), s.per_day.clone()))
        .collect();
    let chart = super::chart::daily_lines(
        &lines,
        &day(d.since + 12 * 3600 * 1000),
        &day(last + 12 * 3600 * 1000),
        p.t("dashboard.chart"),
    );
    Ok(render(DashboardTpl {
        p,
        members,
        role,
        d,
        chart,
    }))
}

#[derive(Template)]
#[template(path = "app/new_company.html")]
struct NewCompanyTpl {
    p: Page,
    company_name: String,
}

async fn new_company_page(Extension(ctx): Extension<Ctx>) -> Result<Response, AppError> {
    ctx.signed()?;
    Ok(render(NewCompanyTpl {
        p: Page::new(&ctx, ""),
        company_name: String::new(),
    }))
}

#[derive(serde::Deserialize)]
struct CompanyForm {
    company_name: String,
}

async fn create_company(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<CompanyForm>,
) -> Result<Response, AppError> {
    let info = ctx.signed()?;
    match accounts::create_company(&st.core, info, &f.company_name, &ctx.meta).await {
        Ok(_) => Ok(Redirect::to("/app?ok=company_created").into_response()),
        Err(CoreError::Invalid(errs)) => Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            NewCompanyTpl {
                p: Page::new(&ctx, "").errors(errs),
                company_name: f.company_name,
            },
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn switch_company(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let info = ctx.signed()?;
    accounts::switch_company(&st.core, info, id, &ctx.meta).await?;
    Ok(Redirect::to("/app?ok=switched").into_response())
}
