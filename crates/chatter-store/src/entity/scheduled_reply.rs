use sea_orm::entity::prelude::*;

/// A reply a manager scheduled: sent by the `send_scheduled` job at `send_at`, once, as a
/// normal outgoing message (`message_id`), unless cancelled first.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "scheduled_replies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub conversation_id: Uuid,
    pub text: String,
    /// When it goes out (Unix ms), resolved when it was scheduled.
    pub send_at: i64,
    /// `at` (a time given) or `hours_open` (when the working hours next opened).
    pub mode: String,
    pub author_id: Option<Uuid>,
    pub author_name: String,
    /// `pending`, `sent`, `cancelled` or `failed`.
    pub status: String,
    /// The outgoing message it became.
    pub message_id: Option<Uuid>,
    /// Why it could not go (a translation key), when `failed`.
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
