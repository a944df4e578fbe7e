//! The dashboard chart's finished days (issue 11's figures): customer messages per company day
//! and source, counted once when a day is over and read from here afterwards, so the 30-day
//! chart reads at most a day of messages instead of a month of them. A day is keyed by its
//! first instant (the company's midnight, Unix ms), so a company that changes its time zone
//! simply gets other keys; a row with the nil source marks a day as counted, even one with no
//! messages. Rows are derived data: `crate::figures::inbound_days` writes them, and deleting
//! them only makes the next dashboard count again. Only adds.

use super::cols::{ms, uuid};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        m.create_table(
            Table::create()
                .table(a("inbound_days"))
                .col(uuid("company_id"))
                .col(ms("day_start"))
                .col(uuid("source_id"))
                .col(ms("messages"))
                .primary_key(
                    Index::create()
                        .col(a("company_id"))
                        .col(a("day_start"))
                        .col(a("source_id")),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(a("inbound_days"), a("company_id"))
                        .to(a("companies"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }
}
