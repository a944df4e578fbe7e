//! Scheduled replies (issue 14, item 5): a manager's answer written now and sent later, at a
//! time given in the working hours' zone or when the conversation's source's working hours next
//! open (resolved when scheduling, and stored as that time).
//!
//! Exactly one send: the row's state is the truth. The `send_scheduled` job, due at `send_at`,
//! moves the row from `pending` to `sent` with a conditional update and, in that same
//! transaction, stores the outgoing message through the inbox's one path (`insert_outgoing`:
//! pending message, `SendMessage` job, CRM outbox, live event). Cancelling moves `pending` to
//! `cancelled` with the same kind of update and deletes the queued job in its transaction. Both
//! updates lock the row, so whichever commits first wins and the other changes nothing: a job
//! run twice (a lost lease, two nodes) sends once, and a cancel never races a send into
//! "cancelled but sent". It lives at the crate top because it composes `inbox` and
//! `automation`, which may not name each other.

use crate::automation::hours;
use crate::events::{self, Pending};
use crate::inbox::{insert_outgoing, Outgoing};
use crate::jobs::{BackgroundJob, JobError, JobMeta, JobOptions};
use crate::{audit, Actor, Core, CoreError, Result};
use async_trait::async_trait;
use chatter_domain::hours::{Hours, Now};
use chatter_domain::values::{limits, multi_line_text};
use chatter_domain::UserId;
use chatter_domain::{ConversationId, FieldError, Permission};
use chatter_store::entity::{conversation, job, scheduled_reply};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

/// Waiting for its time.
pub const PENDING: &str = "pending";
/// Stored as an outgoing message (whose own state says whether it arrived).
pub const SENT: &str = "sent";
pub const CANCELLED: &str = "cancelled";
/// Could not go at its time (`error` says why, a translation key).
pub const FAILED: &str = "failed";

/// The furthest ahead a reply may be scheduled.
pub const MAX_AHEAD_MS: i64 = 365 * 24 * 3600 * 1000;

/// The zone times are read and shown in when a company has no working hours.
pub const DEFAULT_ZONE: Tz = chrono_tz::Europe::Moscow;

/// A scheduled reply as stored.
pub type Scheduled = scheduled_reply::Model;

/// When to send.
#[derive(Clone, Debug)]
pub enum When<'a> {
    /// A time as typed: `2026-12-08T10:00` (local to the zone) or RFC 3339 with an offset.
    At(&'a str),
    /// When the working hours of the conversation's source next open.
    HoursOpen,
}

/// What the reply box says about time for one conversation: the zone times are in, and
/// whether its working hours are open now and until when (`None`: no hours are set).
#[derive(Clone, Debug)]
pub struct Timing {
    pub zone: Tz,
    pub now: Option<Now>,
}

impl Timing {
    /// An instant (Unix ms) as `08.12.2026 09:00` in the zone.
    pub fn local(&self, ms: i64) -> String {
        local_text(self.zone, ms)
    }
}

/// An instant (Unix ms) as `08.12.2026 09:00` in `zone`.
pub fn local_text(zone: Tz, ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&zone)
        .format("%d.%m.%Y %H:%M")
        .to_string()
}

fn zone_of(h: Option<&Hours>) -> Tz {
    h.map_or(DEFAULT_ZONE, Hours::tz)
}

async fn conversation_of(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    id: ConversationId,
) -> Result<conversation::Model> {
    conversation::Entity::find_by_id(id)
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .one(conn)
        .await?
        .ok_or(CoreError::NotFound)
}

/// The zone and the working hours' state now for a conversation of the actor's company.
pub async fn timing(core: &Core, actor: &Actor, id: ConversationId) -> Result<Timing> {
    actor.require(Permission::Read)?;
    let conv = conversation_of(&core.db, actor, id).await?;
    let h = hours::effective(&core.db, actor.company(), conv.source_id).await?;
    let at = DateTime::from_timestamp_millis(core.now()).unwrap_or_default();
    Ok(Timing {
        zone: zone_of(h.as_ref()),
        now: h.map(|h| h.at(at)),
    })
}

/// Reads a typed time: local to `zone` (`YYYY-MM-DDTHH:MM[:SS]`, a space for the `T`, or
/// `DD.MM.YYYY HH:MM` as the page shows times), or RFC 3339 with its own offset. A local time the clocks skip is read as the hour after.
fn parse_time(raw: &str, zone: Tz) -> Option<i64> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.timestamp_millis());
    }
    let naive = [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%d.%m.%Y %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())?;
    let local = zone.from_local_datetime(&naive).earliest().or_else(|| {
        zone.from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
    })?;
    Some(local.with_timezone(&Utc).timestamp_millis())
}

