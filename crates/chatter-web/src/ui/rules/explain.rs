//! The dry run's answer as the page shows it: each rule's step (skipped, matched, the default)
//! with the domain's English reasons put into the reader's language.

use super::Names;
use crate::i18n::Tr;
use chatter_domain::routing::{Decision, Step};

pub(crate) struct StepView {
    /// skipped | matched | default
    pub kind: &'static str,
    pub rule: String,
    pub lines: Vec<String>,
}

pub(super) struct DecisionView {
    /// The rule that fired; `None` = the default.
    pub rule: Option<String>,
    pub steps: Vec<StepView>,
    pub actions: Vec<String>,
}

pub(super) fn decision_view(tr: Tr, names: &Names, d: &Decision) -> DecisionView {
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
