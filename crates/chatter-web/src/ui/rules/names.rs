//! Names of what a rule refers to (pipelines, stages and users of the synced amoCRM account,
//! the company's sources) and the lines that say, in the reader's language, what a rule checks
//! and what it does: shared by the rules page, its form and the API's rule listing.

use super::DAYS;
use crate::i18n::Tr;
use crate::AppState;
use chatter_core::crm::{self, integration::Metadata};
use chatter_core::{Actor, CoreError};
use chatter_domain::routing::{Actions, Conditions, Responsible, TimeWindow};
use uuid::Uuid;

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
            .map(|s| (s.id.0, s.name))
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
    pub(super) fn conditions(&self, tr: Tr, c: &Conditions) -> Vec<String> {
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
    pub(super) fn actions(&self, tr: Tr, a: &Actions) -> Vec<String> {
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
