//! The company's amoCRM settings an integrator may change (issue 15, item 12): whether the
//! deal's responsible and the conversation's assignee are kept one person, and which side
//! leads; and sending the conversations that were there before amoCRM was connected.

use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chatter_core::crm::sync::import as crm_import;
use chatter_core::crm::sync::{self as crm_sync, ResponsibleLead};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which side's responsible person wins where they differ.
#[derive(Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeadIo {
    /// Not kept in step: the deal's responsible comes from the routing settings only.
    Off,
    /// Both ways; a new deal takes the conversation's assignee.
    Chatter,
    /// Both ways; a new deal's responsible becomes the conversation's assignee.
    Amocrm,
}

impl From<ResponsibleLead> for LeadIo {
    fn from(l: ResponsibleLead) -> Self {
        match l {
            ResponsibleLead::Off => LeadIo::Off,
            ResponsibleLead::Chatter => LeadIo::Chatter,
            ResponsibleLead::Amocrm => LeadIo::Amocrm,
        }
    }
}

impl From<LeadIo> for ResponsibleLead {
    fn from(l: LeadIo) -> Self {
        match l {
            LeadIo::Off => ResponsibleLead::Off,
            LeadIo::Chatter => ResponsibleLead::Chatter,
            LeadIo::Amocrm => ResponsibleLead::Amocrm,
        }
    }
}

/// One responsible person: the conversation's assignee in Chatter and its deal's responsible
/// in amoCRM, matched by e-mail, kept the same both ways unless `off`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ResponsibleSyncIo {
    pub lead: LeadIo,
}

/// Whether the conversation's assignee and the deal's responsible are kept one person.
#[utoipa::path(get, path = "/api/v1/crm/responsible-sync", tag = "crm",
    responses((status = 200, body = ResponsibleSyncIo), (status = 401, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn get_responsible_sync(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
) -> Result<Json<ResponsibleSyncIo>, ApiError> {
    let lead = crm_sync::get_responsible_lead(&st.core, &a).await?;
    Ok(Json(ResponsibleSyncIo { lead: lead.into() }))
}

/// Turns keeping one responsible person on (saying which side leads) or off. Turning it on
/// looks at amoCRM's deals at once.
#[utoipa::path(put, path = "/api/v1/crm/responsible-sync", tag = "crm", request_body = ResponsibleSyncIo,
    responses((status = 200, body = ResponsibleSyncIo), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json", description = "the key may not change settings"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "amoCRM is not connected"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body is not JSON or `lead` is not one of off, chatter, amocrm")))]
pub async fn put_responsible_sync(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiJson(b): ApiJson<ResponsibleSyncIo>,
) -> Result<Json<ResponsibleSyncIo>, ApiError> {
    crm_sync::set_responsible_lead(&st.core, &a, b.lead.into()).await?;
    let lead = crm_sync::get_responsible_lead(&st.core, &a).await?;
    Ok(Json(ResponsibleSyncIo { lead: lead.into() }))
}

/// What sending the conversations from before amoCRM would send (issue 15, item 11).
#[derive(Serialize, ToSchema)]
pub struct ImportPreviewOut {
    /// The period: open conversations whose last message is at most this many days old.
    pub days: i64,
    /// Open conversations amoCRM has not seen.
    pub conversations: i64,
    /// Their messages: the customers', and the team's that reached the customer.
    pub messages: i64,
}

/// One request to send the conversations from before amoCRM, and how far it has got.
#[derive(Serialize, ToSchema)]
pub struct ImportOut {
    pub id: uuid::Uuid,
    pub days: i64,
    pub conversations: i64,
    pub messages: i64,
    /// Messages amoCRM has accepted.
    pub sent: i64,
    /// Messages still waiting to go (in order, under amoCRM's rate limit).
    pub pending: i64,
    /// Messages amoCRM refused for good (with its words in the CRM diagnostics).
    pub failed: i64,
    pub done: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// The preview for the asked period and the latest import.
#[derive(Serialize, ToSchema)]
pub struct ImportStateOut {
    pub preview: ImportPreviewOut,
    pub latest: Option<ImportOut>,
}

#[derive(Deserialize, ToSchema)]
pub struct ImportIn {
    /// 1–90; open conversations whose last message is at most this many days old.
    pub days: i64,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ImportQuery {
    /// 1–90 (default 14).
    pub days: Option<i64>,
}

fn import_out(p: crm_import::ImportProgress) -> ImportOut {
    ImportOut {
        id: p.id,
        days: p.days,
        conversations: p.conversations,
        messages: p.messages,
        sent: p.sent,
        pending: p.pending,
        failed: p.failed,
        done: p.done(),
        created_at: p.created_at,
        finished_at: p.finished_at,
    }
}

/// What sending the open conversations of the last `days` days (those amoCRM has not seen,
/// with their history) would send now, and the latest such request's progress.
#[utoipa::path(get, path = "/api/v1/crm/import", tag = "crm", params(ImportQuery),
    responses((status = 200, body = ImportStateOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "amoCRM is not connected"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`days` is not 1–90")))]
pub async fn get_import(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<ImportQuery>,
) -> Result<Json<ImportStateOut>, ApiError> {
    let days = q.days.unwrap_or(crm_import::DEFAULT_DAYS);
    let preview = crm_import::preview(&st.core, &a, days)
        .await?
        .ok_or(chatter_core::CoreError::NotFound)?;
    let latest = crm_import::latest(&st.core, &a).await?.map(import_out);
    Ok(Json(ImportStateOut {
        preview: ImportPreviewOut {
            days: preview.days,
            conversations: preview.conversations,
            messages: preview.messages,
        },
        latest,
    }))
}

/// Sends the open conversations of the last `days` days that amoCRM has not seen, with their
/// whole history: deals in batches, messages into the deals' chats in order. Accepted at once;
/// read the progress with `GET /api/v1/crm/import`. A conversation is never sent twice.
#[utoipa::path(post, path = "/api/v1/crm/import", tag = "crm", request_body = ImportIn,
    responses((status = 202, body = ImportOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json", description = "the key may not change settings"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "amoCRM is not connected"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`days` is not 1–90, or there is nothing to send in that period")))]
pub async fn post_import(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiJson(b): ApiJson<ImportIn>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let p = crm_import::start(&st.core, &a, b.days).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(import_out(p))).into_response())
}