/// When a reply asked for `when` goes out, checked against `now`.
fn resolve(when: &When<'_>, h: Option<&Hours>, now: i64) -> std::result::Result<i64, FieldError> {
    match when {
        When::At(raw) => {
            if raw.trim().is_empty() {
                return Err(FieldError::new("send_at", "err.scheduled_time_missing"));
            }
            let at = parse_time(raw, zone_of(h))
                .ok_or(FieldError::new("send_at", "err.scheduled_time"))?;
            if at <= now {
                Err(FieldError::new("send_at", "err.scheduled_past"))
            } else if at > now.saturating_add(MAX_AHEAD_MS) {
                Err(FieldError::new("send_at", "err.scheduled_too_far"))
            } else {
                Ok(at)
            }
        }
        When::HoursOpen => {
            let h = h.ok_or(FieldError::new("when", "err.scheduled_no_hours"))?;
            match h.at(DateTime::from_timestamp_millis(now).unwrap_or_default()) {
                Now::Open { .. } => Err(FieldError::new("when", "err.scheduled_open_now")),
                Now::Closed { until: Some(t) } => Ok(t.timestamp_millis()),
                Now::Closed { until: None } => {
                    Err(FieldError::new("when", "err.scheduled_never_opens"))
                }
            }
        }
    }
}

/// Schedules `text` for the conversation: checked first (text, time), nothing stored when
/// refused; stored with its job in one transaction.
pub async fn schedule(
    core: &Core,
    actor: &Actor,
    id: ConversationId,
    text: &str,
    when: When<'_>,
) -> Result<Scheduled> {
    actor.require(Permission::Reply)?;
    let conv = conversation_of(&core.db, actor, id).await?;
    let now = core.now();
    let h = hours::effective(&core.db, actor.company(), conv.source_id).await?;
    let mut errors = Vec::new();
    let text = multi_line_text("text", text, limits::REPLY).map_err(|e| errors.push(e));
    let send_at = resolve(&when, h.as_ref(), now).map_err(|e| errors.push(e));
    let (Ok(text), Ok(send_at)) = (text, send_at) else {
        return Err(CoreError::Invalid(errors));
    };
    // WhatsApp's 24 hours already over: only a template may go, now or later.
    if !crate::inbox::reply_window_open(&core.db, conv.id, now).await? {
        return Err(CoreError::field("text", "err.wa_window_closed"));
    }
    let author_name = match actor.user_id {
        Some(u) => chatter_store::entity::user::Entity::find_by_id(u)
            .one(&core.db)
            .await?
            .map(|u| u.name),
        None => None,
    }
    .unwrap_or_else(|| actor.label.clone());
    let txn = core.db.begin().await?;
    let row = scheduled_reply::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(actor.company_id.uuid()),
        conversation_id: Set(conv.id.into()),
        text: Set(text),
        send_at: Set(send_at),
        mode: Set(match when {
            When::At(_) => "at",
            When::HoursOpen => "hours_open",
        }
        .to_owned()),
        author_id: Set(actor.user_id.map(UserId::uuid)),
        author_name: Set(author_name),
        status: Set(PENDING.to_owned()),
        message_id: Set(None),
        error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    SendScheduled {
        scheduled_id: row.id,
    }
    .enqueue(
        &txn,
        JobOptions::at(now)
            .company(actor.company_id)
            .run_at(send_at),
    )
    .await?;
    audit::record(
        &txn,
        actor,
        now,
        "scheduled.create",
        &row.id.to_string(),
        serde_json::json!({"conversation_id": conv.id, "send_at": send_at, "mode": row.mode}),
    )
    .await?;
    let mut pending = Pending::default();
    emit(&txn, &mut pending, &row, now).await?;
    txn.commit().await?;
    core.published(pending);
    core.jobs_notify.notify_waiters();
    Ok(row)
}

/// The conversation's live event, saying its scheduled replies changed.
async fn emit(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    row: &Scheduled,
    now: i64,
) -> Result<()> {
    events::emit(
        conn,
        pending,
        row.company_id.into(),
        "conversation",
        serde_json::json!({"conversation_id": row.conversation_id, "scheduled_id": row.id}),
        now,
    )
    .await?;
    Ok(())
}

