//! Full-text search of message texts (see `crate::search` for the design): on PostgreSQL a
//! stored generated vector column on `messages` (computed for the stored rows as it is added)
//! with its GIN index, and an index by company and time; on SQLite the stems table, its FTS5 index and the triggers
//! that keep the two together, backfilled from the stored messages in pages. On both, contacts
//! get an index by company (names and phones are searched within one company). Only adds.

use crate::search::{index_messages, PG_VECTOR};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Messages read per backfill page.
const PAGE: u64 = 2_000;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        m.create_index(
            Index::create()
                .name("ix_contacts_company")
                .table(a("contacts"))
                .col(a("company_id"))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        if m.get_database_backend() == DbBackend::Postgres {
            for sql in [
                format!(
                    "ALTER TABLE messages ADD COLUMN search_vector tsvector \
                     GENERATED ALWAYS AS ({PG_VECTOR}) STORED"
                ),
                "CREATE INDEX ix_messages_search ON messages USING gin (search_vector)".into(),
                "CREATE INDEX ix_messages_company_created ON messages (company_id, created_at, id)"
                    .into(),
            ] {
                db.execute_unprepared(&sql).await?;
            }
            return Ok(());
        }
        m.create_table(
            Table::create()
                .table(a("message_search_terms"))
                // The FTS5 rowid: an integer key that VACUUM keeps (a rowid alias).
                .col(ColumnDef::new(a("id")).integer().not_null().primary_key())
                .col(
                    ColumnDef::new(a("message_id"))
                        .uuid()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(a("company")).text().not_null())
                .col(ColumnDef::new(a("terms")).text().not_null())
                .foreign_key(
                    ForeignKey::create()
                        .from(a("message_search_terms"), a("message_id"))
                        .to(a("messages"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        for sql in [
            "CREATE VIRTUAL TABLE message_search USING fts5(company, terms, \
             content='message_search_terms', content_rowid='id', \
             tokenize='unicode61 remove_diacritics 0')",
            "CREATE TRIGGER message_search_ai AFTER INSERT ON message_search_terms BEGIN \
             INSERT INTO message_search (rowid, company, terms) VALUES (new.id, new.company, new.terms); END",
            "CREATE TRIGGER message_search_ad AFTER DELETE ON message_search_terms BEGIN \
             INSERT INTO message_search (message_search, rowid, company, terms) \
             VALUES ('delete', old.id, old.company, old.terms); END",
            "CREATE TRIGGER message_search_au AFTER UPDATE ON message_search_terms BEGIN \
             INSERT INTO message_search (message_search, rowid, company, terms) \
             VALUES ('delete', old.id, old.company, old.terms); \
             INSERT INTO message_search (rowid, company, terms) VALUES (new.id, new.company, new.terms); END",
        ] {
            db.execute_unprepared(sql).await?;
        }
        backfill(db).await
    }
}

/// Indexes every stored message, oldest first (so the index's order is the messages' order).
async fn backfill(db: &SchemaManagerConnection<'_>) -> Result<(), DbErr> {
    let mut after: Option<(i64, uuid::Uuid)> = None;
    loop {
        let (sql, values): (&str, Vec<sea_orm::Value>) = match after {
            None => (
                "SELECT id, company_id, text, created_at FROM messages \
                 ORDER BY created_at, id LIMIT ?",
                vec![(PAGE as i64).into()],
            ),
            Some((at, id)) => (
                "SELECT id, company_id, text, created_at FROM messages \
                 WHERE created_at > ? OR (created_at = ? AND id > ?) \
                 ORDER BY created_at, id LIMIT ?",
                vec![at.into(), at.into(), id.into(), (PAGE as i64).into()],
            ),
        };
        let rows = db
            .query_all(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                sql,
                values,
            ))
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut batch: Vec<(uuid::Uuid, uuid::Uuid, Option<String>)> = Vec::new();
        for r in &rows {
            let id: uuid::Uuid = r.try_get("", "id")?;
            let at: i64 = r.try_get("", "created_at")?;
            batch.push((id, r.try_get("", "company_id")?, r.try_get("", "text")?));
            after = Some((at, id));
        }
        let rows: Vec<_> = batch
            .iter()
            .map(|(id, company, text)| ((*id).into(), (*company).into(), text.as_deref()))
            .collect();
        index_messages(db, &rows).await.map_err(|e| match e {
            crate::StoreError::Db(e) => e,
            other => DbErr::Custom(other.to_string()),
        })?;
    }
}
