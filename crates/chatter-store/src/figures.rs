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
