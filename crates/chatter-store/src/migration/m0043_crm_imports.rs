//! Sending what is already there when amoCRM is connected (issue 15, item 11): one row per
//! import a person started (`crm_imports`), and the import an outbox row belongs to
//! (`crm_outbox.import_id`), so its progress is the import's rows still in the outbox. Only
//! adds.

use super::cols::{ms, ms_null, uuid, uuid_null};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        let int = |c: &str| {
            ColumnDef::new(Alias::new(c))
                .big_integer()
                .not_null()
                .to_owned()
        };
        m.create_table(
            Table::create()
                .table(a("crm_imports"))
                .col(uuid("id").primary_key())
                .col(uuid("company_id"))
                .col(int("days"))
                .col(int("conversations"))
                .col(int("messages"))
                .col(uuid_null("created_by"))
                .col(ms("created_at"))
                .col(ms_null("finished_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("crm_imports"), a("company_id"))
                        .to(a("companies"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_crm_imports_company")
                .table(a("crm_imports"))
                .col(a("company_id"))
                .col(a("created_at"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(a("crm_outbox"))
                .add_column(uuid_null("import_id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_crm_outbox_import")
                .table(a("crm_outbox"))
                .col(a("import_id"))
                .col(a("status"))
                .to_owned(),
        )
        .await
    }
}
