//! Auto-replies on the Automation page: the ordered list (`/app/automation/replies`: on/off,
//! up/down, delete), the editor of one rule (new or saved) and its dry run against the last N
//! days of real conversations, shown under the editor without saving anything.

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::automation::replies::{self, dry_run, RuleView};
use chatter_core::CoreError;
use chatter_domain::auto_reply::{Action, AutoReply, TextMatch, Trigger, WaTemplate};
use chatter_domain::{FieldError, Permission};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/automation/replies", get(list_page).post(create))
        .route("/app/automation/replies/new", get(new_page))
        .route("/app/automation/replies/{id}", get(edit_page).post(save))
        .route("/app/automation/replies/{id}/toggle", post(toggle))
        .route("/app/automation/replies/{id}/move", post(move_rule))
        .route("/app/automation/replies/{id}/delete", post(delete))
}

/// One row of the list.
pub struct Row {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    /// The trigger, in the page's language.
    pub trigger: String,
    pub reply: String,
}

#[derive(Template)]
#[template(path = "app/auto_replies.html")]
struct ListTpl {
    p: Page,
    rows: Vec<Row>,
}

fn trigger_text(p: &Page, t: &Trigger) -> String {
    match t {
        Trigger::NoAnswer { minutes, .. } => {
            format!(
                "{} · {minutes} {}",
                p.t("auto.trigger.no_answer"),
                p.t("auto.minutes")
            )
        }
        other => p.t(&format!("auto.trigger.{}", other.name())).to_owned(),
    }
}

async fn list_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(f): Query<Flash>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let rules = replies::list(&st.core, &actor).await?;
    let p = Page::new(&ctx, "automation").flash(&f);
    let titles = company_templates(&st, &actor).await?;
    let rows = rules
        .into_iter()
        .map(|v| Row {
            id: v.id,
            trigger: trigger_text(&p, &v.rule.trigger),
            reply: match v.rule.reply_template() {
                Some(t) => format!(
                    "{}: {}",
                    p.t("auto.list_template"),
                    titles
                        .iter()
                        .find(|(id, _)| *id == t)
                        .map(|(_, n)| n.as_str())
                        .unwrap_or_default()
                ),
                None => v.rule.reply_text().unwrap_or_default().to_owned(),
            }
            .chars()
            .take(80)
            .collect(),
            name: v.rule.name,
            enabled: v.rule.enabled,
        })
        .collect();
    Ok(render(ListTpl { p, rows }))
}

/// The editor's values as typed.
#[derive(Default)]
pub struct Typed {
    pub name: String,
    pub enabled: bool,
    pub sources: Vec<Uuid>,
    pub trigger: String,
    pub delay: String,
    pub working_only: bool,
    pub keywords: String,
    pub regex: String,
    pub exclude: String,
    pub reply: String,
    /// `text` or `template`.
    pub reply_kind: String,
    /// The chosen template's id as typed.
    pub template: String,
    pub wa_name: String,
    pub wa_language: String,
    /// One parameter a line.
    pub wa_params: String,
    pub notify_email: bool,
    pub assign: Vec<Uuid>,
    pub labels: Vec<Uuid>,
    pub notify: bool,
    /// "pipeline:stage", empty for none.
    pub stage: String,
    pub once_per: String,
    pub once_ever: bool,
    pub days: String,
}

impl Typed {
    fn of(r: &AutoReply) -> Typed {
        let mut t = Typed {
            name: r.name.clone(),
            enabled: r.enabled,
            sources: r.sources.clone(),
            trigger: r.trigger.name().to_owned(),
            keywords: r.conditions.keywords.join("\n"),
            regex: r.conditions.regex.clone().unwrap_or_default(),
            exclude: r.conditions.exclude.join("\n"),
            once_per: r
                .once_per_minutes
                .map(|m| m.to_string())
                .unwrap_or_default(),
            once_ever: r.once_ever,
            days: "7".into(),
            reply_kind: "text".into(),
            ..Typed::default()
        };
        if let Trigger::NoAnswer {
            minutes,
            working_hours_only,
        } = r.trigger
        {
            t.delay = minutes.to_string();
            t.working_only = working_hours_only;
        }
        for a in &r.actions {
            match a {
                Action::Reply {
                    text,
                    template_id,
                    whatsapp_template,
                } => {
                    t.reply = text.clone();
                    if let Some(id) = template_id {
                        t.reply_kind = "template".into();
                        t.template = id.to_string();
                    }
                    if let Some(w) = whatsapp_template {
                        t.wa_name = w.name.clone();
                        t.wa_language = w.language.clone();
                        t.wa_params = w.params.join("\n");
                    }
                }
                Action::Assign { users } => t.assign = users.clone(),
                Action::AddLabels { labels } => t.labels = labels.clone(),
                Action::Notify { email, .. } => {
                    t.notify = true;
                    t.notify_email = *email;
                }
                Action::MoveDeal {
                    pipeline_id,
                    status_id,
                } => t.stage = format!("{}:{status_id}", pipeline_id.unwrap_or_default()),
            }
        }
        t
    }

