//! The dashboard's facts on each conversation (see `crate::figures`): when the customer first
//! wrote, the first response and who sent it, and the latest message each way; indexes for the
//! dashboard's and the reports' queries. Only adds: nullable columns (instant on PostgreSQL)
//! and indexes, then fills the columns from the messages already stored, so an upgraded
//! database shows the same figures as before.

use super::cols::{big_null, uuid_null};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        // One column per statement: SQLite alters one at a time.
        for col in [
            big_null("first_in_at"),
            big_null("first_response_at"),
            uuid_null("first_responder_id"),
            big_null("last_in_at"),
            big_null("last_out_at"),
        ] {
            m.alter_table(
                Table::alter()
                    .table(a("conversations"))
                    .add_column(col)
                    .to_owned(),
            )
            .await?;
        }
        for (name, table, cols) in [
            // Open and waiting now.
            (
                "ix_conversations_company_status",
                "conversations",
                &["company_id", "status", "last_in_at", "last_out_at"][..],
            ),
            // New today and in 7 days; the API's pages of conversations.
            (
                "ix_conversations_company_created",
                "conversations",
                &["company_id", "created_at"][..],
            ),
            // First responses of a period, read from the index alone.
            (
                "ix_conversations_company_first_in",
                "conversations",
                &[
                    "company_id",
                    "first_in_at",
                    "first_response_at",
                    "source_id",
                    "first_responder_id",
                ][..],
            ),
            // Messages per day, source and author (the chart, the reports).
            (
                "ix_messages_company_direction_created",
                "messages",
                &[
                    "company_id",
                    "direction",
                    "created_at",
                    "source_id",
                    "author_id",
                ][..],
            ),
        ] {
            let mut ix = Index::create();
            ix.name(name).table(a(table));
            for c in cols {
                ix.col(a(c));
            }
            m.create_index(ix.to_owned()).await?;
        }
        crate::figures::backfill_before_m0030(m.get_connection()).await
    }
}
