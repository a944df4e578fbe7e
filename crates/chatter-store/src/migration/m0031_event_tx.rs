//! Live events in commit order on PostgreSQL (issue 15): `events.tx`, the writing
//! transaction's id (`xid8`, filled by its default `pg_current_xact_id()`), with an index on
//! `(company_id, tx, id)`. A live stream reads only events whose transaction is older than every
//! transaction still running, in `(tx, id)` order (`chatter-core/src/events.rs`), so an event
//! whose transaction commits late is delivered late, never skipped. Rows already stored take
//! the migration's own transaction id. SQLite has one writer, so its ids are already in commit
//! order: nothing changes there. Old nodes keep inserting without naming the column.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let c = m.get_connection();
        c.execute_unprepared(
            "ALTER TABLE events ADD COLUMN IF NOT EXISTS tx xid8 NOT NULL DEFAULT pg_current_xact_id()",
        )
        .await?;
        c.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS ix_events_company_tx ON events (company_id, tx, id)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let c = m.get_connection();
        c.execute_unprepared("DROP INDEX IF EXISTS ix_events_company_tx")
            .await?;
        c.execute_unprepared("ALTER TABLE events DROP COLUMN IF EXISTS tx")
            .await?;
        Ok(())
    }
}
