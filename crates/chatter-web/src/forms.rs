//! `CsrfForm<T>`: a URL-encoded form that must carry the request's CSRF token in `_csrf`
//! (or the `X-CSRF-Token` header). Every state-changing UI route takes one. Its fields come
//! without U+0000, which PostgreSQL would refuse (see `clean`).

use crate::ctx::Ctx;
use crate::error::AppError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

pub struct CsrfForm<T>(pub T);

pub enum FormRejection {
    Csrf,
    TooLarge,
    Bad(String),
}

impl IntoResponse for FormRejection {
    fn into_response(self) -> Response {
        match self {
            FormRejection::Csrf => AppError::Csrf.into_response(),
            FormRejection::TooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response()
            }
            FormRejection::Bad(m) => {
                (StatusCode::BAD_REQUEST, format!("malformed form: {m}")).into_response()
            }
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for CsrfForm<T> {
    type Rejection = FormRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let expected = req
            .extensions()
            .get::<Ctx>()
            .map(|c| c.csrf.clone())
            .unwrap_or_default();
        let header = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                FormRejection::TooLarge
            } else {
                FormRejection::Bad(e.body_text())
            }
        })?;
        let given = header.or_else(|| {
            form_urlencoded_pairs(&body)
                .into_iter()
                .find(|(k, _)| k == "_csrf")
                .map(|(_, v)| v)
        });
        let ok = !expected.is_empty()
            && given.is_some_and(|g| chatter_core::ct_eq(g.as_bytes(), expected.as_bytes()));
        if !ok {
            return Err(FormRejection::Csrf);
        }
        // A NUL in any field would be refused by PostgreSQL (and kept by SQLite): drop it.
        let body = match std::str::from_utf8(&body)
            .ok()
            .and_then(crate::clean::clean_urlencoded)
        {
            Some(cleaned) => Bytes::from(cleaned),
            None => body,
        };
        serde_urlencoded::from_bytes(&body)
            .map(CsrfForm)
            .map_err(|e| FormRejection::Bad(e.to_string()))
    }
}

fn form_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default()
}
