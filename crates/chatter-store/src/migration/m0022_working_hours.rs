//! Working hours (requirement R5.2): the company's week (scope `default`) and any source's own
//! (scope = the source id), each one JSON document (`chatter_domain::hours::Hours`) replaced as
//! a whole. Only adds.

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
                .table(a("working_hours"))
                .col(uuid("company_id"))
                .col(text("scope"))
                .col(text("hours"))
                .col(ms("updated_at"))
                .primary_key(Index::create().col(a("company_id")).col(a("scope")))
                .to_owned(),
        )
        .await
    }
}
