//! The full-text index of message texts, one design per database behind one pair of functions:
//! [`index_messages`] (called in the transaction that stores or edits messages) and
//! [`find_messages`] (a company's matching message ids, newest first).
//!
//! - PostgreSQL: a stored generated column `messages.search_vector` (m0017) holding
//!   `to_tsvector('russian', text)` (Snowball Russian for Cyrillic words, English for Latin
//!   ones) plus one lexeme naming the company, which no parsed word can equal (it holds a
//!   space), with a GIN index on it. A query ANDs the company's lexeme with the words, so the
//!   index itself intersects "this company" with "these words" instead of fetching every
//!   company's matches and filtering them. For a word in a large part of a big company's
//!   messages that intersection is still tens of thousands of rows to fetch and sort; the
//!   planner then walks `(company_id, created_at, id)` backwards instead and stops at the 50th
//!   match, which is cheap because the vector is stored, not recomputed per row (measured: a
//!   GIN-only design took 600 ms for such a word, the stored vector with both indexes under
//!   25 ms for every kind of query). The database writes the column in the writing
//!   transaction, old nodes included; [`index_messages`] does nothing.
//! - SQLite: FTS5 has no Russian stemmer, so the stems are computed here with the stemmer the
//!   routing rules use (`chatter_domain::stem`, the same Snowball algorithms) and stored as a
//!   text of space-separated stems in `message_search_terms`; an external-content FTS5 table
//!   (`message_search`) kept by triggers indexes that text and the company's id. A MATCH
//!   expression is built only from our own stems, each quoted, so no typed character is ever
//!   FTS5 syntax.
//!
//! Both answer with `company_id = …` checked on the message row as well: the index narrows,
//! the row decides.

use crate::{stmt, Result};
use chatter_domain::stem;
use chatter_domain::{CompanyId, MessageId};
use sea_orm::{ConnectionTrait, DbBackend, Value};
use uuid::Uuid;

/// Characters of a message text indexed; the rest of a longer text is not searchable (and a
/// text of megabytes cannot overflow PostgreSQL's 1 MB tsvector in the ingest transaction).
pub const INDEXED_CHARS: i32 = 100_000;

/// What `messages.search_vector` is generated from on PostgreSQL (m0017).
pub const PG_VECTOR: &str = "to_tsvector('russian'::regconfig, left(coalesce(text, ''), 100000)) \
     || array_to_tsvector(ARRAY['company ' || replace(company_id::text, '-', '')])";

/// SQLite's search: the newest `$3` index hits of the MATCH expression `$1` first, then their
/// rows by primary key. `CROSS JOIN` fixes that order: with a plain join SQLite's planner
/// preferred to walk every message of the company `$2` by its index and probe the hits for
/// each (measured on 1,000,000 messages, a company with 200,000: 3.5 s instead of 9 ms).
const SQLITE_FIND: &str = "SELECT t.message_id AS id FROM \
     (SELECT rowid AS rid FROM message_search WHERE message_search MATCH $1 \
      ORDER BY rowid DESC LIMIT $3) h \
     CROSS JOIN message_search_terms t ON t.id = h.rid \
     CROSS JOIN messages m ON m.id = t.message_id AND m.company_id = $2 \
     ORDER BY t.id DESC";

/// Rows per multi-row insert (three values each, well under SQLite's parameter limit).
const CHUNK: usize = 300;

/// The stems of `text` as the SQLite index stores them: space-separated, in text order.
pub fn terms_of(text: &str) -> String {
    let capped: String = text.chars().take(INDEXED_CHARS as usize).collect();
    stem::tokens(&capped).join(" ")
}

/// The company's token in the SQLite index: its id as 32 hex digits.
fn company_token(company: Uuid) -> String {
    company.simple().to_string()
}

/// Adds or replaces the index entries of messages `(id, company, text)`, inside the caller's
/// transaction. PostgreSQL indexes the rows itself.
pub async fn index_messages(
    conn: &impl ConnectionTrait,
    rows: &[(MessageId, CompanyId, Option<&str>)],
) -> Result<()> {
    let backend = conn.get_database_backend();
    if backend != DbBackend::Sqlite || rows.is_empty() {
        return Ok(());
    }
    for chunk in rows.chunks(CHUNK) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 3);
        let mut tuples = Vec::with_capacity(chunk.len());
        for (id, company, text) in chunk {
            let n = values.len();
            tuples.push(format!("(${}, ${}, ${})", n + 1, n + 2, n + 3));
            values.push(id.0.into());
            values.push(company_token(company.0).into());
            values.push(terms_of(text.unwrap_or_default()).into());
        }
        let sql = format!(
            "INSERT INTO message_search_terms (message_id, company, terms) VALUES {} \
             ON CONFLICT (message_id) DO UPDATE SET terms = excluded.terms",
            tuples.join(", ")
        );
        conn.execute(stmt(backend, &sql, values)).await?;
    }
    Ok(())
}

/// Shortest last word that is also matched as the beginning of a word (as one types).
pub const PREFIX_CHARS: usize = 3;

