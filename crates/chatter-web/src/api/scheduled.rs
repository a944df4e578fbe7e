//! Scheduled replies (issue 14, item 5) through the API: a conversation's, the company's
//! pending ones in cursor pages, scheduling (at a time, or when working hours next open) and
//! cancelling.

use super::page::{page_types, Listed, PageQuery, Paged, Paging, Position};
use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_core::scheduled::{self, Scheduled, When};
use chatter_core::CoreError;
use chatter_domain::{ConversationId, FieldError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Serialize, ToSchema)]
pub struct ScheduledOut {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub text: String,
    /// When it goes (or went) out, Unix ms.
    pub send_at: i64,
    /// `send_at` in the zone of the conversation's working hours, RFC 3339 with its offset.
    pub send_at_local: String,
    /// The zone `send_at_local` is in (the working hours', else `Europe/Moscow`).
    pub zone: String,
    /// `at` (a time given) or `hours_open` (when working hours next opened).
    pub mode: String,
    /// The member who scheduled it (`null`: an API key).
    pub author_id: Option<Uuid>,
    pub author_name: String,
    /// pending | sent | cancelled | failed
    pub status: String,
    /// The outgoing message it became, once sent (its own `status` says whether it arrived).
    pub message_id: Option<Uuid>,
    /// Why it could not go, when `failed` (e.g. `wa_window_closed`).
    pub error: Option<String>,
    pub created_at: i64,
}

fn out(s: Scheduled, zone: chrono_tz::Tz) -> ScheduledOut {
    let local = chrono::DateTime::from_timestamp_millis(s.send_at)
        .unwrap_or_default()
        .with_timezone(&zone)
        .to_rfc3339();
    ScheduledOut {
        id: s.id,
        conversation_id: s.conversation_id,
        text: s.text,
        send_at: s.send_at,
        send_at_local: local,
        zone: zone.name().to_owned(),
        mode: s.mode,
        author_id: s.author_id,
        author_name: s.author_name,
        status: s.status,
        message_id: s.message_id,
        error: s.error.map(|e| e.trim_start_matches("err.").to_owned()),
        created_at: s.created_at,
    }
}

async fn zone(st: &AppState, a: &chatter_core::Actor, conv: Uuid) -> chrono_tz::Tz {
    scheduled::timing(&st.core, a, ConversationId::from(conv))
        .await
        .map_or(scheduled::DEFAULT_ZONE, |t| t.zone)
}

page_types!(
    ScheduledPage,
    ScheduledListOut,
    ScheduledOut,
    "scheduled replies"
);

/// A conversation's scheduled replies still to go or failed, soonest first (at most 100).
#[utoipa::path(get, path = "/api/v1/conversations/{id}/scheduled", tag = "scheduled",
    params(("id" = Uuid, Path, description = "conversation id")),
    responses((status = 200, body = [ScheduledOut]), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such conversation in this company")))]
pub async fn list_conversation_scheduled(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<Json<Vec<ScheduledOut>>, ApiError> {
    let t = scheduled::timing(&st.core, &a, id).await?;
    let rows = scheduled::list_for_conversation(&st.core, &a, id).await?;
    Ok(Json(rows.into_iter().map(|s| out(s, t.zone)).collect()))
}

#[derive(Deserialize, ToSchema)]
pub struct ScheduledIn {
    /// The reply, 1 to 20,000 characters with at least one that is neither a space nor a
    /// control character.
    #[schema(
        example = "Добрый день! Счёт отправили на почту.",
        min_length = 1,
        max_length = 20000
    )]
    pub text: String,
    /// When to send: RFC 3339 with an offset (`2026-12-08T10:00:00+03:00`), or a local time
    /// (`2026-12-08T10:00`) read in the zone of the conversation's working hours (else
    /// `Europe/Moscow`). After now, at most a year ahead. Give this or `when`.
    #[schema(example = "2026-12-08T10:00")]
    pub send_at: Option<String>,
    /// `hours_open`: when the working hours of the conversation's source next open (refused
    /// while they are open: send now instead). Give this or `send_at`.
    #[schema(example = "hours_open", pattern = "^hours_open$")]
    pub when: Option<String>,
}

