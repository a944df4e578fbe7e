//! The dashboard's facts kept on each conversation (columns added by m0016), so the team's
//! figures are read from indexed conversation rows instead of being derived from every message
//! on each render:
//!
//! - `first_in_at`: when the customer's first message was stored;
//! - `first_response_at` and `first_responder_id`: the first answer to the customer stored at
//!   or after `first_in_at` (ties broken by id), and its author (none: sent from the CRM or the
//!   API without a person);
//! - `last_in_at`, `last_out_at`: the latest customer message and the latest answer, so
//!   "waiting for an answer" is `last_in_at > coalesce(last_out_at, 0)`.
//!
//! An answer is a message to the customer that is not automatic (`messages.automatic = 0`,
//! m0030): a greeting or an out-of-hours auto-reply answers nobody's question, so it neither is
//! a first response nor ends the wait. Automatic messages are stored without
//! [`after_outbound`].
//!
//! They are written in the transaction that stores the message: [`inbound_set`] /
//! [`after_inbound`] after customer messages, [`after_outbound`] after a message to the
//! customer. Each recomputes the first response from the conversation's messages only when the
//! new message can change it (the first customer message, or an answer no later than the known
//! first response), so clocks that disagree between nodes still give what [`backfill`] (the
//! definition, from the messages alone) gives. The columns are read and written here and in the
//! reports only, not through the conversation entity.

use crate::stmt;
use chatter_domain::ConversationId;
use sea_orm::{ConnectionTrait, DbErr, Value};

/// Which messages `o` are answers (see the module's documentation).
const ANSWER: &str = "o.direction = 'out' AND o.automatic = 0";
/// The same before m0030, when no message was marked automatic (m0016's backfill).
const ANSWER_BEFORE_M0030: &str = "o.direction = 'out'";

/// When the first answer (`answer`: [`ANSWER`]) at or after `t` (an SQL expression) was stored.
fn first_out_at(t: &str, answer: &str) -> String {
    format!(
        "(SELECT min(o.created_at) FROM messages o WHERE o.conversation_id = conversations.id \
         AND {answer} AND o.created_at >= {t})"
    )
}

/// Who wrote the first answer at or after `t` (ties: the lowest id).
fn first_out_by(t: &str, answer: &str) -> String {
    format!(
        "(SELECT o.author_id FROM messages o WHERE o.conversation_id = conversations.id \
         AND {answer} AND o.created_at >= {t} ORDER BY o.created_at, o.id LIMIT 1)"
    )
}

/// `SET` clauses for conversations that just received customer messages stored at `$1`
/// (one `UPDATE` may add them to its own). Every right side reads the row as it was.
pub fn inbound_set() -> String {
    let earlier = "first_in_at IS NULL OR first_in_at > $1";
    format!(
        "first_response_at = CASE WHEN {earlier} THEN {at} ELSE first_response_at END, \
         first_responder_id = CASE WHEN {earlier} THEN {by} ELSE first_responder_id END, \
         first_in_at = CASE WHEN {earlier} THEN $1 ELSE first_in_at END, \
         last_in_at = CASE WHEN last_in_at IS NULL OR last_in_at < $1 THEN $1 ELSE last_in_at END",
        at = first_out_at("$1", ANSWER),
        by = first_out_by("$1", ANSWER),
    )
}

/// The same as [`inbound_set`] in a statement of its own: conversations `ids` received customer
/// messages stored at `at`.
pub async fn after_inbound(
    conn: &impl ConnectionTrait,
    ids: &[ConversationId],
    at: i64,
) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut values: Vec<Value> = vec![at.into()];
    let mut params = Vec::with_capacity(ids.len());
    for id in ids {
        values.push(id.0.into());
        params.push(format!("${}", values.len()));
    }
    let sql = format!(
        "UPDATE conversations SET {} WHERE id IN ({})",
        inbound_set(),
        params.join(", ")
    );
    conn.execute(stmt(conn.get_database_backend(), &sql, values))
        .await?;
    Ok(())
}

