//! Batches of new deals whose outcome is unknown (issue 15, item 3): before `leads/complex` is
//! called, each conversation of the batch gets a row with the marker written into its deal, and
//! the row goes when amoCRM's answer is known. A row still here means the deal may exist: the
//! next attempt searches amoCRM for the marker first and creates only what is missing. Only
//! adds.

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
                .table(a("crm_deal_attempts"))
                .col(uuid("conversation_id"))
                .col(text("marker"))
                .col(uuid("company_id"))
                .col(ms("created_at"))
                .primary_key(Index::create().col(a("conversation_id")).col(a("marker")))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("crm_deal_attempts"), a("conversation_id"))
                        .to(a("conversations"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }
}
