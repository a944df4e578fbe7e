//! The key's own company, its team members and its sources with their health.

use super::page::{in_memory, page_types, PageQuery, Position};
use super::{ApiActor, ApiError, ApiErrorBody, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_core::accounts::team;
use chatter_core::CoreError;
use chatter_store::entity::{company, source};
use sea_orm::EntityTrait;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

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
    responses((status = 200, body = Me), (status = 401, body = ApiErrorBody, content_type = "application/problem+json")))]
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

page_types!(MemberPage, MembersOut, MemberOut, "team members");

/// The company's team members, by when they joined. With `cursor`: pages of `limit`.
#[utoipa::path(get, path = "/api/v1/members", tag = "team", params(PageQuery),
    responses((status = 200, body = MembersOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "the query string does not parse (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`limit` is not between 1 and 500, or `cursor` is not one this list gave")))]
pub async fn members(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let paging = match q.paging() {
        Ok(p) => p,
        Err(r) => return Ok(r.into_response()),
    };
    let ms = team::list_members(&st.core.db, &a).await?;
    let ms: Vec<MemberOut> = ms
        .into_iter()
        .map(|m| MemberOut {
            user_id: m.user_id,
            name: m.name,
            email: m.email,
            role: m.role.as_str().into(),
            member_since: m.since,
            two_factor: m.totp_enabled,
        })
        .collect();
    Ok(in_memory(ms, paging, |m| Position::new(m.member_since, m.user_id)).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct SourceOut {
    pub id: Uuid,
    /// The kind's numeric id (requirement R1): 1 telegram_bot, 2 telegram_private, 3 vk_bot, 4 max_bot, 5 avito, 6 api, 7 whatsapp, 8 sipout_sms, 10 telegram_parsing.
    pub kind_id: i32,
    pub kind: String,
    pub name: String,
    /// connecting | connected | token_revoked | error | disabled
    pub status: String,
    /// webhook | polling
    pub mode: String,
    pub bot_username: Option<String>,
    pub last_inbound_at: Option<i64>,
    pub last_ok_at: Option<i64>,
    pub last_error: Option<String>,
    /// Events of this source that could not be stored, parked in `/api/v1/dead-letters`.
    pub parked_events: i64,
}

page_types!(SourcePage, SourcesOut, SourceOut, "sources");

/// The company's sources with their health, oldest first. With `cursor`: pages of `limit`.
#[utoipa::path(get, path = "/api/v1/sources", tag = "sources", params(PageQuery),
    responses((status = 200, body = SourcesOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "the query string does not parse (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`limit` is not between 1 and 500, or `cursor` is not one this list gave")))]
pub async fn sources(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let paging = match q.paging() {
        Ok(p) => p,
        Err(r) => return Ok(r.into_response()),
    };
    let list = chatter_core::sources::list(&st.core, &a).await?;
    let parked =
        chatter_core::inbox::dead_letters::counts_by_source(&st.core, a.company_id).await?;
    let list = in_memory(list, paging, |s| Position::new(s.created_at, s.id));
    let out = |v: Vec<source::Model>| -> Vec<SourceOut> {
        v.into_iter()
            .map(|s| {
                let n = parked.get(&s.id).copied().unwrap_or(0);
                source_out(s, n)
            })
            .collect()
    };
    Ok(list.map_items(out).into_response())
}

/// How the API shows source `s`, with `parked_events` of its events parked.
pub(super) fn source_out(s: source::Model, parked_events: i64) -> SourceOut {
    let set = chatter_core::sources::settings_of(&s);
    SourceOut {
        id: s.id.0,
        kind_id: s.kind.id(),
        kind: s.kind.as_str().to_string(),
        name: s.name,
        status: s.status,
        mode: set.mode,
        bot_username: set.bot_username,
        last_inbound_at: s.last_inbound_at,
        last_ok_at: s.last_ok_at,
        last_error: s.last_error,
        parked_events,
    }
}
