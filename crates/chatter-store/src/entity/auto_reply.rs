use chatter_domain::CompanyId;
use sea_orm::entity::prelude::*;

/// An auto-reply rule of a company: its place in the order and the rule as JSON
/// (`chatter_domain::auto_reply::AutoReply`; `name` and `enabled` are copies for listing).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auto_replies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: CompanyId,
    pub position: i64,
    pub enabled: bool,
    pub name: String,
    /// JSON.
    pub rule: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