    fn blank() -> Typed {
        Typed {
            enabled: true,
            trigger: "out_of_hours".into(),
            delay: "5".into(),
            days: "7".into(),
            reply_kind: "text".into(),
            ..Typed::default()
        }
    }

    fn from_form(form: &[(String, String)]) -> Typed {
        let one = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        let ids = |k: &str| {
            form.iter()
                .filter(|(n, _)| n == k)
                .filter_map(|(_, v)| v.parse().ok())
                .collect()
        };
        Typed {
            name: one("name"),
            enabled: !one("enabled").is_empty(),
            sources: ids("sources"),
            trigger: one("trigger"),
            delay: one("delay"),
            working_only: !one("working_only").is_empty(),
            keywords: one("keywords"),
            regex: one("regex"),
            exclude: one("exclude"),
            reply: one("reply"),
            reply_kind: one("reply_kind"),
            template: one("template"),
            wa_name: one("wa_name"),
            wa_language: one("wa_language"),
            wa_params: one("wa_params"),
            notify_email: !one("notify_email").is_empty(),
            assign: ids("assign"),
            labels: ids("labels"),
            notify: !one("notify").is_empty(),
            stage: one("stage"),
            once_per: one("once_per"),
            once_ever: !one("once_ever").is_empty(),
            days: one("days"),
        }
    }

    /// The rule the form describes, or the fields that do not read.
    fn rule(&self) -> Result<AutoReply, Vec<FieldError>> {
        let mut errs = Vec::new();
        // The number fields hold a few digits whichever trigger is chosen: anything else is
        // refused rather than ignored.
        for (field, value, digits, key) in [
            ("delay", &self.delay, 5, "err.auto_delay_range"),
            ("days", &self.days, 2, "err.auto_days_range"),
        ] {
            if !value.is_empty()
                && (value.len() > digits || !value.chars().all(|c| c.is_ascii_digit()))
            {
                errs.push(FieldError::new(field, key));
            }
        }
        let lines = |s: &str| -> Vec<String> {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let trigger = match self.trigger.as_str() {
            "keywords" => Trigger::Keywords,
            "first_message" => Trigger::FirstMessage,
            "no_answer" => match self.delay.parse::<u32>() {
                Ok(minutes) => Trigger::NoAnswer {
                    minutes,
                    working_hours_only: self.working_only,
                },
                Err(_) => {
                    errs.push(FieldError::new("delay", "err.auto_delay_range"));
                    Trigger::FirstMessage
                }
            },
            _ => Trigger::OutOfHours,
        };
        let once_per_minutes = match self.once_per.as_str() {
            "" => None,
            s => match s.parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    errs.push(FieldError::new("once_per", "err.auto_once_per"));
                    None
                }
            },
        };
        let mut actions = Vec::new();
        let template_id = match self.reply_kind.as_str() {
            "template" => match self.template.parse::<Uuid>() {
                Ok(id) => Some(id),
                Err(_) => {
                    errs.push(FieldError::new("template", "err.auto_template_unknown"));
                    None
                }
            },
            _ => None,
        };
        let wa = [&self.wa_name, &self.wa_language, &self.wa_params]
            .iter()
            .any(|v| !v.is_empty())
            .then(|| WaTemplate {
                name: self.wa_name.clone(),
                language: self.wa_language.clone(),
                params: lines(&self.wa_params),
            });
        if template_id.is_some() || !self.reply.is_empty() || wa.is_some() {
            actions.push(Action::Reply {
                // The text typed before switching to a template is not sent.
                text: match template_id {
                    Some(_) => String::new(),
                    None => self.reply.clone(),
                },
                template_id,
                whatsapp_template: wa,
            });
        }
        if !self.assign.is_empty() {
            actions.push(Action::Assign {
                users: self.assign.clone(),
            });
        }
        if !self.labels.is_empty() {
            actions.push(Action::AddLabels {
                labels: self.labels.clone(),
            });
        }
        if let Some((p, s)) = self.stage.split_once(':') {
            match (p.parse::<i64>(), s.parse::<i64>()) {
                (Ok(p), Ok(s)) => actions.push(Action::MoveDeal {
                    pipeline_id: Some(p).filter(|p| *p != 0),
                    status_id: s,
                }),
                _ => errs.push(FieldError::new("stage", "err.auto_stage_unknown")),
            }
        }
        if self.notify || self.notify_email {
            actions.push(Action::Notify {
                users: vec![],
                email: self.notify_email,
            });
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(AutoReply {
            name: self.name.clone(),
            enabled: self.enabled,
            sources: self.sources.clone(),
            trigger,
            conditions: TextMatch {
                keywords: lines(&self.keywords),
                regex: Some(self.regex.clone()).filter(|r| !r.is_empty()),
                exclude: lines(&self.exclude),
            },
            actions,
            once_per_minutes,
            once_ever: self.once_ever,
        })
    }
}

