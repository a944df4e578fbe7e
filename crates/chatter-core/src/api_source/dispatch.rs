//! The dispatcher: turns stored messages and status changes into signed webhook deliveries, in
//! order, from a cursor that only moves past committed rows.

use super::*;

pub(super) fn envelope(id: Uuid, kind: &str, now: i64, data: Value) -> String {
    json!({"id": id, "type": kind, "created_at": now, "data": data}).to_string()
}

pub(super) fn message_data(
    src: &source::Model,
    conv: &conversation::Model,
    contact: Option<&contact::Model>,
    m: &message::Model,
) -> Value {
    json!({
        "source_id": src.id,
        "conversation_id": conv.id,
        "chat_id": conv.external_chat_id,
        "contact": contact.map(|c| json!({"id": c.external_id, "name": c.name})),
        "message": {
            "id": m.id,
            "direction": m.direction,
            "text": m.text,
            "status": m.status,
            "error": m.error,
            "external_id": m.external_id,
            "sender_name": m.sender_name,
            "author_id": m.author_id,
            "reply_to_id": m.reply_to_id,
            "created_at": m.created_at,
            "sent_at": m.sent_at,
            "attachments": attachments_data(m),
        },
    })
}

/// A message's files as the integrator sees them: what each is, and the path (on this
/// installation's address) it downloads it from with its API key, once the file is kept.
fn attachments_data(m: &message::Model) -> Value {
    let atts = crate::attachments::attachments_of(m);
    Value::Array(
        atts.iter()
            .enumerate()
            .map(|(i, a)| {
                json!({
                    "kind": a.kind,
                    "file_name": a.file_name,
                    "mime_type": a.mime_type,
                    "size": a.size,
                    "download_path": a.blob.as_ref()
                        .map(|_| format!("/api/v1/messages/{}/attachments/{i}", m.id)),
                })
            })
            .collect(),
    )
}

/// Inserts a delivery with its job unless one with the same key exists; `true` if inserted.
#[allow(clippy::too_many_arguments)]
pub(super) async fn create_delivery(
    conn: &impl ConnectionTrait,
    src: &source::Model,
    conv: &conversation::Model,
    kind: &str,
    dedup: &str,
    event_id: Option<i64>,
    message_id: Option<MessageId>,
    body: impl FnOnce(Uuid) -> String,
    now: i64,
) -> Result<bool> {
    let id = Uuid::now_v7();
    let url = settings_of(src).webhook_url.unwrap_or_default();
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            "INSERT INTO api_webhook_deliveries (id, company_id, source_id, dedup_key, event_type, event_id, \
             conversation_id, message_id, payload, url, status, attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', 0, $11, $11) \
             ON CONFLICT (source_id, dedup_key) DO NOTHING RETURNING id",
            vec![
                id.into(),
                src.company_id.into(),
                src.id.into(),
                dedup.into(),
                kind.into(),
                event_id.into(),
                conv.id.into(),
                message_id.into(),
                body(id).into(),
                url.into(),
                now.into(),
            ],
        ))
        .await?;
    if row.is_none() {
        return Ok(false);
    }
    let d = delivery::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or(CoreError::Internal("delivery vanished".into()))?;
    let job_id = queue_delivery(conn, &d, now).await?;
    delivery::Entity::update_many()
        .col_expr(delivery::Column::JobId, Expr::value(job_id))
        .filter(delivery::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(true)
}

