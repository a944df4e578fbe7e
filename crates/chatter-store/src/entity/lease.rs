use sea_orm::entity::prelude::*;

/// A named lease: single-owner work (a poller, the CRM drain) held by one node until it expires.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "leases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// The node (or worker) holding it.
    pub holder: String,
    /// Measured on the database's clock on PostgreSQL.
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
