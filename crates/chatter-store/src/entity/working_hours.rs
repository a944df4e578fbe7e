use chatter_domain::CompanyId;
use sea_orm::entity::prelude::*;

/// Working hours as JSON (`chatter_domain::hours::Hours`): the company's (scope `default`) or
/// one source's own (scope = the source id).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "working_hours")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub company_id: CompanyId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    /// JSON.
    pub hours: String,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
