//! The soft limit. Inbound messages are always stored; what waits when a company may not send
//! (over its month's messages without overage, a trial that ended without a plan, a paused or
//! unpaid subscription) is decided at two places only: the `SendMessage` job (a reply, an
//! automatic or scheduled one too) and the CRM drain. Each asks [`check`] before it sends; when
//! it says no, the job records a hold ([`hold`], a row in `billing_holds`) and waits
//! ([`HOLD_RECHECK_MS`]) without using an attempt; a held reply stays `pending` with
//! [`PAUSED`] as its error, which the thread shows. Whatever lifts the limit (a plan, a pack,
//! overage, a longer trial, a new period) wakes the held jobs in its own transaction ([`wake`]),
//! so they run again at once, each conversation's replies in the order they were written. The
//! recheck is the safety net for a hold recorded just after the wake (a send that was already
//! deciding): it goes out at most that much later, never lost.
//!
//! It also mails the owners once per period per threshold (80 % and 100 % of the limit) and
//! before the trial ends (3 days and 1 day), each recorded on the subscription with a
//! conditional update in the mail's transaction, so two nodes cannot both send it.

use super::{month_after, plan_of, subscription_of, usage, DAY_MS};
use crate::jobs::{BackgroundJob, JobError, JobMeta, JobOptions};
use crate::{mailer, Core, Result};
use async_trait::async_trait;
use chatter_domain::{Role, SubscriptionState};
use chatter_store::entity::{billing_hold, company, membership, plan, subscription, user};
use chatter_store::stmt;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait,
};
use uuid::Uuid;

/// The error a held reply shows in its thread (the UI translates it).
pub const PAUSED: &str = "paused: the plan's limit is reached; it goes out after payment";
/// How long a held job waits before it looks again by itself.
pub const HOLD_RECHECK_MS: i64 = 15 * 60 * 1000;

/// Why a company may not send now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// The month's messages (and packs) are used up and overage is not allowed.
    OverLimit,
    /// The trial ended and no plan was chosen.
    TrialEnded,
    /// Paused, cancelled or unpaid.
    Inactive,
}

impl Block {
    /// The stable name the API and the pages use.
    pub fn as_str(self) -> &'static str {
        match self {
            Block::OverLimit => "over_limit",
            Block::TrialEnded => "trial_ended",
            Block::Inactive => "inactive",
        }
    }
}

/// A company's subscription as it stands now.
#[derive(Clone, Debug)]
pub struct Standing {
    pub sub: subscription::Model,
    /// `None` during the trial.
    pub plan: Option<plan::Model>,
    /// Messages allowed this period (the plan's and the packs'); `None`: unlimited.
    pub limit: Option<i64>,
    /// Messages used this period (counted only when there is a limit; `billing::overview`
    /// always fills it).
    pub used: i64,
    /// Why it may not send, if it may not.
    pub blocked: Option<Block>,
}

impl Standing {
    /// Used as a share of the limit, in percent (0 when unlimited).
    pub fn percent(&self) -> i64 {
        match self.limit {
            Some(l) if l > 0 => self.used.saturating_mul(100) / l,
            Some(_) => 100,
            None => 0,
        }
    }

    /// Whole days left of the trial (rounded up); `None` outside it.
    pub fn trial_days_left(&self, now: i64) -> Option<i64> {
        (self.sub.state == SubscriptionState::Trial)
            .then(|| ((self.sub.period_end - now).max(0) + DAY_MS - 1) / DAY_MS)
    }
}

/// The company's standing now. A plan's period that ended is rolled on here (and the held jobs
/// woken: a new period lifts the limit).
pub async fn standing(core: &Core, company: Uuid) -> Result<Standing> {
    let now = core.now();
    let mut sub = subscription_of(&core.db, company, now).await?;
    if sub.state == SubscriptionState::Active && now >= sub.period_end {
        sub = roll(core, sub, now).await?;
    }
    let plan = plan_of(&core.db, &sub).await?;
    let limit = plan
        .as_ref()
        .and_then(|p| p.messages_per_month)
        .map(|m| m + sub.extra_messages);
    // Without a limit nothing depends on the count (the plan page counts for itself).
    let used = match limit {
        Some(_) => usage::total(&core.db, company, sub.period_start, sub.period_end).await?,
        None => 0,
    };
    Ok(assess(now, sub, plan, limit, used))
}

