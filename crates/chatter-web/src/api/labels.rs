//! Labels and the changes a person makes to conversations in the inbox: the company's labels
//! (`/labels`, owners' and admins' keys change them — every key acts as an admin), one
//! conversation's status, assignee and labels (`PATCH /conversations/{id}`), and one action on
//! many conversations (`POST /conversations/bulk`). Each calls the core function the inbox
//! calls, so the rules and the audit entries are the same.

use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, ApiPath};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_core::inbox::{self, labels, BulkAction};
use chatter_core::CoreError;
use chatter_domain::{ConversationId, UserId};
use chatter_store::entity::label;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A label's colour (the inbox shows each in its own colour).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LabelColor {
    Gray,
    Red,
    Orange,
    Yellow,
    Green,
    Teal,
    Blue,
    Purple,
}

impl LabelColor {
    fn as_str(self) -> &'static str {
        match self {
            LabelColor::Gray => "gray",
            LabelColor::Red => "red",
            LabelColor::Orange => "orange",
            LabelColor::Yellow => "yellow",
            LabelColor::Green => "green",
            LabelColor::Teal => "teal",
            LabelColor::Blue => "blue",
            LabelColor::Purple => "purple",
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct LabelOut {
    pub id: Uuid,
    pub name: String,
    /// gray | red | orange | yellow | green | teal | blue | purple
    pub color: String,
}

pub fn label_out(l: label::Model) -> LabelOut {
    LabelOut {
        id: l.id,
        name: l.name,
        color: l.color,
    }
}

/// The company's labels, by name.
#[utoipa::path(get, path = "/api/v1/labels", tag = "labels",
    responses((status = 200, body = Vec<LabelOut>), (status = 401, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn list_labels(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
) -> Result<Json<Vec<LabelOut>>, ApiError> {
    let ls = labels::list_labels(&st.core, &a).await?;
    Ok(Json(ls.into_iter().map(label_out).collect()))
}

/// A new label.
#[derive(Deserialize, ToSchema)]
pub struct LabelIn {
    /// 1 to 40 characters (spaces around are trimmed), without control characters or bidi
    /// controls (U+202A–U+202E, U+2066–U+2069), not the name of another label of the company in
    /// any letter case.
    #[schema(
        example = "VIP",
        min_length = 1,
        max_length = 40,
        pattern = r"[^\s\u0000-\u001F\u007F-\u009F]"
    )]
    pub name: String,
    pub color: LabelColor,
}

const LABEL_422: &str = "the body is not JSON or does not match the schema, or a field is refused: `name` (`label_name_required`, `label_name_too_long`, `control_chars`, `bidi_chars`, `label_name_taken`), `color` (`label_color_invalid`)";

/// Creates a label.
#[utoipa::path(post, path = "/api/v1/labels", tag = "labels", request_body = LabelIn,
    responses((status = 201, body = LabelOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = LABEL_422)))]
pub async fn create_label(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiJson(b): ApiJson<LabelIn>,
) -> Result<Response, ApiError> {
    let l = labels::create_label(&st.core, &a, &b.name, b.color.as_str()).await?;
    Ok((StatusCode::CREATED, Json(label_out(l))).into_response())
}

/// A label's new name and/or colour; an absent field stays as it is.
#[derive(Deserialize, ToSchema)]
pub struct LabelPatch {
    #[schema(
        example = "VIP",
        min_length = 1,
        max_length = 40,
        pattern = r"[^\s\u0000-\u001F\u007F-\u009F]"
    )]
    pub name: Option<String>,
    pub color: Option<LabelColor>,
}

/// Renames and/or recolours a label.
#[utoipa::path(patch, path = "/api/v1/labels/{id}", tag = "labels", request_body = LabelPatch,
    params(("id" = Uuid, Path, description = "label id")),
    responses((status = 200, body = LabelOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such label in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = LABEL_422)))]
pub async fn update_label(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<LabelPatch>,
) -> Result<Json<LabelOut>, ApiError> {
    let color = b.color.map(LabelColor::as_str);
    let l = labels::update_label(&st.core, &a, id, b.name.as_deref(), color).await?;
    Ok(Json(label_out(l)))
}

/// Deletes a label and takes it off every conversation.
#[utoipa::path(delete, path = "/api/v1/labels/{id}", tag = "labels",
    params(("id" = Uuid, Path, description = "label id")),
    responses((status = 204, description = "deleted"), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such label in this company")))]
pub async fn delete_label(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    labels::delete_label(&st.core, &a, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// open | closed
#[derive(Clone, Copy, Debug, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StatusIn {
    Open,
    Closed,
}

/// Changes to a conversation; each field is optional and applied in this order: `assignee_id`,
/// `labels`, `status`.
#[derive(Deserialize, ToSchema)]
pub struct ConversationPatch {
    pub status: Option<StatusIn>,
    /// A member who may reply, or `null` for nobody; absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Uuid>, nullable)]
    pub assignee_id: Option<Option<Uuid>>,
    /// The whole set of the conversation's labels (ids of this company's labels, at most 100).
    #[schema(max_items = 100)]
    pub labels: Option<Vec<Uuid>>,
}

/// A field that is present (its value, maybe `null`) rather than absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Uuid>>, D::Error> {
    Option::<Uuid>::deserialize(d).map(Some)
}

const PATCH_422: &str = "the body is not JSON or does not match the schema, `assignee_id` is not a member who may reply (`assignee_invalid`), or `labels` names a label this company does not have (`label_unknown`); nothing is changed";

/// Changes a conversation's status, assignee and labels, with the inbox's rules and audit
/// entries; answers the conversation as it is now.
#[utoipa::path(patch, path = "/api/v1/conversations/{id}", tag = "conversations", request_body = ConversationPatch,
    params(("id" = Uuid, Path, description = "conversation id")),
    responses((status = 200, body = super::ConversationOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such conversation in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = PATCH_422)))]
