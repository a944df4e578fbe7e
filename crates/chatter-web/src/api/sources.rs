//! Connecting a source through the API: the same kinds, fields and checks as the Sources page's
//! add form (`Kind::fields`), answered with the source as `GET /api/v1/sources` lists it.

use super::company::source_out;
use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, SourceOut};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_channels::FormValues;
use chatter_core::sources::{self, NewSource};
use chatter_core::CoreError;
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A source to connect.
#[derive(Deserialize, ToSchema)]
pub struct SourceIn {
    /// The kind, as `GET /api/v1/sources` names it: telegram_bot, vk_bot, max_bot, avito,
    /// whatsapp or sipout_sms (API sources are created in the web interface).
    #[schema(example = "vk_bot")]
    pub kind: String,
    /// The source's name; empty or absent: the account's own name.
    #[serde(default)]
    pub name: String,
    /// The kind's credentials, by the add form's field names: telegram_bot `token`; vk_bot
    /// `vk_token`, `vk_group_id`; max_bot `max_token`; avito `avito_client_id`,
    /// `avito_client_secret`; whatsapp `wa_phone_number_id`, `wa_waba_id`, `wa_access_token`,
    /// `wa_app_secret`; sipout_sms (every SMS gateway) `sms_gateway` (`sipout` when absent,
    /// `smsc`, `smsru` or `smsaero`), `sms_login` (SMSC.ru login, SMS Aero e-mail),
    /// `sms_api_key` (Sipout API key, SMSC.ru password, SMS.ru api_id, SMS Aero API key),
    /// `sms_sender` (optional).
    #[schema(example = json!({"vk_token": "vk1.a.…", "vk_group_id": "club214167102"}))]
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// Connects a source: its credentials are checked with the provider first (nothing is stored
/// when they are wrong), then it is set up in the background like one added on the Sources
/// page.
#[utoipa::path(post, path = "/api/v1/sources", tag = "sources", request_body = SourceIn,
    responses((status = 201, body = SourceOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body is not JSON or does not match the schema, the kind cannot be connected here (`kind`: `kind_unsupported`), a field is refused (e.g. `vk_token`: `vk_token_rejected`) or the provider did not answer (`provider_unreachable`)")))]
pub async fn create_source(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiJson(b): ApiJson<SourceIn>,
) -> Result<Response, ApiError> {
    let kind = chatter_channels::KINDS
        .iter()
        .find(|k| !k.fields().is_empty() && k.source_kind().as_str() == b.kind)
        .map(|k| k.source_kind())
        .ok_or_else(|| CoreError::field("kind", "err.kind_unsupported"))?;
    let new = NewSource {
        kind,
        fields: FormValues(b.fields),
    };
    let id = sources::add_source(&st.core, &a, &b.name, new).await?;
    let s = sources::get(&st.core, &a, id).await?;
    Ok((StatusCode::CREATED, Json(source_out(s, 0))).into_response())
}

/// Lists the kinds `POST /api/v1/sources` accepts as the enum of `SourceIn.kind`, from the kinds
/// registered with an add form, so the document never names a kind the server refuses.
pub(super) struct ConnectableKinds;

impl utoipa::Modify for ConnectableKinds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let names: Vec<&str> = chatter_channels::KINDS
            .iter()
            .filter(|k| !k.fields().is_empty())
            .map(|k| k.source_kind().as_str())
            .collect();
        let Some(c) = openapi.components.as_mut() else {
            return;
        };
        let Some(RefOr::T(Schema::Object(o))) = c.schemas.get_mut("SourceIn") else {
            return;
        };
        if let Some(RefOr::T(Schema::Object(kind))) = o.properties.get_mut("kind") {
            kind.enum_values = Some(names.into_iter().map(Into::into).collect());
        }
    }
}