/// The company's standing as the pages' banner needs it, read only on the read pool, so an
/// app page never waits behind a write (SQLite's one writer): a period that ended is taken as
/// rolled over without writing it (the next send or the hourly job writes it), and a company
/// without a subscription row yet has none (`None`).
pub async fn standing_read(core: &Core, company: Uuid) -> Result<Option<Standing>> {
    let now = core.now();
    let conn = &core.read;
    let Some(mut sub) = subscription::Entity::find_by_id(company).one(conn).await? else {
        return Ok(None);
    };
    if sub.state == SubscriptionState::Active && now >= sub.period_end {
        while now >= sub.period_end {
            sub.period_start = sub.period_end;
            sub.period_end = month_after(sub.period_end);
        }
        sub.extra_messages = 0;
    }
    let plan = plan_of(conn, &sub).await?;
    let limit = plan
        .as_ref()
        .and_then(|p| p.messages_per_month)
        .map(|m| m + sub.extra_messages);
    let used = match limit {
        Some(_) => usage::total(conn, company, sub.period_start, sub.period_end).await?,
        None => 0,
    };
    Ok(Some(assess(now, sub, plan, limit, used)))
}

fn assess(
    now: i64,
    sub: subscription::Model,
    plan: Option<plan::Model>,
    limit: Option<i64>,
    used: i64,
) -> Standing {
    let blocked = match sub.state {
        SubscriptionState::Trial if now >= sub.period_end => Some(Block::TrialEnded),
        SubscriptionState::Trial => None,
        SubscriptionState::Active => match limit {
            Some(l) if used >= l && !sub.overage_allowed => Some(Block::OverLimit),
            _ => None,
        },
        SubscriptionState::PastDue | SubscriptionState::Paused | SubscriptionState::Cancelled => {
            Some(Block::Inactive)
        }
    };
    Standing {
        sub,
        plan,
        limit,
        used,
        blocked,
    }
}

/// Starts the period `now` falls in (packs are per period) and wakes what was held.
async fn roll(core: &Core, sub: subscription::Model, now: i64) -> Result<subscription::Model> {
    let (mut start, mut end) = (sub.period_start, sub.period_end);
    while now >= end {
        start = end;
        end = month_after(end);
    }
    let txn = core.db.begin().await?;
    // Only one node rolls a period: the update names the period it ends.
    let r = subscription::Entity::update_many()
        .col_expr(subscription::Column::PeriodStart, Expr::value(start))
        .col_expr(subscription::Column::PeriodEnd, Expr::value(end))
        .col_expr(subscription::Column::ExtraMessages, Expr::value(0i64))
        .col_expr(subscription::Column::UpdatedAt, Expr::value(now))
        .filter(subscription::Column::CompanyId.eq(sub.company_id))
        .filter(subscription::Column::PeriodEnd.eq(sub.period_end))
        .exec(&txn)
        .await?;
    if r.rows_affected == 1 {
        wake(&txn, sub.company_id, now).await?;
    }
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    subscription_of(&core.db, sub.company_id, now).await
}

/// What is about to happen, for [`check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A message to a customer: one more message, so it waits once the limit is reached.
    Send,
    /// The CRM sync of messages already counted: it waits only once the limit is exceeded
    /// (the message that reached the limit still goes to the CRM).
    Sync,
}

