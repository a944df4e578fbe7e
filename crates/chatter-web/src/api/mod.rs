//! The REST API under `/api/v1`, authenticated with company API keys
//! (`Authorization: Bearer chk_…`). Errors are `{"error":{"code","message","fields"}}`.
//! The OpenAPI document is at `/api/openapi.json`, Swagger UI at `/api/docs`. Path, query and
//! body refusals are JSON too (see `extract`), and the document declares every status a route
//! can answer, with schema constraints matching what the server checks.
//!
//! This module owns the route table and the OpenAPI document; the handlers live by resource:
//! `company` (the key's company, members, sources), `sources` (connecting a source), `conversations` (conversations, messages,
//! replies, the CRM side), `contacts` (people: list, card, change, merge), `attachments` (a file sent as a reply), `labels` (labels, and changing conversations: one or in bulk), `routing` (routing rules and their dry run), `dead_letters`,
//! `exports`, `reports`, `notes` (internal notes and notifications), `hours` (working hours), `scheduled` (replies sent later), `templates` (reply templates), `auto_replies` (auto-reply rules and their dry run), `billing` (the plan and this period's use); `page` the cursor pagination of every list; `api_source` documents the API source's inbound and outbound bodies.
//! `error` is the problem document every refusal answers with, `actor` the bearer-key check.

