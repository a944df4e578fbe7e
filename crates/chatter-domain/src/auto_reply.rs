//! Auto-replies (requirement R5.3): a company's ordered rules, each with one trigger, optional
//! text conditions, one or more actions and a limit. The text conditions are the routing rules'
//! matcher ([`crate::routing`]: stems, phrases, a regex, exclusions), compiled through it, so
//! there is one matcher in the product. Everything here is pure; core stores, evaluates and acts.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::routing::{self, RuleSet};
use crate::values::{limits, FieldError};

/// The longest "no answer" delay: 7 days, in minutes.
pub const MAX_DELAY_MINUTES: u32 = 7 * 24 * 60;
/// The longest reply, in characters (a messenger's text limit splits it further).
pub const REPLY_MAX: usize = 4000;
/// The longest "at most once per" period: a year, in minutes.
pub const ONCE_PER_MAX_MINUTES: u32 = 365 * 24 * 60;
/// The longest rule name, in characters.
pub const NAME_MAX: usize = 80;
/// Loop guard: at most this many auto-replies go to one conversation within [`LOOP_WINDOW_MS`],
/// whatever the rules say, so two bots answering each other stop at once.
pub const LOOP_CAP: u64 = 3;
/// The loop guard's window: one hour.
pub const LOOP_WINDOW_MS: i64 = 60 * 60 * 1000;

/// One auto-reply rule as the company configures it (the stored JSON and the API's body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoReply {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Sources whose conversations it answers; empty = every source.
    #[serde(default)]
    pub sources: Vec<Uuid>,
    pub trigger: Trigger,
    /// Text conditions on the customer's message (for the keyword trigger: its keywords).
    #[serde(default)]
    pub conditions: TextMatch,
    pub actions: Vec<Action>,
    /// At most once per conversation per this many minutes (0: no limit but the loop guard);
    /// absent: the trigger's default ([`Trigger::default_period`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once_per_minutes: Option<u32>,
    /// At most once per conversation ever (over `once_per_minutes`).
    #[serde(default)]
    pub once_ever: bool,
}

fn yes() -> bool {
    true
}

/// What makes a rule fire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Trigger {
    /// A customer writes while the source's working hours say closed.
    OutOfHours,
    /// A customer's message matches the conditions' keywords or regex.
    Keywords,
    /// The first message of a new conversation.
    FirstMessage,
    /// No manager answered a customer's message within `minutes`.
    NoAnswer {
        minutes: u32,
        /// Count only working hours (a timer due while closed waits for the opening).
        #[serde(default)]
        working_hours_only: bool,
    },
}

impl Trigger {
    /// The stored and form name of the trigger.
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::OutOfHours => "out_of_hours",
            Trigger::Keywords => "keywords",
            Trigger::FirstMessage => "first_message",
            Trigger::NoAnswer { .. } => "no_answer",
        }
    }

    /// The limit when a rule names none: out of hours once a day, the greeting once ever,
    /// keywords once an hour, "no answer" once per unanswered message (a timer per message).
    pub fn default_period(&self) -> Option<u32> {
        match self {
            Trigger::OutOfHours => Some(24 * 60),
            Trigger::FirstMessage => None,
            Trigger::Keywords => Some(60),
            Trigger::NoAnswer { .. } => Some(0),
        }
    }
}

/// Text conditions: the routing matcher's keywords, regex and exclusions. Empty = any text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextMatch {
    pub keywords: Vec<String>,
    pub regex: Option<String>,
    pub exclude: Vec<String>,
}

impl TextMatch {
    pub fn is_empty(&self) -> bool {
        self.keywords.is_empty() && self.regex.is_none() && self.exclude.is_empty()
    }
}

