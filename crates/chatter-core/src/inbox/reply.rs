//! Managers' answers: text, media and WhatsApp templates stored as pending with a send job in
//! one transaction, retrying a failed reply, and `insert_outgoing`, the one function through
//! which other capabilities (the CRM's chat webhook) store an answer.

use super::*;
use chatter_domain::UserId;

/// A manager's answer: stored as pending with a send job, in one transaction. In a WhatsApp
/// conversation whose customer last wrote more than 24 hours ago free text is refused before
/// anything is stored (`err.wa_window_closed`): only a template may go (`reply_template`).
pub async fn reply(
    core: &Core,
    actor: &Actor,
    conversation_id: ConversationId,
    text: &str,
    reply_to: Option<MessageId>,
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
pub(super) enum Special {
    None,
    /// A WhatsApp medium by public link (the text is its caption).
    Media(StoredAttachment),
    /// A file a manager attached, kept in the blob store (the text is its caption).
    File(StoredAttachment),
    /// An approved WhatsApp template (name, language, body parameters).
    Template(serde_json::Value),
}

pub(super) async fn store_reply(
    core: &Core,
    actor: &Actor,
    conversation_id: ConversationId,
    text: &str,
    reply_to: Option<MessageId>,
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
    let window = match free_form {
        true => reply_window(&txn, conv.source_id).await?,
        false => None,
    };
    if let Some(window) = window {
        let field = match special {
            Special::Media(_) => "media_url",
            Special::File(_) => "file",
            _ => "text",
        };
        if !window_open(&txn, conv.id, window, now).await? {
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
        Special::Media(a) | Special::File(a) if text.is_empty() => format!("[{}]", a.kind),
        _ => text.to_owned(),
    };
    let mut m = insert_outgoing(
        &txn,
        &mut pending,
        &conv,
        Outgoing {
            text: &preview_text,
            author_id: actor.user_id.map(UserId::uuid),
            author_name: author,
            reply_to: reply_to.map(|r| (r, reply_to_external_id)),
            automatic: false,
        },
        now,
    )
    .await?;
    match special {
        Special::None => {}
        Special::Media(a) | Special::File(a) => {
            let mut am = m.into_active_model();
            am.text = Set(Some(text.to_owned()).filter(|t| !t.is_empty()));
            am.attachments = Set(serde_json::to_string(&[a]).unwrap_or_else(|_| "[]".into()));
            m = am.update(&txn).await?;
            chatter_store::search::index_messages(&txn, &[(m.id, m.company_id, m.text.as_deref())])
                .await?;
        }
        Special::Template(t) => {
            let mut am = m.into_active_model();
            am.extra = Set(Some(t.to_string()));
            m = am.update(&txn).await?;
        }
    }
    crate::crm::sync::outbox::on_reply(&txn, &conv, m.id, actor.user_id.map(UserId::uuid), now)
        .await?;
    txn.commit().await?;
    core.published(pending);
    core.jobs_notify.notify_waiters();
    Ok(m)
}

/// The reply window of a source's kind (`Kind::reply_window`), if it has one.
async fn reply_window(
    conn: &impl ConnectionTrait,
    source_id: SourceId,
) -> Result<Option<std::time::Duration>> {
    Ok(source::Entity::find_by_id(source_id)
        .one(conn)
        .await?
        .and_then(|s| chatter_channels::kind_of(s.kind))
        .and_then(|k| k.reply_window()))
}

/// Whether free-form messages may still go to this conversation: always, unless its kind has
/// a reply window (WhatsApp's 24 hours) and the customer last wrote longer ago than that (their
/// time as the provider reported it). Never wrote: closed. No such conversation: closed.
pub async fn reply_window_open(
    conn: &impl ConnectionTrait,
    conversation_id: ConversationId,
    now: i64,
) -> Result<bool> {
    let Some(conv) = conversation::Entity::find_by_id(conversation_id)
        .one(conn)
        .await?
    else {
        return Ok(false);
    };
    match reply_window(conn, conv.source_id).await? {
        Some(window) => window_open(conn, conversation_id, window, now).await,
        None => Ok(true),
    }
}

/// Whether the customer of `conversation_id` last wrote less than `window` before `now` (a
/// time in the future, clock skew, counts as "just now").
async fn window_open(
    conn: &impl ConnectionTrait,
    conversation_id: ConversationId,
    window: std::time::Duration,
    now: i64,
) -> Result<bool> {
    let last = message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation_id))
        .filter(message::Column::Direction.eq(Direction::In))
        .order_by_desc(message::Column::SentAt)
        .select_only()
        .column(message::Column::SentAt)
        .into_tuple::<Option<i64>>()
        .one(conn)
        .await?
        .flatten();
    let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    Ok(last.is_some_and(|at| now.saturating_sub(at) < window))
}

