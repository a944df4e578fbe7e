//! Conversations and their messages: listing them, sending a reply, and where a conversation
//! stands in the CRM.

use super::page::{page_types, Listed, PageQuery, Paged, Paging, Position};
use super::{body, ApiActor, ApiError, ApiErrorBody, ApiJson, ApiPath, ApiQuery, FieldErrorOut};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_core::CoreError;
use chatter_domain::{ConversationId, MessageId, SourceId};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Serialize, ToSchema)]
pub struct ContactOut {
    pub id: Uuid,
    pub name: String,
    pub username: Option<String>,
    pub phone: Option<String>,
    /// The messenger's id of the person.
    pub external_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationOut {
    pub id: Uuid,
    pub source_id: Uuid,
    pub source_name: String,
    pub contact: ContactOut,
    /// private | group
    pub chat_kind: String,
    pub title: Option<String>,
    /// open | closed
    pub status: String,
    pub assignee_id: Option<Uuid>,
    pub unread: i32,
    /// The customer blocked the bot.
    pub blocked: bool,
    pub last_text: String,
    pub last_message_at: i64,
    /// Its labels, by name.
    pub labels: Vec<super::labels::LabelOut>,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    /// open (default) | closed | all
    pub status: Option<String>,
    /// Only this source.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub source: Option<Uuid>,
    /// unassigned | unread
    pub only: Option<String>,
    /// Search in names and message text.
    pub q: Option<String>,
    /// Only conversations carrying this label.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub label: Option<Uuid>,
    /// At most this many, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// Send it to get pages (`{"items", "next_cursor"}`, newest conversations first by when
    /// they began): empty for the first page, then the `next_cursor` of the previous one.
    /// Without it the answer is a bare array, most recent activity first, as before.
    #[param(pattern = "^([0-9a-fA-F]{48})?$")]
    pub cursor: Option<String>,
}

page_types!(
    ConversationPage,
    ConversationsOut,
    ConversationOut,
    "conversations"
);
page_types!(MessagePage, MessagesOut, MessageOut, "messages");

pub(super) fn conversation_out(r: chatter_core::inbox::ConversationRow) -> ConversationOut {
    let c = r.conversation;
    let labels = r.labels.into_iter().map(super::labels::label_out).collect();
    ConversationOut {
        id: c.id.0,
        source_id: c.source_id.0,
        source_name: r.source_name,
        contact: ContactOut {
            id: r.contact.id.0,
            name: r.contact.name,
            username: r.contact.username,
            phone: r.contact.phone,
            external_id: r.contact.external_id,
        },
        chat_kind: c.chat_kind,
        title: c.title,
        status: c.status.to_string(),
        assignee_id: c.assignee_id,
        unread: c.unread,
        blocked: c.blocked,
        last_text: c.last_text,
        last_message_at: c.last_message_at,
        labels,
    }
}

/// Conversations. Without `cursor`: most recent activity first, at most `limit` (a bare
/// array, as before). With `cursor`: pages of `limit`, newest first by when they began.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations", params(ConversationQuery),
    responses((status = 200, body = ConversationsOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "the query string does not parse (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`limit` is not between 1 and 500, or `cursor` is not one this list gave")))]
pub async fn conversations(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<ConversationQuery>,
) -> Result<Response, ApiError> {
    let paging = match Paging::parse(q.cursor.as_deref(), q.limit) {
        Ok(p) => p,
        Err(r) => return Ok(r.into_response()),
    };
    let f = chatter_core::inbox::ListFilter {
        source: q.source.map(SourceId),
        status: q.status,
        only: q.only,
        q: q.q,
        label: q.label,
    };
    let rows = match paging {
        Paging::Legacy { .. } => {
            let rows = chatter_core::inbox::list_conversations(&st.core, &a, &f, paging.fetch(100))
                .await?;
            Listed::All(rows.into_iter().map(conversation_out).collect())
        }
        Paging::Page { after, limit } => {
            let after = after.map(|p| (p.key, p.id));
            let rows = chatter_core::inbox::list_conversations_after(
                &st.core,
                &a,
                &f,
                after,
                paging.fetch(100),
            )
            .await?;
            let page = Paged::cut(rows, limit, |r| {
                Position::new(r.conversation.created_at, r.conversation.id)
            });
            Listed::Page(Paged {
                items: page.items.into_iter().map(conversation_out).collect(),
                next_cursor: page.next_cursor,
            })
        }
    };
    Ok(rows.into_response())
}

#[derive(Serialize, ToSchema)]
pub struct AttachmentOut {
    /// photo | document | voice | audio | video | sticker
    pub kind: String,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
    /// Whether the file has been fetched from the messenger yet.
    pub stored: bool,
}

#[derive(Serialize, ToSchema)]
pub struct MessageOut {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// in (from the customer) | out (to the customer)
    pub direction: String,
    pub text: Option<String>,
    pub attachments: Vec<AttachmentOut>,
    /// received | pending | sent | failed
    pub status: String,
    /// Why sending failed, or the reason it is being retried.
    pub error: Option<String>,
    pub sender_name: String,
    pub reply_to_id: Option<Uuid>,
    /// The messenger's id of the message.
    pub external_id: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub edited_at: Option<i64>,
}

