use sea_orm::entity::prelude::*;

/// A reply template: the company's (`owner_id` none) or one member's own, with its category,
/// title, text (variables in braces, `chatter_domain::template`) and at most one file.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reply_templates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    /// The member whose own template it is; none: the whole company's.
    pub owner_id: Option<Uuid>,
    /// Empty: no category.
    pub category: String,
    pub title: String,
    pub body: String,
    pub file_name: Option<String>,
    pub file_mime: Option<String>,
    /// The file's blob (SHA-256 hex) in the blob store.
    pub file_blob: Option<String>,
    pub file_size: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
