//! Instance operators (who may see backups and every company's failed jobs) and companies'
//! exports of their own data (made by a job, downloaded by the company's owners).

use super::cols::{big_null, ms, text, text_null, uuid, uuid_null};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;

        // One row per operator: a user account, named with `chatter admin operator add`.
        m.create_table(
            Table::create()
                .table(a("operators"))
                .col(ColumnDef::new(a("user_id")).uuid().not_null().primary_key())
                .col(ms("created_at"))
                .to_owned(),
        )
        .await?;

        // A company's export: pending until the job writes the file (a random name under
        // `<data_dir>/exports`), then ready or failed.
        m.create_table(
            Table::create()
                .table(a("company_exports"))
                .col(ColumnDef::new(a("id")).uuid().not_null().primary_key())
                .col(uuid("company_id"))
                .col(uuid_null("requested_by"))
                .col(text("requested_label"))
                .col(text("status"))
                .col(text_null("file_name"))
                .col(big_null("size_bytes"))
                .col(text_null("error"))
                .col(ms("created_at"))
                .col(big_null("finished_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_company_exports_company")
                .table(a("company_exports"))
                .col(a("company_id"))
                .col(a("created_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
