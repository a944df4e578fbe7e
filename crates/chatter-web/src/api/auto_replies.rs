//! Auto-replies (`/auto-replies`): the company's ordered rules — list, create, read, replace,
//! delete — and the dry run of a saved rule or of an unsaved body against the last N days of
//! real conversations. Each calls the core function the Automation page calls, so the checks
//! and the audit entries are the same.

use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, ApiPath};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_core::automation::replies::{self, dry_run, RuleView};
use chatter_domain::auto_reply::{Action, AutoReply, TextMatch, Trigger, WaTemplate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What makes a rule fire.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TriggerIo {
    /// A customer writes while the source's working hours (its own, else the company's) say
    /// closed.
    OutOfHours,
    /// The message matches `conditions` (keywords or regex required).
    Keywords,
    /// The first message of a new conversation.
    FirstMessage,
    /// No manager answered within `minutes` (1 to 10080 = 7 days).
    NoAnswer {
        #[schema(minimum = 1, maximum = 10080)]
        minutes: u32,
        /// Count only working hours.
        #[serde(default)]
        working_hours_only: bool,
    },
}

/// Text conditions, by the routing rules' matcher: stems («цена» finds «цены»), phrases, a
/// case-insensitive regex, exclusions. Empty: any text.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ConditionsIo {
    pub keywords: Vec<String>,
    pub regex: Option<String>,
    pub exclude: Vec<String>,
}

/// What a fired rule does.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionIo {
    /// Sends `text`, or the company-wide reply template `template_id` (one of the two), to the
    /// customer, marked automatic. The text (a template's too) may name the conversation's
    /// values: `{client_name}`, `{company_name}`, `{manager_name}` (the assignee),
    /// `{source_name}`, `{deal_id}`, each with an optional fallback (`{client_name|клиент}`);
    /// an unclosed brace or an unknown name is a 422 on `reply`. A template's file goes as the
    /// reply's attachment where the kind takes files; on a kind that does not (SMS) the text
    /// goes alone and the firing records `file_not_sent_kind`. Outside WhatsApp's 24-hour
    /// window `whatsapp_template` goes instead (recorded `whatsapp_template`); without one the
    /// reply is skipped (recorded `reply_window_closed`).
    Reply {
        #[serde(default)]
        #[schema(max_length = 4000)]
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template_id: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        whatsapp_template: Option<WaTemplateIo>,
    },
    /// Assigns to the one person, or to several in turn (round robin); members who may reply.
    Assign { users: Vec<Uuid> },
    /// Puts these company labels on the conversation.
    AddLabels { labels: Vec<Uuid> },
    /// Moves the conversation's amoCRM deal to `status_id` (of `pipeline_id`, else its own
    /// pipeline); a stage of the connected account's pipelines.
    MoveDeal {
        #[serde(default)]
        pipeline_id: Option<i64>,
        status_id: i64,
    },
    /// Notifies these members in the inbox (empty: everyone who reads the inbox); with `email`,
    /// also by e-mail, in each person's language with a link to the conversation (empty
    /// `users`: the company's owners and admins).
    Notify {
        #[serde(default)]
        users: Vec<Uuid>,
        #[serde(default)]
        email: bool,
    },
}

/// An approved WhatsApp message template (made in Meta's WhatsApp Manager), sent instead of the
/// reply once the customer's 24-hour window is closed.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WaTemplateIo {
    /// Its name: lower-case letters, digits, `_`.
    #[schema(
        example = "order_update",
        min_length = 1,
        max_length = 512,
        pattern = "^[a-z0-9_]+$"
    )]
    pub name: String,
    /// Its language code.
    #[schema(
        example = "ru",
        min_length = 2,
        max_length = 15,
        pattern = "^[A-Za-z_]+$"
    )]
    pub language: String,
    /// The body's `{{1}}`, `{{2}}`… in order, each a text that may name the conversation's
    /// values (`{client_name|клиент}`); at most 10.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub params: Vec<String>,
}

