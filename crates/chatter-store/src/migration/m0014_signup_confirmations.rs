//! Sign-ups waiting for their owner to open the link mailed to them. The company and its owner
//! are created only then, so the sign-up page answers a new address exactly as it answers a
//! known one ("check your mail").

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
                .table(a("signup_confirmations"))
                .col(text("token_hash").primary_key())
                .col(text("email"))
                .col(text("name"))
                .col(text("company_name"))
                // The argon2 hash of the chosen password, encrypted with the master key.
                .col(text("password_hash"))
                .col(text("locale"))
                .col(ms("created_at"))
                .col(ms("expires_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("signup_confirmations_email")
                .table(a("signup_confirmations"))
                .col(a("email"))
                .to_owned(),
        )
        .await
    }
}
