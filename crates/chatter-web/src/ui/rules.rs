//! The routing rules page (MISSION R3.4): the ordered list with what each rule checks and does
//! (names from the synced amoCRM account), the form that creates and edits a rule, reordering,
//! turning rules on and off, and the dry run that shows which rule fires and why.

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::i18n::Tr;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::crm::rules::{self, Move};
use chatter_core::crm::{self, integration::Metadata};
use chatter_core::{Actor, CoreError};
use chatter_domain::routing::{Actions, Conditions, Decision, Responsible, Rule, Step, TimeWindow};
use chatter_domain::FieldError;
use chrono::{NaiveTime, Weekday};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/crm/rules", get(list_page).post(create))
        .route("/app/crm/rules/new", get(new_page))
        .route("/app/crm/rules/dry-run", post(dry_run))
        .route("/app/crm/rules/{rule}", get(edit_page).post(update))
        .route("/app/crm/rules/{rule}/delete", post(delete))
        .route("/app/crm/rules/{rule}/move", post(move_rule))
        .route("/app/crm/rules/{rule}/enable", post(enable))
        .route("/app/crm/rules/{rule}/disable", post(disable))
}

const DAYS: [(Weekday, &str, &str); 7] = [
    (Weekday::Mon, "mon", "rules.day_mon"),
    (Weekday::Tue, "tue", "rules.day_tue"),
    (Weekday::Wed, "wed", "rules.day_wed"),
    (Weekday::Thu, "thu", "rules.day_thu"),
    (Weekday::Fri, "fri", "rules.day_fri"),
    (Weekday::Sat, "sat", "rules.day_sat"),
    (Weekday::Sun, "sun", "rules.day_sun"),
];

/// Empty window rows the form offers beyond the rule's own (the form works without script).
const SPARE_WINDOWS: usize = 2;
/// Most window rows a form may send.
const MAX_WINDOWS: usize = 20;

/// Names of what the synced amoCRM account and the company's sources hold.
pub(crate) struct Names {
    pub meta: Metadata,
    pub sources: Vec<(Uuid, String)>,
}

impl Names {
    pub(crate) async fn load(st: &AppState, actor: &Actor) -> Result<Names, CoreError> {
        let meta = crm::get(&st.core, actor)
            .await?
            .map(|(_, m)| m)
            .unwrap_or_default();
        let sources = chatter_core::sources::list(&st.core, actor)
            .await?
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect();
        Ok(Names { meta, sources })
    }