/// Cancels a pending scheduled reply: it will never go (a failed one is cancelled to take it off
/// the conversation). One already sent or cancelled is a conflict; one of another company is
/// not found.
pub async fn cancel(core: &Core, actor: &Actor, id: Uuid) -> Result<Scheduled> {
    actor.require(Permission::Reply)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let done = scheduled_reply::Entity::update_many()
        .col_expr(scheduled_reply::Column::Status, Expr::value(CANCELLED))
        .col_expr(scheduled_reply::Column::UpdatedAt, Expr::value(now))
        .filter(scheduled_reply::Column::Id.eq(id))
        .filter(scheduled_reply::Column::CompanyId.eq(actor.company_id))
        .filter(scheduled_reply::Column::Status.is_in([PENDING, FAILED]))
        .exec(&txn)
        .await?;
    let row = scheduled_reply::Entity::find_by_id(id)
        .filter(scheduled_reply::Column::CompanyId.eq(actor.company_id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    if done.rows_affected == 0 {
        return Err(CoreError::Conflict("scheduled_not_pending"));
    }
    // The queued job goes with it (a running one finds the row cancelled and does nothing).
    job::Entity::delete_many()
        .filter(job::Column::DedupKey.eq(dedup_key(id)))
        .filter(job::Column::Status.eq(chatter_store::jobs::JobState::Queued))
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        actor,
        now,
        "scheduled.cancel",
        &id.to_string(),
        serde_json::json!({"conversation_id": row.conversation_id}),
    )
    .await?;
    let mut pending = Pending::default();
    emit(&txn, &mut pending, &row, now).await?;
    txn.commit().await?;
    core.published(pending);
    Ok(row)
}

/// A conversation's scheduled replies people should see: pending and failed, soonest first.
pub async fn list_for_conversation(
    core: &Core,
    actor: &Actor,
    id: ConversationId,
) -> Result<Vec<Scheduled>> {
    actor.require(Permission::Read)?;
    Ok(scheduled_reply::Entity::find()
        .filter(scheduled_reply::Column::CompanyId.eq(actor.company_id))
        .filter(scheduled_reply::Column::ConversationId.eq(Uuid::from(id)))
        .filter(scheduled_reply::Column::Status.is_in([PENDING, FAILED]))
        .order_by_asc(scheduled_reply::Column::SendAt)
        .order_by_asc(scheduled_reply::Column::Id)
        .limit(100)
        .all(&core.db)
        .await?)
}

/// The company's pending scheduled replies by time, after `after` (send_at, id), `limit` at most.
pub async fn list_pending(
    core: &Core,
    actor: &Actor,
    after: Option<(i64, Uuid)>,
    limit: u64,
) -> Result<Vec<Scheduled>> {
    actor.require(Permission::Read)?;
    let mut q = scheduled_reply::Entity::find()
        .filter(scheduled_reply::Column::CompanyId.eq(actor.company_id))
        .filter(scheduled_reply::Column::Status.eq(PENDING));
    if let Some((at, id)) = after {
        q = q.filter(
            Condition::any()
                .add(scheduled_reply::Column::SendAt.gt(at))
                .add(
                    Condition::all()
                        .add(scheduled_reply::Column::SendAt.eq(at))
                        .add(scheduled_reply::Column::Id.gt(id)),
                ),
        );
    }
    Ok(q.order_by_asc(scheduled_reply::Column::SendAt)
        .order_by_asc(scheduled_reply::Column::Id)
        .limit(limit)
        .all(&core.db)
        .await?)
}

/// Sends one scheduled reply at its time.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SendScheduled {
    pub scheduled_id: Uuid,
}

fn dedup_key(id: Uuid) -> String {
    format!("{}:{id}", SendScheduled::NAME)
}

fn internal(e: impl std::fmt::Display) -> JobError {
    JobError::Transient(e.to_string())
}

#[async_trait]
impl BackgroundJob for SendScheduled {
    const NAME: &'static str = "send_scheduled";

    fn dedup_key(&self) -> Option<String> {
        Some(dedup_key(self.scheduled_id))
    }

