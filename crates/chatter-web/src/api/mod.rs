//! The REST API under `/api/v1`, authenticated with company API keys
//! (`Authorization: Bearer chk_…`). Errors are `{"error":{"code","message","fields"}}`.
//! The OpenAPI document is at `/api/openapi.json`, Swagger UI at `/api/docs`.

use crate::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chatter_core::{team, Actor, CoreError};
use chatter_store::entity::company;
use sea_orm::EntityTrait;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;
use uuid::Uuid;

#[derive(OpenApi)]
#[openapi(
    info(title = "Chatter API", version = "1", description = "Messengers to CRM. Authenticate with a company API key: `Authorization: Bearer chk_…` (Settings → API keys, or `chatter admin api-key create --company <slug>`)."),
    paths(me, members),
    components(schemas(Me, CompanyOut, MemberOut, ApiErrorBody, ApiErrorInner, FieldErrorOut)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/members", get(members))
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", ApiDoc::openapi()))
}

#[derive(Serialize, ToSchema)]
pub struct ApiErrorBody {
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

#[derive(Serialize, ToSchema)]
pub struct FieldErrorOut {
    pub field: String,
    pub code: String,
}

pub struct ApiError(pub CoreError);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError(e)
    }
}

fn body(status: StatusCode, code: &str, message: &str, fields: Vec<FieldErrorOut>) -> Response {
    (
        status,
        Json(ApiErrorBody {
            error: ApiErrorInner {
                code: code.into(),
                message: message.into(),
                fields,
            },
        }),
    )
        .into_response()
}

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

/// The company and key behind the bearer token.
pub struct ApiActor(pub Actor);

impl FromRequestParts<AppState> for ApiActor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError(CoreError::Unauthenticated))?;
        let meta = parts
            .extensions
            .get::<crate::ctx::Ctx>()
            .map(|c| c.meta.clone())
            .unwrap_or_default();
        Ok(ApiActor(
            chatter_core::api_keys::authenticate(&st.core, key, &meta).await?,
        ))
    }
}

#[derive(Serialize, ToSchema)]
pub struct CompanyOut {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub timezone: String,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub company: CompanyOut,
    /// The API key's name, as shown in Settings.
    pub key_name: String,
    pub role: String,
}

/// The company this key belongs to.
#[utoipa::path(get, path = "/api/v1/me", tag = "company",
    responses((status = 200, body = Me), (status = 401, body = ApiErrorBody)))]
pub async fn me(State(st): State<AppState>, ApiActor(a): ApiActor) -> Result<Json<Me>, ApiError> {
    let c = company::Entity::find_by_id(a.company_id)
        .one(&st.core.db)
        .await
        .map_err(CoreError::from)?
        .ok_or(CoreError::NotFound)?;
    Ok(Json(Me {
        company: CompanyOut {
            id: c.id,
            name: c.name,
            slug: c.slug,
            timezone: c.timezone,
        },
        key_name: a.label.trim_start_matches("api-key:").to_string(),
        role: a.role.as_str().into(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct MemberOut {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    /// owner | admin | manager | viewer
    pub role: String,
    /// Unix milliseconds.
    pub member_since: i64,
    pub two_factor: bool,
}

/// The company's team members.
#[utoipa::path(get, path = "/api/v1/members", tag = "team",
    responses((status = 200, body = Vec<MemberOut>), (status = 401, body = ApiErrorBody)))]
pub async fn members(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
) -> Result<Json<Vec<MemberOut>>, ApiError> {
    let ms = team::list_members(&st.core.db, &a).await?;
    Ok(Json(
        ms.into_iter()
            .map(|m| MemberOut {
                user_id: m.user_id,
                name: m.name,
                email: m.email,
                role: m.role.as_str().into(),
                member_since: m.since,
                two_factor: m.totp_enabled,
            })
            .collect(),
    ))
}
