//! Inbound webhooks: `/hooks/{kind}/{source_id}` (Avito: `/hooks/avito/{source_id}/{token}`,
//! the SMS gateway: `/hooks/sms/{source_id}/{token}/{status|inbound}`, the path token being
//! the only proof, as they sign nothing; WhatsApp: a GET handshake with the verify token, then
//! POSTs signed with the app secret). The provider's secret is
//! checked (forged → 401, nothing stored), the body is parsed (malformed → 400, nothing
//! stored), and the answer is sent only after the events are committed (group commit, see
//! core::ingest).
//! A source turned off answers 410 Gone and stores nothing (its webhook was removed at the
//! provider when it was turned off; this is for deliveries already under way). An event that
//! can never be stored is parked as a dead letter and acknowledged (see core::dead_letters).
//! Also amoCRM's "integration disabled" hook, `/hooks/amocrm/disabled`: a GET whose query carries
//! an HMAC-SHA256 signature (forged → 401, malformed → 400, nothing changed).

use crate::ctx::Ctx;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::crm::signin::{self as crm_signin, DisabledHookError};
use chatter_core::{sources, CoreError};
use chatter_domain::SourceKind;
use chatter_store::entity::source;
use sea_orm::EntityTrait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hooks/telegram/{source_id}", post(telegram))
        .route("/hooks/vk/{source_id}", post(vk))
        .route("/hooks/max/{source_id}", post(max))
        .route("/hooks/avito/{source_id}/{token}", post(avito))
        .route(
            "/hooks/whatsapp/{source_id}",
            get(whatsapp_verify).post(whatsapp),
        )
        .route("/hooks/sms/{source_id}/{token}/status", post(sms_status))
        .route("/hooks/sms/{source_id}/{token}/inbound", post(sms_inbound))
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

const CACHE_MS: i64 = 5_000;

/// Sources with their webhook secret, cached for a few seconds.
#[derive(Clone, Default)]
pub struct SourceCache(Arc<Mutex<HashMap<Uuid, Cached>>>);

/// A source, its webhook secret, and when it was read.
type Cached = (source::Model, String, i64);

impl SourceCache {
    async fn get(&self, st: &AppState, id: Uuid) -> Option<(source::Model, String)> {
        let now = st.core.now();
        if let Ok(m) = self.0.lock() {
            if let Some((s, secret, at)) = m.get(&id) {
                if now - at < CACHE_MS {
                    return Some((s.clone(), secret.clone()));
                }
            }
        }
        let s = source::Entity::find_by_id(id)
            .one(&st.core.db)
            .await
            .ok()??;
        let secret = sources::secret_of(&st.core, &s)
            .ok()?
            .webhook_secret
            .unwrap_or_default();
        if let Ok(mut m) = self.0.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(id, (s.clone(), secret.clone(), now));
        }
        Some((s, secret))
    }
}

fn plain(status: StatusCode, msg: &'static str) -> Response {
    (status, msg).into_response()
}

fn gone() -> Response {
    plain(
        StatusCode::GONE,
        "this source is turned off in Chatter; nothing was stored",
    )
}

async fn telegram(
    State(st): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((src, secret)) = st.hook_sources.get(&st, id).await else {
        return plain(StatusCode::NOT_FOUND, "no such source");
    };
    if src.kind != SourceKind::TelegramBot.id() {
        return plain(StatusCode::NOT_FOUND, "no such source");
    }
    if src.status == sources::DISABLED {
        return gone();
    }
    let header = headers
        .get("x-telegram-bot-api-secret-token")
        .and_then(|v| v.to_str().ok());
    if secret.is_empty() || !chatter_channels::common::secret_matches(header, &secret) {
        return plain(StatusCode::UNAUTHORIZED, "secret token mismatch");
    }
    let raw: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "malformed JSON: expected one Telegram Update object",
            )
        }
    };
    if raw.get("update_id").and_then(|v| v.as_i64()).is_none() {
        return plain(
            StatusCode::BAD_REQUEST,
            "not a Telegram Update: update_id missing",
        );
    }
    let ev = chatter_channels::telegram::parse_update(&raw);
    let raw = Some(String::from_utf8_lossy(&body).into_owned());
    match st.ingester.submit_raw(src, ev, raw).await {
        Ok(chatter_core::inbox::Ingested::SourceOff) => gone(),
        Ok(_) => plain(StatusCode::OK, "ok"),
        Err(e) => {
            // Not stored, so not acknowledged: Telegram delivers it again.
            tracing::error!(error = %e, source = %id, "cannot store a webhook update");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "not stored; retry")
        }
    }
}

