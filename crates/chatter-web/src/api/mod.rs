//! The REST API under `/api/v1`, authenticated with company API keys
//! (`Authorization: Bearer chk_…`). Errors are `{"error":{"code","message","fields"}}`.
//! The OpenAPI document is at `/api/openapi.json`, Swagger UI at `/api/docs`. Path, query and
//! body refusals are JSON too (see `extract`), and the document declares every status a route
//! can answer, with schema constraints matching what the server checks.

mod extract;

pub use extract::{ApiJson, ApiPath, ApiQuery, ApiRejection};

mod exports;

use crate::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chatter_core::accounts::team;
use chatter_core::{Actor, CoreError};
use chatter_store::entity::company;
use sea_orm::EntityTrait;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;
use uuid::Uuid;

pub mod dead_letters;
pub mod reports;

#[derive(OpenApi)]
#[openapi(
    info(title = "Chatter API", version = "1", description = "Messengers to CRM. Authenticate with a company API key: `Authorization: Bearer chk_…` (Settings → API keys, or `chatter admin api-key create --company <slug>`)."),
    paths(me, members, sources, conversations, conversation_messages, send_message, conversation_crm, routing_rules, routing_dry_run, crate::hooks::api_message, dead_letters::list_dead_letters, dead_letters::retry_dead_letter, exports::start_export, exports::get_export, exports::download_export, exports::set_webhook_url, reports::dashboard, reports::report, reports::report_csv),
    components(schemas(Me, CompanyOut, MemberOut, ApiErrorBody, ApiErrorInner, FieldErrorOut, SourceOut, ConversationOut, ContactOut, MessageOut, AttachmentOut, SendIn, CrmOut, RuleOut, ConditionsOut, TimeWindowOut, ActionsOut, ResponsibleOut, DecisionOut, StepOut, DryRunIn, ApiSourceMessageIn, ApiSourceSenderIn, ApiSourceUtmIn, ApiSourceReceivedOut, WebhookEventOut, dead_letters::DeadLetterOut, dead_letters::RetriedOut, exports::ExportOut, exports::WebhookUrlIn, exports::WebhookUrlOut, reports::DashboardOut, reports::MedianOut, reports::GroupOut, reports::SeriesOut, reports::ReportOut, reports::ReportLineOut, reports::ReportDayOut, reports::TimesOut)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/dashboard", get(reports::dashboard))
        .route("/api/v1/reports", get(reports::report))
        .route("/api/v1/reports/csv", get(reports::report_csv))
        .route("/api/v1/members", get(members))
        .route("/api/v1/sources", get(sources))
        .route("/api/v1/conversations", get(conversations))
        .route("/api/v1/conversations/{id}/crm", get(conversation_crm))
        .route(
            "/api/v1/conversations/{id}/messages",
            get(conversation_messages).post(send_message),
        )
        .route("/api/v1/routing-rules", get(routing_rules))
        .route("/api/v1/routing-rules/dry-run", post(routing_dry_run))
        .route("/api/v1/dead-letters", get(dead_letters::list_dead_letters))
        .route(
            "/api/v1/dead-letters/{id}/retry",
            post(dead_letters::retry_dead_letter),
        )
        .route("/api/v1/exports", post(exports::start_export))
        .route("/api/v1/exports/{id}", get(exports::get_export))
        .route(
            "/api/v1/exports/{id}/download",
            get(exports::download_export),
        )
        .route(
            "/api/v1/api-sources/{id}/webhook-url",
            post(exports::set_webhook_url),
        )
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", ApiDoc::openapi()))
}

/// Every refusal, as an RFC 9457 problem document (`Content-Type: application/problem+json`).
/// `code` and `fields` are this API's extension members; `error` repeats them with `message`
/// in the shape answered before problem documents, for clients written against it.
#[derive(Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// Names the kind of problem: `urn:chatter:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:chatter:problem:not_found")]
    pub type_: String,
    /// A short summary of the kind of problem (the HTTP status' name).
    pub title: String,
    /// The HTTP status code, repeated.
    pub status: u16,
    /// What went wrong and what to do, in English.
    pub detail: String,
    /// Machine-readable code, e.g. `unauthorized`, `forbidden`, `not_found`, `invalid`.
    pub code: String,
    /// The fields at fault, for `invalid`.
    pub fields: Vec<FieldErrorOut>,
    pub error: ApiErrorInner,
}

