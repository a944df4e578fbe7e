//! What auto-replies do. `AutoReplyCheck` runs once per new customer message: the company's
//! enabled rules are looked at in order; "no answer" rules set their timer (`NoAnswerTimer`,
//! one pending per conversation and rule), and of the others the first whose trigger, text
//! conditions and limit hold fires. Firing is one transaction: the record (unique per rule and
//! customer message, so a rerun or a second node fires nothing more), the automatic reply
//! through the reply path (pending message → `SendMessage`, mirrored to the CRM under the
//! name «Автоответ «…»»), the assignment, labels and notifications, and the live event.
//!
//! Limits: once per conversation per the rule's period; the loop guard (at most
//! [`LOOP_CAP`] auto-replies per conversation per hour, whatever the rules say; only customers'
//! messages start rules, never an outgoing or automatic one); a kind's reply window (WhatsApp's
//! 24 hours): outside it the rule's approved WhatsApp template goes instead, or the reply is
//! skipped and the reason recorded (`outgoing`).

use super::outgoing::{self, ReplyAction};
use super::{company_rules, RuleView};
use crate::automation::hours;
use crate::events::{self, Pending};
use crate::jobs::{BackgroundJob, JobError, JobMeta, JobOptions};
use crate::notifications::{self, New};
use crate::{Core, CoreError, Result};
use async_trait::async_trait;
use chatter_domain::auto_reply::{Action, Matchers, TextMatch, Trigger, LOOP_CAP, LOOP_WINDOW_MS};
use chatter_domain::{CompanyId, ConversationId, Direction, MessageId, Permission, UserId};
use chatter_store::entity::{auto_reply_firing, conversation, message};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use uuid::Uuid;

/// The name an automatic message carries as its author, in the thread and in amoCRM.
pub fn author_name(rule: &str) -> String {
    format!("🤖 Автоответ «{rule}»")
}

/// Outcomes recorded on `auto_reply_firings`.
pub const FIRED: &str = "fired";
pub const SKIPPED: &str = "skipped";
/// Reasons recorded with a skip.
pub const WINDOW_CLOSED: &str = "reply_window_closed";
pub const LOOP_GUARD: &str = "loop_guard";

/// Looks at a new customer message with the company's rules.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AutoReplyCheck {
    pub message_id: MessageId,
}

#[async_trait]
impl BackgroundJob for AutoReplyCheck {
    const NAME: &'static str = "auto_reply_check";

    fn dedup_key(&self) -> Option<String> {
        Some(format!("{}:{}", Self::NAME, self.message_id))
    }

    async fn run(&self, core: &Core, _job: &JobMeta) -> std::result::Result<(), JobError> {
        check(core, self.message_id)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))
    }
}

/// "No manager answered `message_id` in time": due at the message's time plus the rule's delay.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NoAnswerTimer {
    pub conversation_id: ConversationId,
    pub rule_id: Uuid,
    pub message_id: MessageId,
}

#[async_trait]
impl BackgroundJob for NoAnswerTimer {
    const NAME: &'static str = "auto_reply_no_answer";

    /// One pending timer per conversation and rule: later messages before it fires wait with it.
    fn dedup_key(&self) -> Option<String> {
        Some(format!(
            "{}:{}:{}",
            Self::NAME,
            self.conversation_id,
            self.rule_id
        ))
    }

    async fn run(&self, core: &Core, _job: &JobMeta) -> std::result::Result<(), JobError> {
        timer_due(core, self)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))
    }
}

/// The customer message, its conversation, and the rules that look at its source.
struct Facts {
    msg: message::Model,
    conv: conversation::Model,
}

async fn facts(conn: &impl ConnectionTrait, message_id: MessageId) -> Result<Option<Facts>> {
    let Some(msg) = message::Entity::find_by_id(message_id).one(conn).await? else {
        return Ok(None);
    };
    // Only a customer's message starts a rule: never ours, never an automatic one.
    if msg.direction != Direction::In {
        return Ok(None);
    }
    let Some(conv) = conversation::Entity::find_by_id(msg.conversation_id)
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Facts { msg, conv }))
}

fn applies(r: &RuleView, conv: &conversation::Model) -> bool {
    r.rule.enabled && (r.rule.sources.is_empty() || r.rule.sources.contains(&conv.source_id.0))
}

