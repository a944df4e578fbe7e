//! The form that creates and edits a routing rule: reading the posted fields (checkbox groups,
//! numbered time-window rows), turning them into a `Rule` or field errors in the person's
//! language, and saving it.

use super::{render, render_status, Names, Page, DAYS};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::i18n::Tr;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chatter_core::crm::{integration::Metadata, rules};
use chatter_core::CoreError;
use chatter_domain::routing::{Actions, Conditions, Responsible, Rule, TimeWindow};
use chatter_domain::FieldError;
use chrono::NaiveTime;
use uuid::Uuid;

/// Empty window rows the form offers beyond the rule's own (the form works without script).
const SPARE_WINDOWS: usize = 2;
/// Most window rows a form may send.
const MAX_WINDOWS: usize = 20;

struct WindowRow {
    days: Vec<&'static str>,
    from: String,
    to: String,
}

/// The form as the person filled it (kept when it is refused).
struct RuleForm {
    id: String,
    name: String,
    enabled: bool,
    sources: Vec<String>,
    keywords: String,
    regex: String,
    exclude: String,
    windows: Vec<WindowRow>,
    pipeline: String,
    stage: String,
    responsible: String,
    user: String,
    rr_users: Vec<String>,
    tags: String,
}

impl RuleForm {
    fn new_rule() -> RuleForm {
        RuleForm {
            id: String::new(),
            name: String::new(),
            enabled: true,
            sources: Vec::new(),
            keywords: String::new(),
            regex: String::new(),
            exclude: String::new(),
            windows: Vec::new(),
            pipeline: String::new(),
            stage: String::new(),
            responsible: "none".into(),
            user: String::new(),
            rr_users: Vec::new(),
            tags: String::new(),
        }
        .with_spare_windows()
    }

    fn of(rule: &Rule) -> RuleForm {
        let c = &rule.conditions;
        let a = &rule.actions;
        let (responsible, user, rr_users) = match &a.responsible {
            None => ("none", String::new(), Vec::new()),
            Some(Responsible::User(u)) => ("user", u.to_string(), Vec::new()),
            Some(Responsible::RoundRobin(us)) => (
                "round_robin",
                String::new(),
                us.iter().map(|u| u.to_string()).collect(),
            ),
            Some(Responsible::FirstToAnswer) => ("first", String::new(), Vec::new()),
        };
        RuleForm {
            id: rule.id.clone(),
            name: rule.name.clone(),
            enabled: rule.enabled,
            sources: c.sources.iter().map(|s| s.to_string()).collect(),
            keywords: c.keywords.join("\n"),
            regex: c.regex.clone().unwrap_or_default(),
            exclude: c.exclude.join("\n"),
            windows: c
                .windows
                .iter()
                .map(|w| WindowRow {
                    days: DAYS
                        .iter()
                        .filter(|(d, _, _)| w.weekdays.contains(d))
                        .map(|(_, code, _)| *code)
                        .collect(),
                    from: w.from.format("%H:%M").to_string(),
                    to: w.to.format("%H:%M").to_string(),
                })
                .collect(),
            pipeline: a.pipeline_id.map(|p| p.to_string()).unwrap_or_default(),
            stage: a.status_id.map(|s| s.to_string()).unwrap_or_default(),
            responsible: responsible.into(),
            user,
            rr_users,
            tags: a.tags.join(", "),
        }
        .with_spare_windows()
    }

    fn with_spare_windows(mut self) -> RuleForm {
        self.windows.retain(|w| !w.is_empty());
        for _ in 0..SPARE_WINDOWS {
            self.windows.push(WindowRow {
                days: Vec::new(),
                from: String::new(),
                to: String::new(),
            });
        }
        self
    }

