//! Connecting a source by a login in steps (Sources → add → «Личный Telegram»): one page per
//! step, each a plain form (the first: the kind's fields with its help; then the code the
//! provider sent; then the 2FA password with its hint). A refused step is shown again with its
//! field errors; the last step leads to the new source's page. Kind-blind: the steps are the
//! kind's (`Kind::login`), where the login stands is core's (`sources::login`).

use super::{render, render_status, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_channels::{FormField, FormValues};
use chatter_core::sources::login::{self, LoginOutcome, LoginView};
use chatter_core::CoreError;
use chatter_domain::SourceKind;
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/app/sources/new/login/{slug}",
            get(login_page).post(login_step),
        )
        .route("/app/sources/new/login/{slug}/restart", post(login_restart))
}

/// The kind connected by a login whose URL segment is `slug`.
pub(crate) fn login_kind(slug: &str) -> Result<SourceKind, CoreError> {
    chatter_channels::kind_by_slug(slug)
        .filter(|k| k.login().is_some())
        .map(|k| k.source_kind())
        .ok_or(CoreError::NotFound)
}

#[derive(Template)]
#[template(path = "sources/login.html")]
struct LoginTpl {
    p: Page,
    slug: String,
    v: LoginView,
    /// What was typed into fields that are not secret, after a refusal.
    values: BTreeMap<String, String>,
}

impl LoginTpl {
    fn value_of(&self, f: &FormField) -> &str {
        if f.secret {
            return "";
        }
        self.values.get(f.name).map_or("", String::as_str)
    }
}

async fn login_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(slug): Path<String>,
) -> Result<Response, AppError> {
    let kind = login_kind(&slug)?;
    let v = login::state(&st.core, &ctx.actor()?, kind).await?;
    Ok(render(LoginTpl {
        p: Page::new(&ctx, "sources"),
        slug,
        v,
        values: BTreeMap::new(),
    }))
}

async fn login_step(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(slug): Path<String>,
    CsrfForm(mut f): CsrfForm<BTreeMap<String, String>>,
) -> Result<Response, AppError> {
    let kind = login_kind(&slug)?;
    let actor = ctx.actor()?;
    f.remove("_csrf");
    match login::step(&st.core, &actor, kind, &FormValues(f.clone())).await {
        Ok(LoginOutcome::Connected(id)) => {
            Ok(Redirect::to(&format!("/app/sources/{id}")).into_response())
        }
        Ok(LoginOutcome::Next(_)) => {
            Ok(Redirect::to(&format!("/app/sources/new/login/{slug}")).into_response())
        }
        Err(CoreError::Invalid(errs)) => {
            let v = login::state(&st.core, &actor, kind).await?;
            Ok(render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                LoginTpl {
                    p: Page::new(&ctx, "sources").errors(errs),
                    slug,
                    v,
                    values: f,
                },
            ))
        }
        Err(e) => Err(e.into()),
    }
}

async fn login_restart(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(slug): Path<String>,
    CsrfForm(_): CsrfForm<BTreeMap<String, String>>,
) -> Result<Response, AppError> {
    let kind = login_kind(&slug)?;
    login::restart(&st.core, &ctx.actor()?, kind).await?;
    Ok(Redirect::to(&format!("/app/sources/new/login/{slug}")).into_response())
}