    async fn run(&self, core: &Core, _job: &JobMeta) -> Result<(), JobError> {
        let now = core.now();
        let txn = core.db.begin().await.map_err(internal)?;
        // Taking the row from pending is what sends it; nothing to take: cancelled or sent.
        let taken = scheduled_reply::Entity::update_many()
            .col_expr(scheduled_reply::Column::Status, Expr::value(SENT))
            .col_expr(scheduled_reply::Column::UpdatedAt, Expr::value(now))
            .filter(scheduled_reply::Column::Id.eq(self.scheduled_id))
            .filter(scheduled_reply::Column::Status.eq(PENDING))
            .exec(&txn)
            .await
            .map_err(internal)?;
        if taken.rows_affected == 0 {
            return Ok(());
        }
        let row = scheduled_reply::Entity::find_by_id(self.scheduled_id)
            .one(&txn)
            .await
            .map_err(internal)?
            .ok_or_else(|| JobError::Permanent("scheduled reply gone".into()))?;
        let conv = conversation::Entity::find_by_id(ConversationId::from(row.conversation_id))
            .one(&txn)
            .await
            .map_err(internal)?
            .ok_or_else(|| JobError::Permanent("conversation gone".into()))?;
        let mut pending = Pending::default();
        let mut am: scheduled_reply::ActiveModel = row.clone().into();
        // The customer's 24 hours ran out meanwhile: it fails where people see it, with why.
        if !crate::inbox::reply_window_open(&txn, conv.id, now)
            .await
            .map_err(internal)?
        {
            am.status = Set(FAILED.to_owned());
            am.error = Set(Some("err.wa_window_closed".to_owned()));
        } else {
            let m = insert_outgoing(
                &txn,
                &mut pending,
                &conv,
                Outgoing {
                    text: &row.text,
                    author_id: row.author_id,
                    author_name: row.author_name.clone(),
                    reply_to: None,
                    automatic: false,
                },
                now,
            )
            .await
            .map_err(internal)?;
            crate::crm::sync::outbox::on_reply(&txn, &conv, m.id, row.author_id, now)
                .await
                .map_err(internal)?;
            am.message_id = Set(Some(m.id.into()));
        }
        am.update(&txn).await.map_err(internal)?;
        emit(&txn, &mut pending, &row, now)
            .await
            .map_err(internal)?;
        txn.commit().await.map_err(internal)?;
        core.published(pending);
        core.jobs_notify.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moscow() -> Hours {
        let nine_to_six = vec![chatter_domain::hours::Span {
            from: 9 * 60,
            to: 18 * 60,
        }];
        Hours {
            zone: "Europe/Moscow".into(),
            week: [
                nine_to_six.clone(),
                nine_to_six.clone(),
                nine_to_six.clone(),
                nine_to_six.clone(),
                nine_to_six,
                vec![],
                vec![],
            ],
            days: vec![],
        }
    }

    fn ms(rfc: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc)
            .expect("a time")
            .timestamp_millis()
    }

    #[test]
    fn a_local_time_is_read_in_the_zone_and_an_offset_as_given() {
        let now = ms("2026-12-05T12:00:00+03:00");
        let h = moscow();
        assert_eq!(
            resolve(&When::At("2026-12-07T10:30"), Some(&h), now),
            Ok(ms("2026-12-07T10:30:00+03:00"))
        );
        assert_eq!(
            resolve(&When::At("2026-12-07T10:30:00Z"), Some(&h), now),
            Ok(ms("2026-12-07T10:30:00Z"))
        );
        // No hours: Moscow.
        assert_eq!(
            resolve(&When::At("2026-12-07 10:30"), None, now),
            Ok(ms("2026-12-07T10:30:00+03:00"))
        );
        assert_eq!(
            resolve(&When::At("07.12.2026 10:30"), None, now),
            Ok(ms("2026-12-07T10:30:00+03:00"))
        );
    }

    #[test]
    fn past_far_and_unreadable_times_are_refused_on_send_at() {
        let now = ms("2026-12-05T12:00:00+03:00");
        let key = |w: When<'_>| resolve(&w, None, now).map_err(|e| (e.field, e.key));
        assert_eq!(
            key(When::At("2026-12-05T11:59")),
            Err(("send_at", "err.scheduled_past"))
        );
        assert_eq!(
            key(When::At("2027-12-06T12:00")),
            Err(("send_at", "err.scheduled_too_far"))
        );
        assert_eq!(
            key(When::At("tomorrow")),
            Err(("send_at", "err.scheduled_time"))
        );
        assert_eq!(
            key(When::At(" ")),
            Err(("send_at", "err.scheduled_time_missing"))
        );
        assert_eq!(
            key(When::HoursOpen),
            Err(("when", "err.scheduled_no_hours"))
        );
    }

    #[test]
    fn when_hours_open_is_the_next_opening_and_refused_while_open() {
        let h = moscow();
        let saturday = ms("2026-12-05T12:00:00+03:00");
        assert_eq!(
            resolve(&When::HoursOpen, Some(&h), saturday),
            Ok(ms("2026-12-07T09:00:00+03:00"))
        );
        let monday_noon = ms("2026-12-07T12:00:00+03:00");
        assert_eq!(
            resolve(&When::HoursOpen, Some(&h), monday_noon).map_err(|e| e.key),
            Err("err.scheduled_open_now")
        );
    }
}