async fn check(core: &Core, message_id: MessageId) -> Result<()> {
    let Some(f) = facts(&core.db, message_id).await? else {
        return Ok(());
    };
    let rules = company_rules(&core.db, f.conv.company_id).await?;
    let text = f.msg.text.clone().unwrap_or_default();
    let matched = matchers(f.conv.company_id, &rules).matching(&text);
    let mut fired = false;
    for r in rules.iter().filter(|r| applies(r, &f.conv)) {
        if !matched.contains(&r.id.to_string()) {
            continue;
        }
        let holds = match &r.rule.trigger {
            Trigger::NoAnswer {
                minutes,
                working_hours_only,
            } => {
                let due = due_at(
                    &core.db,
                    &f.conv,
                    f.msg.created_at,
                    *minutes,
                    *working_hours_only,
                )
                .await?;
                if due == i64::MAX {
                    // Working hours that never open again: never due.
                    continue;
                }
                let timer = NoAnswerTimer {
                    conversation_id: f.conv.id,
                    rule_id: r.id,
                    message_id,
                };
                let opts = JobOptions::at(core.now())
                    .company(f.conv.company_id.0)
                    .run_at(due);
                timer.enqueue(&core.db, opts).await?;
                core.jobs_notify.notify_waiters();
                continue;
            }
            Trigger::OutOfHours => out_of_hours(&core.db, &f.conv, f.msg.created_at).await?,
            Trigger::Keywords => true,
            Trigger::FirstMessage => first_message(&core.db, &f.msg).await?,
        };
        if holds && !fired {
            fired = fire(core, r, &f).await?;
        }
    }
    Ok(())
}

/// The company's rules' text conditions, compiled once per version of its rules (kept per
/// process, keyed by each rule's id and time of change).
fn matchers(company: CompanyId, rules: &[RuleView]) -> Arc<Matchers> {
    type Compiled = HashMap<CompanyId, (Vec<(Uuid, i64)>, Arc<Matchers>)>;
    static COMPILED: LazyLock<Mutex<Compiled>> = LazyLock::new(|| Mutex::new(HashMap::new()));
    let version: Vec<(Uuid, i64)> = rules.iter().map(|r| (r.id, r.updated_at)).collect();
    if let Some((v, m)) = COMPILED.lock().ok().and_then(|c| c.get(&company).cloned()) {
        if v == version {
            return m;
        }
    }
    let list: Vec<(String, &TextMatch)> = rules
        .iter()
        .map(|r| (r.id.to_string(), &r.rule.conditions))
        .collect();
    let m = Arc::new(Matchers::compile(&list));
    if let Ok(mut c) = COMPILED.lock() {
        c.insert(company, (version, m.clone()));
    }
    m
}

/// Whether the source's working hours (its own, else the company's) say closed at `at`. No
/// hours set: never out of hours.
pub(super) async fn out_of_hours(
    conn: &impl ConnectionTrait,
    conv: &conversation::Model,
    at: i64,
) -> Result<bool> {
    let Some(h) = hours::effective(conn, conv.company_id, conv.source_id).await? else {
        return Ok(false);
    };
    let at = chrono::DateTime::from_timestamp_millis(at).unwrap_or_default();
    Ok(!h.at(at).is_open())
}

/// Whether `msg` is the first thing the customer wrote in its conversation.
pub(super) async fn first_message(
    conn: &impl ConnectionTrait,
    msg: &message::Model,
) -> Result<bool> {
    let earlier = message::Entity::find()
        .filter(message::Column::ConversationId.eq(msg.conversation_id))
        .filter(message::Column::Direction.eq(Direction::In))
        .filter(message::Column::Id.lt(msg.id))
        .count(conn)
        .await?;
    Ok(earlier == 0)
}