/// What a fired rule does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Sends this text, or the company's reply template `template_id` (with its file where the
    /// kind takes files), to the customer, marked automatic; outside WhatsApp's 24-hour window
    /// the approved `whatsapp_template` instead, when one is named.
    Reply {
        #[serde(default)]
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template_id: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        whatsapp_template: Option<WaTemplate>,
    },
    /// Assigns the conversation: to the one person, or to the next of several in turn.
    Assign { users: Vec<Uuid> },
    /// Puts these company labels on the conversation.
    AddLabels { labels: Vec<Uuid> },
    /// Moves the conversation's amoCRM deal to this stage (of `pipeline_id`, else its own).
    MoveDeal {
        #[serde(default)]
        pipeline_id: Option<i64>,
        status_id: i64,
    },
    /// Notifies these people (empty: everyone who reads the inbox).
    Notify {
        #[serde(default)]
        users: Vec<Uuid>,
        /// Also by e-mail (empty `users`: to the company's owners and admins).
        #[serde(default)]
        email: bool,
    },
}

/// An approved WhatsApp message template (created in Meta's WhatsApp Manager): the only message
/// WhatsApp delivers once the customer's 24-hour window is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaTemplate {
    /// Its name in the business account (lower-case letters, digits, `_`).
    pub name: String,
    /// Its language code (`ru`, `en_US`).
    pub language: String,
    /// The body's `{{1}}`, `{{2}}`… in order; each may name the conversation's values.
    #[serde(default)]
    pub params: Vec<String>,
}

/// The most body parameters a WhatsApp template takes here.
pub const WA_PARAMS_MAX: usize = 10;

impl WaTemplate {
    fn check(&self, errs: &mut Vec<FieldError>) {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 512
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            errs.push(FieldError::new("wa_template", "err.auto_wa_name"));
        }
        let lang_ok = (2..=15).contains(&self.language.len())
            && self
                .language
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'_');
        if !lang_ok {
            errs.push(FieldError::new("wa_language", "err.auto_wa_language"));
        }
        if self.params.len() > WA_PARAMS_MAX {
            errs.push(FieldError::too_many("wa_params", WA_PARAMS_MAX));
        }
        for p in &self.params {
            if p.trim().is_empty() {
                errs.push(FieldError::new("wa_params", "err.wa_template_params"));
            } else if let Err(e) =
                crate::values::optional_text("wa_params", p, limits::TEMPLATE_PARAM)
            {
                errs.push(e);
            } else if let Err(e) = crate::template::parse(p) {
                errs.push(e.field_error("wa_params"));
            } else {
                continue;
            }
            break;
        }
    }
}
impl Action {
    /// A reply with this text.
    pub fn reply(text: impl Into<String>) -> Action {
        Action::Reply {
            text: text.into(),
            template_id: None,
            whatsapp_template: None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::Reply { .. } => "reply",
            Action::Assign { .. } => "assign",
            Action::AddLabels { .. } => "add_labels",
            Action::MoveDeal { .. } => "move_deal",
            Action::Notify { .. } => "notify",
        }
    }
}

impl AutoReply {
    /// The limit in effect, in minutes (`None`: once ever; 0: none): the rule's own, else its
    /// trigger's default.
    pub fn period(&self) -> Option<u32> {
        if self.once_ever {
            return None;
        }
        match self.once_per_minutes {
            Some(p) => Some(p),
            None => self.trigger.default_period(),
        }
    }

    /// The reply text, when the rule sends text (not a saved template).
    pub fn reply_text(&self) -> Option<&str> {
        self.actions.iter().find_map(|a| match a {
            Action::Reply { text, .. } if !text.is_empty() => Some(text.as_str()),
            _ => None,
        })
    }

    /// The saved reply template the rule sends, if it sends one.
    pub fn reply_template(&self) -> Option<Uuid> {
        self.actions.iter().find_map(|a| match a {
            Action::Reply { template_id, .. } => *template_id,
            _ => None,
        })
    }