/// The ids of the company's messages containing every word of `words` (any form of it; the
/// last one, when it has [`PREFIX_CHARS`] or more, also as the beginning of a word), newest
/// first, at most `limit`. `words` are the folded words of a query (letters and digits only);
/// none gives none.
pub async fn find_messages(
    conn: &impl ConnectionTrait,
    company: CompanyId,
    words: &[String],
    limit: u64,
) -> Result<Vec<Uuid>> {
    // Letters and digits only, whatever the caller passed: below, the words are written into
    // SQL (PostgreSQL) and an FTS5 expression (SQLite), so nothing else may reach them.
    let words: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let backend = conn.get_database_backend();
    let limit = limit as i64;
    let last = words.len() - 1;
    let prefix = words[last].chars().count() >= PREFIX_CHARS;
    let st = if backend == DbBackend::Postgres {
        // Letters and digits only, so this is never tsquery syntax but our own `&` and `:*`.
        let words = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == last && prefix {
                    format!("{w}:*")
                } else {
                    w.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" & ");
        // The values are written into the text, not bound: a prepared statement soon runs a
        // generic plan, which cannot choose per query between the word's GIN index (a rare
        // word) and walking the company's newest messages (a frequent one), and was measured
        // 10-100x slower. The words are letters and digits only and the rest is ours; quotes
        // are doubled all the same. Stop words («в», «и») drop out of the words' query; one of
        // nothing but stop words must find nothing rather than every message of the company.
        let words = words.replace('\'', "''");
        let sql = format!(
            "SELECT id FROM messages WHERE company_id = '{company}' \
             AND search_vector @@ (CAST('''company {hex}''' AS tsquery) \
             && to_tsquery('russian', '{words}')) \
             AND numnode(to_tsquery('russian', '{words}')) > 0 \
             ORDER BY created_at DESC, id DESC LIMIT {limit}",
            hex = company_token(company.0)
        );
        sea_orm::Statement::from_string(backend, sql)
    } else {
        let mut expr = format!("company : \"{}\"", company_token(company.0));
        for (i, w) in words.iter().enumerate() {
            // Stems hold letters and digits only; doubling quotes keeps that true of the
            // expression even if the tokenizer ever changed.
            let s = stem::stem(w).replace('"', "\"\"");
            let star = if i == last && prefix { " *" } else { "" };
            expr.push_str(&format!(" AND terms : \"{s}\"{star}"));
        }
        stmt(
            backend,
            SQLITE_FIND,
            vec![expr.into(), company.into(), limit.into()],
        )
    };
    let rows = conn.query_all(st).await?;
    rows.iter()
        .map(|r| r.try_get::<Uuid>("", "id").map_err(Into::into))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan starts from the index's newest hits and reaches the rows by key; it never
    /// walks a company's messages (a plan that did took seconds on a big company).
    #[tokio::test]
    async fn sqlite_search_starts_from_the_index_hits() {
        use sea_orm_migration::MigratorTrait as _;
        let file = std::env::temp_dir().join(format!("search-plan-{}.db", Uuid::new_v4()));
        let db = sea_orm::Database::connect(format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .expect("sqlite");
        crate::migration::Migrator::up(&db, None)
            .await
            .expect("migrate");
        // Statistics as a big company's database has them, so the planner is tempted.
        db.execute_unprepared("ANALYZE").await.expect("analyze");
        let sql = SQLITE_FIND
            .replace("$1", "'company : \"x\" AND terms : \"y\"'")
            .replace("$2", "x'00'")
            .replace("$3", "50");
        let rows = db
            .query_all(sea_orm::Statement::from_string(
                DbBackend::Sqlite,
                format!("EXPLAIN QUERY PLAN {sql}"),
            ))
            .await
            .expect("plan");
        let plan: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String>("", "detail").expect("detail"))
            .collect();
        let first = plan
            .iter()
            .position(|d| d.contains("message_search VIRTUAL TABLE"))
            .expect("the index is used");
        let by_key = |table: &str| {
            plan.iter().position(|d| {
                d.starts_with(&format!("SEARCH {table} USING"))
                    && (d.contains("PRIMARY KEY")
                        || d.contains("(id=?)")
                        || d.contains("(rowid=?)"))
            })
        };
        assert!(
            by_key("t").is_some_and(|i| i > first) && by_key("m").is_some_and(|i| i > first),
            "{plan:#?}"
        );
        assert!(
            !plan.iter().any(|d| d.contains("company_id=?")),
            "walks a company's messages: {plan:#?}"
        );
        drop(db);
        let _ = std::fs::remove_file(&file);
    }

    /// `optimize` (run by `migrate` and hourly) leaves statistics for the planner.
    #[tokio::test]
    async fn optimize_gathers_the_planners_statistics() {
        let file = std::env::temp_dir().join(format!("optimize-{}.db", Uuid::new_v4()));
        let db = crate::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .expect("sqlite");
        crate::migrate(&db).await.expect("migrate");
        for i in 0..500 {
            db.execute_unprepared(&format!(
                "INSERT INTO nodes (name, version, role, started_at, heartbeat_at) \
                 VALUES ('n{i}', '1', 'serve', {i}, {i})"
            ))
            .await
            .expect("insert");
        }
        crate::optimize(&db).await.expect("optimize");
        let row = db
            .query_one(sea_orm::Statement::from_string(
                DbBackend::Sqlite,
                "SELECT count(*) AS n FROM sqlite_stat1 WHERE tbl = 'nodes'".to_owned(),
            ))
            .await
            .expect("stat1")
            .expect("row");
        assert!(row.try_get::<i64>("", "n").expect("n") > 0);
        drop(db);
        for f in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{f}", file.display()));
        }
    }

    #[test]
    fn terms_are_the_stems_in_order() {
        assert_eq!(terms_of("Доставку в МОСКВУ?"), "доставк в москв");
        assert_eq!(terms_of(""), "");
    }
}
