//! Company settings: API keys and the export of the company's own data (owners). Backups and
//! failed jobs are the instance operator's (`ui::operator`).

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::accounts::api_keys;
use chatter_core::accounts::operators;
use chatter_core::{exports, Actor, CoreError};
use chatter_domain::Permission;
use chatter_store::entity::{api_key, company_export};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/settings", get(settings_page))
        .route("/app/settings/api-keys", post(create_key))
        .route("/app/settings/api-keys/{id}/revoke", post(revoke_key))
        .route("/app/settings/exports", post(start_export))
        .route("/app/settings/exports/{id}/download", get(download_export))
}

#[derive(Template)]
#[template(path = "app/settings.html")]
struct SettingsTpl {
    p: Page,
    keys: Vec<api_key::Model>,
    new_key: Option<String>,
    key_name: String,
    exports: Vec<company_export::Model>,
    /// The signed-in person runs this instance: a link to the operator area.
    operator: bool,
}

async fn load(st: &AppState, ctx: &Ctx, actor: &Actor, p: Page) -> Result<SettingsTpl, AppError> {
    actor.require(Permission::Manage)?;
    let keys = api_keys::list(&st.core, actor).await?;
    let exports = if actor.role.can(Permission::Own) {
        exports::list(&st.core, actor).await?
    } else {
        Vec::new()
    };
    let operator = match ctx.session.as_ref() {
        Some(s) => operators::is_operator(&st.core, s.user.id).await?,
        None => false,
    };
    Ok(SettingsTpl {
        p,
        keys,
        new_key: None,
        key_name: String::new(),
        exports,
        operator,
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

async fn start_export(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    exports::start(&st.core, &ctx.actor()?).await?;
    Ok(Redirect::to("/app/settings?ok=export_started#exports").into_response())
}

async fn download_export(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
) -> Result<Response, AppError> {
    let (path, name) = exports::file(&st.core, &ctx.actor()?, id).await?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| CoreError::Internal(format!("cannot read {}: {e}", path.display())))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        bytes,
    )
        .into_response())
}