    /// Reads the posted fields (checkbox groups repeat their name).
    fn parse(pairs: Vec<(String, String)>) -> RuleForm {
        let mut f = RuleForm {
            enabled: false,
            responsible: "none".into(),
            ..RuleForm::new_rule()
        };
        f.windows.clear();
        for (k, v) in pairs {
            match k.as_str() {
                "id" => f.id = v,
                "name" => f.name = v,
                "enabled" => f.enabled = !v.is_empty(),
                "source" => f.sources.push(v),
                "keywords" => f.keywords = v,
                "regex" => f.regex = v,
                "exclude" => f.exclude = v,
                "pipeline" => f.pipeline = v,
                "stage" => f.stage = v,
                "responsible" => f.responsible = v,
                "user" => f.user = v,
                "rr_user" => f.rr_users.push(v),
                "tags" => f.tags = v,
                _ => {
                    // w{i}_day, w{i}_from, w{i}_to
                    let Some((i, part)) = k
                        .strip_prefix('w')
                        .and_then(|r| r.split_once('_'))
                        .and_then(|(i, part)| Some((i.parse::<usize>().ok()?, part)))
                    else {
                        continue;
                    };
                    if i >= MAX_WINDOWS {
                        continue;
                    }
                    while f.windows.len() <= i {
                        f.windows.push(WindowRow {
                            days: Vec::new(),
                            from: String::new(),
                            to: String::new(),
                        });
                    }
                    let w = &mut f.windows[i];
                    match part {
                        "day" => {
                            if let Some((_, code, _)) = DAYS.iter().find(|(_, c, _)| *c == v) {
                                w.days.push(code);
                            }
                        }
                        "from" => w.from = v,
                        "to" => w.to = v,
                        _ => {}
                    }
                }
            }
        }
        f
    }

    /// The rule the form describes, or what in it cannot be read.
    fn to_rule(&self) -> Result<Rule, Vec<FieldError>> {
        let mut errors = Vec::new();
        let lines = |s: &str| -> Vec<String> {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut sources = Vec::new();
        for s in &self.sources {
            match Uuid::parse_str(s) {
                Ok(id) => sources.push(id),
                Err(_) => errors.push(FieldError::new("conditions.sources", "rules.err_source")),
            }
        }
        let mut windows = Vec::new();
        for w in self.windows.iter().filter(|w| !w.is_empty()) {
            let time = |s: &str| match s.trim() {
                "" => Some(NaiveTime::MIN),
                t => NaiveTime::parse_from_str(t, "%H:%M").ok(),
            };
            match (time(&w.from), time(&w.to)) {
                (Some(from), Some(to)) => windows.push(TimeWindow {
                    weekdays: DAYS
                        .iter()
                        .filter(|(_, code, _)| w.days.contains(code))
                        .map(|(d, _, _)| *d)
                        .collect(),
                    from,
                    to,
                }),
                _ => errors.push(FieldError::new("conditions.windows", "rules.err_time")),
            }
        }
        let number = |s: &str, field: &'static str, errors: &mut Vec<FieldError>| match s.trim() {
            "" => None,
            n => match n.parse::<i64>() {
                Ok(v) => Some(v),
                Err(_) => {
                    errors.push(FieldError::new(field, "err.invalid"));
                    None
                }
            },
        };
        let pipeline_id = number(&self.pipeline, "actions.pipeline_id", &mut errors);
        let status_id = number(&self.stage, "actions.status_id", &mut errors);
        let responsible = match self.responsible.as_str() {
            "user" => match number(&self.user, "actions.responsible", &mut errors) {
                Some(u) => Some(Responsible::User(u)),
                None => {
                    errors.push(FieldError::new(
                        "actions.responsible",
                        "rules.err_user_pick",
                    ));
                    None
                }
            },
            "round_robin" => {
                let mut users = Vec::new();
                for u in &self.rr_users {
                    users.extend(number(u, "actions.responsible", &mut errors));
                }
                Some(Responsible::RoundRobin(users))
            }
            "first" => Some(Responsible::FirstToAnswer),
            _ => None,
        };
        let regex = Some(self.regex.trim().to_owned()).filter(|r| !r.is_empty());
        let rule = Rule {
            id: self.id.trim().to_owned(),
            name: self.name.trim().to_owned(),
            enabled: self.enabled,
            conditions: Conditions {
                sources,
                keywords: lines(&self.keywords),
                regex,
                exclude: lines(&self.exclude),
                windows,
            },
            actions: Actions {
                pipeline_id,
                status_id,
                responsible,
                tags: self
                    .tags
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
        };
        if errors.is_empty() {
            Ok(rule)
        } else {
            Err(errors)
        }
    }
}

impl RuleForm {
    /// Whether a checkbox group's values include `value`.
    fn shows(&self, values: &[String], value: impl std::fmt::Display) -> bool {
        let value = value.to_string();
        values.contains(&value)
    }
}

impl WindowRow {
    fn is_empty(&self) -> bool {
        self.days.is_empty() && self.from.trim().is_empty() && self.to.trim().is_empty()
    }

