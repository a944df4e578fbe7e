//! The company's amoCRM settings an integrator may change (issue 15, item 12): whether the
//! deal's responsible and the conversation's assignee are kept one person, and which side
//! leads.

use super::{ApiActor, ApiError, ApiErrorBody, ApiJson};
use crate::AppState;
use axum::extract::State;
use axum::Json;
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
