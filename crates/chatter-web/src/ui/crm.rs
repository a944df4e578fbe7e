//! The CRM page: connecting amoCRM (OAuth), what was synced from it, sync and disconnect.

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::crm::signin::{self as crm_signin, Purpose};
use chatter_core::crm::{self, integration::Metadata};
use chatter_core::CoreError;
use chatter_store::entity::crm_integration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/crm", get(crm_page))
        .route("/app/crm/connect", post(connect))
        .route("/app/crm/sync", post(sync))
        .route("/app/crm/disconnect", post(disconnect))
        .route("/crm/amocrm/callback", get(callback))
}

#[derive(Template)]
#[template(path = "app/crm.html")]
struct CrmTpl {
    p: Page,
    configured: bool,
    integration: Option<(crm_integration::Model, Metadata)>,
}

async fn crm_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let integration = crm::get(&st.core, &actor).await?;
    Ok(render(CrmTpl {
        p: Page::new(&ctx, "crm").flash(&q),
        configured: st.core.config.amocrm.is_some(),
        integration,
    }))
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn connect(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let url = crm::connect_url(&st.core, &ctx.actor()?).await?;
    Ok(Redirect::to(&url).into_response())
}

/// amoCRM's redirect after the person allowed (or denied) access. One Redirect URI serves
/// connecting a company, Sign in with amoCRM and linking a profile: the state says which.
async fn callback(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, AppError> {
    let q = q.unwrap_or_default();
    match crm_signin::state_purpose(&st.core, &q).await? {
        Some(Purpose::SignIn) => {
            return super::auth::amocrm_signed_in(&st, &ctx, &headers, &q).await
        }
        Some(Purpose::Link) => return super::profile::amocrm_linked(&st, &ctx, &q).await,
        // A used, expired or made-up state, and nobody signed in: nothing to finish.
        None if ctx.session.is_none() && crm_signin::has_state(&q) => {
            return Err(CoreError::LinkExpired.into())
        }
        _ => {}
    }
    let actor = ctx.actor()?;
    match crm::finish_connect(&st.core, &actor, &q).await {
        Ok(()) => Ok(Redirect::to("/app/crm?ok=crm_connected").into_response()),
        Err(e) => refused(&st, &ctx, e).await,
    }
}

/// The CRM page again, with what went wrong in the person's language.
async fn refused(st: &AppState, ctx: &Ctx, e: CoreError) -> Result<Response, AppError> {
    let CoreError::Invalid(errs) = e else {
        return Err(e.into());
    };
    let integration = crm::get(&st.core, &ctx.actor()?).await?;
    let p = Page::new(ctx, "crm").errors(errs);
    let configured = st.core.config.amocrm.is_some();
    Ok(render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        CrmTpl {
            p,
            configured,
            integration,
        },
    ))
}

async fn sync(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    match crm::sync(&st.core, &actor).await {
        Ok(()) => {
            // "Sync now" also looks at who is responsible for the deals in amoCRM.
            chatter_core::crm::sync::pull_now(&st.core, actor.company_id).await?;
            Ok(Redirect::to("/app/crm?ok=saved").into_response())
        }
        Err(e) => refused(&st, &ctx, e).await,
    }
}

async fn disconnect(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    crm::disconnect(&st.core, &ctx.actor()?).await?;
    Ok(Redirect::to("/app/crm").into_response())
}
