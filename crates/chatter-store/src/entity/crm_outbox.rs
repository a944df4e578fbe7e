use sea_orm::entity::prelude::*;

/// Work still to do in the CRM, in order, written in the same transaction as the message.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "crm_outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub company_id: Uuid,
    pub conversation_id: Uuid,
    pub message_id: Option<Uuid>,
    pub kind: String,
    /// JSON.
    pub payload: String,
    /// pending | failed (done rows are deleted)
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_at: i64,
    pub created_at: i64,
    /// The import (`crm_imports`) that queued it; `None` for everything else.
    pub import_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
