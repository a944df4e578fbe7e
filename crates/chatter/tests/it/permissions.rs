//! The route walk: every UI and API route, as every kind of visitor (anonymous, each role of
//! one company, the owner of another company), against `ROUTES`, the one table that says who
//! may use what. Refusals must change nothing; so must every form posted without its CSRF
//! token. A last test keeps the table complete by reading the routes the web crate declares.

use crate::team::PW;
use chatter_core::accounts::api_keys;
use chatter_core::accounts::team;
use chatter_core::{accounts, Actor, ReqMeta};
use chatter_domain::{ConversationId, MessageId, Role, SourceId};
use chatter_store::entity::{
    api_key, audit, backup, company, invite, job, membership, session, user,
};
use chatter_store::jobs::{self, NewJob};
use chatter_testkit::{csrf_of, TestApp};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder,
};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}
use Method::{Delete, Get, Patch, Post, Put};

/// Who may use a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in person (company or not).
    Signed,
    /// A member of the current company with at least this role.
    Member(Role),
    /// A company API key (`Authorization: Bearer`); a session cookie does not count.
    ApiKey,
    /// An instance operator (`chatter admin operator add`): everyone else gets 404.
    Operator,
}
use Access::{ApiKey, Member, Operator, Public, Signed};

const READ: Access = Member(Role::Viewer);
const MANAGE: Access = Member(Role::Admin);
const AUDIT: Access = Member(Role::Admin);
const OWN: Access = Member(Role::Owner);
const REPLY: Access = Member(Role::Manager);

struct Route {
    method: Method,
    /// `{name}` placeholders are filled from the fixture (see `Fixture::fill`).
    path: &'static str,
    access: Access,
    /// Harmless form fields (the walk adds `_csrf`).
    fields: &'static [(&'static str, &'static str)],
    /// What a visitor who may use the route gets.
    ok: &'static [u16],
}

const fn r(
    method: Method,
    path: &'static str,
    access: Access,
    fields: &'static [(&'static str, &'static str)],
    ok: &'static [u16],
) -> Route {
    Route {
        method,
        path,
        access,
        fields,
        ok,
    }
}