/// A dry run's line as the editor shows it.
pub struct HitRow {
    pub link: String,
    /// What the customer would have got, with their values.
    pub reply: String,
    pub customer: String,
    pub text: String,
    pub at: String,
}

/// A dry run's result: messages looked at, hits per day, the hits.
type DryView = (usize, Vec<(String, usize)>, Vec<HitRow>);

#[derive(Template)]
#[template(path = "app/auto_reply.html")]
struct EditTpl {
    p: Page,
    id: Option<Uuid>,
    t: Typed,
    /// (id, name, billed in parts: SMS)
    sources: Vec<(Uuid, String, bool)>,
    /// (id, name) of people who may reply.
    people: Vec<(Uuid, String)>,
    labels: Vec<(Uuid, String)>,
    /// ("pipeline:stage", "Pipeline → Stage") of the connected amoCRM.
    stages: Vec<(String, String)>,
    triggers: Vec<(&'static str, String)>,
    /// The reply's SMS part count, when the company has an SMS source.
    sms_parts: String,
    /// The reply's SMS cost by the SMS source's price of a part (empty: no price set).
    sms_cost: String,
    /// More than one part: a warning.
    sms_many: bool,
    /// (id, title) of the company's shared reply templates.
    templates: Vec<(Uuid, String)>,
    /// The company has a source with a reply window (WhatsApp).
    windowed: bool,
    dry: Option<DryView>,
}

impl EditTpl {
    fn has_source(&self, id: &Uuid) -> bool {
        self.t.sources.contains(id)
    }
    fn assigns(&self, id: &Uuid) -> bool {
        self.t.assign.contains(id)
    }
    /// The variables a reply's text may name, as a reply template's may.
    fn variables(&self) -> &'static [&'static str] {
        &chatter_domain::template::VARIABLES
    }
    fn picked(&self, id: &Uuid) -> bool {
        self.t.template == id.to_string()
    }
    fn has_label(&self, id: &Uuid) -> bool {
        self.t.labels.contains(id)
    }
    fn action(&self) -> String {
        match self.id {
            Some(id) => format!("/app/automation/replies/{id}"),
            None => "/app/automation/replies".into(),
        }
    }
}

