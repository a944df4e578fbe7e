use sea_orm::entity::prelude::*;

/// Conversations that were in Chatter before amoCRM was connected, sent on a person's request
/// (issue 15, item 11). Its progress is its rows still in `crm_outbox` (`import_id`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "crm_imports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    /// Open conversations whose last message is at most this many days old.
    pub days: i64,
    pub conversations: i64,
    pub messages: i64,
    pub created_by: Option<Uuid>,
    pub created_at: i64,
    /// Set when the last of its rows left the outbox (sent, or parked as failed).
    pub finished_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
