//! Automatic messages are no answers (issue 14): `messages.automatic` (1: sent by an auto-reply
//! rule) so the dashboard's facts (`crate::figures`) leave them out of the first response and
//! of "waiting for an answer". Adds the column (a constant default: instant on PostgreSQL),
//! marks the auto-replies already sent (those `auto_reply_firings` names) and recomputes the
//! facts of their conversations only.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        m.alter_table(
            Table::alter()
                .table(a("messages"))
                .add_column(
                    ColumnDef::new(a("automatic"))
                        .small_integer()
                        .not_null()
                        .default(0),
                )
                .to_owned(),
        )
        .await?;
        let c = m.get_connection();
        c.execute_unprepared(
            "UPDATE messages SET automatic = 1 WHERE id IN \
             (SELECT reply_message_id FROM auto_reply_firings WHERE reply_message_id IS NOT NULL)",
        )
        .await?;
        crate::figures::backfill_where(
            c,
            "id IN (SELECT conversation_id FROM auto_reply_firings \
             WHERE reply_message_id IS NOT NULL)",
        )
        .await
    }
}