/// Every route of the product. Adding a route is adding a line here.
#[rustfmt::skip]
const ROUTES: &[Route] = &[
    r(Get,  "/", Public, &[], &[303]),
    r(Get,  "/static/app.css", Public, &[], &[200]),
    r(Get,  "/static/app.js", Public, &[], &[200]),
    r(Get,  "/static/favicon.svg", Public, &[], &[200]),
    r(Get,  "/static/notify.wav", Public, &[], &[200]),
    r(Get,  "/favicon.ico", Public, &[], &[200]),
    r(Get,  "/lang/{lang}", Public, &[], &[303]),
    r(Get,  "/sign-up", Public, &[], &[200, 303]),
    r(Post, "/sign-up", Public, &[("company_name", ""), ("name", ""), ("email", ""), ("password", "")], &[422]),
    r(Get,  "/sign-up/confirm/{reset}", Public, &[], &[410]),
    r(Post, "/sign-up/confirm/{reset}", Public, &[], &[410]),
    r(Get,  "/sign-in", Public, &[], &[200, 303]),
    r(Post, "/sign-in", Public, &[("email", "nobody@walk.test"), ("password", "wrong password")], &[401, 429]),
    r(Get,  "/sign-in/2fa", Public, &[], &[303]),
    r(Post, "/sign-in/2fa", Public, &[("code", "000000")], &[303, 401]),
    r(Post, "/sign-in/amocrm", Public, &[], &[303]),
    r(Get,  "/sign-up/amocrm", Public, &[], &[410]),
    r(Post, "/sign-up/amocrm", Public, &[("company_name", "Из обхода"), ("name", "Кто-то"), ("email", "walk@amo.test"), ("password", PW)], &[410]),
    r(Post, "/auth/telegram", Public, &[("id", "1"), ("hash", "00")], &[503]),
    r(Post, "/sign-out", Public, &[], &[303]),
    r(Post, "/sign-out-everywhere", Signed, &[], &[303]),
    r(Get,  "/forgot-password", Public, &[], &[200]),
    r(Post, "/forgot-password", Public, &[("email", "nobody@walk.test")], &[200]),
    r(Get,  "/reset-password/{reset}", Public, &[], &[410]),
    r(Post, "/reset-password/{reset}", Public, &[("password", "a long new password")], &[410]),
    r(Get,  "/invites/{used_invite}", Public, &[], &[410]),
    r(Post, "/invites/{used_invite}", Public, &[("name", "Кто-то"), ("password", PW)], &[410]),
    r(Get,  "/app", READ, &[], &[200]),
    r(Get,  "/app/inbox", READ, &[], &[200]),
    r(Get,  "/app/sources", READ, &[], &[200]),
    r(Get,  "/app/crm", READ, &[], &[200]),
    r(Post, "/app/crm/connect", MANAGE, &[], &[303]),
    r(Post, "/app/crm/sync", MANAGE, &[], &[404]),
    r(Post, "/app/crm/disconnect", MANAGE, &[], &[404]),
    r(Post, "/app/crm/import", MANAGE, &[("days", "14")], &[404]),
    r(Get,  "/crm/amocrm/callback", MANAGE, &[], &[422]),
    r(Get,  "/app/crm/settings", READ, &[], &[303]),
    r(Post, "/app/crm/settings", MANAGE, &[("pipeline_id", "")], &[404]),
    r(Post, "/app/crm/responsible", MANAGE, &[("lead", "off")], &[404]),
    r(Get,  "/app/crm/health", READ, &[], &[303]),
    r(Post, "/app/crm/health/retry", MANAGE, &[("id", "0")], &[404]),
    r(Post, "/app/crm/health/retry-all", MANAGE, &[], &[303]),
    r(Post, "/app/crm/chats/reconnect", MANAGE, &[], &[303]),
    r(Get,  "/app/crm/rules", READ, &[], &[200]),
    r(Post, "/app/crm/rules", MANAGE, &[("name", "")], &[422]),
    r(Get,  "/app/crm/rules/new", MANAGE, &[], &[200]),
    r(Post, "/app/crm/rules/dry-run", READ, &[("text", "доставка"), ("source", "")], &[422]),
    r(Get,  "/app/crm/rules/{rule}", MANAGE, &[], &[200]),
    r(Post, "/app/crm/rules/{rule}", MANAGE, &[("name", "Обход"), ("enabled", "1")], &[303]),
    r(Post, "/app/crm/rules/{rule}/delete", MANAGE, &[], &[303]),
    r(Post, "/app/crm/rules/{rule}/move", MANAGE, &[("dir", "down")], &[303]),
    r(Post, "/app/crm/rules/{rule}/enable", MANAGE, &[], &[303]),
    r(Post, "/app/crm/rules/{rule}/disable", MANAGE, &[], &[303]),
    r(Get,  "/app/automation", READ, &[], &[200]),
    r(Get,  "/app/automation/hours", READ, &[], &[200]),
    r(Post, "/app/automation/hours", MANAGE, &[("zone", "")], &[422]),
    // Without `?source=` there is no source's own hours to remove.
    r(Post, "/app/automation/hours/reset", MANAGE, &[], &[404]),
    // Auto-replies (issue 14): `{no_label}` is no rule of the company.
    r(Get,  "/app/automation/replies", READ, &[], &[200]),
    r(Post, "/app/automation/replies", MANAGE, &[("name", ""), ("trigger", "first_message")], &[422]),
    r(Get,  "/app/automation/replies/new", MANAGE, &[], &[200]),
    r(Get,  "/app/automation/replies/{no_label}", READ, &[], &[404]),
    r(Post, "/app/automation/replies/{no_label}", MANAGE, &[("name", "Обход")], &[404]),
    r(Post, "/app/automation/replies/{no_label}/toggle", MANAGE, &[("on", "1")], &[404]),
    r(Post, "/app/automation/replies/{no_label}/move", MANAGE, &[("dir", "up")], &[404]),
    r(Post, "/app/automation/replies/{no_label}/delete", MANAGE, &[], &[404]),
    r(Get,  "/app/billing", READ, &[], &[200]),
    r(Get,  "/app/companies/new", Signed, &[], &[200]),
    r(Post, "/app/companies", Signed, &[("company_name", "")], &[422]),
    r(Post, "/app/companies/{company}/switch", READ, &[], &[303]),
    r(Get,  "/app/team", READ, &[], &[200]),
    r(Post, "/app/team/invite", MANAGE, &[("email", "walk@alpha.test"), ("role", "viewer")], &[200]),
    r(Post, "/app/team/invites/{invite}/revoke", MANAGE, &[], &[303]),
    r(Post, "/app/team/members/{member}/role", MANAGE, &[("role", "viewer")], &[303]),
    r(Post, "/app/team/members/{member}/remove", MANAGE, &[], &[303]),
    r(Get,  "/app/profile", Signed, &[], &[200]),
    r(Post, "/app/profile", Signed, &[("name", "Проверка"), ("locale", "ru")], &[303]),
    r(Post, "/app/profile/notifications", READ, &[("digest", "1")], &[303]),
    r(Get,  "/app/notifications", READ, &[], &[200]),
    r(Post, "/app/notifications/read", READ, &[], &[303]),
    r(Post, "/app/profile/password", Signed, &[("current_password", "wrong password"), ("new_password", "another long one")], &[422]),
    r(Post, "/app/profile/2fa/start", Signed, &[], &[303]),
    r(Post, "/app/profile/2fa/enable", Signed, &[("code", "000000")], &[422]),
    r(Post, "/app/profile/2fa/disable", Signed, &[("password", "wrong password")], &[422]),
    r(Post, "/app/profile/amocrm/link", Signed, &[], &[303]),
    r(Post, "/app/profile/amocrm/unlink", Signed, &[("subject", "1:1")], &[404]),
    r(Get,  "/app/audit", AUDIT, &[], &[200]),
    r(Get,  "/app/audit.csv", AUDIT, &[], &[200]),
    r(Get,  "/app/reports", MANAGE, &[], &[200]),
    r(Get,  "/app/reports.csv", MANAGE, &[], &[200]),
    r(Get,  "/app/settings", MANAGE, &[], &[200]),
    r(Post, "/app/settings/api-keys", MANAGE, &[("name", "walk")], &[200]),
    r(Post, "/app/settings/api-keys/{key}/revoke", MANAGE, &[], &[303]),
    r(Post, "/app/settings/exports", OWN, &[], &[303]),
    r(Get,  "/app/settings/exports/{export}/download", OWN, &[], &[404]),
    // Labels (issue 11): `{no_label}` is no label of the company.
    r(Get,  "/app/settings/labels", MANAGE, &[], &[200]),
    r(Post, "/app/settings/labels", MANAGE, &[("name", ""), ("color", "red")], &[422]),
    r(Post, "/app/settings/labels/{no_label}", MANAGE, &[("name", "Обход"), ("color", "red")], &[404]),
    r(Post, "/app/settings/labels/{no_label}/delete", MANAGE, &[], &[404]),
    r(Post, "/app/inbox/{conv}/labels", REPLY, &[("label", "00000000-0000-0000-0000-000000000000"), ("on", "1")], &[422]),
    // Nothing ticked: back to the list, nothing changed.
    r(Post, "/app/inbox/bulk", REPLY, &[("action", "close")], &[303]),
    // Reply templates (issue 14): `{no_template}` is no template of the company; anyone may keep
    // templates of their own, so an empty title is refused to every member alike.
    r(Get,  "/app/automation/templates", READ, &[], &[200]),
    r(Get,  "/app/automation/templates/new", READ, &[], &[200]),
    r(Post, "/app/automation/templates/create", READ, &[("scope", "personal"), ("title", ""), ("body", "Здравствуйте")], &[422]),
    r(Get,  "/app/automation/templates/{no_template}", READ, &[], &[404]),
    r(Post, "/app/automation/templates/{no_template}/save", READ, &[("title", "Обход"), ("body", "Здравствуйте")], &[404]),
    r(Post, "/app/automation/templates/{no_template}/delete", READ, &[], &[404]),
    r(Get,  "/app/inbox/{conv}/templates", REPLY, &[], &[200]),
    r(Get,  "/api/v1/templates", ApiKey, &[], &[200]),
    r(Post, "/api/v1/templates", ApiKey, &[], &[201, 422]),
    r(Get,  "/api/v1/templates/{no_template}", ApiKey, &[], &[404]),
    r(Put,  "/api/v1/templates/{no_template}", ApiKey, &[], &[404, 422]),
    r(Delete, "/api/v1/templates/{no_template}", ApiKey, &[], &[404]),
    r(Get,  "/api/v1/conversations/{conv}/templates/{no_template}/render", ApiKey, &[], &[404]),
    r(Get,  "/api/v1/labels", ApiKey, &[], &[200]),
    r(Post, "/api/v1/labels", ApiKey, &[], &[201, 422]),
    r(Patch, "/api/v1/labels/{no_label}", ApiKey, &[], &[404]),
    r(Delete, "/api/v1/labels/{no_label}", ApiKey, &[], &[404]),
    r(Patch, "/api/v1/conversations/{conv}", ApiKey, &[], &[200]),
    r(Post, "/api/v1/conversations/bulk", ApiKey, &[], &[200, 422]),
    r(Get,  "/app/operator", Operator, &[], &[200]),
    r(Post, "/app/operator/backups", Operator, &[], &[303]),
    r(Post, "/app/operator/jobs/{job}/retry", Operator, &[], &[303]),
    r(Post, "/app/operator/companies/{company}/billing", Operator, &[("action", "overage_off")], &[303]),
    r(Post, "/app/operator/plans/{no_template}", Operator, &[("name", "Из обхода"), ("price_month", "1"), ("price_year", "1"), ("pack_messages", "0"), ("pack_price", "0")], &[404]),
    r(Get,  "/app/inbox/{conv}", READ, &[], &[200]),
    r(Post, "/app/inbox/{conv}/reply", REPLY, &[("text", "ответ из обхода")], &[303]),
    r(Post, "/app/inbox/{conv}/notes", REPLY, &[("text", "заметка из обхода")], &[303]),
    // Scheduled replies (issue 14): a time left empty is refused, nothing stored.
    r(Post, "/app/inbox/{conv}/scheduled", REPLY, &[("text", "позже"), ("when", "at"), ("send_at", "")], &[422]),
    r(Post, "/app/scheduled/{no_label}/cancel", REPLY, &[], &[404]),
    // `{conv}` is a Telegram conversation: no media link or template goes there.
    // A form without its file: «choose a file» (the file itself is sent as multipart).
    r(Post, "/app/inbox/{conv}/files", REPLY, &[], &[422]),
    r(Post, "/app/inbox/{conv}/media", REPLY, &[("media_url", "https://example.ru/a.jpg")], &[422]),
    r(Post, "/app/inbox/{conv}/template", REPLY, &[("name", "x"), ("language", "ru")], &[422]),
    r(Post, "/app/inbox/{conv}/assign", REPLY, &[("assignee", "")], &[303]),
    r(Post, "/app/inbox/{conv}/close", REPLY, &[], &[303]),
    r(Post, "/app/inbox/{conv}/reopen", REPLY, &[], &[303]),
    r(Post, "/app/inbox/{conv}/read", READ, &[], &[204]),
    r(Post, "/app/inbox/{conv}/messages/{msg}/retry", REPLY, &[], &[303, 404]),
    r(Get,  "/app/contacts/{contact}", READ, &[], &[200]),
    r(Post, "/app/contacts/{contact}", REPLY, &[("name", ""), ("phone", ""), ("email", "")], &[422]),
    r(Get,  "/app/contacts/{contact}/merge", REPLY, &[], &[200]),
    r(Post, "/app/contacts/{contact}/merge", REPLY, &[("other_id", "00000000-0000-0000-0000-000000000000")], &[404]),
    r(Get,  "/app/files/{msg}/{zero}", READ, &[], &[404]),
    r(Get,  "/app/events", READ, &[], &[200]),
    r(Get,  "/app/sources/new", MANAGE, &[], &[200]),
    r(Post, "/app/sources", MANAGE, &[("kind", "1"), ("token", "not a token")], &[422]),
    r(Get,  "/app/sources/{source}", READ, &[], &[200]),
    r(Post, "/app/sources/{source}/disable", MANAGE, &[], &[303]),
    r(Post, "/app/sources/{source}/enable", MANAGE, &[], &[303]),
    r(Post, "/app/sources/{source}/check", MANAGE, &[], &[303]),
    // `{source}` is no SMS source: it has no price of a part.
    r(Post, "/app/sources/{source}/sms-price", MANAGE, &[("price", "3.50")], &[422]),
    // Every kind's hooks are two routes, `/hooks/{kind}/{source_id}` and
    // `/hooks/{kind}/{source_id}/{*tail}`; each kind's URLs are walked (`{telegram}` … are the
    // kinds' path segments, `{zero_status}` a token and its tail).
    r(Post, "/hooks/{telegram}/{source}", Public, &[], &[401]),
    r(Get,  "/hooks/{telegram}/{source}", Public, &[], &[405]),
    // `{source}` is a Telegram bot: the other kinds' hooks do not know it.
    r(Post, "/hooks/{vk}/{source}", Public, &[], &[404]),
    r(Post, "/hooks/{max}/{source}", Public, &[], &[404]),
    // Personal accounts take no hooks at all: their runner pulls updates.
    r(Post, "/hooks/{tgp}/{source}", Public, &[], &[404]),
    r(Post, "/hooks/{avito}/{source}/{zero}", Public, &[], &[404]),
    r(Get,  "/hooks/{whatsapp}/{source}", Public, &[], &[404]),
    r(Post, "/hooks/{whatsapp}/{source}", Public, &[], &[404]),
    r(Post, "/hooks/{sms}/{source}/{zero_status}", Public, &[], &[404]),
    r(Post, "/hooks/{sms}/{source}/{zero_inbound}", Public, &[], &[404]),
    r(Get,  "/hooks/{sms}/{source}/{zero_inbound}", Public, &[], &[404]),
    r(Post, "/hooks/{no_kind}/{source}", Public, &[], &[404]),
    r(Post, "/hooks/amojo/{zero}", Public, &[], &[401]),
    r(Get,  "/hooks/amocrm/disabled", Public, &[], &[400]),
    // A signed file link without its signature.
    r(Get,  "/media/{msg}/{zero}", Public, &[], &[403]),
    r(Get,  "/app/sources/new/api", MANAGE, &[], &[200]),
    // A login in steps (Telegram personal accounts): a wrong api_id is refused, nothing kept.
    r(Get,  "/app/sources/new/login/{tgp}", MANAGE, &[], &[200]),
    r(Post, "/app/sources/new/login/{tgp}", MANAGE, &[("tgp_api_id", "x")], &[422]),
    r(Post, "/app/sources/new/login/{tgp}/restart", MANAGE, &[], &[303]),
    r(Get,  "/app/api-sources", Public, &[], &[303]),
    r(Post, "/app/api-sources", MANAGE, &[("name", "")], &[422]),
    r(Get,  "/app/api-sources/{api_source}", READ, &[], &[200]),
    r(Post, "/app/api-sources/{api_source}/webhook", MANAGE, &[("webhook_url", "")], &[303]),
    r(Post, "/app/api-sources/{api_source}/rotate", MANAGE, &[], &[200]),
    r(Post, "/app/api-sources/{api_source}/deliveries/{delivery}/replay", MANAGE, &[], &[303]),
    r(Post, "/hooks/api/{api_source}", Public, &[], &[401]),
    r(Get,  "/api/v1/me", ApiKey, &[], &[200]),
    r(Get,  "/api/v1/dashboard", ApiKey, &[], &[200]),
    r(Get,  "/api/v1/billing/plan", ApiKey, &[], &[200]),
    r(Get,  "/api/v1/billing/usage", ApiKey, &[], &[200]),
    r(Get,  "/api/v1/reports", ApiKey, &[], &[200]),
    r(Get,  "/api/v1/reports/csv", ApiKey, &[], &[200]),
    r(Get,  "/api/v1/sources", ApiKey, &[], &[200]),
    r(Post, "/api/v1/sources", ApiKey, &[], &[422]),
    r(Get,  "/api/v1/conversations", ApiKey, &[], &[200]),
    // Without `q` the search is a 400 naming the parameter.
    r(Get,  "/api/v1/search", ApiKey, &[], &[400]),
    r(Get,  "/api/v1/conversations/{conv}/messages", ApiKey, &[], &[200, 404]),
    r(Get,  "/api/v1/conversations/{conv}/crm", ApiKey, &[], &[200, 404]),
    r(Post, "/api/v1/conversations/{conv}/messages", ApiKey, &[], &[201, 404]),
    r(Post, "/api/v1/conversations/{conv}/attachments", ApiKey, &[], &[415, 404]),
    r(Get,  "/api/v1/messages/{msg}/attachments/{zero}", ApiKey, &[], &[200, 404]),
    r(Get,  "/api/v1/members", ApiKey, &[], &[200]),
    r(Get,  "/api/v1/contacts", ApiKey, &[], &[200]),
    r(Get,  "/api/v1/contacts/{contact}", ApiKey, &[], &[200, 404]),
    r(Patch, "/api/v1/contacts/{contact}", ApiKey, &[], &[200, 404]),
    r(Post, "/api/v1/contacts/{contact}/merge", ApiKey, &[], &[404, 422]),
    r(Get,  "/api/v1/conversations/{conv}/notes", ApiKey, &[], &[200, 404]),
    r(Post, "/api/v1/conversations/{conv}/notes", ApiKey, &[], &[201, 404]),
    r(Get,  "/api/v1/conversations/{conv}/scheduled", ApiKey, &[], &[200, 404]),
    r(Post, "/api/v1/conversations/{conv}/scheduled", ApiKey, &[], &[404, 415, 422]),
    r(Get,  "/api/v1/scheduled", ApiKey, &[], &[200]),
    r(Delete, "/api/v1/scheduled/{no_label}", ApiKey, &[], &[404]),
    // Without `user_id` (a key acts for no one): 400 naming the parameter.
    r(Get,  "/api/v1/notifications", ApiKey, &[], &[400]),
    r(Post, "/api/v1/notifications/read", ApiKey, &[], &[422]),
    r(Get,  "/api/v1/routing-rules", ApiKey, &[], &[200]),
    r(Post, "/api/v1/routing-rules/dry-run", ApiKey, &[], &[422]),
    r(Get,  "/api/v1/working-hours", ApiKey, &[], &[200]),
    r(Put,  "/api/v1/working-hours", ApiKey, &[], &[422]),
    // Without `source_id` there is no source's own hours to remove.
    r(Delete, "/api/v1/working-hours", ApiKey, &[], &[400]),
    r(Get,  "/api/v1/auto-replies", ApiKey, &[], &[200]),
    r(Post, "/api/v1/auto-replies", ApiKey, &[], &[422]),
    r(Post, "/api/v1/auto-replies/dry-run", ApiKey, &[], &[422]),
    r(Get,  "/api/v1/auto-replies/{no_label}", ApiKey, &[], &[404]),
    r(Put,  "/api/v1/auto-replies/{no_label}", ApiKey, &[], &[404, 422]),
    r(Delete, "/api/v1/auto-replies/{no_label}", ApiKey, &[], &[404]),
    r(Post, "/api/v1/auto-replies/{no_label}/dry-run", ApiKey, &[], &[404, 422]),
    r(Put,  "/api/v1/sources/{source}/sms-price", ApiKey, &[], &[422]),
    r(Get,  "/api/v1/sources/{tgp}/login", ApiKey, &[], &[200]),
    r(Post, "/api/v1/sources/{tgp}/login", ApiKey, &[], &[422]),
    r(Delete, "/api/v1/sources/{tgp}/login", ApiKey, &[], &[204]),
    r(Get,  "/api/v1/crm/responsible-sync", ApiKey, &[], &[200]),
    r(Put,  "/api/v1/crm/responsible-sync", ApiKey, &[], &[422]),
    r(Get,  "/api/v1/crm/import", ApiKey, &[], &[404]),
    r(Post, "/api/v1/crm/import", ApiKey, &[], &[422]),
    // Undelivered events (issue 9, item 2): `{source}` is no dead letter.
    r(Get,  "/app/settings/dead-letters", MANAGE, &[], &[200]),
    r(Post, "/app/settings/dead-letters/{source}/retry", MANAGE, &[], &[404]),
    r(Post, "/app/settings/dead-letters/{source}/delete", MANAGE, &[], &[404]),
    r(Get,  "/api/v1/dead-letters", ApiKey, &[], &[200]),
    r(Post, "/api/v1/dead-letters/{source}/retry", ApiKey, &[], &[404]),
    r(Post, "/api/v1/exports", ApiKey, &[], &[202]),
    r(Get,  "/api/v1/exports/{export}", ApiKey, &[], &[404]),
    r(Get,  "/api/v1/exports/{export}/download", ApiKey, &[], &[404]),
    r(Post, "/api/v1/api-sources/{api_source}/webhook-url", ApiKey, &[], &[200, 422]),
    r(Get,  "/api/openapi.json", Public, &[], &[200]),
    r(Get,  "/api/docs", Public, &[], &[200, 301, 303, 307, 308]),
    r(Get,  "/healthz", Public, &[], &[200]),
    r(Get,  "/readyz", Public, &[], &[200]),
    r(Get,  "/metrics", Public, &[], &[200]),
];

