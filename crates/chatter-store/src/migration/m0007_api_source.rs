//! The API source (kind 6): what an inbound call carried beyond the message (UTM tags, the
//! sender's email, the `Idempotency-Key`), the outgoing webhook deliveries with their log, and
//! the dispatcher's position in the event log with what it last reported per message and
//! conversation.

use super::cols::{big_null, ms, text, text_null, uuid, uuid_null};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;

        // One row per message received through an API source, keyed by our message id (the
        // CRM sync reads the UTM tags from here).
        m.create_table(
            Table::create()
                .table(a("api_inbound"))
                .col(
                    ColumnDef::new(a("message_id"))
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(uuid("source_id"))
                .col(text_null("idempotency_key"))
                .col(text_null("utm_source"))
                .col(text_null("utm_medium"))
                .col(text_null("utm_campaign"))
                .col(text_null("utm_content"))
                .col(text_null("utm_term"))
                .col(text_null("sender_email"))
                .col(ms("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_api_inbound_key")
                .table(a("api_inbound"))
                .col(a("source_id"))
                .col(a("idempotency_key"))
                .unique()
                .to_owned(),
        )
        .await?;

        // Outgoing webhooks: one row per event and endpoint; the log and the replay work on it.
        m.create_table(
            Table::create()
                .table(a("api_webhook_deliveries"))
                .col(ColumnDef::new(a("id")).uuid().not_null().primary_key())
                .col(uuid("company_id"))
                .col(uuid("source_id"))
                .col(text("dedup_key"))
                .col(text("event_type"))
                .col(big_null("event_id"))
                .col(uuid_null("conversation_id"))
                .col(uuid_null("message_id"))
                .col(text("payload"))
                .col(text("url"))
                .col(text("status"))
                .col(ColumnDef::new(a("attempts")).integer().not_null())
                .col(ColumnDef::new(a("status_code")).integer().null())
                .col(text_null("last_error"))
                .col(uuid_null("job_id"))
                .col(ms("created_at"))
                .col(ms("updated_at"))
                .col(big_null("delivered_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_api_webhook_deliveries_dedup")
                .table(a("api_webhook_deliveries"))
                .col(a("source_id"))
                .col(a("dedup_key"))
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_api_webhook_deliveries_log")
                .table(a("api_webhook_deliveries"))
                .col(a("source_id"))
                .col(a("created_at"))
                .to_owned(),
        )
        .await?;

        // What was last reported of a message (its status) or a conversation (status and
        // assignee), so a change is reported once.
        m.create_table(
            Table::create()
                .table(a("api_webhook_marks"))
                .col(
                    ColumnDef::new(a("subject_id"))
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(text("state"))
                .col(ms("updated_at"))
                .to_owned(),
        )
        .await?;

        // The dispatcher's position in `events`, with the PostgreSQL watermark in progress.
        m.create_table(
            Table::create()
                .table(a("api_webhook_cursor"))
                .col(ColumnDef::new(a("name")).text().not_null().primary_key())
                .col(ms("last_event_id"))
                .col(big_null("candidate_max"))
                .col(big_null("pending_max"))
                .col(big_null("pending_xmax"))
                .col(ms("updated_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
