//! Server-rendered pages. Each handler calls one core function and renders one template;
//! every state-changing form is a `CsrfForm`.

mod api_sources;
mod app;
mod audit;
mod auth;
mod auto_replies;
mod automation;
mod billing;
mod chart;
mod contacts;
mod crm;
mod crm_settings;
mod dead_letters;
pub mod inbox;
mod labels;
mod notifications;
mod operator;
mod operator_billing;
mod profile;
mod reports;
pub mod rules;
mod settings;
pub(crate) mod source_login;
pub mod sources;
mod team;
mod templates;

use crate::ctx::{cookie, Ctx, LANG_COOKIE};
use crate::i18n::{Lang, Tr};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chatter_domain::{FieldError, Permission, Role};

/// The routes that take a file (`crate::upload`), under a larger body limit than the rest.
pub fn upload_routes() -> Router<AppState> {
    inbox::upload_routes().merge(templates::upload_routes())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/static/favicon.svg", get(icon))
        .route("/static/notify.wav", get(notifications::sound))
        .route("/favicon.ico", get(icon))
        .route("/lang/{code}", get(set_lang))
        .merge(auth::routes())
        .merge(app::routes())
        .merge(automation::routes())
        .merge(auto_replies::routes())
        .merge(team::routes())
        .merge(profile::routes())
        .merge(audit::routes())
        .merge(reports::routes())
        .merge(settings::routes())
        .merge(labels::routes())
        .merge(templates::routes())
        .merge(inbox::routes())
        .merge(contacts::routes())
        .merge(notifications::routes())
        .merge(sources::routes())
        .merge(crm::routes())
        .merge(crm_settings::routes())
        .merge(rules::routes())
        .merge(api_sources::routes())
        .merge(source_login::routes())
        .merge(dead_letters::routes())
        .merge(operator::routes())
        .merge(billing::routes())
}

/// What every page's layout needs.
pub struct Page {
    pub tr: Tr,
    pub lang: Lang,
    pub csrf: String,
    pub signed_in: bool,
    pub user_name: String,
    pub company_name: String,
    pub company_id: String,
    /// (id, name, current)
    pub companies: Vec<(String, String, bool)>,
    pub role: Option<Role>,
    pub active: &'static str,
    pub flash: Option<&'static str>,
    pub errors: Vec<FieldError>,
    /// The bell in the header (signed-in pages of a company).
    pub bell: Option<crate::ctx::Bell>,
}

