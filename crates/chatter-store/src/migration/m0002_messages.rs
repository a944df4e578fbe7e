//! Contacts, conversations, messages, the live-event log, and source polling state.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let uuid = |c: Alias| ColumnDef::new(c).uuid().not_null().to_owned();
        let uuid_null = |c: Alias| ColumnDef::new(c).uuid().null().to_owned();
        let text = |c: Alias| ColumnDef::new(c).text().not_null().to_owned();
        let text_null = |c: Alias| ColumnDef::new(c).text().null().to_owned();
        let ms = |c: Alias| ColumnDef::new(c).big_integer().not_null().to_owned();
        let ms_null = |c: Alias| ColumnDef::new(c).big_integer().null().to_owned();
        let a = Alias::new;

        m.alter_table(
            Table::alter()
                .table(a("sources"))
                .add_column(text_null(a("cursor")))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(a("sources"))
                .add_column(ms_null(a("last_inbound_at")))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(a("sources"))
                .add_column(ms_null(a("last_ok_at")))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(a("contacts"))
                .col(uuid(a("id")).primary_key())
                .col(uuid(a("company_id")))
                .col(uuid(a("source_id")))
                .col(text(a("external_id")))
                .col(text(a("name")))
                .col(text_null(a("username")))
                .col(text_null(a("phone")))
                .col(ms(a("created_at")))
                .col(ms(a("updated_at")))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("contacts"), a("source_id"))
                        .to(a("sources"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_contacts_source_ext")
                .table(a("contacts"))
                .col(a("source_id"))
                .col(a("external_id"))
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(a("conversations"))
                .col(uuid(a("id")).primary_key())
                .col(uuid(a("company_id")))
                .col(uuid(a("source_id")))
                .col(uuid(a("contact_id")))
                .col(text(a("external_chat_id")))
                .col(text(a("chat_kind")))
                .col(text_null(a("title")))
                .col(text(a("status")))
                .col(uuid_null(a("assignee_id")))
                .col(ColumnDef::new(a("unread")).integer().not_null().default(0))
                .col(
                    ColumnDef::new(a("blocked"))
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(text(a("last_text")))
                .col(ms(a("last_message_at")))
                .col(ms(a("created_at")))
                .col(ms(a("updated_at")))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("conversations"), a("source_id"))
                        .to(a("sources"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(a("conversations"), a("contact_id"))
                        .to(a("contacts"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_conversations_source_chat")
                .table(a("conversations"))
                .col(a("source_id"))
                .col(a("external_chat_id"))
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_conversations_company_last")
                .table(a("conversations"))
                .col(a("company_id"))
                .col(a("last_message_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(a("messages"))
                .col(uuid(a("id")).primary_key())
                .col(uuid(a("company_id")))
                .col(uuid(a("conversation_id")))
                .col(uuid(a("source_id")))
                .col(text(a("direction")))
                .col(text_null(a("external_id")))
                .col(text_null(a("text")))
                .col(text(a("attachments")))
                .col(text_null(a("extra")))
                .col(text(a("sender_name")))
                .col(uuid_null(a("author_id")))
                .col(uuid_null(a("reply_to_id")))
                .col(text_null(a("reply_to_external_id")))
                .col(text(a("status")))
                .col(text_null(a("error")))
                .col(text(a("sent_parts")))
                .col(ms(a("created_at")))
                .col(ms_null(a("sent_at")))
                .col(ms_null(a("edited_at")))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("messages"), a("conversation_id"))
                        .to(a("conversations"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_messages_source_ext")
                .table(a("messages"))
                .col(a("source_id"))
                .col(a("external_id"))
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_messages_conversation")
                .table(a("messages"))
                .col(a("conversation_id"))
                .col(a("created_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(a("events"))
                .col(
                    ColumnDef::new(a("id"))
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(uuid(a("company_id")))
                .col(text(a("kind")))
                .col(text(a("payload")))
                .col(ms(a("created_at")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_events_company")
                .table(a("events"))
                .col(a("company_id"))
                .col(a("id"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
