use chatter_domain::{CompanyId, SourceId, SourceKind};
use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sources")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: SourceId,
    pub company_id: CompanyId,
    /// Stored as `SourceKind::id()`: 1..=8, 10.
    pub kind: SourceKind,
    pub name: String,
    /// Encrypted JSON with the credentials (bot token, api hash, …).
    pub secret: Option<String>,
    /// Public, non-secret settings as JSON.
    pub settings: String,
    pub status: String,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Polling position (Telegram: the next update offset).
    pub cursor: Option<String>,
    pub last_inbound_at: Option<i64>,
    /// Last successful call to the provider.
    pub last_ok_at: Option<i64>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("id", &self.id)
            .field("company_id", &self.company_id)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
