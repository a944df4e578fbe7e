//! `/api/v1/dead-letters`: inbound events that could not be stored as they came (parked and
//! acknowledged, see core::dead_letters), listed and retried as in Settings.

use super::ApiPath;
use super::{ApiActor, ApiError};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chatter_core::inbox::dead_letters::{self, Retried};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Serialize, ToSchema)]
pub struct DeadLetterOut {
    pub id: Uuid,
    pub source_id: Uuid,
    /// The source's kind: telegram, vk, max, avito, whatsapp, sms, api.
    pub kind: String,
    /// Why it could not be stored.
    pub reason: String,
    /// The normalised event, as JSON text (what a retry stores).
    pub event: String,
    /// What the provider sent, when known.
    pub raw: Option<String>,
    /// How many times storing it was tried.
    pub attempts: i32,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// The company's undelivered events, newest first (the last 500). Admins and owners.
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "sources",
    responses((status = 200, body = Vec<DeadLetterOut>), (status = 401, body = super::ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = super::ApiErrorBody, content_type = "application/problem+json")))]
pub async fn list_dead_letters(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
) -> Result<Json<Vec<DeadLetterOut>>, ApiError> {
    let list = dead_letters::list(&st.core, &a, 500).await?;
    Ok(Json(
        list.into_iter()
            .map(|d| DeadLetterOut {
                id: d.id,
                source_id: d.source_id,
                kind: d.kind,
                reason: d.reason,
                event: d.event,
                raw: d.raw,
                attempts: d.attempts,
                created_at: d.created_at,
                updated_at: d.updated_at,
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct RetriedOut {
    /// Stored now (the dead letter is gone), or refused again.
    pub stored: bool,
    /// Why it was refused again.
    pub reason: Option<String>,
}

/// Stores an undelivered event again. `stored: false` with the reason when it is still
/// refused (the dead letter stays); 409 when its source is turned off.
#[utoipa::path(post, path = "/api/v1/dead-letters/{id}/retry", tag = "sources",
    params(("id" = Uuid, Path, description = "dead letter id")),
    responses((status = 200, body = RetriedOut), (status = 400, body = super::ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = super::ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = super::ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = super::ApiErrorBody, content_type = "application/problem+json"), (status = 409, body = super::ApiErrorBody, content_type = "application/problem+json")))]
pub async fn retry_dead_letter(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<RetriedOut>, ApiError> {
    Ok(Json(match dead_letters::retry(&st.core, &a, id).await? {
        Retried::Stored => RetriedOut {
            stored: true,
            reason: None,
        },
        Retried::StillRefused(r) => RetriedOut {
            stored: false,
            reason: Some(r),
        },
    }))
}
