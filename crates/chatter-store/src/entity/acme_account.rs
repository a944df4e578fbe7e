use sea_orm::entity::prelude::*;

/// The ACME account Chatter holds at one CA directory.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "acme_accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    /// The CA directory URL.
    pub directory: String,
    pub email: String,
    /// The account key, encrypted with the master key.
    pub credentials: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
