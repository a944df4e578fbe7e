//! Inbound webhooks, routed without knowing the kind: `/hooks/{kind}/{source_id}` and
//! `/hooks/{kind}/{source_id}/{*tail}` (Avito's `/hooks/avito/{source_id}/{token}`, the SMS
//! gateway's `/hooks/sms/{source_id}/{token}/{status|inbound}`, WhatsApp's GET handshake) go to
//! `core::sources::hooks::receive_hook`, which finds the source, has its kind verify and read
//! the delivery (forged → 401, malformed → 400, nothing stored), stores the events and says
//! what to answer; the answer is sent only after the events are committed (group commit).
//! A source turned off answers 410 Gone and stores nothing. An event that can never be stored
//! is parked as a dead letter and acknowledged (see core::dead_letters).
//! The API source keeps its own documented route, `/hooks/api/{source_id}` (JSON answers).
//! Also amoCRM's "integration disabled" hook, `/hooks/amocrm/disabled`: a GET whose query carries
//! an HMAC-SHA256 signature (forged → 401, malformed → 400, nothing changed).

use crate::ctx::Ctx;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::crm::signin::{self as crm_signin, DisabledHookError};
use chatter_core::sources::hooks::{receive_hook, HookMethod, HookRequest};
use chatter_core::CoreError;
use std::collections::HashMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hooks/{kind}/{source_id}", get(hook).post(hook))
        .route("/hooks/{kind}/{source_id}/{*tail}", get(hook).post(hook))
        .route("/hooks/amocrm/disabled", get(amocrm_disabled))
        .route("/hooks/amojo/{scope_id}", post(amojo))
        .route("/hooks/api/{source_id}", post(api_message))
}

/// Managers' answers written in amoCRM (Chats API §4.6): `X-Signature` checked against the
/// channel secret, then stored and sent to the customer. 200 only after the commit.
async fn amojo(
    State(st): State<AppState>,
    Path(scope_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use chatter_core::CoreError;
    let signature = headers
        .get("x-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match chatter_core::crm::sync::receive_chat_hook(&st.core, &scope_id, &body, signature).await {
        Ok(_) => plain(StatusCode::OK, "ok"),
        Err(CoreError::Unauthenticated) => plain(StatusCode::UNAUTHORIZED, "bad signature"),
        Err(CoreError::Invalid(_)) => plain(
            StatusCode::BAD_REQUEST,
            "malformed body: expected a Chats API v2 hook",
        ),
        Err(CoreError::NotConfigured(_)) => {
            plain(StatusCode::NOT_FOUND, "the Chats API is not configured")
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store a Chats API hook");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "try again")
        }
    }
}

/// Every messenger kind's hook: `/hooks/{kind}/{source_id}` (Telegram, VK, Max, WhatsApp with
/// its GET handshake) and `/hooks/{kind}/{source_id}/{*tail}` (Avito's path token, the SMS
/// gateway's `{token}/status` and `{token}/inbound`), answered as core says.
async fn hook(
    State(st): State<AppState>,
    method: Method,
    Path(mut params): Path<HashMap<String, String>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut param = |name: &str| params.remove(name).unwrap_or_default();
    let (kind, source_id, tail) = (param("kind"), param("source_id"), param("tail"));
    let req = HookRequest {
        // axum serves HEAD with the GET handler.
        method: if method == Method::GET || method == Method::HEAD {
            HookMethod::Get
        } else {
            HookMethod::Post
        },
        tail,
        query: query.unwrap_or_default(),
        headers: headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body,
        now: st.core.now(),
    };
    let answer = receive_hook(
        &st.core,
        &st.ingester,
        &st.hook_sources,
        &kind,
        &source_id,
        req,
    )
    .await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, answer.content_type)],
        answer.body,
    )
        .into_response()
}

fn plain(status: StatusCode, msg: &'static str) -> Response {
    (status, msg).into_response()
}

