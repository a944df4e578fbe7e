//! CRM settings (where conversations land, per source over the company default) and the
//! troubleshooting page (token, rights, chat channel, what is stuck and why, retry).

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::crm::settings::{self as crm_settings, FieldMapping, SyncSettings};
use chatter_core::crm::sync::{self as crm_sync, Health, ResponsibleLead};
use chatter_core::crm::{self, integration::Metadata};
use chatter_core::CoreError;
use chatter_domain::routing::Responsible;
use chatter_domain::SourceId;
use chatter_store::entity::source;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/crm/settings", get(settings_page).post(save))
        .route("/app/crm/responsible", post(save_responsible))
        .route("/app/crm/health", get(health_page))
        .route("/app/crm/health/retry", post(retry_one))
        .route("/app/crm/health/retry-all", post(retry_all))
        .route("/app/crm/chats/reconnect", post(reconnect_chats))
}

#[derive(serde::Deserialize, Default)]
struct ScopeQuery {
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    source: Option<SourceId>,
    ok: Option<String>,
}

#[derive(Template)]
#[template(path = "app/crm_settings.html")]
struct SettingsTpl {
    p: Page,
    meta: Metadata,
    sources: Vec<source::Model>,
    scope: Option<SourceId>,
    scope_name: String,
    s: SyncSettings,
    /// The company's "one responsible person" setting (shown with the defaults).
    lead: ResponsibleLead,
}

impl SettingsTpl {
    /// The choice that sets nothing here: for a source, "as the defaults"; in the defaults
    /// themselves, what amoCRM does on its own.
    fn inherit(&self) -> &'static str {
        if self.scope.is_some() {
            self.p.t("crm.inherit")
        } else {
            self.p.t("crm.amo_default")
        }
    }

    /// `(value, label key, selected)` of the "which side leads" choices.
    fn leads(&self) -> Vec<(&'static str, &'static str, bool)> {
        [
            (ResponsibleLead::Off, "crm.lead_off"),
            (ResponsibleLead::Chatter, "crm.lead_chatter"),
            (ResponsibleLead::Amocrm, "crm.lead_amocrm"),
        ]
        .into_iter()
        .map(|(l, key)| (l.as_str(), key, l == self.lead))
        .collect()
    }

    fn is_scope(&self, id: &SourceId) -> bool {
        self.scope == Some(*id)
    }
    fn same(&self, selected: &Option<i64>, id: &i64) -> bool {
        *selected == Some(*id)
    }
    fn pipeline_is(&self, id: &i64) -> bool {
        self.s.pipeline_id == Some(*id)
    }
    fn stage_is(&self, id: &i64) -> bool {
        self.s.status_id == Some(*id)
    }
    fn responsible_kind(&self) -> &'static str {
        match &self.s.responsible {
            None => "",
            Some(Responsible::User(_)) => "user",
            Some(Responsible::RoundRobin(_)) => "round_robin",
            Some(Responsible::FirstToAnswer) => "first",
        }
    }
    fn user_is(&self, id: &i64) -> bool {
        matches!(&self.s.responsible, Some(Responsible::User(u)) if u == id)
    }
    fn in_turn(&self, id: &i64) -> bool {
        matches!(&self.s.responsible, Some(Responsible::RoundRobin(l)) if l.contains(id))
    }
    fn tri(&self, v: Option<bool>) -> &'static str {
        match v {
            None => "",
            Some(true) => "yes",
            Some(false) => "no",
        }
    }
    fn unsorted(&self) -> &'static str {
        self.tri(self.s.unsorted)
    }
    fn reuse(&self) -> &'static str {
        self.tri(self.s.reuse_open_deal)
    }
    fn tags(&self) -> String {
        self.s.tags.join(", ")
    }
    /// `(form name, label key, selected field id, entity)`.
    fn mappings(&self) -> Vec<(&'static str, &'static str, Option<i64>, &'static str)> {
        let f = &self.s.fields;
        vec![
            ("f_source_name", "crm.f_source_name", f.source_name, "leads"),
            ("f_username", "crm.f_username", f.username, "contacts"),
            ("f_chat_link", "crm.f_chat_link", f.chat_link, "leads"),
            (
                "f_first_message",
                "crm.f_first_message",
                f.first_message,
                "leads",
            ),
            ("f_utm_source", "crm.f_utm_source", f.utm_source, "leads"),
            ("f_utm_medium", "crm.f_utm_medium", f.utm_medium, "leads"),
            (
                "f_utm_campaign",
                "crm.f_utm_campaign",
                f.utm_campaign,
                "leads",
            ),
            ("f_marker", "crm.f_marker", f.marker, "leads"),
        ]
    }
    /// Text-like fields of an entity, for a mapping select.
    fn fields_of(&self, entity: &str) -> Vec<(i64, String)> {
        let list = if entity == "contacts" {
            &self.meta.contact_fields
        } else {
            &self.meta.lead_fields
        };
        list.iter()
            .filter(|f| matches!(f.field_type.as_str(), "text" | "textarea" | "url"))
            .map(|f| (f.id, f.name.clone()))
            .collect()
    }
}

