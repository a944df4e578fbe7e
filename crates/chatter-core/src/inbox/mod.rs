//! Conversations: storing what customers write (the heart of the message path), and what
//! managers do in the inbox — read, reply, assign, close, reopen, retry a failed reply.
//!
//! Inbound: contact, conversation, message, follow-up jobs and the live event are written in
//! ONE transaction by `ingest_in`; a message is unique per (source, external id), so a
//! provider's retry or a replayed update is a no-op. The provider is acknowledged only after
//! the caller commits.

mod batch;
pub mod dead_letters;
pub mod ingest;

use crate::events::{self, Pending};
use crate::{audit, Actor, Core, CoreError, Result};
use chatter_channels::whatsapp::{self, Template};
use chatter_channels::{Attachment, DeliveryState, InboundEvent, InboundMessage};
use chatter_domain::values::{limits, multi_line_text, optional_text};
use chatter_domain::{FieldError, Permission, SourceKind};
use chatter_store::entity::{contact, conversation, message, source};
use chatter_store::jobs::{self, NewJob};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const JOB_SEND_MESSAGE: &str = "send_message";
pub const JOB_FETCH_FILE: &str = "fetch_file";

/// An attachment as stored with a message: the provider's reference and, once fetched, our blob.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAttachment {
    pub kind: String,
    pub file_ref: String,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
    /// SHA-256 name in the blob store, once downloaded.
    pub blob: Option<String>,
    /// The image type the downloaded bytes really are (PNG, JPEG, GIF, WebP: see
    /// `blobs::raster_type`); only these are shown as pictures. `None`: not a raster image,
    /// or stored before files were checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raster: Option<String>,
}

impl From<&Attachment> for StoredAttachment {
    fn from(a: &Attachment) -> Self {
        Self {
            kind: a.kind.clone(),
            file_ref: a.file_ref.clone(),
            file_name: a.file_name.clone(),
            mime_type: a.mime_type.clone(),
            size: a.size,
            blob: None,
            raster: None,
        }
    }
}

pub fn attachments_of(m: &message::Model) -> Vec<StoredAttachment> {
    serde_json::from_str(&m.attachments).unwrap_or_default()
}

/// What one ingested event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    New(Uuid),
    Edited(Uuid),
    Duplicate,
    Other,
    /// Unstorable as it is: parked as this dead letter (and acknowledged).
    Parked(Uuid),
    /// The source is turned off: nothing was stored.
    SourceOff,
}

pub(crate) fn preview(text: Option<&str>, atts: &[Attachment], extra: bool) -> String {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => t.chars().take(140).collect(),
        None if !atts.is_empty() => format!("[{}]", atts[0].kind),
        None if extra => "[contact/location]".to_string(),
        None => String::new(),
    }
}

