//! The bearer-key check every API route starts with: `Authorization: Bearer chk_…` names the
//! company and the key acting for it.

use super::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use chatter_core::{Actor, CoreError};

/// The company and key behind the bearer token.
pub struct ApiActor(pub Actor);

impl FromRequestParts<AppState> for ApiActor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError(CoreError::Unauthenticated))?;
        let meta = parts
            .extensions
            .get::<crate::ctx::Ctx>()
            .map(|c| c.meta.clone())
            .unwrap_or_default();
        Ok(ApiActor(
            chatter_core::accounts::api_keys::authenticate(&st.core, key, &meta).await?,
        ))
    }
}