    /// Whether the rule sends the customer something.
    pub fn replies(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, Action::Reply { .. }))
    }

    /// Checks what needs no database: a name, at least one action, a delay of 1 minute to
    /// 7 days, keywords for the keyword trigger, a regex that compiles, a reply with text.
    /// The ids a rule names (sources, people, labels, stages) are checked by core.
    pub fn check(&self) -> Result<Matcher, Vec<FieldError>> {
        let mut errs = Vec::new();
        let name = self.name.trim();
        if name.is_empty() {
            errs.push(FieldError::new("name", "err.auto_name_required"));
        } else if let Err(e) = crate::values::optional_text("name", name, NAME_MAX) {
            errs.push(e);
        }
        // Word lists and the regex as the routing rules limit theirs: one line per word, no
        // control or bidi characters (they would reach the editor and the dry run).
        for (field, words) in [
            ("keywords", &self.conditions.keywords),
            ("exclude", &self.conditions.exclude),
        ] {
            if words.len() > limits::KEYWORDS {
                errs.push(FieldError::too_many(field, limits::KEYWORDS));
            } else if let Some(e) = words
                .iter()
                .find_map(|w| crate::values::optional_text(field, w, limits::KEYWORD).err())
            {
                errs.push(e);
            }
        }
        if let Some(r) = &self.conditions.regex {
            if let Err(e) = crate::values::optional_text("regex", r, limits::REGEX) {
                errs.push(e);
            }
        }
        if let Trigger::NoAnswer { minutes, .. } = self.trigger {
            if minutes == 0 || minutes > MAX_DELAY_MINUTES {
                errs.push(FieldError::new("delay", "err.auto_delay_range"));
            }
        }
        if self.trigger == Trigger::Keywords
            && self.conditions.keywords.iter().all(|k| k.trim().is_empty())
            && self.conditions.regex.as_deref().is_none_or(str::is_empty)
        {
            errs.push(FieldError::new("keywords", "err.auto_keywords_required"));
        }
        if self
            .once_per_minutes
            .is_some_and(|m| m > ONCE_PER_MAX_MINUTES)
        {
            errs.push(FieldError::new("once_per", "err.auto_once_per"));
        }
        if self.actions.is_empty() {
            errs.push(FieldError::new("actions", "err.auto_action_required"));
        }
        for a in &self.actions {
            if let Action::Reply {
                whatsapp_template: Some(w),
                ..
            } = a
            {
                w.check(&mut errs);
            }
            match a {
                Action::Reply {
                    text,
                    template_id: Some(_),
                    ..
                } if !text.trim().is_empty() => {
                    errs.push(FieldError::new("reply", "err.auto_reply_text_or_template"));
                }
                Action::Reply {
                    template_id: Some(_),
                    ..
                } => {}
                Action::Reply { text, .. } if text.trim().is_empty() => {
                    errs.push(FieldError::new("reply", "err.auto_reply_empty"));
                }
                Action::Reply { text, .. } if text.chars().count() > REPLY_MAX => {
                    errs.push(FieldError::too_long("reply", REPLY_MAX));
                }
                // What the customer gets: line breaks and tabs but no other control character,
                // no bidi override; it may name the conversation's values, as a template does.
                Action::Reply { text, .. } => {
                    if text
                        .chars()
                        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
                    {
                        errs.push(FieldError::new("reply", "err.control_chars"));
                    } else if text.chars().any(crate::text::is_bidi_control) {
                        errs.push(FieldError::new("reply", "err.bidi_chars"));
                    } else if let Err(e) = crate::template::parse(text) {
                        errs.push(e.field_error("reply"));
                    }
                }
                Action::Assign { users } if users.is_empty() => {
                    errs.push(FieldError::new("assign", "err.auto_assign_empty"));
                }
                Action::AddLabels { labels } if labels.is_empty() => {
                    errs.push(FieldError::new("labels", "err.label_unknown"));
                }
                _ => {}
            }
        }
        let matcher = match Matcher::compile(&self.conditions) {
            Ok(m) => Some(m),
            Err(e) => {
                errs.extend(e);
                None
            }
        };
        match matcher {
            Some(m) if errs.is_empty() => Ok(m),
            _ => Err(errs),
        }
    }
}

/// A rule's text conditions compiled once by the routing matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    set: Option<RuleSet>,
}