    pub(crate) fn pipeline(&self, id: i64) -> String {
        self.meta
            .pipelines
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| format!("#{id}"))
    }

    pub(crate) fn stage(&self, id: i64) -> String {
        self.meta
            .pipelines
            .iter()
            .flat_map(|p| &p.statuses)
            .find(|s| s.id == id)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| format!("#{id}"))
    }

    pub(crate) fn user(&self, id: i64) -> String {
        self.meta
            .users
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.name.clone())
            .unwrap_or_else(|| format!("#{id}"))
    }

    pub(crate) fn source(&self, id: Uuid) -> String {
        self.sources
            .iter()
            .find(|(s, _)| *s == id)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// "Продажи → Переговоры", or what applies when the rule leaves it to the default.
    fn target(&self, tr: Tr, a: &Actions) -> String {
        let stage = a.status_id.map(|s| self.stage(s));
        match (a.pipeline_id, stage) {
            (Some(p), Some(s)) => format!("{} → {s}", self.pipeline(p)),
            (Some(p), None) => format!("{} → {}", self.pipeline(p), tr.t("rules.first_stage")),
            (None, Some(s)) => s,
            (None, None) => tr.t("rules.from_source").into(),
        }
    }

    fn responsible(&self, tr: Tr, r: &Option<Responsible>) -> String {
        match r {
            None => tr.t("rules.from_source").into(),
            Some(Responsible::User(u)) => self.user(*u),
            Some(Responsible::RoundRobin(us)) => format!(
                "{}: {}",
                tr.t("rules.round_robin"),
                us.iter()
                    .map(|u| self.user(*u))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(Responsible::FirstToAnswer) => tr.t("rules.first_to_answer").into(),
        }
    }

    /// What a rule checks, one line per condition.
    fn conditions(&self, tr: Tr, c: &Conditions) -> Vec<String> {
        let mut out = Vec::new();
        if !c.sources.is_empty() {
            let names: Vec<String> = c.sources.iter().map(|s| self.source(*s)).collect();
            out.push(format!("{}: {}", tr.t("rules.sources"), names.join(", ")));
        }
        if !c.keywords.is_empty() {
            out.push(format!(
                "{}: {}",
                tr.t("rules.keywords"),
                c.keywords.join(", ")
            ));
        }
        if let Some(r) = &c.regex {
            out.push(format!("{}: {r}", tr.t("rules.regex")));
        }
        if !c.exclude.is_empty() {
            out.push(format!(
                "{}: {}",
                tr.t("rules.exclude"),
                c.exclude.join(", ")
            ));
        }
        if !c.windows.is_empty() {
            let spans: Vec<String> = c.windows.iter().map(|w| window_label(tr, w)).collect();
            out.push(format!("{}: {}", tr.t("rules.windows"), spans.join("; ")));
        }
        if out.is_empty() {
            out.push(tr.t("rules.any_message").into());
        }
        out
    }

    /// What a rule (or a decision) does, one line per action.
    fn actions(&self, tr: Tr, a: &Actions) -> Vec<String> {
        let mut out = vec![
            format!("{}: {}", tr.t("rules.pipeline"), self.target(tr, a)),
            format!(
                "{}: {}",
                tr.t("rules.responsible"),
                self.responsible(tr, &a.responsible)
            ),
        ];
        if !a.tags.is_empty() {
            out.push(format!("{}: {}", tr.t("rules.tags"), a.tags.join(", ")));
        }
        out
    }
}

fn window_label(tr: Tr, w: &TimeWindow) -> String {
    let days: Vec<&str> = DAYS
        .iter()
        .filter(|(d, _, _)| w.weekdays.contains(d))
        .map(|(_, _, key)| tr.t(key))
        .collect();
    let hours = if w.from == w.to {
        tr.t("rules.all_day").to_owned()
    } else {
        format!("{}–{}", w.from.format("%H:%M"), w.to.format("%H:%M"))
    };
    format!("{} {hours}", days.join(", "))
}

struct RuleRow {
    id: String,
    name: String,
    enabled: bool,
    conditions: Vec<String>,
    actions: Vec<String>,
    first: bool,
    last: bool,
}

/// The dry run's inputs and, once run, its answer.
#[derive(Default)]
struct DryRunView {
    source: String,
    text: String,
    at: String,
    result: Option<DecisionView>,
}

pub(crate) struct StepView {
    /// skipped | matched | default
    pub kind: &'static str,
    pub rule: String,
    pub lines: Vec<String>,
}

struct DecisionView {
    /// The rule that fired; `None` = the default.
    rule: Option<String>,
    steps: Vec<StepView>,
    actions: Vec<String>,
}

#[derive(Template)]
#[template(path = "rules/list.html")]
struct ListTpl {
    p: Page,
    rows: Vec<RuleRow>,
    sources: Vec<(Uuid, String)>,
    tz: String,
    dry: DryRunView,
    /// Problems with the dry run's inputs.
    errors: Vec<(&'static str, String)>,
}

impl ListTpl {
    fn err(&self, field: &str) -> String {
        field_messages(&self.errors, field)
    }
}

async fn list_tpl(
    st: &AppState,
    ctx: &Ctx,
    dry: DryRunView,
    errors: Vec<(&'static str, String)>,
) -> Result<ListTpl, AppError> {
    let actor = ctx.actor()?;
    let tr = Tr(ctx.lang);
    let list = rules::list(&st.core, &actor).await?;
    let names = Names::load(st, &actor).await?;
    let n = list.len();
    let rows = list
        .into_iter()
        .enumerate()
        .map(|(i, r)| RuleRow {
            conditions: names.conditions(tr, &r.conditions),
            actions: names.actions(tr, &r.actions),
            id: r.id,
            name: r.name,
            enabled: r.enabled,
            first: i == 0,
            last: i + 1 == n,
        })
        .collect();
    let tz = rules::time_zone(&st.core.db, actor.company_id).await?;
    let dry = DryRunView {
        at: if dry.at.is_empty() {
            chrono::DateTime::from_timestamp_millis(st.core.now())
                .map(|t| t.with_timezone(&tz).format("%Y-%m-%dT%H:%M").to_string())
                .unwrap_or_default()
        } else {
            dry.at
        },
        ..dry
    };
    Ok(ListTpl {
        p: Page::new(ctx, "crm"),
        rows,
        sources: names.sources,
        tz: tz.name().to_owned(),
        dry,
        errors,
    })
}

async fn list_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    let mut tpl = list_tpl(&st, &ctx, DryRunView::default(), Vec::new()).await?;
    tpl.p = tpl.p.flash(&q);
    Ok(render(tpl))
}

#[derive(serde::Deserialize)]
struct DryRunForm {
    #[serde(default)]
    source: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    at: String,
}

/// Runs the rules on a pasted message and shows the page with the answer; changes nothing.
async fn dry_run(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<DryRunForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let tr = Tr(ctx.lang);
    let mut dry = DryRunView {
        source: f.source.trim().to_owned(),
        text: f.text,
        at: f.at.trim().to_owned(),
        result: None,
    };
    let outcome = match Uuid::parse_str(&dry.source) {
        Ok(source) => rules::dry_run(&st.core, &actor, source, &dry.text, &dry.at).await,
        Err(_) => Err(CoreError::field("source", "rules.err_source")),
    };
    match outcome {
        Ok(d) => {
            let names = Names::load(&st, &actor).await?;
            dry.result = Some(decision_view(tr, &names, &d));
            Ok(render(list_tpl(&st, &ctx, dry, Vec::new()).await?))
        }
        Err(CoreError::Invalid(errs)) => {
            let errors = errs.iter().map(|e| (e.field, tr.field(e))).collect();
            Ok(render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                list_tpl(&st, &ctx, dry, errors).await?,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

fn decision_view(tr: Tr, names: &Names, d: &Decision) -> DecisionView {
    let steps = steps_view(tr, &d.explanation);
    let rule = d.explanation.iter().find_map(|s| match s {
        Step::Matched { rule, .. } => Some(rule.clone()),
        _ => None,
    });
    DecisionView {
        rule,
        steps,
        actions: names.actions(tr, &d.actions),
    }
}

pub(crate) fn steps_view(tr: Tr, steps: &[Step]) -> Vec<StepView> {
    steps
        .iter()
        .map(|s| match s {
            Step::Skipped { rule, reason } => StepView {
                kind: "skipped",
                rule: rule.clone(),
                lines: vec![reason_text(tr, reason)],
            },
            Step::Matched { rule, why } => StepView {
                kind: "matched",
                rule: rule.clone(),
                lines: why.iter().map(|w| reason_text(tr, w)).collect(),
            },
            Step::Default => StepView {
                kind: "default",
                rule: tr.t("rules.default").into(),
                lines: vec![tr.t("rules.default_why").into()],
            },
        })
        .collect()
}

/// The domain's explanation (English) in the reader's language: known phrases are
/// translated, the words and times they quote are kept.
fn reason_text(tr: Tr, reason: &str) -> String {
    const WHOLE: &[(&str, &str)] = &[
        ("disabled", "rules.why_disabled"),
        ("source not in the set", "rules.why_source_not"),
        ("source in the set", "rules.why_source"),
        ("no exclusion present", "rules.why_no_exclusion"),
        (
            "no conditions: matches every message",
            "rules.why_no_conditions",
        ),
        ("no keyword matched", "rules.why_no_keyword"),
        ("the regex did not match", "rules.why_no_regex"),
        (
            "neither a keyword nor the regex matched",
            "rules.why_neither",
        ),
    ];
    const PREFIX: &[(&str, &str)] = &[
        ("outside working hours (", "rules.why_outside"),
        ("within working hours (", "rules.why_within"),
        ("excluded by ", "rules.why_excluded"),
        ("keyword ", "rules.why_keyword"),
        ("regex ", "rules.why_regex"),
        ("invalid rule: ", "rules.why_invalid"),
    ];
    if let Some((_, key)) = WHOLE.iter().find(|(en, _)| *en == reason) {
        return tr.t(key).into();
    }
    for (en, key) in PREFIX {
        if let Some(rest) = reason.strip_prefix(en) {
            let rest = rest
                .replacen(
                    "» matched «",
                    &format!("» {} «", tr.t("rules.why_matched")),
                    1,
                )
                .replacen(
                    "; the message came ",
                    &format!("; {} ", tr.t("rules.why_came")),
                    1,
                );
            let open = if en.ends_with('(') { " (" } else { " " };
            return format!("{}{open}{rest}", tr.t(key));
        }
    }
    reason.into()
}

// ---- the form ----

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

fn field_messages(errors: &[(&'static str, String)], field: &str) -> String {
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

async fn new_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, AppError> {
    ctx.actor()?.require(chatter_domain::Permission::Manage)?;
    Ok(render(
        form_tpl(&st, &ctx, RuleForm::new_rule(), Vec::new()).await?,
    ))
}

async fn edit_page(
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

async fn create(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let mut f = RuleForm::parse(pairs);
    f.id = String::new();
    save(&st, &ctx, f).await
}

async fn update(
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

#[derive(serde::Deserialize)]
struct Empty {}

#[derive(serde::Deserialize)]
struct MoveForm {
    #[serde(default)]
    dir: String,
}

async fn delete(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    rules::delete(&st.core, &ctx.actor()?, &id).await?;
    Ok(Redirect::to("/app/crm/rules?ok=removed").into_response())
}

async fn move_rule(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<MoveForm>,
) -> Result<Response, AppError> {
    let to = match f.dir.as_str() {
        "up" => Move::Up,
        "down" => Move::Down,
        _ => return Err(CoreError::field("dir", "err.invalid").into()),
    };
    rules::move_rule(&st.core, &ctx.actor()?, &id, to).await?;
    Ok(Redirect::to("/app/crm/rules").into_response())
}

async fn enable(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    rules::set_enabled(&st.core, &ctx.actor()?, &id, true).await?;
    Ok(Redirect::to("/app/crm/rules").into_response())
}

async fn disable(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    rules::set_enabled(&st.core, &ctx.actor()?, &id, false).await?;
    Ok(Redirect::to("/app/crm/rules").into_response())
}
