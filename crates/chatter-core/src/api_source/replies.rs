//! Managers' replies in API-source conversations: handed to the outgoing webhook as a delivery,
//! the message marked by the delivery's outcome.

use super::*;

/// Delivers a manager's reply in an API-source conversation: hands it to the outgoing webhook
/// as its `message.created` delivery. The message stays `pending` until the customer's system
/// answers 2xx (then `sent`), or the delivery gives up (then `failed`). Idempotent: a retried
/// send job finds the delivery and sends a failed one again.
///
/// Called by the `send_message` job for sources of kind 6.
pub async fn deliver_reply(core: &Core, m: &message::Model) -> Result<(), JobError> {
    let transient = |e: CoreError| JobError::Transient(e.to_string());
    let src = source::Entity::find_by_id(m.source_id)
        .one(&core.db)
        .await
        .map_err(|e| transient(e.into()))?
        .ok_or_else(|| JobError::Permanent("source gone".into()))?;
    if src.kind != SourceKind::Api {
        return Err(JobError::Permanent("not an API source".into()));
    }
    if settings_of(&src).webhook_url.is_none() {
        return Err(JobError::Permanent(NO_WEBHOOK.into()));
    }
    let now = core.now();
    let txn = core.db.begin().await.map_err(|e| transient(e.into()))?;
    let conv = conversation::Entity::find_by_id(m.conversation_id)
        .one(&txn)
        .await
        .map_err(|e| transient(e.into()))?
        .ok_or_else(|| JobError::Permanent("conversation gone".into()))?;
    let dedup = format!("message.created:{}", m.id);
    let created = create_delivery(
        &txn,
        &src,
        &conv,
        "message.created",
        &dedup,
        None,
        Some(m.id),
        |id| {
            envelope(
                id,
                "message.created",
                now,
                message_data(&src, &conv, None, m),
            )
        },
        now,
    )
    .await
    .map_err(transient)?;
    let mut pending = Pending::default();
    if !created {
        let d = delivery::Entity::find()
            .filter(delivery::Column::SourceId.eq(src.id))
            .filter(delivery::Column::DedupKey.eq(&dedup))
            .one(&txn)
            .await
            .map_err(|e| transient(e.into()))?;
        match d {
            Some(d) if d.status == FAILED => requeue(&txn, d, now).await.map_err(transient)?,
            Some(d) if d.status == DELIVERED => {
                mark_message(&txn, &mut pending, m.id, MessageStatus::Sent, None, now)
                    .await
                    .map_err(transient)?
            }
            _ => {}
        }
    }
    txn.commit().await.map_err(|e| transient(e.into()))?;
    core.published(pending);
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// Records an outgoing message's outcome (only while it is pending) with its live event.
pub(super) async fn mark_message(
    conn: &impl ConnectionTrait,
    pending: &mut Pending,
    message_id: MessageId,
    status: MessageStatus,
    error: Option<String>,
    now: i64,
) -> Result<()> {
    let mut q = message::Entity::update_many()
        .col_expr(message::Column::Status, Expr::value(status))
        .col_expr(message::Column::Error, Expr::value(error))
        .filter(message::Column::Id.eq(message_id))
        .filter(message::Column::Direction.eq(Direction::Out));
    // A reply delivered after it was given up on (a replay) is sent after all.
    q = if status == MessageStatus::Sent {
        q.filter(message::Column::Status.is_in([MessageStatus::Pending, MessageStatus::Failed]))
    } else {
        q.filter(message::Column::Status.eq(MessageStatus::Pending))
    };
    if status == MessageStatus::Sent {
        q = q.col_expr(message::Column::SentAt, Expr::value(now));
    }
    if q.exec(conn).await?.rows_affected == 0 {
        return Ok(());
    }
    let m = message::Entity::find_by_id(message_id)
        .one(conn)
        .await?
        .ok_or(CoreError::NotFound)?;
    events::emit(
        conn,
        pending,
        m.company_id,
        "message",
        json!({"conversation_id": m.conversation_id, "message_id": m.id}),
        now,
    )
    .await?;
    Ok(())
}