async fn editor(
    st: &AppState,
    ctx: &Ctx,
    id: Option<Uuid>,
    t: Typed,
    p: Page,
) -> Result<EditTpl, AppError> {
    let actor = ctx.actor()?;
    let all = chatter_core::sources::list(&st.core, &actor).await?;
    let windowed = all
        .iter()
        .any(|s| chatter_channels::kind_of(s.kind).is_some_and(|k| k.reply_window().is_some()));
    // The price of a part the SMS sources name (the highest, when they differ).
    let part_price = all
        .iter()
        .filter_map(|s| chatter_core::connectors::model::settings_of(s).sms_part_price_kopecks)
        .max();
    let sources: Vec<(Uuid, String, bool)> = all
        .into_iter()
        .map(|s| {
            let billed =
                chatter_channels::kind_of(s.kind).is_some_and(|k| k.text_parts("").is_some());
            (s.id.0, s.name, billed)
        })
        .collect();
    let people = chatter_core::notifications::teammates(&st.core.db, actor.company_id)
        .await?
        .into_iter()
        .filter(|m| m.role.can(Permission::Reply))
        .map(|m| (m.user_id, m.name))
        .collect();
    let labels = chatter_core::inbox::labels::list_labels(&st.core, &actor)
        .await?
        .into_iter()
        .map(|l| (l.id, l.name))
        .collect();
    let stages = chatter_core::crm::sync::outbox::known_stages(&st.core.db, actor.company())
        .await?
        .into_iter()
        .map(|(p, s, name)| (format!("{p}:{s}"), name))
        .collect();
    let triggers = ["out_of_hours", "keywords", "first_message", "no_answer"]
        .into_iter()
        .map(|k| (k, p.t(&format!("auto.trigger.{k}")).to_owned()))
        .collect();
    let billed = sources.iter().any(|s| s.2);
    let sms_parts = if billed {
        super::inbox::sms_parts_label(p.tr, &t.reply)
    } else {
        String::new()
    };
    let parts = chatter_channels::sms::sms_parts(&t.reply).parts;
    let sms_cost = match part_price.filter(|_| billed && !t.reply.is_empty()) {
        Some(k) => rubles(u64::from(k) * u64::from(parts)),
        None => String::new(),
    };
    let sms_many = billed && parts > 1;
    let templates = company_templates(st, &actor).await?;
    Ok(EditTpl {
        p,
        id,
        t,
        sources,
        people,
        labels,
        stages,
        triggers,
        sms_parts,
        sms_cost,
        sms_many,
        templates,
        windowed,
        dry: None,
    })
}

/// Kopecks as roubles: `3,50 ₽`.
fn rubles(kopecks: u64) -> String {
    format!("{},{:02} ₽", kopecks / 100, kopecks % 100)
}

/// The company's shared reply templates (a rule may send only these), by category and title.
async fn company_templates(
    st: &AppState,
    actor: &chatter_core::Actor,
) -> Result<Vec<(Uuid, String)>, AppError> {
    Ok(
        chatter_core::inbox::templates::list_templates(&st.core, actor, None)
            .await?
            .into_iter()
            .filter(|t| t.owner_id.is_none())
            .map(|t| match t.category.is_empty() {
                true => (t.id, t.title),
                false => (t.id, format!("{} · {}", t.category, t.title)),
            })
            .collect(),
    )
}

async fn new_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, AppError> {
    ctx.actor()?.require(Permission::Manage)?;
    let p = Page::new(&ctx, "automation");
    Ok(render(editor(&st, &ctx, None, Typed::blank(), p).await?))
}

async fn edit_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    Query(f): Query<Flash>,
) -> Result<Response, AppError> {
    let v: RuleView = replies::get(&st.core, &ctx.actor()?, id).await?;
    let p = Page::new(&ctx, "automation").flash(&f);
    Ok(render(
        editor(&st, &ctx, Some(id), Typed::of(&v.rule), p).await?,
    ))
}

