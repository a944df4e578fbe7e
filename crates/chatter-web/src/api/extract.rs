//! The API's extractors: `ApiPath`, `ApiQuery` and `ApiJson` are axum's `Path`, `Query` and
//! `Json` whose rejections answer the API's JSON error (`{"error":{"code","message","fields"}}`)
//! instead of axum's plain text, so every refusal under `/api/v1` (and the API source's hook)
//! is the documented body with a documented status:
//!
//! | what | status | code |
//! |---|---|---|
//! | a path parameter that does not parse (an id that is not a UUID) | 400 | `invalid_path` |
//! | a query string that does not parse | 400 | `invalid_query` |
//! | a body that is not JSON, or JSON of the wrong shape | 422 | `invalid` (field code `json_invalid`) |
//! | a body without `Content-Type: application/json` | 415 | `unsupported_media_type` |
//! | a body over the size limit | 413 | `too_large` |
//!
//! A body that does not parse stays a 422 `invalid` naming the field (or `body`), as it was
//! before these extractors, so clients that handle 422 keep working.

use super::{body, FieldErrorOut};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request was refused before its handler ran.
#[derive(Debug)]
pub struct ApiRejection {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    /// The `code` of the named field (the error's own code when `None`).
    field_code: Option<&'static str>,
}

impl IntoResponse for ApiRejection {
    fn into_response(self) -> Response {
        let fields = self
            .field
            .map(|f| FieldErrorOut {
                field: f,
                code: self.field_code.unwrap_or(self.code).into(),
                limit: None,
            })
            .into_iter()
            .collect();
        body(self.status, self.code, &self.message, fields)
    }
}

/// The name serde put before its message (`source: UUID parsing failed…`), when there is one.
fn leading_field(message: &str) -> Option<String> {
    let (head, _) = message.split_once(": ")?;
    let ok = !head.is_empty()
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '[' || c == ']');
    ok.then(|| head.to_owned())
}

impl From<PathRejection> for ApiRejection {
    fn from(r: PathRejection) -> Self {
        use axum::extract::path::ErrorKind;
        let (field, message) = match &r {
            PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                ErrorKind::ParseErrorAtKey {
                    key, expected_type, ..
                } => (
                    Some(key.clone()),
                    format!(
                        "`{key}` in the path is not a valid {}: use the id the API returned",
                        short_type(expected_type)
                    ),
                ),
                ErrorKind::ParseError { expected_type, .. } => (
                    None,
                    format!(
                        "a parameter in the path is not a valid {}: use the id the API returned",
                        short_type(expected_type)
                    ),
                ),
                _ => (None, format!("the path is not valid: {}", e.body_text())),
            },
            other => (None, other.body_text()),
        };
        let status = match &r {
            PathRejection::FailedToDeserializePathParams(_) => StatusCode::BAD_REQUEST,
            other => other.status(),
        };
        ApiRejection {
            status,
            code: "invalid_path",
            message,
            field,
            field_code: None,
        }
    }
}

/// `uuid::Uuid` → `UUID`, `u64` → `u64`.
fn short_type(t: &str) -> &str {
    match t.rsplit("::").next().unwrap_or(t) {
        "Uuid" => "UUID",
        other => other,
    }
}

impl From<QueryRejection> for ApiRejection {
    fn from(r: QueryRejection) -> Self {
        let text = r.body_text();
        let detail = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text)
            .to_owned();
        ApiRejection {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_query",
            field: leading_field(&detail),
            field_code: None,
            message: format!("the query string is not valid: {detail}"),
        }
    }
}

impl From<JsonRejection> for ApiRejection {
    fn from(r: JsonRejection) -> Self {
        let (status, code, message) = match &r {
            JsonRejection::JsonSyntaxError(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("the body is not valid JSON: {}", e.body_text()),
            ),
            JsonRejection::JsonDataError(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!(
                    "the body does not match the schema: {}",
                    e.body_text()
                        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                        .unwrap_or(&e.body_text())
                ),
            ),
            JsonRejection::MissingJsonContentType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`".to_owned(),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the body is too large".to_owned(),
            ),
            other => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                other.body_text(),
            ),
        };
        let field = match &r {
            JsonRejection::JsonDataError(_) => {
                leading_field(message.trim_start_matches("the body does not match the schema: "))
            }
            _ => None,
        }
        .or_else(|| Some("body".to_owned()));
        ApiRejection {
            status,
            code,
            message,
            field,
            field_code: (status == StatusCode::UNPROCESSABLE_ENTITY).then_some("json_invalid"),
        }
    }
}

/// `axum::extract::Path` with the API's JSON rejection.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    axum::extract::Path<T>: FromRequestParts<S, Rejection = PathRejection>,
{
    type Rejection = ApiRejection;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let mut rejection = match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => return Ok(ApiPath(v)),
            Err(r) => ApiRejection::from(r),
        };
        if rejection.field.is_none() {
            // A single value (`Path<Uuid>`) is refused without its name: take the route's only
            // parameter, and name it in the message.
            if let Ok(raw) = axum::extract::RawPathParams::from_request_parts(parts, state).await {
                let keys: Vec<&str> = raw.iter().map(|(k, _)| k).collect();
                if let [key] = keys[..] {
                    rejection.message = rejection
                        .message
                        .replace("a parameter in the path", &format!("`{key}` in the path"));
                    rejection.field = Some(key.to_owned());
                }
            }
        }
        Err(rejection)
    }
}

/// `axum::extract::Query` with the API's JSON rejection.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
{
    type Rejection = ApiRejection;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) = axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(ApiRejection::from)?;
        Ok(ApiQuery(v))
    }
}

/// `axum::Json` with the API's JSON rejection.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiRejection;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        // Every body is a JSON object: serde would also read a struct from an array of its
        // fields in order (`[null, null]`), which the document does not allow.
        let axum::Json(v) = axum::Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(ApiRejection::from)?;
        if !v.is_object() {
            return Err(ApiRejection {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid",
                message: "the body does not match the schema: send a JSON object".to_owned(),
                field: Some("body".to_owned()),
                field_code: Some("json_invalid"),
            });
        }
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        let axum::Json(v) = axum::Json::<T>::from_bytes(&bytes).map_err(ApiRejection::from)?;
        Ok(ApiJson(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_field_names_are_taken_only_when_they_look_like_names() {
        assert_eq!(
            leading_field("source: UUID parsing failed: invalid length"),
            Some("source".into())
        );
        assert_eq!(
            leading_field("sender.id: invalid type"),
            Some("sender.id".into())
        );
        assert_eq!(leading_field("expected value at line 1 column 1"), None);
        assert_eq!(leading_field("missing field `text` at line 1: x"), None);
    }
}