/// Placeholders naming an object of the walked company: the outsider must be refused.
const COMPANY_OBJECTS: &[&str] = &[
    "{company}",
    "{invite}",
    "{member}",
    "{key}",
    "{job}",
    "{conv}",
    "{contact}",
    "{msg}",
    "{source}",
    "{rule}",
    "{api_source}",
    "{delivery}",
];
/// Endpoints that never finish their body (server-sent events): only the status is read.
const STREAMS: &[&str] = &["/app/events"];
/// Routes that end the session they are used with: walked last, each with a fresh session.
const ENDS_SESSION: &[&str] = &["/sign-out", "/sign-out-everywhere"];

impl Route {
    fn scoped(&self) -> bool {
        COMPANY_OBJECTS.iter().any(|p| self.path.contains(p))
    }
    fn label(&self) -> String {
        format!("{:?} {}", self.method, self.path)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// A member of company A with this role.
    Member(Role),
    /// The owner of company B.
    Outsider,
}

struct Visitor {
    who: Who,
    user: Option<Uuid>,
    company: Option<Uuid>,
    http: reqwest::Client,
    csrf: String,
}

/// Company A with its owner, admin, manager and viewer; a member to change and remove; an open
/// invitation, a used one, an API key, a dead job and a routing rule; and company B with its
/// owner.
struct Fixture {
    company: Uuid,
    /// Company A's routing rules as stored, put back after each visit.
    rules: String,
    victim: Uuid,
    job: Uuid,
    params: HashMap<&'static str, String>,
    visitors: Vec<Visitor>,
    key_a: String,
    key_b: String,
}

const DEAD_KIND: &str = "test.no_such_handler";

fn client(cookie: Option<&str>) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    if let Some(c) = cookie {
        h.insert(
            reqwest::header::COOKIE,
            c.parse().expect("cookie header value"),
        );
    }
    reqwest::Client::builder()
        .default_headers(h)
        .cookie_store(cookie.is_none())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// A new signed-in session for `user` in `company`, as the sign-in would make it.
async fn open_session(app: &TestApp, user: Uuid, company: Uuid) -> (reqwest::Client, String) {
    let (token, hash) = chatter_core::new_token();
    let (csrf, _) = chatter_core::new_token();
    let now = app.core.now();
    session::ActiveModel {
        id_hash: Set(hash),
        user_id: Set(user),
        company_id: Set(Some(company)),
        pending_2fa: Set(false),
        csrf: Set(csrf.clone()),
        ip: Set("127.0.0.1".into()),
        user_agent: Set("walk".into()),
        created_at: Set(now),
        last_seen_at: Set(now),
        expires_at: Set(now + 24 * 3600 * 1000),
    }
    .insert(&app.core.db)
    .await
    .expect("session row");
    (client(Some(&format!("chatter_session={token}"))), csrf)
}

async fn anonymous(app: &TestApp) -> Visitor {
    let http = client(None);
    let page = http
        .get(app.at("/sign-in"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    Visitor {
        who: Who::Anonymous,
        user: None,
        company: None,
        http,
        csrf: csrf_of(&page),
    }
}

fn owner_actor(user: Uuid, company: Uuid, email: &str) -> Actor {
    Actor {
        user_id: Some(user.into()),
        company_id: company.into(),
        role: Role::Owner,
        label: email.into(),
        meta: ReqMeta::default(),
    }
}

/// Invites `email` with `role` and accepts with a new account; returns the user id and the
/// invitation token.
async fn add_member(app: &TestApp, owner: &Actor, email: &str, role: Role) -> (Uuid, String) {
    let link = team::invite(&app.core, owner, email, role.as_str(), "ru")
        .await
        .expect("invite");
    let token = link.rsplit('/').next().expect("token").to_string();
    team::accept_invite_new_account(&app.core, &token, "Участник", PW, &ReqMeta::default())
        .await
        .expect("accept");
    (crate::team::user_id(app, email).await, token)
}

async fn sign_up(app: &TestApp, company: &str, email: &str) -> (Uuid, Uuid) {
    let (_, user, company) = accounts::sign_up(
        &app.core,
        &accounts::SignUp {
            company_name: company.into(),
            name: "Владелец".into(),
            email: email.into(),
            password: PW.into(),
        },
        &ReqMeta::default(),
    )
    .await
    .expect("sign-up");
    (user, company)
}

/// A Telegram bot of the company (through the fake) with one customer message; returns the
/// source, conversation and message ids.
async fn conversation_of(app: &TestApp, owner: &Actor) -> (SourceId, ConversationId, MessageId) {
    use chatter_channels::{ChatKind, ChatRef, InboundEvent, InboundMessage, Sender};
    let token = app.telegram.create_bot("walk_bot", "Обход");
    let bot = chatter_core::sources::NewSource::new(
        chatter_domain::SourceKind::TelegramBot,
        [("token", token.as_str())],
    );
    let source = chatter_core::sources::add_source(&app.core, owner, "", bot)
        .await
        .expect("bot");
    let src = chatter_store::entity::source::Entity::find_by_id(source)
        .one(&app.core.db)
        .await
        .expect("source lookup")
        .expect("source row");
    let ev = InboundEvent::Message(InboundMessage {
        external_id: "900:1".into(),
        chat: ChatRef {
            external_id: "900".into(),
            kind: ChatKind::Private,
            title: None,
        },
        sender: Sender {
            external_id: "900".into(),
            name: "Клиент".into(),
            ..Sender::default()
        },
        text: Some("Здравствуйте".into()),
        attachments: vec![],
        extra: None,
        reply_to_external_id: None,
        sent_at: app.core.now(),
        edited: false,
    });
    let r = chatter_core::inbox::ingest_batch(&app.core, &src, &[ev], None)
        .await
        .expect("ingest");
    let chatter_core::inbox::Ingested::New(msg) = r[0] else {
        panic!("a new message: {r:?}");
    };
    let conv = chatter_store::entity::message::Entity::find_by_id(msg)
        .one(&app.core.db)
        .await
        .expect("message lookup")
        .expect("message row")
        .conversation_id;
    (source, conv, msg)
}

/// An API source with one delivery in its log (to replay).
async fn api_source_with_delivery(
    app: &TestApp,
    owner: &Actor,
    conv: ConversationId,
) -> (SourceId, Uuid) {
    use chatter_store::entity::api_webhook_delivery;
    let (id, _) = chatter_core::sources::api::create(&app.core, owner, "Сайт")
        .await
        .expect("API source");
    let delivery = Uuid::now_v7();
    let now = app.core.now();
    api_webhook_delivery::ActiveModel {
        id: Set(delivery),
        company_id: Set(owner.company_id.uuid()),
        source_id: Set(id.0),
        dedup_key: Set("walk".into()),
        event_type: Set("conversation.status_changed".into()),
        event_id: Set(None),
        conversation_id: Set(Some(conv.0)),
        message_id: Set(None),
        payload: Set("{}".into()),
        url: Set("http://127.0.0.1:9/hook".into()),
        status: Set("failed".into()),
        attempts: Set(1),
        status_code: Set(None),
        last_error: Set(Some("cannot connect".into())),
        job_id: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        delivered_at: Set(None),
    }
    .insert(&app.core.db)
    .await
    .expect("delivery row");
    (id, delivery)
}

impl Fixture {
    async fn build(app: &TestApp) -> Fixture {
        let (owner, a) = sign_up(app, "Альфа", "owner@alpha.test").await;
        let (outsider, b) = sign_up(app, "Бета", "owner@beta.test").await;
        let boss = owner_actor(owner, a, "owner@alpha.test");
        let mut users = vec![
            (Who::Member(Role::Owner), owner, a),
            (Who::Outsider, outsider, b),
        ];
        for (role, email) in [
            (Role::Admin, "admin@alpha.test"),
            (Role::Manager, "manager@alpha.test"),
            (Role::Viewer, "viewer@alpha.test"),
        ] {
            let (id, _) = add_member(app, &boss, email, role).await;
            users.push((Who::Member(role), id, a));
        }
        let (victim, used_token) = add_member(app, &boss, "victim@alpha.test", Role::Viewer).await;
        team::invite(&app.core, &boss, "pending@alpha.test", "viewer", "ru")
            .await
            .expect("open invite");
        let open_invite = invite::Entity::find()
            .filter(invite::Column::Email.eq("pending@alpha.test"))
            .one(&app.core.db)
            .await
            .expect("invite lookup")
            .expect("invite row")
            .id;
        let (_, key_id) = api_keys::create(&app.core, &boss, "target")
            .await
            .expect("key");
        let (key_a, _) = api_keys::create(&app.core, &boss, "walk A")
            .await
            .expect("key");
        let (key_b, _) = api_keys::create(
            &app.core,
            &owner_actor(outsider, b, "owner@beta.test"),
            "walk B",
        )
        .await
        .expect("key");
        let (source, conv, msg) = conversation_of(app, &boss).await;
        let contact = chatter_store::entity::conversation::Entity::find_by_id(conv)
            .one(&app.core.db)
            .await
            .expect("conversation lookup")
            .expect("conversation row")
            .contact_id;
        let rule = chatter_core::crm::rules::save(
            &app.core,
            &boss,
            chatter_domain::routing::Rule {
                id: String::new(),
                name: "Доставка".into(),
                enabled: true,
                conditions: chatter_domain::routing::Conditions {
                    keywords: vec!["доставка".into()],
                    ..Default::default()
                },
                actions: Default::default(),
            },
        )
        .await
        .expect("a routing rule");
        let rules = stored_rules(app).await;
        let (api_source, delivery) = api_source_with_delivery(app, &boss, conv).await;
        let job = jobs::enqueue(
            &app.core.db,
            NewJob::new(DEAD_KIND, serde_json::json!({}), app.core.now())
                .company(a)
                .max_attempts(1),
            app.core.now(),
        )
        .await
        .expect("enqueue")
        .expect("a new job");

        let mut visitors = vec![anonymous(app).await];
        for (who, user, company) in users {
            let (http, csrf) = open_session(app, user, company).await;
            visitors.push(Visitor {
                who,
                user: Some(user),
                company: Some(company),
                http,
                csrf,
            });
        }
        let params = HashMap::from([
            ("{lang}", "ru".to_string()),
            ("{reset}", "0".repeat(64)),
            ("{used_invite}", used_token),
            ("{company}", a.to_string()),
            ("{invite}", open_invite.to_string()),
            ("{member}", victim.to_string()),
            ("{key}", key_id.to_string()),
            ("{job}", job.to_string()),
            ("{source}", source.to_string()),
            ("{api_source}", api_source.to_string()),
            ("{delivery}", delivery.to_string()),
            ("{conv}", conv.to_string()),
            ("{contact}", contact.to_string()),
            ("{msg}", msg.to_string()),
            ("{rule}", rule),
            ("{zero}", "0".to_string()),
            ("{zero_status}", "0/status".to_string()),
            ("{zero_inbound}", "0/inbound".to_string()),
            ("{telegram}", "telegram".to_string()),
            ("{vk}", "vk".to_string()),
            ("{max}", "max".to_string()),
            ("{avito}", "avito".to_string()),
            ("{whatsapp}", "whatsapp".to_string()),
            ("{sms}", "sms".to_string()),
            ("{tgp}", "telegram-personal".to_string()),
            ("{no_kind}", "fax".to_string()),
            // No export exists: owners get 404, the others are refused first.
            ("{export}", Uuid::nil().to_string()),
            ("{no_label}", Uuid::nil().to_string()),
            ("{no_template}", Uuid::nil().to_string()),
        ]);
        let f = Fixture {
            company: a,
            rules,
            victim,
            job,
            params,
            visitors,
            key_a,
            key_b,
        };
        f.reset(app).await;
        f
    }

    fn fill(&self, path: &str) -> String {
        let mut p = path.to_string();
        for (k, v) in &self.params {
            p = p.replace(k, v);
        }
        assert!(!p.contains('{'), "unfilled placeholder in {path}");
        p
    }

    /// Puts back what allowed requests change: the member to remove, the dead job, the rules.
    async fn reset(&self, app: &TestApp) {
        let db = &app.core.db;
        {
            use sea_orm::ConnectionTrait;
            db.execute(chatter_store::stmt(
                db.get_database_backend(),
                "UPDATE routing_rules SET rules = $1 WHERE company_id = $2",
                vec![self.rules.clone().into(), self.company.into()],
            ))
            .await
            .expect("rules back");
        }
        match membership::Entity::find_by_id((self.company, self.victim))
            .one(db)
            .await
            .expect("membership lookup")
        {
            Some(m) if m.role == "viewer" => {}
            Some(m) => {
                let mut m: membership::ActiveModel = m.into();
                m.role = Set("viewer".into());
                m.update(db).await.expect("role back");
            }
            None => {
                membership::ActiveModel {
                    company_id: Set(self.company),
                    user_id: Set(self.victim),
                    role: Set("viewer".into()),
                    created_at: Set(app.core.now()),
                }
                .insert(db)
                .await
                .expect("member back");
            }
        }
        // A retried job is run again by the workers; with no handler it dies again.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let j = job::Entity::find_by_id(self.job)
                .one(db)
                .await
                .expect("job lookup")
                .expect("job row");
            if j.status == jobs::DEAD {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the test job never died: {j:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Every company's stored routing rules, one document per line.
async fn stored_rules(app: &TestApp) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let db = &app.core.db;
    db.query_all(Statement::from_string(
        db.get_database_backend(),
        "SELECT rules FROM routing_rules ORDER BY company_id",
    ))
    .await
    .expect("routing rules")
    .iter()
    .map(|r| r.try_get_by_index::<String>(0).expect("rules text"))
    .collect::<Vec<_>>()
    .join("\n")
}

/// What a refused request must leave untouched.
async fn snapshot(app: &TestApp) -> String {
    let db = &app.core.db;
    let rules = stored_rules(app).await;
    let memberships = membership::Entity::find()
        .order_by_asc(membership::Column::CompanyId)
        .order_by_asc(membership::Column::UserId)
        .all(db)
        .await
        .expect("memberships");
    let invites = invite::Entity::find()
        .order_by_asc(invite::Column::Id)
        .all(db)
        .await
        .expect("invites");
    let keys = api_key::Entity::find()
        .order_by_asc(api_key::Column::Id)
        .all(db)
        .await
        .expect("keys");
    let users = user::Entity::find()
        .order_by_asc(user::Column::Id)
        .all(db)
        .await
        .expect("users");
    let sessions: Vec<_> = session::Entity::find()
        .order_by_asc(session::Column::IdHash)
        .all(db)
        .await
        .expect("sessions")
        .into_iter()
        .map(|s| (s.id_hash, s.user_id, s.company_id, s.pending_2fa))
        .collect();
    let companies = company::Entity::find()
        .order_by_asc(company::Column::Id)
        .all(db)
        .await
        .expect("companies");
    let dead: Vec<_> = job::Entity::find()
        .filter(job::Column::Kind.eq(DEAD_KIND))
        .all(db)
        .await
        .expect("jobs");
    let counts = (
        job::Entity::find().count(db).await.expect("count"),
        audit::Entity::find().count(db).await.expect("count"),
        backup::Entity::find().count(db).await.expect("count"),
    );
    format!("{memberships:?}\n{invites:?}\n{keys:?}\n{users:?}\n{sessions:?}\n{companies:?}\n{dead:?}\n{counts:?}\n{rules}")
}

enum Expect {
    Allowed,
    /// Anonymous visitors are sent to sign in.
    ToSignIn,
    Forbidden,
    /// Not there for this visitor (the operator area).
    Hidden,
    /// Another company's object: 403 or 404.
    NotYours,
    /// API without a key: 401 JSON.
    Unauthorized,
}

fn expect(route: &Route, who: Who) -> Expect {
    match (route.access, who) {
        (ApiKey, _) => Expect::Unauthorized,
        (Operator, _) => Expect::Hidden,
        (Public, _) => Expect::Allowed,
        (_, Who::Anonymous) => Expect::ToSignIn,
        (Signed, _) => Expect::Allowed,
        (Member(_), Who::Outsider) if route.scoped() => Expect::NotYours,
        (Member(_), Who::Outsider) => Expect::Allowed,
        (Member(min), Who::Member(role)) if role >= min => Expect::Allowed,
        (Member(_), Who::Member(_)) => Expect::Forbidden,
    }
}

async fn send(
    app: &TestApp,
    http: &reqwest::Client,
    route: &Route,
    path: &str,
    csrf: Option<&str>,
) -> reqwest::Response {
    let url = app.at(path);
    match route.method {
        Get => http.get(url).send().await.expect("GET"),
        Post => {
            let mut form: Vec<(&str, &str)> = csrf.map(|c| ("_csrf", c)).into_iter().collect();
            form.extend_from_slice(route.fields);
            http.post(url).form(&form).send().await.expect("POST")
        }
        // The API's replacing calls, with a body that names nothing.
        Put => http
            .put(url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("PUT"),
        Patch => http
            .patch(url)
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("PATCH"),
        Delete => http.delete(url).send().await.expect("DELETE"),
    }
}

/// Checks one visit; returns a complaint when the answer is not the expected one.
async fn visit(
    app: &TestApp,
    f: &Fixture,
    route: &Route,
    who: Who,
    http: &reqwest::Client,
    csrf: &str,
) -> Option<String> {
    f.reset(app).await;
    let path = f.fill(route.path);
    let want = expect(route, who);
    let before = match want {
        Expect::Allowed => None,
        _ => Some(snapshot(app).await),
    };
    let resp = send(app, http, route, &path, Some(csrf)).await;
    // Every answer carries the security headers (web_security).
    let headers = crate::web_security::headers_complaint(&path, &resp);
    let status = resp.status().as_u16();
    let loc = crate::team::location(&resp);
    let body = if STREAMS.contains(&route.path) {
        String::new()
    } else {
        resp.text().await.unwrap_or_default()
    };
    let good = match want {
        Expect::Allowed => route.ok.contains(&status),
        Expect::ToSignIn => status == 303 && loc == "/sign-in",
        Expect::Forbidden => status == 403,
        Expect::Hidden => status == 404,
        Expect::NotYours => status == 403 || status == 404,
        Expect::Unauthorized => status == 401 && body.contains("\"code\":\"unauthorized\""),
    };
    let mut complaint = (!good).then(|| {
        let want = match want {
            Expect::Allowed => format!("one of {:?}", route.ok),
            Expect::ToSignIn => "303 to /sign-in".into(),
            Expect::Forbidden => "403".into(),
            Expect::Hidden => "404".into(),
            Expect::NotYours => "403 or 404".into(),
            Expect::Unauthorized => "401 JSON".into(),
        };
        format!(
            "{} as {who:?}: got {status} {loc}, want {want}",
            route.label()
        )
    });
    if let Some(h) = headers {
        complaint.get_or_insert_with(|| format!("{} as {who:?}: {h}", route.label()));
    }
    if let Some(before) = before {
        if snapshot(app).await != before {
            complaint.get_or_insert_with(|| {
                format!(
                    "{} as {who:?}: refused, but something changed",
                    route.label()
                )
            });
        }
    }
    complaint
}

#[tokio::test]
async fn every_route_as_every_visitor() {
    let app = TestApp::new().await;
    let f = Fixture::build(&app).await;
    let mut complaints = Vec::new();
    let mut visits = 0;
    for route in ROUTES.iter().filter(|r| !ENDS_SESSION.contains(&r.path)) {
        for v in &f.visitors {
            visits += 1;
            if let Some(c) = visit(&app, &f, route, v.who, &v.http, &v.csrf).await {
                complaints.push(c);
            }
        }
    }
    // Routes that end a session, each with a fresh session of the same person.
    for route in ROUTES.iter().filter(|r| ENDS_SESSION.contains(&r.path)) {
        for v in &f.visitors {
            visits += 1;
            let (http, csrf) = match (v.user, v.company) {
                (Some(u), Some(c)) => open_session(&app, u, c).await,
                _ => (v.http.clone(), v.csrf.clone()),
            };
            if let Some(c) = visit(&app, &f, route, v.who, &http, &csrf).await {
                complaints.push(c);
            }
        }
    }
    assert!(
        complaints.is_empty(),
        "{} of {visits} visits went wrong:\n{}",
        complaints.len(),
        complaints.join("\n")
    );
    app.stop().await;
}

#[tokio::test]
async fn api_routes_answer_keys_of_their_own_company_only() {
    let app = TestApp::new().await;
    let f = Fixture::build(&app).await;
    let http = client(None);
    for route in ROUTES
        .iter()
        .filter(|r| r.access == ApiKey && r.method == Get)
    {
        let url = app.at(&f.fill(route.path));
        for (key, company) in [(&f.key_a, "Альфа"), (&f.key_b, "Бета")] {
            let r = http.get(&url).bearer_auth(key).send().await.expect("GET");
            assert!(route.ok.contains(&r.status().as_u16()), "{}", route.label());
            let body = r.text().await.expect("body");
            if route.path == "/api/v1/me" {
                assert!(body.contains(company), "{body}");
            }
            if route.path == "/api/v1/members" {
                let alpha = body.contains("@alpha.test");
                assert_eq!(alpha, company == "Альфа", "{body}");
            }
        }
        for key in ["", "chk_wrong"] {
            let r = http.get(&url).bearer_auth(key).send().await.expect("GET");
            assert_eq!(r.status(), 401, "{} with {key:?}", route.label());
        }
    }
    // Sending through the API: company A's key may answer A's customer, B's key may not.
    let url = app.at(&f.fill("/api/v1/conversations/{conv}/messages"));
    let body = serde_json::json!({"text": "Ответ через API"});
    let r = http
        .post(&url)
        .bearer_auth(&f.key_b)
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 404);
    let r = http
        .post(&url)
        .bearer_auth(&f.key_a)
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 201);
    let r = http
        .post(&url)
        .bearer_auth(&f.key_a)
        .json(&serde_json::json!({"text": "  "}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 422);
    let r = http
        .post(&url)
        .bearer_auth(&f.key_a)
        .body("{oops")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 422);
    app.stop().await;
}

#[tokio::test]
async fn every_form_without_its_csrf_token_is_refused_and_changes_nothing() {
    let app = TestApp::new().await;
    let f = Fixture::build(&app).await;
    let mut complaints = Vec::new();
    // Webhooks are authenticated by the provider's secret and the API by its key, not by cookies.
    let posts: Vec<&Route> = ROUTES
        .iter()
        .filter(|r| r.method == Post && r.access != ApiKey && !r.path.starts_with("/hooks/"))
        .collect();
    assert!(posts.len() > 20, "the table lists the forms");
    for route in posts {
        let path = f.fill(route.path);
        for v in f
            .visitors
            .iter()
            .filter(|v| matches!(v.who, Who::Anonymous | Who::Member(Role::Owner)))
        {
            for csrf in [None, Some("wrong")] {
                f.reset(&app).await;
                let before = snapshot(&app).await;
                let status = send(&app, &v.http, route, &path, csrf).await.status();
                if status != 403 {
                    complaints.push(format!(
                        "{} as {:?} with _csrf {csrf:?}: got {status}, want 403",
                        route.label(),
                        v.who
                    ));
                }
                if snapshot(&app).await != before {
                    complaints.push(format!(
                        "{} as {:?} with _csrf {csrf:?}: something changed",
                        route.label(),
                        v.who
                    ));
                }
            }
        }
    }
    // The owner's session survived the refused sign-outs.
    let owner = f
        .visitors
        .iter()
        .find(|v| v.who == Who::Member(Role::Owner))
        .expect("owner");
    let r = owner.http.get(app.at("/app")).send().await.expect("GET");
    assert_eq!(r.status(), 200);
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
    app.stop().await;
}

/// `(METHOD, path)` of every `.route(…)` in the web crate's source, placeholders as `{}`.
fn declared_routes() -> BTreeSet<(String, String)> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../chatter-web/src");
    let mut files = vec![src];
    let mut out = BTreeSet::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read dir") {
                files.push(e.expect("dir entry").path());
            }
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        // The plain-HTTP listener beside HTTPS is another router: it answers the CA's public
        // ACME challenges and redirects everything else (tested in `tls` and `acme`).
        if p.file_name().is_some_and(|n| n == "redirect.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read source");
        let mut rest = text.as_str();
        while let Some(i) = rest.find(".route(") {
            rest = rest[i + ".route(".len()..].trim_start();
            let Some(r) = rest.strip_prefix('"') else {
                continue;
            };
            rest = r;
            let path = &rest[..rest.find('"').expect("closing quote")];
            // The call's arguments: up to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let mut end = rest.len();
            for (j, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &rest[..end];
            for m in ["get", "post", "put", "patch", "delete"] {
                let needle = format!("{m}(");
                let found = call.match_indices(&needle).any(|(k, _)| {
                    k == 0
                        || !call[..k]
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if found {
                    out.insert((m.to_uppercase(), normalize(path)));
                }
            }
        }
    }
    out
}

fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                out.push_str("{}");
            }
            '}' => inside = false,
            _ if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

fn table_routes() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|r| (format!("{:?}", r.method).to_uppercase(), normalize(r.path)))
        .collect()
}

#[tokio::test]
async fn the_table_lists_every_route_the_product_serves() {
    let declared = declared_routes();
    assert!(
        declared.len() > 40,
        "the source scan finds the routes: {declared:?}"
    );
    let table = table_routes();
    let missing: Vec<_> = declared.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "routes missing from ROUTES: {missing:?}"
    );
    // Mounted by the Swagger UI helper rather than `.route(…)`.
    let mounted: BTreeSet<(String, String)> = [
        ("GET".to_string(), "/api/docs".to_string()),
        ("GET".to_string(), "/api/openapi.json".to_string()),
    ]
    .into();
    let stale: Vec<_> = table
        .difference(&declared)
        .filter(|r| !mounted.contains(*r))
        .collect();
    assert!(
        stale.is_empty(),
        "ROUTES lists routes the product lacks: {stale:?}"
    );

    // The API part, as the product documents it.
    let app = TestApp::new().await;
    let spec: serde_json::Value = app
        .client()
        .get(app.at("/api/openapi.json"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let paths = spec["paths"].as_object().expect("paths");
    assert!(!paths.is_empty());
    for (path, ops) in paths {
        for method in ops.as_object().expect("operations").keys() {
            let key = (method.to_uppercase(), normalize(path));
            assert!(table.contains(&key), "{key:?} is documented but not walked");
            let row = ROUTES
                .iter()
                .find(|r| normalize(r.path) == key.1)
                .expect("row");
            // Inbound webhooks are documented too; they are signed, not keyed.
            if !path.starts_with("/hooks/") {
                assert_eq!(row.access, ApiKey, "{path} takes an API key");
            }
        }
    }
    app.stop().await;
}
