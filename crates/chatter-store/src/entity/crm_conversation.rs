use sea_orm::entity::prelude::*;

/// Our conversation and the CRM deal and chat it lives in, with the routing decision that placed it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "crm_conversations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub conversation_id: Uuid,
    pub company_id: Uuid,
    pub deal_id: Option<i64>,
    pub remote_contact_id: Option<i64>,
    /// The CRM chat's id, once made.
    pub chat_ref: Option<String>,
    /// Whether the chat is attached to the contact's card.
    pub chat_linked: bool,
    pub rule_id: Option<String>,
    pub rule_name: Option<String>,
    /// JSON of the routing decision.
    pub decision: Option<String>,
    pub responsible_user_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
