//! Set-based ingest: a batch of new customer messages is written with a handful of
//! statements whatever its size — one lookup and one multi-row insert each for contacts,
//! conversations, messages and events, and one UPDATE for the conversations' counters —
//! instead of several statements per message. Same rows, same uniqueness guarantees (the
//! inserts are `ON CONFLICT DO NOTHING` and we act only on the rows they return), same
//! transaction: the caller commits, and only then acknowledges.
//!
//! Edits, replies to earlier messages and status events are rare and take the one-by-one
//! path (`inbox::ingest_in`).

use super::send::FetchFile;
use crate::attachments::StoredAttachment;
use crate::events::{self, Pending};
use crate::inbox::{ingest_in, preview, Ingested};
use crate::jobs::{BackgroundJob, JobOptions};
use crate::{CoreError, Result};
use chatter_channels::{InboundEvent, InboundMessage};
use chatter_domain::{
    CompanyId, ContactId, ConversationId, ConversationStatus, Direction, MessageId, MessageStatus,
    SourceId,
};
use chatter_store::entity::{contact, conversation, message, source};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryTrait, Value,
};
use std::collections::{HashMap, HashSet};

/// Rows per multi-row statement (well under both databases' parameter limits).
const CHUNK: usize = 200;

// On PostgreSQL the batch's rows travel as ONE parameter, a JSON array unpacked with
// `json_to_recordset`: one statement per table per batch whatever its size, and always the same
// SQL text, so each connection prepares it once and reuses its plan (a `VALUES` list or an `IN`
// list of the batch's length is a new statement for every new length). SQLite, in process,
// keeps the multi-row statements.

/// New customer messages; returns the ids of the rows inserted (not those stored before).
const PG_INSERT_MESSAGES: &str = "INSERT INTO messages (id, company_id, conversation_id, \
     source_id, direction, external_id, text, attachments, extra, sender_name, author_id, \
     reply_to_id, reply_to_external_id, status, error, sent_parts, created_at, sent_at, edited_at) \
     SELECT r.id, r.company_id, r.conversation_id, r.source_id, 'in', r.external_id, r.text, \
     r.attachments, r.extra, r.sender_name, NULL, NULL, NULL, 'received', NULL, '[]', $2, \
     r.sent_at, NULL FROM json_to_recordset($1::json) AS r(id uuid, company_id uuid, \
     conversation_id uuid, source_id uuid, external_id text, text text, attachments text, \
     extra text, sender_name text, sent_at bigint) \
     ON CONFLICT (source_id, external_id) DO NOTHING RETURNING id";

/// Contacts by (source, external id).
const PG_FIND_CONTACTS: &str = "SELECT c.* FROM json_to_recordset($1::json) AS k(s uuid, e text) \
     JOIN contacts c ON c.source_id = k.s AND c.external_id = k.e";

/// Conversations by (source, external chat id).
const PG_FIND_CONVERSATIONS: &str = "SELECT c.* FROM json_to_recordset($1::json) AS k(s uuid, \
     e text) JOIN conversations c ON c.source_id = k.s AND c.external_chat_id = k.e";

/// A JSON array as the one text parameter of a statement above.
fn rows_json(rows: Vec<serde_json::Value>) -> Value {
    serde_json::Value::Array(rows).to_string().into()
}

/// (source, external id) keys as a JSON array of `{"s", "e"}` for `PG_FIND_*`.
fn keys_json(keys: &[(SourceId, &str)]) -> Value {
    rows_json(
        keys.iter()
            .map(|(s, e)| serde_json::json!({"s": s, "e": e}))
            .collect(),
    )
}

