//! Routing rules (requirement R3.4): which pipeline, stage, responsible and tags a new conversation
//! gets in the CRM. Rules are ordered; the first enabled rule whose conditions all hold wins, and
//! the company's default applies when none does. Every decision carries an explanation, rule by
//! rule, for the dry run in the UI and for the record kept on each synced conversation.
//!
//! Conditions of one rule are combined with AND: the source is in the set, the message came
//! within one of the time windows (in the company's time zone), no exclusion is present, and the
//! text matches — any keyword (a phrase matches as consecutive word stems, see [`crate::stem`])
//! or the regex; a rule with neither keywords nor a regex accepts any text. An empty set of
//! sources or of windows means "any".

use std::collections::HashSet;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDateTime, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::stem::{self, Token};

/// One routing rule as the company configures it (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    #[serde(default)]
    pub conditions: Conditions,
    #[serde(default)]
    pub actions: Actions,
}

/// What a message must satisfy for its rule to fire; every part must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conditions {
    /// Sources the message may come from; empty = any.
    pub sources: Vec<Uuid>,
    /// Words or phrases; any one present is enough. Matched by stems, so «доставка» finds
    /// «доставку» and «доставки»; a phrase needs its words next to each other.
    pub keywords: Vec<String>,
    /// A pattern searched in the text, case-insensitive, ё = е. With keywords: either may match.
    pub regex: Option<String>,
    /// Words or phrases that, when present, stop the rule from matching.
    pub exclude: Vec<String>,
    /// When the message may arrive, in the company's time zone; empty = any time.
    pub windows: Vec<TimeWindow>,
}

/// A span of the day on chosen weekdays: `from` inclusive, `to` exclusive. `to < from` runs over
/// midnight and belongs to the weekday it starts on (Fri 22:00–06:00 covers Saturday 03:00);
/// `from == to` is the whole day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    pub weekdays: Vec<Weekday>,
    pub from: NaiveTime,
    pub to: NaiveTime,
}

/// What happens to a conversation routed by a rule. `None` and empty keep the default's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Actions {
    pub pipeline_id: Option<i64>,
    /// A stage of `pipeline_id` (or of the default pipeline when the rule names none); `None`
    /// with a pipeline = that pipeline's first stage.
    pub status_id: Option<i64>,
    pub responsible: Option<Responsible>,
    pub tags: Vec<String>,
}

/// Who gets the deal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Responsible {
    /// This amoCRM user.
    User(i64),
    /// The next of these amoCRM users in turn (the caller keeps the turn).
    RoundRobin(Vec<i64>),
    /// Whoever answers first.
    FirstToAnswer,
}

/// The message being routed.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub source_id: Uuid,
    pub text: &'a str,
    pub at: DateTime<Utc>,
    /// The company's time zone, in which time windows are read.
    pub tz: chrono_tz::Tz,
}

/// Which rule fired, what to do, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The rule that fired; `None` = the default.
    pub rule_id: Option<String>,
    /// The rule's actions laid over the default's (see [`Actions`]).
    pub actions: Actions,
    /// One step per rule looked at, in order, ending with the match or the default.
    pub explanation: Vec<Step>,
}

/// One line of a decision's explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// A rule that did not fire (its name) and the first condition that failed.
    Skipped { rule: String, reason: String },
    /// The rule that fired (its name) and every condition that held.
    Matched { rule: String, why: Vec<String> },
    /// No rule fired; the default applies.
    Default,
}

/// A problem with a rule, for the form that edits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleError {
    /// The offending field, e.g. `"name"`, `"conditions.regex"`, `"conditions.windows"`.
    pub field: &'static str,
    pub message: String,
    /// For `conditions.regex`: the byte offset of the error in the pattern (the message also
    /// gives the 1-based character column). For list fields: the index of the offending item.
    pub position: Option<usize>,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for RuleError {}

/// Checks a rule as the settings form saves it: a name, a valid regex, keywords that contain
/// words, windows with weekdays, a non-empty round robin, won/lost only with a pipeline.
pub fn validate(rule: &Rule) -> Result<(), Vec<RuleError>> {
    CompiledRule::compile(rule).map(|_| ())
}

