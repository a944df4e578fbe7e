//! Plans and billing (issue 16, R8): the plans as data, each company's subscription, the
//! 14-day trial every company starts with, metering (`usage`), and the soft limit (`gate`):
//! over it, or after a trial without a plan, nothing a customer sends is lost while replies and
//! the CRM sync are held, and everything held goes out in order once the limit is lifted.
//! Payments are not here yet: the operator changes a company's plan, trial, packs and overage
//! (`change`), each in the audit log.
//!
//! The folder names only `jobs` and the crate's top-level services (mailer, audit); `inbox`,
//! `crm` and `accounts` call into it at one place each.

pub mod change;
pub mod gate;
pub mod usage;

use crate::{CoreError, Result};
use chatter_domain::SubscriptionState;
use chatter_store::entity::{plan, subscription};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryOrder};
use uuid::Uuid;

/// Days of the trial every new company gets, with every feature.
pub const TRIAL_DAYS: i64 = 14;
pub(crate) const DAY_MS: i64 = 24 * 3600 * 1000;

/// Starts the trial of a company created now, in the creating transaction. Safe to repeat.
pub async fn start_trial(conn: &impl ConnectionTrait, company: Uuid, now: i64) -> Result<()> {
    subscription::Entity::insert(subscription::ActiveModel {
        company_id: Set(company),
        plan_id: Set(None),
        state: Set(SubscriptionState::Trial),
        period_start: Set(now),
        period_end: Set(now + TRIAL_DAYS * DAY_MS),
        overage_allowed: Set(false),
        extra_messages: Set(0),
        warned_80: Set(None),
        warned_100: Set(None),
        trial_notice: Set(None),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(subscription::Column::CompanyId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Every plan, in the order the plan page shows them.
pub async fn plans(conn: &impl ConnectionTrait) -> Result<Vec<plan::Model>> {
    Ok(plan::Entity::find()
        .order_by_asc(plan::Column::Position)
        .all(conn)
        .await?)
}

/// The company's subscription. A company made by an older node during a rolling upgrade has
/// none yet: it gets its trial from now.
pub async fn subscription_of(
    conn: &impl ConnectionTrait,
    company: Uuid,
    now: i64,
) -> Result<subscription::Model> {
    if let Some(s) = subscription::Entity::find_by_id(company).one(conn).await? {
        return Ok(s);
    }
    start_trial(conn, company, now).await?;
    subscription::Entity::find_by_id(company)
        .one(conn)
        .await?
        .ok_or(CoreError::NotFound)
}

/// The subscription with its plan (none during the trial).
pub async fn plan_of(
    conn: &impl ConnectionTrait,
    sub: &subscription::Model,
) -> Result<Option<plan::Model>> {
    match sub.plan_id {
        Some(id) => Ok(plan::Entity::find_by_id(id).one(conn).await?),
        None => Ok(None),
    }
}

/// The month after `start` (the same day and time; the 31st becomes the month's last day).
pub fn month_after(start: i64) -> i64 {
    use chrono::{DateTime, Months};
    DateTime::from_timestamp_millis(start)
        .and_then(|t| t.checked_add_months(Months::new(1)))
        .map_or(start + 30 * DAY_MS, |t| t.timestamp_millis())
}

/// What the plan page and `GET /api/v1/billing/usage` show.
#[derive(Clone, Debug)]
pub struct Overview {
    pub standing: gate::Standing,
    /// This period's use per day and per source.
    pub counted: usage::Counted,
    /// Per source: (id, name, messages), most used first.
    pub sources: Vec<(Uuid, String, i64)>,
    /// The period's use at its end, going on as so far.
    pub forecast: i64,
    /// Replies and CRM syncs waiting for the limit to be lifted.
    pub held: u64,
    pub now: i64,
}

/// The company's plan, period and use.
pub async fn overview(core: &crate::Core, company: Uuid) -> Result<Overview> {
    use chatter_store::entity::source;
    use sea_orm::{ColumnTrait, QueryFilter};
    let now = core.now();
    let mut standing = gate::standing(core, company).await?;
    let (start, end) = (standing.sub.period_start, standing.sub.period_end);
    let counted = usage::count(&core.db, company, start, end).await?;
    standing.used = counted.total;
    let names: std::collections::HashMap<Uuid, String> = source::Entity::find()
        .filter(source::Column::CompanyId.eq(company))
        .all(&core.db)
        .await?
        .into_iter()
        .map(|s| (s.id.uuid(), s.name))
        .collect();
    let sources = counted
        .per_source
        .iter()
        .map(|(id, n)| (*id, names.get(id).cloned().unwrap_or_default(), *n))
        .collect();
    let forecast = usage::forecast(counted.total, start, end, now);
    let held = gate::held(&core.db, company).await?;
    Ok(Overview {
        standing,
        counted,
        sources,
        forecast,
        held,
        now,
    })
}

/// The banner app pages show, if any: (translation key, a number it names — percent or days).
pub async fn banner(core: &crate::Core, company: Uuid) -> Result<Option<(&'static str, i64)>> {
    let Some(s) = gate::standing_read(core, company).await? else {
        return Ok(None);
    };
    let now = core.now();
    Ok(match s.blocked {
        Some(gate::Block::TrialEnded) => Some(("billing.banner_trial_ended", 0)),
        Some(gate::Block::OverLimit) => Some(("billing.banner_over", s.percent())),
        Some(gate::Block::Inactive) => Some(("billing.banner_inactive", 0)),
        None => match s.trial_days_left(now) {
            Some(d) if d <= 3 => Some(("billing.banner_trial_ends", d)),
            Some(_) => None,
            None if s.limit.is_some() && s.percent() >= 80 => {
                Some(("billing.banner_80", s.percent()))
            }
            None => None,
        },
    })
}

/// Every company with its standing, for the operator area (newest companies first).
pub async fn companies(
    core: &crate::Core,
) -> Result<Vec<(chatter_store::entity::company::Model, gate::Standing)>> {
    use chatter_store::entity::company;
    let all = company::Entity::find()
        .order_by_desc(company::Column::CreatedAt)
        .all(&core.db)
        .await?;
    let mut out = Vec::with_capacity(all.len());
    for c in all {
        let mut s = gate::standing(core, c.id).await?;
        if s.limit.is_none() {
            s.used = usage::total(&core.db, c.id, s.sub.period_start, s.sub.period_end).await?;
        }
        out.push((c, s));
    }
    Ok(out)
}
