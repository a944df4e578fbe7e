//! Messages into amoCRM: mirrored into its chat (Chats API) when configured, else as notes on
//! the deal; delivery statuses and the first answer back; and our Chats API webhook, through
//! which managers answer from amoCRM.

use super::*;
use crate::attachments::StoredAttachment;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};
// The one door into the inbox: storing a manager's answer written in amoCRM.
use crate::inbox::{insert_outgoing, Outgoing};

pub(super) async fn record_message(
    conn: &impl ConnectionTrait,
    company_id: CompanyId,
    message_id: MessageId,
    kind: &str,
    remote: &str,
    now: i64,
) -> Result<()> {
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO crm_messages (message_id, company_id, kind, remote_id, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (message_id) DO NOTHING",
        vec![
            message_id.into(),
            company_id.into(),
            kind.into(),
            remote.into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub(super) async fn already_mirrored(
    conn: &impl ConnectionTrait,
    message_id: Uuid,
) -> Result<bool> {
    Ok(conn
        .query_one(stmt(
            conn.get_database_backend(),
            "SELECT 1 AS x FROM crm_messages WHERE message_id = $1",
            vec![message_id.into()],
        ))
        .await?
        .is_some())
}

/// How long a customer's file may take to arrive from the messenger before the message goes to
/// amoCRM with the file named only.
const FILE_WAIT_MS: i64 = 15 * 60_000;
/// How soon a message whose file is still being fetched is looked at again.
pub(super) const FILE_RETRY_MS: i64 = 2_000;

/// An attachment's name in a text: «[Фото]», «[Файл договор.pdf]» ….
fn label_of(a: &StoredAttachment) -> String {
    match a.kind.as_str() {
        "photo" | "image" => "[Фото]".to_string(),
        "voice" => "[Голосовое сообщение]".to_string(),
        "video" => "[Видео]".to_string(),
        _ => format!("[Файл {}]", a.file_name.clone().unwrap_or_default()),
    }
}

/// The contact or place a message carries, as text.
fn extra_of(m: &message::Model) -> Option<String> {
    let e = serde_json::from_str::<chatter_channels::Extra>(m.extra.as_deref()?).ok()?;
    Some(match e {
        chatter_channels::Extra::Contact { phone, name } => format!("[Контакт {name} {phone}]"),
        chatter_channels::Extra::Location {
            latitude,
            longitude,
        } => format!("[Геопозиция {latitude:.5}, {longitude:.5}]"),
    })
}

/// Whether a customer's message still waits for its files from the messenger (the `FetchFile`
/// job), and not yet for so long that it goes without them.
pub(super) async fn waiting_for_files(core: &Core, item: &Item) -> Result<bool> {
    let Some(id) = item.message_id else {
        return Ok(false);
    };
    let Some(m) = message::Entity::find_by_id(id).one(&core.db).await? else {
        return Ok(false);
    };
    Ok(m.direction.is_in()
        && core.now().saturating_sub(m.created_at) < FILE_WAIT_MS
        && crate::attachments::attachments_of(&m)
            .iter()
            .any(|a| a.blob.is_none()))
}

/// Looks at an item again in `ms`, without counting an attempt (waiting is not failing).
pub(super) async fn postpone(core: &Core, item: &Item, ms: i64) -> Result<()> {
    core.db
        .execute(stmt(
            core.db.get_database_backend(),
            "UPDATE crm_outbox SET next_at = $1 WHERE id = $2",
            vec![(core.now() + ms).into(), item.id.into()],
        ))
        .await?;
    Ok(())
}

/// The Chats API type a kept file goes as: pictures browsers show as `picture`, voice
/// messages, videos and audio as theirs, anything else (a HEIC, a PDF) as `file`.
fn media_kind(a: &StoredAttachment) -> ChatMediaKind {
    match a.kind.as_str() {
        "photo" | "image" | "sticker" if a.raster.is_some() => ChatMediaKind::Picture,
        "voice" => ChatMediaKind::Voice,
        "video" | "video_note" => ChatMediaKind::Video,
        "audio" => ChatMediaKind::Audio,
        _ => ChatMediaKind::File,
    }
}

/// A kept file's name for amoCRM: its own, else one made from its kind and type.
fn media_name(a: &StoredAttachment, index: usize) -> String {
    if let Some(n) = a.file_name.as_deref().filter(|n| !n.trim().is_empty()) {
        return n.to_owned();
    }
    let ext = match (a.raster.as_deref(), a.kind.as_str()) {
        (Some("image/png"), _) => "png",
        (Some("image/gif"), _) => "gif",
        (Some("image/webp"), _) => "webp",
        (Some(_), _) => "jpg",
        (None, "voice") => "ogg",
        (None, "video" | "video_note") => "mp4",
        _ => "bin",
    };
    let stem = match a.kind.as_str() {
        "photo" | "image" | "sticker" => "photo",
        "voice" => "voice",
        "video" | "video_note" => "video",
        "audio" => "audio",
        _ => "file",
    };
    format!("{stem}-{}.{ext}", index + 1)
}

/// A message for the CRM: its caption (files not kept are named in it, as are a contact or a
/// place) and its kept files, each with a signed link amoCRM downloads it from.
pub(super) fn media_of(core: &Core, m: &message::Model) -> (String, Vec<ChatMedia>) {
    let mut parts: Vec<String> = Vec::new();
    let mut media = Vec::new();
    for (i, a) in crate::attachments::attachments_of(m).iter().enumerate() {
        if a.blob.is_none() {
            parts.push(label_of(a));
            continue;
        }
        media.push(ChatMedia {
            kind: media_kind(a),
            url: crate::media_links::link(core, m.id, i).url,
            file_name: media_name(a, i),
            file_size: a.size.unwrap_or(0),
        });
    }
    parts.extend(extra_of(m));
    if let Some(t) = &m.text {
        parts.push(t.clone());
    }
    (parts.join(" "), media)
}

/// A message's text for a deal note: kept files named and linked (signed links, with the day
/// they stop working), the others named.
pub(super) fn note_body(core: &Core, m: &message::Model) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut until = None;
    for (i, a) in crate::attachments::attachments_of(m).iter().enumerate() {
        if a.blob.is_none() {
            parts.push(label_of(a));
            continue;
        }
        let link = crate::media_links::link(core, m.id, i);
        until = Some(link.expires_at_ms);
        parts.push(format!("{} {}", label_of(a), link.url));
    }
    if let Some(at) = until.and_then(chrono::DateTime::from_timestamp_millis) {
        parts.push(format!("(ссылки действуют до {})", at.format("%d.%m.%Y")));
    }
    parts.extend(extra_of(m));
    if let Some(t) = &m.text {
        parts.push(t.clone());
    }
    parts.join(" ")
}

pub(super) async fn note_text(core: &Core, item: &Item) -> Result<Option<String>> {
    let Some(id) = item.message_id else {
        return Ok(None);
    };
    if already_mirrored(&core.db, id).await? {
        return Ok(None);
    }
    let Some(m) = message::Entity::find_by_id(id).one(&core.db).await? else {
        return Ok(None);
    };
    Ok(Some(if m.direction.is_in() {
        format!("💬 {}: {}", m.sender_name, note_body(core, &m))
    } else {
        format!("↩ {} (Chatter): {}", m.sender_name, note_body(core, &m))
    }))
}

/// An internal note's text, as queued (its author named).
pub(super) fn note_of(item: &Item) -> Option<String> {
    item.payload
        .get("text")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

pub(super) fn customer_party(ct: Option<&contact::Model>, kind: Option<SourceKind>) -> ChatParty {
    ChatParty {
        id: ct.map_or_else(|| "unknown".into(), |c| format!("c-{}", c.id)),
        name: ct.map(|c| c.name.clone()).unwrap_or_default(),
        phone: ct.and_then(|c| c.phone.clone()),
        profile_link: ct
            .and_then(|c| c.username.as_deref())
            .zip(kind.and_then(chatter_channels::kind_of))
            .and_then(|(u, k)| k.profile_url(u)),
        ..ChatParty::default()
    }
}

pub(super) async fn mirror_chat(
    core: &Core,
    s: &Session,
    item: &Item,
    link: &Synced,
) -> std::result::Result<(), CrmError> {
    let t = |e: sea_orm::DbErr| CrmError::Transient(e.to_string());
    let c = |e: CoreError| CrmError::Transient(e.to_string());
    let Some(id) = item.message_id else {
        return Ok(());
    };
    if already_mirrored(&core.db, id).await.map_err(c)? {
        return Ok(());
    }
    let Some(m) = message::Entity::find_by_id(id)
        .one(&core.db)
        .await
        .map_err(t)?
    else {
        return Ok(());
    };
    let Some(conv) = conversation::Entity::find_by_id(m.conversation_id)
        .one(&core.db)
        .await
        .map_err(t)?
    else {
        return Ok(());
    };
    let ct = contact::Entity::find_by_id(conv.contact_id)
        .one(&core.db)
        .await
        .map_err(t)?;
    let kind = source::Entity::find_by_id(conv.source_id)
        .one(&core.db)
        .await
        .map_err(t)?
        .map(|s| s.kind);
    let (client, scope) = s
        .chats
        .as_ref()
        .ok_or_else(|| CrmError::permanent("no chat"))?;
    let customer = customer_party(ct.as_ref(), kind);
    let source_ref = conv.source_id.to_string();
    // The chat exists and is on the contact's card by now (step 2), so messages show in the
    // deal and not in Unsorted (§5 "Bypass Unsorted").
    let chat_ref = match &link.chat_ref {
        Some(c) => Some(c.clone()),
        None => Some(open_chat(core, client, scope, conv.id).await?),
    };
    let direction = if m.direction.is_in() {
        ChatDirection::FromCustomer
    } else {
        ChatDirection::ToCustomer {
            customer: customer.clone(),
        }
    };
    let sender = if m.direction.is_in() {
        customer
    } else {
        ChatParty {
            id: m
                .author_id
                .map_or_else(|| "chatter".into(), |u| format!("u-{u}")),
            name: m.sender_name.clone(),
            ..ChatParty::default()
        }
    };
    // One chat message per file (amoCRM's take one each), the first with the caption; the
    // others keyed `<id>.<n>`, so a retry after a partial send repeats nothing (amojo dedupes
    // on `msgid`).
    let (text, media) = media_of(core, &m);
    let mut first: Option<ChatSent> = None;
    let count = media.len().max(1);
    let mut media = media.into_iter();
    for n in 0..count {
        let sent = s
            .api
            .send_chat_message(&ChatMessage {
                conversation_id: conv.id.to_string(),
                conversation_ref: chat_ref.clone(),
                msgid: match n {
                    0 => m.id.to_string(),
                    n => format!("{}.{n}", m.id),
                },
                sender: sender.clone(),
                direction: direction.clone(),
                text: if n == 0 { text.clone() } else { String::new() },
                sent_at_ms: m.sent_at.unwrap_or(m.created_at),
                source_external_id: Some(source_ref.clone()),
                silent: false,
                media: media.next(),
            })
            .await?;
        first.get_or_insert(sent);
    }
    let Some(sent) = first else {
        return Ok(());
    };
    record_message(
        &core.db,
        conv.company_id,
        m.id,
        "chat",
        &sent.message_ref,
        core.now(),
    )
    .await
    .map_err(c)?;
    Ok(())
}

/// Creates (or finds: amojo is idempotent per conversation id) the chat of a conversation.
pub(super) async fn open_chat(
    core: &Core,
    client: &ChatsClient,
    scope: &str,
    conv_id: ConversationId,
) -> std::result::Result<String, CrmError> {
    let t = |e: sea_orm::DbErr| CrmError::Transient(e.to_string());
    let conv = conversation::Entity::find_by_id(conv_id)
        .one(&core.db)
        .await
        .map_err(t)?
        .ok_or_else(|| CrmError::permanent("conversation gone"))?;
    let ct = contact::Entity::find_by_id(conv.contact_id)
        .one(&core.db)
        .await
        .map_err(t)?;
    let kind = source::Entity::find_by_id(conv.source_id)
        .one(&core.db)
        .await
        .map_err(t)?
        .map(|s| s.kind);
    let created = client
        .create_chat(
            scope,
            &conv.id.to_string(),
            Some(&conv.source_id.to_string()),
            &customer_party(ct.as_ref(), kind),
        )
        .await?;
    set_chat(&core.db, conv.id, &created.conversation_ref, false)
        .await
        .map_err(|e| CrmError::Transient(e.to_string()))?;
    Ok(created.conversation_ref)
}

pub(super) async fn set_chat(
    conn: &impl ConnectionTrait,
    conv: ConversationId,
    chat: &str,
    linked: bool,
) -> Result<()> {
    conn.execute(stmt(
        conn.get_database_backend(),
        "UPDATE crm_conversations SET chat_ref = $1, chat_linked = $2 WHERE conversation_id = $3",
        vec![chat.into(), linked.into(), conv.into()],
    ))
    .await?;
    Ok(())
}

pub(super) async fn status_back(
    core: &Core,
    s: &Session,
    item: &Item,
) -> std::result::Result<(), CrmError> {
    let Some(msgid) = item.payload["msgid"].as_str() else {
        return Ok(());
    };
    if s.chats.is_none() {
        return Ok(());
    }
    if item.payload["error"].is_null() && item.payload["read"].is_null() {
        // "Sent" is queued after the send job's commit, so a failure the provider reported
        // at once may be queued before it: a message that failed since is not "delivered".
        if let Some(m) = item.message_id {
            let failed = message::Entity::find_by_id(m)
                .one(&core.db)
                .await
                .map_err(|e| CrmError::Transient(e.to_string()))?
                .is_some_and(|m| m.status == chatter_domain::MessageStatus::Failed);
            if failed {
                return Ok(());
            }
        }
    }
    let status = match item.payload["error"].as_str() {
        None if item.payload["read"].as_bool() == Some(true) => DeliveryStatus::Read,
        None => DeliveryStatus::Delivered,
        Some(text) => DeliveryStatus::Failed {
            reason: if item.payload["blocked"].as_bool() == Some(true) {
                DeliveryFailure::ConversationDeleted
            } else {
                DeliveryFailure::Other
            },
            text: text.to_string(),
        },
    };
    s.api.update_delivery_status(msgid, &status).await
}

pub(super) async fn assign_first(
    core: &Core,
    s: &Session,
    item: &Item,
    link: &Synced,
) -> std::result::Result<(), CrmError> {
    let Some(user) = item.payload["crm_user_id"].as_i64() else {
        return Ok(());
    };
    if link.responsible_user_id.is_some() {
        return Ok(());
    }
    s.api.set_deal_responsible(link.deal_id, user).await?;
    core.db
        .execute(stmt(
            core.db.get_database_backend(),
            "UPDATE crm_conversations SET responsible_user_id = $1 WHERE conversation_id = $2",
            vec![user.into(), item.conversation_id.into()],
        ))
        .await
        .map_err(|e| CrmError::Transient(e.to_string()))?;
    Ok(())
}

/// What our Chats API webhook did with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum HookOutcome {
    /// Stored and queued for delivery (or already stored).
    Accepted,
    /// Nothing to do (typing, reactions, a chat we do not know).
    Ignored,
}

/// A manager answered inside amoCRM (§4.6): verified, stored as our outgoing message in the
/// conversation, and sent to the customer through the source. The CRM's message id dedupes.
pub async fn receive_chat_hook(
    core: &Core,
    scope_id: &str,
    body: &[u8],
    signature: &str,
) -> Result<HookOutcome> {
    use chatter_crm::amocrm::chats::{parse_webhook, ChatsHook};
    use chatter_crm::amocrm::HookError;
    let client = chats_client(core).ok_or(CoreError::NotConfigured("amocrm_chats"))?;
    client
        .verify_webhook(body, signature.trim())
        .map_err(|_| CoreError::Unauthenticated)?;
    let mut reply: CrmReply = match parse_webhook(body) {
        Ok(ChatsHook::Reply(r)) => *r,
        Ok(ChatsHook::Ignored { .. }) => return Ok(HookOutcome::Ignored),
        Err(HookError::Malformed(m)) => {
            tracing::info!(error = m, "malformed Chats API hook");
            return Err(CoreError::field("body", "err.malformed"));
        }
        Err(HookError::BadSignature) => return Err(CoreError::Unauthenticated),
    };
    // A NUL from amoCRM would be refused by PostgreSQL (and kept by SQLite).
    for t in [
        &mut reply.conversation_ref,
        &mut reply.msgid,
        &mut reply.text,
        &mut reply.manager_name,
    ] {
        chatter_domain::text::clean_in_place(t);
    }
    for t in [&mut reply.conversation_id, &mut reply.media]
        .into_iter()
        .flatten()
    {
        chatter_domain::text::clean_in_place(t);
    }
    let db = &core.db;
    // Our conversation: by our id, else by amoCRM's chat id.
    let mut conv = match reply
        .conversation_id
        .as_deref()
        .and_then(|s| s.parse::<Uuid>().ok())
    {
        Some(id) => conversation::Entity::find_by_id(id).one(db).await?,
        None => None,
    };
    if conv.is_none() {
        let row = db
            .query_one(stmt(
                db.get_database_backend(),
                "SELECT conversation_id FROM crm_conversations WHERE chat_ref = $1",
                vec![reply.conversation_ref.clone().into()],
            ))
            .await?;
        if let Some(r) = row {
            let id: Uuid = r.try_get("", "conversation_id")?;
            conv = conversation::Entity::find_by_id(id).one(db).await?;
        }
    }
    let Some(conv) = conv else {
        tracing::info!(
            chat = reply.conversation_ref,
            "Chats API reply for a chat we do not know"
        );
        return Ok(HookOutcome::Ignored);
    };
    // The hook must come through this company's channel connection.
    let st = crm_settings::chats_state(db, conv.company_id).await?;
    if st.scope_id.as_deref() != Some(scope_id) {
        return Err(CoreError::Unauthenticated);
    }
    // A file a manager sent (picture, file, voice …) goes to the customer as a file: stored
    // with its amoCRM link, fetched into the blob store by the send job (never inside this
    // request: amoCRM waits 5 s at most), then sent as the messenger takes it.
    let file = reply
        .media
        .as_deref()
        .map(str::trim)
        .filter(|u| {
            url::Url::parse(u)
                .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
        })
        .map(|url| StoredAttachment {
            kind: match reply.kind.as_str() {
                "picture" => "image",
                "voice" => "voice",
                "video" => "video",
                "audio" => "audio",
                _ => "document",
            }
            .to_owned(),
            file_ref: format!("{}{url}", crate::attachments::FETCH_PREFIX),
            file_name: reply.file_name.clone().filter(|n| !n.trim().is_empty()),
            ..StoredAttachment::default()
        });
    let caption = reply.text.trim().to_owned();
    let text = match (&file, &reply.media) {
        (Some(a), _) if caption.is_empty() => format!("[{}]", a.kind),
        (Some(_), _) => caption.clone(),
        // A link that is no URL we can fetch is passed on as text.
        (None, Some(url)) if caption.is_empty() => url.clone(),
        (None, Some(url)) => format!("{caption}\n{url}"),
        (None, None) => caption.clone(),
    };
    if text.trim().is_empty() {
        return Ok(HookOutcome::Ignored);
    }
    let now = core.now();
    let txn = db.begin().await?;
    let dup = txn
        .query_one(stmt(
            txn.get_database_backend(),
            "SELECT 1 AS x FROM crm_messages WHERE company_id = $1 AND kind = 'reply' AND remote_id = $2",
            vec![conv.company_id.into(), reply.msgid.clone().into()],
        ))
        .await?
        .is_some();
    if dup {
        return Ok(HookOutcome::Accepted);
    }
    let mut pending = Pending::default();
    let m = insert_outgoing(
        &txn,
        &mut pending,
        &conv,
        Outgoing {
            text: &text,
            author_id: None,
            author_name: format!("{} (amoCRM)", reply.manager_name),
            reply_to: None,
            automatic: false,
        },
        now,
    )
    .await?;
    let m = match file {
        // The send job (queued in this transaction, run after the commit) fetches the file.
        Some(a) => {
            let mut am = m.into_active_model();
            am.text = Set(Some(caption).filter(|t| !t.is_empty()));
            am.attachments = Set(serde_json::to_string(&[a]).unwrap_or_else(|_| "[]".into()));
            am.update(&txn).await?
        }
        None => m,
    };
    record_message(&txn, conv.company_id, m.id, "reply", &reply.msgid, now).await?;
    assign_first_answer(&txn, &conv, Answerer::CrmChatUser(&reply.manager_ref), now).await?;
    txn.commit().await?;
    core.published(pending);
    core.jobs_notify.notify_waiters();
    Ok(HookOutcome::Accepted)
}
