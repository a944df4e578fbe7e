//! What every API refusal answers: an RFC 9457 problem document with this API's `code` and
//! `fields`, and how each `CoreError` becomes one (status, code, message; internal errors logged
//! in full and shown as a bare 500).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_core::CoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// Every refusal, as an RFC 9457 problem document (`Content-Type: application/problem+json`).
/// `code` and `fields` are this API's extension members; `error` repeats them with `message`
/// in the shape answered before problem documents, for clients written against it.
#[derive(Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// Names the kind of problem: `urn:chatter:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:chatter:problem:not_found")]
    pub type_: String,
    /// A short summary of the kind of problem (the HTTP status' name).
    pub title: String,
    /// The HTTP status code, repeated.
    pub status: u16,
    /// What went wrong and what to do, in English.
    pub detail: String,
    /// Machine-readable code, e.g. `unauthorized`, `forbidden`, `not_found`, `invalid`.
    pub code: String,
    /// The fields at fault, for `invalid`.
    pub fields: Vec<FieldErrorOut>,
    pub error: ApiErrorInner,
}

#[derive(Serialize, ToSchema)]
pub struct ApiErrorInner {
    /// Machine-readable code, e.g. `unauthorized`, `forbidden`, `not_found`, `invalid`.
    pub code: String,
    /// What went wrong and what to do, in English.
    pub message: String,
    pub fields: Vec<FieldErrorOut>,
}

#[derive(Clone, Serialize, ToSchema)]
pub struct FieldErrorOut {
    pub field: String,
    /// e.g. `required`, `too_long`, `control_chars`, `bidi_chars`.
    pub code: String,
    /// The limit the code names (`too_long`: characters; `too_many`: items); see docs/limits.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

pub struct ApiError(pub CoreError);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError(e)
    }
}

pub(crate) fn body(
    status: StatusCode,
    code: &str,
    message: &str,
    fields: Vec<FieldErrorOut>,
) -> Response {
    let problem = ApiErrorBody {
        type_: format!("urn:chatter:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: message.into(),
        code: code.into(),
        fields: fields.clone(),
        error: ApiErrorInner {
            code: code.into(),
            message: message.into(),
            fields,
        },
    };
    let mut r = (status, Json(problem)).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(PROBLEM_JSON),
    );
    r
}

/// The media type of every error body (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.0 {
            CoreError::Invalid(f) => body(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "some fields are invalid; see `fields`",
                f.into_iter()
                    .map(|e| FieldErrorOut {
                        field: e.field.into(),
                        code: e.key.trim_start_matches("err.").into(),
                        limit: e.limit,
                    })
                    .collect(),
            ),
            CoreError::Unauthenticated | CoreError::BadCredentials | CoreError::BadCode => {
                let mut r = body(StatusCode::UNAUTHORIZED, "unauthorized", "send a valid API key as `Authorization: Bearer <key>`; create one in Settings → API keys", vec![]);
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                r
            }
            CoreError::Forbidden => body(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this key may not do that",
                vec![],
            ),
            CoreError::NotFound => body(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such object in this company",
                vec![],
            ),
            CoreError::Conflict(w) => body(StatusCode::CONFLICT, "conflict", w, vec![]),
            CoreError::InUse { what, by } => {
                let names: Vec<String> = by.iter().map(|n| format!("«{n}»")).collect();
                body(
                    StatusCode::CONFLICT,
                    "in_use",
                    &format!(
                        "the {what} is used by auto-reply rules {}; change or delete them first",
                        names.join(", ")
                    ),
                    vec![],
                )
            }
            CoreError::Throttled(s) => body(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &format!("retry in {s} s"),
                vec![],
            ),
            CoreError::LinkExpired => body(
                StatusCode::GONE,
                "expired",
                "the link expired or was used",
                vec![],
            ),
            CoreError::NotConfigured(w) => {
                body(StatusCode::SERVICE_UNAVAILABLE, "not_configured", w, vec![])
            }
            e @ (CoreError::Store(_) | CoreError::Internal(_)) => {
                tracing::error!(error = ?e, "API request failed");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; it has been logged",
                    vec![],
                )
            }
        }
    }
}
