//! The routing rules page (requirement R3.4): the ordered list with what each rule checks and does
//! (names from the synced amoCRM account), the dry run that shows which rule fires and why,
//! reordering and turning rules on and off. The form that creates and edits a rule is in `form`,
//! the names of what a rule refers to in `names`, the dry run's explanation in `explain`.

mod explain;
mod form;
mod names;

pub(crate) use names::Names;

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::i18n::Tr;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::crm::rules::{self, Move};
use chatter_core::CoreError;
use chatter_domain::SourceId;
use chrono::Weekday;
use explain::{decision_view, DecisionView};
use form::{create, edit_page, field_messages, new_page, update};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/crm/rules", get(list_page).post(create))
        .route("/app/crm/rules/new", get(new_page))
        .route("/app/crm/rules/dry-run", post(dry_run))
        .route("/app/crm/rules/{rule}", get(edit_page).post(update))
        .route("/app/crm/rules/{rule}/delete", post(delete))
        .route("/app/crm/rules/{rule}/move", post(move_rule))
        .route("/app/crm/rules/{rule}/enable", post(enable))
        .route("/app/crm/rules/{rule}/disable", post(disable))
}

/// The week as a rule stores it, as the form sends it (`mon` …) and as pages name it.
const DAYS: [(Weekday, &str, &str); 7] = [
    (Weekday::Mon, "mon", "rules.day_mon"),
    (Weekday::Tue, "tue", "rules.day_tue"),
    (Weekday::Wed, "wed", "rules.day_wed"),
    (Weekday::Thu, "thu", "rules.day_thu"),
    (Weekday::Fri, "fri", "rules.day_fri"),
    (Weekday::Sat, "sat", "rules.day_sat"),
    (Weekday::Sun, "sun", "rules.day_sun"),
];

struct RuleRow {
    id: String,
    name: String,
    enabled: bool,
    conditions: Vec<String>,
    actions: Vec<String>,
    first: bool,
    last: bool,
}

/// The dry run's inputs and, once run, its answer.
#[derive(Default)]
struct DryRunView {
    source: String,
    text: String,
    at: String,
    result: Option<DecisionView>,
}
#[derive(Template)]
#[template(path = "rules/list.html")]
struct ListTpl {
    p: Page,
    rows: Vec<RuleRow>,
    sources: Vec<(Uuid, String)>,
    tz: String,
    dry: DryRunView,
    /// Problems with the dry run's inputs.
    errors: Vec<(&'static str, String)>,
}

impl ListTpl {
    fn err(&self, field: &str) -> String {
        field_messages(&self.errors, field)
    }
}

async fn list_tpl(
    st: &AppState,
    ctx: &Ctx,
    dry: DryRunView,
    errors: Vec<(&'static str, String)>,
) -> Result<ListTpl, AppError> {
    let actor = ctx.actor()?;
    let tr = Tr(ctx.lang);
    let list = rules::list(&st.core, &actor).await?;
    let names = Names::load(st, &actor).await?;
    let n = list.len();
    let rows = list
        .into_iter()
        .enumerate()
        .map(|(i, r)| RuleRow {
            conditions: names.conditions(tr, &r.conditions),
            actions: names.actions(tr, &r.actions),
            id: r.id,
            name: r.name,
            enabled: r.enabled,
            first: i == 0,
            last: i + 1 == n,
        })
        .collect();
    let tz = rules::time_zone(&st.core.db, actor.company_id).await?;
    let dry = DryRunView {
        at: if dry.at.is_empty() {
            chrono::DateTime::from_timestamp_millis(st.core.now())
                .map(|t| t.with_timezone(&tz).format("%Y-%m-%dT%H:%M").to_string())
                .unwrap_or_default()
        } else {
            dry.at
        },
        ..dry
    };
    Ok(ListTpl {
        p: Page::new(ctx, "crm"),
        rows,
        sources: names.sources,
        tz: tz.name().to_owned(),
        dry,
        errors,
    })
}

async fn list_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    let mut tpl = list_tpl(&st, &ctx, DryRunView::default(), Vec::new()).await?;
    tpl.p = tpl.p.flash(&q);
    Ok(render(tpl))
}

#[derive(serde::Deserialize)]
struct DryRunForm {
    #[serde(default)]
    source: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    at: String,
}

/// Runs the rules on a pasted message and shows the page with the answer; changes nothing.
async fn dry_run(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<DryRunForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let tr = Tr(ctx.lang);
    let mut dry = DryRunView {
        source: f.source.trim().to_owned(),
        text: f.text,
        at: f.at.trim().to_owned(),
        result: None,
    };
    let outcome = match Uuid::parse_str(&dry.source) {
        Ok(source) => rules::dry_run(&st.core, &actor, SourceId(source), &dry.text, &dry.at).await,
        Err(_) => Err(CoreError::field("source", "rules.err_source")),
    };
    match outcome {
        Ok(d) => {
            let names = Names::load(&st, &actor).await?;
            dry.result = Some(decision_view(tr, &names, &d));
            Ok(render(list_tpl(&st, &ctx, dry, Vec::new()).await?))
        }
        Err(CoreError::Invalid(errs)) => {
            let errors = errs.iter().map(|e| (e.field, tr.field(e))).collect();
            Ok(render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                list_tpl(&st, &ctx, dry, errors).await?,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct Empty {}

#[derive(serde::Deserialize)]
struct MoveForm {
    #[serde(default)]
    dir: String,
}

async fn delete(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    rules::delete(&st.core, &ctx.actor()?, &id).await?;
    Ok(Redirect::to("/app/crm/rules?ok=removed").into_response())
}

async fn move_rule(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<MoveForm>,
) -> Result<Response, AppError> {
    let to = match f.dir.as_str() {
        "up" => Move::Up,
        "down" => Move::Down,
        _ => return Err(CoreError::field("dir", "err.invalid").into()),
    };
    rules::move_rule(&st.core, &ctx.actor()?, &id, to).await?;
    Ok(Redirect::to("/app/crm/rules").into_response())
}

async fn enable(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    rules::set_enabled(&st.core, &ctx.actor()?, &id, true).await?;
    Ok(Redirect::to("/app/crm/rules").into_response())
}

async fn disable(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    rules::set_enabled(&st.core, &ctx.actor()?, &id, false).await?;
    Ok(Redirect::to("/app/crm/rules").into_response())
}
