use sea_orm::entity::prelude::*;

/// Something a person should look at: a new conversation, a mention, an assignment.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub user_id: Uuid,
    /// new_conversation | mention | assigned
    pub kind: String,
    pub conversation_id: Uuid,
    pub note_id: Option<Uuid>,
    pub actor_name: Option<String>,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
