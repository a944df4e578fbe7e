//! The routing rules (requirement R3.4) as the API shows them, with the names of what they refer to
//! in the synced amoCRM account, and the dry run that says which rule would fire and why.

use super::page::{page_types, Listed, PageQuery, Paged, Paging, Position};
use super::{ApiActor, ApiError, ApiErrorBody, ApiJson, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_core::CoreError;
use chatter_domain::SourceId;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A routing rule (requirement R3.4), in the order the rules are tried.
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

page_types!(RulePage, RulesOut, RuleOut, "routing rules");

/// The company's routing rules, in the order they are tried. With `cursor`: pages of `limit`
/// (a rule moved or added while a client walks the pages is placed by its position then).
#[utoipa::path(get, path = "/api/v1/routing-rules", tag = "routing", params(PageQuery),
    responses((status = 200, body = RulesOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "the query string does not parse (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`limit` is not between 1 and 500, or `cursor` is not one this list gave")))]
pub async fn routing_rules(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let paging = match q.paging() {
        Ok(p) => p,
        Err(r) => return Ok(r.into_response()),
    };
    let rules = chatter_core::crm::rules::list(&st.core, &a).await?;
    // A cursor names the last rule seen: the next page starts after it wherever it now is (or
    // at its old position when it was deleted).
    let start = match paging.after() {
        None => 0,
        Some(p) => match rules
            .iter()
            .position(|r| Uuid::parse_str(&r.id).ok() == Some(p.id))
        {
            Some(i) => i + 1,
            None => usize::try_from(p.key.max(0))
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        },
    };
    let positioned: Vec<(usize, chatter_domain::routing::Rule)> =
        rules.into_iter().enumerate().skip(start).collect();
    let position = |(i, r): &(usize, chatter_domain::routing::Rule)| {
        Position::new(
            i64::try_from(*i).unwrap_or(i64::MAX),
            Uuid::parse_str(&r.id).unwrap_or_default(),
        )
    };
    let names = crate::ui::rules::Names::load(&st, &a).await?;
    let out = |v: Vec<(usize, chatter_domain::routing::Rule)>| -> Vec<RuleOut> {
        v.into_iter().map(|(_, r)| rule_out(&names, r)).collect()
    };
    Ok(match paging {
        Paging::Legacy { limit } => {
            let mut v = positioned;
            if let Some(l) = limit {
                v.truncate(usize::try_from(l).unwrap_or(usize::MAX));
            }
            Listed::All(out(v))
        }
        Paging::Page { limit, .. } => {
            let rows: Vec<_> = positioned
                .into_iter()
                .take(usize::try_from(limit + 1).unwrap_or(usize::MAX))
                .collect();
            let page = Paged::cut(rows, limit, position);
            Listed::Page(Paged {
                items: out(page.items),
                next_cursor: page.next_cursor,
            })
        }
    }
    .into_response())
}

fn rule_out(names: &crate::ui::rules::Names, r: chatter_domain::routing::Rule) -> RuleOut {
    let c = r.conditions;
    RuleOut {
        actions: actions_out(names, &r.actions),
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
        SourceId(b.source_id),
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
