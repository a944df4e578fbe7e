//! The company's plan and use through the API: what the owner sees on `/app/billing`.

use super::{ApiActor, ApiError, ApiErrorBody};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chatter_core::billing::{self, gate::Standing};
use chatter_domain::Permission;
use chatter_store::entity::plan;
use serde::Serialize;
use utoipa::ToSchema;

/// A plan and its prices. Money in kopecks; a null limit is unlimited.
#[derive(Serialize, ToSchema)]
pub struct PlanOut {
    /// `basic`, `professional`, `enterprise` (or an operator's own).
    pub code: String,
    pub name: String,
    pub messages_per_month: Option<i64>,
    pub users: Option<i64>,
    pub sources: Option<i64>,
    pub price_month: i64,
    pub price_year: i64,
    /// Messages in one extra pack (0: none sold).
    pub pack_messages: i64,
    pub pack_price: i64,
}

impl From<plan::Model> for PlanOut {
    fn from(p: plan::Model) -> Self {
        PlanOut {
            code: p.code,
            name: p.name,
            messages_per_month: p.messages_per_month,
            users: p.users,
            sources: p.sources,
            price_month: p.price_month,
            price_year: p.price_year,
            pack_messages: p.pack_messages,
            pack_price: p.pack_price,
        }
    }
}

/// The company's subscription.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionOut {
    /// `trial`, `active`, `past_due`, `paused` or `cancelled`.
    pub state: String,
    /// Null during the trial (every feature, no limit).
    pub plan: Option<PlanOut>,
    /// The current period, Unix ms, `[start, end)`.
    pub period_start: i64,
    pub period_end: i64,
    /// Whole days left of the trial; null outside it.
    pub trial_days_left: Option<i64>,
    /// Messages of packs added to this period.
    pub extra_messages: i64,
    /// The operator lets the company go over its limit (billed at the pack price).
    pub overage_allowed: bool,
    /// Why replies and the CRM sync wait, if they do: `over_limit`, `trial_ended`, `inactive`.
    pub blocked: Option<String>,
}

/// The plan and every plan the company can move to.
#[derive(Serialize, ToSchema)]
pub struct PlanInfoOut {
    pub subscription: SubscriptionOut,
    pub plans: Vec<PlanOut>,
}

/// Messages of one source in the period.
#[derive(Serialize, ToSchema)]
pub struct SourceUseOut {
    pub source_id: uuid::Uuid,
    pub name: String,
    pub messages: i64,
}

/// What the company used this period.
#[derive(Serialize, ToSchema)]
pub struct UsageOut {
    pub period_start: i64,
    pub period_end: i64,
    /// Messages to and from customers this period (automatic replies included, notes not).
    pub used: i64,
    /// Messages allowed this period (the plan's and the packs'); null: unlimited.
    pub limit: Option<i64>,
    /// `used` as a share of `limit` (0 when unlimited).
    pub percent: i64,
    /// The period's use at its end if it goes on as so far.
    pub forecast: i64,
    /// Messages per day of the period, day 0 starting at `period_start`.
    pub per_day: Vec<i64>,
    pub per_source: Vec<SourceUseOut>,
    /// Replies and CRM syncs waiting for the limit to be lifted.
    pub held: u64,
    pub blocked: Option<String>,
}

fn subscription_out(s: Standing, now: i64) -> SubscriptionOut {
    SubscriptionOut {
        state: s.sub.state.as_str().to_string(),
        trial_days_left: s.trial_days_left(now),
        blocked: s.blocked.map(|b| b.as_str().to_string()),
        period_start: s.sub.period_start,
        period_end: s.sub.period_end,
        extra_messages: s.sub.extra_messages,
        overage_allowed: s.sub.overage_allowed,
        plan: s.plan.map(PlanOut::from),
    }
}

/// The company's subscription (plan, state, period, trial days left, why replies wait) and
/// the plans there are.
#[utoipa::path(get, path = "/api/v1/billing/plan", tag = "billing",
    responses((status = 200, body = PlanInfoOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn get_plan(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
) -> Result<Json<PlanInfoOut>, ApiError> {
    a.require(Permission::Read)?;
    let s = billing::gate::standing(&st.core, a.company_id.uuid()).await?;
    let plans = billing::plans(&st.core.db).await?;
    Ok(Json(PlanInfoOut {
        subscription: subscription_out(s, st.core.now()),
        plans: plans.into_iter().map(PlanOut::from).collect(),
    }))
}

/// This period's use: total against the limit, per day, per source, and the forecast for the
/// period's end.
#[utoipa::path(get, path = "/api/v1/billing/usage", tag = "billing",
    responses((status = 200, body = UsageOut), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json")))]
pub async fn get_usage(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
) -> Result<Json<UsageOut>, ApiError> {
    a.require(Permission::Read)?;
    let o = billing::overview(&st.core, a.company_id.uuid()).await?;
    Ok(Json(UsageOut {
        period_start: o.standing.sub.period_start,
        period_end: o.standing.sub.period_end,
        used: o.standing.used,
        limit: o.standing.limit,
        percent: o.standing.percent(),
        forecast: o.forecast,
        per_day: o.counted.daily,
        per_source: o
            .sources
            .into_iter()
            .map(|(source_id, name, messages)| SourceUseOut {
                source_id,
                name,
                messages,
            })
            .collect(),
        held: o.held,
        blocked: o.standing.blocked.map(|b| b.as_str().to_string()),
    }))
}