/// An auto-reply rule.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AutoReplyIn {
    #[schema(example = "Нерабочее время", min_length = 1, max_length = 80)]
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Source ids; empty: every source.
    #[serde(default)]
    pub sources: Vec<Uuid>,
    pub trigger: TriggerIo,
    #[serde(default)]
    pub conditions: ConditionsIo,
    /// One or more.
    pub actions: Vec<ActionIo>,
    /// At most once per conversation per this many minutes, up to a year (0: no limit but the
    /// loop guard);
    /// absent: out of hours once a day, keywords once an hour, no answer per message.
    #[schema(minimum = 0, maximum = 525600)]
    pub once_per_minutes: Option<u32>,
    /// At most once per conversation ever (the first-message trigger's default).
    #[serde(default)]
    pub once_ever: bool,
}

fn yes() -> bool {
    true
}

/// A stored rule.
#[derive(Serialize, ToSchema)]
pub struct AutoReplyOut {
    pub id: Uuid,
    /// Its place in the order, from 1; the first rule that fires wins.
    pub position: i64,
    #[serde(flatten)]
    pub rule: AutoReplyIn,
}

impl From<AutoReplyIn> for AutoReply {
    fn from(b: AutoReplyIn) -> AutoReply {
        AutoReply {
            name: b.name,
            enabled: b.enabled,
            sources: b.sources,
            trigger: match b.trigger {
                TriggerIo::OutOfHours => Trigger::OutOfHours,
                TriggerIo::Keywords => Trigger::Keywords,
                TriggerIo::FirstMessage => Trigger::FirstMessage,
                TriggerIo::NoAnswer {
                    minutes,
                    working_hours_only,
                } => Trigger::NoAnswer {
                    minutes,
                    working_hours_only,
                },
            },
            conditions: TextMatch {
                keywords: b.conditions.keywords,
                regex: b.conditions.regex,
                exclude: b.conditions.exclude,
            },
            actions: b
                .actions
                .into_iter()
                .map(|a| match a {
                    ActionIo::Reply {
                        text,
                        template_id,
                        whatsapp_template,
                    } => Action::Reply {
                        text,
                        template_id,
                        whatsapp_template: whatsapp_template.map(|w| WaTemplate {
                            name: w.name,
                            language: w.language,
                            params: w.params,
                        }),
                    },
                    ActionIo::Assign { users } => Action::Assign { users },
                    ActionIo::AddLabels { labels } => Action::AddLabels { labels },
                    ActionIo::MoveDeal {
                        pipeline_id,
                        status_id,
                    } => Action::MoveDeal {
                        pipeline_id,
                        status_id,
                    },
                    ActionIo::Notify { users, email } => Action::Notify { users, email },
                })
                .collect(),
            once_per_minutes: b.once_per_minutes,
            once_ever: b.once_ever,
        }
    }
}

fn out(v: RuleView) -> AutoReplyOut {
    let r = v.rule;
    AutoReplyOut {
        id: v.id,
        position: v.position,
        rule: AutoReplyIn {
            name: r.name,
            enabled: r.enabled,
            sources: r.sources,
            trigger: match r.trigger {
                Trigger::OutOfHours => TriggerIo::OutOfHours,
                Trigger::Keywords => TriggerIo::Keywords,
                Trigger::FirstMessage => TriggerIo::FirstMessage,
                Trigger::NoAnswer {
                    minutes,
                    working_hours_only,
                } => TriggerIo::NoAnswer {
                    minutes,
                    working_hours_only,
                },
            },
            conditions: ConditionsIo {
                keywords: r.conditions.keywords,
                regex: r.conditions.regex,
                exclude: r.conditions.exclude,
            },
            actions: r
                .actions
                .into_iter()
                .map(|a| match a {
                    Action::Reply {
                        text,
                        template_id,
                        whatsapp_template,
                    } => ActionIo::Reply {
                        text,
                        template_id,
                        whatsapp_template: whatsapp_template.map(|w| WaTemplateIo {
                            name: w.name,
                            language: w.language,
                            params: w.params,
                        }),
                    },
                    Action::Assign { users } => ActionIo::Assign { users },
                    Action::AddLabels { labels } => ActionIo::AddLabels { labels },
                    Action::MoveDeal {
                        pipeline_id,
                        status_id,
                    } => ActionIo::MoveDeal {
                        pipeline_id,
                        status_id,
                    },
                    Action::Notify { users, email } => ActionIo::Notify { users, email },
                })
                .collect(),
            once_per_minutes: r.once_per_minutes,
            once_ever: r.once_ever,
        },
    }
}