/// Stores `items` (each with its source) inside the caller's transaction.
pub async fn ingest_many(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    items: &[(&source::Model, &InboundEvent)],
    now: i64,
) -> Result<Vec<Ingested>> {
    let mut out = vec![Ingested::Other; items.len()];
    let mut fast: Vec<(usize, &source::Model, &InboundMessage)> = Vec::new();
    let mut seen: HashSet<(SourceId, &str)> = HashSet::new();
    let mut slow: Vec<usize> = Vec::new();
    for (i, (src, ev)) in items.iter().enumerate() {
        crate::inbox::dead_letters::check_storable(ev)?;
        match ev {
            InboundEvent::Message(m) if !m.edited && m.reply_to_external_id.is_none() => {
                if seen.insert((src.id, m.external_id.as_str())) {
                    fast.push((i, src, m));
                } else {
                    out[i] = Ingested::Duplicate;
                }
            }
            _ => slow.push(i),
        }
    }
    if !fast.is_empty() {
        ingest_new(conn, pending, &fast, &mut out, now).await?;
    }
    // After the new messages, so an edit or a reply can find its message from the same batch.
    for i in slow {
        let (src, ev) = items[i];
        out[i] = ingest_in(conn, pending, src, ev, now).await?;
    }
    Ok(out)
}

async fn ingest_new(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    fast: &[(usize, &source::Model, &InboundMessage)],
    out: &mut [Ingested],
    now: i64,
) -> Result<()> {
    let contacts = ensure_contacts(conn, fast, now).await?;
    let (convs, created) = ensure_conversations(conn, fast, &contacts, now).await?;

    // Messages: only the rows the insert returns are new; the rest were stored before.
    let mut ids: Vec<MessageId> = Vec::with_capacity(fast.len());
    let mut new_ids: HashSet<MessageId> = HashSet::new();
    if conn.get_database_backend() == DbBackend::Postgres {
        let rows: Vec<serde_json::Value> = fast
            .iter()
            .map(|(_, src, m)| {
                let id = MessageId::new();
                ids.push(id);
                let atts: Vec<StoredAttachment> =
                    m.attachments.iter().map(StoredAttachment::from).collect();
                serde_json::json!({
                    "id": id,
                    "company_id": src.company_id,
                    "conversation_id": convs[&(src.id, m.chat.external_id.as_str())],
                    "source_id": src.id,
                    "external_id": m.external_id,
                    "text": m.text,
                    "attachments": serde_json::to_string(&atts).unwrap_or_else(|_| "[]".into()),
                    "extra": m.extra.as_ref().and_then(|e| serde_json::to_string(e).ok()),
                    "sender_name": m.sender.name,
                    "sent_at": m.sent_at,
                })
            })
            .collect();
        let st = chatter_store::stmt(
            DbBackend::Postgres,
            PG_INSERT_MESSAGES,
            vec![rows_json(rows), now.into()],
        );
        for r in conn.query_all(st).await? {
            new_ids.insert(r.try_get::<MessageId>("", "id")?);
        }
    }
    for chunk in fast
        .chunks(CHUNK)
        .filter(|_| conn.get_database_backend() != DbBackend::Postgres)
    {
        let rows: Vec<message::ActiveModel> = chunk
            .iter()
            .map(|(_, src, m)| {
                let id = MessageId::new();
                ids.push(id);
                let conv = convs[&(src.id, m.chat.external_id.as_str())];
                let atts: Vec<StoredAttachment> =
                    m.attachments.iter().map(StoredAttachment::from).collect();
                message::ActiveModel {
                    id: Set(id),
                    company_id: Set(src.company_id),
                    conversation_id: Set(conv),
                    source_id: Set(src.id),
                    direction: Set(Direction::In),
                    external_id: Set(Some(m.external_id.clone())),
                    text: Set(m.text.clone()),
                    attachments: Set(serde_json::to_string(&atts).unwrap_or_else(|_| "[]".into())),
                    extra: Set(m.extra.as_ref().and_then(|e| serde_json::to_string(e).ok())),
                    sender_name: Set(m.sender.name.clone()),
                    author_id: Set(None),
                    reply_to_id: Set(None),
                    reply_to_external_id: Set(None),
                    status: Set(MessageStatus::Received),
                    error: Set(None),
                    sent_parts: Set("[]".into()),
                    created_at: Set(now),
                    sent_at: Set(Some(m.sent_at)),
                    edited_at: Set(None),
                }
            })
            .collect();
        let mut st = message::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([message::Column::SourceId, message::Column::ExternalId])
                    .do_nothing()
                    .to_owned(),
            )
            .build(conn.get_database_backend());
        st.sql.push_str(" RETURNING id");
        for r in conn.query_all(st).await? {
            new_ids.insert(r.try_get::<MessageId>("", "id")?);
        }
    }

    // Per conversation: how many new messages, and the preview of the last one.
    let mut per_conv: HashMap<ConversationId, (i32, String)> = HashMap::new();
    let mut by_company: HashMap<CompanyId, Vec<serde_json::Value>> = HashMap::new();
    let mut for_crm: Vec<(CompanyId, ConversationId, MessageId)> = Vec::new();
    let mut for_search: Vec<(MessageId, CompanyId, Option<&str>)> = Vec::new();
    for ((i, src, m), id) in fast.iter().zip(&ids) {
        if !new_ids.contains(id) {
            out[*i] = Ingested::Duplicate;
            continue;
        }
        out[*i] = Ingested::New(*id);
        for_search.push((*id, src.company_id, m.text.as_deref()));
        let conv = convs[&(src.id, m.chat.external_id.as_str())];
        let e = per_conv.entry(conv).or_insert((0, String::new()));
        e.0 += 1;
        e.1 = preview(m.text.as_deref(), &m.attachments, m.extra.is_some());
        if !m.attachments.is_empty() {
            FetchFile { message_id: *id }
                .enqueue(conn, JobOptions::at(now).company(src.company_id.0))
                .await?;
        }
        by_company
            .entry(src.company_id)
            .or_default()
            .push(serde_json::json!({"conversation_id": conv, "message_id": id}));
        for_crm.push((src.company_id, conv, *id));
    }
    update_conversations(conn, &per_conv, now).await?;
    chatter_store::search::index_messages(conn, &for_search).await?;
    crate::crm::sync::outbox::enqueue_messages(conn, &for_crm, now).await?;
    crate::automation::replies::trigger::after_inbound(conn, &for_crm, now).await?;
    for (company, payloads) in by_company {
        events::emit_many(conn, pending, company, "message", payloads, now).await?;
    }
    crate::notifications::on_new_conversations(conn, pending, &created, now).await?;
    Ok(())
}

