//! `/api/v1/dead-letters`: inbound events that could not be stored as they came (parked and
//! acknowledged, see core::dead_letters), listed and retried as in Settings.

use super::page::{page_types, Listed, PageQuery, Paged, Paging, Position};
use super::{ApiActor, ApiError, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
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

page_types!(
    DeadLetterPage,
    DeadLettersOut,
    DeadLetterOut,
    "undelivered events"
);

fn dead_letter_out(d: chatter_store::entity::dead_letter::Model) -> DeadLetterOut {
    DeadLetterOut {
        id: d.id,
        source_id: d.source_id,
        kind: d.kind,
        reason: d.reason,
        event: d.event,
        raw: d.raw,
        attempts: d.attempts,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

/// The company's undelivered events, newest first: without `cursor` the last `limit` (default
/// 500, a bare array, as before); with it, pages of `limit`. Admins and owners.
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "sources", params(PageQuery),
    responses((status = 200, body = DeadLettersOut), (status = 400, body = super::ApiErrorBody, content_type = "application/problem+json", description = "the query string does not parse (`invalid_query`)"), (status = 401, body = super::ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = super::ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = super::ApiErrorBody, content_type = "application/problem+json", description = "`limit` is not between 1 and 500, or `cursor` is not one this list gave")))]
pub async fn list_dead_letters(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let paging = match q.paging() {
        Ok(p) => p,
        Err(r) => return Ok(r.into_response()),
    };
    let list = match paging {
        Paging::Legacy { .. } => {
            let list = dead_letters::list(&st.core, &a, paging.fetch(500)).await?;
            Listed::All(list.into_iter().map(dead_letter_out).collect())
        }
        Paging::Page { after, limit } => {
            let after = after.map(|p| (p.key, p.id));
            let list = dead_letters::list_after(&st.core, &a, after, paging.fetch(500)).await?;
            let page = Paged::cut(list, limit, |d| Position::new(d.created_at, d.id));
            Listed::Page(Paged {
                items: page.items.into_iter().map(dead_letter_out).collect(),
                next_cursor: page.next_cursor,
            })
        }
    };
    Ok(list.into_response())
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
