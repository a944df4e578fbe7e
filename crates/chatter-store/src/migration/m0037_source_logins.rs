//! Logins in steps in progress (Telegram personal accounts: api pair and phone, then the code
//! Telegram sends, then the 2FA password): one row per company, person and kind, holding what
//! the next step needs, encrypted with the master key, so a restart of Chatter between two
//! steps loses nothing. A row is deleted when the login ends (connected, or started again).
//! Only adds.

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
                .table(a("source_logins"))
                .col(uuid("company_id"))
                .col(uuid("user_id"))
                .col(ColumnDef::new(a("kind")).integer().not_null())
                .col(text("state"))
                .col(ms("created_at"))
                .col(ms("updated_at"))
                .primary_key(
                    Index::create()
                        .col(a("company_id"))
                        .col(a("user_id"))
                        .col(a("kind")),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(a("source_logins"), a("company_id"))
                        .to(a("companies"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }
}