/// Whether the company may do `purpose` now: `None` if it may, else why not. Also mails the
/// owners when a threshold was crossed.
pub async fn check(core: &Core, company: Uuid, purpose: Purpose) -> Result<Option<Block>> {
    let s = standing(core, company).await?;
    notify(core, &s).await?;
    Ok(match (s.blocked, purpose, s.limit) {
        (Some(Block::OverLimit), Purpose::Sync, Some(l)) if s.used <= l => None,
        (b, _, _) => b,
    })
}

/// Records that job `job` of `company` waits for the limit to be lifted.
pub async fn hold(core: &Core, company: Uuid, job: Uuid) -> Result<()> {
    billing_hold::Entity::insert(billing_hold::ActiveModel {
        job_id: Set(job),
        company_id: Set(company),
        held_at: Set(core.now()),
    })
    .on_conflict(
        OnConflict::column(billing_hold::Column::JobId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&core.db)
    .await?;
    Ok(())
}

/// Makes the company's held jobs due now, in the transaction that lifted the limit (the caller
/// notifies the workers after committing).
pub async fn wake(conn: &impl ConnectionTrait, company: Uuid, now: i64) -> Result<()> {
    let b = conn.get_database_backend();
    conn.execute(stmt(
        b,
        "UPDATE jobs SET run_at = $2, updated_at = $2 WHERE status = 'queued' AND id IN \
         (SELECT job_id FROM billing_holds WHERE company_id = $1)",
        vec![company.into(), now.into()],
    ))
    .await?;
    billing_hold::Entity::delete_many()
        .filter(billing_hold::Column::CompanyId.eq(company))
        .exec(conn)
        .await?;
    Ok(())
}

/// How many jobs of the company are held now.
pub async fn held(conn: &impl ConnectionTrait, company: Uuid) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(billing_hold::Entity::find()
        .filter(billing_hold::Column::CompanyId.eq(company))
        .count(conn)
        .await?)
}

/// A mail to the owners, once per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Notice {
    /// The trial ends in this many days (3, then 1).
    TrialEnds(i64),
    /// This share of the limit (80 or 100 %) is used in the period starting at `.1`.
    Used(i64, i64),
}

/// Which mail is due for standing `s`, if any.
fn due_notice(s: &Standing, now: i64) -> Option<Notice> {
    let sub = &s.sub;
    if let Some(left) = s.trial_days_left(now) {
        // 3 days before, then 1 day before (a reminder once per step).
        let step = match left {
            1 => 1,
            2 | 3 => 3,
            _ => return None,
        };
        return match sub.trial_notice {
            Some(sent) if sent <= step => None,
            _ => Some(Notice::TrialEnds(step)),
        };
    }
    s.limit?;
    let p = s.percent();
    if p >= 100 && sub.warned_100 != Some(sub.period_start) {
        Some(Notice::Used(100, sub.period_start))
    } else if (80..100).contains(&p) && sub.warned_80 != Some(sub.period_start) {
        Some(Notice::Used(80, sub.period_start))
    } else {
        None
    }
}

