//! Dead letters: inbound events that can never be stored as they are, parked (and
//! acknowledged) instead of being retried by the provider into a wall.

use super::cols::{ms, text, text_null, uuid};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        m.create_table(
            Table::create()
                .table(a("dead_letters"))
                .col(ColumnDef::new(a("id")).uuid().not_null().primary_key())
                .col(uuid("company_id"))
                .col(uuid("source_id"))
                .col(text("kind"))
                .col(text("reason"))
                .col(text("event"))
                .col(text_null("raw"))
                .col(ColumnDef::new(a("attempts")).integer().not_null())
                .col(ms("created_at"))
                .col(ms("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_dead_letters_company")
                .table(a("dead_letters"))
                .col(a("company_id"))
                .col(a("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_dead_letters_source")
                .table(a("dead_letters"))
                .col(a("source_id"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("dead_letters")).to_owned())
            .await
    }
}
