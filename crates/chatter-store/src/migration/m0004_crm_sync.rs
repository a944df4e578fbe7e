//! What syncing conversations into the CRM needs: per-source settings over company defaults,
//! the company's routing rules, the work queue of messages still to mirror (an outbox written
//! in the ingest transaction), and every mapping between our rows and the CRM's entities.

use super::cols::{big_null, ms, text, text_null, uuid};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;

        // Settings: scope 'default' = the company's defaults, else a source id.
        m.create_table(
            Table::create()
                .table(a("crm_settings"))
                .col(uuid("company_id"))
                .col(text("scope"))
                .col(text("settings"))
                .col(ms("updated_at"))
                .primary_key(Index::create().col(a("company_id")).col(a("scope")))
                .to_owned(),
        )
        .await?;

        // The ordered rule list of a company, as one JSON document (replaced as a whole).
        m.create_table(
            Table::create()
                .table(a("routing_rules"))
                .col(
                    ColumnDef::new(a("company_id"))
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(text("rules"))
                .col(ms("updated_at"))
                .to_owned(),
        )
        .await?;

        // Whose turn it is, per round-robin list.
        m.create_table(
            Table::create()
                .table(a("crm_turns"))
                .col(uuid("company_id"))
                .col(text("list_key"))
                .col(ColumnDef::new(a("turn")).big_integer().not_null())
                .primary_key(Index::create().col(a("company_id")).col(a("list_key")))
                .to_owned(),
        )
        .await?;

        // Our contact ↔ the CRM's contact.
        m.create_table(
            Table::create()
                .table(a("crm_contacts"))
                .col(
                    ColumnDef::new(a("contact_id"))
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(uuid("company_id"))
                .col(ColumnDef::new(a("remote_id")).big_integer().not_null())
                .col(ms("created_at"))
                .to_owned(),
        )
        .await?;

        // Our conversation ↔ the CRM's deal and chat, and the routing decision that placed it.
        m.create_table(
            Table::create()
                .table(a("crm_conversations"))
                .col(
                    ColumnDef::new(a("conversation_id"))
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(uuid("company_id"))
                .col(big_null("deal_id"))
                .col(big_null("remote_contact_id"))
                .col(text_null("chat_ref"))
                .col(
                    ColumnDef::new(a("chat_linked"))
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(text_null("rule_id"))
                .col(text_null("rule_name"))
                .col(text_null("decision"))
                .col(big_null("responsible_user_id"))
                .col(ms("created_at"))
                .col(ms("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_crm_conversations_chat")
                .table(a("crm_conversations"))
                .col(a("chat_ref"))
                .to_owned(),
        )
        .await?;

        // Our message ↔ the CRM's note, chat message, or the manager's reply it came from.
        m.create_table(
            Table::create()
                .table(a("crm_messages"))
                .col(
                    ColumnDef::new(a("message_id"))
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(uuid("company_id"))
                .col(text("kind"))
                .col(text("remote_id"))
                .col(ms("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_crm_messages_remote")
                .table(a("crm_messages"))
                .col(a("company_id"))
                .col(a("kind"))
                .col(a("remote_id"))
                .unique()
                .to_owned(),
        )
        .await?;

        // Work still to do, in order: written in the same transaction as the message.
        m.create_table(
            Table::create()
                .table(a("crm_outbox"))
                .col(
                    ColumnDef::new(a("id"))
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(uuid("company_id"))
                .col(uuid("conversation_id"))
                .col(ColumnDef::new(a("message_id")).uuid().null())
                .col(text("kind"))
                .col(text("payload"))
                .col(text("status"))
                .col(
                    ColumnDef::new(a("attempts"))
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(text_null("last_error"))
                .col(ms("next_at"))
                .col(ms("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_crm_outbox_company")
                .table(a("crm_outbox"))
                .col(a("company_id"))
                .col(a("status"))
                .col(a("id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_crm_outbox_conversation")
                .table(a("crm_outbox"))
                .col(a("conversation_id"))
                .col(a("id"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