/// Decides with rules compiled on the spot. A rule that does not compile is skipped, and the
/// explanation says so; prefer [`RuleSet::compile`] once and [`RuleSet::decide`] per message.
pub fn decide(rules: &[Rule], default: &Actions, input: &Input) -> Decision {
    let message = Message::new(input);
    let mut explanation = Vec::new();
    for rule in rules {
        match CompiledRule::compile(rule) {
            Ok(compiled) => {
                if let Some(decision) = compiled.step(default, &message, &mut explanation) {
                    return decision;
                }
            }
            Err(errors) => explanation.push(Step::Skipped {
                rule: rule.name.clone(),
                reason: format!(
                    "invalid rule: {}",
                    errors
                        .iter()
                        .map(RuleError::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            }),
        }
    }
    default_decision(default, explanation)
}

/// Rules compiled once (keyword stems, regexes) for many decisions.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
}

impl RuleSet {
    /// Compiles every rule (disabled ones too, so they are valid when enabled); all errors are
    /// returned with the id of their rule.
    pub fn compile(rules: &[Rule]) -> Result<RuleSet, Vec<(String, RuleError)>> {
        let mut compiled = Vec::with_capacity(rules.len());
        let mut errors = Vec::new();
        let mut ids = HashSet::new();
        for rule in rules {
            if !ids.insert(rule.id.as_str()) {
                errors.push((
                    rule.id.clone(),
                    RuleError {
                        field: "id",
                        message: "another rule has the same id".into(),
                        position: None,
                    },
                ));
            }
            match CompiledRule::compile(rule) {
                Ok(c) => compiled.push(c),
                Err(es) => errors.extend(es.into_iter().map(|e| (rule.id.clone(), e))),
            }
        }
        if errors.is_empty() {
            Ok(RuleSet { rules: compiled })
        } else {
            Err(errors)
        }
    }

    /// The ids of every enabled rule whose conditions hold, in order: the message is prepared
    /// (tokenized and stemmed) once for all of them. Auto-replies use it to look at all their
    /// rules' text conditions at once.
    pub fn matching(&self, input: &Input) -> Vec<&str> {
        let message = Message::new(input);
        self.rules
            .iter()
            .filter(|r| r.check(&message).is_ok())
            .map(|r| r.rule.id.as_str())
            .collect()
    }

    /// The first enabled rule that matches, else the default; with the explanation.
    pub fn decide(&self, default: &Actions, input: &Input) -> Decision {
        let message = Message::new(input);
        let mut explanation = Vec::new();
        for rule in &self.rules {
            if let Some(decision) = rule.step(default, &message, &mut explanation) {
                return decision;
            }
        }
        default_decision(default, explanation)
    }
}

fn default_decision(default: &Actions, mut explanation: Vec<Step>) -> Decision {
    explanation.push(Step::Default);
    Decision {
        rule_id: None,
        actions: default.clone(),
        explanation,
    }
}

/// A keyword or exclusion as written and as stems.
#[derive(Debug, Clone)]
struct Phrase {
    text: String,
    stems: Vec<String>,
}

impl Phrase {
    /// The words of `tokens` where this phrase occurs, as written.
    fn find(&self, tokens: &[Token]) -> Option<String> {
        let n = self.stems.len();
        tokens
            .windows(n)
            .find(|w| w.iter().zip(&self.stems).all(|(t, s)| &t.stem == s))
            .map(|w| {
                w.iter()
                    .map(|t| t.word.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
    }
}

#[derive(Debug, Clone)]
struct CompiledRule {
    rule: Rule,
    keywords: Vec<Phrase>,
    exclude: Vec<Phrase>,
    regex: Option<regex::Regex>,
}

/// The message prepared once for all rules.
struct Message<'a> {
    input: &'a Input<'a>,
    tokens: Vec<Token>,
    /// The text with ё → е (case kept), which regexes search.
    text: String,
    local: NaiveDateTime,
    /// E.g. "Сб 10:15 MSK".
    local_label: String,
    zone: String,
}

impl<'a> Message<'a> {
    fn new(input: &'a Input<'a>) -> Message<'a> {
        let local = input.at.with_timezone(&input.tz);
        let zone = local.format("%Z").to_string();
        Message {
            input,
            tokens: stem::tokenize(input.text),
            text: fold_yo(input.text),
            local: local.naive_local(),
            local_label: format!(
                "{} {} {zone}",
                weekday_ru(local.weekday()),
                local.format("%H:%M")
            ),
            zone,
        }
    }
}

fn fold_yo(s: &str) -> String {
    // ё/Ё and е/Е are two bytes each in UTF-8, so byte offsets into the pattern stay valid.
    s.replace('ё', "е").replace('Ё', "Е")
}

impl CompiledRule {
    fn compile(rule: &Rule) -> Result<CompiledRule, Vec<RuleError>> {
        let mut errors = Vec::new();
        let mut error = |field, message: String, position| {
            errors.push(RuleError {
                field,
                message,
                position,
            })
        };
        if rule.id.trim().is_empty() {
            error("id", "a rule needs an id".into(), None);
        }
        if rule.name.trim().is_empty() {
            error("name", "a rule needs a name".into(), None);
        }
        let c = &rule.conditions;
        let mut phrases = |field, list: &[String]| {
            let mut out = Vec::with_capacity(list.len());
            for (i, text) in list.iter().enumerate() {
                let stems = stem::tokens(text);
                if stems.is_empty() {
                    error(
                        field,
                        format!("«{text}» contains no words to look for"),
                        Some(i),
                    );
                } else {
                    out.push(Phrase {
                        text: text.trim().to_owned(),
                        stems,
                    });
                }
            }
            out
        };
        let keywords = phrases("conditions.keywords", &c.keywords);
        let exclude = phrases("conditions.exclude", &c.exclude);
        let regex = match &c.regex {
            None => None,
            Some(pattern) => match compile_regex(pattern) {
                Ok(r) => Some(r),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        for (i, w) in c.windows.iter().enumerate() {
            if w.weekdays.is_empty() {
                errors.push(RuleError {
                    field: "conditions.windows",
                    message: "a time window needs at least one weekday".into(),
                    position: Some(i),
                });
            }
        }
        let a = &rule.actions;
        if let Some(Responsible::RoundRobin(users)) = &a.responsible {
            if users.is_empty() {
                errors.push(RuleError {
                    field: "actions.responsible",
                    message: "round robin needs at least one user".into(),
                    position: None,
                });
            }
        }
        // 142 (won) and 143 (lost) are the same ids in every amoCRM pipeline
        // (docs/providers/amocrm.md §3.2).
        if matches!(a.status_id, Some(142 | 143)) && a.pipeline_id.is_none() {
            errors.push(RuleError {
                field: "actions.status_id",
                message: "won and lost stages exist in every pipeline: choose the pipeline too"
                    .into(),
                position: None,
            });
        }
        for (i, tag) in a.tags.iter().enumerate() {
            if tag.trim().is_empty() {
                errors.push(RuleError {
                    field: "actions.tags",
                    message: "a tag cannot be empty".into(),
                    position: Some(i),
                });
            }
        }
        if errors.is_empty() {
            Ok(CompiledRule {
                rule: rule.clone(),
                keywords,
                exclude,
                regex,
            })
        } else {
            Err(errors)
        }
    }

    /// Pushes this rule's step; returns the decision when it fires.
    fn step(
        &self,
        default: &Actions,
        m: &Message,
        explanation: &mut Vec<Step>,
    ) -> Option<Decision> {
        match self.check(m) {
            Ok(why) => {
                explanation.push(Step::Matched {
                    rule: self.rule.name.clone(),
                    why,
                });
                Some(Decision {
                    rule_id: Some(self.rule.id.clone()),
                    actions: merged(default, &self.rule.actions),
                    explanation: std::mem::take(explanation),
                })
            }
            Err(reason) => {
                explanation.push(Step::Skipped {
                    rule: self.rule.name.clone(),
                    reason,
                });
                None
            }
        }
    }

    /// Why the rule matches, or the first reason it does not.
    fn check(&self, m: &Message) -> Result<Vec<String>, String> {
        let c = &self.rule.conditions;
        let mut why = Vec::new();
        if !self.rule.enabled {
            return Err("disabled".into());
        }
        if !c.sources.is_empty() {
            if !c.sources.contains(&m.input.source_id) {
                return Err("source not in the set".into());
            }
            why.push("source in the set".into());
        }
        if !c.windows.is_empty() {
            let hours = windows_label(&c.windows, &m.zone);
            if !c.windows.iter().any(|w| w.contains(m.local)) {
                return Err(format!(
                    "outside working hours ({hours}; the message came {})",
                    m.local_label
                ));
            }
            why.push(format!(
                "within working hours ({hours}; the message came {})",
                m.local_label
            ));
        }
        for phrase in &self.exclude {
            if let Some(found) = phrase.find(&m.tokens) {
                return Err(if found == stem::fold(&phrase.text) {
                    format!("excluded by «{}»", phrase.text)
                } else {
                    format!("excluded by «{}» («{found}»)", phrase.text)
                });
            }
        }
        if !self.exclude.is_empty() {
            why.push("no exclusion present".into());
        }
        if self.keywords.is_empty() && self.regex.is_none() {
            if why.is_empty() {
                why.push("no conditions: matches every message".into());
            }
            return Ok(why);
        }
        for phrase in &self.keywords {
            if let Some(found) = phrase.find(&m.tokens) {
                why.push(format!("keyword «{}» matched «{found}»", phrase.text));
                return Ok(why);
            }
        }
        if let Some(regex) = &self.regex {
            if let Some(found) = regex.find(&m.text) {
                why.push(format!(
                    "regex «{}» matched «{}»",
                    regex.as_str(),
                    found.as_str()
                ));
                return Ok(why);
            }
        }
        Err(match (self.keywords.is_empty(), self.regex.is_none()) {
            (false, true) => "no keyword matched",
            (true, false) => "the regex did not match",
            _ => "neither a keyword nor the regex matched",
        }
        .into())
    }
}

fn compile_regex(pattern: &str) -> Result<regex::Regex, RuleError> {
    let refused = |message: String, position| RuleError {
        field: "conditions.regex",
        message,
        position,
    };
    if pattern.is_empty() {
        return Err(refused(
            "an empty pattern matches everything: leave the regex out instead".into(),
            None,
        ));
    }
    let pattern = fold_yo(pattern);
    // Parse first with the regex crate's own parser: its errors carry the span, which the
    // `regex::Error` string only draws as ASCII art.
    let parsed = regex_syntax::ParserBuilder::new()
        .case_insensitive(true)
        .unicode(true)
        .build()
        .parse(&pattern);
    let span = match &parsed {
        Err(regex_syntax::Error::Parse(e)) => Some((e.kind().to_string(), *e.span())),
        Err(regex_syntax::Error::Translate(e)) => Some((e.kind().to_string(), *e.span())),
        Err(e) => return Err(refused(e.to_string(), None)),
        Ok(_) => None,
    };
    if let Some((kind, span)) = span {
        let mut message = kind;
        let _ = write!(message, " (at character {})", span.start.column);
        return Err(refused(message, Some(span.start.offset)));
    }
    regex::RegexBuilder::new(&pattern)
        .case_insensitive(true)
        .build()
        .map_err(|e| refused(e.to_string(), None))
}

/// The rule's actions over the default's: a rule's pipeline brings its own stage (a stage of
/// the default pipeline means nothing in another one); responsible falls back to the
/// default's; tags add up.
fn merged(default: &Actions, rule: &Actions) -> Actions {
    let (pipeline_id, status_id) = match rule.pipeline_id {
        Some(p) if rule.pipeline_id != default.pipeline_id => (Some(p), rule.status_id),
        _ => (default.pipeline_id, rule.status_id.or(default.status_id)),
    };
    let mut tags = default.tags.clone();
    for tag in &rule.tags {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    Actions {
        pipeline_id,
        status_id,
        responsible: rule
            .responsible
            .clone()
            .or_else(|| default.responsible.clone()),
        tags,
    }
}

impl TimeWindow {
    fn contains(&self, local: NaiveDateTime) -> bool {
        let t = local.time();
        let day = local.weekday();
        let on = |d: Weekday| self.weekdays.contains(&d);
        if self.from < self.to {
            on(day) && self.from <= t && t < self.to
        } else if self.from == self.to {
            on(day)
        } else {
            (on(day) && t >= self.from) || (on(day.pred()) && t < self.to)
        }
    }
}

fn weekday_ru(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "Пн",
        Weekday::Tue => "Вт",
        Weekday::Wed => "Ср",
        Weekday::Thu => "Чт",
        Weekday::Fri => "Пт",
        Weekday::Sat => "Сб",
        Weekday::Sun => "Вс",
    }
}

/// "Пн–Пт 09:00–18:00, Сб 10:00–14:00 MSK".
fn windows_label(windows: &[TimeWindow], zone: &str) -> String {
    let parts: Vec<String> = windows
        .iter()
        .map(|w| {
            let hours = if w.from == w.to {
                "весь день".to_owned()
            } else {
                format!("{}–{}", w.from.format("%H:%M"), w.to.format("%H:%M"))
            };
            format!("{} {hours}", weekdays_label(&w.weekdays))
        })
        .collect();
    format!("{} {zone}", parts.join(", "))
}

/// Weekdays from Monday, runs of three or more as "Пн–Пт".
fn weekdays_label(days: &[Weekday]) -> String {
    let mut days = days.to_vec();
    days.sort_by_key(|d| d.num_days_from_monday());
    days.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len()
            && days[j + 1].num_days_from_monday() == days[j].num_days_from_monday() + 1
        {
            j += 1;
        }
        if j - i >= 2 {
            parts.push(format!("{}–{}", weekday_ru(days[i]), weekday_ru(days[j])));
        } else {
            parts.extend(days[i..=j].iter().map(|&d| weekday_ru(d).to_owned()));
        }
        i = j + 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::Europe::Moscow;

    const SITE: Uuid = Uuid::from_u128(1);
    const TELEGRAM: Uuid = Uuid::from_u128(2);

    fn rule(id: &str, keywords: &[&str]) -> Rule {
        Rule {
            id: id.into(),
            name: format!("Rule {id}"),
            enabled: true,
            conditions: Conditions {
                keywords: keywords.iter().map(|k| k.to_string()).collect(),
                ..Conditions::default()
            },
            actions: Actions {
                tags: vec![id.into()],
                ..Actions::default()
            },
        }
    }

    fn default_actions() -> Actions {
        Actions {
            pipeline_id: Some(100),
            status_id: Some(1001),
            responsible: Some(Responsible::FirstToAnswer),
            tags: vec!["chatter".into()],
        }
    }

    /// Monday 3 March 2025, 12:00 in Moscow (09:00 UTC).
    fn monday_noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 3, 9, 0, 0).unwrap()
    }

    fn at_moscow(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Moscow
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn input(text: &str) -> Input<'_> {
        Input {
            source_id: SITE,
            text,
            at: monday_noon(),
            tz: Moscow,
        }
    }

    fn run(rules: &[Rule], input: &Input) -> Decision {
        let set = RuleSet::compile(rules).expect("the test rules are valid");
        let decision = set.decide(&default_actions(), input);
        // The uncompiled path must agree.
        assert_eq!(decide(rules, &default_actions(), input), decision);
        decision
    }

    fn fired(rules: &[Rule], text: &str) -> Option<String> {
        run(rules, &input(text)).rule_id
    }

    fn last_step(d: &Decision) -> &Step {
        d.explanation.last().expect("never empty")
    }

    fn working_hours() -> TimeWindow {
        TimeWindow {
            weekdays: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            from: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            to: NaiveTime::from_hms_opt(18, 0, 0).unwrap(),
        }
    }

    #[test]
    fn a_keyword_matches_its_other_case_forms_and_says_which_word() {
        let rules = [rule("delivery", &["доставка"])];
        let d = run(&rules, &input("Сколько стоит доставка в Москву?"));
        assert_eq!(d.rule_id.as_deref(), Some("delivery"));
        assert_eq!(
            d.explanation,
            [Step::Matched {
                rule: "Rule delivery".into(),
                why: vec!["keyword «доставка» matched «доставка»".into()],
            }]
        );
        let d = run(&rules, &input("А доставку до Казани делаете?"));
        assert_eq!(
            last_step(&d),
            &Step::Matched {
                rule: "Rule delivery".into(),
                why: vec!["keyword «доставка» matched «доставку»".into()],
            }
        );
        for text in [
            "Условия ДОСТАВКИ?",
            "Что с доставкой?",
            "по доставкам вопрос",
        ] {
            assert_eq!(fired(&rules, text).as_deref(), Some("delivery"), "{text}");
        }
        assert_eq!(fired(&rules, "Хочу забрать сам"), None);
    }

    #[test]
    fn a_phrase_matches_only_as_consecutive_stems() {
        let text = "Сколько стоит доставка в Москву?";
        // «стоимость» stems to «стоимост», «стоит» to «сто»: different words to a stemmer.
        assert_eq!(fired(&[rule("p", &["стоимость доставки"])], text), None);
        let phrase = [rule("p", &["стоит доставка"])];
        assert_eq!(fired(&phrase, text).as_deref(), Some("p"));
        let d = run(
            &phrase,
            &input("Подскажите, сколько стоит доставку оформить"),
        );
        assert_eq!(
            last_step(&d),
            &Step::Matched {
                rule: "Rule p".into(),
                why: vec!["keyword «стоит доставка» matched «стоит доставку»".into()],
            }
        );
        assert_eq!(fired(&phrase, "Доставка стоит дорого?"), None, "order");
        assert_eq!(fired(&phrase, "Стоит ли доставка того?"), None, "gap");
        assert_eq!(
            fired(&phrase, "Сколько стоит? Доставка нужна"),
            Some("p".into())
        );
        let d = run(&phrase, &input("Доставка стоит дорого?"));
        assert_eq!(
            d.explanation[0],
            Step::Skipped {
                rule: "Rule p".into(),
                reason: "no keyword matched".into()
            }
        );
    }

    /// Documented choice: stems, not lemmas, matched whole (a prefix match would let «стоит» →
    /// «сто» catch «стол»). «доставочная» → «доставочн» is not «доставк», and the verb «заказать»
    /// → «заказа» is not the noun «заказ»: a company adds such words as keywords of their own.
    #[test]
    fn derivational_forms_do_not_match_and_need_their_own_keyword() {
        let text = "Хочу заказать диван";
        assert_eq!(fired(&[rule("o", &["заказ"])], text), None);
        assert_eq!(
            fired(&[rule("o", &["заказ", "заказать"])], text).as_deref(),
            Some("o")
        );
        assert_eq!(
            fired(&[rule("o", &["заказать"])], "Мы заказали диван").as_deref(),
            Some("o")
        );
        let text = "Нужна доставочная коробка";
        assert_eq!(fired(&[rule("d", &["доставка"])], text), None);
        assert_eq!(
            fired(&[rule("d", &["доставка", "доставочный"])], text).as_deref(),
            Some("d")
        );
    }

    #[test]
    fn case_and_yo_are_folded_in_keywords_and_text() {
        let rules = [rule("tree", &["ёлка"])];
        assert_eq!(
            fired(&rules, "Есть ЕЛКИ в наличии?").as_deref(),
            Some("tree")
        );
        assert_eq!(fired(&rules, "а ёлочные игрушки?"), None);
        let rules = [rule("tree", &["Елки"])];
        assert_eq!(fired(&rules, "Ёлку хочу").as_deref(), Some("tree"));
    }

    #[test]
    fn english_keywords_match_their_forms() {
        let rules = [rule("en", &["delivery", "shipping"])];
        assert_eq!(
            fired(&rules, "Do you do deliveries to Berlin?").as_deref(),
            Some("en")
        );
        assert_eq!(
            fired(&rules, "When is my order SHIPPED?").as_deref(),
            Some("en")
        );
        assert_eq!(fired(&rules, "Hello, I want a refund"), None);
    }

    #[test]
    fn an_exclusion_blocks_the_rule_and_says_which_word() {
        let mut delivery = rule("delivery", &["доставка"]);
        delivery.conditions.exclude = vec!["самовывоз".into(), "не нужна".into()];
        let pickup = rule("pickup", &["самовывоз"]);
        let rules = [delivery, pickup];

        let d = run(&rules, &input("Доставка или самовывозом быстрее?"));
        assert_eq!(d.rule_id.as_deref(), Some("pickup"));
        assert_eq!(
            d.explanation[0],
            Step::Skipped {
                rule: "Rule delivery".into(),
                reason: "excluded by «самовывоз» («самовывозом»)".into(),
            }
        );
        let d = run(&rules, &input("Доставка не нужна, спасибо"));
        assert_eq!(d.rule_id, None);
        assert_eq!(
            d.explanation[0],
            Step::Skipped {
                rule: "Rule delivery".into(),
                reason: "excluded by «не нужна»".into(),
            }
        );
        let d = run(&rules, &input("Доставка нужна завтра"));
        assert_eq!(d.rule_id.as_deref(), Some("delivery"));
        assert_eq!(
            last_step(&d),
            &Step::Matched {
                rule: "Rule delivery".into(),
                why: vec![
                    "no exclusion present".into(),
                    "keyword «доставка» matched «доставка»".into()
                ],
            }
        );
    }

    #[test]
    fn the_source_must_be_in_the_set() {
        let mut r = rule("tg", &[]);
        r.conditions.sources = vec![TELEGRAM];
        let rules = [r];
        let d = run(&rules, &input("Здравствуйте"));
        assert_eq!(d.rule_id, None);
        assert_eq!(
            d.explanation,
            [
                Step::Skipped {
                    rule: "Rule tg".into(),
                    reason: "source not in the set".into()
                },
                Step::Default
            ]
        );
        let from_telegram = Input {
            source_id: TELEGRAM,
            ..input("Здравствуйте")
        };
        let d = run(&rules, &from_telegram);
        assert_eq!(d.rule_id.as_deref(), Some("tg"));
        assert_eq!(
            last_step(&d),
            &Step::Matched {
                rule: "Rule tg".into(),
                why: vec!["source in the set".into()]
            }
        );
    }

    #[test]
    fn working_hours_are_read_in_the_company_time_zone() {
        let mut r = rule("day", &[]);
        r.conditions.windows = vec![working_hours()];
        let rules = [r];
        let at = |at| Input {
            at,
            ..input("Добрый день")
        };
        // 06:30 UTC is 09:30 in Moscow: open, although 06:30 would be before opening in UTC.
        let d = run(
            &rules,
            &at(Utc.with_ymd_and_hms(2025, 3, 3, 6, 30, 0).unwrap()),
        );
        assert_eq!(d.rule_id.as_deref(), Some("day"));
        assert_eq!(
            last_step(&d),
            &Step::Matched {
                rule: "Rule day".into(),
                why: vec![
                    "within working hours (Пн–Пт 09:00–18:00 MSK; the message came Пн 09:30 MSK)"
                        .into()
                ]
            }
        );
        // 16:00 UTC is 19:00 in Moscow: closed, although it is within 09–18 in UTC.
        let d = run(
            &rules,
            &at(Utc.with_ymd_and_hms(2025, 3, 3, 16, 0, 0).unwrap()),
        );
        assert_eq!(d.rule_id, None);
        assert_eq!(
            d.explanation[0],
            Step::Skipped {
                rule: "Rule day".into(),
                reason:
                    "outside working hours (Пн–Пт 09:00–18:00 MSK; the message came Пн 19:00 MSK)"
                        .into()
            }
        );
        // The start is inclusive, the end exclusive.
        assert!(run(&rules, &at(at_moscow(2025, 3, 7, 9, 0)))
            .rule_id
            .is_some());
        assert!(run(&rules, &at(at_moscow(2025, 3, 7, 17, 59)))
            .rule_id
            .is_some());
        assert!(run(&rules, &at(at_moscow(2025, 3, 7, 18, 0)))
            .rule_id
            .is_none());
        // Weekend.
        let d = run(&rules, &at(at_moscow(2025, 3, 8, 12, 0)));
        assert_eq!(d.rule_id, None);
        assert!(
            matches!(&d.explanation[0], Step::Skipped { reason, .. } if reason.ends_with("the message came Сб 12:00 MSK)")),
            "{:?}",
            d.explanation
        );
    }

    #[test]
    fn the_weekday_is_the_local_one() {
        let mut r = rule("monday-night", &[]);
        r.conditions.windows = vec![TimeWindow {
            weekdays: vec![Weekday::Mon],
            from: NaiveTime::from_hms_opt(0, 0, 0).unwrap(),
            to: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
        }];
        let rules = [r];
        // Sunday 22:30 UTC is Monday 01:30 in Moscow.
        let sunday_utc = Input {
            at: Utc.with_ymd_and_hms(2025, 3, 9, 22, 30, 0).unwrap(),
            ..input("Есть кто?")
        };
        assert_eq!(
            run(&rules, &sunday_utc).rule_id.as_deref(),
            Some("monday-night")
        );
        let same_instant_in_utc = Input {
            tz: chrono_tz::UTC,
            ..sunday_utc
        };
        assert_eq!(run(&rules, &same_instant_in_utc).rule_id, None);
    }

    #[test]
    fn a_window_over_midnight_belongs_to_the_day_it_starts() {
        let mut r = rule("night", &[]);
        r.conditions.windows = vec![TimeWindow {
            weekdays: vec![Weekday::Fri, Weekday::Sat],
            from: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            to: NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
        }];
        let rules = [r];
        let fires = |y, mo, d, h, mi| {
            let i = Input {
                at: at_moscow(y, mo, d, h, mi),
                ..input("Срочно!")
            };
            run(&rules, &i).rule_id.is_some()
        };
        // 7 March 2025 is a Friday.
        assert!(fires(2025, 3, 7, 23, 0), "Friday night");
        assert!(
            fires(2025, 3, 8, 3, 0),
            "Saturday 03:00 is still Friday's night"
        );
        assert!(fires(2025, 3, 9, 5, 59), "Sunday 05:59 is Saturday's night");
        assert!(!fires(2025, 3, 9, 6, 0), "the end is exclusive");
        assert!(!fires(2025, 3, 7, 3, 0), "Friday 03:00 is Thursday's night");
        assert!(!fires(2025, 3, 7, 21, 59), "before the start");
        assert!(!fires(2025, 3, 9, 23, 0), "Sunday is not in the set");
    }

    #[test]
    fn the_first_enabled_match_wins() {
        let mut off = rule("off", &["заказ"]);
        off.enabled = false;
        let rules = [
            rule("return", &["возврат"]),
            off,
            rule("order", &["заказ"]),
            rule("order-too", &["заказ"]),
        ];
        let d = run(&rules, &input("Где мой заказ?"));
        assert_eq!(d.rule_id.as_deref(), Some("order"));
        assert_eq!(
            d.explanation,
            [
                Step::Skipped {
                    rule: "Rule return".into(),
                    reason: "no keyword matched".into()
                },
                Step::Skipped {
                    rule: "Rule off".into(),
                    reason: "disabled".into()
                },
                Step::Matched {
                    rule: "Rule order".into(),
                    why: vec!["keyword «заказ» matched «заказ»".into()]
                },
            ]
        );
    }

    #[test]
    fn no_match_falls_to_the_default_with_every_reason() {
        let rules = [rule("a", &["оптом"]), rule("b", &["гарантия"])];
        let d = run(&rules, &input("Добрый вечер! Есть диваны синего цвета?"));
        assert_eq!(d.rule_id, None);
        assert_eq!(d.actions, default_actions());
        assert_eq!(
            d.explanation,
            [
                Step::Skipped {
                    rule: "Rule a".into(),
                    reason: "no keyword matched".into()
                },
                Step::Skipped {
                    rule: "Rule b".into(),
                    reason: "no keyword matched".into()
                },
                Step::Default,
            ]
        );
        assert_eq!(run(&[], &input("привет")).explanation, [Step::Default]);
    }

    #[test]
    fn a_rule_without_conditions_matches_everything() {
        let d = run(&[rule("all", &[])], &input("…"));
        assert_eq!(
            d.explanation,
            [Step::Matched {
                rule: "Rule all".into(),
                why: vec!["no conditions: matches every message".into()]
            }]
        );
    }

    #[test]
    fn a_regex_is_case_insensitive_with_yo_as_e_and_either_it_or_a_keyword_may_match() {
        let mut r = rule("status", &["где посылка"]);
        r.conditions.regex = Some(r"заказ\w*\s*№?\s*\d{4,}".into());
        let rules = [r];
        let d = run(&rules, &input("Где мой ЗАКАЗ №123456? Жду неделю"));
        assert_eq!(
            last_step(&d),
            &Step::Matched {
                rule: "Rule status".into(),
                why: vec![r"regex «заказ\w*\s*№?\s*\d{4,}» matched «ЗАКАЗ №123456»".into()]
            }
        );
        assert_eq!(
            fired(&rules, "Где посылку забрать?").as_deref(),
            Some("status")
        );
        assert_eq!(fired(&rules, "Заказ 12 пришёл"), None);
        assert_eq!(
            run(&rules, &input("Заказ 12 пришёл")).explanation[0],
            Step::Skipped {
                rule: "Rule status".into(),
                reason: "neither a keyword nor the regex matched".into()
            }
        );

        let mut r = rule("yo", &[]);
        r.conditions.regex = Some("зелён(ый|ая)".into());
        let rules = [r];
        assert_eq!(fired(&rules, "ЗЕЛЕНЫЙ диван").as_deref(), Some("yo"));
        assert_eq!(fired(&rules, "Зелёная кровать").as_deref(), Some("yo"));
        assert_eq!(
            run(&rules, &input("синий")).explanation[0],
            Step::Skipped {
                rule: "Rule yo".into(),
                reason: "the regex did not match".into()
            }
        );
    }

    #[test]
    fn an_invalid_regex_is_refused_with_its_position() {
        let mut r = rule("bad", &[]);
        r.conditions.regex = Some("дост(авка".into());
        let errors = validate(&r).expect_err("unclosed group");
        assert_eq!(
            errors,
            [RuleError {
                field: "conditions.regex",
                message: "unclosed group (at character 5)".into(),
                position: Some("дост".len()),
            }]
        );

        r.conditions.regex = Some("(доставка|самовывоз))".into());
        let errors = validate(&r).expect_err("unopened group");
        assert_eq!(errors[0].message, "unopened group (at character 21)");
        assert_eq!(errors[0].position, Some("(доставка|самовывоз)".len()));

        r.conditions.regex = Some("цена[".into());
        let errors = validate(&r).expect_err("unclosed class");
        assert_eq!(errors[0].position, Some("цена".len()));
        assert!(
            errors[0].message.contains("unclosed character class"),
            "{errors:?}"
        );

        // The rule set names the rule; the on-the-spot decision skips it and says why.
        let rules = [r.clone(), rule("ok", &[])];
        let errors = RuleSet::compile(&rules).expect_err("one bad rule");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "bad");
        let d = decide(&rules, &default_actions(), &input("цена?"));
        assert_eq!(d.rule_id.as_deref(), Some("ok"));
        assert!(
            matches!(&d.explanation[0], Step::Skipped { reason, .. }
                if reason.starts_with("invalid rule: conditions.regex: unclosed character class")),
            "{:?}",
            d.explanation
        );
    }

    #[test]
    fn validation_collects_every_problem() {
        let mut r = rule("x", &["доставка", "!!!"]);
        r.name = "  ".into();
        r.conditions.regex = Some(String::new());
        r.conditions.exclude = vec![String::new()];
        r.conditions.windows = vec![
            working_hours(),
            TimeWindow {
                weekdays: vec![],
                ..working_hours()
            },
        ];
        r.actions.responsible = Some(Responsible::RoundRobin(vec![]));
        r.actions.status_id = Some(142);
        r.actions.tags = vec!["ok".into(), " ".into()];
        let errors = validate(&r).expect_err("many problems");
        let fields: Vec<(&str, Option<usize>)> =
            errors.iter().map(|e| (e.field, e.position)).collect();
        assert_eq!(
            fields,
            [
                ("name", None),
                ("conditions.keywords", Some(1)),
                ("conditions.exclude", Some(0)),
                ("conditions.regex", None),
                ("conditions.windows", Some(1)),
                ("actions.responsible", None),
                ("actions.status_id", None),
                ("actions.tags", Some(1)),
            ]
        );
        assert!(validate(&rule("fine", &["доставка"])).is_ok());

        let errors =
            RuleSet::compile(&[rule("same", &[]), rule("same", &[])]).expect_err("duplicate ids");
        assert_eq!(errors[0].0, "same");
        assert_eq!(errors[0].1.field, "id");
    }

    #[test]
    fn the_rules_actions_are_laid_over_the_default() {
        // Only tags: the default's pipeline, stage and responsible stay; tags add up.
        let d = run(&[rule("vip", &[])], &input("hi"));
        assert_eq!(
            d.actions,
            Actions {
                tags: vec!["chatter".into(), "vip".into()],
                ..default_actions()
            }
        );
        // Another pipeline brings its own stage (None = its first), never the default's.
        let mut wholesale = rule("wholesale", &[]);
        wholesale.actions = Actions {
            pipeline_id: Some(200),
            status_id: None,
            responsible: Some(Responsible::RoundRobin(vec![7, 8])),
            tags: vec!["chatter".into()],
        };
        let d = run(&[wholesale], &input("hi"));
        assert_eq!(
            d.actions,
            Actions {
                pipeline_id: Some(200),
                status_id: None,
                responsible: Some(Responsible::RoundRobin(vec![7, 8])),
                tags: vec!["chatter".into()],
            }
        );
        // A stage alone is a stage of the default pipeline.
        let mut stage = rule("stage", &[]);
        stage.actions.status_id = Some(1002);
        stage.actions.responsible = Some(Responsible::User(5));
        let d = run(&[stage], &input("hi"));
        assert_eq!(d.actions.pipeline_id, Some(100));
        assert_eq!(d.actions.status_id, Some(1002));
        assert_eq!(d.actions.responsible, Some(Responsible::User(5)));
    }

    #[test]
    fn rules_and_decisions_round_trip_through_json() {
        let mut r = rule("night", &["доставка"]);
        r.conditions.sources = vec![SITE];
        r.conditions.regex = Some(r"\d+".into());
        r.conditions.windows = vec![working_hours()];
        r.actions.responsible = Some(Responsible::RoundRobin(vec![1, 2]));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["conditions"]["windows"][0]["weekdays"][0], "Mon");
        assert_eq!(json["conditions"]["windows"][0]["from"], "09:00:00");
        assert_eq!(json["actions"]["responsible"]["round_robin"][1], 2);
        assert_eq!(serde_json::from_value::<Rule>(json).unwrap(), r);

        // What a settings form might post: missing parts take their defaults.
        let sparse: Rule = serde_json::from_str(
            r#"{"id":"r1","name":"Опт","enabled":true,
                "conditions":{"keywords":["оптом"]},
                "actions":{"responsible":"first_to_answer"}}"#,
        )
        .unwrap();
        assert_eq!(sparse.conditions.keywords, ["оптом"]);
        assert!(sparse.conditions.windows.is_empty());
        assert_eq!(sparse.actions.responsible, Some(Responsible::FirstToAnswer));

        let d = run(&[sparse], &input("Купить оптом"));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["rule_id"], "r1");
        assert_eq!(json["explanation"][0]["step"], "matched");
        assert_eq!(serde_json::from_value::<Decision>(json).unwrap(), d);
    }

    #[test]
    fn weekdays_are_labelled_in_runs() {
        use Weekday::*;
        assert_eq!(weekdays_label(&[Fri, Mon, Tue, Wed, Thu]), "Пн–Пт");
        assert_eq!(weekdays_label(&[Sat, Sun]), "Сб, Вс");
        assert_eq!(weekdays_label(&[Mon, Wed, Thu, Fri, Sun]), "Пн, Ср–Пт, Вс");
        assert_eq!(
            weekdays_label(&[Mon, Tue, Wed, Thu, Fri, Sat, Sun]),
            "Пн–Вс"
        );
    }
}
