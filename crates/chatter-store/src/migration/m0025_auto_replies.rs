//! Auto-replies (requirement R5.3): a company's ordered rules (`auto_replies`, the rule as JSON,
//! `chatter_domain::auto_reply::AutoReply`) and what they did on each conversation
//! (`auto_reply_firings`: one row per rule and customer message, unique, so a rule fires at most
//! once for a message whichever node runs it). Only adds.

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
                .table(a("auto_replies"))
                .col(uuid("id").primary_key())
                .col(uuid("company_id"))
                .col(ms("position"))
                .col(
                    ColumnDef::new(a("enabled"))
                        .boolean()
                        .not_null()
                        .default(true),
                )
                .col(text("name"))
                .col(text("rule"))
                .col(ms("created_at"))
                .col(ms("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("auto_replies"), a("company_id"))
                        .to(a("companies"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_auto_replies_company")
                .table(a("auto_replies"))
                .col(a("company_id"))
                .col(a("position"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("auto_reply_firings"))
                .col(uuid("id").primary_key())
                .col(uuid("company_id"))
                .col(uuid("conversation_id"))
                .col(uuid("rule_id"))
                .col(text("rule_name"))
                .col(text("trigger"))
                .col(uuid("cause_message_id"))
                .col(uuid_null("reply_message_id"))
                .col(text("outcome"))
                .col(text_null("reason"))
                .col(text("actions"))
                .col(ms("created_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("auto_reply_firings"), a("conversation_id"))
                        .to(a("conversations"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_auto_reply_firings_rule_cause")
                .table(a("auto_reply_firings"))
                .col(a("rule_id"))
                .col(a("cause_message_id"))
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_auto_reply_firings_conversation")
                .table(a("auto_reply_firings"))
                .col(a("conversation_id"))
                .col(a("created_at"))
                .to_owned(),
        )
        .await
    }
}