/// Conversation `id` got an answer (not an automatic message) stored at `at` (already inserted
/// in this transaction).
pub async fn after_outbound(
    conn: &impl ConnectionTrait,
    id: ConversationId,
    at: i64,
) -> Result<(), DbErr> {
    // The new message can be the first response only if it is not before the first customer
    // message and not after the known first response (equal: the id decides).
    let may_be_first =
        "first_in_at <= $2 AND (first_response_at IS NULL OR first_response_at >= $2)";
    let sql = format!(
        "UPDATE conversations SET \
         first_response_at = CASE WHEN {may_be_first} THEN {at} ELSE first_response_at END, \
         first_responder_id = CASE WHEN {may_be_first} THEN {by} ELSE first_responder_id END, \
         last_out_at = CASE WHEN last_out_at IS NULL OR last_out_at < $2 THEN $2 ELSE last_out_at END \
         WHERE id = $1",
        at = first_out_at("conversations.first_in_at", ANSWER),
        by = first_out_by("conversations.first_in_at", ANSWER),
    );
    conn.execute(stmt(
        conn.get_database_backend(),
        &sql,
        vec![id.0.into(), at.into()],
    ))
    .await?;
    Ok(())
}

/// Computes every conversation's facts from its messages (anyone repairing them). Two
/// statements: the first response needs `first_in_at`.
pub async fn backfill(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    backfill_with(conn, ANSWER, "1 = 1").await
}

/// [`backfill`] of the conversations that `scope` (a condition on `conversations`) selects.
pub async fn backfill_where(conn: &impl ConnectionTrait, scope: &str) -> Result<(), DbErr> {
    backfill_with(conn, ANSWER, scope).await
}

/// [`backfill`] as m0016 ran it, before messages could be automatic.
pub async fn backfill_before_m0030(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    backfill_with(conn, ANSWER_BEFORE_M0030, "1 = 1").await
}

async fn backfill_with(
    conn: &impl ConnectionTrait,
    answer: &str,
    scope: &str,
) -> Result<(), DbErr> {
    let b = conn.get_database_backend();
    let of = |dir: &str, agg: &str| {
        let which = if dir == "in" {
            "o.direction = 'in'"
        } else {
            answer
        };
        format!(
            "(SELECT {agg}(o.created_at) FROM messages o WHERE o.conversation_id = conversations.id \
             AND {which})"
        )
    };
    conn.execute(stmt(
        b,
        &format!(
            "UPDATE conversations SET first_in_at = {}, last_in_at = {}, last_out_at = {} \
             WHERE {scope}",
            of("in", "min"),
            of("in", "max"),
            of("out", "max")
        ),
        vec![],
    ))
    .await?;
    conn.execute(stmt(
        b,
        &format!(
            "UPDATE conversations SET first_response_at = {}, first_responder_id = {} \
             WHERE first_in_at IS NOT NULL AND {scope}",
            first_out_at("conversations.first_in_at", answer),
            first_out_by("conversations.first_in_at", answer),
        ),
        vec![],
    ))
    .await?;
    Ok(())
}

/// A day is counted into `inbound_days` (m0036) once it ended this long ago: a message's
/// `created_at` is taken before its transaction commits, and no transaction commits an hour
/// late.
pub const SETTLED_MS: i64 = 3_600_000;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Rows per multi-row insert into `inbound_days` (four values each).
const DAYS_CHUNK: usize = 500;

