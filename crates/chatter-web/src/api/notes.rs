//! Internal notes of a conversation (seen by the team, never sent to the customer) and each
//! member's notifications with their read state. A key acts for no person, so notifications
//! are asked for by the member's `user_id`, and a note may name its `author_id`.

use super::page::{page_types, Listed, PageQuery, Paged, Paging, Position};
use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_core::inbox::{NewNote, NoteView};
use chatter_core::notifications::{self, Item};
use chatter_core::CoreError;
use chatter_domain::ConversationId;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Serialize, ToSchema)]
pub struct NoteOut {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// The member who wrote it (`null`: an API key acting for nobody).
    pub author_id: Option<Uuid>,
    pub author_name: String,
    pub text: String,
    /// The mentioned members' ids (each was notified).
    pub mentions: Vec<Uuid>,
    pub created_at: i64,
}

fn note_out(n: NoteView) -> NoteOut {
    NoteOut {
        id: n.id,
        conversation_id: n.conversation_id,
        author_id: n.author_id,
        author_name: n.author_name,
        text: n.text,
        mentions: n.mentions,
        created_at: n.created_at,
    }
}

page_types!(NotePage, NotesOut, NoteOut, "notes");

/// A conversation's internal notes, oldest first. Without `cursor`: the first `limit`
/// (default 500, a bare array). With `cursor`: pages of `limit`.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/notes", tag = "notes",
    params(("id" = Uuid, Path, description = "conversation id"), PageQuery),
    responses((status = 200, body = NotesOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`), or the query string does not parse (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such conversation in this company"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`limit` is not between 1 and 500, or `cursor` is not one this list gave")))]
pub async fn list_notes(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<ConversationId>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let paging = match q.paging() {
        Ok(p) => p,
        Err(r) => return Ok(r.into_response()),
    };
    let after = paging.after().map(|p| (p.key, p.id));
    let rows = chatter_core::inbox::list_notes(&st.core, &a, id, after, paging.fetch(500)).await?;
    let listed = match paging {
        Paging::Legacy { .. } => Listed::All(rows),
        Paging::Page { limit, .. } => Listed::Page(Paged::cut(rows, limit, |n| {
            Position::new(n.created_at, n.id)
        })),
    };
    Ok(listed
        .map_items(|v| v.into_iter().map(note_out).collect())
        .into_response())
}

#[derive(serde::Deserialize, ToSchema)]
pub struct NoteIn {
    /// The note, 1 to 5,000 characters with at least one that is neither a space nor a control
    /// character. `@Name` of a member mentions them.
    #[schema(
        example = "@Анна перезвони клиенту после обеда",
        min_length = 1,
        max_length = 5000,
        pattern = r"[^\s\u0000-\u001F\u007F-\u009F]"
    )]
    pub text: String,
    /// Members to mention besides the `@Name`s in the text; ids of anyone outside the company
    /// are ignored.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub mentions: Vec<Uuid>,
    /// The member the note is written for (a member who may reply); without it the key is
    /// the author.
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub author_id: Option<Uuid>,
}

/// Adds an internal note: shown in the thread to the team, sent to amoCRM as a note on the
/// deal, never to the customer. The mentioned members are notified.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/notes", tag = "notes",
    params(("id" = Uuid, Path, description = "conversation id")), request_body = NoteIn,
    responses((status = 201, body = NoteOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such conversation in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body is not JSON or does not match the schema; `text` only spaces (`note_empty`) or too long; `author_id` not a member who may reply")))]
pub async fn add_note(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(b): ApiJson<NoteIn>,
) -> Result<Response, ApiError> {
    if b.mentions.len() > 100 {
        return Err(ApiError(CoreError::Invalid(vec![
            chatter_domain::FieldError::too_many("mentions", 100),
        ])));
    }
    let n = chatter_core::inbox::add_note(
        &st.core,
        &a,
        id,
        NewNote {
            text: &b.text,
            mentions: &b.mentions,
            author: b.author_id,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(note_out(n))).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct NotificationOut {
    pub id: Uuid,
    /// new_conversation | mention | assigned
    pub kind: String,
    pub conversation_id: Uuid,
    /// Who the conversation is with.
    pub conversation_title: String,
    /// The note that mentioned the member (`mention`).
    pub note_id: Option<Uuid>,
    /// The teammate who mentioned or assigned.
    pub actor_name: Option<String>,
    pub created_at: i64,
    pub read: bool,
}

fn notification_out(n: Item) -> NotificationOut {
    NotificationOut {
        id: n.id,
        kind: n.kind,
        conversation_id: n.conversation_id,
        conversation_title: n.conversation_title,
        note_id: n.note_id,
        actor_name: n.actor_name,
        created_at: n.created_at,
        read: n.read,
    }
}

page_types!(
    NotificationPage,
    NotificationsOut,
    NotificationOut,
    "notifications"
);

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// The member whose notifications these are.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub user_id: Uuid,
    /// Send it to get pages (`{"items", "next_cursor"}`, newest first): empty for the first
    /// page, then the `next_cursor` of the previous one. Without it: a bare array.
    #[param(pattern = "^([0-9a-fA-F]{48})?$")]
    pub cursor: Option<String>,
    /// Items per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
}

/// A member's notifications, newest first, read and unread.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", params(NotificationQuery),
    responses((status = 200, body = NotificationsOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "the query string does not parse or lacks `user_id` (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`user_id` is not a member of this company (`not_a_member`), `limit` is not between 1 and 500, or `cursor` is not one this list gave")))]
pub async fn list_notifications(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<NotificationQuery>,
) -> Result<Response, ApiError> {
    let paging = match Paging::parse(q.cursor.as_deref(), q.limit) {
        Ok(p) => p,
        Err(r) => return Ok(r.into_response()),
    };
    let who = notifications::person(&st.core, &a, Some(q.user_id)).await?;
    // Newest first: a page starts strictly before the cursor's item.
    let before = paging.after().map(|p| (p.key, p.id));
    let rows = notifications::list(&st.core, &a, who, before, paging.fetch(100)).await?;
    let listed = match paging {
        Paging::Legacy { .. } => Listed::All(rows),
        Paging::Page { limit, .. } => Listed::Page(Paged::cut(rows, limit, |n| {
            Position::new(n.created_at, n.id)
        })),
    };
    Ok(listed
        .map_items(|v| v.into_iter().map(notification_out).collect())
        .into_response())
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ReadIn {
    /// The member whose notifications to mark.
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub user_id: Uuid,
    /// These notifications (others' and unknown ids are ignored)…
    #[serde(default)]
    #[schema(max_items = 500)]
    pub ids: Option<Vec<Uuid>>,
    /// …or all of them (`true`). One of the two is required.
    #[serde(default)]
    pub all: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ReadOut {
    /// How many were unread and are read now.
    pub marked: u64,
    /// How many stay unread.
    pub unread: u64,
}

/// Marks a member's notifications read: the `ids` given, or `all`.
#[utoipa::path(post, path = "/api/v1/notifications/read", tag = "notifications", request_body = ReadIn,
    responses((status = 200, body = ReadOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body is not JSON or does not match the schema; neither `ids` nor `all` (`ids`: `ids_or_all`); `user_id` not a member of this company")))]
pub async fn read_notifications(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiJson(b): ApiJson<ReadIn>,
) -> Result<Json<ReadOut>, ApiError> {
    let who = notifications::person(&st.core, &a, Some(b.user_id)).await?;
    let ids = match (b.all, &b.ids) {
        (true, _) => None,
        (false, Some(ids)) if ids.len() > 500 => {
            return Err(ApiError(CoreError::Invalid(vec![
                chatter_domain::FieldError::too_many("ids", 500),
            ])))
        }
        (false, Some(ids)) => Some(ids.as_slice()),
        (false, None) => return Err(ApiError(CoreError::field("ids", "err.ids_or_all"))),
    };
    let marked = notifications::mark_read(&st.core, &a, who, ids).await?;
    let unread = notifications::unread_count(&st.core.db, a.company_id, who).await?;
    Ok(Json(ReadOut { marked, unread }))
}
