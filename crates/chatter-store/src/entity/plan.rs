use sea_orm::entity::prelude::*;

/// A plan and its prices (m0040), edited by operators. Money in kopecks; `None` limits are
/// unlimited.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "plans")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `basic`, `professional`, `enterprise`, or an operator's own.
    #[sea_orm(unique)]
    pub code: String,
    pub name: String,
    pub messages_per_month: Option<i64>,
    pub users: Option<i64>,
    pub sources: Option<i64>,
    pub price_month: i64,
    pub price_year: i64,
    /// Messages in one extra pack (0: the plan sells none).
    pub pack_messages: i64,
    pub pack_price: i64,
    /// Order on the plan page.
    pub position: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
