use chatter_domain::{CompanyId, ConversationId, MessageId};
use sea_orm::entity::prelude::*;

/// What an auto-reply rule did for one customer message: `outcome` is `fired` (its actions
/// ran; `reply_message_id` is the automatic message sent) or `skipped` (with `reason`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auto_reply_firings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: CompanyId,
    pub conversation_id: ConversationId,
    pub rule_id: Uuid,
    pub rule_name: String,
    pub trigger: String,
    pub cause_message_id: MessageId,
    pub reply_message_id: Option<MessageId>,
    pub outcome: String,
    pub reason: Option<String>,
    /// JSON: the names of the actions done.
    pub actions: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