/// Finds or creates every sender's contact; returns (source, external id) → contact id.
async fn ensure_contacts<'a>(
    conn: &impl ConnectionTrait,
    fast: &[(usize, &'a source::Model, &'a InboundMessage)],
    now: i64,
) -> Result<HashMap<(SourceId, &'a str), ContactId>> {
    let mut wanted: HashMap<(SourceId, &'a str), (&source::Model, &InboundMessage)> =
        HashMap::new();
    for (_, src, m) in fast {
        wanted.insert((src.id, m.sender.external_id.as_str()), (src, m));
    }
    let mut found = find_contacts(conn, &wanted.keys().copied().collect::<Vec<_>>()).await?;
    // Inserted in key order, so concurrent writers take row locks in the same order.
    let mut wanted_sorted: Vec<_> = wanted.iter().collect();
    wanted_sorted.sort_by(|a, b| a.0.cmp(b.0));
    let missing: Vec<contact::ActiveModel> = wanted_sorted
        .into_iter()
        .filter(|(k, _)| !found.contains_key(&(k.0, k.1.to_string())))
        .map(|(_, (src, m))| contact::ActiveModel {
            id: Set(ContactId::new()),
            company_id: Set(src.company_id),
            source_id: Set(src.id),
            external_id: Set(m.sender.external_id.clone()),
            name: Set(m.sender.name.clone()),
            username: Set(m.sender.username.clone()),
            phone: Set(m.sender.phone.clone()),
            merged_into: Set(None),
            email: Set(None),
            edited_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .collect();
    if !missing.is_empty() {
        for chunk in missing.chunks(CHUNK) {
            contact::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([contact::Column::SourceId, contact::Column::ExternalId])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(conn)
                .await?;
        }
        found = find_contacts(conn, &wanted.keys().copied().collect::<Vec<_>>()).await?;
    }
    let mut out = HashMap::new();
    for (k, (_, m)) in &wanted {
        let c = found
            .get(&(k.0, k.1.to_string()))
            .ok_or(CoreError::Internal("contact vanished".into()))?;
        // A customer who changed their name or username in the messenger.
        // A name the team set stays (`edited_at`).
        let name = match c.edited_at {
            Some(_) => c.name.clone(),
            None => m.sender.name.clone(),
        };
        if c.name != name || c.username != m.sender.username {
            contact::Entity::update_many()
                .col_expr(contact::Column::Name, sea_orm::sea_query::Expr::value(name))
                .col_expr(
                    contact::Column::Username,
                    sea_orm::sea_query::Expr::value(m.sender.username.clone()),
                )
                .col_expr(
                    contact::Column::UpdatedAt,
                    sea_orm::sea_query::Expr::value(now),
                )
                .filter(contact::Column::Id.eq(c.id))
                .exec(conn)
                .await?;
        }
        out.insert(*k, c.id);
    }
    Ok(out)
}

async fn find_contacts(
    conn: &impl ConnectionTrait,
    keys: &[(SourceId, &str)],
) -> Result<HashMap<(SourceId, String), contact::Model>> {
    let mut out = HashMap::new();
    if conn.get_database_backend() == DbBackend::Postgres {
        let st = chatter_store::stmt(DbBackend::Postgres, PG_FIND_CONTACTS, vec![keys_json(keys)]);
        for r in contact::Entity::find().from_raw_sql(st).all(conn).await? {
            out.insert((r.source_id, r.external_id.clone()), r);
        }
        return Ok(out);
    }
    let sources: HashSet<SourceId> = keys.iter().map(|k| k.0).collect();
    for chunk in keys.chunks(CHUNK) {
        let ext: Vec<String> = chunk.iter().map(|k| k.1.to_string()).collect();
        let rows = contact::Entity::find()
            .filter(contact::Column::SourceId.is_in(sources.iter().copied()))
            .filter(contact::Column::ExternalId.is_in(ext))
            .all(conn)
            .await?;
        for r in rows {
            out.insert((r.source_id, r.external_id.clone()), r);
        }
    }
    Ok(out)
}

/// Finds or creates every message's conversation; returns (source, chat id) → conversation id.
async fn ensure_conversations<'a>(
    conn: &impl ConnectionTrait,
    fast: &[(usize, &'a source::Model, &'a InboundMessage)],
    contacts: &HashMap<(SourceId, &'a str), ContactId>,
    now: i64,
) -> Result<(
    HashMap<(SourceId, &'a str), ConversationId>,
    Vec<(CompanyId, ConversationId)>,
)> {
    let mut wanted: HashMap<(SourceId, &'a str), (&source::Model, &InboundMessage)> =
        HashMap::new();
    for (_, src, m) in fast {
        wanted
            .entry((src.id, m.chat.external_id.as_str()))
            .or_insert((src, m));
    }
    let keys: Vec<(SourceId, &str)> = wanted.keys().copied().collect();
    let mut found = find_conversations(conn, &keys).await?;
    let mut wanted_sorted: Vec<_> = wanted.iter().collect();
    wanted_sorted.sort_by(|a, b| a.0.cmp(b.0));
    let missing: Vec<conversation::ActiveModel> = wanted_sorted
        .into_iter()
        .filter(|(k, _)| !found.contains_key(&(k.0, k.1.to_string())))
        .map(|(_, (src, m))| conversation::ActiveModel {
            id: Set(ConversationId::new()),
            company_id: Set(src.company_id),
            source_id: Set(src.id),
            contact_id: Set(contacts[&(src.id, m.sender.external_id.as_str())]),
            external_chat_id: Set(m.chat.external_id.clone()),
            chat_kind: Set(m.chat.kind.as_str().to_string()),
            title: Set(m.chat.title.clone()),
            status: Set(ConversationStatus::Open),
            assignee_id: Set(None),
            unread: Set(0),
            blocked: Set(false),
            last_text: Set(String::new()),
            last_message_at: Set(now),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .collect();
    // The ids this call chose: those found afterwards are the conversations it created.
    let mut chosen: HashMap<ConversationId, CompanyId> = HashMap::new();
    for m in &missing {
        if let (sea_orm::ActiveValue::Set(id), sea_orm::ActiveValue::Set(company)) =
            (&m.id, &m.company_id)
        {
            chosen.insert(*id, *company);
        }
    }
    if !missing.is_empty() {
        for chunk in missing.chunks(CHUNK) {
            conversation::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([
                        conversation::Column::SourceId,
                        conversation::Column::ExternalChatId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(conn)
                .await?;
        }
        found = find_conversations(conn, &keys).await?;
    }
    let ids = keys
        .into_iter()
        .map(|k| {
            found
                .get(&(k.0, k.1.to_string()))
                .map(|c| (k, c.id))
                .ok_or(CoreError::Internal("conversation vanished".into()))
        })
        .collect::<Result<HashMap<_, _>>>()?;
    let mut created: Vec<(CompanyId, ConversationId)> = ids
        .values()
        .filter_map(|id| chosen.get(id).map(|company| (*company, *id)))
        .collect();
    created.sort();
    created.dedup();
    Ok((ids, created))
}

async fn find_conversations(
    conn: &impl ConnectionTrait,
    keys: &[(SourceId, &str)],
) -> Result<HashMap<(SourceId, String), conversation::Model>> {
    let mut out = HashMap::new();
    if conn.get_database_backend() == DbBackend::Postgres {
        let st = chatter_store::stmt(
            DbBackend::Postgres,
            PG_FIND_CONVERSATIONS,
            vec![keys_json(keys)],
        );
        for r in conversation::Entity::find()
            .from_raw_sql(st)
            .all(conn)
            .await?
        {
            out.insert((r.source_id, r.external_chat_id.clone()), r);
        }
        return Ok(out);
    }
    let sources: HashSet<SourceId> = keys.iter().map(|k| k.0).collect();
    for chunk in keys.chunks(CHUNK) {
        let ext: Vec<String> = chunk.iter().map(|k| k.1.to_string()).collect();
        let rows = conversation::Entity::find()
            .filter(conversation::Column::SourceId.is_in(sources.iter().copied()))
            .filter(conversation::Column::ExternalChatId.is_in(ext))
            .all(conn)
            .await?;
        for r in rows {
            out.insert((r.source_id, r.external_chat_id.clone()), r);
        }
    }
    Ok(out)
}

/// One UPDATE for all touched conversations: unread += n, the preview, reopened, unblocked,
/// and the dashboard's facts (`chatter_store::figures`).
async fn update_conversations(
    conn: &impl ConnectionTrait,
    per_conv: &HashMap<ConversationId, (i32, String)>,
    now: i64,
) -> Result<()> {
    let mut all: Vec<(&ConversationId, &(i32, String))> = per_conv.iter().collect();
    // In id order, so concurrent writers lock conversation rows in the same order.
    all.sort_by_key(|(id, _)| **id);
    if conn.get_database_backend() == DbBackend::Postgres {
        let rows: Vec<serde_json::Value> = all
            .iter()
            .map(|(id, (n, text))| serde_json::json!({"cid": id, "n": n, "t": text}))
            .collect();
        let sql = format!(
            "UPDATE conversations SET unread = unread + r.n, last_text = r.t, \
             last_message_at = $1, updated_at = $1, status = 'open', blocked = FALSE, {} \
             FROM json_to_recordset($2::json) AS r(cid uuid, n int, t text) \
             WHERE conversations.id = r.cid",
            chatter_store::figures::inbound_set(),
        );
        conn.execute(chatter_store::stmt(
            DbBackend::Postgres,
            &sql,
            vec![now.into(), rows_json(rows)],
        ))
        .await?;
        return Ok(());
    }
    for chunk in all.chunks(CHUNK) {
        let mut values: Vec<Value> = vec![now.into()];
        let mut unread = String::from("CASE id");
        let mut text = String::from("CASE id");
        let mut ids = Vec::new();
        for (id, (n, preview)) in chunk {
            values.push((**id).into());
            let p_id = values.len();
            values.push((*n).into());
            let p_n = values.len();
            values.push(preview.clone().into());
            let p_t = values.len();
            unread.push_str(&format!(" WHEN ${p_id} THEN ${p_n}"));
            text.push_str(&format!(" WHEN ${p_id} THEN ${p_t}"));
            ids.push(format!("${p_id}"));
        }
        let sql = format!(
            "UPDATE conversations SET unread = unread + ({unread} ELSE 0 END), last_text = ({text} ELSE last_text END), \
             last_message_at = $1, updated_at = $1, status = 'open', blocked = FALSE, {} WHERE id IN ({})",
            chatter_store::figures::inbound_set(),
            ids.join(", ")
        );
        conn.execute(chatter_store::stmt(
            conn.get_database_backend(),
            &sql,
            values,
        ))
        .await?;
    }
    Ok(())
}
