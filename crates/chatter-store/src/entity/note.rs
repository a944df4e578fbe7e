use sea_orm::entity::prelude::*;

/// An internal note in a conversation's thread: seen by the team, never sent to the customer.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub conversation_id: Uuid,
    /// None: written through the API by a key acting for no member.
    pub author_id: Option<Uuid>,
    pub author_name: String,
    pub text: String,
    /// JSON array of the mentioned members' user ids.
    pub mentions: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
