//! Reply templates (requirement R5.3): a company's (`owner_id` null) and each member's own,
//! with a category, a title, the text with its variables and at most one file kept in the blob
//! store. Only adds a table.

use super::cols::{big_null, ms, text, text_null, uuid, uuid_null};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        m.create_table(
            Table::create()
                .table(a("reply_templates"))
                .col(uuid("id").primary_key())
                .col(uuid("company_id"))
                .col(uuid_null("owner_id"))
                .col(text("category"))
                .col(text("title"))
                .col(text("body"))
                .col(text_null("file_name"))
                .col(text_null("file_mime"))
                .col(text_null("file_blob"))
                .col(big_null("file_size"))
                .col(ms("created_at"))
                .col(ms("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("reply_templates"), a("company_id"))
                        .to(a("companies"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // The picker: the company's templates and one member's own.
        m.create_index(
            Index::create()
                .name("ix_reply_templates_company_owner")
                .table(a("reply_templates"))
                .col(a("company_id"))
                .col(a("owner_id"))
                .to_owned(),
        )
        .await
    }
}