async fn load(
    st: &AppState,
    ctx: &Ctx,
    scope: Option<SourceId>,
) -> Result<(Metadata, Vec<source::Model>, String), AppError> {
    let actor = ctx.actor()?;
    let (_, meta) = crm::get(&st.core, &actor)
        .await?
        .ok_or(AppError::from(CoreError::NotFound))?;
    let sources = chatter_core::sources::list(&st.core, &actor).await?;
    let scope_name = match scope {
        Some(id) => sources
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.name.clone())
            .ok_or(AppError::from(CoreError::NotFound))?,
        None => String::new(),
    };
    Ok((meta, sources, scope_name))
}

async fn settings_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ScopeQuery>,
) -> Result<Response, AppError> {
    let (meta, sources, scope_name) = match load(&st, &ctx, q.source).await {
        Err(AppError::Core(e)) if matches!(*e, CoreError::NotFound) => {
            return Ok(connect_first());
        }
        other => other?,
    };
    let s = crm_settings::get(&st.core, &ctx.actor()?, q.source).await?;
    let lead = crm_sync::get_responsible_lead(&st.core, &ctx.actor()?).await?;
    Ok(render(SettingsTpl {
        p: Page::new(&ctx, "crm").flash(&Flash { ok: q.ok }),
        meta,
        sources,
        scope: q.source,
        scope_name,
        s,
        lead,
    }))
}

fn opt_i64(v: Option<&String>) -> Option<i64> {
    v.and_then(|s| s.trim().parse().ok())
}

fn tri(v: Option<&String>) -> Option<bool> {
    match v.map(String::as_str) {
        Some("yes") => Some(true),
        Some("no") => Some(false),
        _ => None,
    }
}

/// Reads the form (checkbox lists repeat their name, so it comes as pairs).
fn parse(form: &[(String, String)]) -> SyncSettings {
    let one = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let all = |k: &str| -> Vec<i64> {
        form.iter()
            .filter(|(n, _)| n == k)
            .filter_map(|(_, v)| v.parse().ok())
            .collect()
    };
    let responsible = match one("responsible").map(String::as_str) {
        Some("user") => opt_i64(one("responsible_user")).map(Responsible::User),
        Some("round_robin") => Some(Responsible::RoundRobin(all("round_robin"))),
        Some("first") => Some(Responsible::FirstToAnswer),
        _ => None,
    };
    SyncSettings {
        pipeline_id: opt_i64(one("pipeline_id")),
        status_id: opt_i64(one("status_id")),
        responsible,
        unsorted: tri(one("unsorted")),
        reuse_open_deal: tri(one("reuse_open_deal")),
        tags: one("tags")
            .map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        fields: FieldMapping {
            source_name: opt_i64(one("f_source_name")),
            username: opt_i64(one("f_username")),
            chat_link: opt_i64(one("f_chat_link")),
            first_message: opt_i64(one("f_first_message")),
            utm_source: opt_i64(one("f_utm_source")),
            utm_medium: opt_i64(one("f_utm_medium")),
            utm_campaign: opt_i64(one("f_utm_campaign")),
            marker: opt_i64(one("f_marker")),
        },
    }
}

