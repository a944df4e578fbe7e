use sea_orm::entity::prelude::*;

/// A person's identity at an outside provider, for signing in with it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_identities")]
pub struct Model {
    /// `amocrm`
    #[sea_orm(primary_key, auto_increment = false)]
    pub provider: String,
    /// The provider's stable key; for amoCRM `{account_id}:{user_id}`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub subject: String,
    pub user_id: Uuid,
    /// What the person recognizes it by (account name and address, their name there).
    pub label: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
