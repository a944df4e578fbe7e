//! The inbound write path: a provider's events become contact, conversation, message, follow-up
//! jobs and the live event in one transaction (`ingest_in`), and delivery statuses move our
//! replies forward (never back). Batches of events go through `batch` for a group commit.

use super::*;
use crate::crm::sync::outbox::LateStatus;

/// Finds or creates the contact and conversation of an inbound message.
pub(super) async fn upsert_chat(
    conn: &impl ConnectionTrait,
    src: &source::Model,
    m_chat: &chatter_channels::ChatRef,
    sender: &chatter_channels::Sender,
    now: i64,
) -> Result<(ContactId, conversation::Model, bool)> {
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
                id: Set(ContactId::new()),
                company_id: Set(src.company_id),
                source_id: Set(src.id),
                external_id: Set(sender.external_id.clone()),
                name: Set(sender.name.clone()),
                username: Set(sender.username.clone()),
                phone: Set(sender.phone.clone()),
                merged_into: Set(None),
                email: Set(None),
                edited_at: Set(None),
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
    // A name the team set stays; the messenger's username is always the messenger's. A
    // stand-in name (`connectors::normalize`: the provider could not name the sender this
    // time) never replaces a real one.
    let stand_in = |name: &str, username: Option<&str>| {
        name == format!("#{}", sender.external_id) || Some(name) == username
    };
    let keeps_real = stand_in(&sender.name, sender.username.as_deref())
        && !stand_in(&c.name, c.username.as_deref());
    let rename = c.edited_at.is_none() && c.name != sender.name && !keeps_real;
    if rename || c.username != sender.username {
        let mut am = c.clone().into_active_model();
        if rename {
            am.name = Set(sender.name.clone());
        }
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
                id: Set(ConversationId::new()),
                company_id: Set(src.company_id),
                source_id: Set(src.id),
                contact_id: Set(c.id),
                external_chat_id: Set(m_chat.external_id.clone()),
                chat_kind: Set(m_chat.kind.as_str().to_string()),
                title: Set(m_chat.title.clone()),
                status: Set(ConversationStatus::Open),
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
        InboundEvent::Mirrored(m) => ingest_mirrored(conn, pending, src, m, now).await,
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

/// Our outgoing message of `src` that has `external_id` as the provider id of any part.
pub(super) async fn find_status_target(
    conn: &impl ConnectionTrait,
    src: &source::Model,
    external_id: &str,
) -> Result<Option<message::Model>> {
    let quoted = serde_json::to_string(external_id).unwrap_or_default();
    let like = format!("%{}%", quoted.replace('%', ""));
    let candidates = message::Entity::find()
        .filter(message::Column::SourceId.eq(src.id))
        .filter(message::Column::Direction.eq(Direction::Out))
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
        .filter(message::Column::Direction.eq(Direction::Out))
        .filter(message::Column::Status.eq(MessageStatus::Pending))
        .one(&core.db)
        .await?;
    Ok(in_flight.is_none())
}

/// A provider's delivery report for one of our messages (WhatsApp statuses, SMS reports):
/// the message is found by the provider id of any of its parts in `src`, and moves forward
/// (sent → delivered → read), or to failed with the provider's reason while not yet
/// delivered. Reports of messages we do not know, repeats and late ones change nothing.
pub(super) async fn apply_status(
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
    // A delivery report only ever moves a message forward.
    let Some(current) = m.status.progress() else {
        // Failed stays failed until a manager retries it.
        return Ok(());
    };
    let (status, error) = match state {
        DeliveryState::Failed if current <= 1 => (
            MessageStatus::Failed,
            Some(
                error
                    .unwrap_or("the provider reported a failed delivery")
                    .to_owned(),
            ),
        ),
        DeliveryState::Failed => return Ok(()),
        // "sent" while our send job is still finishing: the job records it.
        DeliveryState::Sent => return Ok(()),
        DeliveryState::Delivered if current < 2 => (MessageStatus::Delivered, None),
        DeliveryState::Read if current < 3 => (MessageStatus::Read, None),
        _ => return Ok(()),
    };
    let (id, conv_id) = (m.id, m.conversation_id);
    // A manager's answer written in amoCRM: amoCRM shows a late failure (and the read mark)
    // next to it too; queued in this transaction, so it cannot be lost between the two.
    let late = match (status, &error) {
        (MessageStatus::Failed, Some(e)) => Some(LateStatus::Failed(e.as_str())),
        (MessageStatus::Read, _) => Some(LateStatus::Read),
        _ => None,
    };
    if let Some(late) = late {
        crate::crm::sync::outbox::on_late_status(conn, id, late, now).await?;
    }
    let mut am = m.into_active_model();
    am.status = Set(status);
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

pub(super) async fn ingest_message(
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
            chatter_store::search::index_messages(conn, &[(e.id, e.company_id, e.text.as_deref())])
                .await?;
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
    let (_, conv, new_conversation) = upsert_chat(conn, src, &m.chat, &m.sender, now).await?;
    let reply_to_id = match &m.reply_to_external_id {
        Some(r) => {
            message::Entity::find()
                .filter(message::Column::SourceId.eq(src.id))
                .filter(message::Column::ExternalId.eq(r))
                .select_only()
                .column(message::Column::Id)
                .into_tuple::<MessageId>()
                .one(conn)
                .await?
        }
        None => None,
    };
    let atts: Vec<StoredAttachment> = m.attachments.iter().map(StoredAttachment::from).collect();
    let id = MessageId::new();
    let n = message::Entity::insert(message::ActiveModel {
        id: Set(id),
        company_id: Set(src.company_id),
        conversation_id: Set(conv.id),
        source_id: Set(src.id),
        direction: Set(Direction::In),
        external_id: Set(Some(m.external_id.clone())),
        text: Set(m.text.clone()),
        attachments: Set(serde_json::to_string(&atts).unwrap_or_else(|_| "[]".into())),
        extra: Set(m.extra.as_ref().and_then(|e| serde_json::to_string(e).ok())),
        sender_name: Set(m.sender.name.clone()),
        author_id: Set(None),
        reply_to_id: Set(reply_to_id),
        reply_to_external_id: Set(m.reply_to_external_id.clone()),
        status: Set(MessageStatus::Received),
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
    chatter_store::search::index_messages(conn, &[(id, src.company_id, m.text.as_deref())]).await?;
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
        .col_expr(
            conversation::Column::Status,
            Expr::value(ConversationStatus::Open),
        )
        .col_expr(conversation::Column::Blocked, Expr::value(false))
        .col_expr(conversation::Column::UpdatedAt, Expr::value(now))
        .filter(conversation::Column::Id.eq(conv.id))
        .exec(conn)
        .await?;
    chatter_store::figures::after_inbound(conn, &[conv.id], now).await?;
    if !atts.is_empty() {
        FetchFile { message_id: id }
            .enqueue(conn, JobOptions::at(now).company(src.company_id.0))
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
    crate::crm::sync::outbox::enqueue_messages(conn, &[(src.company_id, conv.id, id)], now).await?;
    crate::automation::replies::trigger::after_inbound(conn, &[(src.company_id, conv.id, id)], now)
        .await?;
    if new_conversation {
        crate::notifications::on_new_conversations(
            conn,
            pending,
            &[(src.company_id, conv.id)],
            now,
        )
        .await?;
    }
    Ok(Ingested::New(id))
}

/// A message the account's own person sent from another device (`InboundEvent::Mirrored`):
/// stored once as an outgoing message already sent, so the inbox and the CRM show the whole
/// dialog. Nothing becomes unread, the conversation keeps its status, no automation fires.
pub(super) async fn ingest_mirrored(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    src: &source::Model,
    m: &InboundMessage,
    now: i64,
) -> Result<Ingested> {
    let (_, conv, _) = upsert_chat(conn, src, &m.chat, &m.sender, now).await?;
    let id = MessageId::new();
    let account = crate::connectors::model::settings_of(src).bot_name;
    let n = message::Entity::insert(message::ActiveModel {
        id: Set(id),
        company_id: Set(src.company_id),
        conversation_id: Set(conv.id),
        source_id: Set(src.id),
        direction: Set(Direction::Out),
        external_id: Set(Some(m.external_id.clone())),
        text: Set(m.text.clone()),
        attachments: Set("[]".into()),
        extra: Set(None),
        sender_name: Set(account),
        author_id: Set(None),
        reply_to_id: Set(None),
        reply_to_external_id: Set(m.reply_to_external_id.clone()),
        status: Set(MessageStatus::Sent),
        error: Set(None),
        sent_parts: Set(serde_json::to_string(&[&m.external_id]).unwrap_or_else(|_| "[]".into())),
        created_at: Set(now),
        sent_at: Set(Some(m.sent_at)),
        edited_at: Set(None),
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
    chatter_store::search::index_messages(conn, &[(id, src.company_id, m.text.as_deref())]).await?;
    conversation::Entity::update_many()
        .col_expr(
            conversation::Column::LastText,
            Expr::value(preview(m.text.as_deref(), &m.attachments, false)),
        )
        .col_expr(conversation::Column::LastMessageAt, Expr::value(now))
        .col_expr(conversation::Column::UpdatedAt, Expr::value(now))
        .filter(conversation::Column::Id.eq(conv.id))
        .exec(conn)
        .await?;
    events::emit(
        conn,
        pending,
        src.company_id,
        "message",
        serde_json::json!({"conversation_id": conv.id, "message_id": id}),
        now,
    )
    .await?;
    crate::crm::sync::outbox::enqueue_messages(conn, &[(src.company_id, conv.id, id)], now).await?;
    Ok(Ingested::Other)
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
        .filter(source::Column::Status.eq(crate::connectors::model::DISABLED))
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
    core.published_after_commit(pending).await;
    if out.iter().any(|i| matches!(i, Ingested::New(_))) {
        core.jobs_notify.notify_waiters();
    }
    Ok(out)
}
