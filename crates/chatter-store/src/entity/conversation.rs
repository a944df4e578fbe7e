use chatter_domain::{CompanyId, ContactId, ConversationId, ConversationStatus, SourceId};
use sea_orm::entity::prelude::*;

/// One chat with a customer (or a group) on one source.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ConversationId,
    pub company_id: CompanyId,
    pub source_id: SourceId,
    pub contact_id: ContactId,
    pub external_chat_id: String,
    /// private | group
    pub chat_kind: String,
    pub title: Option<String>,
    /// Stored as `open` | `closed`.
    pub status: ConversationStatus,
    pub assignee_id: Option<Uuid>,
    /// Customer messages since a manager last opened the conversation.
    pub unread: i32,
    /// The customer blocked the bot.
    pub blocked: bool,
    pub last_text: String,
    pub last_message_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
