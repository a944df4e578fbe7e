use sea_orm::entity::prelude::*;

/// The webhook dispatcher's position in `events`, with the PostgreSQL watermark in progress.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_webhook_cursor")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// The last `events.id` turned into deliveries.
    pub last_event_id: i64,
    pub candidate_max: Option<i64>,
    pub pending_max: Option<i64>,
    pub pending_xmax: Option<i64>,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
