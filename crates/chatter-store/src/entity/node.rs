use sea_orm::entity::prelude::*;

/// A running Chatter process on this database, renewed by its heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nodes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// The binary's version.
    pub version: String,
    /// web | worker | both
    pub role: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