async fn save(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ScopeQuery>,
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let s = parse(&form);
    match crm_settings::save(&st.core, &ctx.actor()?, q.source, &s).await {
        Ok(()) => {
            let back = match q.source {
                Some(id) => format!("/app/crm/settings?source={id}&ok=saved"),
                None => "/app/crm/settings?ok=saved".to_string(),
            };
            Ok(Redirect::to(&back).into_response())
        }
        Err(CoreError::Invalid(errs)) => {
            let (meta, sources, scope_name) = load(&st, &ctx, q.source).await?;
            let lead = crm_sync::get_responsible_lead(&st.core, &ctx.actor()?).await?;
            Ok(render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                SettingsTpl {
                    p: Page::new(&ctx, "crm").errors(errs),
                    meta,
                    sources,
                    scope: q.source,
                    scope_name,
                    s,
                    lead,
                },
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct LeadForm {
    #[serde(default)]
    lead: String,
}

/// "One responsible person": which side leads, or off.
async fn save_responsible(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(form): CsrfForm<LeadForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let Some(lead) = ResponsibleLead::parse(form.lead.trim()) else {
        let (meta, sources, _) = load(&st, &ctx, None).await?;
        let s = crm_settings::get(&st.core, &actor, None).await?;
        let lead = crm_sync::get_responsible_lead(&st.core, &actor).await?;
        return Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            SettingsTpl {
                p: Page::new(&ctx, "crm").errors(vec![chatter_domain::FieldError::new(
                    "lead",
                    "err.crm_responsible_lead",
                )]),
                meta,
                sources,
                scope: None,
                scope_name: String::new(),
                s,
                lead,
            },
        ));
    };
    crm_sync::set_responsible_lead(&st.core, &actor, lead).await?;
    Ok(Redirect::to("/app/crm/settings?ok=saved").into_response())
}

#[derive(Template)]
#[template(path = "app/crm_health.html")]
struct HealthTpl {
    p: Page,
    h: Health,
}

impl HealthTpl {
    /// The provider's error in plain words, with the fix.
    /// What a failed item's error means, in the reader's language. A stopped item never says
    /// "we retry on our own": its retries are over.
    fn explain(&self, e: &Option<String>, status: &str) -> &'static str {
        let e = e.as_deref().unwrap_or("");
        let unreachable = [
            "Connection refused",
            "connect",
            "timed out",
            "dns",
            "error sending request",
        ]
        .iter()
        .any(|m| e.contains(m));
        let key = if unreachable {
            if status == "failed" {
                "crm.why_unreachable_stopped"
            } else {
                "crm.why_unreachable"
            }
        } else if e.contains("402") {
            "crm.why_payment"
        } else if e.contains("403") {
            "crm.why_rights"
        } else if e.contains("validation") || e.contains("field") || e.contains("400") {
            "crm.why_fields"
        } else if e.contains("401") || e.contains("credentials") {
            "crm.why_token"
        } else if e.is_empty() {
            "crm.why_waiting"
        } else if status == "failed" {
            "crm.why_stopped"
        } else {
            "crm.why_temporary"
        };
        self.p.t(key)
    }
}

/// Settings and health before amoCRM is connected: the CRM page, which offers to connect.
fn connect_first() -> Response {
    Redirect::to("/app/crm?ok=crm_connect_first").into_response()
}

async fn health_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    let Some(h) = crm_sync::health(&st.core, &ctx.actor()?).await? else {
        return Ok(connect_first());
    };
    Ok(render(HealthTpl {
        p: Page::new(&ctx, "crm").flash(&q),
        h,
    }))
}

#[derive(serde::Deserialize)]
struct ItemForm {
    id: i64,
}

async fn retry_one(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<ItemForm>,
) -> Result<Response, AppError> {
    crm_sync::retry(&st.core, &ctx.actor()?, Some(f.id)).await?;
    Ok(Redirect::to("/app/crm/health?ok=retrying").into_response())
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn retry_all(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    crm_sync::retry(&st.core, &ctx.actor()?, None).await?;
    Ok(Redirect::to("/app/crm/health?ok=retrying").into_response())
}

async fn reconnect_chats(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    crm_sync::reconnect_chats(&st.core, &ctx.actor()?).await?;
    Ok(Redirect::to("/app/crm/health?ok=retrying").into_response())
}
