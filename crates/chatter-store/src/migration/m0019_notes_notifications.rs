//! Internal notes on conversations (seen only by the team, never sent to a customer), the
//! notifications each person gets (a new conversation, a mention, an assignment) with their
//! read state, and each person's notification settings per company (browser notifications,
//! the daily e-mail digest and the day it was last sent). Only adds tables.

use super::cols::{ms, ms_null, text, text_null, uuid, uuid_null};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        m.create_table(
            Table::create()
                .table(a("notes"))
                .col(uuid("id").primary_key())
                .col(uuid("company_id"))
                .col(uuid("conversation_id"))
                // None: written through the API by a key acting for no member.
                .col(uuid_null("author_id"))
                // The author's name when written: the thread and amoCRM show it.
                .col(text("author_name"))
                .col(text("text"))
                // JSON array of the mentioned members' user ids.
                .col(text("mentions"))
                .col(ms("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("notifications"))
                .col(uuid("id").primary_key())
                .col(uuid("company_id"))
                .col(uuid("user_id"))
                // new_conversation | mention | assigned
                .col(text("kind"))
                .col(uuid("conversation_id"))
                .col(uuid_null("note_id"))
                // Who caused it (a teammate's name), when a person did.
                .col(text_null("actor_name"))
                .col(ms("created_at"))
                .col(ms_null("read_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("notification_settings"))
                .col(uuid("company_id"))
                .col(uuid("user_id"))
                .col(
                    ColumnDef::new(a("browser"))
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(
                    ColumnDef::new(a("digest"))
                        .boolean()
                        .not_null()
                        .default(false),
                )
                // The UTC day (YYYY-MM-DD) the last digest went out: at most one a day.
                .col(text_null("digest_sent_on"))
                .col(ms("updated_at"))
                .primary_key(Index::create().col(a("company_id")).col(a("user_id")))
                .to_owned(),
        )
        .await?;
        for (name, table, cols) in [
            (
                "ix_notes_conversation",
                "notes",
                &["conversation_id", "created_at", "id"][..],
            ),
            (
                "ix_notifications_person",
                "notifications",
                &["user_id", "company_id", "created_at", "id"][..],
            ),
            (
                "ix_notifications_unread",
                "notifications",
                &["user_id", "company_id", "read_at"][..],
            ),
        ] {
            let mut ix = Index::create();
            ix.name(name).table(a(table));
            for c in cols {
                ix.col(a(c));
            }
            m.create_index(ix.to_owned()).await?;
        }
        Ok(())
    }
}
