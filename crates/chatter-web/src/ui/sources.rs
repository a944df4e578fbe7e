//! The Sources page: connected messengers with their health, adding a source of any supported
//! kind (Telegram bot, VK community, Max bot, Avito account, WhatsApp number, SMS gateway
//! account) with its own credentials, turning a source off and on, and checking it again.
//! WhatsApp and SMS callbacks are set by hand at the provider: their pages show the URLs (and
//! WhatsApp's verify token) to paste.

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::{CsrfForm, FormRejection};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_channels::{FormField, FormValues, Kind};
use chatter_core::sources::{self, NewSource, SourceSettings};
use chatter_core::CoreError;
use chatter_domain::{Permission, SourceId, SourceKind};
use chatter_store::entity::source;
use std::collections::BTreeMap;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/sources", get(list_page).post(create))
        .route("/app/sources/new", get(new_page))
        .route("/app/sources/{id}", get(show_page))
        .route("/app/sources/{id}/disable", post(disable))
        .route("/app/sources/{id}/enable", post(enable))
        .route("/app/sources/{id}/check", post(enable))
        .route("/app/sources/{id}/sms-price", post(sms_price))
}

pub fn kind_key(kind: SourceKind) -> &'static str {
    kind.label_key()
}

pub fn status_key(status: &str) -> &'static str {
    match status {
        sources::CONNECTED => "status.connected",
        sources::CONNECTING => "status.connecting",
        sources::TOKEN_REVOKED => "status.token_revoked",
        sources::DISABLED => "status.disabled",
        _ => "status.error",
    }
}

fn fix_key(s: &source::Model) -> &'static str {
    match s.status.as_str() {
        sources::TOKEN_REVOKED => chatter_channels::kind_of(s.kind)
            .and_then(|k| k.revoked_fix_key())
            .unwrap_or("sources.revoked_fix"),
        sources::ERROR
            if s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("webhook")) =>
        {
            "sources.conflict_fix"
        }
        sources::ERROR => "sources.error_fix",
        _ => "",
    }
}

struct Row {
    id: Uuid,
    name: String,
    username: Option<String>,
    kind_id: i32,
    kind_key: &'static str,
    /// The source has its own page (the API source's), not the messenger sources' one.
    own_page: bool,
    status: String,
    status_key: &'static str,
    last_error: Option<String>,
    mode: String,
    last_inbound_at: Option<i64>,
    /// Events parked as undelivered (Settings → undelivered events).
    parked: i64,
}

#[derive(Template)]
#[template(path = "sources/list.html")]
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
    let parked =
        chatter_core::inbox::dead_letters::counts_by_source(&st.core, actor.company_id).await?;
    let rows = sources::list(&st.core, &actor)
        .await?
        .into_iter()
        .map(|s| {
            let set = sources::settings_of(&s);
            Row {
                parked: parked.get(&s.id).copied().unwrap_or(0),
                id: s.id.0,
                username: set.bot_username,
                kind_id: s.kind.id(),
                kind_key: kind_key(s.kind),
                own_page: chatter_channels::kind_of(s.kind).is_some_and(|k| !k.has_connector()),
                status_key: status_key(&s.status),
                status: s.status,
                last_error: s.last_error,
                mode: set.mode,
                last_inbound_at: s.last_inbound_at,
                name: s.name,
            }
        })
        .collect();
    Ok(render(ListTpl {
        p: Page::new(&ctx, "sources").flash(&q),
        rows,
    }))
}

#[derive(Template)]
#[template(path = "sources/new.html")]
struct NewTpl {
    p: Page,
    /// The chooser's entries: every kind with a form, then the API source.
    choices: Vec<Choice>,
    /// The kind whose form was sent (its fields keep their values and show the errors).
    kind: i32,
    /// The one kind whose form the page shows; 0: the chooser of kinds.
    only: i32,
    /// The fields of `only`'s form, in order (none on the chooser).
    fields: &'static [FormField],
    /// The translation key of the help above `only`'s form.
    help_key: &'static str,
    name: String,
    /// What was typed into the form that was sent; secrets are never sent back.
    values: BTreeMap<String, String>,
}

impl NewTpl {
    /// The chooser, or `only`'s empty form when it is a kind with a form.
    fn blank(p: Page, only: i32) -> Self {
        let kind = form_kind(only);
        NewTpl {
            p,
            choices: choices(),
            kind: 0,
            only: kind.map_or(0, |_| only),
            fields: kind.map_or(&[], |k| k.fields()),
            help_key: kind.and_then(|k| k.form_help_key()).unwrap_or(""),
            name: String::new(),
            values: BTreeMap::new(),
        }
    }

