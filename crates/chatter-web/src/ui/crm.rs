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
use chatter_core::crm::sync::import::{self as crm_import, ImportPreview, ImportProgress};
use chatter_core::crm::{self, integration::Metadata};
use chatter_core::CoreError;
use chatter_store::entity::crm_integration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/crm", get(crm_page))
        .route("/app/crm/connect", post(connect))
        .route("/app/crm/sync", post(sync))
        .route("/app/crm/disconnect", post(disconnect))
        .route("/app/crm/import", post(import))
        .route("/crm/amocrm/callback", get(callback))
}

#[derive(Template)]
#[template(path = "app/crm.html")]
struct CrmTpl {
    p: Page,
    configured: bool,
    integration: Option<(crm_integration::Model, Metadata)>,
    import: ImportCard,
}

/// Sending the conversations that were there before amoCRM (issue 15, item 11): the latest
/// import's progress, and what an import of the chosen period would send now.
#[derive(Default)]
struct ImportCard {
    latest: Option<ImportProgress>,
    preview: Option<ImportPreview>,
    /// The period in the form: the one asked for, else the default.
    days: String,
}

impl ImportCard {
    /// An import is still sending (the offer waits until it is done).
    fn running(&self) -> bool {
        self.latest.as_ref().is_some_and(|l| !l.done())
    }
}

#[derive(serde::Deserialize, Default)]
struct CrmQuery {
    ok: Option<String>,
    days: Option<String>,
}

async fn import_card(st: &AppState, ctx: &Ctx, days: Option<&str>) -> Result<ImportCard, AppError> {
    let actor = ctx.actor()?;
    let latest = crm_import::latest(&st.core, &actor).await?;
    let asked = days.and_then(|d| d.trim().parse::<i64>().ok());
    let n = asked
        .filter(|d| (1..=crm_import::MAX_DAYS).contains(d))
        .unwrap_or(crm_import::DEFAULT_DAYS);
    let preview = crm_import::preview(&st.core, &actor, n).await?;
    Ok(ImportCard {
        latest,
        preview,
        days: days.map_or_else(|| n.to_string(), str::to_owned),
    })
}

async fn crm_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<CrmQuery>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let integration = crm::get(&st.core, &actor).await?;
    let mut p = Page::new(&ctx, "crm").flash(&Flash { ok: q.ok.clone() });
    let days = q.days.as_deref();
    if let Some(d) = days {
        if !d
            .trim()
            .parse::<i64>()
            .is_ok_and(|d| (1..=crm_import::MAX_DAYS).contains(&d))
        {
            p = p.errors(vec![chatter_domain::FieldError::new(
                "days",
                "crm.import.days_range",
            )]);
        }
    }
    let import = import_card(&st, &ctx, days).await?;
    Ok(render(CrmTpl {
        p,
        configured: st.core.config.amocrm.is_some(),
        integration,
        import,
    }))
}

#[derive(serde::Deserialize)]
struct ImportForm {
    #[serde(default)]
    days: String,
}

/// Sends the open conversations of the chosen period with their history.
async fn import(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<ImportForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let started = match f.days.trim().parse::<i64>() {
        Ok(days) => crm_import::start(&st.core, &actor, days).await,
        Err(_) => Err(CoreError::field("days", "crm.import.days_range")),
    };
    match started {
        Ok(_) => Ok(Redirect::to("/app/crm?ok=crm_import_started#crm-import").into_response()),
        Err(CoreError::Invalid(errs)) => {
            let integration = crm::get(&st.core, &actor).await?;
            let mut import = import_card(&st, &ctx, Some(f.days.as_str())).await?;
            import.days = f.days;
            Ok(render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                CrmTpl {
                    p: Page::new(&ctx, "crm").errors(errs),
                    configured: st.core.config.amocrm.is_some(),
                    integration,
                    import,
                },
            ))
        }
        Err(e) => Err(e.into()),
    }
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
    let import = import_card(st, ctx, None).await?;
    Ok(render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        CrmTpl {
            p,
            configured,
            integration,
            import,
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
