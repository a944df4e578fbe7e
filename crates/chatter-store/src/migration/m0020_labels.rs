//! Labels: a company's coloured labels (names unique per company) and which conversations
//! carry them. Only adds two tables; deleting a label or a conversation removes its links.

use super::cols::{ms, text, uuid};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        m.create_table(
            Table::create()
                .table(a("labels"))
                .col(uuid("id").primary_key())
                .col(uuid("company_id"))
                .col(text("name"))
                .col(text("color"))
                .col(ms("created_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("labels"), a("company_id"))
                        .to(a("companies"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_labels_company_name")
                .table(a("labels"))
                .col(a("company_id"))
                .col(a("name"))
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("conversation_labels"))
                .col(uuid("conversation_id"))
                .col(uuid("label_id"))
                .col(uuid("company_id"))
                .col(ms("created_at"))
                .primary_key(Index::create().col(a("conversation_id")).col(a("label_id")))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("conversation_labels"), a("conversation_id"))
                        .to(a("conversations"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(a("conversation_labels"), a("label_id"))
                        .to(a("labels"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // The inbox filtered by a label.
        m.create_index(
            Index::create()
                .name("ix_conversation_labels_label")
                .table(a("conversation_labels"))
                .col(a("label_id"))
                .col(a("conversation_id"))
                .to_owned(),
        )
        .await
    }
}
