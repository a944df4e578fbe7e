//! Connecting a source by a login in steps through the API (`/api/v1/sources/{kind segment}/login`),
//! the same steps as the Sources page's (Telegram personal accounts: `tgp_api_id`,
//! `tgp_api_hash`, `tgp_phone`, then `tgp_code`, then `tgp_password` when the account has one).
//! Where a login stands is kept per company, API key holder and kind, encrypted.

use super::company::source_out;
use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, ApiPath, SourceOut};
use crate::ui::source_login::login_kind;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_channels::FormValues;
use chatter_core::sources::{self, login};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The values of the current step, by field name.
#[derive(Deserialize, ToSchema)]
pub struct LoginStepIn {
    /// First step `tgp_api_id` (a number), `tgp_api_hash` (32 hex digits), `tgp_phone` (any
    /// common format; stored as E.164); then `tgp_code`; then `tgp_password`.
    #[schema(example = json!({"tgp_api_id": "1234567", "tgp_api_hash": "0123456789abcdef0123456789abcdef", "tgp_phone": "+7 999 123-45-67"}))]
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// Where a login stands, or the source it connected.
#[derive(Serialize, ToSchema)]
pub struct LoginOut {
    /// `step`: fill in `fields` next; `connected`: see `source`.
    #[schema(example = "step")]
    pub status: String,
    /// The step to fill in: `start`, `code` or `password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The names of the step's fields.
    pub fields: Vec<String>,
    /// The provider's hint for the step (the 2FA password's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The connected source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceOut>,
}

fn step_out(v: login::LoginView) -> LoginOut {
    LoginOut {
        status: "step".into(),
        step: Some(if v.step.is_empty() {
            "start".into()
        } else {
            v.step
        }),
        fields: v.fields.iter().map(|f| f.name.to_owned()).collect(),
        hint: v.hint,
        source: None,
    }
}

/// Where the caller's login stands (the first step when none is under way).
#[utoipa::path(get, path = "/api/v1/sources/{id}/login", tag = "sources",
    params(("id" = String, Path, description = "the kind's URL segment, `telegram-personal` (the segment sits where other source routes take a source id)")),
    responses((status = 200, body = LoginOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no kind connected by a login has this segment")))]
pub async fn get_login(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(slug): ApiPath<String>,
) -> Result<Json<LoginOut>, ApiError> {
    let kind = login_kind(&slug)?;
    Ok(Json(step_out(login::state(&st.core, &a, kind).await?)))
}

/// Takes the current step's values: the next step (200), or the connected source (201).
/// Nothing is connected until the last step succeeds; a refused step stays where it was.
#[utoipa::path(post, path = "/api/v1/sources/{id}/login", tag = "sources", request_body = LoginStepIn,
    params(("id" = String, Path, description = "the kind's URL segment, `telegram-personal` (the segment sits where other source routes take a source id)")),
    responses((status = 200, body = LoginOut, description = "the next step"), (status = 201, body = LoginOut, description = "connected"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no kind connected by a login has this segment"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "a field is refused (e.g. `tgp_code`: `tgp_code_invalid`, `tgp_password`: `tgp_password_invalid`, `tgp_api_id`: `tgp_api_id`), the account is connected in another company (`account_in_other_company`) or Telegram did not answer (`provider_unreachable`)")))]
pub async fn post_login(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(slug): ApiPath<String>,
    ApiJson(b): ApiJson<LoginStepIn>,
) -> Result<Response, ApiError> {
    let kind = login_kind(&slug)?;
    match login::step(&st.core, &a, kind, &FormValues(b.fields)).await? {
        login::LoginOutcome::Next(v) => Ok(Json(step_out(v)).into_response()),
        login::LoginOutcome::Connected(id) => {
            let s = sources::get(&st.core, &a, id).await?;
            let out = LoginOut {
                status: "connected".into(),
                step: None,
                fields: Vec::new(),
                hint: None,
                source: Some(source_out(s, 0)),
            };
            Ok((StatusCode::CREATED, Json(out)).into_response())
        }
    }
}

/// Forgets the caller's login, so it starts again (and a new code is requested).
#[utoipa::path(delete, path = "/api/v1/sources/{id}/login", tag = "sources",
    params(("id" = String, Path, description = "the kind's URL segment, `telegram-personal` (the segment sits where other source routes take a source id)")),
    responses((status = 204, description = "forgotten"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no kind connected by a login has this segment")))]
pub async fn delete_login(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(slug): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let kind = login_kind(&slug)?;
    login::restart(&st.core, &a, kind).await?;
    Ok(StatusCode::NO_CONTENT)
}