    fn kind_name(&self, kind: &i32) -> &'static str {
        SourceKind::from_id(*kind).map_or("kind.unknown", kind_key)
    }

    /// The name typed into the form of `kind` (empty in the others).
    fn name_for(&self, kind: &i32) -> &str {
        if self.kind == *kind {
            &self.name
        } else {
            ""
        }
    }

    /// The value `field` is shown with: what was typed, unless it is a secret.
    fn value_of(&self, field: &FormField) -> &str {
        match self.values.get(field.name) {
            Some(v) if !field.secret && self.kind == self.only => v,
            _ => "",
        }
    }

    /// The error of `field` in the form of `kind` (empty in the others).
    fn err_for(&self, kind: &i32, field: &str) -> String {
        if self.kind == *kind {
            self.p.err(field).to_string()
        } else {
            String::new()
        }
    }
}

/// The registered kind `id` when it has an add-source form.
fn form_kind(id: i32) -> Option<&'static dyn Kind> {
    chatter_channels::kind_of_id(id).filter(|k| !k.fields().is_empty())
}

/// One kind on the add page's chooser.
struct Choice {
    /// The kind's numeric id (the link's element id is `choose-{id}`).
    id: i32,
    label_key: &'static str,
    /// Its form, or the page of its own.
    href: String,
}

/// The kinds that have a form on the add page or connect by a login in steps (a page flow of
/// their own), in the registry's order, then the API source, which is added on a page of its
/// own.
fn choices() -> Vec<Choice> {
    let mut v: Vec<Choice> = chatter_channels::KINDS
        .iter()
        .filter(|k| !k.fields().is_empty() || k.login().is_some())
        .map(|k| Choice {
            id: k.source_kind().id(),
            label_key: k.label_key(),
            href: match k.login() {
                Some(_) => format!("/app/sources/new/login/{}", k.slug()),
                None => format!("/app/sources/new?kind={}", k.source_kind().id()),
            },
        })
        .collect();
    v.push(Choice {
        id: SourceKind::Api.id(),
        label_key: kind_key(SourceKind::Api),
        href: "/app/sources/new/api".to_owned(),
    });
    v
}

#[derive(serde::Deserialize)]
struct KindQuery {
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    kind: Option<i32>,
}

/// Without `?kind=`, a chooser of kinds; with it, that kind's form alone, so its errors are
/// where the eye is.
async fn new_page(
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<KindQuery>,
) -> Result<Response, AppError> {
    ctx.actor()?.require(Permission::Manage)?;
    if q.kind == Some(SourceKind::Api.id()) {
        return Ok(Redirect::to("/app/sources/new/api").into_response());
    }
    Ok(render(NewTpl::blank(
        Page::new(&ctx, "sources"),
        q.kind.unwrap_or(0),
    )))
}

/// One form per kind, each with its kind's fields (`Kind::fields`) and `kind`, `name`.
async fn create(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(mut f): CsrfForm<BTreeMap<String, String>>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let kind = match f.remove("kind") {
        // The add form has always sent its kind; before there were several forms it was the
        // Telegram bot's, so a post without one still means the first kind with a form.
        None => chatter_channels::KINDS
            .iter()
            .find(|k| !k.fields().is_empty())
            .map_or(0, |k| k.source_kind().id()),
        Some(k) => match k.parse::<i32>() {
            Ok(k) => k,
            Err(e) => return Ok(FormRejection::Bad(format!("kind: {e}")).into_response()),
        },
    };
    let Some(source_kind) = form_kind(kind).map(|k| k.source_kind()) else {
        return Err(CoreError::field("kind", "err.kind_unsupported").into());
    };
    let name = f.remove("name").unwrap_or_default();
    f.remove("_csrf");
    let new = NewSource {
        kind: source_kind,
        fields: FormValues(f.clone()),
    };
    match sources::add_source(&st.core, &actor, &name, new).await {
        Ok(id) => Ok(Redirect::to(&format!("/app/sources/{id}")).into_response()),
        Err(CoreError::Invalid(errs)) => Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            NewTpl {
                kind,
                name,
                values: f,
                ..NewTpl::blank(Page::new(&ctx, "sources").errors(errs), kind)
            },
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "sources/show.html")]
struct ShowTpl {
    p: Page,
    s: source::Model,
    settings: SourceSettings,
    kind_key: &'static str,
    status_key: &'static str,
    fix_key: &'static str,
    webhook: Option<String>,
    /// What to paste at the provider by hand (WhatsApp, SMS): label key and value.
    setup: Vec<(&'static str, String)>,
    /// The advice above `setup`.
    setup_help_key: &'static str,
    /// The page shows the provider account the source is rather than a bot.
    shows_account: bool,
    /// The source has a settings page of its own (the API source's).
    api_settings: bool,
    /// Billed in parts (SMS): the page keeps the price of a part, as typed or stored.
    billed: bool,
    price: String,
}

/// The callback URLs (and WhatsApp's verify token) of a source whose provider is configured
/// by hand; only people who manage sources see them (the SMS URLs carry the secret token).
fn manual_setup(st: &AppState, s: &source::Model, can_manage: bool) -> Vec<(&'static str, String)> {
    let Some(kind) = chatter_channels::kind_of(s.kind) else {
        return Vec::new();
    };
    let secret = sources::secret_of(&st.core, s)
        .ok()
        .and_then(|x| x.webhook_secret)
        .filter(|_| can_manage);
    let base = chatter_core::connectors::public_hook_base(&st.core.config, s.kind);
    kind.manual_setup(base, s.id.0, secret.as_deref())
}

async fn show_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<SourceId>,
    Query(f): Query<Flash>,
) -> Result<Response, AppError> {
    let p = Page::new(&ctx, "sources").flash(&f);
    Ok(render(show(&st, &ctx, id, p, None).await?))
}