/// Mails the owners what is due for `s` (at most one mail per step, across nodes).
async fn notify(core: &Core, s: &Standing) -> Result<()> {
    use sea_orm::Condition;
    use subscription::Column as C;
    let Some(notice) = due_notice(s, core.now()) else {
        return Ok(());
    };
    let txn = core.db.begin().await?;
    let update = subscription::Entity::update_many().filter(C::CompanyId.eq(s.sub.company_id));
    // The update says the step was not mailed yet: only one transaction wins it.
    let update = match notice {
        Notice::TrialEnds(days) => update.col_expr(C::TrialNotice, Expr::value(days)).filter(
            Condition::any()
                .add(C::TrialNotice.is_null())
                .add(C::TrialNotice.gt(days)),
        ),
        Notice::Used(p, start) => {
            let column = if p >= 100 { C::Warned100 } else { C::Warned80 };
            update
                .col_expr(column, Expr::value(start))
                .filter(Condition::any().add(column.is_null()).add(column.ne(start)))
        }
    };
    if update.exec(&txn).await?.rows_affected != 1 {
        return Ok(());
    }
    let name = company::Entity::find_by_id(s.sub.company_id)
        .one(&txn)
        .await?
        .map(|c| c.name)
        .unwrap_or_default();
    let (subject, body) = match notice {
        Notice::TrialEnds(value) => (
            format!("Chatter: пробный период «{name}» заканчивается через {value} дн."),
            format!(
                "Пробный период компании «{name}» заканчивается через {value} дн. Выберите тариф \
                 в разделе «Тариф и оплата»: после конца пробного периода сообщения клиентов \
                 по-прежнему приходят, а ответы и синхронизация с CRM ждут оплаты.\n\n\
                 The trial of «{name}» ends in {value} day(s). Choose a plan under «Plan and \
                 billing»: after the trial, customers' messages still arrive, while replies and \
                 the CRM sync wait for payment.\n\n{}/app/billing",
                core.config.public_url
            ),
        ),
        Notice::Used(p, _) => {
            let limit = s.limit.unwrap_or_default();
            (
                format!("Chatter: «{name}» использовала {p}% сообщений тарифа"),
                format!(
                    "Компания «{name}» использовала {used} из {limit} сообщений этого периода \
                     ({p}%). {ru}\n\n«{name}» has used {used} of its {limit} messages this period \
                     ({p}%). {en}\n\n{}/app/billing",
                    core.config.public_url,
                    used = s.used,
                    ru = if p >= 100 {
                        "Сообщения клиентов приходят, а ответы и синхронизация с CRM ждут, пока \
                         не будет выбран тариф больше или докуплен пакет."
                    } else {
                        "Когда лимит будет исчерпан, ответы и синхронизация с CRM подождут оплаты."
                    },
                    en = if p >= 100 {
                        "Customers' messages still arrive; replies and the CRM sync wait until a \
                         larger plan or a pack is bought."
                    } else {
                        "Once the limit is reached, replies and the CRM sync wait for payment."
                    },
                ),
            )
        }
    };
    for to in owners(&txn, s.sub.company_id).await? {
        mailer::enqueue(core, &txn, &to, &subject, &body).await?;
    }
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// The owners' addresses.
async fn owners(conn: &impl ConnectionTrait, company: Uuid) -> Result<Vec<String>> {
    let ids: Vec<Uuid> = membership::Entity::find()
        .filter(membership::Column::CompanyId.eq(company))
        .filter(membership::Column::Role.eq(Role::Owner.as_str()))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|u| u.email)
        .collect())
}

/// Looks at every company's subscription: rolls ended periods, mails what is due. Run hourly
/// by [`BillingSweep`].
pub async fn sweep(core: &Core) -> Result<()> {
    let companies: Vec<Uuid> = subscription::Entity::find()
        .all(&core.db)
        .await?
        .into_iter()
        .map(|s| s.company_id)
        .collect();
    for c in companies {
        let s = standing(core, c).await?;
        notify(core, &s).await?;
    }
    Ok(())
}

const HOUR_MS: i64 = 3600 * 1000;

/// Makes sure the next sweep is queued. Safe on every start of every node.
pub async fn schedule(core: &Core) -> Result<()> {
    let now = core.now();
    let next = (now / HOUR_MS + 1) * HOUR_MS;
    BillingSweep {}
        .enqueue(
            &core.db,
            JobOptions::at(now).run_at(next).dedup(format!(
                "{}:{}",
                BillingSweep::NAME,
                next / HOUR_MS
            )),
        )
        .await?;
    Ok(())
}

/// The hourly sweep of subscriptions (see [`sweep`]); each run queues the next.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct BillingSweep {}

#[async_trait]
impl BackgroundJob for BillingSweep {
    const NAME: &'static str = "billing_sweep";
    const MAX_ATTEMPTS: i32 = 3;

    async fn run(&self, core: &Core, _job: &JobMeta) -> std::result::Result<(), JobError> {
        let r = sweep(core).await;
        schedule(core)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))?;
        r.map_err(|e| JobError::Transient(e.to_string()))
    }
}