impl Page {
    pub fn new(ctx: &Ctx, active: &'static str) -> Self {
        let s = ctx.session.as_ref();
        let current = s.and_then(|s| s.company.as_ref());
        Self {
            tr: Tr(ctx.lang),
            lang: ctx.lang,
            csrf: ctx.csrf.clone(),
            signed_in: s.is_some(),
            user_name: s.map(|s| s.user.name.clone()).unwrap_or_default(),
            company_name: current.map(|c| c.0.name.clone()).unwrap_or_default(),
            company_id: current.map(|c| c.0.id.to_string()).unwrap_or_default(),
            companies: s
                .map(|s| {
                    s.companies
                        .iter()
                        .map(|(c, _)| {
                            (
                                c.id.to_string(),
                                c.name.clone(),
                                current.is_some_and(|x| x.0.id == c.id),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            role: current.map(|c| c.1),
            active,
            flash: None,
            errors: Vec::new(),
            bell: ctx.bell.clone(),
        }
    }

    pub fn flash(mut self, q: &Flash) -> Self {
        self.flash = q.ok.as_deref().and_then(crate::i18n::flash_key);
        self
    }

    pub fn errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn t(&self, key: &str) -> &'static str {
        self.tr.t(key)
    }

    /// The translated error of a field (with the limit it names), or "".
    pub fn err(&self, field: &str) -> String {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| self.tr.field(e))
            .unwrap_or_default()
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn can(&self, p: &str) -> bool {
        let p = match p {
            "reply" => Permission::Reply,
            "manage" => Permission::Manage,
            "audit" => Permission::ReadAudit,
            "own" => Permission::Own,
            _ => Permission::Read,
        };
        self.role.is_some_and(|r| r.can(p))
    }

    /// What an audit action code is called in the page's language; an action without a name
    /// yet shows as its code.
    pub fn audit_action(&self, code: &str) -> String {
        let key = format!("audit.a.{code}");
        if crate::i18n::has(&key) {
            self.tr.t(&key).to_owned()
        } else {
            code.to_owned()
        }
    }

    /// The name of a role stored as text (an invitation's); unknown text shows as itself.
    pub fn role_text(&self, s: &str) -> String {
        Role::parse(s).map_or_else(|| s.to_owned(), |r| self.role_name(&r).to_owned())
    }

    pub fn role_name(&self, r: &Role) -> &'static str {
        self.tr.t(match r {
            Role::Owner => "role.owner",
            Role::Admin => "role.admin",
            Role::Manager => "role.manager",
            Role::Viewer => "role.viewer",
        })
    }

    pub fn time(&self, ms: &i64) -> String {
        chrono::DateTime::from_timestamp_millis(*ms)
            .map(|t| {
                t.with_timezone(&chrono_tz::Europe::Moscow)
                    .format("%d.%m.%Y %H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    }

    pub fn lang_code(&self) -> &'static str {
        self.lang.code()
    }
}

#[derive(serde::Deserialize, Default)]
pub struct Flash {
    pub ok: Option<String>,
}

/// Renders a template or logs why it could not.
pub fn render(t: impl askama::Template) -> Response {
    match t.render() {
        Ok(h) => {
            let telegram = h.contains(crate::security::TELEGRAM_WIDGET_SRC);
            let mut r = Html(h).into_response();
            if telegram {
                r.extensions_mut()
                    .insert(crate::security::EmbedsTelegramWidget);
            }
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

/// Renders with a status (422 for a refused form).
pub fn render_status(status: StatusCode, t: impl askama::Template) -> Response {
    let mut r = render(t);
    if r.status() == StatusCode::OK {
        *r.status_mut() = status;
    }
    r
}

async fn home(Extension(ctx): Extension<Ctx>) -> Redirect {
    if ctx.session.is_some() {
        Redirect::to("/app")
    } else {
        Redirect::to("/sign-in")
    }
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/app.css"),
    )
}

/// The tab icon (also at `/favicon.ico`, which browsers ask for by themselves).
async fn icon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../static/favicon.svg"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/app.js"),
    )
}

#[derive(serde::Deserialize)]
struct Back {
    back: Option<String>,
}

/// Switches the interface language (a cookie only; nothing else changes).
async fn set_lang(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(code): Path<String>,
    Query(b): Query<Back>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::parse(&code);
    // Only a path on this site: `?back=` first, else the Referer when it is our own page.
    let back = b
        .back
        .as_deref()
        .and_then(crate::security::local_path)
        .map(str::to_owned)
        .or_else(|| {
            let r = headers.get(header::REFERER)?.to_str().ok()?;
            let u = url::Url::parse(r).ok()?;
            let authority = match u.port() {
                Some(p) => format!("{}:{p}", u.host_str()?),
                None => u.host_str()?.to_string(),
            };
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let ours = host.is_some_and(|h| authority.eq_ignore_ascii_case(h))
                || url::Url::parse(&st.core.config.public_url)
                    .is_ok_and(|p| p.origin() == u.origin());
            if !ours {
                return None;
            }
            let path = match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            };
            crate::security::local_path(&path).map(str::to_owned)
        })
        .unwrap_or_else(|| "/".into());
    let c = cookie(LANG_COOKIE, lang.code(), 365 * 24 * 3600, "Lax", ctx.secure);
    ([(header::SET_COOKIE, c)], Redirect::to(&back)).into_response()
}