/// Event ids up to which the log is final: no transaction still holding a smaller id can
/// commit later. SQLite has one writer, so every visible id is final. On PostgreSQL ids are
/// taken before commit, so a watermark is taken in steps: a maximum id seen at one run, the
/// snapshot's `xmax` at the next (by then every holder of a smaller id has a transaction id
/// below it), and the maximum becomes final once the oldest running transaction is past that
/// `xmax`. Steps are stored in the cursor row, so a restart only delays them.
pub(super) async fn horizon(core: &Core) -> Result<i64> {
    let db = &core.db;
    let backend = db.get_database_backend();
    if backend != DbBackend::Postgres {
        let row = db
            .query_one(stmt(
                backend,
                "SELECT COALESCE(MAX(id), 0) AS m FROM events",
                vec![],
            ))
            .await?
            .ok_or(CoreError::Internal("no max".into()))?;
        return Ok(row.try_get::<i64>("", "m")?);
    }
    let snap = db
        .query_one(stmt(
            backend,
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin, \
             pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax, \
             COALESCE((SELECT MAX(id) FROM events), 0) AS m",
            vec![],
        ))
        .await?
        .ok_or(CoreError::Internal("no snapshot".into()))?;
    let (xmin, xmax, max_id): (i64, i64, i64) = (
        snap.try_get("", "xmin")?,
        snap.try_get("", "xmax")?,
        snap.try_get("", "m")?,
    );
    let c = db
        .query_one(stmt(
            backend,
            "SELECT last_event_id, candidate_max, pending_max, pending_xmax FROM api_webhook_cursor WHERE name = $1",
            vec![CURSOR.into()],
        ))
        .await?
        .ok_or(CoreError::Internal("no cursor".into()))?;
    let last: i64 = c.try_get("", "last_event_id")?;
    let mut candidate: Option<i64> = c.try_get("", "candidate_max")?;
    let mut pending: Option<(i64, i64)> = match (
        c.try_get::<Option<i64>>("", "pending_max")?,
        c.try_get::<Option<i64>>("", "pending_xmax")?,
    ) {
        (Some(m), Some(x)) => Some((m, x)),
        _ => None,
    };
    let mut final_up_to = last;
    if let Some((m, x)) = pending {
        if xmin >= x {
            final_up_to = final_up_to.max(m);
            pending = None;
        }
    }
    if pending.is_none() {
        if let Some(m) = candidate.take() {
            pending = Some((m, xmax));
        }
    }
    if candidate.is_none() {
        candidate = Some(max_id);
    }
    db.execute(stmt(
        backend,
        "UPDATE api_webhook_cursor SET candidate_max = $2, pending_max = $3, pending_xmax = $4 WHERE name = $1",
        vec![
            CURSOR.into(),
            candidate.into(),
            pending.map(|p| p.0).into(),
            pending.map(|p| p.1).into(),
        ],
    ))
    .await?;
    Ok(final_up_to)
}

/// API sources with a webhook URL, by id.
pub(super) async fn endpoints(conn: &impl ConnectionTrait) -> Result<Vec<source::Model>> {
    Ok(source::Entity::find()
        .filter(source::Column::Kind.eq(SourceKind::Api.id()))
        .filter(source::Column::Status.ne(crate::connectors::model::DISABLED))
        .all(conn)
        .await?
        .into_iter()
        .filter(|s| settings_of(s).webhook_url.is_some())
        .collect())
}

/// One dispatcher run: turns the final part of the event log after the cursor into
/// deliveries, moving the cursor in the same transactions. Returns whether any endpoint exists.
pub(super) async fn dispatch(core: &Core) -> Result<bool> {
    if endpoints(&core.db).await?.is_empty() {
        return Ok(false);
    }
    let up_to = horizon(core).await?;
    loop {
        let txn = core.db.begin().await?;
        let last: i64 = txn
            .query_one(stmt(
                txn.get_database_backend(),
                "SELECT last_event_id FROM api_webhook_cursor WHERE name = $1",
                vec![CURSOR.into()],
            ))
            .await?
            .ok_or(CoreError::Internal("no cursor".into()))?
            .try_get("", "last_event_id")?;
        if last >= up_to {
            return Ok(true);
        }
        let evs = event::Entity::find()
            .filter(event::Column::Id.gt(last))
            .filter(event::Column::Id.lte(up_to))
            .order_by_asc(event::Column::Id)
            .limit(500)
            .all(&txn)
            .await?;
        let new_last = evs.last().map_or(up_to, |e| e.id);
        let eps = endpoints(&txn).await?;
        for ev in &evs {
            if !eps.iter().any(|s| s.company_id == ev.company_id) {
                continue;
            }
            derive(&txn, &eps, ev).await?;
        }
        let moved = txn
            .execute(stmt(
                txn.get_database_backend(),
                "UPDATE api_webhook_cursor SET last_event_id = $2, updated_at = $3 WHERE name = $1 AND last_event_id = $4",
                vec![CURSOR.into(), new_last.into(), core.now().into(), last.into()],
            ))
            .await?
            .rows_affected();
        if moved != 1 {
            return Err(CoreError::Internal(
                "the webhook cursor moved under us".into(),
            ));
        }
        txn.commit().await?;
        core.jobs_notify.notify_waiters();
    }
}

pub(super) async fn mark_of(
    conn: &impl ConnectionTrait,
    subject: impl Into<Uuid>,
) -> Result<Option<String>> {
    Ok(api_webhook_mark::Entity::find_by_id(subject.into())
        .one(conn)
        .await?
        .map(|m| m.state))
}

pub(super) async fn set_mark(
    conn: &impl ConnectionTrait,
    subject: impl Into<Uuid>,
    state: &str,
    now: i64,
) -> Result<()> {
    let subject: Uuid = subject.into();
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO api_webhook_marks (subject_id, state, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (subject_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        vec![subject.into(), state.into(), now.into()],
    ))
    .await?;
    Ok(())
}