/// Stores `events` of `src` (each committed before the next; `body`, what the provider sent,
/// is kept with any that has to be parked); the provider is answered with `ack` only when all
/// are stored.
async fn store(
    st: &AppState,
    src: source::Model,
    events: Vec<chatter_channels::InboundEvent>,
    ack: &'static str,
    body: &[u8],
) -> Response {
    let id = src.id;
    for ev in &events {
        if let chatter_channels::InboundEvent::Status { external_id, .. } = ev {
            match chatter_core::inbox::status_ready(&st.core, &src, external_id).await {
                Ok(true) => {}
                // Nothing stored: the provider sends the report again once the send is recorded.
                Ok(false) => {
                    return plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "reply still being sent; retry",
                    )
                }
                Err(e) => {
                    tracing::error!(error = %e, source = %id, "cannot look up a delivery report");
                    return plain(StatusCode::INTERNAL_SERVER_ERROR, "not stored; retry");
                }
            }
        }
    }
    let raw = String::from_utf8_lossy(body).into_owned();
    for ev in events {
        match st
            .ingester
            .submit_raw(src.clone(), ev, Some(raw.clone()))
            .await
        {
            Ok(chatter_core::inbox::Ingested::SourceOff) => return gone(),
            Ok(_) => {}
            Err(e) => {
                // Not stored, so not acknowledged: the provider delivers it again.
                tracing::error!(error = %e, source = %id, "cannot store a webhook event");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "not stored; retry");
            }
        }
    }
    plain(StatusCode::OK, ack)
}

/// The source `id` if it is of `kind`, with its webhook secret.
async fn source_of(
    st: &AppState,
    id: Uuid,
    kind: SourceKind,
) -> Result<(source::Model, String), Response> {
    match st.hook_sources.get(st, id).await {
        Some((src, _)) if src.kind == kind.id() && src.status == sources::DISABLED => Err(gone()),
        Some((src, secret)) if src.kind == kind.id() => Ok((src, secret)),
        _ => Err(plain(StatusCode::NOT_FOUND, "no such source")),
    }
}

/// VK Callback API (spec §2.2): the `confirmation` request is answered with the community's
/// code; every other event must carry our secret and is answered `ok` once stored.
async fn vk(State(st): State<AppState>, Path(id): Path<Uuid>, body: Bytes) -> Response {
    use chatter_channels::vk::{parse_callback, CallbackError, CallbackOutcome, CALLBACK_OK};
    let (src, secret) = match source_of(&st, id, SourceKind::VkBot).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let group_id = sources::settings_of(&src).bot_id.parse().unwrap_or(0);
    match parse_callback(&body, &secret, group_id) {
        Ok(CallbackOutcome::Confirmation { .. }) => {
            // Read afresh: the code changes while the callback server is being added.
            let code = source::Entity::find_by_id(id)
                .one(&st.core.db)
                .await
                .ok()
                .flatten()
                .and_then(|s| sources::settings_of(&s).vk_confirmation);
            match code {
                Some(code) => (StatusCode::OK, code).into_response(),
                None => plain(StatusCode::SERVICE_UNAVAILABLE, "not set up yet"),
            }
        }
        Ok(CallbackOutcome::Events { events, .. }) => {
            store(&st, src, events, CALLBACK_OK, &body).await
        }
        Err(CallbackError::Unauthenticated) => plain(StatusCode::UNAUTHORIZED, "secret mismatch"),
        Err(CallbackError::Malformed(_)) => plain(
            StatusCode::BAD_REQUEST,
            "malformed body: expected a VK Callback API event",
        ),
    }
}

/// Max webhook (spec §3.3): `X-Max-Bot-Api-Secret` must be our secret; one Update per POST.
async fn max(
    State(st): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use chatter_channels::max::{parse_webhook, HookError, SECRET_HEADER};
    let (src, secret) = match source_of(&st, id, SourceKind::MaxBot).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let header = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok());
    match parse_webhook(&body, header, &secret) {
        Ok(events) => store(&st, src, events, "ok", &body).await,
        Err(HookError::Forged) => plain(StatusCode::UNAUTHORIZED, "secret mismatch"),
        Err(HookError::Malformed(_)) => plain(
            StatusCode::BAD_REQUEST,
            "malformed body: expected one Max Update object",
        ),
    }
}

/// Avito webhook v3 (spec §4.3): the unguessable path token stands in for a signature.
async fn avito(
    State(st): State<AppState>,
    Path((id, token)): Path<(Uuid, String)>,
    body: Bytes,
) -> Response {
    use chatter_channels::avito::{parse_webhook, HookError};
    let (src, secret) = match source_of(&st, id, SourceKind::Avito).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if secret.is_empty() || !chatter_core::ct_eq(token.as_bytes(), secret.as_bytes()) {
        return plain(StatusCode::UNAUTHORIZED, "unknown hook token");
    }
    match parse_webhook(&body) {
        Ok(events) => store(&st, src, events, "{\"ok\":true}", &body).await,
        Err(HookError::Malformed(_)) => plain(
            StatusCode::BAD_REQUEST,
            "malformed body: expected an Avito webhook v3 payload",
        ),
    }
}