    fn has(&self, code: &str) -> bool {
        self.days.contains(&code)
    }
}

#[derive(Template)]
#[template(path = "rules/form.html")]
struct FormTpl {
    p: Page,
    f: RuleForm,
    meta: Metadata,
    sources: Vec<(Uuid, String)>,
    /// (field, message), in the person's language.
    errors: Vec<(&'static str, String)>,
}

impl FormTpl {
    fn err(&self, field: &str) -> String {
        field_messages(&self.errors, field)
    }

    fn days(&self) -> Vec<(&'static str, &'static str)> {
        DAYS.iter()
            .map(|(_, code, key)| (*code, self.p.t(key)))
            .collect()
    }
}

pub(super) fn field_messages(errors: &[(&'static str, String)], field: &str) -> String {
    errors
        .iter()
        .filter(|(f, _)| *f == field)
        .map(|(_, m)| m.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn form_tpl(
    st: &AppState,
    ctx: &Ctx,
    f: RuleForm,
    errors: Vec<(&'static str, String)>,
) -> Result<FormTpl, AppError> {
    let actor = ctx.actor()?;
    let names = Names::load(st, &actor).await?;
    Ok(FormTpl {
        p: Page::new(ctx, "crm"),
        f,
        meta: names.meta,
        sources: names.sources,
        errors,
    })
}

pub(super) async fn new_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, AppError> {
    ctx.actor()?.require(chatter_domain::Permission::Manage)?;
    Ok(render(
        form_tpl(&st, &ctx, RuleForm::new_rule(), Vec::new()).await?,
    ))
}

pub(super) async fn edit_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    actor.require(chatter_domain::Permission::Manage)?;
    let rule = rules::get(&st.core, &actor, &id).await?;
    Ok(render(
        form_tpl(&st, &ctx, RuleForm::of(&rule), Vec::new()).await?,
    ))
}

pub(super) async fn create(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let mut f = RuleForm::parse(pairs);
    f.id = String::new();
    save(&st, &ctx, f).await
}

pub(super) async fn update(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    // Editing a rule that is gone (deleted meanwhile, or another company's) is not creating one.
    rules::get(&st.core, &actor, &id).await?;
    actor.require(chatter_domain::Permission::Manage)?;
    let mut f = RuleForm::parse(pairs);
    f.id = id;
    save(&st, &ctx, f).await
}

async fn save(st: &AppState, ctx: &Ctx, f: RuleForm) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let tr = Tr(ctx.lang);
    let refused = match f.to_rule() {
        Ok(rule) => match rules::save(&st.core, &actor, rule.clone()).await {
            Ok(_) => return Ok(Redirect::to("/app/crm/rules?ok=saved").into_response()),
            Err(CoreError::Invalid(errs)) => messages(tr, &errs, &rules::problems(&rule)),
            Err(e) => return Err(e.into()),
        },
        Err(errs) => {
            // Permission first: a refused form must not tell a viewer more than a 403 would.
            actor.require(chatter_domain::Permission::Manage)?;
            messages(tr, &errs, &[])
        }
    };
    let f = f.with_spare_windows();
    Ok(render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        form_tpl(st, ctx, f, refused).await?,
    ))
}

/// Field errors in the person's language, with the details the domain gives: where a regex
/// breaks, which keyword or window is wrong.
fn messages(
    tr: Tr,
    errs: &[FieldError],
    problems: &[chatter_domain::routing::RuleError],
) -> Vec<(&'static str, String)> {
    errs.iter()
        .map(|e| {
            let mut details = Vec::new();
            // The domain's details explain its own refusals, not a limit or a character.
            let own = e.key.starts_with("rules.");
            for p in problems.iter().filter(|p| own && p.field == e.field) {
                let detail = match (p.field, p.position) {
                    ("conditions.regex", Some(_)) => {
                        // The domain says "<what> (at character N)"; N is a 1-based column.
                        let (what, at) = p
                            .message
                            .rsplit_once(" (at character ")
                            .map(|(w, n)| (w, n.trim_end_matches(')')))
                            .unwrap_or((p.message.as_str(), "?"));
                        format!("{} {at}: {what}", tr.t("rules.at_character"))
                    }
                    ("conditions.regex", None) => p.message.clone(),
                    (_, Some(i)) => format!("{} {}", tr.t("rules.item"), i + 1),
                    (_, None) => continue,
                };
                details.push(detail);
            }
            let m = tr.field(e);
            if details.is_empty() {
                (e.field, m)
            } else {
                let m = m.trim_end_matches('.');
                (e.field, format!("{m} ({}).", details.join("; ")))
            }
        })
        .collect()
}
