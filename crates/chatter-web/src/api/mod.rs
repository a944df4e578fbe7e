//! The REST API under `/api/v1`, authenticated with company API keys
//! (`Authorization: Bearer chk_…`). Errors are `{"error":{"code","message","fields"}}`.
//! The OpenAPI document is at `/api/openapi.json`, Swagger UI at `/api/docs`. Path, query and
//! body refusals are JSON too (see `extract`), and the document declares every status a route
//! can answer, with schema constraints matching what the server checks.
//!
//! This module owns the route table and the OpenAPI document; the handlers live by resource:
//! `company` (the key's company, members, sources), `sources` (connecting a source), `conversations` (conversations, messages,
//! replies, the CRM side), `attachments` (a file sent as a reply), `routing` (routing rules and their dry run), `dead_letters`,
//! `exports`, `reports`; `page` the cursor pagination of every list; `api_source` documents the API source's inbound and outbound bodies.
//! `error` is the problem document every refusal answers with, `actor` the bearer-key check.

mod actor;
mod api_source;
mod attachments;
mod company;
mod conversations;
pub mod dead_letters;
mod error;
mod exports;
mod extract;
mod page;
pub mod reports;
mod routing;
mod search;
mod sources;

pub use actor::ApiActor;
pub use api_source::{
    ApiSourceMessageIn, ApiSourceReceivedOut, ApiSourceSenderIn, ApiSourceUtmIn, WebhookEventOut,
};
pub use company::{
    me, members, sources, CompanyOut, Me, MemberOut, MemberPage, MembersOut, SourceOut, SourcePage,
    SourcesOut,
};
pub use conversations::{
    conversation_crm, conversation_messages, conversations, send_message, AttachmentOut,
    ContactOut, ConversationOut, ConversationPage, ConversationQuery, ConversationsOut, CrmOut,
    MessageOut, MessagePage, MessagesOut, SendIn,
};
pub(crate) use error::body;
pub use error::{ApiError, ApiErrorBody, ApiErrorInner, FieldErrorOut, PROBLEM_JSON};
pub use extract::{ApiJson, ApiPath, ApiQuery, ApiRejection};
pub use routing::{
    routing_dry_run, routing_rules, ActionsOut, ConditionsOut, DecisionOut, DryRunIn,
    ResponsibleOut, RuleOut, RulePage, RulesOut, StepOut, TimeWindowOut,
};
use sources::ConnectableKinds;
pub use sources::{create_source, SourceIn};

use crate::AppState;
use axum::routing::{get, post};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Chatter API", version = "1", description = "Messengers to CRM. Authenticate with a company API key: `Authorization: Bearer chk_…` (Settings → API keys, or `chatter admin api-key create --company <slug>`)."),
    paths(company::me, company::members, company::sources, sources::create_source, conversations::conversations, conversations::conversation_messages, conversations::send_message, attachments::upload_attachment, attachments::download_attachment, conversations::conversation_crm, search::search_messages, routing::routing_rules, routing::routing_dry_run, crate::hooks::api_message, dead_letters::list_dead_letters, dead_letters::retry_dead_letter, exports::start_export, exports::get_export, exports::download_export, exports::set_webhook_url, reports::dashboard, reports::report, reports::report_csv),
    components(schemas(Me, CompanyOut, MemberOut, MemberPage, MembersOut, SourcePage, SourcesOut, ConversationPage, ConversationsOut, MessagePage, MessagesOut, RulePage, RulesOut, dead_letters::DeadLetterPage, dead_letters::DeadLettersOut, ApiErrorBody, ApiErrorInner, FieldErrorOut, SourceOut, SourceIn, ConversationOut, ContactOut, search::SearchOut, search::SearchHitOut, search::HighlightOut, MessageOut, AttachmentOut, SendIn, attachments::AttachmentIn, CrmOut, RuleOut, ConditionsOut, TimeWindowOut, ActionsOut, ResponsibleOut, DecisionOut, StepOut, DryRunIn, ApiSourceMessageIn, ApiSourceSenderIn, ApiSourceUtmIn, ApiSourceReceivedOut, WebhookEventOut, dead_letters::DeadLetterOut, dead_letters::RetriedOut, exports::ExportOut, exports::WebhookUrlIn, exports::WebhookUrlOut, reports::DashboardOut, reports::MedianOut, reports::GroupOut, reports::SeriesOut, reports::ReportOut, reports::ReportLineOut, reports::ReportDayOut, reports::TimesOut)),
    modifiers(&BearerAuth, &ConnectableKinds),
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

/// `POST /api/v1/conversations/{id}/attachments`, which takes bodies up to
/// `upload::upload_limit` (the kind's own limit is checked while the file streams).
pub fn upload_routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/conversations/{id}/attachments",
        post(attachments::upload_attachment).layer(axum::extract::DefaultBodyLimit::disable()),
    )
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/dashboard", get(reports::dashboard))
        .route("/api/v1/reports", get(reports::report))
        .route("/api/v1/reports/csv", get(reports::report_csv))
        .route("/api/v1/members", get(members))
        .route("/api/v1/sources", get(sources).post(create_source))
        .route("/api/v1/conversations", get(conversations))
        .route("/api/v1/conversations/{id}/crm", get(conversation_crm))
        .route("/api/v1/search", get(search::search_messages))
        .route(
            "/api/v1/conversations/{id}/messages",
            get(conversation_messages).post(send_message),
        )
        .route(
            "/api/v1/messages/{id}/attachments/{index}",
            get(attachments::download_attachment),
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