pub(super) fn message_out(m: chatter_store::entity::message::Model) -> MessageOut {
    let atts = chatter_core::attachments::attachments_of(&m);
    MessageOut {
        id: m.id.0,
        conversation_id: m.conversation_id.0,
        direction: m.direction.to_string(),
        text: m.text,
        attachments: atts
            .into_iter()
            .map(|a| AttachmentOut {
                kind: a.kind,
                file_name: a.file_name,
                mime_type: a.mime_type,
                size: a.size,
                stored: a.blob.is_some(),
            })
            .collect(),
        status: m.status.to_string(),
        error: m.error,
        sender_name: m.sender_name,
        reply_to_id: m.reply_to_id.map(Uuid::from),
        external_id: m.external_id,
        created_at: m.created_at,
        sent_at: m.sent_at,
        edited_at: m.edited_at,
    }
}

/// A conversation's messages, oldest first. Without `cursor`: the last `limit` (default 500,
/// a bare array, as before). With `cursor`: pages of `limit` from the first message on.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = Uuid, Path, description = "conversation id"), PageQuery),
    responses((status = 200, body = MessagesOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`), or the query string does not parse (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`limit` is not between 1 and 500, or `cursor` is not one this list gave")))]
pub async fn conversation_messages(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<ConversationId>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let paging = match q.paging() {
        Ok(p) => p,
        Err(r) => return Ok(r.into_response()),
    };
    let ms = match paging {
        Paging::Legacy { .. } => {
            let ms = chatter_core::inbox::messages(&st.core, &a, id, paging.fetch(500)).await?;
            Listed::All(ms.into_iter().map(message_out).collect())
        }
        Paging::Page { after, limit } => {
            let after = after.map(|p| (p.key, MessageId(p.id)));
            let ms =
                chatter_core::inbox::messages_after(&st.core, &a, id, after, paging.fetch(500))
                    .await?;
            let page = Paged::cut(ms, limit, |m| Position::new(m.created_at, m.id));
            Listed::Page(Paged {
                items: page.items.into_iter().map(message_out).collect(),
                next_cursor: page.next_cursor,
            })
        }
    };
    Ok(ms.into_response())
}

#[derive(serde::Deserialize, ToSchema)]
pub struct SendIn {
    /// The text to send, 1 to 20,000 characters with at least one that is neither a space nor a
    /// control character (control characters other than line feed and tab are removed; a long
    /// text is split at the messenger's limit).
    #[schema(
        example = "Здравствуйте! Доставка бесплатная от 3000 ₽.",
        min_length = 1,
        max_length = 20000,
        pattern = r"[^\s\u0000-\u001F\u007F-\u009F]"
    )]
    pub text: String,
    /// Our id of the message this answers.
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub reply_to: Option<Uuid>,
    /// A reply template the text was made from (`GET /api/v1/conversations/{id}/templates/{template_id}/render`):
    /// when it has a file, the file is sent with `text` as its caption (at most 1,024 characters).
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub template_id: Option<Uuid>,
}

/// Sends a message to the customer: stored as `pending` and delivered by a job; poll the
/// messages (or the status) to see it become `sent` or `failed`.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = Uuid, Path, description = "conversation id")), request_body = SendIn,
    responses((status = 201, body = MessageOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such conversation (or `reply_to` message, or `template_id` template) in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body is not JSON or does not match the schema")))]
pub async fn send_message(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(b): ApiJson<SendIn>,
) -> Result<Response, ApiError> {
    let reply_to = b.reply_to.map(MessageId);
    let sent = match b.template_id {
        Some(t) => {
            chatter_core::inbox::templates::reply_with_template(
                &st.core, &a, id, t, &b.text, reply_to,
            )
            .await
        }
        None => chatter_core::inbox::reply(&st.core, &a, id, &b.text, reply_to).await,
    };
    let m = match sent {
        Err(CoreError::Invalid(f)) if f.iter().any(|e| e.field == "reply_to") => {
            // Another conversation's message is, from here, a message that does not exist.
            return Ok(body(
                StatusCode::NOT_FOUND,
                "not_found",
                "`reply_to` is not a message of this conversation; use the `id` of one of its messages (GET /api/v1/conversations/{id}/messages)",
                vec![FieldErrorOut {
                    field: "reply_to".into(),
                    code: "reply_to_foreign".into(),
                    limit: None,
                }],
            ));
        }
        r => r?,
    };
    Ok((StatusCode::CREATED, Json(message_out(m))).into_response())
}

/// The conversation's side in the CRM.
#[derive(Serialize, ToSchema)]
pub struct CrmOut {
    /// The deal in amoCRM (`None` until it is created).
    pub deal_id: Option<i64>,
    pub deal_url: Option<String>,
    pub contact_id: Option<i64>,
    /// amoCRM's chat id when the Chats API is used.
    pub chat_id: Option<String>,
    /// The routing rule that fired (`None`: the settings' default applied).
    pub rule_id: Option<String>,
    pub rule_name: Option<String>,
    /// Items not in amoCRM yet, and how many of them amoCRM refused.
    pub pending: i64,
    pub failed: i64,
    pub last_error: Option<String>,
}

/// Where the conversation is in amoCRM and which routing rule placed it.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/crm", tag = "conversations",
    params(("id" = Uuid, Path, description = "conversation id")),
    responses((status = 200, body = CrmOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn conversation_crm(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<Json<CrmOut>, ApiError> {
    chatter_core::inbox::get_conversation(&st.core, &a, id).await?;
    let l = chatter_core::crm::sync::link_of(&st.core, &a, id)
        .await?
        .unwrap_or_default();
    Ok(Json(CrmOut {
        deal_id: l.deal_id,
        deal_url: l.deal_url,
        contact_id: l.contact_id,
        chat_id: l.chat_ref,
        rule_id: l.rule_id,
        rule_name: l.rule_name,
        pending: l.pending,
        failed: l.failed,
        last_error: l.last_error,
    }))
}
