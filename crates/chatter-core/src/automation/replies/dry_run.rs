//! The dry run of an auto-reply rule (saved or being edited) against the company's real
//! conversations of the last N days: which customer messages it would have answered, with what
//! text, and how many a day. Reads only; nothing is sent or recorded.

use super::checked;
use super::run::{answered_between, due_at, first_message, out_of_hours};
use crate::{Actor, Core, CoreError, Result};
use chatter_domain::auto_reply::{AutoReply, Trigger};
use chatter_domain::{ConversationId, Direction, FieldError, MessageId, Permission};
use chatter_store::entity::{contact, conversation, message, reply_template};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use std::collections::{BTreeMap, HashMap};

/// The most days a dry run looks back.
pub const MAX_DAYS: u32 = 90;
/// The most customer messages one dry run reads (the newest are kept).
const MAX_MESSAGES: u64 = 5000;

/// One message the rule would have answered.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Hit {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    /// Who wrote (the contact's name).
    pub customer: String,
    /// What the customer wrote (the first 140 characters).
    pub text: String,
    /// When the rule would have acted (Unix ms): the message's time, or the timer's.
    pub at: i64,
    /// What would have been sent (`None`: the rule sends nothing, only acts).
    pub reply: Option<String>,
}

/// The answer of a dry run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DryRun {
    pub days: u32,
    /// Customer messages looked at.
    pub looked_at: usize,
    pub hits: Vec<Hit>,
    /// Hits per day (UTC date `YYYY-MM-DD`), oldest first.
    pub per_day: BTreeMap<String, usize>,
}

/// Runs `rule` over the last `days` (1 to 90) of the company's customer messages, as the engine
/// would (source filter, trigger, text conditions, the once-per-period limit; the loop guard
/// and the WhatsApp window are left out: they depend on what the rule itself would have sent).
pub async fn dry_run(core: &Core, actor: &Actor, rule: &AutoReply, days: u32) -> Result<DryRun> {
    actor.require(Permission::Read)?;
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(CoreError::Invalid(vec![FieldError::new(
            "days",
            "err.auto_days_range",
        )]));
    }
    let matcher = checked(&core.db, actor.company(), rule).await?;
    let now = core.now();
    let since = now - i64::from(days) * 86_400_000;
    let mut msgs = message::Entity::find()
        .filter(message::Column::CompanyId.eq(actor.company()))
        .filter(message::Column::Direction.eq(Direction::In))
        .filter(message::Column::CreatedAt.gte(since))
        .order_by_desc(message::Column::CreatedAt)
        .limit(MAX_MESSAGES)
        .all(&core.db)
        .await?;
    msgs.reverse();
    // A rule that sends a saved template shows the template's text with each customer's values.
    let template_body = match rule.reply_template() {
        Some(id) => reply_template::Entity::find_by_id(id)
            .filter(reply_template::Column::CompanyId.eq(actor.company().uuid()))
            .one(&core.db)
            .await?
            .map(|t| t.body),
        None => None,
    };
    let mut convs: HashMap<ConversationId, Option<conversation::Model>> = HashMap::new();
    let mut last_fired: HashMap<ConversationId, i64> = HashMap::new();
    let mut out = DryRun {
        days,
        looked_at: msgs.len(),
        hits: Vec::new(),
        per_day: BTreeMap::new(),
    };
    for m in &msgs {
        if let std::collections::hash_map::Entry::Vacant(e) = convs.entry(m.conversation_id) {
            e.insert(
                conversation::Entity::find_by_id(m.conversation_id)
                    .one(&core.db)
                    .await?,
            );
        }
        let Some(Some(conv)) = convs.get(&m.conversation_id) else {
            continue;
        };
        if !rule.sources.is_empty() && !rule.sources.contains(&conv.source_id.0) {
            continue;
        }
        if !matcher.matches(m.text.as_deref().unwrap_or_default()) {
            continue;
        }
        let at = match &rule.trigger {
            Trigger::OutOfHours => out_of_hours(&core.db, conv, m.created_at)
                .await?
                .then_some(m.created_at),
            Trigger::Keywords => Some(m.created_at),
            Trigger::FirstMessage => first_message(&core.db, m).await?.then_some(m.created_at),
            Trigger::NoAnswer {
                minutes,
                working_hours_only,
            } => {
                let due =
                    due_at(&core.db, conv, m.created_at, *minutes, *working_hours_only).await?;
                // Answered in time, or still waiting: the timer would not have fired (yet).
                let answered = answered_between(&core.db, conv.id, m.created_at, due).await?;
                (!answered && due <= now).then_some(due)
            }
        };
        let Some(at) = at else {
            continue;
        };
        let held = match (rule.period(), last_fired.get(&conv.id)) {
            (_, None) | (Some(0), _) => false,
            (None, Some(_)) => true,
            (Some(p), Some(last)) => at - last < i64::from(p) * 60_000,
        };
        if held {
            continue;
        }
        last_fired.insert(conv.id, at);
        // What this customer would have got: the rule's text with their values.
        let reply = match rule.reply_text().or(template_body.as_deref()) {
            Some(t) => Some(crate::inbox::templates::render_in(&core.db, conv, t).await?),
            None => None,
        };
        let customer = contact::Entity::find_by_id(conv.contact_id)
            .select_only()
            .column(contact::Column::Name)
            .into_tuple::<String>()
            .one(&core.db)
            .await?
            .unwrap_or_default();
        let day = chrono::DateTime::from_timestamp_millis(at)
            .unwrap_or_default()
            .format("%Y-%m-%d")
            .to_string();
        *out.per_day.entry(day).or_default() += 1;
        out.hits.push(Hit {
            conversation_id: conv.id,
            message_id: m.id,
            customer,
            text: m
                .text
                .as_deref()
                .unwrap_or_default()
                .chars()
                .take(140)
                .collect(),
            at,
            reply,
        });
    }
    Ok(out)
}