impl Matcher {
    /// Compiles `m`; its errors name the form's fields (`keywords`, `regex`, `exclude`).
    pub fn compile(m: &TextMatch) -> Result<Matcher, Vec<FieldError>> {
        let keywords: Vec<String> = m
            .keywords
            .iter()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect();
        let exclude: Vec<String> = m
            .exclude
            .iter()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect();
        let regex = m.regex.clone().filter(|r| !r.trim().is_empty());
        if keywords.is_empty() && exclude.is_empty() && regex.is_none() {
            return Ok(Matcher { set: None });
        }
        let rule = routing::Rule {
            id: "auto".into(),
            name: "auto".into(),
            enabled: true,
            conditions: routing::Conditions {
                keywords,
                regex,
                exclude,
                ..Default::default()
            },
            actions: routing::Actions::default(),
        };
        RuleSet::compile(&[rule])
            .map(|set| Matcher { set: Some(set) })
            .map_err(|errs| {
                errs.into_iter()
                    .map(|(_, e)| match e.field {
                        "conditions.regex" => FieldError::new("regex", "err.auto_regex"),
                        "conditions.exclude" => FieldError::new("exclude", "err.auto_no_words"),
                        _ => FieldError::new("keywords", "err.auto_no_words"),
                    })
                    .collect()
            })
    }

    /// Whether `text` satisfies the conditions (no conditions: any text).
    pub fn matches(&self, text: &str) -> bool {
        let Some(set) = &self.set else {
            return true;
        };
        let input = routing::Input {
            source_id: Uuid::nil(),
            text,
            at: chrono::DateTime::UNIX_EPOCH,
            tz: chrono_tz::UTC,
        };
        set.decide(&routing::Actions::default(), &input)
            .rule_id
            .is_some()
    }
}

/// The text conditions of many rules compiled into one set, so a message is tokenized and
/// stemmed once for all of them (`routing::RuleSet::matching`).
#[derive(Debug, Clone)]
pub struct Matchers {
    set: Option<RuleSet>,
    /// Rules without text conditions: any text fits.
    open: Vec<String>,
}

impl Matchers {
    /// Compiles `(id, conditions)` of each rule; a rule whose conditions do not compile is
    /// left out (it never matches).
    pub fn compile(rules: &[(String, &TextMatch)]) -> Matchers {
        let mut open = Vec::new();
        let mut compiled = Vec::new();
        for (id, m) in rules {
            let rule = routing::Rule {
                id: id.clone(),
                name: id.clone(),
                enabled: true,
                conditions: routing::Conditions {
                    keywords: m.keywords.clone(),
                    regex: m.regex.clone().filter(|r| !r.trim().is_empty()),
                    exclude: m.exclude.clone(),
                    ..Default::default()
                },
                actions: routing::Actions::default(),
            };
            if m.keywords.is_empty() && m.exclude.is_empty() && rule.conditions.regex.is_none() {
                open.push(id.clone());
            } else if routing::validate(&rule).is_ok() {
                compiled.push(rule);
            }
        }
        // Each rule compiled alone above, and ids are unique: the set compiles.
        let set = RuleSet::compile(&compiled).ok();
        Matchers { set, open }
    }