const RULE_422: &str = "the body is not JSON or does not match the schema, or a field is refused: `name` (`auto_name_required`, `too_long`), `actions` (`auto_action_required`: a rule needs an action), `delay` (`auto_delay_range`: 1 minute to 7 days), `keywords` (`auto_keywords_required`, `auto_no_words`), `regex` (`auto_regex`), `exclude` (`auto_no_words`), `reply` (`auto_reply_empty`, `too_long`, `auto_reply_text_or_template`: both a text and a template), `template` (`auto_template_unknown`: not a company-wide template of this company), `wa_template` (`auto_wa_name`), `wa_language` (`auto_wa_language`), `wa_params` (`too_many`, `wa_template_params`: an empty one, or a variable refused as in `reply`), `sources` (`auto_source_unknown`), `assign` / `notify` (`auto_user_unknown`), `labels` (`label_unknown`), `stage` (`auto_stage_unknown`: not a stage of the connected amoCRM's pipelines)";

/// The company's auto-reply rules, in order.
#[utoipa::path(get, path = "/api/v1/auto-replies", tag = "automation",
    responses((status = 200, body = Vec<AutoReplyOut>), (status = 401, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn list_auto_replies(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
) -> Result<Json<Vec<AutoReplyOut>>, ApiError> {
    let rules = replies::list(&st.core, &a).await?;
    Ok(Json(rules.into_iter().map(out).collect()))
}

/// Adds a rule at the end of the order. Checked whole: nothing is stored when a field is
/// refused.
#[utoipa::path(post, path = "/api/v1/auto-replies", tag = "automation", request_body = AutoReplyIn,
    responses((status = 201, body = AutoReplyOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = RULE_422)))]
pub async fn create_auto_reply(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiJson(b): ApiJson<AutoReplyIn>,
) -> Result<Response, ApiError> {
    let v = replies::create(&st.core, &a, b.into()).await?;
    Ok((StatusCode::CREATED, Json(out(v))).into_response())
}

