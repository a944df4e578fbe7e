//! The company's CRM connection (amoCRM first) and the OAuth states of connects in progress.

use super::cols::{ms, ms_null, text, text_null};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        m.create_table(
            Table::create()
                .table(a("crm_integrations"))
                .col(ColumnDef::new(a("id")).uuid().not_null().primary_key())
                .col(
                    ColumnDef::new(a("company_id"))
                        .uuid()
                        .not_null()
                        .unique_key(),
                )
                .col(text("kind"))
                .col(ColumnDef::new(a("account_id")).big_integer().null())
                .col(text("account_name"))
                .col(text("base_url"))
                .col(text("status"))
                .col(text_null("tokens"))
                .col(text("metadata"))
                .col(ms_null("last_sync_at"))
                .col(text_null("last_error"))
                .col(ms("created_at"))
                .col(ms("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("crm_integrations"), a("company_id"))
                        .to(a("companies"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("oauth_states"))
                .col(text("state_hash").primary_key())
                .col(ColumnDef::new(a("company_id")).uuid().not_null())
                .col(ColumnDef::new(a("user_id")).uuid().not_null())
                .col(text("purpose"))
                .col(ms("expires_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