#[derive(Serialize, ToSchema)]
pub struct ApiErrorInner {
    /// Machine-readable code, e.g. `unauthorized`, `forbidden`, `not_found`, `invalid`.
    pub code: String,
    /// What went wrong and what to do, in English.
    pub message: String,
    pub fields: Vec<FieldErrorOut>,
}

#[derive(Clone, Serialize, ToSchema)]
pub struct FieldErrorOut {
    pub field: String,
    /// e.g. `required`, `too_long`, `control_chars`, `bidi_chars`.
    pub code: String,
    /// The limit the code names (`too_long`: characters; `too_many`: items); see docs/limits.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

pub struct ApiError(pub CoreError);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError(e)
    }
}

pub(crate) fn body(
    status: StatusCode,
    code: &str,
    message: &str,
    fields: Vec<FieldErrorOut>,
) -> Response {
    let problem = ApiErrorBody {
        type_: format!("urn:chatter:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: message.into(),
        code: code.into(),
        fields: fields.clone(),
        error: ApiErrorInner {
            code: code.into(),
            message: message.into(),
            fields,
        },
    };
    let mut r = (status, Json(problem)).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(PROBLEM_JSON),
    );
    r
}

/// The media type of every error body (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.0 {
            CoreError::Invalid(f) => body(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "some fields are invalid; see `fields`",
                f.into_iter()
                    .map(|e| FieldErrorOut {
                        field: e.field.into(),
                        code: e.key.trim_start_matches("err.").into(),
                        limit: e.limit,
                    })
                    .collect(),
            ),
            CoreError::Unauthenticated | CoreError::BadCredentials | CoreError::BadCode => {
                let mut r = body(StatusCode::UNAUTHORIZED, "unauthorized", "send a valid API key as `Authorization: Bearer <key>`; create one in Settings → API keys", vec![]);
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                r
            }
            CoreError::Forbidden => body(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this key may not do that",
                vec![],
            ),
            CoreError::NotFound => body(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such object in this company",
                vec![],
            ),
            CoreError::Conflict(w) => body(StatusCode::CONFLICT, "conflict", w, vec![]),
            CoreError::Throttled(s) => body(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &format!("retry in {s} s"),
                vec![],
            ),
            CoreError::LinkExpired => body(
                StatusCode::GONE,
                "expired",
                "the link expired or was used",
                vec![],
            ),
            CoreError::NotConfigured(w) => {
                body(StatusCode::SERVICE_UNAVAILABLE, "not_configured", w, vec![])
            }
            e @ (CoreError::Store(_) | CoreError::Internal(_)) => {
                tracing::error!(error = ?e, "API request failed");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; it has been logged",
                    vec![],
                )
            }
        }
    }
}

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

