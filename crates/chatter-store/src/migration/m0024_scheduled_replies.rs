//! Scheduled replies (issue 14, item 5): a manager's answer to send at a time, with its state
//! (`pending`, `sent`, `cancelled`, `failed`). The send itself is a job due at `send_at`; the
//! row's state is what makes it go out once. Only adds one table; deleting the conversation
//! removes its scheduled replies.

use super::cols::{ms, text, text_null, uuid, uuid_null};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        m.create_table(
            Table::create()
                .table(a("scheduled_replies"))
                .col(uuid("id").primary_key())
                .col(uuid("company_id"))
                .col(uuid("conversation_id"))
                .col(text("text"))
                .col(ms("send_at"))
                .col(text("mode"))
                .col(uuid_null("author_id"))
                .col(text("author_name"))
                .col(text("status"))
                .col(uuid_null("message_id"))
                .col(text_null("error"))
                .col(ms("created_at"))
                .col(ms("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("scheduled_replies"), a("conversation_id"))
                        .to(a("conversations"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // A conversation's scheduled replies; the company's pending ones by time.
        m.create_index(
            Index::create()
                .name("ix_scheduled_replies_conversation")
                .table(a("scheduled_replies"))
                .col(a("conversation_id"))
                .col(a("send_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_scheduled_replies_company")
                .table(a("scheduled_replies"))
                .col(a("company_id"))
                .col(a("status"))
                .col(a("send_at"))
                .to_owned(),
        )
        .await
    }
}
