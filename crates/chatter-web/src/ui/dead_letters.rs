//! Settings → undelivered events («Недоставленные события»): inbound events that could never
//! be stored as they came, parked and acknowledged (core::dead_letters). Owners and admins see
//! each with its source, reason and what the provider sent, and retry or delete it.

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
use chatter_core::inbox::dead_letters::{self, Retried};
use chatter_core::sources;
use chatter_store::entity::dead_letter;
use std::collections::HashMap;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/settings/dead-letters", get(list_page))
        .route("/app/settings/dead-letters/{id}/retry", post(retry))
        .route("/app/settings/dead-letters/{id}/delete", post(delete))
}

/// Longest part of a body shown in the list (the whole one is in the API).
const SHOWN: usize = 20_000;

struct Row {
    d: dead_letter::Model,
    source_name: String,
    shown: String,
}

#[derive(Template)]
#[template(path = "app/dead_letters.html")]
struct ListTpl {
    p: Page,
    rows: Vec<Row>,
}

async fn list_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let list = dead_letters::list(&st.core, &actor, 200).await?;
    let names: HashMap<Uuid, String> = sources::list(&st.core, &actor)
        .await?
        .into_iter()
        .map(|s| (s.id.0, s.name))
        .collect();
    let rows = list
        .into_iter()
        .map(|d| {
            let body = d.raw.as_deref().unwrap_or(&d.event);
            Row {
                source_name: names.get(&d.source_id).cloned().unwrap_or_default(),
                shown: body.chars().take(SHOWN).collect(),
                d,
            }
        })
        .collect();
    Ok(render(ListTpl {
        p: Page::new(&ctx, "settings").flash(&q),
        rows,
    }))
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn retry(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let flash = match dead_letters::retry(&st.core, &ctx.actor()?, id).await? {
        Retried::Stored => "dead_retried",
        Retried::StillRefused(_) => "dead_still_refused",
    };
    Ok(Redirect::to(&format!("/app/settings/dead-letters?ok={flash}")).into_response())
}

async fn delete(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    dead_letters::delete(&st.core, &ctx.actor()?, id).await?;
    Ok(Redirect::to("/app/settings/dead-letters?ok=dead_deleted").into_response())
}
