//! The nodes sharing this database, each with its last heartbeat and version (for the
//! operator's view of who is alive), and facts about the instance itself — today the check
//! value that lets a node with a different master key refuse to start.

use super::cols::{ms, text};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        m.create_table(
            Table::create()
                .table(a("nodes"))
                .col(ColumnDef::new(a("name")).text().not_null().primary_key())
                .col(text("version"))
                .col(text("role"))
                .col(ms("started_at"))
                .col(ms("heartbeat_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("instance_facts"))
                .col(ColumnDef::new(a("name")).text().not_null().primary_key())
                .col(text("value"))
                .col(ms("created_at"))
                .to_owned(),
        )
        .await
    }
}
