//! The plain-HTTP listener beside HTTPS (`tls.http_bind`, port 80 in production): it answers
//! ACME HTTP-01 challenges (from the database, so the CA may reach any node) and sends every
//! other request to the same path on the public HTTPS address. Nothing else is served in
//! plain text, and no HSTS is sent here (browsers ignore it over HTTP).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chatter_core::Core;

#[derive(Clone)]
struct Redirect {
    core: Core,
    /// `https://host[:port]`, no trailing slash.
    origin: String,
}

/// The router of the plain listener; `origin` is the public HTTPS origin.
pub fn router(core: Core, origin: String) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(challenge))
        .fallback(redirect)
        .with_state(Redirect { core, origin })
}

async fn challenge(State(st): State<Redirect>, Path(token): Path<String>) -> Response {
    match chatter_tls::acme::challenge_answer(&st.core, &token).await {
        Some(answer) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], answer).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such challenge").into_response(),
    }
}

async fn redirect(State(st): State<Redirect>, method: Method, uri: Uri) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    // 301 for reads (cached by browsers, followed by every client); 308 keeps a POST a POST.
    let status = if method == Method::GET || method == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    match HeaderValue::from_str(&format!("{}{path}", st.origin)) {
        Ok(to) => (status, [(header::LOCATION, to)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}