/// When a "no answer" timer for `f` is due: the message's time plus the delay; counting only
/// working hours, a message that came while closed starts counting at the opening.
/// When a "no answer in `minutes`" timer for a customer message of `conv` stored at `start`
/// falls due (`i64::MAX`: never).
pub(super) async fn due_at(
    conn: &impl ConnectionTrait,
    conv: &conversation::Model,
    start: i64,
    minutes: u32,
    working_only: bool,
) -> Result<i64> {
    let delay = i64::from(minutes) * 60_000;
    if !working_only {
        return Ok(start + delay);
    }
    // Only working minutes count: breaks, nights, weekends and holidays are skipped. Without
    // working hours every minute is one; hours that never open again never fall due.
    let Some(h) = hours::effective(conn, conv.company_id, conv.source_id).await? else {
        return Ok(start + delay);
    };
    let t = chrono::DateTime::from_timestamp_millis(start).unwrap_or_default();
    Ok(h.after_working(t, minutes)
        .map_or(i64::MAX, |d| d.timestamp_millis()))
}

/// The messages auto-replies sent in `conv` (not a manager's answer).
async fn automatic_ids(
    conn: &impl ConnectionTrait,
    conv: ConversationId,
) -> Result<Vec<MessageId>> {
    Ok(auto_reply_firing::Entity::find()
        .filter(auto_reply_firing::Column::ConversationId.eq(conv))
        .filter(auto_reply_firing::Column::ReplyMessageId.is_not_null())
        .select_only()
        .column(auto_reply_firing::Column::ReplyMessageId)
        .into_tuple::<Option<MessageId>>()
        .all(conn)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// Whether a person answered in `conv` at or after `since` (from Chatter or from amoCRM; an
/// automatic message is no answer).
pub(super) async fn answered_since(
    conn: &impl ConnectionTrait,
    conv: ConversationId,
    since: i64,
) -> Result<bool> {
    answered_between(conn, conv, since, i64::MAX).await
}

/// Whether a person answered in `conv` at or after `since` and before `until`.
pub(super) async fn answered_between(
    conn: &impl ConnectionTrait,
    conv: ConversationId,
    since: i64,
    until: i64,
) -> Result<bool> {
    let auto = automatic_ids(conn, conv).await?;
    let outs = message::Entity::find()
        .filter(message::Column::ConversationId.eq(conv))
        .filter(message::Column::Direction.eq(Direction::Out))
        .filter(message::Column::CreatedAt.gte(since))
        .filter(message::Column::CreatedAt.lt(until))
        .select_only()
        .column(message::Column::Id)
        .into_tuple::<MessageId>()
        .all(conn)
        .await?;
    Ok(outs.iter().any(|m| !auto.contains(m)))
}

async fn timer_due(core: &Core, t: &NoAnswerTimer) -> Result<()> {
    let Some(f) = facts(&core.db, t.message_id).await? else {
        return Ok(());
    };
    let rules = company_rules(&core.db, f.conv.company_id).await?;
    let Some(r) = rules
        .iter()
        .find(|r| r.id == t.rule_id && applies(r, &f.conv))
    else {
        return Ok(());
    };
    let Trigger::NoAnswer {
        minutes,
        working_hours_only,
    } = r.rule.trigger
    else {
        return Ok(());
    };
    let now = core.now();
    if answered_since(&core.db, f.conv.id, f.msg.created_at).await? {
        // Answered: the timer is stale. A customer message after the last answer waits anew
        // (its own timer was folded into this one while it was pending).
        let last_answer = message::Entity::find()
            .filter(message::Column::ConversationId.eq(f.conv.id))
            .filter(message::Column::Direction.eq(Direction::Out))
            .order_by_desc(message::Column::CreatedAt)
            .one(&core.db)
            .await?
            .map_or(0, |m| m.created_at);
        let later = message::Entity::find()
            .filter(message::Column::ConversationId.eq(f.conv.id))
            .filter(message::Column::Direction.eq(Direction::In))
            .filter(message::Column::CreatedAt.gt(last_answer))
            .order_by_asc(message::Column::CreatedAt)
            .one(&core.db)
            .await?;
        if let Some(m) = later {
            let f2 = Facts {
                msg: m,
                conv: f.conv.clone(),
            };
            let due = due_at(
                &core.db,
                &f2.conv,
                f2.msg.created_at,
                minutes,
                working_hours_only,
            )
            .await?;
            if due == i64::MAX {
                return Ok(());
            }
            let next = NoAnswerTimer {
                message_id: f2.msg.id,
                ..t.clone()
            };
            let key = format!("{}:{}", next.dedup_key().unwrap_or_default(), f2.msg.id);
            let opts = JobOptions::at(now)
                .company(f.conv.company_id.0)
                .run_at(due.max(now))
                .dedup(key);
            next.enqueue(&core.db, opts).await?;
        }
        return Ok(());
    }
    if working_hours_only {
        // The hours may have changed since the timer was set: count again.
        let due = due_at(&core.db, &f.conv, f.msg.created_at, minutes, true).await?;
        if due > now {
            if due == i64::MAX {
                // The hours never open again: nothing to wait for.
                return Ok(());
            }
            let key = format!("{}:{due}", t.dedup_key().unwrap_or_default());
            let opts = JobOptions::at(now)
                .company(f.conv.company_id.0)
                .run_at(due)
                .dedup(key);
            t.enqueue(&core.db, opts).await?;
            return Ok(());
        }
    }
    fire(core, r, &f).await?;
    Ok(())
}

/// Fires `r` for the customer message of `f` unless its limit or the loop guard holds it back.
/// Returns whether it fired (a skip with a reason is recorded and counts as not fired).
async fn fire(core: &Core, r: &RuleView, f: &Facts) -> Result<bool> {
    let now = core.now();
    let txn = core.db.begin().await?;
    let conv = &f.conv;
    let done_before = |since: Option<i64>| {
        let mut q = auto_reply_firing::Entity::find()
            .filter(auto_reply_firing::Column::ConversationId.eq(conv.id))
            .filter(auto_reply_firing::Column::RuleId.eq(r.id))
            .filter(auto_reply_firing::Column::Outcome.eq(FIRED));
        if let Some(s) = since {
            q = q.filter(auto_reply_firing::Column::CreatedAt.gt(s));
        }
        q.count(&txn)
    };
    let held = match r.rule.period() {
        None => done_before(None).await? > 0,
        Some(0) => false,
        Some(p) => done_before(Some(now - i64::from(p) * 60_000)).await? > 0,
    };
    if held {
        return Ok(false);
    }
    let replies = r.rule.replies();
    let recent = auto_reply_firing::Entity::find()
        .filter(auto_reply_firing::Column::ConversationId.eq(conv.id))
        .filter(auto_reply_firing::Column::ReplyMessageId.is_not_null())
        .filter(auto_reply_firing::Column::CreatedAt.gt(now - LOOP_WINDOW_MS))
        .count(&txn)
        .await?;
    let id = Uuid::now_v7();
    let inserted = auto_reply_firing::Entity::insert(auto_reply_firing::ActiveModel {
        id: Set(id),
        company_id: Set(conv.company_id),
        conversation_id: Set(conv.id),
        rule_id: Set(r.id),
        rule_name: Set(r.rule.name.clone()),
        trigger: Set(r.rule.trigger.name().to_owned()),
        cause_message_id: Set(f.msg.id),
        reply_message_id: Set(None),
        outcome: Set(SKIPPED.to_owned()),
        reason: Set(None),
        actions: Set("[]".into()),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            auto_reply_firing::Column::RuleId,
            auto_reply_firing::Column::CauseMessageId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    if inserted == 0 {
        // This rule already acted on this message (another node, or a rerun).
        return Ok(false);
    }
    let mut pending = Pending::default();
    let (mut done, mut reason, mut reply_id) = (Vec::<&str>::new(), None, None);
    if replies && recent >= LOOP_CAP {
        reason = Some(LOOP_GUARD);
    } else {
        for a in &r.rule.actions {
            match a {
                Action::Reply {
                    text,
                    template_id,
                    whatsapp_template,
                } => {
                    let a = ReplyAction {
                        rule: &r.rule.name,
                        text,
                        template_id: *template_id,
                        whatsapp_template: whatsapp_template.as_ref(),
                    };
                    let sent = outgoing::reply(core, &txn, &mut pending, conv, a, now).await?;
                    reason = sent.reason.or(reason);
                    let Some(m) = sent.message else {
                        continue;
                    };
                    reply_id = Some(m);
                }
                Action::Assign { users } => {
                    let turn = assignee(&txn, r, users).await?;
                    assign(&txn, &mut pending, conv, turn, &r.rule.name, now).await?;
                }
                Action::AddLabels { labels } => {
                    crate::inbox::labels::add_labels(&txn, conv, labels, now).await?;
                }
                Action::MoveDeal {
                    pipeline_id,
                    status_id,
                } => {
                    let queued = crate::crm::sync::outbox::enqueue_deal_stage(
                        &txn,
                        conv.company_id,
                        conv.id,
                        *pipeline_id,
                        *status_id,
                        now,
                    )
                    .await?;
                    if !queued {
                        continue;
                    }
                }
                Action::Notify { users, email } => {
                    if *email {
                        let said = f.msg.text.as_deref().unwrap_or_default();
                        outgoing::mail_team(core, &txn, conv, &r.rule.name, said, users).await?;
                    }
                    let who = match users.is_empty() {
                        true => notifications::teammates(&txn, conv.company_id)
                            .await?
                            .into_iter()
                            .filter(|t| t.role.can(Permission::Read))
                            .map(|t| t.user_id)
                            .collect(),
                        false => users.clone(),
                    };
                    let n = New {
                        company: conv.company_id,
                        kind: notifications::AUTO_REPLY,
                        conversation: conv.id,
                        note: None,
                        actor_name: Some(&r.rule.name),
                    };
                    notifications::notify(&txn, &mut pending, n, &who, now).await?;
                }
            }
            done.push(a.name());
        }
    }
    let outcome = if done.is_empty() { SKIPPED } else { FIRED };
    auto_reply_firing::Entity::update_many()
        .col_expr(auto_reply_firing::Column::Outcome, Expr::value(outcome))
        .col_expr(auto_reply_firing::Column::Reason, Expr::value(reason))
        .col_expr(
            auto_reply_firing::Column::ReplyMessageId,
            Expr::value(reply_id),
        )
        .col_expr(
            auto_reply_firing::Column::Actions,
            Expr::value(serde_json::to_string(&done).unwrap_or_default()),
        )
        .filter(auto_reply_firing::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    events::emit(
        &txn,
        &mut pending,
        conv.company_id,
        "conversation",
        serde_json::json!({"conversation_id": conv.id}),
        now,
    )
    .await?;
    txn.commit().await?;
    core.published(pending);
    core.jobs_notify.notify_waiters();
    Ok(outcome == FIRED)
}

/// The person a rule assigns to: the one named, or the next in turn (by how often it fired).
async fn assignee(conn: &impl ConnectionTrait, r: &RuleView, users: &[Uuid]) -> Result<Uuid> {
    let fired = auto_reply_firing::Entity::find()
        .filter(auto_reply_firing::Column::RuleId.eq(r.id))
        .filter(auto_reply_firing::Column::Outcome.eq(FIRED))
        .count(conn)
        .await?;
    let n = users.len().max(1) as u64;
    users
        .get((fired % n) as usize)
        .copied()
        .ok_or_else(|| CoreError::Internal("an assign action without people".into()))
}

async fn assign(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    conv: &conversation::Model,
    user: Uuid,
    rule: &str,
    now: i64,
) -> Result<()> {
    conversation::Entity::update_many()
        .col_expr(
            conversation::Column::AssigneeId,
            Expr::value(Some(UserId(user))),
        )
        .col_expr(conversation::Column::UpdatedAt, Expr::value(now))
        .filter(conversation::Column::Id.eq(conv.id))
        .exec(conn)
        .await?;
    let n = New {
        company: conv.company_id,
        kind: notifications::ASSIGNED,
        conversation: conv.id,
        note: None,
        actor_name: Some(rule),
    };
    notifications::notify(conn, pending, n, &[user], now).await
}

/// What auto-replies did on a conversation, oldest first (the thread's system lines).
pub async fn firings(
    core: &Core,
    actor: &crate::Actor,
    conv: ConversationId,
) -> Result<Vec<auto_reply_firing::Model>> {
    actor.require(Permission::Read)?;
    Ok(auto_reply_firing::Entity::find()
        .filter(auto_reply_firing::Column::ConversationId.eq(conv))
        .filter(auto_reply_firing::Column::CompanyId.eq(actor.company()))
        .order_by_asc(auto_reply_firing::Column::CreatedAt)
        .all(&core.db)
        .await?)
}