#[derive(serde::Deserialize)]
struct HubQuery {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Meta's subscription handshake (spec §5.4): the challenge echoed when the verify token is
/// the source's, 403 otherwise.
async fn whatsapp_verify(
    State(st): State<AppState>,
    Path(id): Path<Uuid>,
    Query(q): Query<HubQuery>,
) -> Response {
    use chatter_channels::whatsapp::verify_subscription;
    let (_, verify_token) = match source_of(&st, id, SourceKind::Whatsapp).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match verify_subscription(
        q.mode.as_deref(),
        q.verify_token.as_deref(),
        q.challenge.as_deref(),
        &verify_token,
    ) {
        Ok(challenge) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "text/plain")],
            challenge,
        )
            .into_response(),
        Err(_) => plain(StatusCode::FORBIDDEN, "verify token mismatch"),
    }
}

/// WhatsApp notifications (spec §5.5): `X-Hub-Signature-256` must be the HMAC of the raw body
/// with the source's app secret (checked before parsing); customer messages and our messages'
/// delivery statuses for this source's number are stored, then answered 200.
async fn whatsapp(
    State(st): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use chatter_channels::whatsapp::{parse_notification_routed, verify_signature};
    let (src, _) = match source_of(&st, id, SourceKind::Whatsapp).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let app_secret = sources::secret_of(&st.core, &src)
        .ok()
        .and_then(|s| s.app_secret)
        .unwrap_or_default();
    let header = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if verify_signature(&app_secret, &body, header).is_err() {
        return plain(StatusCode::UNAUTHORIZED, "bad X-Hub-Signature-256");
    }
    let Ok(routed) = parse_notification_routed(&body) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "malformed body: expected a whatsapp_business_account notification",
        );
    };
    // One Meta app may serve several numbers: keep what is addressed to this source's.
    let number = sources::settings_of(&src).bot_id;
    let events = routed
        .into_iter()
        .filter(|r| r.phone_number_id.is_empty() || r.phone_number_id == number)
        .map(|r| r.event)
        .collect();
    store(&st, src, events, "ok", &body).await
}

/// The SMS source `id` and its client, when `token` is the source's callback token.
async fn sms_source(
    st: &AppState,
    id: Uuid,
    token: &str,
) -> Result<(source::Model, chatter_channels::sms::SmsClient), Response> {
    let (src, secret) = source_of(st, id, SourceKind::SipoutSms).await?;
    if secret.is_empty() || !chatter_channels::sms::callback_token_matches(token, &secret) {
        return Err(plain(StatusCode::UNAUTHORIZED, "unknown callback token"));
    }
    match chatter_core::sources::connectors::client_for(&st.core, &src) {
        Ok(chatter_core::sources::connectors::SourceClient::Sms(c)) => Ok((src, *c)),
        _ => Err(plain(StatusCode::INTERNAL_SERVER_ERROR, "try again")),
    }
}

/// The SMS gateway's delivery reports: each moves our message forward (or to failed).
async fn sms_status(
    State(st): State<AppState>,
    Path((id, token)): Path<(Uuid, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sms_callback(st, id, token, headers, body, false).await
}

/// Incoming SMS: each becomes a customer message (the sender's phone is the customer).
async fn sms_inbound(
    State(st): State<AppState>,
    Path((id, token)): Path<(Uuid, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sms_callback(st, id, token, headers, body, true).await
}

async fn sms_callback(
    st: AppState,
    id: Uuid,
    token: String,
    headers: HeaderMap,
    body: Bytes,
    inbound: bool,
) -> Response {
    let (src, client) = match sms_source(&st, id, &token).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let now = st.core.now();
    let parsed = if inbound {
        client.parse_inbound_callback(content_type, &body, now)
    } else {
        client.parse_status_callback(content_type, &body, now)
    };
    let Ok(events) = parsed else {
        return plain(
            StatusCode::BAD_REQUEST,
            "malformed body: expected the gateway's callback fields",
        );
    };
    // The gateway wants its own acknowledgement body (Sipout: `ok`).
    let ack: &'static str = match client.callback_ack().1 {
        "100" => "100",
        "OK" => "OK",
        _ => "ok",
    };
    store(&st, src, events, ack, &body).await
}

/// amoCRM: an admin switched our integration off in their account (specs/amocrm.md §1.7).
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
    crate::api::ApiPath(id): crate::api::ApiPath<Uuid>,
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
