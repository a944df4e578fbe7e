//! Changes an operator makes until payments exist: a company's plan (a new period from now),
//! a longer trial, a pack of extra messages, overage allowed or not, and the plans' own limits
//! and prices. Each is one transaction with its audit entry; whatever lifts the limit wakes the
//! company's held jobs in it (`gate::wake`).

use super::gate::wake;
use super::{month_after, subscription_of, DAY_MS};
use crate::{audit, Core, CoreError, ReqMeta, Result};
use chatter_domain::SubscriptionState;
use chatter_store::entity::{company, plan, subscription};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseTransaction, EntityTrait, IntoActiveModel,
    TransactionTrait,
};
use uuid::Uuid;

/// Who makes the change (an operator), for the audit log.
#[derive(Clone, Debug)]
pub struct By {
    pub user_id: Uuid,
    pub email: String,
    pub meta: ReqMeta,
}

/// A change to a company's subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Puts the company on plan `code`, active from now for a month (packs start over).
    SetPlan(String),
    /// Adds days to the trial (from its end, or from now if it ended); back on the trial.
    ExtendTrial(i64),
    /// Adds this many of the plan's packs to the current period.
    AddPacks(i64),
    /// Lets the company go over its limit (billed at the pack price), or stops that.
    AllowOverage(bool),
}

/// The largest trial extension and pack count accepted at once.
const MAX_DAYS: i64 = 365;
const MAX_PACKS: i64 = 100;

/// Applies `change` to company `company`'s subscription.
pub async fn apply(core: &Core, by: &By, company: Uuid, change: Change) -> Result<()> {
    let now = core.now();
    if company::Entity::find_by_id(company)
        .one(&core.db)
        .await?
        .is_none()
    {
        return Err(CoreError::NotFound);
    }
    let txn = core.db.begin().await?;
    let sub = subscription_of(&txn, company, now).await?;
    let mut am = sub.clone().into_active_model();
    let (action, details) = match &change {
        Change::SetPlan(code) => {
            let p = plan_by_code(&txn, code).await?;
            am.plan_id = Set(Some(p.id));
            am.state = Set(SubscriptionState::Active);
            am.period_start = Set(now);
            am.period_end = Set(month_after(now));
            am.extra_messages = Set(0);
            ("billing.plan", serde_json::json!({"plan": p.code}))
        }
        Change::ExtendTrial(days) => {
            if !(1..=MAX_DAYS).contains(days) {
                return Err(CoreError::field("days", "err.billing_days"));
            }
            let from = if sub.state == SubscriptionState::Trial {
                sub.period_end.max(now)
            } else {
                now
            };
            if sub.state != SubscriptionState::Trial {
                am.period_start = Set(now);
            }
            am.state = Set(SubscriptionState::Trial);
            am.plan_id = Set(None);
            am.period_end = Set(from + days * DAY_MS);
            am.trial_notice = Set(None);
            ("billing.trial_extend", serde_json::json!({"days": days}))
        }
        Change::AddPacks(n) => {
            if !(1..=MAX_PACKS).contains(n) {
                return Err(CoreError::field("packs", "err.billing_packs"));
            }
            let p = match super::plan_of(&txn, &sub).await? {
                Some(p) if p.pack_messages > 0 && sub.state == SubscriptionState::Active => p,
                _ => return Err(CoreError::field("packs", "err.billing_no_packs")),
            };
            let added = p.pack_messages * n;
            am.extra_messages = Set(sub.extra_messages + added);
            (
                "billing.pack",
                serde_json::json!({"packs": n, "messages": added, "price": p.pack_price * n}),
            )
        }
        Change::AllowOverage(on) => {
            am.overage_allowed = Set(*on);
            ("billing.overage", serde_json::json!({"allowed": on}))
        }
    };
    am.updated_at = Set(now);
    am.update(&txn).await?;
    wake(&txn, company, now).await?;
    record(&txn, by, Some(company), now, action, details).await?;
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

async fn plan_by_code(txn: &DatabaseTransaction, code: &str) -> Result<plan::Model> {
    use sea_orm::{ColumnTrait, QueryFilter};
    plan::Entity::find()
        .filter(plan::Column::Code.eq(code.trim()))
        .one(txn)
        .await?
        .ok_or_else(|| CoreError::field("plan", "err.billing_plan"))
}

async fn record(
    txn: &DatabaseTransaction,
    by: &By,
    company: Option<Uuid>,
    now: i64,
    action: &str,
    details: serde_json::Value,
) -> Result<()> {
    audit::insert(
        txn,
        company,
        Some(by.user_id),
        &by.email,
        &by.meta,
        now,
        action,
        &company
            .map(|c| c.to_string())
            .unwrap_or_else(|| "plans".into()),
        details,
    )
    .await
}

/// A plan's editable limits and prices (money in kopecks; `None` limits are unlimited).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct PlanTerms {
    pub name: String,
    pub messages_per_month: Option<i64>,
    pub users: Option<i64>,
    pub sources: Option<i64>,
    pub price_month: i64,
    pub price_year: i64,
    pub pack_messages: i64,
    pub pack_price: i64,
}

/// Rewrites plan `id`'s terms. Companies on it see the new limit at once.
pub async fn update_plan(core: &Core, by: &By, id: Uuid, t: PlanTerms) -> Result<()> {
    use chatter_domain::values::{limits, required_text};
    use chatter_domain::FieldError;
    let mut errs: Vec<FieldError> = Vec::new();
    let name = match required_text("name", &t.name, limits::SHORT_NAME) {
        Ok(n) => n,
        Err(e) => {
            errs.push(e);
            String::new()
        }
    };
    for (field, v) in [
        ("messages_per_month", t.messages_per_month),
        ("users", t.users),
        ("sources", t.sources),
    ] {
        if v.is_some_and(|v| v < 1) {
            errs.push(FieldError::new(field, "err.billing_limit"));
        }
    }
    for (field, v) in [
        ("price_month", t.price_month),
        ("price_year", t.price_year),
        ("pack_messages", t.pack_messages),
        ("pack_price", t.pack_price),
    ] {
        if v < 0 {
            errs.push(FieldError::new(field, "err.billing_negative"));
        }
    }
    if !errs.is_empty() {
        return Err(CoreError::Invalid(errs));
    }
    let now = core.now();
    let txn = core.db.begin().await?;
    let p = plan::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let mut am = p.into_active_model();
    am.name = Set(name);
    am.messages_per_month = Set(t.messages_per_month);
    am.users = Set(t.users);
    am.sources = Set(t.sources);
    am.price_month = Set(t.price_month);
    am.price_year = Set(t.price_year);
    am.pack_messages = Set(t.pack_messages);
    am.pack_price = Set(t.pack_price);
    am.updated_at = Set(now);
    let p = am.update(&txn).await?;
    // A larger limit may lift it for the plan's companies.
    use sea_orm::{ColumnTrait, QueryFilter};
    let on_it = subscription::Entity::find()
        .filter(subscription::Column::PlanId.eq(p.id))
        .all(&txn)
        .await?;
    for s in on_it {
        wake(&txn, s.company_id, now).await?;
    }
    record(
        &txn,
        by,
        None,
        now,
        "billing.plan_update",
        serde_json::to_value(&t).unwrap_or_default(),
    )
    .await?;
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}