/// The price of one SMS part, typed on the source's page: saved, or the page again with the
/// field's error and nothing saved.
async fn sms_price(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<SourceId>,
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let typed = form
        .iter()
        .find(|(k, _)| k == "price")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    match sources::set_sms_part_price(&st.core, &ctx.actor()?, id, &typed).await {
        Ok(_) => Ok(Redirect::to(&format!("/app/sources/{id}?ok=saved")).into_response()),
        Err(CoreError::Invalid(e)) => {
            let p = Page::new(&ctx, "sources").errors(e);
            Ok(render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                show(&st, &ctx, id, p, Some(typed)).await?,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

async fn show(
    st: &AppState,
    ctx: &Ctx,
    id: SourceId,
    p: Page,
    typed_price: Option<String>,
) -> Result<ShowTpl, AppError> {
    let actor = ctx.actor()?;
    let s = sources::get(&st.core, &actor, id).await?;
    let settings = sources::settings_of(&s);
    // Live webhook state from Telegram, briefly; the page still renders if it does not answer.
    let webhook = if settings.mode == "webhook" && s.status != sources::DISABLED {
        let status = async {
            let c = chatter_core::connectors::connector_for(&st.core, &s).ok()?;
            c.hook_status().await?.ok()
        };
        match tokio::time::timeout(std::time::Duration::from_secs(3), status).await {
            Ok(Some(w)) => Some(format!(
                "{} · {}: {}{}",
                w.url,
                crate::i18n::Tr(ctx.lang).t("sources.pending_updates"),
                w.pending,
                w.last_error.map(|m| format!(" · {m}")).unwrap_or_default()
            )),
            _ => None,
        }
    } else {
        None
    };
    let setup = manual_setup(st, &s, actor.role.can(Permission::Manage));
    let kind = chatter_channels::kind_of(s.kind);
    let price = typed_price.unwrap_or_else(|| {
        settings
            .sms_part_price_kopecks
            .map(|k| format!("{}.{:02}", k / 100, k % 100))
            .unwrap_or_default()
    });
    Ok(ShowTpl {
        billed: kind.is_some_and(|k| k.text_parts("").is_some()),
        price,
        setup,
        setup_help_key: kind.and_then(|k| k.setup_help_key()).unwrap_or(""),
        shows_account: kind.is_some_and(|k| k.shows_account()),
        api_settings: s.kind == SourceKind::Api,
        p,
        kind_key: kind_key(s.kind),
        status_key: status_key(&s.status),
        fix_key: fix_key(&s),
        settings,
        webhook,
        s,
    })
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn disable(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<SourceId>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    sources::set_enabled(&st.core, &ctx.actor()?, id, false).await?;
    Ok(Redirect::to(&format!("/app/sources/{id}")).into_response())
}

/// Turns a source on again, or re-runs its setup ("check").
async fn enable(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<SourceId>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    sources::set_enabled(&st.core, &ctx.actor()?, id, true).await?;
    Ok(Redirect::to(&format!("/app/sources/{id}")).into_response())
}
