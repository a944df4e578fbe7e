//! Company settings: API keys, backups, and jobs that failed for good (with retry).

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
use chatter_core::{api_keys, audit, backup, Actor, CoreError};
use chatter_domain::Permission;
use chatter_store::entity::{api_key, backup as backup_row, job};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/settings", get(settings_page))
        .route("/app/settings/api-keys", post(create_key))
        .route("/app/settings/api-keys/{id}/revoke", post(revoke_key))
        .route("/app/settings/backups", post(backup_now))
        .route("/app/settings/jobs/{id}/retry", post(retry_job))
}

#[derive(Template)]
#[template(path = "app/settings.html")]
struct SettingsTpl {
    p: Page,
    keys: Vec<api_key::Model>,
    new_key: Option<String>,
    key_name: String,
    backups: Vec<backup_row::Model>,
    next_backup: Option<i64>,
    dead_jobs: Vec<job::Model>,
    database: &'static str,
}

async fn load(st: &AppState, ctx: &Ctx, actor: &Actor, p: Page) -> Result<SettingsTpl, AppError> {
    actor.require(Permission::Manage)?;
    let keys = api_keys::list(&st.core, actor).await?;
    let (backups, next_backup) = if actor.role.can(Permission::Own) {
        let next = chatter_store::jobs::list(&st.core.db, chatter_store::jobs::QUEUED, None, 500)
            .await
            .map_err(chatter_core::CoreError::from)?
            .into_iter()
            .filter(|j| j.kind == backup::JOB_BACKUP_DAILY)
            .map(|j| j.run_at)
            .min();
        (backup::list(&st.core, 20).await?, next)
    } else {
        (Vec::new(), None)
    };
    let dead_jobs = chatter_store::jobs::list(
        &st.core.db,
        chatter_store::jobs::DEAD,
        Some(actor.company_id),
        50,
    )
    .await
    .map_err(chatter_core::CoreError::from)?;
    let _ = ctx;
    Ok(SettingsTpl {
        p,
        keys,
        new_key: None,
        key_name: String::new(),
        backups,
        next_backup,
        dead_jobs,
        database: if st.core.database_url_is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
    })
}

async fn settings_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    Ok(render(
        load(&st, &ctx, &actor, Page::new(&ctx, "settings").flash(&q)).await?,
    ))
}

#[derive(serde::Deserialize)]
struct KeyForm {
    name: String,
}

async fn create_key(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<KeyForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    match api_keys::create(&st.core, &actor, &f.name).await {
        Ok((key, _)) => {
            let mut t = load(&st, &ctx, &actor, Page::new(&ctx, "settings")).await?;
            t.new_key = Some(key);
            Ok(render(t))
        }
        Err(CoreError::Invalid(errs)) => {
            let mut t = load(&st, &ctx, &actor, Page::new(&ctx, "settings").errors(errs)).await?;
            t.key_name = f.name;
            Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, t))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn revoke_key(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    api_keys::revoke(&st.core, &ctx.actor()?, id).await?;
    Ok(Redirect::to("/app/settings?ok=revoked").into_response())
}

async fn backup_now(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    actor.require(Permission::Own)?;
    let row = backup::backup_now(&st.core, &st.cfg.database_url, "manual").await;
    let ok = row.is_ok();
    let txn_detail = match &row {
        Ok(b) => serde_json::json!({"path": b.path, "size": b.size_bytes}),
        Err(e) => serde_json::json!({"error": e.to_string()}),
    };
    audit::record(
        &st.core.db,
        &actor,
        st.core.now(),
        "backup.create",
        "database",
        txn_detail,
    )
    .await?;
    if ok {
        Ok(Redirect::to("/app/settings?ok=backup_done#backups").into_response())
    } else {
        // The failed attempt is recorded and listed with its error.
        Ok(Redirect::to("/app/settings#backups").into_response())
    }
}

async fn retry_job(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    actor.require(Permission::Manage)?;
    let ok =
        chatter_store::jobs::retry_dead(&st.core.db, id, Some(actor.company_id), st.core.now())
            .await
            .map_err(CoreError::from)?;
    if !ok {
        return Err(CoreError::NotFound.into());
    }
    st.core.jobs_notify.notify_waiters();
    audit::record(
        &st.core.db,
        &actor,
        st.core.now(),
        "job.retry",
        &id.to_string(),
        serde_json::json!({}),
    )
    .await?;
    Ok(Redirect::to("/app/settings?ok=job_retried").into_response())
}
