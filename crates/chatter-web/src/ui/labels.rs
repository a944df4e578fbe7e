//! The company's labels (Settings → Labels): owners and admins create, rename, recolour and
//! delete them. Putting labels on conversations is the inbox's (`inbox::labels`).

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
use chatter_core::inbox::labels::{self, COLORS, NAME_MAX};
use chatter_core::{Actor, CoreError};
use chatter_domain::Permission;
use chatter_store::entity::label;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/settings/labels", get(labels_page).post(create_label))
        .route("/app/settings/labels/{id}", post(update_label))
        .route("/app/settings/labels/{id}/delete", post(delete_label))
}

#[derive(Template)]
#[template(path = "app/labels.html")]
struct LabelsTpl {
    p: Page,
    labels: Vec<label::Model>,
    colors: &'static [&'static str],
    max: usize,
    /// The create form as typed (re-shown with its error).
    name: String,
    color: String,
    /// The label whose edit form the errors belong to.
    editing: Option<Uuid>,
}

impl LabelsTpl {
    fn same(&self, a: &str, b: &str) -> bool {
        a == b
    }
    fn is_editing(&self, id: &Uuid) -> bool {
        self.editing.as_ref() == Some(id)
    }
    fn color_name(&self, c: &str) -> &'static str {
        self.p.t(&format!("label.color.{c}"))
    }
}

async fn load(st: &AppState, actor: &Actor, p: Page) -> Result<LabelsTpl, AppError> {
    actor.require(Permission::Manage)?;
    Ok(LabelsTpl {
        p,
        labels: labels::list_labels(&st.core, actor).await?,
        colors: &COLORS,
        max: NAME_MAX,
        name: String::new(),
        color: COLORS[0].to_owned(),
        editing: None,
    })
}

async fn labels_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    Ok(render(
        load(&st, &actor, Page::new(&ctx, "settings").flash(&q)).await?,
    ))
}

#[derive(serde::Deserialize)]
struct LabelForm {
    name: String,
    color: String,
}

async fn create_label(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<LabelForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    match labels::create_label(&st.core, &actor, &f.name, &f.color).await {
        Ok(_) => Ok(Redirect::to("/app/settings/labels?ok=saved").into_response()),
        Err(CoreError::Invalid(errs)) => {
            let mut t = load(&st, &actor, Page::new(&ctx, "settings").errors(errs)).await?;
            t.name = f.name;
            t.color = f.color;
            Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, t))
        }
        Err(e) => Err(e.into()),
    }
}

async fn update_label(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(f): CsrfForm<LabelForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    match labels::update_label(&st.core, &actor, id, Some(&f.name), Some(&f.color)).await {
        Ok(_) => Ok(Redirect::to("/app/settings/labels?ok=saved").into_response()),
        Err(CoreError::Invalid(errs)) => {
            let mut t = load(&st, &actor, Page::new(&ctx, "settings").errors(errs)).await?;
            t.editing = Some(id);
            Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, t))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn delete_label(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    labels::delete_label(&st.core, &ctx.actor()?, id).await?;
    Ok(Redirect::to("/app/settings/labels?ok=label_deleted").into_response())
}
