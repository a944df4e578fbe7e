use chatter_domain::{CompanyId, ConversationId, Direction, MessageId, MessageStatus, SourceId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: MessageId,
    pub company_id: CompanyId,
    pub conversation_id: ConversationId,
    pub source_id: SourceId,
    /// Stored as `in` | `out`.
    pub direction: Direction,
    /// The provider's id, unique per source; `None` while an outgoing message is pending.
    pub external_id: Option<String>,
    pub text: Option<String>,
    /// JSON array of attachments (kind, file_ref, file_name, mime_type, size, blob).
    pub attachments: String,
    /// JSON of a contact or location.
    pub extra: Option<String>,
    pub sender_name: String,
    /// The member who wrote an outgoing message.
    pub author_id: Option<Uuid>,
    pub reply_to_id: Option<MessageId>,
    pub reply_to_external_id: Option<String>,
    /// Stored as `received` | `pending` | `sent` | `delivered` | `read` | `failed`.
    pub status: MessageStatus,
    pub error: Option<String>,
    /// JSON array of the provider ids of parts already sent (a long text goes in parts).
    pub sent_parts: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub edited_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