/// Finds or creates the contact and conversation of an inbound message.
async fn upsert_chat(
    conn: &impl ConnectionTrait,
    src: &source::Model,
    m_chat: &chatter_channels::ChatRef,
    sender: &chatter_channels::Sender,
    now: i64,
) -> Result<(Uuid, conversation::Model, bool)> {
    // Look up first: a returning customer (the common case) costs one statement instead of
    // an INSERT that does nothing plus the same SELECT. A miss takes the old path unchanged.
    let find_contact = || {
        contact::Entity::find()
            .filter(contact::Column::SourceId.eq(src.id))
            .filter(contact::Column::ExternalId.eq(&sender.external_id))
            .one(conn)
    };
    let c = match find_contact().await? {
        Some(c) => c,
        None => {
            contact::Entity::insert(contact::ActiveModel {
                id: Set(Uuid::now_v7()),
                company_id: Set(src.company_id),
                source_id: Set(src.id),
                external_id: Set(sender.external_id.clone()),
                name: Set(sender.name.clone()),
                username: Set(sender.username.clone()),
                phone: Set(sender.phone.clone()),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .on_conflict(
                OnConflict::columns([contact::Column::SourceId, contact::Column::ExternalId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
            find_contact()
                .await?
                .ok_or(CoreError::Internal("contact vanished".into()))?
        }
    };
    if c.name != sender.name || c.username != sender.username {
        let mut am = c.clone().into_active_model();
        am.name = Set(sender.name.clone());
        am.username = Set(sender.username.clone());
        am.updated_at = Set(now);
        am.update(conn).await?;
    }
    let find_conversation = || {
        conversation::Entity::find()
            .filter(conversation::Column::SourceId.eq(src.id))
            .filter(conversation::Column::ExternalChatId.eq(&m_chat.external_id))
            .one(conn)
    };
    let (conv, inserted) = match find_conversation().await? {
        Some(conv) => (conv, false),
        None => {
            let inserted = conversation::Entity::insert(conversation::ActiveModel {
                id: Set(Uuid::now_v7()),
                company_id: Set(src.company_id),
                source_id: Set(src.id),
                contact_id: Set(c.id),
                external_chat_id: Set(m_chat.external_id.clone()),
                chat_kind: Set(m_chat.kind.as_str().to_string()),
                title: Set(m_chat.title.clone()),
                status: Set("open".into()),
                assignee_id: Set(None),
                unread: Set(0),
                blocked: Set(false),
                last_text: Set(String::new()),
                last_message_at: Set(now),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .on_conflict(
                OnConflict::columns([
                    conversation::Column::SourceId,
                    conversation::Column::ExternalChatId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(conn)
            .await?
                == 1;
            let conv = find_conversation()
                .await?
                .ok_or(CoreError::Internal("conversation vanished".into()))?;
            (conv, inserted)
        }
    };
    Ok((c.id, conv, inserted))
}

/// Stores one inbound event inside the caller's transaction.
pub async fn ingest_in(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    src: &source::Model,
    ev: &InboundEvent,
    now: i64,
) -> Result<Ingested> {
    match ev {
        InboundEvent::Message(m) => ingest_message(conn, pending, src, m, now).await,
        InboundEvent::Blocked {
            chat,
            sender,
            blocked,
            ..
        } => {
            let (_, conv, _) = upsert_chat(conn, src, chat, sender, now).await?;
            if conv.blocked != *blocked {
                let mut am = conv.clone().into_active_model();
                am.blocked = Set(*blocked);
                am.updated_at = Set(now);
                am.update(conn).await?;
                events::emit(
                    conn,
                    pending,
                    src.company_id,
                    "conversation",
                    serde_json::json!({"conversation_id": conv.id}),
                    now,
                )
                .await?;
            }
            Ok(Ingested::Other)
        }
        InboundEvent::Status {
            external_id,
            state,
            error,
            ..
        } => {
            apply_status(
                conn,
                pending,
                src,
                external_id,
                *state,
                error.as_deref(),
                now,
            )
            .await?;
            Ok(Ingested::Other)
        }
        InboundEvent::Ignored { .. } => Ok(Ingested::Other),
    }
}

/// How far an outgoing message has got: a delivery report only ever moves it forward.
fn progress(status: &str) -> Option<u8> {
    match status {
        "pending" => Some(0),
        "sent" => Some(1),
        "delivered" => Some(2),
        "read" => Some(3),
        _ => None,
    }
}

/// Our outgoing message of `src` that has `external_id` as the provider id of any part.
async fn find_status_target(
    conn: &impl ConnectionTrait,
    src: &source::Model,
    external_id: &str,
) -> Result<Option<message::Model>> {
    let quoted = serde_json::to_string(external_id).unwrap_or_default();
    let like = format!("%{}%", quoted.replace('%', ""));
    let candidates = message::Entity::find()
        .filter(message::Column::SourceId.eq(src.id))
        .filter(message::Column::Direction.eq("out"))
        .filter(
            Condition::any()
                .add(message::Column::ExternalId.eq(external_id))
                .add(Expr::col(message::Column::SentParts).like(&like)),
        )
        .limit(5)
        .all(conn)
        .await?;
    Ok(candidates.into_iter().find(|m| {
        m.external_id.as_deref() == Some(external_id)
            || serde_json::from_str::<Vec<String>>(&m.sent_parts)
                .is_ok_and(|p| p.iter().any(|x| x == external_id))
    }))
}

/// Whether a delivery report can be applied now. Providers report as soon as they accept a
/// message, which can be before our send job has recorded the id: while the source has a
/// reply still being sent and no message carries the id, the answer is `false` and the hook
/// asks the provider to deliver the report again shortly (it would be lost otherwise).
pub async fn status_ready(core: &Core, src: &source::Model, external_id: &str) -> Result<bool> {
    if find_status_target(&core.db, src, external_id)
        .await?
        .is_some()
    {
        return Ok(true);
    }
    let in_flight = message::Entity::find()
        .filter(message::Column::SourceId.eq(src.id))
        .filter(message::Column::Direction.eq("out"))
        .filter(message::Column::Status.eq("pending"))
        .one(&core.db)
        .await?;
    Ok(in_flight.is_none())
}

/// A provider's delivery report for one of our messages (WhatsApp statuses, SMS reports):
/// the message is found by the provider id of any of its parts in `src`, and moves forward
/// (sent → delivered → read), or to failed with the provider's reason while not yet
/// delivered. Reports of messages we do not know, repeats and late ones change nothing.
async fn apply_status(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    src: &source::Model,
    external_id: &str,
    state: DeliveryState,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    let Some(m) = find_status_target(conn, src, external_id).await? else {
        return Ok(());
    };
    let Some(current) = progress(&m.status) else {
        // Failed stays failed until a manager retries it.
        return Ok(());
    };
    let (status, error) = match state {
        DeliveryState::Failed if current <= 1 => (
            "failed",
            Some(
                error
                    .unwrap_or("the provider reported a failed delivery")
                    .to_owned(),
            ),
        ),
        DeliveryState::Failed => return Ok(()),
        // "sent" while our send job is still finishing: the job records it.
        DeliveryState::Sent => return Ok(()),
        DeliveryState::Delivered if current < 2 => ("delivered", None),
        DeliveryState::Read if current < 3 => ("read", None),
        _ => return Ok(()),
    };
    let (id, conv_id) = (m.id, m.conversation_id);
    let mut am = m.into_active_model();
    am.status = Set(status.to_owned());
    am.error = Set(error);
    am.update(conn).await?;
    events::emit(
        conn,
        pending,
        src.company_id,
        "message",
        serde_json::json!({"conversation_id": conv_id, "message_id": id}),
        now,
    )
    .await?;
    Ok(())
}

async fn ingest_message(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    src: &source::Model,
    m: &InboundMessage,
    now: i64,
) -> Result<Ingested> {
    if m.edited {
        let existing = message::Entity::find()
            .filter(message::Column::SourceId.eq(src.id))
            .filter(message::Column::ExternalId.eq(&m.external_id))
            .one(conn)
            .await?;
        if let Some(e) = existing {
            if e.text == m.text && e.edited_at.is_some_and(|t| t >= m.sent_at) {
                return Ok(Ingested::Duplicate);
            }
            let conv_id = e.conversation_id;
            let mut am = e.into_active_model();
            am.text = Set(m.text.clone());
            am.edited_at = Set(Some(m.sent_at));
            let e = am.update(conn).await?;
            // The list previews the latest message: keep it current when that one is edited.
            let later = message::Entity::find()
                .filter(message::Column::ConversationId.eq(conv_id))
                .filter(message::Column::Id.gt(e.id))
                .one(conn)
                .await?;
            if later.is_none() {
                conversation::Entity::update_many()
                    .col_expr(
                        conversation::Column::LastText,
                        Expr::value(preview(
                            m.text.as_deref(),
                            &m.attachments,
                            m.extra.is_some(),
                        )),
                    )
                    .filter(conversation::Column::Id.eq(conv_id))
                    .exec(conn)
                    .await?;
            }
            events::emit(
                conn,
                pending,
                src.company_id,
                "message",
                serde_json::json!({"conversation_id": conv_id, "message_id": e.id}),
                now,
            )
            .await?;
            return Ok(Ingested::Edited(e.id));
        }
        // An edit of a message we never saw: store it as a message.
    }
    let (_, conv, _) = upsert_chat(conn, src, &m.chat, &m.sender, now).await?;
    let reply_to_id = match &m.reply_to_external_id {
        Some(r) => {
            message::Entity::find()
                .filter(message::Column::SourceId.eq(src.id))
                .filter(message::Column::ExternalId.eq(r))
                .select_only()
                .column(message::Column::Id)
                .into_tuple::<Uuid>()
                .one(conn)
                .await?
        }
        None => None,
    };
    let atts: Vec<StoredAttachment> = m.attachments.iter().map(StoredAttachment::from).collect();
    let id = Uuid::now_v7();
    let n = message::Entity::insert(message::ActiveModel {
        id: Set(id),
        company_id: Set(src.company_id),
        conversation_id: Set(conv.id),
        source_id: Set(src.id),
        direction: Set("in".into()),
        external_id: Set(Some(m.external_id.clone())),
        text: Set(m.text.clone()),
        attachments: Set(serde_json::to_string(&atts).unwrap_or_else(|_| "[]".into())),
        extra: Set(m.extra.as_ref().and_then(|e| serde_json::to_string(e).ok())),
        sender_name: Set(m.sender.name.clone()),
        author_id: Set(None),
        reply_to_id: Set(reply_to_id),
        reply_to_external_id: Set(m.reply_to_external_id.clone()),
        status: Set("received".into()),
        error: Set(None),
        sent_parts: Set("[]".into()),
        created_at: Set(now),
        sent_at: Set(Some(m.sent_at)),
        edited_at: Set(m.edited.then_some(m.sent_at)),
    })
    .on_conflict(
        OnConflict::columns([message::Column::SourceId, message::Column::ExternalId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    if n == 0 {
        return Ok(Ingested::Duplicate);
    }
    conversation::Entity::update_many()
        .col_expr(
            conversation::Column::LastText,
            Expr::value(preview(
                m.text.as_deref(),
                &m.attachments,
                m.extra.is_some(),
            )),
        )
        .col_expr(conversation::Column::LastMessageAt, Expr::value(now))
        .col_expr(
            conversation::Column::Unread,
            Expr::col(conversation::Column::Unread).add(1),
        )
        .col_expr(conversation::Column::Status, Expr::value("open"))
        .col_expr(conversation::Column::Blocked, Expr::value(false))
        .col_expr(conversation::Column::UpdatedAt, Expr::value(now))
        .filter(conversation::Column::Id.eq(conv.id))
        .exec(conn)
        .await?;
    if !atts.is_empty() {
        jobs::enqueue(
            conn,
            NewJob::new(JOB_FETCH_FILE, serde_json::json!({"message_id": id}), now)
                .company(src.company_id),
            now,
        )
        .await?;
    }
    events::emit(
        conn,
        pending,
        src.company_id,
        "message",
        serde_json::json!({"conversation_id": conv.id, "message_id": id}),
        now,
    )
    .await?;
    crate::crm::sync::enqueue_messages(conn, &[(src.company_id, conv.id, id)], now).await?;
    Ok(Ingested::New(id))
}

/// Stores a batch of events from one source in one transaction, with the new polling cursor.
pub async fn ingest_batch(
    core: &Core,
    src: &source::Model,
    evs: &[InboundEvent],
    cursor: Option<String>,
) -> Result<Vec<Ingested>> {
    let now = core.now();
    let txn = core.db.begin().await?;
    // Read in the transaction: a source turned off meanwhile stores nothing more.
    let off = source::Entity::find_by_id(src.id)
        .filter(source::Column::Status.eq(crate::sources::DISABLED))
        .one(&txn)
        .await?
        .is_some();
    if off {
        return Ok(vec![Ingested::SourceOff; evs.len()]);
    }
    let mut pending = Pending::default();
    let items: Vec<(&source::Model, &InboundEvent)> = evs.iter().map(|e| (src, e)).collect();
    let out = crate::inbox::batch::ingest_many(&txn, &mut pending, &items, now).await?;
    let mut q = source::Entity::update_many().col_expr(source::Column::LastOkAt, Expr::value(now));
    if let Some(c) = cursor {
        q = q.col_expr(source::Column::Cursor, Expr::value(c));
    }
    if out
        .iter()
        .any(|i| matches!(i, Ingested::New(_) | Ingested::Edited(_)))
    {
        q = q.col_expr(source::Column::LastInboundAt, Expr::value(now));
    }
    q.filter(source::Column::Id.eq(src.id)).exec(&txn).await?;
    txn.commit().await?;
    core.published(pending);
    if out.iter().any(|i| matches!(i, Ingested::New(_))) {
        core.jobs_notify.notify_waiters();
    }
    Ok(out)
}

// ---- the inbox ----

/// Filters of the conversation list.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListFilter {
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    pub source: Option<Uuid>,
    /// open | closed | all (default open)
    pub status: Option<String>,
    /// mine | unassigned | unread
    pub only: Option<String>,
    /// Search in the customer's name and the messages' text.
    pub q: Option<String>,
}

/// A row of the conversation list.
#[derive(Clone, Debug)]
pub struct ConversationRow {
    pub conversation: conversation::Model,
    pub contact: contact::Model,
    pub source_name: String,
    pub source_kind: i32,
}

pub async fn list_conversations(
    core: &Core,
    actor: &Actor,
    f: &ListFilter,
    limit: u64,
) -> Result<Vec<ConversationRow>> {
    actor.require(Permission::Read)?;
    let mut q =
        conversation::Entity::find().filter(conversation::Column::CompanyId.eq(actor.company_id));
    if let Some(s) = f.source {
        q = q.filter(conversation::Column::SourceId.eq(s));
    }
    match f.status.as_deref().unwrap_or("open") {
        "all" => {}
        "closed" => q = q.filter(conversation::Column::Status.eq("closed")),
        _ => q = q.filter(conversation::Column::Status.eq("open")),
    }
    match f.only.as_deref() {
        Some("mine") => {
            q = q.filter(conversation::Column::AssigneeId.eq(actor.user_id.unwrap_or_default()))
        }
        Some("unassigned") => q = q.filter(conversation::Column::AssigneeId.is_null()),
        Some("unread") => q = q.filter(conversation::Column::Unread.gt(0)),
        _ => {}
    }
    if let Some(text) = f.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let likes = case_variants(&text.replace(['%', '_'], ""));
        let mut names = Condition::any();
        let mut texts = Condition::any();
        for like in &likes {
            names = names
                .add(Expr::col(contact::Column::Name).like(like))
                .add(Expr::col(contact::Column::Username).like(like));
            texts = texts.add(Expr::col(message::Column::Text).like(like));
        }
        let by_name = contact::Entity::find()
            .filter(contact::Column::CompanyId.eq(actor.company_id))
            .filter(names)
            .select_only()
            .column(contact::Column::Id)
            .into_tuple::<Uuid>()
            .all(&core.db)
            .await?;
        let by_text = message::Entity::find()
            .filter(message::Column::CompanyId.eq(actor.company_id))
            .filter(texts)
            .select_only()
            .column(message::Column::ConversationId)
            .distinct()
            .limit(500)
            .into_tuple::<Uuid>()
            .all(&core.db)
            .await?;
        q = q.filter(
            Condition::any()
                .add(conversation::Column::ContactId.is_in(by_name))
                .add(conversation::Column::Id.is_in(by_text)),
        );
    }
    let convs = q
        .order_by_desc(conversation::Column::LastMessageAt)
        // Messages stored in one group commit share a timestamp: the id keeps the order the
        // same from one page to the next.
        .order_by_desc(conversation::Column::Id)
        .limit(limit)
        .all(&core.db)
        .await?;
    rows_for(core, convs).await
}

/// `LIKE` patterns for a search that ignores case in any alphabet on both databases (SQLite's
/// `LIKE` folds ASCII only, PostgreSQL's folds nothing): the words as typed, in lower case, in
/// upper case and capitalised — «ольга» finds «Ольга», «доставка» finds «Доставка» and
/// «ДОСТАВКА». Mixed case inside a word («оЛьга») is not matched.
fn case_variants(needle: &str) -> Vec<String> {
    let lower = needle.to_lowercase();
    let mut capital = String::with_capacity(lower.len());
    let mut start = true;
    for c in lower.chars() {
        if start && c.is_alphabetic() {
            capital.extend(c.to_uppercase());
        } else {
            capital.push(c);
        }
        start = !c.is_alphanumeric();
    }
    let first_only: String = {
        let mut it = lower.chars();
        match it.next() {
            Some(c) => c.to_uppercase().chain(it).collect(),
            None => String::new(),
        }
    };
    let mut out: Vec<String> = Vec::new();
    for v in [
        needle.to_owned(),
        lower.clone(),
        needle.to_uppercase(),
        capital,
        first_only,
    ] {
        let p = format!("%{v}%");
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

async fn rows_for(core: &Core, convs: Vec<conversation::Model>) -> Result<Vec<ConversationRow>> {
    let contact_ids: Vec<Uuid> = convs.iter().map(|c| c.contact_id).collect();
    let source_ids: Vec<Uuid> = convs.iter().map(|c| c.source_id).collect();
    let contacts = contact::Entity::find()
        .filter(contact::Column::Id.is_in(contact_ids))
        .all(&core.db)
        .await?;
    let sources = source::Entity::find()
        .filter(source::Column::Id.is_in(source_ids))
        .all(&core.db)
        .await?;
    Ok(convs
        .into_iter()
        .filter_map(|c| {
            let contact = contacts.iter().find(|x| x.id == c.contact_id)?.clone();
            let s = sources.iter().find(|x| x.id == c.source_id)?;
            Some(ConversationRow {
                source_name: s.name.clone(),
                source_kind: s.kind,
                contact,
                conversation: c,
            })
        })
        .collect())
}

/// Several conversations of the actor's company at once (for rendering a batch of events).
pub async fn conversations_by_ids(
    core: &Core,
    actor: &Actor,
    ids: &[Uuid],
) -> Result<Vec<ConversationRow>> {
    actor.require(Permission::Read)?;
    let convs = conversation::Entity::find()
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .filter(conversation::Column::Id.is_in(ids.iter().copied()))
        .all(&core.db)
        .await?;
    rows_for(core, convs).await
}

/// Several messages of the actor's company at once.
pub async fn messages_by_ids(
    core: &Core,
    actor: &Actor,
    ids: &[Uuid],
) -> Result<Vec<message::Model>> {
    actor.require(Permission::Read)?;
    Ok(message::Entity::find()
        .filter(message::Column::CompanyId.eq(actor.company_id))
        .filter(message::Column::Id.is_in(ids.iter().copied()))
        .all(&core.db)
        .await?)
}

/// One conversation of the actor's company.
pub async fn get_conversation(core: &Core, actor: &Actor, id: Uuid) -> Result<ConversationRow> {
    actor.require(Permission::Read)?;
    let c = conversation::Entity::find_by_id(id)
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)?;
    rows_for(core, vec![c])
        .await?
        .pop()
        .ok_or(CoreError::NotFound)
}

/// The conversation's messages, oldest first (the last `limit`).
pub async fn messages(
    core: &Core,
    actor: &Actor,
    conversation_id: Uuid,
    limit: u64,
) -> Result<Vec<message::Model>> {
    get_conversation(core, actor, conversation_id).await?;
    let mut ms = message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation_id))
        .order_by_desc(message::Column::CreatedAt)
        .order_by_desc(message::Column::Id)
        .limit(limit)
        .all(&core.db)
        .await?;
    ms.reverse();
    Ok(ms)
}

pub async fn get_message(core: &Core, actor: &Actor, id: Uuid) -> Result<message::Model> {
    actor.require(Permission::Read)?;
    message::Entity::find_by_id(id)
        .filter(message::Column::CompanyId.eq(actor.company_id))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)
}

/// Marks the conversation read (a manager opened it).
pub async fn mark_read(core: &Core, actor: &Actor, id: Uuid) -> Result<()> {
    get_conversation(core, actor, id).await?;
    let n = conversation::Entity::update_many()
        .col_expr(conversation::Column::Unread, Expr::value(0))
        .filter(conversation::Column::Id.eq(id))
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .filter(conversation::Column::Unread.gt(0))
        .exec(&core.db)
        .await?;
    if n.rows_affected > 0 {
        let txn = core.db.begin().await?;
        let mut pending = Pending::default();
        events::emit(
            &txn,
            &mut pending,
            actor.company_id,
            "conversation",
            serde_json::json!({"conversation_id": id}),
            core.now(),
        )
        .await?;
        txn.commit().await?;
        core.published(pending);
    }
    Ok(())
}

/// A manager's answer: stored as pending with a send job, in one transaction. In a WhatsApp
/// conversation whose customer last wrote more than 24 hours ago free text is refused before
/// anything is stored (`err.wa_window_closed`): only a template may go (`reply_template`).
pub async fn reply(
    core: &Core,
    actor: &Actor,
    conversation_id: Uuid,
    text: &str,
    reply_to: Option<Uuid>,
) -> Result<message::Model> {
    let text = match multi_line_text("text", text, limits::REPLY) {
        Ok(t) => t,
        Err(e) => {
            actor.require(Permission::Reply)?;
            return Err(CoreError::Invalid(vec![e]));
        }
    };
    store_reply(core, actor, conversation_id, &text, reply_to, Special::None).await
}

/// What goes out instead of (or with) the text of a reply.
enum Special {
    None,
    /// A WhatsApp medium by public link (the text is its caption).
    Media(StoredAttachment),
    /// An approved WhatsApp template (name, language, body parameters).
    Template(serde_json::Value),
}

async fn store_reply(
    core: &Core,
    actor: &Actor,
    conversation_id: Uuid,
    text: &str,
    reply_to: Option<Uuid>,
    special: Special,
) -> Result<message::Model> {
    actor.require(Permission::Reply)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let conv = conversation::Entity::find_by_id(conversation_id)
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let free_form = !matches!(special, Special::Template(_));
    if free_form && source_kind(&txn, conv.source_id).await? == Some(SourceKind::Whatsapp) {
        let field = if matches!(special, Special::Media(_)) {
            "media_url"
        } else {
            "text"
        };
        if !whatsapp_window_open(&txn, conv.id, now).await? {
            return Err(CoreError::field(field, "err.wa_window_closed"));
        }
    }
    // Only a message of this conversation can be answered: an id from elsewhere (another
    // conversation, another company) is refused, never stored as a reference.
    let reply_to_external_id = match reply_to {
        Some(r) => {
            message::Entity::find_by_id(r)
                .filter(message::Column::ConversationId.eq(conv.id))
                .filter(message::Column::CompanyId.eq(actor.company_id))
                .one(&txn)
                .await?
                .ok_or(CoreError::field("reply_to", "err.reply_to_foreign"))?
                .external_id
        }
        None => None,
    };
    let author = match actor.user_id {
        Some(u) => chatter_store::entity::user::Entity::find_by_id(u)
            .one(&txn)
            .await?
            .map(|u| u.name),
        None => None,
    }
    .unwrap_or_else(|| actor.label.clone());
    let mut pending = Pending::default();
    let preview_text = match &special {
        Special::Media(a) if text.is_empty() => format!("[{}]", a.kind),
        _ => text.to_owned(),
    };
    let mut m = insert_outgoing(
        &txn,
        &mut pending,
        &conv,
        Outgoing {
            text: &preview_text,
            author_id: actor.user_id,
            author_name: author,
            reply_to: reply_to.map(|r| (r, reply_to_external_id)),
        },
        now,
    )
    .await?;
    match special {
        Special::None => {}
        Special::Media(a) => {
            let mut am = m.into_active_model();
            am.text = Set(Some(text.to_owned()).filter(|t| !t.is_empty()));
            am.attachments = Set(serde_json::to_string(&[a]).unwrap_or_else(|_| "[]".into()));
            m = am.update(&txn).await?;
        }
        Special::Template(t) => {
            let mut am = m.into_active_model();
            am.extra = Set(Some(t.to_string()));
            m = am.update(&txn).await?;
        }
    }
    crate::crm::sync::on_reply(&txn, &conv, m.id, actor.user_id, now).await?;
    txn.commit().await?;
    core.published(pending);
    core.jobs_notify.notify_waiters();
    Ok(m)
}

async fn source_kind(conn: &impl ConnectionTrait, source_id: Uuid) -> Result<Option<SourceKind>> {
    Ok(source::Entity::find_by_id(source_id)
        .one(conn)
        .await?
        .and_then(|s| SourceKind::from_id(s.kind)))
}

/// Whether free-form messages may still go to this WhatsApp conversation: the customer wrote
/// less than 24 hours ago (their time as WhatsApp reported it). Never wrote: closed.
pub async fn whatsapp_window_open(
    conn: &impl ConnectionTrait,
    conversation_id: Uuid,
    now: i64,
) -> Result<bool> {
    let last = message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation_id))
        .filter(message::Column::Direction.eq("in"))
        .order_by_desc(message::Column::SentAt)
        .select_only()
        .column(message::Column::SentAt)
        .into_tuple::<Option<i64>>()
        .one(conn)
        .await?
        .flatten();
    Ok(last.is_some_and(|at| whatsapp::window_open(at, now)))
}

/// A WhatsApp reply with a medium WhatsApp fetches from a public HTTPS link: an image, video
/// or audio by the link's extension, a document otherwise; `caption` goes with it.
pub async fn reply_media(
    core: &Core,
    actor: &Actor,
    conversation_id: Uuid,
    link: &str,
    caption: &str,
) -> Result<message::Model> {
    actor.require(Permission::Reply)?;
    let row = get_conversation(core, actor, conversation_id).await?;
    if SourceKind::from_id(row.source_kind) != Some(SourceKind::Whatsapp) {
        return Err(CoreError::field("media_url", "err.kind_unsupported"));
    }
    let link = link.trim();
    let parsed = url::Url::parse(link)
        .ok()
        .filter(|u| u.scheme() == "https" && u.host_str().is_some());
    if link.chars().count() > limits::URL {
        return Err(CoreError::Invalid(vec![FieldError::too_long(
            "media_url",
            limits::URL,
        )]));
    }
    let Some(parsed) = parsed else {
        return Err(CoreError::field("media_url", "err.media_url"));
    };
    let caption = chatter_domain::text::strip_controls(caption);
    let caption = caption.trim();
    if caption.chars().count() > limits::CAPTION {
        return Err(CoreError::Invalid(vec![FieldError::too_long(
            "caption",
            limits::CAPTION,
        )]));
    }
    let file_name = parsed
        .path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let ext = file_name
        .as_deref()
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let kind = match ext.as_str() {
        "jpg" | "jpeg" | "png" | "webp" => "image",
        "mp4" | "3gp" => "video",
        "mp3" | "ogg" | "m4a" | "aac" | "amr" => "audio",
        _ => "document",
    };
    let a = StoredAttachment {
        kind: kind.to_owned(),
        file_ref: link.to_owned(),
        file_name,
        ..StoredAttachment::default()
    };
    store_reply(
        core,
        actor,
        conversation_id,
        caption,
        None,
        Special::Media(a),
    )
    .await
}

/// The approved message templates of a WhatsApp conversation's business account (asked from
/// WhatsApp each time: templates are created and approved in Meta's WhatsApp Manager).
pub async fn whatsapp_templates(
    core: &Core,
    actor: &Actor,
    conversation_id: Uuid,
) -> Result<Vec<Template>> {
    let row = get_conversation(core, actor, conversation_id).await?;
    if SourceKind::from_id(row.source_kind) != Some(SourceKind::Whatsapp) {
        return Ok(Vec::new());
    }
    let src = source::Entity::find_by_id(row.conversation.source_id)
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)?;
    let Some(waba) = crate::sources::settings_of(&src).waba_id else {
        return Ok(Vec::new());
    };
    let crate::sources::connectors::SourceClient::WhatsApp(client) =
        crate::sources::connectors::client_for(core, &src)?
    else {
        return Ok(Vec::new());
    };
    let all = client.templates(&waba).await.map_err(|e| {
        tracing::warn!(error = %e, source = %src.id, "cannot list WhatsApp templates");
        CoreError::field("template", "err.wa_templates_unavailable")
    })?;
    Ok(all
        .into_iter()
        .filter(|t| t.status.eq_ignore_ascii_case("APPROVED"))
        .collect())
}

/// Sends an approved template to a WhatsApp customer (the only thing allowed once their
/// 24-hour window is closed). The template must be one of the account's approved ones and
/// every body parameter filled; the stored text is the body with the parameters in place.
pub async fn reply_template(
    core: &Core,
    actor: &Actor,
    conversation_id: Uuid,
    name: &str,
    language: &str,
    params: &[String],
) -> Result<message::Model> {
    actor.require(Permission::Reply)?;
    let templates = whatsapp_templates(core, actor, conversation_id).await?;
    let Some(t) = templates
        .iter()
        .find(|t| t.name == name.trim() && t.language == language.trim())
    else {
        return Err(CoreError::field("template", "err.wa_template_unknown"));
    };
    let params: Vec<String> = params
        .iter()
        .map(|p| optional_text("params", p, limits::TEMPLATE_PARAM).map(Option::unwrap_or_default))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| CoreError::Invalid(vec![e]))?;
    let wanted = t.body_params();
    if params.len() < wanted || params[..wanted].iter().any(|p| p.is_empty()) {
        return Err(CoreError::field("params", "err.wa_template_params"));
    }
    let params = params[..wanted].to_vec();
    let mut text = t.body_text().unwrap_or(&t.name).to_owned();
    for (i, p) in params.iter().enumerate() {
        text = text.replace(&format!("{{{{{}}}}}", i + 1), p);
    }
    let extra = serde_json::json!({"type": "template", "name": t.name, "language": t.language,
        "params": params});
    store_reply(
        core,
        actor,
        conversation_id,
        &text,
        None,
        Special::Template(extra),
    )
    .await
}

/// An outgoing message to store.
pub(crate) struct Outgoing<'a> {
    pub text: &'a str,
    pub author_id: Option<Uuid>,
    pub author_name: String,
    /// The message answered, with its provider id.
    pub reply_to: Option<(Uuid, Option<String>)>,
}

/// Stores an outgoing message in `conv` with its send job and live event, inside the caller's
/// transaction (replies from the inbox, from the API, and managers' answers from the CRM).
pub(crate) async fn insert_outgoing(
    txn: &impl ConnectionTrait,
    pending: &mut Pending,
    conv: &conversation::Model,
    o: Outgoing<'_>,
    now: i64,
) -> Result<message::Model> {
    let (reply_to, reply_to_external_id) = match o.reply_to {
        Some((id, ext)) => (Some(id), ext),
        None => (None, None),
    };
    let m = message::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(conv.company_id),
        conversation_id: Set(conv.id),
        source_id: Set(conv.source_id),
        direction: Set("out".into()),
        external_id: Set(None),
        // Whoever wrote it (the inbox, the API, a manager in the CRM), the customer gets no
        // control characters but line breaks and tabs.
        text: Set(Some(
            chatter_domain::text::strip_controls(o.text).into_owned(),
        )),
        attachments: Set("[]".into()),
        extra: Set(None),
        sender_name: Set(o.author_name),
        author_id: Set(o.author_id),
        reply_to_id: Set(reply_to),
        reply_to_external_id: Set(reply_to_external_id),
        status: Set("pending".into()),
        error: Set(None),
        sent_parts: Set("[]".into()),
        created_at: Set(now),
        sent_at: Set(None),
        edited_at: Set(None),
    }
    .insert(txn)
    .await?;
    let mut cam = conv.clone().into_active_model();
    cam.last_text = Set(o.text.chars().take(140).collect());
    cam.last_message_at = Set(now);
    cam.unread = Set(0);
    if conv.assignee_id.is_none() {
        cam.assignee_id = Set(o.author_id);
    }
    cam.updated_at = Set(now);
    cam.update(txn).await?;
    jobs::enqueue(
        txn,
        NewJob::new(
            JOB_SEND_MESSAGE,
            serde_json::json!({"message_id": m.id}),
            now,
        )
        .company(conv.company_id)
        .max_attempts(12),
        now,
    )
    .await?;
    events::emit(
        txn,
        pending,
        conv.company_id,
        "message",
        serde_json::json!({"conversation_id": conv.id, "message_id": m.id}),
        now,
    )
    .await?;
    Ok(m)
}

/// Sends a failed reply again.
pub async fn retry_message(core: &Core, actor: &Actor, message_id: Uuid) -> Result<()> {
    actor.require(Permission::Reply)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let m = message::Entity::find_by_id(message_id)
        .filter(message::Column::CompanyId.eq(actor.company_id))
        .filter(message::Column::Status.eq("failed"))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let conv_id = m.conversation_id;
    let mut am = m.into_active_model();
    am.status = Set("pending".into());
    am.error = Set(None);
    am.update(&txn).await?;
    jobs::enqueue(
        &txn,
        NewJob::new(
            JOB_SEND_MESSAGE,
            serde_json::json!({"message_id": message_id}),
            now,
        )
        .company(actor.company_id)
        .max_attempts(12),
        now,
    )
    .await?;
    let mut pending = Pending::default();
    events::emit(
        &txn,
        &mut pending,
        actor.company_id,
        "message",
        serde_json::json!({"conversation_id": conv_id, "message_id": message_id}),
        now,
    )
    .await?;
    audit::record(
        &txn,
        actor,
        now,
        "message.retry",
        &message_id.to_string(),
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    core.published(pending);
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// Assigns the conversation (None: unassigned). The assignee must be a member who may reply.
pub async fn assign(core: &Core, actor: &Actor, id: Uuid, assignee: Option<Uuid>) -> Result<()> {
    actor.require(Permission::Reply)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    if let Some(u) = assignee {
        let m = chatter_store::entity::membership::Entity::find_by_id((actor.company_id, u))
            .one(&txn)
            .await?;
        let ok = m
            .and_then(|m| chatter_domain::Role::parse(&m.role))
            .is_some_and(|r| r.can(Permission::Reply));
        if !ok {
            return Err(CoreError::field("assignee", "err.assignee_invalid"));
        }
    }
    let n = conversation::Entity::update_many()
        .col_expr(conversation::Column::AssigneeId, Expr::value(assignee))
        .col_expr(conversation::Column::UpdatedAt, Expr::value(now))
        .filter(conversation::Column::Id.eq(id))
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .exec(&txn)
        .await?;
    if n.rows_affected == 0 {
        return Err(CoreError::NotFound);
    }
    let details = serde_json::json!({"assignee": assignee});
    conversation_changed(core, txn, actor, id, "conversation.assign", details, now).await
}

/// Closes (`open = false`) or reopens a conversation.
pub async fn set_open(core: &Core, actor: &Actor, id: Uuid, open: bool) -> Result<()> {
    actor.require(Permission::Reply)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let n = conversation::Entity::update_many()
        .col_expr(
            conversation::Column::Status,
            Expr::value(if open { "open" } else { "closed" }),
        )
        .col_expr(conversation::Column::UpdatedAt, Expr::value(now))
        .filter(conversation::Column::Id.eq(id))
        .filter(conversation::Column::CompanyId.eq(actor.company_id))
        .exec(&txn)
        .await?;
    if n.rows_affected == 0 {
        return Err(CoreError::NotFound);
    }
    let action = if open {
        "conversation.reopen"
    } else {
        "conversation.close"
    };
    conversation_changed(core, txn, actor, id, action, serde_json::json!({}), now).await
}

/// Finishes a change of a conversation: its live event and audit entry, then the commit.
async fn conversation_changed(
    core: &Core,
    txn: sea_orm::DatabaseTransaction,
    actor: &Actor,
    id: Uuid,
    action: &str,
    details: serde_json::Value,
    now: i64,
) -> Result<()> {
    let mut pending = Pending::default();
    let payload = serde_json::json!({"conversation_id": id});
    events::emit(
        &txn,
        &mut pending,
        actor.company_id,
        "conversation",
        payload,
        now,
    )
    .await?;
    audit::record(&txn, actor, now, action, &id.to_string(), details).await?;
    txn.commit().await?;
    core.published(pending);
    Ok(())
}

#[cfg(test)]
mod search_tests {
    use super::case_variants;

    #[test]
    fn a_search_covers_the_usual_cases_of_every_alphabet() {
        let v = case_variants("ольга смирнова");
        assert!(v.contains(&"%Ольга Смирнова%".to_string()), "{v:?}");
        assert!(v.contains(&"%Ольга смирнова%".to_string()), "{v:?}");
        assert!(v.contains(&"%ОЛЬГА СМИРНОВА%".to_string()), "{v:?}");
        let v = case_variants("Доставка");
        assert!(v.contains(&"%доставка%".to_string()), "{v:?}");
        assert_eq!(case_variants("").len(), 1);
    }
}