/// A `message.status_changed` delivery when the message's status is one integrators are told
/// about (`sent`, `failed`). Deduplicated per message and status, so each outcome is reported
/// exactly once however many events mention it.
pub(super) async fn status_changed(
    conn: &impl ConnectionTrait,
    src: &source::Model,
    conv: &conversation::Model,
    m: &message::Model,
    event_id: i64,
    now: i64,
) -> Result<()> {
    if !matches!(m.status, MessageStatus::Sent | MessageStatus::Failed) {
        return Ok(());
    }
    let dedup = format!("message.status_changed:{}:{}", m.id, m.status);
    let data = json!({
        "source_id": src.id,
        "conversation_id": conv.id,
        "chat_id": conv.external_chat_id,
        "message": {"id": m.id, "direction": m.direction, "status": m.status,
                    "error": m.error, "external_id": m.external_id, "sent_at": m.sent_at},
    });
    create_delivery(
        conn,
        src,
        conv,
        "message.status_changed",
        &dedup,
        Some(event_id),
        Some(m.id),
        |id| envelope(id, "message.status_changed", now, data),
        now,
    )
    .await?;
    Ok(())
}

/// What one event means for the API source of its conversation, as deliveries.
pub(super) async fn derive(
    conn: &impl ConnectionTrait,
    eps: &[source::Model],
    ev: &event::Model,
) -> Result<()> {
    let payload: Value = chatter_store::stored_json::read("events.payload", ev.id, &ev.payload);
    let id_of = |k: &str| {
        payload
            .get(k)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Uuid>().ok())
    };
    let Some(conv_id) = id_of("conversation_id") else {
        return Ok(());
    };
    let Some(conv) = conversation::Entity::find_by_id(conv_id).one(conn).await? else {
        return Ok(());
    };
    let Some(src) = eps.iter().find(|s| s.id == conv.source_id) else {
        return Ok(());
    };
    if ev.created_at < settings_of(src).webhook_since {
        return Ok(());
    }
    let now = ev.created_at;
    if let Some(mid) = id_of("message_id") {
        if let Some(m) = message::Entity::find_by_id(mid).one(conn).await? {
            match mark_of(conn, m.id).await? {
                None => {
                    let contact = contact::Entity::find_by_id(conv.contact_id)
                        .one(conn)
                        .await?;
                    let dedup = format!("message.created:{}", m.id);
                    create_delivery(
                        conn,
                        src,
                        &conv,
                        "message.created",
                        &dedup,
                        Some(ev.id),
                        Some(m.id),
                        |id| {
                            envelope(
                                id,
                                "message.created",
                                now,
                                message_data(src, &conv, contact.as_ref(), &m),
                            )
                        },
                        now,
                    )
                    .await?;
                    // A reply that was already sent (or failed) when the dispatcher first saw
                    // it still gets its status event: every reply reports its outcome once.
                    if m.direction == Direction::Out {
                        status_changed(conn, src, &conv, &m, ev.id, now).await?;
                    }
                    set_mark(conn, m.id, m.status.as_str(), now).await?;
                }
                Some(seen) if seen != m.status.as_str() => {
                    status_changed(conn, src, &conv, &m, ev.id, now).await?;
                    set_mark(conn, m.id, m.status.as_str(), now).await?;
                }
                Some(_) => {}
            }
        }
    }
    // The conversation's status and assignee, against what was last reported.
    let seen = mark_of(conn, conv.id)
        .await?
        .unwrap_or_else(|| "open|".into());
    let (seen_status, seen_assignee) = seen.split_once('|').unwrap_or(("open", ""));
    let assignee = conv.assignee_id.map(|a| a.to_string()).unwrap_or_default();
    if seen_status == conv.status.as_str() && seen_assignee == assignee {
        return Ok(());
    }
    if seen_status != conv.status.as_str() {
        let dedup = format!("conversation.status_changed:{}:{}", conv.id, ev.id);
        let data = json!({"source_id": src.id, "conversation_id": conv.id,
                          "chat_id": conv.external_chat_id, "status": conv.status});
        create_delivery(
            conn,
            src,
            &conv,
            "conversation.status_changed",
            &dedup,
            Some(ev.id),
            None,
            |id| envelope(id, "conversation.status_changed", now, data),
            now,
        )
        .await?;
    }
    if seen_assignee != assignee {
        let who = match conv.assignee_id {
            Some(u) => user::Entity::find_by_id(u)
                .one(conn)
                .await?
                .map(|u| json!({"id": u.id, "name": u.name})),
            None => None,
        };
        let dedup = format!("conversation.assigned:{}:{}", conv.id, ev.id);
        let data = json!({"source_id": src.id, "conversation_id": conv.id,
                          "chat_id": conv.external_chat_id, "assignee": who});
        create_delivery(
            conn,
            src,
            &conv,
            "conversation.assigned",
            &dedup,
            Some(ev.id),
            None,
            |id| envelope(id, "conversation.assigned", now, data),
            now,
        )
        .await?;
    }
    set_mark(conn, conv.id, &format!("{}|{assignee}", conv.status), now).await
}
