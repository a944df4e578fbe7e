//! Automation: the overview (`/app/automation`) and working hours, the company's and each
//! source's own (`/app/automation/hours`), with "now: open until … / closed until …".

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::automation::hours::{self, HoursView};
use chatter_core::CoreError;
use chatter_domain::hours::{days_text, spans_text, Hours, HoursForm, Now, WEEKDAYS};
use chatter_domain::{Permission, SourceId};
use chatter_store::entity::source;
use chrono::{DateTime, Datelike, Utc};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/automation", get(overview))
        .route("/app/automation/hours", get(hours_page).post(save))
        .route("/app/automation/hours/reset", post(reset))
}

#[derive(serde::Deserialize, Default)]
struct ScopeQuery {
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    source: Option<SourceId>,
    ok: Option<String>,
}

/// "Open until Fri 18:00" / "closed until Mon 09:00" / "no hours set", in the page's language
/// and the hours' own zone.
fn state_text(p: &Page, h: Option<&Hours>, now: Option<Now>) -> String {
    let (Some(h), Some(now)) = (h, now) else {
        return p.t("hours.none").to_owned();
    };
    let when = |t: DateTime<Utc>| {
        let local = t.with_timezone(&h.tz());
        let day = p.t(&format!(
            "hours.day_short.{}",
            WEEKDAYS[local.weekday().num_days_from_monday() as usize]
        ));
        format!("{day} {}", local.format("%d.%m %H:%M"))
    };
    match now {
        Now::Open { until: Some(t) } => format!("{} {}", p.t("hours.open_until"), when(t)),
        Now::Open { until: None } => p.t("hours.open_always").to_owned(),
        Now::Closed { until: Some(t) } => format!("{} {}", p.t("hours.closed_until"), when(t)),
        Now::Closed { until: None } => p.t("hours.closed_always").to_owned(),
    }
}

#[derive(Template)]
#[template(path = "app/automation.html")]
struct OverviewTpl {
    p: Page,
    state: String,
    open: bool,
}

async fn overview(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let v = hours::get(&st.core, &actor, None).await?;
    let p = Page::new(&ctx, "automation");
    Ok(render(OverviewTpl {
        state: state_text(&p, v.hours.as_ref(), v.now),
        open: v.now.is_some_and(Now::is_open),
        p,
    }))
}

#[derive(Template)]
#[template(path = "app/hours.html")]
struct HoursTpl {
    p: Page,
    sources: Vec<source::Model>,
    scope: Option<SourceId>,
    scope_name: String,
    /// The source has hours of its own.
    own: bool,
    state: String,
    open: bool,
    zone: String,
    /// (field, label key, text) per weekday.
    week: Vec<(&'static str, String, String)>,
    days: String,
}

impl HoursTpl {
    fn is_scope(&self, id: &SourceId) -> bool {
        self.scope == Some(*id)
    }
}

/// The form's values as typed, for a page shown again with its errors.
struct Typed {
    zone: String,
    week: [String; 7],
    days: String,
}

impl Typed {
    fn of(h: Option<&Hours>) -> Typed {
        match h {
            Some(h) => Typed {
                zone: h.zone.clone(),
                week: std::array::from_fn(|i| spans_text(&h.week[i])),
                days: days_text(&h.days),
            },
            None => Typed {
                zone: "Europe/Moscow".into(),
                week: Default::default(),
                days: String::new(),
            },
        }
    }

    fn from_form(form: &[(String, String)]) -> Typed {
        let one = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Typed {
            zone: one("zone"),
            week: std::array::from_fn(|i| one(WEEKDAYS[i])),
            days: one("days"),
        }
    }
}

async fn page(
    st: &AppState,
    ctx: &Ctx,
    v: &HoursView,
    typed: Typed,
    p: Page,
) -> Result<HoursTpl, AppError> {
    let actor = ctx.actor()?;
    let sources = chatter_core::sources::list(&st.core, &actor).await?;
    let scope_name = match v.source {
        Some(id) => sources
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.name.clone())
            .ok_or(AppError::from(CoreError::NotFound))?,
        None => String::new(),
    };
    let week = WEEKDAYS
        .iter()
        .zip(typed.week)
        .map(|(d, text)| (*d, format!("hours.day.{d}"), text))
        .collect();
    Ok(HoursTpl {
        state: state_text(&p, v.hours.as_ref(), v.now),
        open: v.now.is_some_and(Now::is_open),
        p,
        sources,
        scope: v.source,
        scope_name,
        own: v.own,
        zone: typed.zone,
        week,
        days: typed.days,
    })
}

async fn hours_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ScopeQuery>,
) -> Result<Response, AppError> {
    let v = hours::get(&st.core, &ctx.actor()?, q.source).await?;
    let p = Page::new(&ctx, "automation").flash(&Flash { ok: q.ok });
    let typed = Typed::of(v.hours.as_ref());
    Ok(render(page(&st, &ctx, &v, typed, p).await?))
}

fn back(source: Option<SourceId>, ok: &str) -> Response {
    let to = match source {
        Some(id) => format!("/app/automation/hours?source={id}&ok={ok}"),
        None => format!("/app/automation/hours?ok={ok}"),
    };
    Redirect::to(&to).into_response()
}

async fn save(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ScopeQuery>,
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    actor.require(Permission::Manage)?;
    let typed = Typed::from_form(&form);
    let parsed = Hours::from_form(&HoursForm {
        zone: &typed.zone,
        week: std::array::from_fn(|i| typed.week[i].as_str()),
        days: &typed.days,
    });
    let refused = match parsed {
        Ok(h) => match hours::save(&st.core, &actor, q.source, h).await {
            Ok(_) => return Ok(back(q.source, "saved")),
            Err(CoreError::Invalid(errs)) => errs,
            Err(e) => return Err(e.into()),
        },
        Err(errs) => errs,
    };
    let v = hours::get(&st.core, &actor, q.source).await?;
    let p = Page::new(&ctx, "automation").errors(refused);
    Ok(render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        page(&st, &ctx, &v, typed, p).await?,
    ))
}

async fn reset(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ScopeQuery>,
    CsrfForm(_): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    actor.require(Permission::Manage)?;
    let source = q.source.ok_or(AppError::from(CoreError::NotFound))?;
    hours::reset(&st.core, &actor, source).await?;
    Ok(back(Some(source), "hours_reset"))
}