    /// The ids of the rules whose conditions `text` satisfies.
    pub fn matching(&self, text: &str) -> std::collections::HashSet<String> {
        let input = routing::Input {
            source_id: Uuid::nil(),
            text,
            at: chrono::DateTime::UNIX_EPOCH,
            tz: chrono_tz::UTC,
        };
        let mut out: std::collections::HashSet<String> = self
            .set
            .iter()
            .flat_map(|s| s.matching(&input))
            .map(str::to_owned)
            .collect();
        out.extend(self.open.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(trigger: Trigger, actions: Vec<Action>) -> AutoReply {
        AutoReply {
            name: "Нерабочее время".into(),
            enabled: true,
            sources: vec![],
            trigger,
            conditions: TextMatch::default(),
            actions,
            once_per_minutes: None,
            once_ever: false,
        }
    }

    fn fields(r: &AutoReply) -> Vec<&'static str> {
        r.check()
            .err()
            .unwrap_or_default()
            .iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_rule_needs_an_action_and_a_delay_within_seven_days() {
        assert_eq!(fields(&rule(Trigger::OutOfHours, vec![])), ["actions"]);
        let reply = vec![Action::reply("Ответим утром")];
        for (minutes, ok) in [
            (0, false),
            (1, true),
            (MAX_DELAY_MINUTES, true),
            (MAX_DELAY_MINUTES + 1, false),
        ] {
            let r = rule(
                Trigger::NoAnswer {
                    minutes,
                    working_hours_only: false,
                },
                reply.clone(),
            );
            assert_eq!(r.check().is_ok(), ok, "{minutes}");
        }
    }

    #[test]
    fn keywords_use_the_routing_matcher_with_stems_and_exclusions() {
        let mut r = rule(Trigger::Keywords, vec![Action::reply("Цены на сайте")]);
        assert_eq!(fields(&r), ["keywords"]);
        r.conditions.keywords = vec!["цена".into(), "доставка".into()];
        r.conditions.exclude = vec!["опт".into()];
        let m = r.check().expect("valid");
        assert!(m.matches("Какие у вас цены?"));
        assert!(m.matches("сколько стоит доставку"));
        assert!(!m.matches("цены на опт"));
        assert!(!m.matches("привет"));
        r.conditions.regex = Some("(unclosed".into());
        assert_eq!(fields(&r), ["regex"]);
    }

    #[test]
    fn many_rules_are_matched_at_once_as_each_alone() {
        let kw = TextMatch {
            keywords: vec!["доставка".into()],
            ..TextMatch::default()
        };
        let re = TextMatch {
            regex: Some(r"заказ\s*\d+".into()),
            ..TextMatch::default()
        };
        let any = TextMatch::default();
        let m = Matchers::compile(&[("a".into(), &kw), ("b".into(), &re), ("c".into(), &any)]);
        let got = |t: &str| {
            let mut v: Vec<String> = m.matching(t).into_iter().collect();
            v.sort();
            v
        };
        assert_eq!(got("Где доставку заказ 15?"), ["a", "b", "c"]);
        assert_eq!(got("привет"), ["c"]);
    }

    #[test]
    fn a_reply_is_text_or_a_template_and_a_whatsapp_template_is_well_formed() {
        let t = Uuid::now_v7();
        let with = |text: &str, template_id, wa| {
            rule(
                Trigger::FirstMessage,
                vec![Action::Reply {
                    text: text.into(),
                    template_id,
                    whatsapp_template: wa,
                }],
            )
        };
        assert!(with("", Some(t), None).check().is_ok());
        assert_eq!(fields(&with("Привет", Some(t), None)), ["reply"]);
        assert_eq!(fields(&with("", None, None)), ["reply"]);
        let wa = |name: &str, language: &str, params: &[&str]| WaTemplate {
            name: name.into(),
            language: language.into(),
            params: params.iter().map(|p| p.to_string()).collect(),
        };
        let ok = wa("order_ready", "ru", &["{client_name|клиент}"]);
        assert!(with("Привет", None, Some(ok)).check().is_ok());
        assert_eq!(
            fields(&with("Привет", None, Some(wa("Order Ready", "ru", &[])))),
            ["wa_template"]
        );
        assert_eq!(
            fields(&with("Привет", None, Some(wa("order", "русский", &[])))),
            ["wa_language"]
        );
        assert_eq!(
            fields(&with("Привет", None, Some(wa("order", "ru", &["{nope}"])))),
            ["wa_params"]
        );
        assert_eq!(
            fields(&with("Привет", None, Some(wa("order", "ru", &[" "])))),
            ["wa_params"]
        );
        // Rules stored before templates read as text replies.
        let old: Action = serde_json::from_str(r#"{"type":"reply","text":"Ок"}"#).expect("reads");
        assert_eq!(old, Action::reply("Ок"));
        let old: Action = serde_json::from_str(r#"{"type":"notify","users":[]}"#).expect("reads");
        assert_eq!(
            old,
            Action::Notify {
                users: vec![],
                email: false
            }
        );
    }

    #[test]
    fn limits_default_by_trigger() {
        let r = rule(Trigger::OutOfHours, vec![]);
        assert_eq!(r.period(), Some(1440));
        assert_eq!(rule(Trigger::FirstMessage, vec![]).period(), None);
        let mut r = rule(Trigger::FirstMessage, vec![]);
        r.once_per_minutes = Some(30);
        assert_eq!(r.period(), Some(30));
    }
}
