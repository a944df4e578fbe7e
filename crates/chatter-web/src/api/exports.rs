//! The API side of a company's data export (start, status, download) and of an API source's
//! outgoing webhook URL (checked by the same guard as the form: internet addresses only).

use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, ApiPath};
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_core::sources::api as api_source;
use chatter_core::{exports, CoreError};
use chatter_domain::SourceId;
use chatter_store::entity::company_export;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// An export of the company's contacts, conversations and messages (a zip of JSON lines and CSV).
#[derive(Serialize, ToSchema)]
pub struct ExportOut {
    pub id: Uuid,
    /// pending | ready | failed
    pub status: String,
    pub size_bytes: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// Where to download it (with the same API key) once ready.
    pub download_url: Option<String>,
}

fn export_out(e: company_export::Model) -> ExportOut {
    ExportOut {
        download_url: (e.status == exports::READY)
            .then(|| format!("/api/v1/exports/{}/download", e.id)),
        id: e.id,
        status: e.status,
        size_bytes: e.size_bytes,
        error: e.error,
        created_at: e.created_at,
        finished_at: e.finished_at,
    }
}

/// Starts an export of the company's data (or returns the one still being made); poll it
/// until `ready`, then download it.
#[utoipa::path(post, path = "/api/v1/exports", tag = "exports",
    responses((status = 202, body = ExportOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn start_export(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
) -> Result<Response, ApiError> {
    let e = exports::start(&st.core, &a).await?;
    Ok((StatusCode::ACCEPTED, Json(export_out(e))).into_response())
}

/// An export's state.
#[utoipa::path(get, path = "/api/v1/exports/{id}", tag = "exports",
    params(("id" = Uuid, Path, description = "export id")),
    responses((status = 200, body = ExportOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn get_export(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ExportOut>, ApiError> {
    Ok(Json(export_out(exports::get(&st.core, &a, id).await?)))
}

/// The export's zip file: `contacts`, `conversations` and `messages`, each as `.jsonl` and `.csv`.
#[utoipa::path(get, path = "/api/v1/exports/{id}/download", tag = "exports",
    params(("id" = Uuid, Path, description = "export id")),
    responses((status = 200, description = "the zip file", content_type = "application/zip"),
        (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json"), (status = 409, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn download_export(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let (path, name) = exports::file(&st.core, &a, id).await?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| CoreError::Internal(format!("cannot read {}: {e}", path.display())))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct WebhookUrlIn {
    /// Where the source's outgoing webhooks go: an http(s) URL on the internet (loopback and
    /// private-network addresses are refused); empty to stop sending.
    #[schema(example = "https://crm.example.ru/chatter/webhook")]
    pub url: String,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookUrlOut {
    pub source_id: Uuid,
    pub webhook_url: Option<String>,
}

/// Sets (or, with an empty `url`, clears) an API source's outgoing webhook URL.
#[utoipa::path(post, path = "/api/v1/api-sources/{id}/webhook-url", tag = "sources",
    params(("id" = Uuid, Path, description = "API source id")), request_body = WebhookUrlIn,
    responses((status = 200, body = WebhookUrlOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body is not JSON, or the URL is refused")))]
pub async fn set_webhook_url(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<SourceId>,
    ApiJson(b): ApiJson<WebhookUrlIn>,
) -> Result<Json<WebhookUrlOut>, ApiError> {
    api_source::set_webhook_url(&st.core, &a, id, &b.url).await?;
    let s = api_source::get(&st.core, &a, id).await?;
    Ok(Json(WebhookUrlOut {
        source_id: id.0,
        webhook_url: api_source::settings_of(&s).webhook_url,
    }))
}