/// amoCRM: an admin switched our integration off in their account (docs/providers/amocrm.md §1.7).
async fn amocrm_disabled(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = q.unwrap_or_default();
    match crm_signin::integration_disabled(&st.core, &q, &ctx.meta).await {
        Ok(_) => plain(StatusCode::OK, "ok"),
        Err(DisabledHookError::BadSignature) => {
            plain(StatusCode::UNAUTHORIZED, "signature mismatch")
        }
        Err(DisabledHookError::Malformed(_)) => plain(
            StatusCode::BAD_REQUEST,
            "malformed: account_id (a number), client_uuid and signature are required",
        ),
        Err(DisabledHookError::Core(CoreError::NotConfigured(_))) => {
            plain(StatusCode::NOT_FOUND, "amoCRM is not set up here")
        }
        Err(DisabledHookError::Core(e)) => {
            tracing::error!(error = %e, "cannot record a disabled amoCRM integration");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "not stored; retry")
        }
    }
}

fn api_error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Response {
    let fields = field
        .map(|f| crate::api::FieldErrorOut {
            field: f.to_owned(),
            code: "invalid".to_owned(),
            limit: None,
        })
        .into_iter()
        .collect();
    crate::api::body(status, code, message, fields)
}

/// A message from the customer's system to an API source (kind 6). Signed with the source's
/// secret: `X-Chatter-Signature: sha256=<hex HMAC-SHA256(secret, "{X-Chatter-Timestamp}.{body}")>`,
/// the timestamp (Unix seconds) within 5 minutes. The message is stored once per `message_id`
/// (or `Idempotency-Key`): a repeat answers the same 200. Bad signature or time: 401, a wrong
/// body: 400 naming the field — nothing is stored either way. 200 only after the commit.
#[utoipa::path(post, path = "/hooks/api/{source_id}", tag = "api source",
    params(
        ("source_id" = Uuid, Path, description = "the API source's id (its page shows the full URL)"),
        ("X-Chatter-Timestamp" = i64, Header, description = "Unix seconds; at most 5 minutes from Chatter's clock"),
        ("X-Chatter-Signature" = String, Header, description = "`sha256=` + hex HMAC-SHA256 with the source's secret of `{timestamp}.{raw body}`"),
        ("Idempotency-Key" = Option<String>, Header, description = "optional; a repeat with the same key answers what the first call answered"),
    ),
    request_body = crate::api::ApiSourceMessageIn,
    security(()),
    responses(
        (status = 200, body = crate::api::ApiSourceReceivedOut, description = "stored (or stored before: a replay)"),
        (status = 400, body = crate::api::ApiErrorBody, content_type = "application/problem+json", description = "malformed body, or a `source_id` that is not a UUID; `message` and `fields` name the field"),
        (status = 401, body = crate::api::ApiErrorBody, content_type = "application/problem+json", description = "bad or missing signature, or a stale timestamp"),
        (status = 410, body = crate::api::ApiErrorBody, content_type = "application/problem+json", description = "the source is turned off; nothing was stored"),
        (status = 404, body = crate::api::ApiErrorBody, content_type = "application/problem+json", description = "no such API source"),
    ))]
pub async fn api_message(
    State(st): State<AppState>,
    crate::api::ApiPath(id): crate::api::ApiPath<chatter_domain::SourceId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use chatter_core::sources::api::{self as api_source, ReceiveError, Signed};
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let signed = Signed {
        timestamp: h("x-chatter-timestamp"),
        signature: h("x-chatter-signature"),
        idempotency_key: h("idempotency-key"),
    };
    match api_source::receive(&st.core, &st.ingester, id, &signed, &body).await {
        Ok(r) => (StatusCode::OK, axum::Json(r)).into_response(),
        Err(ReceiveError::NotFound) => api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such API source",
            None,
        ),
        // As every other kind's hook: a source turned off is gone, nothing is stored.
        Err(ReceiveError::Disabled) => api_error(
            StatusCode::GONE,
            "disabled",
            "this source is turned off in Chatter; turn it on in Sources; nothing was stored",
            None,
        ),
        Err(ReceiveError::Unauthorized(m)) => {
            api_error(StatusCode::UNAUTHORIZED, "unauthorized", m, None)
        }
        Err(ReceiveError::Malformed { field, message }) => api_error(
            StatusCode::BAD_REQUEST,
            "malformed",
            &format!("`{field}` {message}"),
            Some(&field),
        ),
        Err(ReceiveError::Core(e)) => {
            // Not stored, so not acknowledged: the caller sends it again.
            tracing::error!(error = %e, source = %id, "cannot store an API source message");
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "not stored; retry",
                None,
            )
        }
    }
}