/// A WhatsApp reply with a medium WhatsApp fetches from a public HTTPS link: an image, video
/// or audio by the link's extension, a document otherwise; `caption` goes with it.
pub async fn reply_media(
    core: &Core,
    actor: &Actor,
    conversation_id: ConversationId,
    link: &str,
    caption: &str,
) -> Result<message::Model> {
    actor.require(Permission::Reply)?;
    let row = get_conversation(core, actor, conversation_id).await?;
    if !chatter_channels::kind_of(row.source_kind).is_some_and(|k| k.sends_media_by_link()) {
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
pub async fn message_templates(
    core: &Core,
    actor: &Actor,
    conversation_id: ConversationId,
) -> Result<Vec<Template>> {
    let row = get_conversation(core, actor, conversation_id).await?;
    if !chatter_channels::kind_of(row.source_kind).is_some_and(|k| k.offers_templates()) {
        return Ok(Vec::new());
    }
    let src = source::Entity::find_by_id(row.conversation.source_id)
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)?;
    let connector = crate::connectors::connector_for(core, &src)?;
    let settings = crate::connectors::model::settings_of(&src);
    let Some(all) = connector.templates(&settings).await else {
        return Ok(Vec::new());
    };
    let all = all.map_err(|e| {
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
    conversation_id: ConversationId,
    name: &str,
    language: &str,
    params: &[String],
) -> Result<message::Model> {
    actor.require(Permission::Reply)?;
    let templates = message_templates(core, actor, conversation_id).await?;
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
    pub reply_to: Option<(MessageId, Option<String>)>,
    /// Sent by an auto-reply rule: no answer for the dashboard's figures (neither the first
    /// response nor the end of the wait) and the conversation stays unread.
    pub automatic: bool,
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
        id: Set(MessageId::new()),
        company_id: Set(conv.company_id),
        conversation_id: Set(conv.id),
        source_id: Set(conv.source_id),
        direction: Set(Direction::Out),
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
        status: Set(MessageStatus::Pending),
        error: Set(None),
        sent_parts: Set("[]".into()),
        created_at: Set(now),
        sent_at: Set(None),
        edited_at: Set(None),
    }
    .insert(txn)
    .await?;
    if o.automatic {
        // The column is read by the figures' SQL only (m0030), not through the entity.
        txn.execute(chatter_store::stmt(
            txn.get_database_backend(),
            "UPDATE messages SET automatic = 1 WHERE id = $1",
            vec![m.id.into()],
        ))
        .await?;
    } else {
        chatter_store::figures::after_outbound(txn, conv.id, now).await?;
    }
    chatter_store::search::index_messages(txn, &[(m.id, m.company_id, m.text.as_deref())]).await?;
    let mut cam = conv.clone().into_active_model();
    cam.last_text = Set(o.text.chars().take(140).collect());
    cam.last_message_at = Set(now);
    if !o.automatic {
        cam.unread = Set(0);
    }
    if conv.assignee_id.is_none() {
        cam.assignee_id = Set(o.author_id);
    }
    cam.updated_at = Set(now);
    cam.update(txn).await?;
    SendMessage { message_id: m.id }
        .enqueue(txn, JobOptions::at(now).company(conv.company_id.0))
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
pub async fn retry_message(core: &Core, actor: &Actor, message_id: MessageId) -> Result<()> {
    actor.require(Permission::Reply)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let m = message::Entity::find_by_id(message_id)
        .filter(message::Column::CompanyId.eq(actor.company_id))
        .filter(message::Column::Status.eq(MessageStatus::Failed))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let conv_id = m.conversation_id;
    let mut am = m.into_active_model();
    am.status = Set(MessageStatus::Pending);
    am.error = Set(None);
    am.update(&txn).await?;
    SendMessage { message_id }
        .enqueue(&txn, JobOptions::at(now).company(actor.company_id))
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