mod actor;
mod api_source;
mod attachments;
mod auto_replies;
mod billing;
mod company;
pub mod contacts;
mod conversations;
mod crm;
pub mod dead_letters;
mod error;
mod exports;
mod extract;
mod hours;
mod labels;
pub mod notes;
mod page;
pub mod reports;
mod routing;
pub mod scheduled;
mod search;
mod sms_price;
mod source_login;
mod sources;
mod templates;

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
use axum::routing::{get, patch, post};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Chatter API", version = "1", description = "Messengers to CRM. Authenticate with a company API key: `Authorization: Bearer chk_…` (Settings → API keys, or `chatter admin api-key create --company <slug>`)."),
    paths(company::me, company::members, company::sources, sources::create_source, conversations::conversations, conversations::conversation_messages, conversations::send_message, conversations::conversation_crm, contacts::list_contacts, contacts::get_contact, contacts::patch_contact, contacts::merge_contact, search::search_messages, routing::routing_rules, routing::routing_dry_run, crate::hooks::api_message, dead_letters::list_dead_letters, dead_letters::retry_dead_letter, exports::start_export, exports::get_export, exports::download_export, exports::set_webhook_url, reports::dashboard, reports::report, reports::report_csv, hours::get_hours, hours::put_hours, hours::delete_hours, notes::list_notes, notes::add_note, notes::list_notifications, notes::read_notifications, labels::list_labels, labels::create_label, labels::update_label, labels::delete_label, labels::patch_conversation, labels::bulk, attachments::upload_attachment, attachments::download_attachment, scheduled::list_conversation_scheduled, scheduled::schedule, scheduled::list_scheduled, scheduled::cancel_scheduled, templates::list_templates, templates::get_template, templates::create_template, templates::put_template, templates::delete_template, templates::render_template, auto_replies::list_auto_replies, auto_replies::create_auto_reply, auto_replies::get_auto_reply, auto_replies::put_auto_reply, auto_replies::delete_auto_reply, auto_replies::dry_run_auto_reply, auto_replies::dry_run_body, crm::get_responsible_sync, crm::put_responsible_sync, crm::get_import, crm::post_import, sms_price::put_sms_price, source_login::get_login, source_login::post_login, source_login::delete_login, billing::get_plan, billing::get_usage),
    components(schemas(contacts::ContactPage, contacts::ContactsOut, contacts::ContactSummaryOut, contacts::ContactOutFull, contacts::IdentityOut, contacts::ContactConversationOut, contacts::DealOut, contacts::ContactCrmOut, contacts::ContactPatchIn, contacts::MergeIn, Me, CompanyOut, MemberOut, MemberPage, MembersOut, SourcePage, SourcesOut, ConversationPage, ConversationsOut, MessagePage, MessagesOut, RulePage, RulesOut, dead_letters::DeadLetterPage, dead_letters::DeadLettersOut, ApiErrorBody, ApiErrorInner, FieldErrorOut, SourceOut, SourceIn, ConversationOut, ContactOut, search::SearchOut, search::SearchHitOut, search::HighlightOut, MessageOut, AttachmentOut, SendIn, CrmOut, RuleOut, ConditionsOut, TimeWindowOut, ActionsOut, ResponsibleOut, DecisionOut, StepOut, DryRunIn, ApiSourceMessageIn, ApiSourceSenderIn, ApiSourceUtmIn, ApiSourceReceivedOut, WebhookEventOut, dead_letters::DeadLetterOut, dead_letters::RetriedOut, exports::ExportOut, exports::WebhookUrlIn, exports::WebhookUrlOut, reports::DashboardOut, reports::MedianOut, reports::GroupOut, reports::SeriesOut, reports::ReportOut, reports::ReportLineOut, reports::ReportDayOut, reports::TimesOut, hours::HoursOut, hours::HoursIo, hours::WeekIo, hours::DayIo, hours::SpanIo, hours::NowOut, notes::NoteOut, notes::NotePage, notes::NotesOut, notes::NoteIn, notes::NotificationOut, notes::NotificationPage, notes::NotificationsOut, notes::ReadIn, notes::ReadOut, labels::LabelOut, labels::LabelIn, labels::LabelPatch, labels::LabelColor, labels::StatusIn, labels::ConversationPatch, labels::BulkActionIn, labels::BulkIn, labels::BulkOut, attachments::AttachmentIn, scheduled::ScheduledOut, scheduled::ScheduledIn, scheduled::ScheduledPage, scheduled::ScheduledListOut, templates::TemplateOut, templates::TemplateFileOut, templates::TemplateIn, templates::TemplateFileIn, templates::RenderedOut, auto_replies::AutoReplyIn, auto_replies::AutoReplyOut, auto_replies::TriggerIo, auto_replies::ConditionsIo, auto_replies::ActionIo, auto_replies::AutoReplyDryRunIn, auto_replies::AutoReplyDryRunOut, auto_replies::DryRunHitOut, crm::ResponsibleSyncIo, crm::LeadIo, crm::ImportPreviewOut, crm::ImportOut, crm::ImportStateOut, crm::ImportIn, auto_replies::WaTemplateIo, sms_price::SmsPriceIn, sms_price::SmsPriceOut, source_login::LoginStepIn, source_login::LoginOut, billing::PlanOut, billing::SubscriptionOut, billing::PlanInfoOut, billing::SourceUseOut, billing::UsageOut)),
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
        .route(
            "/api/v1/crm/responsible-sync",
            get(crm::get_responsible_sync).put(crm::put_responsible_sync),
        )
        .route(
            "/api/v1/crm/import",
            get(crm::get_import).post(crm::post_import),
        )
        .route("/api/v1/dashboard", get(reports::dashboard))
        .route("/api/v1/billing/plan", get(billing::get_plan))
        .route("/api/v1/billing/usage", get(billing::get_usage))
        .route("/api/v1/reports", get(reports::report))
        .route("/api/v1/reports/csv", get(reports::report_csv))
        .route("/api/v1/members", get(members))
        .route("/api/v1/sources", get(sources).post(create_source))
        .route(
            "/api/v1/sources/{id}/login",
            get(source_login::get_login)
                .post(source_login::post_login)
                .delete(source_login::delete_login),
        )
        .route(
            "/api/v1/sources/{id}/sms-price",
            axum::routing::put(sms_price::put_sms_price),
        )
        .route("/api/v1/conversations", get(conversations))
        .route("/api/v1/conversations/bulk", post(labels::bulk))
        .route(
            "/api/v1/conversations/{id}",
            patch(labels::patch_conversation),
        )
        .route(
            "/api/v1/labels",
            get(labels::list_labels).post(labels::create_label),
        )
        .route(
            "/api/v1/labels/{id}",
            patch(labels::update_label).delete(labels::delete_label),
        )
        .route("/api/v1/conversations/{id}/crm", get(conversation_crm))
        .route("/api/v1/search", get(search::search_messages))
        .route("/api/v1/contacts", get(contacts::list_contacts))
        .route(
            "/api/v1/contacts/{id}",
            get(contacts::get_contact).patch(contacts::patch_contact),
        )
        .route("/api/v1/contacts/{id}/merge", post(contacts::merge_contact))
        .route(
            "/api/v1/conversations/{id}/messages",
            get(conversation_messages).post(send_message),
        )
        .route(
            "/api/v1/auto-replies",
            get(auto_replies::list_auto_replies).post(auto_replies::create_auto_reply),
        )
        .route(
            "/api/v1/auto-replies/dry-run",
            post(auto_replies::dry_run_body),
        )
        .route(
            "/api/v1/auto-replies/{id}",
            get(auto_replies::get_auto_reply)
                .put(auto_replies::put_auto_reply)
                .delete(auto_replies::delete_auto_reply),
        )
        .route(
            "/api/v1/auto-replies/{id}/dry-run",
            post(auto_replies::dry_run_auto_reply),
        )
        .route(
            "/api/v1/working-hours",
            get(hours::get_hours)
                .put(hours::put_hours)
                .delete(hours::delete_hours),
        )
        .route(
            "/api/v1/conversations/{id}/notes",
            get(notes::list_notes).post(notes::add_note),
        )
        .route(
            "/api/v1/conversations/{id}/scheduled",
            get(scheduled::list_conversation_scheduled).post(scheduled::schedule),
        )
        .route("/api/v1/scheduled", get(scheduled::list_scheduled))
        .route(
            "/api/v1/scheduled/{id}",
            axum::routing::delete(scheduled::cancel_scheduled),
        )
        .route("/api/v1/notifications", get(notes::list_notifications))
        .route(
            "/api/v1/notifications/read",
            post(notes::read_notifications),
        )
        .route(
            "/api/v1/messages/{id}/attachments/{index}",
            get(attachments::download_attachment),
        )
        .route(
            "/api/v1/templates",
            get(templates::list_templates).post(templates::create_template),
        )
        .route(
            "/api/v1/templates/{id}",
            get(templates::get_template)
                .put(templates::put_template)
                .delete(templates::delete_template),
        )
        .route(
            "/api/v1/conversations/{id}/templates/{template_id}/render",
            get(templates::render_template),
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
