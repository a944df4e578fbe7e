//! The price of one billed part of an SMS source (`/sources/{id}/sms-price`), which the
//! auto-reply editor multiplies by a reply's parts to show its cost. The page's form calls the
//! same core function.

use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, ApiPath};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chatter_domain::SourceId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The price of one part, in roubles.
#[derive(Deserialize, ToSchema)]
pub struct SmsPriceIn {
    /// Roubles with up to two decimals after a point or a comma, at most 1000 (`"3.50"`); empty
    /// or absent: no price (the editor shows no cost).
    #[serde(default)]
    #[schema(example = "3.50", max_length = 8)]
    pub price: Option<String>,
}

/// The price stored.
#[derive(Serialize, ToSchema)]
pub struct SmsPriceOut {
    /// Kopecks per part; `null`: none.
    pub price_kopecks: Option<u32>,
}

/// Sets the price of one part of an SMS source.
#[utoipa::path(put, path = "/api/v1/sources/{id}/sms-price", tag = "sources", request_body = SmsPriceIn,
    params(("id" = Uuid, Path, description = "source id")),
    responses((status = 200, body = SmsPriceOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such source in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`price` is not roubles up to 1000 (`sms_part_price`), or the source is not an SMS one (`sms_part_price_kind`)")))]
pub async fn put_sms_price(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<SmsPriceIn>,
) -> Result<Json<SmsPriceOut>, ApiError> {
    let typed = b.price.unwrap_or_default();
    let price =
        chatter_core::sources::set_sms_part_price(&st.core, &a, SourceId(id), &typed).await?;
    Ok(Json(SmsPriceOut {
        price_kopecks: price,
    }))
}
