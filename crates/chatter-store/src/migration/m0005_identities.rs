//! Who a person is elsewhere: links from an outside identity (an amoCRM user, for Sign in
//! with amoCRM) to a Chatter user, and sign-ups waiting for their form, whose provider tokens
//! are kept here (encrypted) between the OAuth callback and the submit.

use super::cols::{ms, text};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;

        // One outside identity belongs to at most one person; a person may have several.
        m.create_table(
            Table::create()
                .table(a("user_identities"))
                .col(text("provider"))
                .col(text("subject"))
                .col(ColumnDef::new(a("user_id")).uuid().not_null())
                .col(text("label"))
                .col(ms("created_at"))
                .primary_key(Index::create().col(a("provider")).col(a("subject")))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("user_identities"), a("user_id"))
                        .to(a("users"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("user_identities_user")
                .table(a("user_identities"))
                .col(a("user_id"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(a("pending_signups"))
                .col(text("handle_hash").primary_key())
                .col(text("provider"))
                .col(text("payload"))
                .col(ms("expires_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
