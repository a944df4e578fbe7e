use sea_orm::entity::prelude::*;

/// A person's notification choices in one company; no row means everything off.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub company_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// Browser notifications and a sound while the tab is hidden.
    pub browser: bool,
    /// The daily e-mail digest of unanswered conversations.
    pub digest: bool,
    /// The UTC day (YYYY-MM-DD) the last digest went out.
    pub digest_sent_on: Option<String>,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
