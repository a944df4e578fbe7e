//! API sources (kind 6): creating one (its signing secret is shown once), its page with the
//! inbound URL and how to sign, the outgoing webhook URL, rotating the secret, and the
//! delivery log with a replay button per delivery.

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
use chatter_core::sources::api::{self as api_source, ApiSettings, DeliveryRow};
use chatter_core::{Actor, CoreError};
use chatter_domain::{Permission, SourceId};
use chatter_store::entity::source;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/sources/new/api", get(new_page))
        // After creating one, a reload (or Back) asks for this address with GET.
        .route(
            "/app/api-sources",
            get(|| async { Redirect::to("/app/sources") }).post(create),
        )
        .route("/app/api-sources/{id}", get(show_page))
        .route("/app/api-sources/{id}/webhook", post(set_webhook))
        .route("/app/api-sources/{id}/rotate", post(rotate))
        .route(
            "/app/api-sources/{id}/deliveries/{delivery}/replay",
            post(replay),
        )
}

#[derive(Template)]
#[template(path = "api_sources/new.html")]
struct NewTpl {
    p: Page,
    name: String,
}

async fn new_page(Extension(ctx): Extension<Ctx>) -> Result<Response, AppError> {
    ctx.actor()?.require(Permission::Manage)?;
    Ok(render(NewTpl {
        p: Page::new(&ctx, "sources"),
        name: String::new(),
    }))
}

#[derive(serde::Deserialize)]
struct NewForm {
    #[serde(default)]
    name: String,
}

async fn create(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<NewForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    match api_source::create(&st.core, &actor, &f.name).await {
        Ok((id, secret)) => {
            let mut t = load(&st, &actor, id, Page::new(&ctx, "sources")).await?;
            t.new_secret = Some(secret);
            Ok(render(t))
        }
        Err(CoreError::Invalid(errs)) => Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            NewTpl {
                p: Page::new(&ctx, "sources").errors(errs),
                name: f.name,
            },
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "api_sources/show.html")]
struct ShowTpl {
    p: Page,
    s: source::Model,
    status_key: &'static str,
    settings: ApiSettings,
    inbound_url: String,
    webhook_url: String,
    new_secret: Option<String>,
    deliveries: Vec<DeliveryRow>,
}

async fn load(st: &AppState, actor: &Actor, id: SourceId, p: Page) -> Result<ShowTpl, AppError> {
    let s = api_source::get(&st.core, actor, id).await?;
    let settings = api_source::settings_of(&s);
    let deliveries = if actor.role.can(Permission::Manage) {
        api_source::deliveries(&st.core, actor, id, 100).await?
    } else {
        Vec::new()
    };
    Ok(ShowTpl {
        p,
        inbound_url: api_source::inbound_url(&st.core, s.id),
        webhook_url: settings.webhook_url.clone().unwrap_or_default(),
        settings,
        status_key: super::sources::status_key(&s.status),
        s,
        new_secret: None,
        deliveries,
    })
}

async fn show_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<SourceId>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    Ok(render(
        load(&st, &actor, id, Page::new(&ctx, "sources").flash(&q)).await?,
    ))
}

#[derive(serde::Deserialize)]
struct WebhookForm {
    #[serde(default)]
    webhook_url: String,
}

async fn set_webhook(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<SourceId>,
    CsrfForm(f): CsrfForm<WebhookForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    match api_source::set_webhook_url(&st.core, &actor, id, &f.webhook_url).await {
        Ok(()) => Ok(Redirect::to(&format!("/app/api-sources/{id}?ok=saved")).into_response()),
        Err(CoreError::Invalid(errs)) => {
            let mut t = load(&st, &actor, id, Page::new(&ctx, "sources").errors(errs)).await?;
            t.webhook_url = f.webhook_url;
            Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, t))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn rotate(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<SourceId>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let secret = api_source::rotate_secret(&st.core, &actor, id).await?;
    let mut t = load(&st, &actor, id, Page::new(&ctx, "sources")).await?;
    t.new_secret = Some(secret);
    Ok(render(t))
}

async fn replay(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((id, delivery)): Path<(SourceId, Uuid)>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    api_source::replay(&st.core, &ctx.actor()?, id, delivery).await?;
    Ok(Redirect::to(&format!("/app/api-sources/{id}?ok=saved#deliveries")).into_response())
}
