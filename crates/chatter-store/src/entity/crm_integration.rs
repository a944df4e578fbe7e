use sea_orm::entity::prelude::*;

/// A company's connection to its CRM.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "crm_integrations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub company_id: Uuid,
    /// amocrm
    pub kind: String,
    pub account_id: Option<i64>,
    pub account_name: String,
    /// The account's API base URL (`https://acme.amocrm.ru`).
    pub base_url: String,
    /// connected | token_invalid | disconnected
    pub status: String,
    /// Encrypted JSON of the OAuth tokens.
    pub tokens: Option<String>,
    /// JSON: pipelines with stages, users, custom fields, as last synced.
    pub metadata: String,
    pub last_sync_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrmIntegration")
            .field("id", &self.id)
            .field("company_id", &self.company_id)
            .field("account_name", &self.account_name)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
