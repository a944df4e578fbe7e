//! The operator area (`/app/operator`): the instance's backups (list, next run, failures, back
//! up now), every company's failed jobs with a retry button, and companies with their plans
//! and the plans' prices (`operator_billing`). Only instance operators
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
use chatter_core::accounts::operators::{self, Operator};
use chatter_core::CoreError;
use chatter_store::entity::{backup, job};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/operator", get(operator_page))
        .route("/app/operator/backups", post(backup_now))
        .route("/app/operator/jobs/{id}/retry", post(retry_job))
        .route(
            "/app/operator/companies/{id}/billing",
            post(super::operator_billing::change_company),
        )
        .route(
            "/app/operator/plans/{id}",
            post(super::operator_billing::save_plan),
        )
}

/// The operator behind the request, or 404.
pub(super) async fn operator(st: &AppState, ctx: &Ctx) -> Result<Operator, AppError> {
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
    tls: TlsView,
    billing: super::operator_billing::BillingView,
}

/// The HTTPS certificate as the operator sees it: this node's, and for ACME the shared order.
#[derive(Default)]
struct TlsView {
    /// Whether this node serves HTTPS itself.
    served: bool,
    /// Translation key of where the certificate comes from.
    source: &'static str,
    names: String,
    issuer: String,
    serial: String,
    not_after: Option<i64>,
    /// The last problem (a file that did not load, an order that failed) and when.
    problem: Option<(i64, String)>,
    /// ACME: when the next order is due (renewal or retry).
    next_attempt: Option<i64>,
}

async fn tls_view(st: &AppState) -> Result<TlsView, AppError> {
    let Some(status) = st.cfg.tls.as_ref().and_then(|s| s.status()) else {
        return Ok(TlsView::default());
    };
    let mut v = TlsView {
        served: true,
        source: match status.source {
            chatter_tls::Source::Files => "tls.source_files",
            chatter_tls::Source::Acme => "tls.source_acme",
        },
        problem: status.problem.clone(),
        ..TlsView::default()
    };
    if let Some(c) = &status.current {
        v.names = c.names.join(", ");
        v.issuer = c.issuer.clone();
        v.serial = c.serial.clone();
        v.not_after = Some(c.not_after);
    }
    if status.source == chatter_tls::Source::Acme {
        let shared = chatter_tls::acme::shared(&st.core)
            .await
            .map_err(|e| AppError::from(chatter_core::CoreError::Internal(e.to_string())))?;
        if let Some(s) = shared.into_iter().next() {
            // Another node may have made the last attempt: the database has its outcome.
            if s.error.is_some() {
                v.problem = s.error;
            }
            v.next_attempt = Some(s.next_attempt_at);
            if v.names.is_empty() {
                v.names = s.name;
            }
        }
    }
    Ok(v)
}

async fn operator_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    let op = operator(&st, &ctx).await?;
    let o = operators::overview(&st.core, &op).await?;
    let nodes = chatter_core::nodes::list_alive(&st.core).await?;
    let tls = tls_view(&st).await?;
    let billing = super::operator_billing::view(&st).await?;
    Ok(render(OperatorTpl {
        nodes,
        tls,
        billing,
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