/// The company's team members.
#[utoipa::path(get, path = "/api/v1/members", tag = "team",
    responses((status = 200, body = Vec<MemberOut>), (status = 401, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn members(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
) -> Result<Json<Vec<MemberOut>>, ApiError> {
    let ms = team::list_members(&st.core.db, &a).await?;
    Ok(Json(
        ms.into_iter()
            .map(|m| MemberOut {
                user_id: m.user_id,
                name: m.name,
                email: m.email,
                role: m.role.as_str().into(),
                member_since: m.since,
                two_factor: m.totp_enabled,
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct SourceOut {
    pub id: Uuid,
    /// The kind's numeric id (MISSION R1): 1 telegram_bot, 2 telegram_private, 3 vk_bot, 4 max_bot, 5 avito, 6 api, 7 whatsapp, 8 sipout_sms, 10 telegram_parsing.
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

/// The company's sources with their health.
#[utoipa::path(get, path = "/api/v1/sources", tag = "sources",
    responses((status = 200, body = Vec<SourceOut>), (status = 401, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn sources(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
) -> Result<Json<Vec<SourceOut>>, ApiError> {
    let list = chatter_core::sources::list(&st.core, &a).await?;
    let parked =
        chatter_core::inbox::dead_letters::counts_by_source(&st.core, a.company_id).await?;
    Ok(Json(
        list.into_iter()
            .map(|s| {
                let set = chatter_core::sources::settings_of(&s);
                SourceOut {
                    id: s.id,
                    kind_id: s.kind,
                    kind: chatter_domain::SourceKind::from_id(s.kind)
                        .map(|k| k.as_str().to_string())
                        .unwrap_or_default(),
                    name: s.name,
                    status: s.status,
                    mode: set.mode,
                    bot_username: set.bot_username,
                    last_inbound_at: s.last_inbound_at,
                    last_ok_at: s.last_ok_at,
                    last_error: s.last_error,
                    parked_events: parked.get(&s.id).copied().unwrap_or(0),
                }
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ContactOut {
    pub id: Uuid,
    pub name: String,
    pub username: Option<String>,
    pub phone: Option<String>,
    /// The messenger's id of the person.
    pub external_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationOut {
    pub id: Uuid,
    pub source_id: Uuid,
    pub source_name: String,
    pub contact: ContactOut,
    /// private | group
    pub chat_kind: String,
    pub title: Option<String>,
    /// open | closed
    pub status: String,
    pub assignee_id: Option<Uuid>,
    pub unread: i32,
    /// The customer blocked the bot.
    pub blocked: bool,
    pub last_text: String,
    pub last_message_at: i64,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    /// open (default) | closed | all
    pub status: Option<String>,
    /// Only this source.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub source: Option<Uuid>,
    /// unassigned | unread
    pub only: Option<String>,
    /// Search in names and message text.
    pub q: Option<String>,
    /// At most this many, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
}

fn conversation_out(r: chatter_core::inbox::ConversationRow) -> ConversationOut {
    let c = r.conversation;
    ConversationOut {
        id: c.id,
        source_id: c.source_id,
        source_name: r.source_name,
        contact: ContactOut {
            id: r.contact.id,
            name: r.contact.name,
            username: r.contact.username,
            phone: r.contact.phone,
            external_id: r.contact.external_id,
        },
        chat_kind: c.chat_kind,
        title: c.title,
        status: c.status,
        assignee_id: c.assignee_id,
        unread: c.unread,
        blocked: c.blocked,
        last_text: c.last_text,
        last_message_at: c.last_message_at,
    }
}

/// Conversations, most recent first.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations", params(ConversationQuery),
    responses((status = 200, body = Vec<ConversationOut>), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "the query string does not parse (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`limit` is not between 1 and 500")))]
pub async fn conversations(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<ConversationQuery>,
) -> Result<Json<Vec<ConversationOut>>, ApiError> {
    let f = chatter_core::inbox::ListFilter {
        source: q.source,
        status: q.status,
        only: q.only,
        q: q.q,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError(CoreError::field("limit", "err.out_of_range")));
    }
    let rows = chatter_core::inbox::list_conversations(&st.core, &a, &f, limit).await?;
    Ok(Json(rows.into_iter().map(conversation_out).collect()))
}

#[derive(Serialize, ToSchema)]
pub struct AttachmentOut {
    /// photo | document | voice | audio | video | sticker
    pub kind: String,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
    /// Whether the file has been fetched from the messenger yet.
    pub stored: bool,
}

#[derive(Serialize, ToSchema)]
pub struct MessageOut {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// in (from the customer) | out (to the customer)
    pub direction: String,
    pub text: Option<String>,
    pub attachments: Vec<AttachmentOut>,
    /// received | pending | sent | failed
    pub status: String,
    /// Why sending failed, or the reason it is being retried.
    pub error: Option<String>,
    pub sender_name: String,
    pub reply_to_id: Option<Uuid>,
    /// The messenger's id of the message.
    pub external_id: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub edited_at: Option<i64>,
}

fn message_out(m: chatter_store::entity::message::Model) -> MessageOut {
    let atts = chatter_core::attachments::attachments_of(&m);
    MessageOut {
        id: m.id,
        conversation_id: m.conversation_id,
        direction: m.direction,
        text: m.text,
        attachments: atts
            .into_iter()
            .map(|a| AttachmentOut {
                kind: a.kind,
                file_name: a.file_name,
                mime_type: a.mime_type,
                size: a.size,
                stored: a.blob.is_some(),
            })
            .collect(),
        status: m.status,
        error: m.error,
        sender_name: m.sender_name,
        reply_to_id: m.reply_to_id,
        external_id: m.external_id,
        created_at: m.created_at,
        sent_at: m.sent_at,
        edited_at: m.edited_at,
    }
}

/// A conversation's messages, oldest first (the last 500).
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = Uuid, Path, description = "conversation id")),
    responses((status = 200, body = Vec<MessageOut>), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn conversation_messages(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Vec<MessageOut>>, ApiError> {
    let ms = chatter_core::inbox::messages(&st.core, &a, id, 500).await?;
    Ok(Json(ms.into_iter().map(message_out).collect()))
}

#[derive(serde::Deserialize, ToSchema)]
pub struct SendIn {
    /// The text to send, 1 to 20,000 characters with at least one that is neither a space nor a
    /// control character (control characters other than line feed and tab are removed; a long
    /// text is split at the messenger's limit).
    #[schema(
        example = "Здравствуйте! Доставка бесплатная от 3000 ₽.",
        min_length = 1,
        max_length = 20000,
        pattern = r"[^\s\u0000-\u001F\u007F-\u009F]"
    )]
    pub text: String,
    /// Our id of the message this answers.
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub reply_to: Option<Uuid>,
}

/// Sends a message to the customer: stored as `pending` and delivered by a job; poll the
/// messages (or the status) to see it become `sent` or `failed`.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = Uuid, Path, description = "conversation id")), request_body = SendIn,
    responses((status = 201, body = MessageOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such conversation (or `reply_to` message) in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body is not JSON or does not match the schema")))]
pub async fn send_message(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<SendIn>,
) -> Result<Response, ApiError> {
    let m = match chatter_core::inbox::reply(&st.core, &a, id, &b.text, b.reply_to).await {
        Err(CoreError::Invalid(f)) if f.iter().any(|e| e.field == "reply_to") => {
            // Another conversation's message is, from here, a message that does not exist.
            return Ok(self::body(
                StatusCode::NOT_FOUND,
                "not_found",
                "`reply_to` is not a message of this conversation; use the `id` of one of its messages (GET /api/v1/conversations/{id}/messages)",
                vec![FieldErrorOut {
                    field: "reply_to".into(),
                    code: "reply_to_foreign".into(),
                    limit: None,
                }],
            ));
        }
        r => r?,
    };
    Ok((StatusCode::CREATED, Json(message_out(m))).into_response())
}

/// The conversation's side in the CRM.
#[derive(Serialize, ToSchema)]
pub struct CrmOut {
    /// The deal in amoCRM (`None` until it is created).
    pub deal_id: Option<i64>,
    pub deal_url: Option<String>,
    pub contact_id: Option<i64>,
    /// amoCRM's chat id when the Chats API is used.
    pub chat_id: Option<String>,
    /// The routing rule that fired (`None`: the settings' default applied).
    pub rule_id: Option<String>,
    pub rule_name: Option<String>,
    /// Items not in amoCRM yet, and how many of them amoCRM refused.
    pub pending: i64,
    pub failed: i64,
    pub last_error: Option<String>,
}

/// Where the conversation is in amoCRM and which routing rule placed it.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/crm", tag = "conversations",
    params(("id" = Uuid, Path, description = "conversation id")),
    responses((status = 200, body = CrmOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn conversation_crm(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CrmOut>, ApiError> {
    chatter_core::inbox::get_conversation(&st.core, &a, id).await?;
    let l = chatter_core::crm::sync::link_of(&st.core, &a, id)
        .await?
        .unwrap_or_default();
    Ok(Json(CrmOut {
        deal_id: l.deal_id,
        deal_url: l.deal_url,
        contact_id: l.contact_id,
        chat_id: l.chat_ref,
        rule_id: l.rule_id,
        rule_name: l.rule_name,
        pending: l.pending,
        failed: l.failed,
        last_error: l.last_error,
    }))
}

// ---- routing rules ----

/// A routing rule (MISSION R3.4), in the order the rules are tried.
#[derive(Serialize, ToSchema)]
pub struct RuleOut {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub conditions: ConditionsOut,
    pub actions: ActionsOut,
}

/// Every part must hold; an empty list means "any".
#[derive(Serialize, ToSchema)]
pub struct ConditionsOut {
    /// Source ids the message may come from.
    pub sources: Vec<Uuid>,
    /// Words or phrases (any one is enough), matched by Russian and English word stems.
    pub keywords: Vec<String>,
    /// Searched case-insensitively, ё = е; with keywords, either may match.
    pub regex: Option<String>,
    /// Words or phrases that stop the rule.
    pub exclude: Vec<String>,
    /// When the message may arrive, in the company's time zone.
    pub windows: Vec<TimeWindowOut>,
}

#[derive(Serialize, ToSchema)]
pub struct TimeWindowOut {
    /// mon | tue | wed | thu | fri | sat | sun
    pub weekdays: Vec<String>,
    /// `HH:MM`, inclusive.
    #[schema(example = "09:00")]
    pub from: String,
    /// `HH:MM`, exclusive; before `from` = past midnight; equal to `from` = the whole day.
    #[schema(example = "18:00")]
    pub to: String,
}

/// What happens to the conversation; `null` and empty leave it to the source's settings.
#[derive(Serialize, ToSchema)]
pub struct ActionsOut {
    pub pipeline_id: Option<i64>,
    /// The pipeline's name in the synced amoCRM account.
    pub pipeline_name: Option<String>,
    /// The stage (amoCRM status id); `null` with a pipeline = its first stage.
    pub status_id: Option<i64>,
    pub status_name: Option<String>,
    pub responsible: Option<ResponsibleOut>,
    pub tags: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ResponsibleOut {
    /// user | round_robin | first_to_answer
    pub kind: String,
    /// amoCRM user ids: the user, or those taking turns.
    pub user_ids: Vec<i64>,
    pub user_names: Vec<String>,
}

/// Which rule fired, what to do, and why.
#[derive(Serialize, ToSchema)]
pub struct DecisionOut {
    /// The rule that fired; `null` = none did and the default (the source's settings) applies.
    pub rule_id: Option<String>,
    pub rule_name: Option<String>,
    pub actions: ActionsOut,
    /// One step per rule looked at, in order, ending with the match or the default.
    pub explanation: Vec<StepOut>,
}

#[derive(Serialize, ToSchema)]
pub struct StepOut {
    /// skipped | matched | default
    pub step: String,
    /// The rule's name (absent for the default).
    pub rule: Option<String>,
    /// Why a skipped rule did not fire: the first condition that failed.
    pub reason: Option<String>,
    /// Why the matched rule fired: every condition that held.
    pub why: Vec<String>,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct DryRunIn {
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub source_id: Uuid,
    #[schema(example = "Сколько стоит доставку в Казань?")]
    pub text: String,
    /// Local date and time in the company's time zone, `YYYY-MM-DDTHH:MM` (or with `:SS`);
    /// absent or empty = now.
    #[schema(
        example = "2025-03-08T23:30",
        pattern = r"^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?)?$"
    )]
    pub at: Option<String>,
}

fn actions_out(
    names: &crate::ui::rules::Names,
    a: &chatter_domain::routing::Actions,
) -> ActionsOut {
    use chatter_domain::routing::Responsible;
    ActionsOut {
        pipeline_id: a.pipeline_id,
        pipeline_name: a.pipeline_id.map(|p| names.pipeline(p)),
        status_id: a.status_id,
        status_name: a.status_id.map(|s| names.stage(s)),
        responsible: a.responsible.as_ref().map(|r| {
            let (kind, ids) = match r {
                Responsible::User(u) => ("user", vec![*u]),
                Responsible::RoundRobin(us) => ("round_robin", us.clone()),
                Responsible::FirstToAnswer => ("first_to_answer", vec![]),
            };
            ResponsibleOut {
                kind: kind.into(),
                user_names: ids.iter().map(|u| names.user(*u)).collect(),
                user_ids: ids,
            }
        }),
        tags: a.tags.clone(),
    }
}

/// The company's routing rules, in the order they are tried.
#[utoipa::path(get, path = "/api/v1/routing-rules", tag = "routing",
    responses((status = 200, body = Vec<RuleOut>), (status = 401, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn routing_rules(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
) -> Result<Json<Vec<RuleOut>>, ApiError> {
    let rules = chatter_core::crm::rules::list(&st.core, &a).await?;
    let names = crate::ui::rules::Names::load(&st, &a).await?;
    Ok(Json(
        rules
            .into_iter()
            .map(|r| {
                let c = r.conditions;
                RuleOut {
                    actions: actions_out(&names, &r.actions),
                    id: r.id,
                    name: r.name,
                    enabled: r.enabled,
                    conditions: ConditionsOut {
                        sources: c.sources,
                        keywords: c.keywords,
                        regex: c.regex,
                        exclude: c.exclude,
                        windows: c
                            .windows
                            .into_iter()
                            .map(|w| TimeWindowOut {
                                weekdays: w
                                    .weekdays
                                    .iter()
                                    .map(|d| d.to_string().to_lowercase())
                                    .collect(),
                                from: w.from.format("%H:%M").to_string(),
                                to: w.to.format("%H:%M").to_string(),
                            })
                            .collect(),
                    },
                }
            })
            .collect(),
    ))
}

/// Which rule would fire for a message from a source at a time, and why. Changes nothing.
/// Actions left to the default are `null`: the source's CRM settings fill them in.
#[utoipa::path(post, path = "/api/v1/routing-rules/dry-run", tag = "routing", request_body = DryRunIn,
    responses((status = 200, body = DecisionOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such source in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "the body is not JSON or does not match the schema, or `at` is not a local time that exists")))]
pub async fn routing_dry_run(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiJson(b): ApiJson<DryRunIn>,
) -> Result<Json<DecisionOut>, ApiError> {
    use chatter_domain::routing::Step;
    let d = chatter_core::crm::rules::dry_run(
        &st.core,
        &a,
        b.source_id,
        &b.text,
        b.at.as_deref().unwrap_or(""),
    )
    .await
    .map_err(|e| match e {
        // A source id that is not this company's is an object not found, as everywhere else.
        CoreError::Invalid(f) if f.iter().any(|e| e.field == "source") => CoreError::NotFound,
        e => e,
    })?;
    let names = crate::ui::rules::Names::load(&st, &a).await?;
    let rule_name = d.explanation.iter().find_map(|s| match s {
        Step::Matched { rule, .. } => Some(rule.clone()),
        _ => None,
    });
    Ok(Json(DecisionOut {
        rule_id: d.rule_id.clone(),
        rule_name,
        actions: actions_out(&names, &d.actions),
        explanation: d
            .explanation
            .into_iter()
            .map(|s| match s {
                Step::Skipped { rule, reason } => StepOut {
                    step: "skipped".into(),
                    rule: Some(rule),
                    reason: Some(reason),
                    why: vec![],
                },
                Step::Matched { rule, why } => StepOut {
                    step: "matched".into(),
                    rule: Some(rule),
                    reason: None,
                    why,
                },
                Step::Default => StepOut {
                    step: "default".into(),
                    rule: None,
                    reason: None,
                    why: vec![],
                },
            })
            .collect(),
    }))
}

// ---- the API source (kind 6): documented here, served by `hooks::api_message` ----

/// A customer's message sent by your system to an API source.
#[derive(serde::Deserialize, ToSchema)]
#[schema(example = json!({
    "message_id": "42",
    "chat_id": "client-7",
    "sender": {"id": "client-7", "name": "Иван Петров", "phone": "+79990001122", "email": "ivan@example.ru"},
    "text": "Здравствуйте! Есть ли доставка в Казань?",
    "sent_at": 1767225600000_i64,
    "utm": {"source": "yandex", "medium": "cpc", "campaign": "spring"}
}))]
pub struct ApiSourceMessageIn {
    /// Your id of the message, unique per source: a repeat with the same id stores nothing new.
    #[schema(min_length = 1, max_length = 200)]
    pub message_id: String,
    /// Your id of the conversation; answers are addressed to it.
    #[schema(min_length = 1, max_length = 200)]
    pub chat_id: String,
    pub sender: ApiSourceSenderIn,
    /// The message (up to 20,000 characters, not only spaces).
    #[schema(min_length = 1, max_length = 20000, pattern = r"\S")]
    pub text: String,
    /// When it was written, Unix milliseconds (default: when received).
    #[schema(minimum = 1)]
    pub sent_at: Option<i64>,
    /// Advertising tags, kept for the CRM.
    pub utm: Option<ApiSourceUtmIn>,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ApiSourceSenderIn {
    /// Your stable id of the person: one contact per id.
    #[schema(min_length = 1, max_length = 200)]
    pub id: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    #[schema(max_length = 50)]
    pub phone: Option<String>,
    #[schema(max_length = 200)]
    pub email: Option<String>,
    #[schema(max_length = 200)]
    pub username: Option<String>,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ApiSourceUtmIn {
    #[schema(max_length = 500)]
    pub source: Option<String>,
    #[schema(max_length = 500)]
    pub medium: Option<String>,
    #[schema(max_length = 500)]
    pub campaign: Option<String>,
    #[schema(max_length = 500)]
    pub content: Option<String>,
    #[schema(max_length = 500)]
    pub term: Option<String>,
}

/// What Chatter stored: the same answer for every repeat of the message.
#[derive(Serialize, ToSchema)]
pub struct ApiSourceReceivedOut {
    /// Chatter's id of the message.
    pub message_id: Uuid,
    pub conversation_id: Uuid,
}

/// An outgoing webhook Chatter posts to an API source's URL, signed like inbound calls
/// (`X-Chatter-Timestamp`, `X-Chatter-Signature`; also `X-Chatter-Event` and `X-Chatter-Delivery`).
/// `type` is `message.created` (`data.message.direction` `in` or `out` — a manager's answer to
/// deliver to `data.chat_id`), `message.status_changed`, `conversation.status_changed`
/// (`data.status` `open` | `closed`) or `conversation.assigned` (`data.assignee`). Answer 2xx;
/// anything else is retried with backoff (15 attempts), the same `id` each time.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": "01950f2e-8c4b-7d1e-9a51-3f0c2b7e4d10",
    "type": "message.created",
    "created_at": 1767225660000_i64,
    "data": {
        "source_id": "01950f2e-0000-7000-8000-000000000001",
        "conversation_id": "01950f2e-0000-7000-8000-000000000002",
        "chat_id": "client-7",
        "message": {"id": "01950f2e-0000-7000-8000-000000000003", "direction": "out",
                    "text": "Да, доставляем за 2 дня.", "status": "pending", "sender_name": "Анна"}
    }
}))]
pub struct WebhookEventOut {
    /// The delivery's id (the same on retries and replays: dedupe by it).
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix milliseconds.
    pub created_at: i64,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}
