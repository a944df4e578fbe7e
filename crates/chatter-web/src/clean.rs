//! What a person sends is made storable before any handler sees it: U+0000, which PostgreSQL
//! refuses in text (and SQLite keeps), is removed from the request path, every query string
//! (searches, filters) and every JSON body of the API, so the same input behaves the same on
//! both databases instead of answering 500. Forms are cleaned by `forms::CsrfForm`; webhook
//! bodies are left as signed and cleaned when their events are normalised in core.

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::uri::PathAndQuery;
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use chatter_domain::text;

/// `application/x-www-form-urlencoded` text with every NUL removed from its names and values;
/// `None` when there was none (or the text does not parse, which its extractor reports).
pub fn clean_urlencoded(s: &str) -> Option<String> {
    if !s.contains("%00") {
        return None;
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(s).ok()?;
    let cleaned: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(k, v)| (text::clean(&k).into_owned(), text::clean(&v).into_owned()))
        .collect();
    serde_urlencoded::to_string(cleaned).ok()
}

/// The middleware: path and query always; the body of JSON requests to `/api/v1`.
pub async fn strip_refused(req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if let Some(uri) = cleaned_uri(&parts.uri) {
        parts.uri = uri;
    }
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(json && parts.uri.path().starts_with("/api/v1/")) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    // The body limit layer outside bounds what is read here.
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return crate::api::body(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is too large or was cut off",
            Vec::new(),
        );
    };
    let bytes = if bytes.windows(6).any(|w| w == b"\\u0000") {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(mut v) => {
                text::clean_json(&mut v);
                serde_json::to_vec(&v).map(Into::into).unwrap_or(bytes)
            }
            Err(_) => bytes,
        }
    } else {
        bytes
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn cleaned_uri(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    let query = uri.query();
    let new_path = path.contains("%00").then(|| path.replace("%00", ""));
    let new_query = query.and_then(clean_urlencoded);
    if new_path.is_none() && new_query.is_none() {
        return None;
    }
    let path = new_path.as_deref().unwrap_or(path);
    let pq = match new_query.as_deref().or(query) {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut p = uri.clone().into_parts();
    p.path_and_query = Some(pq.parse::<PathAndQuery>().ok()?);
    Uri::from_parts(p).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_leaves_queries_and_paths() {
        assert_eq!(
            clean_urlencoded("q=%D0%90%00%D0%BD&x=1").as_deref(),
            Some("q=%D0%90%D0%BD&x=1")
        );
        assert_eq!(clean_urlencoded("q=plain"), None);
        let u: Uri = "/app/inbox?q=a%00b".parse().expect("uri");
        assert_eq!(
            cleaned_uri(&u).map(|u| u.to_string()).as_deref(),
            Some("/app/inbox?q=ab")
        );
    }
}
