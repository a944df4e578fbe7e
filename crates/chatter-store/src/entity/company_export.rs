use sea_orm::entity::prelude::*;

/// An export of one company's data, made by a job.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "company_exports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    /// The member who asked (none: an API key).
    pub requested_by: Option<Uuid>,
    /// The member's email or `api-key:<name>`.
    pub requested_label: String,
    /// pending | ready | failed
    pub status: String,
    /// The file's random name under `<data_dir>/exports`.
    pub file_name: Option<String>,
    pub size_bytes: Option<i64>,
    pub error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