/// Saves (`create` / `save`) or, with the dry-run button, shows what the rule as typed would
/// have done, saving nothing.
async fn submit(
    st: &AppState,
    ctx: &Ctx,
    id: Option<Uuid>,
    form: &[(String, String)],
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let t = Typed::from_form(form);
    let dry = form.iter().any(|(k, _)| k == "dry_run");
    let refused = match t.rule() {
        Ok(rule) if dry => {
            let days = t.days.parse().unwrap_or(0);
            match dry_run::dry_run(&st.core, &actor, &rule, days).await {
                Ok(d) => {
                    let p = Page::new(ctx, "automation");
                    let mut page = editor(st, ctx, id, t, p).await?;
                    let hits = d
                        .hits
                        .into_iter()
                        .map(|h| HitRow {
                            link: format!("/app/inbox/{}", h.conversation_id),
                            reply: h.reply.unwrap_or_default(),
                            customer: h.customer,
                            text: h.text,
                            at: super::inbox::fmt_time(h.at),
                        })
                        .collect();
                    page.dry = Some((d.looked_at, d.per_day.into_iter().collect(), hits));
                    return Ok(render(page));
                }
                Err(CoreError::Invalid(e)) => e,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(rule) => {
            actor.require(Permission::Manage)?;
            let saved = match id {
                Some(id) => replies::update(&st.core, &actor, id, rule).await,
                None => replies::create(&st.core, &actor, rule).await,
            };
            match saved {
                Ok(v) => {
                    return Ok(
                        Redirect::to(&format!("/app/automation/replies/{}?ok=saved", v.id))
                            .into_response(),
                    )
                }
                Err(CoreError::Invalid(e)) => e,
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => e,
    };
    let p = Page::new(ctx, "automation").errors(refused);
    Ok(render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        editor(st, ctx, id, t, p).await?,
    ))
}

async fn create(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    if !form.iter().any(|(k, _)| k == "dry_run") {
        ctx.actor()?.require(Permission::Manage)?;
    }
    submit(&st, &ctx, None, &form).await
}

async fn save(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    if !form.iter().any(|(k, _)| k == "dry_run") {
        actor.require(Permission::Manage)?;
    }
    replies::get(&st.core, &actor, id).await?;
    submit(&st, &ctx, Some(id), &form).await
}

async fn toggle(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let on = form.iter().any(|(k, v)| k == "on" && v == "1");
    replies::set_enabled(&st.core, &ctx.actor()?, id, on).await?;
    Ok(Redirect::to("/app/automation/replies?ok=saved").into_response())
}

async fn move_rule(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let up = form.iter().any(|(k, v)| k == "dir" && v == "up");
    replies::move_rule(&st.core, &ctx.actor()?, id, up).await?;
    Ok(Redirect::to("/app/automation/replies").into_response())
}

async fn delete(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    replies::delete(&st.core, &ctx.actor()?, id).await?;
    Ok(Redirect::to("/app/automation/replies?ok=removed").into_response())
}

/// Automatic messages of a thread and the rule that sent each.
pub(crate) type AutoMessages = std::collections::HashMap<chatter_domain::MessageId, String>;

/// A line in the thread saying what an auto-reply did («Автоответ «Нерабочее время»
/// отправлен»), among the messages by time.
#[derive(Template)]
#[template(path = "inbox/_auto_line.html")]
pub struct AutoLineTpl {
    pub f: chatter_store::entity::auto_reply_firing::Model,
    pub lang: crate::i18n::Tr,
}

impl AutoLineTpl {
    pub fn text(&self) -> String {
        let key = match (self.f.reason.as_deref(), self.f.reply_message_id) {
            (Some(r), _)
                if self.f.outcome != replies::run::FIRED || self.f.reply_message_id.is_none() =>
            {
                format!("auto.line.{r}")
            }
            (_, Some(_)) => "auto.line.sent".to_owned(),
            _ => "auto.line.fired".to_owned(),
        };
        let mut line = self.lang.t(&key).replace("{name}", &self.f.rule_name);
        // Sent, but not quite as the rule says: as a WhatsApp template, or without its file.
        if let (Some(r), Some(_)) = (self.f.reason.as_deref(), self.f.reply_message_id) {
            line.push_str(&format!(" ({})", self.lang.t(&format!("auto.note.{r}"))));
        }
        let done: Vec<String> = serde_json::from_str::<Vec<String>>(&self.f.actions)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a != "reply")
            .map(|a| self.lang.t(&format!("auto.action.{a}")).to_owned())
            .collect();
        if !done.is_empty() {
            line.push_str(": ");
            line.push_str(&done.join(", "));
        }
        line
    }

    pub fn time(&self) -> String {
        super::inbox::fmt_time(self.f.created_at)
    }
}

/// The thread's auto-reply lines `(time, html)` and the automatic messages with their rule.
pub(crate) async fn thread_lines(
    st: &AppState,
    actor: &chatter_core::Actor,
    conv: chatter_domain::ConversationId,
    lang: crate::i18n::Tr,
) -> Result<(Vec<(i64, String)>, AutoMessages), AppError> {
    let firings = replies::run::firings(&st.core, actor, conv).await?;
    let auto = firings
        .iter()
        .filter_map(|f| Some((f.reply_message_id?, f.rule_name.clone())))
        .collect();
    let lines = firings
        .into_iter()
        .map(|f| {
            let at = f.created_at;
            let html = AutoLineTpl { f, lang }.render().unwrap_or_default();
            (at, html)
        })
        .collect();
    Ok((lines, auto))
}