/// Customer messages of company `company` per source and day, for the `days` days from
/// `since` (day `i` starts at `since + i` days): `(source, day, messages)`, only where there
/// are some. Days that ended [`SETTLED_MS`] before `now` are read from `inbound_days`, counted
/// there first when missing; the rest is counted from the messages. `write` is where missing
/// days are stored (a failure there is logged: the figures are right either way).
pub async fn inbound_per_day(
    read: &impl ConnectionTrait,
    write: &impl ConnectionTrait,
    company: uuid::Uuid,
    since: i64,
    days: i64,
    now: i64,
) -> Result<Vec<(uuid::Uuid, i64, i64)>, DbErr> {
    let b = read.get_database_backend();
    let end = since + days * DAY_MS;
    let settled = (now - SETTLED_MS - since).div_euclid(DAY_MS).clamp(0, days);
    let settled_end = since + settled * DAY_MS;
    let nil = uuid::Uuid::nil();
    let mut out = Vec::new();
    let mut counted = vec![false; settled as usize];
    if settled > 0 {
        let rows = read
            .query_all(stmt(
                b,
                "SELECT day_start, source_id, messages FROM inbound_days \
                 WHERE company_id = $1 AND day_start >= $2 AND day_start < $3",
                vec![company.into(), since.into(), settled_end.into()],
            ))
            .await?;
        for r in rows {
            let start: i64 = r.try_get("", "day_start")?;
            let source: uuid::Uuid = r.try_get("", "source_id")?;
            let n: i64 = r.try_get("", "messages")?;
            // Keys of another time zone's days are not this period's.
            if (start - since) % DAY_MS != 0 {
                continue;
            }
            let day = (start - since) / DAY_MS;
            if source == nil {
                counted[day as usize] = true;
            } else {
                out.push((source, day, n));
            }
        }
    }
    let missing: Vec<i64> = (0..settled).filter(|d| !counted[*d as usize]).collect();
    if let (Some(&first), Some(&last)) = (missing.first(), missing.last()) {
        // Count the missing stretch in one statement and keep the missing days of it (days
        // between them were read above).
        let found = count_inbound(
            read,
            company,
            since,
            since + first * DAY_MS,
            since + (last + 1) * DAY_MS,
        )
        .await?;
        let is_missing = |d: i64| missing.binary_search(&d).is_ok();
        let mut rows: Vec<(i64, uuid::Uuid, i64)> = Vec::new();
        for &(source, day, n) in &found {
            if is_missing(day) {
                out.push((source, day, n));
                rows.push((day, source, n));
            }
        }
        rows.extend(missing.iter().map(|&d| (d, nil, 0)));
        if let Err(e) = store_days(write, company, since, &rows).await {
            tracing::warn!(error = %e, "the dashboard's finished days were not stored; counted again next time");
        }
    }
    if settled < days {
        out.extend(count_inbound(read, company, since, settled_end, end).await?);
    }
    Ok(out)
}

/// Customer messages per source and day (counted from `since`) stored in `[from, to)`.
async fn count_inbound(
    conn: &impl ConnectionTrait,
    company: uuid::Uuid,
    since: i64,
    from: i64,
    to: i64,
) -> Result<Vec<(uuid::Uuid, i64, i64)>, DbErr> {
    let rows = conn
        .query_all(stmt(
            conn.get_database_backend(),
            "SELECT source_id, (created_at - $2) / $3 AS day, count(*) AS n FROM messages \
             WHERE company_id = $1 AND direction = 'in' AND created_at >= $4 AND created_at < $5 \
             GROUP BY source_id, 2",
            vec![
                company.into(),
                since.into(),
                DAY_MS.into(),
                from.into(),
                to.into(),
            ],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("", "source_id")?,
                r.try_get("", "day")?,
                r.try_get("", "n")?,
            ))
        })
        .collect()
}

/// Stores counted days `(day, source, messages)` (the nil source marks a day counted).
async fn store_days(
    conn: &impl ConnectionTrait,
    company: uuid::Uuid,
    since: i64,
    rows: &[(i64, uuid::Uuid, i64)],
) -> Result<(), DbErr> {
    let b = conn.get_database_backend();
    for chunk in rows.chunks(DAYS_CHUNK) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 4);
        let mut tuples = Vec::with_capacity(chunk.len());
        for (day, source, n) in chunk {
            let k = values.len();
            tuples.push(format!("(${}, ${}, ${}, ${})", k + 1, k + 2, k + 3, k + 4));
            values.push(company.into());
            values.push((since + day * DAY_MS).into());
            values.push((*source).into());
            values.push((*n).into());
        }
        let sql = format!(
            "INSERT INTO inbound_days (company_id, day_start, source_id, messages) VALUES {} \
             ON CONFLICT (company_id, day_start, source_id) DO NOTHING",
            tuples.join(", ")
        );
        conn.execute(stmt(b, &sql, values)).await?;
    }
    Ok(())
}
