//! Errors at the web edge. UI handlers return `AppError`; its response carries an
//! `ErrorPage` marker that the context middleware renders in the user's language. Internal
//! errors are logged in full and shown as a bare 500.

use crate::ctx::Ctx;
use crate::ui::Page;
use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chatter_core::CoreError;

#[derive(Debug)]
pub enum AppError {
    /// Not signed in: go to the sign-in page.
    SignIn,
    /// Signed in but a member of no company: offer to create one.
    NoCompany,
    /// The form's CSRF token did not match.
    Csrf,
    Core(Box<CoreError>),
}

impl From<CoreError> for AppError {
    fn from(e: CoreError) -> Self {
        AppError::Core(Box::new(e))
    }
}

impl From<Box<CoreError>> for AppError {
    fn from(e: Box<CoreError>) -> Self {
        AppError::Core(e)
    }
}

/// What to render; the middleware fills in the language.
#[derive(Clone, Debug)]
pub struct ErrorPage {
    pub title: &'static str,
    pub message: &'static str,
    pub detail: Option<String>,
    /// Refused fields, shown translated (with the limits they name) below the message.
    pub fields: Vec<chatter_domain::FieldError>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTpl<'a> {
    p: Page,
    title: &'a str,
    message: &'a str,
    detail: Option<String>,
}

impl ErrorPage {
    pub fn render(&self, ctx: &Ctx, status: StatusCode) -> Response {
        let p = Page::new(ctx, "");
        let fields: Vec<String> = self.fields.iter().map(|e| p.tr.field(e)).collect();
        let detail = if fields.is_empty() {
            self.detail.clone()
        } else {
            Some(fields.join(" "))
        };
        let tpl = ErrorTpl {
            title: p.t(self.title),
            message: p.t(self.message),
            detail,
            p,
        };
        match tpl.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "cannot render the error page");
                (status, "error").into_response()
            }
        }
    }
}

/// The product's own answer for a refusal that was made before any handler of ours ran — an
/// address whose id does not parse, a query or form body that does not deserialize, an
/// unknown page, a method the route does not take, a body over the limit — which the
/// framework answers as English `text/plain` (or with no body at all). A person gets the error
/// page in their language, with the navigation; `/api/` gets the API's JSON error. Answers
/// that are already HTML or JSON, and the machine endpoints, are left as they are.
pub fn instead_of_framework_text(ctx: &Ctx, path: &str, resp: &Response) -> Option<Response> {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let kind = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if kind.starts_with("text/html") || kind.contains("json") {
        return None;
    }
    let machine = [
        "/hooks/",
        // Signed file links answer their refusals in plain words of both languages.
        "/media/",
        "/static/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/app/events",
    ];
    if machine.iter().any(|m| path.starts_with(m)) {
        return None;
    }
    let (code, title, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "err.not_found_title", "err.page_not_found"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "err.method_title",
            "err.method_not_allowed",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "err.too_large_title", "err.too_large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::UNPROCESSABLE_ENTITY => {
            ("invalid", "err.invalid_title", "err.form_unreadable")
        }
        s if s.is_server_error() => ("internal", "err.internal_title", "err.internal"),
        _ => ("bad_request", "err.bad_request_title", "err.bad_request"),
    };
    let mut r = if path.starts_with("/api/") {
        let text = crate::i18n::Tr(crate::i18n::Lang::En).t(message);
        crate::api::body(status, code, text, Vec::new())
    } else {
        ErrorPage {
            title,
            message,
            detail: None,
            fields: Vec::new(),
        }
        .render(ctx, status)
    };
    if let Some(allow) = resp.headers().get(header::ALLOW) {
        r.headers_mut().insert(header::ALLOW, allow.clone());
    }
    Some(r)
}

fn page(
    status: StatusCode,
    title: &'static str,
    message: &'static str,
    detail: Option<String>,
) -> Response {
    let mut r = status.into_response();
    r.extensions_mut().insert(ErrorPage {
        title,
        message,
        detail,
        fields: Vec::new(),
    });
    r
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::SignIn => Redirect::to("/sign-in").into_response(),
            AppError::NoCompany => Redirect::to("/app/companies/new").into_response(),
            AppError::Csrf => page(StatusCode::FORBIDDEN, "err.csrf_title", "err.csrf", None),
            AppError::Core(e) => match *e {
                CoreError::Invalid(f) => {
                    let mut r = StatusCode::UNPROCESSABLE_ENTITY.into_response();
                    r.extensions_mut().insert(ErrorPage {
                        title: "err.invalid_title",
                        message: "err.invalid",
                        detail: None,
                        fields: f,
                    });
                    r
                }
                CoreError::BadCredentials => page(
                    StatusCode::UNAUTHORIZED,
                    "err.sign_in_title",
                    "err.bad_credentials",
                    None,
                ),
                CoreError::BadCode => page(
                    StatusCode::UNAUTHORIZED,
                    "err.sign_in_title",
                    "err.code_wrong",
                    None,
                ),
                CoreError::Unauthenticated => Redirect::to("/sign-in").into_response(),
                CoreError::Forbidden => page(
                    StatusCode::FORBIDDEN,
                    "err.forbidden_title",
                    "err.forbidden",
                    None,
                ),
                CoreError::NotFound => page(
                    StatusCode::NOT_FOUND,
                    "err.not_found_title",
                    "err.not_found",
                    None,
                ),
                CoreError::Conflict(what) => page(
                    StatusCode::CONFLICT,
                    "err.conflict_title",
                    conflict_key(what),
                    None,
                ),
                CoreError::InUse { what, by } => page(
                    StatusCode::CONFLICT,
                    "err.conflict_title",
                    in_use_key(what),
                    Some(
                        by.iter()
                            .map(|n| format!("«{n}»"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                ),
                CoreError::Throttled(secs) => {
                    let mut r = page(
                        StatusCode::TOO_MANY_REQUESTS,
                        "err.throttled_title",
                        "err.throttled",
                        Some(format!("{} s", secs)),
                    );
                    if let Ok(v) = secs.to_string().parse() {
                        r.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                    r
                }
                CoreError::LinkExpired => {
                    page(StatusCode::GONE, "err.link_title", "err.link_expired", None)
                }
                CoreError::NotConfigured(what) => page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "err.not_configured_title",
                    not_configured_key(what),
                    None,
                ),
                e @ (CoreError::Store(_) | CoreError::Internal(_)) => {
                    tracing::error!(error = ?e, "request failed");
                    page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "err.internal_title",
                        "err.internal",
                        None,
                    )
                }
            },
        }
    }
}

pub fn conflict_key(what: &str) -> &'static str {
    match what {
        "last_owner" => "err.last_owner",
        "already_member" => "err.already_member",
        "account_exists" => "err.account_exists",
        "sign_up_account_exists" => "err.sign_up_account_exists",
        "totp_already_enabled" => "err.totp_already_enabled",
        "totp_not_started" => "err.totp_not_started",
        "telegram_id" => "err.telegram_taken",
        "source_disabled" => "err.source_disabled",
        "scheduled_not_pending" => "err.scheduled_not_pending",
        _ => "err.conflict",
    }
}

/// The message of a refusal to delete something still in use (`CoreError::InUse`).
pub fn in_use_key(what: &str) -> &'static str {
    match what {
        "template" => "err.template_in_use",
        _ => "err.conflict",
    }
}

pub fn not_configured_key(what: &str) -> &'static str {
    match what {
        "telegram_login" => "err.telegram_not_configured",
        "amocrm" => "crm.not_configured",
        _ => "err.not_configured",
    }
}
