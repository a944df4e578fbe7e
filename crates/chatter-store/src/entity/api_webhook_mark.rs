use sea_orm::entity::prelude::*;

/// What was last reported to an API source's webhook about a message (its status) or a
/// conversation (`status|assignee`), so each change is reported once.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_webhook_marks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    /// The message or conversation id.
    pub subject_id: Uuid,
    pub state: String,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