/// Schedules a reply. It is sent at its time as a normal outgoing message authored by the
/// member (or the key), through the same delivery states and retries.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/scheduled", tag = "scheduled",
    params(("id" = Uuid, Path, description = "conversation id")), request_body = ScheduledIn,
    responses((status = 201, body = ScheduledOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such conversation in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body is not JSON or does not match the schema; `text` empty or too long; `send_at` unreadable, in the past (`scheduled_past`) or more than a year ahead (`scheduled_too_far`); `when` while the hours are open (`scheduled_open_now`) or with no hours set; neither or both of `send_at` and `when`; WhatsApp's 24-hour window closed (`wa_window_closed`)")))]
pub async fn schedule(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(b): ApiJson<ScheduledIn>,
) -> Result<Response, ApiError> {
    let when = match (b.send_at.as_deref(), b.when.as_deref()) {
        (Some(at), None) => When::At(at),
        (None, Some("hours_open")) => When::HoursOpen,
        (None, Some(_)) => return Err(ApiError(CoreError::field("when", "err.scheduled_when"))),
        _ => {
            return Err(ApiError(CoreError::Invalid(vec![FieldError::new(
                "send_at",
                "err.scheduled_send_at_or_when",
            )])))
        }
    };
    let s = scheduled::schedule(&st.core, &a, id, &b.text, when).await?;
    let z = zone(&st, &a, s.conversation_id).await;
    Ok((StatusCode::CREATED, Json(out(s, z))).into_response())
}

/// The company's pending scheduled replies, soonest first. Without `cursor`: the first `limit`
/// (default 500, a bare array). With `cursor`: pages of `limit`.
#[utoipa::path(get, path = "/api/v1/scheduled", tag = "scheduled", params(PageQuery),
    responses((status = 200, body = ScheduledListOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "the query string does not parse (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`limit` is not between 1 and 500, or `cursor` is not one this list gave")))]
pub async fn list_scheduled(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let paging = match q.paging() {
        Ok(p) => p,
        Err(r) => return Ok(r.into_response()),
    };
    let after = paging.after().map(|p| (p.key, p.id));
    let rows = scheduled::list_pending(&st.core, &a, after, paging.fetch(500)).await?;
    let mut zones = std::collections::HashMap::new();
    for r in &rows {
        if let std::collections::hash_map::Entry::Vacant(e) = zones.entry(r.conversation_id) {
            e.insert(zone(&st, &a, r.conversation_id).await);
        }
    }
    let listed = match paging {
        Paging::Legacy { .. } => Listed::All(rows),
        Paging::Page { limit, .. } => {
            Listed::Page(Paged::cut(rows, limit, |s| Position::new(s.send_at, s.id)))
        }
    };
    Ok(listed
        .map_items(|v| {
            v.into_iter()
                .map(|s| {
                    let z = zones
                        .get(&s.conversation_id)
                        .copied()
                        .unwrap_or(scheduled::DEFAULT_ZONE);
                    out(s, z)
                })
                .collect()
        })
        .into_response())
}

/// Cancels a pending scheduled reply: it will never be sent.
#[utoipa::path(delete, path = "/api/v1/scheduled/{id}", tag = "scheduled",
    params(("id" = Uuid, Path, description = "scheduled reply id")),
    responses((status = 200, body = ScheduledOut, description = "cancelled"), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such scheduled reply in this company"), (status = 409, body = ApiErrorBody, content_type = "application/problem+json", description = "already sent, failed or cancelled (`scheduled_not_pending`)")))]
pub async fn cancel_scheduled(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ScheduledOut>, ApiError> {
    let s = scheduled::cancel(&st.core, &a, id).await?;
    let z = zone(&st, &a, s.conversation_id).await;
    Ok(Json(out(s, z)))
}