pub async fn patch_conversation(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(b): ApiJson<ConversationPatch>,
) -> Result<Response, ApiError> {
    inbox::get_conversation(&st.core, &a, id).await?;
    // Everything is checked before anything changes: a refused field changes nothing.
    if let Some(ls) = &b.labels {
        if ls.len() > 100 {
            return Err(CoreError::field("labels", "err.labels_too_many").into());
        }
        let known = labels::list_labels(&st.core, &a).await?;
        if !ls.iter().all(|l| known.iter().any(|k| k.id == *l)) {
            return Err(CoreError::field("labels", "err.label_unknown").into());
        }
    }
    if let Some(Some(who)) = b.assignee_id {
        let members = chatter_core::accounts::team::list_members(&st.core.db, &a).await?;
        let ok = members
            .iter()
            .any(|m| m.user_id == who && m.role.can(chatter_domain::Permission::Reply));
        if !ok {
            return Err(CoreError::field("assignee_id", "err.assignee_invalid").into());
        }
    }
    if let Some(who) = b.assignee_id {
        inbox::assign(&st.core, &a, id, who.map(UserId))
            .await
            .map_err(api_fields)?;
    }
    if let Some(ls) = &b.labels {
        inbox::set_labels(&st.core, &a, id, ls).await?;
    }
    if let Some(s) = b.status {
        inbox::set_open(&st.core, &a, id, s == StatusIn::Open).await?;
    }
    let row = inbox::get_conversation(&st.core, &a, id).await?;
    Ok(Json(super::conversations::conversation_out(row)).into_response())
}

/// What a bulk request does to each conversation.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkActionIn {
    Assign,
    AddLabel,
    RemoveLabel,
    Close,
}

/// One action on many conversations.
#[derive(Deserialize, ToSchema)]
pub struct BulkIn {
    /// The conversations, 1 to 500.
    #[schema(min_items = 1, max_items = 500)]
    pub ids: Vec<Uuid>,
    pub action: BulkActionIn,
    /// For `assign`: a member who may reply, or `null` (or absent) for nobody.
    #[schema(nullable)]
    pub assignee_id: Option<Uuid>,
    /// For `add_label` and `remove_label`: one of the company's labels.
    #[schema(nullable)]
    pub label_id: Option<Uuid>,
}

/// What a bulk request did.
#[derive(Serialize, ToSchema)]
pub struct BulkOut {
    /// Conversations the action applied to (one already in that state counts).
    pub done: usize,
    /// Skipped: assigned to another member (only for keys that cannot act on everyone's).
    pub skipped_not_yours: usize,
    /// Skipped: no such conversation in this company.
    pub skipped_missing: usize,
}

/// Assigns, labels, unlabels or closes many conversations in one transaction; conversations
/// the key may not change, or that are not this company's, are skipped and counted.
#[utoipa::path(post, path = "/api/v1/conversations/bulk", tag = "conversations", request_body = BulkIn,
    responses((status = 200, body = BulkOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body is not JSON or does not match the schema, `ids` is empty or has more than 500 (`bulk_empty`, `bulk_too_many`), `label_id` is missing or not a label of this company (`label_unknown`), or `assignee_id` is not a member who may reply (`assignee_invalid`); nothing is changed")))]
pub async fn bulk(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiJson(b): ApiJson<BulkIn>,
) -> Result<Json<BulkOut>, ApiError> {
    let label = || {
        b.label_id
            .ok_or_else(|| CoreError::field("label_id", "err.label_unknown"))
    };
    let action = match b.action {
        BulkActionIn::Assign => BulkAction::Assign(b.assignee_id.map(UserId)),
        BulkActionIn::AddLabel => BulkAction::AddLabel(label()?),
        BulkActionIn::RemoveLabel => BulkAction::RemoveLabel(label()?),
        BulkActionIn::Close => BulkAction::Close,
    };
    let ids: Vec<ConversationId> = b.ids.iter().copied().map(ConversationId).collect();
    let o = inbox::bulk(&st.core, &a, &ids, &action)
        .await
        .map_err(api_fields)?;
    Ok(Json(BulkOut {
        done: o.done,
        skipped_not_yours: o.not_yours,
        skipped_missing: o.missing,
    }))
}

/// The core's field names as this API spells them (`label_id`, `assignee_id`).
fn api_fields(e: CoreError) -> CoreError {
    match e {
        CoreError::Invalid(mut f) => {
            for e in &mut f {
                if e.field == "label" {
                    e.field = "label_id";
                } else if e.field == "assignee" {
                    e.field = "assignee_id";
                }
            }
            CoreError::Invalid(f)
        }
        e => e,
    }
}
