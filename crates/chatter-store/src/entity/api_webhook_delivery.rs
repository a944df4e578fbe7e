use sea_orm::entity::prelude::*;

/// One outgoing webhook: an event posted to an API source's URL, with its delivery state.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub source_id: Uuid,
    /// Unique per source: what this delivery reports (`message.created:<message id>`, …).
    pub dedup_key: String,
    /// message.created | message.status_changed | conversation.status_changed | conversation.assigned
    pub event_type: String,
    /// The `events` row it was made from (none for a reply handed over by the send job).
    pub event_id: Option<i64>,
    pub conversation_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    /// The JSON body, exactly as posted.
    pub payload: String,
    /// Where it was (last) posted.
    pub url: String,
    /// pending | delivered | failed
    pub status: String,
    pub attempts: i32,
    /// The receiver's last HTTP status.
    pub status_code: Option<i32>,
    pub last_error: Option<String>,
    /// The job that posts it (its `run_at` is the next retry).
    pub job_id: Option<Uuid>,
    pub created_at: i64,
    pub updated_at: i64,
    pub delivered_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
