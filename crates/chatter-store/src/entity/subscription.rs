use chatter_domain::SubscriptionState;
use sea_orm::entity::prelude::*;

/// A company's subscription (m0040): one row per company.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "subscriptions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub company_id: Uuid,
    /// `None` during the trial (every feature, no limit).
    pub plan_id: Option<Uuid>,
    pub state: SubscriptionState,
    /// The current period (the trial's, or the plan's month), `[start, end)` in Unix ms.
    pub period_start: i64,
    pub period_end: i64,
    /// The operator lets it go over the limit (billed at the pack price).
    pub overage_allowed: bool,
    /// Messages of packs bought for this period.
    pub extra_messages: i64,
    /// The `period_start` of the period whose 80% (100%) mail went out.
    pub warned_80: Option<i64>,
    pub warned_100: Option<i64>,
    /// The fewest days before the trial's end a reminder was mailed for (3, then 1).
    pub trial_notice: Option<i64>,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
