//! The operator area (`/app/operator`): the instance's backups (list, next run, failures, back
//! up now) and every company's failed jobs with a retry button. Only instance operators
//! (`chatter admin operator add`) see it; everyone else, signed in or not, gets 404.

use super::{render, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::operators::{self, Operator};
use chatter_core::CoreError;
use chatter_store::entity::{backup, job};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/operator", get(operator_page))
        .route("/app/operator/backups", post(backup_now))
        .route("/app/operator/jobs/{id}/retry", post(retry_job))
}

/// The operator behind the request, or 404.
async fn operator(st: &AppState, ctx: &Ctx) -> Result<Operator, AppError> {
    let s = ctx.session.as_ref().ok_or(CoreError::NotFound)?;
    Ok(operators::require(&st.core, &s.user, &ctx.meta).await?)
}

#[derive(Template)]
#[template(path = "app/operator.html")]
struct OperatorTpl {
    p: Page,
    backups: Vec<backup::Model>,
    next_backup: Option<i64>,
    backup_keep: usize,
    dead_jobs: Vec<job::Model>,
    database: &'static str,
    nodes: Vec<chatter_core::nodes::Node>,
}

async fn operator_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    let op = operator(&st, &ctx).await?;
    let o = operators::overview(&st.core, &op).await?;
    let nodes = chatter_core::nodes::list_alive(&st.core).await?;
    Ok(render(OperatorTpl {
        nodes,
        p: Page::new(&ctx, "operator").flash(&q),
        backups: o.backups,
        next_backup: o.next_backup,
        backup_keep: st.core.config.backup_keep,
        dead_jobs: o.dead_jobs,
        database: if st.core.database_url_is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
    }))
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn backup_now(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let op = operator(&st, &ctx).await?;
    if operators::backup_now(&st.core, &op, &st.cfg.database_url).await? {
        Ok(Redirect::to("/app/operator?ok=backup_done#backups").into_response())
    } else {
        // The failed attempt is recorded and listed with its error.
        Ok(Redirect::to("/app/operator#backups").into_response())
    }
}

async fn retry_job(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let op = operator(&st, &ctx).await?;
    operators::retry_job(&st.core, &op, id).await?;
    Ok(Redirect::to("/app/operator?ok=job_retried#dead-jobs").into_response())
}