/// One rule.
#[utoipa::path(get, path = "/api/v1/auto-replies/{id}", tag = "automation",
    params(("id" = Uuid, Path, description = "rule id")),
    responses((status = 200, body = AutoReplyOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such rule in this company")))]
pub async fn get_auto_reply(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<AutoReplyOut>, ApiError> {
    Ok(Json(out(replies::get(&st.core, &a, id).await?)))
}

/// Replaces a rule (its place in the order stays).
#[utoipa::path(put, path = "/api/v1/auto-replies/{id}", tag = "automation", request_body = AutoReplyIn,
    params(("id" = Uuid, Path, description = "rule id")),
    responses((status = 200, body = AutoReplyOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such rule in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = RULE_422)))]
pub async fn put_auto_reply(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<AutoReplyIn>,
) -> Result<Json<AutoReplyOut>, ApiError> {
    Ok(Json(
        out(replies::update(&st.core, &a, id, b.into()).await?),
    ))
}

/// Deletes a rule; its pending "no answer" timers do nothing.
#[utoipa::path(delete, path = "/api/v1/auto-replies/{id}", tag = "automation",
    params(("id" = Uuid, Path, description = "rule id")),
    responses((status = 204, description = "deleted"), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such rule in this company")))]
pub async fn delete_auto_reply(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    replies::delete(&st.core, &a, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How far back a dry run looks; with a rule body, the rule to try instead of the saved one.
#[derive(Deserialize, ToSchema)]
pub struct AutoReplyDryRunIn {
    /// 1 to 90.
    #[schema(minimum = 1, maximum = 90, example = 7)]
    pub days: u32,
    /// A rule being edited (for `POST /api/v1/auto-replies/dry-run`; ignored with an id).
    pub rule: Option<AutoReplyIn>,
}

/// A customer message the rule would have answered.
#[derive(Serialize, ToSchema)]
pub struct DryRunHitOut {
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub customer: String,
    pub text: String,
    /// When the rule would have acted (RFC 3339).
    pub at: String,
    pub reply: Option<String>,
    /// The conversation in the inbox.
    pub link: String,
}

/// What a rule would have done over the last `days`; nothing was sent or recorded.
#[derive(Serialize, ToSchema)]
pub struct AutoReplyDryRunOut {
    pub days: u32,
    pub looked_at: usize,
    pub hits: Vec<DryRunHitOut>,
    /// Hits per UTC day (`YYYY-MM-DD`).
    pub per_day: std::collections::BTreeMap<String, usize>,
}

fn dry_out(d: dry_run::DryRun) -> AutoReplyDryRunOut {
    AutoReplyDryRunOut {
        days: d.days,
        looked_at: d.looked_at,
        per_day: d.per_day,
        hits: d
            .hits
            .into_iter()
            .map(|h| DryRunHitOut {
                conversation_id: h.conversation_id.0,
                message_id: h.message_id.0,
                link: format!("/app/inbox/{}", h.conversation_id),
                customer: h.customer,
                text: h.text,
                at: chrono::DateTime::from_timestamp_millis(h.at)
                    .unwrap_or_default()
                    .to_rfc3339(),
                reply: h.reply,
            })
            .collect(),
    }
}

/// The dry run of a saved rule against the last `days` of real conversations.
#[utoipa::path(post, path = "/api/v1/auto-replies/{id}/dry-run", tag = "automation", request_body = AutoReplyDryRunIn,
    params(("id" = Uuid, Path, description = "rule id")),
    responses((status = 200, body = AutoReplyDryRunOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such rule in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`days` is not 1 to 90 (`auto_days_range`)")))]
pub async fn dry_run_auto_reply(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<AutoReplyDryRunIn>,
) -> Result<Json<AutoReplyDryRunOut>, ApiError> {
    let v = replies::get(&st.core, &a, id).await?;
    // A rule sent along is not used with an id, but a malformed one is still refused.
    if let Some(rule) = b.rule {
        chatter_domain::auto_reply::AutoReply::from(rule)
            .check()
            .map_err(chatter_core::CoreError::Invalid)?;
    }
    let d = dry_run::dry_run(&st.core, &a, &v.rule, b.days).await?;
    Ok(Json(dry_out(d)))
}

/// The dry run of an unsaved rule (`rule`, required) against the last `days`.
#[utoipa::path(post, path = "/api/v1/auto-replies/dry-run", tag = "automation", request_body = AutoReplyDryRunIn,
    responses((status = 200, body = AutoReplyDryRunOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`days` is not 1 to 90 (`auto_days_range`), `rule` is missing (`auto_rule_required`), or a field of the rule is refused as on create")))]
pub async fn dry_run_body(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiJson(b): ApiJson<AutoReplyDryRunIn>,
) -> Result<Json<AutoReplyDryRunOut>, ApiError> {
    let Some(rule) = b.rule else {
        return Err(chatter_core::CoreError::field("rule", "err.auto_rule_required").into());
    };
    let d = dry_run::dry_run(&st.core, &a, &rule.into(), b.days).await?;
    Ok(Json(dry_out(d)))
}
