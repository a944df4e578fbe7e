use chatter_domain::{CompanyId, ContactId, SourceId};
use sea_orm::entity::prelude::*;

/// A customer as one source knows them (an identity); identities merged into one contact are
/// one person.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contacts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ContactId,
    pub company_id: CompanyId,
    pub source_id: SourceId,
    /// The provider's id of the person.
    pub external_id: String,
    pub name: String,
    pub username: Option<String>,
    pub phone: Option<String>,
    /// The contact this one was merged into (that one is the person); `None`: itself a person.
    pub merged_into: Option<ContactId>,
    /// The e-mail a manager gave.
    pub email: Option<String>,
    /// When a manager last set the name: from then on the messenger's name does not replace it.
    pub edited_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
