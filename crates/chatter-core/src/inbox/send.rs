//! Sending what managers write and fetching what customers send: the `SendMessage` job (one
//! reply, in order within its conversation, in parts where the messenger needs them, each part
//! recorded as it goes so a retry sends nothing twice) and the `FetchFile` job (a message's
//! attachments into the blob store). What differs by kind comes through `crate::connectors`.

use crate::attachments::{
    attachments_of, StoredAttachment, FETCHED_PREFIX, FETCH_PREFIX, LINKED_PREFIX,
};
use crate::connectors;
use crate::connectors::model::{self as sources, CONNECTED, DISABLED, TOKEN_REVOKED};
use crate::events::{self, Pending};
use crate::jobs::{BackgroundJob, JobError, JobMeta};
use crate::{blobs, Core};
use async_trait::async_trait;
use chatter_channels::common::split_text;
use chatter_channels::{ChannelError, EarlierTry, FileToSend, OutgoingFile, Part};
use chatter_domain::{Direction, MessageId, MessageStatus, SourceKind};
use chatter_store::entity::{conversation, message, source};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, TransactionTrait,
};

fn internal(e: impl std::fmt::Display) -> JobError {
    JobError::Transient(e.to_string())
}

pub(crate) fn channel_to_job(e: ChannelError) -> JobError {
    match e {
        ChannelError::RateLimited {
            retry_after_secs,
            message,
        } => JobError::RateLimited {
            retry_after_ms: retry_after_secs as i64 * 1000,
            message,
        },
        ChannelError::Transient(m) => JobError::Transient(m),
        ChannelError::Unauthorized(m) | ChannelError::Permanent(m) | ChannelError::Blocked(m) => {
            JobError::Permanent(m)
        }
    }
}

/// Sends one reply, in order within its conversation.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SendMessage {
    pub message_id: MessageId,
}

async fn finish_message(
    core: &Core,
    m: &message::Model,
    status: MessageStatus,
    error: Option<String>,
    external_id: Option<String>,
    blocked: bool,
) -> Result<(), JobError> {
    let now = core.now();
    let txn = core.db.begin().await.map_err(internal)?;
    // A delivery report may have overtaken us (it finds the message by its recorded parts):
    // never move a delivered, read or provider-failed message back to "sent".
    let current = message::Entity::find_by_id(m.id)
        .one(&txn)
        .await
        .map_err(internal)?;
    let overtaken = status == MessageStatus::Sent
        && current.as_ref().is_some_and(|c| {
            matches!(
                c.status,
                MessageStatus::Delivered | MessageStatus::Read | MessageStatus::Failed
            )
        });
    let mut am = m.clone().into_active_model();
    if overtaken {
        if let Some(c) = &current {
            am.status = Set(c.status);
            am.error = Set(c.error.clone());
        }
    } else {
        am.status = Set(status);
        am.error = Set(error.clone());
    }
    if status == MessageStatus::Sent {
        am.external_id = Set(external_id);
        am.sent_at = Set(Some(now));
    }
    am.update(&txn).await.map_err(internal)?;
    commit_with_event(core, txn, m).await?;
    // A manager's answer written in the CRM: the CRM shows whether it arrived.
    crate::crm::sync::outbox::on_delivery(core, m.id, error.as_deref(), blocked)
        .await
        .map_err(internal)
}

/// Records the message's live event in `txn` and commits it.
async fn commit_with_event(
    core: &Core,
    txn: sea_orm::DatabaseTransaction,
    m: &message::Model,
) -> Result<(), JobError> {
    let mut pending = Pending::default();
    let payload = serde_json::json!({"conversation_id": m.conversation_id, "message_id": m.id});
    events::emit(
        &txn,
        &mut pending,
        m.company_id,
        "message",
        payload,
        core.now(),
    )
    .await
    .map_err(internal)?;
    txn.commit().await.map_err(internal)?;
    core.published(pending);
    Ok(())
}

#[async_trait]
impl BackgroundJob for SendMessage {
    const NAME: &'static str = "send_message";
    const MAX_ATTEMPTS: i32 = 12;

    async fn dead(&self, core: &Core, _job: &JobMeta, reason: &str) {
        let id = self.message_id;
        if let Ok(Some(m)) = message::Entity::find_by_id(id).one(&core.db).await {
            if m.status == MessageStatus::Pending {
                let _ = finish_message(
                    core,
                    &m,
                    MessageStatus::Failed,
                    Some(reason.to_string()),
                    None,
                    false,
                )
                .await;
            }
        }
    }

    async fn run(&self, core: &Core, job: &JobMeta) -> Result<(), JobError> {
        let id = self.message_id;
        let Some(m) = message::Entity::find_by_id(id)
            .one(&core.db)
            .await
            .map_err(internal)?
        else {
            return Ok(());
        };
        if m.status != MessageStatus::Pending {
            return Ok(());
        }
        // Per conversation, replies go out in the order they were written.
        let earlier = message::Entity::find()
            .filter(message::Column::ConversationId.eq(m.conversation_id))
            .filter(message::Column::Direction.eq(Direction::Out))
            .filter(message::Column::Status.eq(MessageStatus::Pending))
            .filter(message::Column::Id.lt(m.id))
            .count(&core.db)
            .await
            .map_err(internal)?;
        if earlier > 0 {
            return Err(JobError::Wait {
                retry_after_ms: 200,
                message: "waiting for an earlier reply in this conversation".into(),
            });
        }
        let conv = conversation::Entity::find_by_id(m.conversation_id)
            .one(&core.db)
            .await
            .map_err(internal)?
            .ok_or_else(|| JobError::Permanent("conversation gone".into()))?;
        let src = source::Entity::find_by_id(m.source_id)
            .one(&core.db)
            .await
            .map_err(internal)?
            .ok_or_else(|| JobError::Permanent("source gone".into()))?;
        if src.status == DISABLED {
            return finish_message(
                core,
                &m,
                MessageStatus::Failed,
                Some("the source is turned off; turn it on in Sources and retry".into()),
                None,
                false,
            )
            .await;
        }
        // An API source's customer system gets the reply through its outgoing webhook; with
        // none set, the reply fails at once and says so in the conversation.
        if src.kind == SourceKind::Api {
            if crate::api_source::settings_of(&src).webhook_url.is_none() {
                return finish_message(
                    core,
                    &m,
                    MessageStatus::Failed,
                    Some(crate::api_source::NO_WEBHOOK.into()),
                    None,
                    false,
                )
                .await;
            }
            return crate::api_source::deliver_reply(core, &m).await;
        }
        let client = connectors::connector_for(core, &src)
            .map_err(|e| JobError::Permanent(e.to_string()))?;
        let client = client.as_ref();
        // A file a manager sent from amoCRM: fetched first, then sent as the kind takes it.
        let m = match fetch_linked(core, &m, src.kind).await {
            Ok(m) => m,
            Err(Fetch::Failed(why)) => {
                return finish_message(core, &m, MessageStatus::Failed, Some(why), None, false)
                    .await
            }
            Err(Fetch::Retry(e)) => return Err(e),
        };
        let mut sent: Vec<String> =
            chatter_store::stored_json::read("messages.sent_parts", m.id, &m.sent_parts);
        // Templates and media go out whole, as one provider message. A file the messenger
        // cannot carry went into the text as a link (`fetch_linked`).
        let atts: Vec<StoredAttachment> = attachments_of(&m)
            .into_iter()
            .filter(|a| !a.file_ref.starts_with(LINKED_PREFIX))
            .collect();
        // A file a manager attached: uploaded from our blob store.
        let upload = atts.iter().find(|a| a.blob.is_some());
        if let (Some(a), true) = (upload, sent.is_empty()) {
            return send_upload(core, job, client, &m, &conv, a).await;
        }
        if sent.is_empty() {
            let files: Vec<OutgoingFile> = atts
                .iter()
                .map(|a| OutgoingFile {
                    kind: a.kind.clone(),
                    link: a.file_ref.clone(),
                    file_name: a.file_name.clone(),
                })
                .collect();
            let special = client
                .send_special(
                    &conv.external_chat_id,
                    m.text.as_deref(),
                    m.extra.as_deref(),
                    &files,
                )
                .await;
            match special {
                Some(Ok(id)) => {
                    record_parts(core, m.id, std::slice::from_ref(&id)).await?;
                    return finish_message(core, &m, MessageStatus::Sent, None, Some(id), false)
                        .await;
                }
                Some(Err(e)) => return handle_send_error(core, job, &m, &conv, e).await,
                None => {}
            }
        } else if m.extra.is_some() || !atts.is_empty() {
            return finish_message(
                core,
                &m,
                MessageStatus::Sent,
                None,
                sent.first().cloned(),
                false,
            )
            .await;
        }
        let text = m.text.clone().unwrap_or_default();
        let parts = split_text(&text, client.max_text());
        // Our id, the same on every retry: providers that dedupe sends (VK) key on it.
        let key = m.id.to_string();
        while sent.len() < parts.len() {
            let i = sent.len();
            let reply_to = if i == 0 {
                m.reply_to_external_id.as_deref()
            } else {
                None
            };
            let part = Part {
                chat: &conv.external_chat_id,
                text: &parts[i],
                reply_to,
                key: &key,
                index: i,
            };
            match client.send_part(part).await {
                Ok(id) => {
                    sent.push(id);
                    // Record each part at once, so a retry does not send it twice.
                    record_parts(core, m.id, &sent).await?;
                }
                Err(e) => return handle_send_error(core, job, &m, &conv, e).await,
            }
        }
        let _ = sources::record_health(&core.db, src.id, CONNECTED, None, core.now())
            .await
            .ok();
        finish_message(
            core,
            &m,
            MessageStatus::Sent,
            None,
            sent.first().cloned(),
            false,
        )
        .await
    }
}

/// The largest file fetched for a messenger that takes none (it goes as a link).
const LINKED_MAX_BYTES: u64 = 50 * chatter_channels::MB;

/// Why an outgoing file could not be fetched.
enum Fetch {
    /// For good (a link amoCRM no longer serves, a file too large): the reply fails saying so.
    Failed(String),
    /// For now: the job retries.
    Retry(JobError),
}

/// Downloads the outgoing attachments still to be fetched by link (`FETCH_PREFIX`: a file a
/// manager sent from amoCRM) into the blob store, and decides how each goes: as a file (a
/// picture as a picture where it fits the kind's limits) when the kind takes it, else as a
/// signed link in the text (`LINKED_PREFIX`; SMS, or a file over the kind's limits), with a
/// note in the conversation saying why — mirrored to the deal, so the manager in amoCRM
/// learns it too. Done once: the result is stored before anything is sent.
async fn fetch_linked(
    core: &Core,
    m: &message::Model,
    kind: SourceKind,
) -> Result<message::Model, Fetch> {
    let mut atts = attachments_of(m);
    if !atts.iter().any(|a| a.file_ref.starts_with(FETCH_PREFIX)) {
        return Ok(m.clone());
    }
    let rules = chatter_channels::kind_of(kind).and_then(|k| k.files());
    let limit = rules.map_or(LINKED_MAX_BYTES, |r| r.max_bytes.max(LINKED_MAX_BYTES));
    let mut links: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (i, a) in atts.iter_mut().enumerate() {
        let Some(url) = a.file_ref.strip_prefix(FETCH_PREFIX).map(str::to_owned) else {
            continue;
        };
        let file = chatter_channels::common::download_url(
            &core.http,
            &url,
            usize::try_from(limit).unwrap_or(usize::MAX),
        )
        .await
        .map_err(|e| match e {
            ChannelError::Transient(_) | ChannelError::RateLimited { .. } => {
                Fetch::Retry(channel_to_job(e))
            }
            e => Fetch::Failed(format!("cannot fetch the file from amoCRM: {e}")),
        })?;
        let bytes = file.bytes.to_vec();
        if bytes.is_empty() {
            return Err(Fetch::Failed(
                "the file from amoCRM is empty; send it again".into(),
            ));
        }
        let from_url = url::Url::parse(&url).ok().and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next_back().map(str::to_owned))
                .filter(|n| !n.is_empty())
        });
        let name = super::files::clean_name(
            a.file_name
                .as_deref()
                .or(from_url.as_deref())
                .unwrap_or("file"),
        );
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let picture = blobs::picture_type(&bytes);
        let raster = blobs::raster_type(&bytes).map(str::to_owned);
        let blob = blobs::put(&core.blobs, &bytes)
            .await
            .map_err(|e| Fetch::Retry(internal(e)))?;
        a.mime_type = Some(super::files::mime_of(
            &name,
            file.mime_type.as_deref(),
            &bytes,
        ));
        a.size = Some(i64::try_from(size).unwrap_or(i64::MAX));
        a.blob = Some(blob);
        a.raster = raster.clone();
        let takes =
            rules.filter(|r| !super::files::is_executable(&name, &bytes) && r.takes(picture, size));
        match takes {
            Some(r) => {
                let as_picture = raster.is_some()
                    || r.only_images
                        .is_some_and(|types| picture.is_some_and(|p| types.contains(&p)));
                a.kind = match as_picture && size <= r.max_image_bytes {
                    true => "image",
                    false => "document",
                }
                .to_owned();
                a.file_ref = format!("{FETCHED_PREFIX}{url}");
            }
            None => {
                a.file_ref = format!("{LINKED_PREFIX}{url}");
                let link = crate::media_links::link(core, m.id, i);
                links.push(link.url);
                let why = match rules {
                    None => "этот канал не передаёт файлы / this channel carries no files",
                    Some(_) => {
                        "канал не принимает такой файл / the channel does not take this file"
                    }
                };
                notes.push(format!(
                    "Файл «{name}» из amoCRM отправлен клиенту ссылкой: {why}."
                ));
            }
        }
        a.file_name = Some(name);
    }
    let now = core.now();
    let txn = core
        .db
        .begin()
        .await
        .map_err(|e| Fetch::Retry(internal(e)))?;
    let mut am = m.clone().into_active_model();
    am.attachments = Set(serde_json::to_string(&atts).unwrap_or_else(|_| "[]".into()));
    if !links.is_empty() {
        let caption = m.text.clone().unwrap_or_default();
        let mut text = caption.trim().to_owned();
        for l in &links {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(l);
        }
        am.text = Set(Some(text));
    }
    let updated = am
        .update(&txn)
        .await
        .map_err(|e| Fetch::Retry(internal(e)))?;
    let mut pending = Pending::default();
    for text in notes {
        let id = uuid::Uuid::now_v7();
        chatter_store::entity::note::Entity::insert(chatter_store::entity::note::ActiveModel {
            id: Set(id),
            company_id: Set(m.company_id.uuid()),
            conversation_id: Set(m.conversation_id.0),
            author_id: Set(None),
            author_name: Set("Chatter".into()),
            text: Set(text.clone()),
            mentions: Set("[]".into()),
            created_at: Set(now),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(|e| Fetch::Retry(internal(e)))?;
        crate::crm::sync::outbox::enqueue_note(
            &txn,
            m.company_id,
            m.conversation_id,
            &format!("📝 Chatter: {text}"),
            now,
        )
        .await
        .map_err(|e| Fetch::Retry(internal(e)))?;
        events::emit(
            &txn,
            &mut pending,
            m.company_id,
            "note",
            serde_json::json!({"conversation_id": m.conversation_id, "note_id": id}),
            now,
        )
        .await
        .map_err(|e| Fetch::Retry(internal(e)))?;
    }
    commit_with_event(core, txn, &updated)
        .await
        .map_err(Fetch::Retry)?;
    core.published(pending);
    Ok(updated)
}

/// Sends a manager's file (`inbox::reply_file`) through the kind's `Connector::send_file`,
/// its text as the caption; recorded as the message's one part.
async fn send_upload(
    core: &Core,
    job: &JobMeta,
    client: &dyn chatter_channels::Connector,
    m: &message::Model,
    conv: &conversation::Model,
    a: &StoredAttachment,
) -> Result<(), JobError> {
    let blob = a.blob.as_deref().unwrap_or_default();
    let Some(bytes) = blobs::get(&core.blobs, blob).await else {
        return finish_message(
            core,
            m,
            MessageStatus::Failed,
            Some("the file is missing from the blob store; attach it again".into()),
            None,
            false,
        )
        .await;
    };
    let file = FileToSend {
        bytes,
        file_name: a.file_name.clone().unwrap_or_else(|| "file".into()),
        mime_type: a
            .mime_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into()),
        as_image: a.kind == "image",
        key: m.id.to_string(),
        retry: match job.attempts > 1 || job.prev_locked_by.is_some() {
            true => Some(earlier_try(core, m).await?),
            false => None,
        },
    };
    let caption = m.text.as_deref().filter(|t| !t.trim().is_empty());
    let reply_to = m.reply_to_external_id.as_deref();
    match client
        .send_file(&conv.external_chat_id, &file, caption, reply_to)
        .await
    {
        Some(Ok(id)) => {
            record_parts(core, m.id, std::slice::from_ref(&id)).await?;
            let _ = sources::record_health(&core.db, m.source_id, CONNECTED, None, core.now())
                .await
                .ok();
            finish_message(core, m, MessageStatus::Sent, None, Some(id), false).await
        }
        Some(Err(e)) => handle_send_error(core, job, m, conv, e).await,
        None => {
            finish_message(
                core,
                m,
                MessageStatus::Failed,
                Some("this messenger cannot send files".into()),
                None,
                false,
            )
            .await
        }
    }
}

/// How far back the provider's clock may lag ours when a retry looks for what its earlier try
/// sent (`EarlierTry::since_ms`).
const CLOCK_SLACK_MS: i64 = 60_000;

/// What a retried file send knows about its earlier tries: they began after the reply was
/// written, and the provider ids Chatter recorded for the conversation's other replies since
/// then are not theirs.
async fn earlier_try(core: &Core, m: &message::Model) -> Result<EarlierTry, JobError> {
    let since_ms = m.created_at - CLOCK_SLACK_MS;
    let others = message::Entity::find()
        .filter(message::Column::ConversationId.eq(m.conversation_id))
        .filter(message::Column::Direction.eq(Direction::Out))
        .filter(message::Column::Id.ne(m.id))
        .filter(message::Column::CreatedAt.gte(since_ms - CLOCK_SLACK_MS))
        .all(&core.db)
        .await
        .map_err(internal)?;
    let mut known = Vec::new();
    for o in others {
        known.extend(o.external_id.clone());
        known.extend(chatter_store::stored_json::read::<Vec<String>>(
            "messages.sent_parts",
            o.id,
            &o.sent_parts,
        ));
    }
    Ok(EarlierTry { since_ms, known })
}

/// Stores the provider ids of the parts sent so far.
async fn record_parts(core: &Core, id: MessageId, sent: &[String]) -> Result<(), JobError> {
    message::Entity::update_many()
        .col_expr(
            message::Column::SentParts,
            Expr::value(serde_json::to_string(sent).unwrap_or_default()),
        )
        .filter(message::Column::Id.eq(id))
        .exec(&core.db)
        .await
        .map_err(internal)?;
    Ok(())
}

async fn handle_send_error(
    core: &Core,
    job: &JobMeta,
    m: &message::Model,
    conv: &conversation::Model,
    e: ChannelError,
) -> Result<(), JobError> {
    let now = core.now();
    match e {
        ChannelError::Unauthorized(msg) => {
            let _ = sources::record_health(
                &core.db,
                m.source_id,
                TOKEN_REVOKED,
                Some(msg.clone()),
                now,
            )
            .await;
            finish_message(core, m, MessageStatus::Failed, Some(msg), None, false).await
        }
        ChannelError::Permanent(msg) => {
            finish_message(core, m, MessageStatus::Failed, Some(msg), None, false).await
        }
        // The kind read the refusal as the customer blocking us: nothing is retried and the
        // conversation shows it.
        ChannelError::Blocked(msg) => {
            let _ = conversation::Entity::update_many()
                .col_expr(conversation::Column::Blocked, Expr::value(true))
                .filter(conversation::Column::Id.eq(conv.id))
                .exec(&core.db)
                .await;
            finish_message(core, m, MessageStatus::Failed, Some(msg), None, true).await
        }
        e if job.attempts >= job.max_attempts => {
            finish_message(
                core,
                m,
                MessageStatus::Failed,
                Some(format!("gave up after {} attempts: {e}", job.attempts)),
                None,
                false,
            )
            .await
        }
        e => {
            let note = format!("retrying: {e}");
            let _ = message::Entity::update_many()
                .col_expr(message::Column::Error, Expr::value(note))
                .filter(message::Column::Id.eq(m.id))
                .exec(&core.db)
                .await;
            Err(channel_to_job(e))
        }
    }
}

/// Downloads a message's attachments into the blob store.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct FetchFile {
    pub message_id: MessageId,
}

#[async_trait]
impl BackgroundJob for FetchFile {
    const NAME: &'static str = "fetch_file";

    async fn run(&self, core: &Core, _job: &JobMeta) -> Result<(), JobError> {
        let id = self.message_id;
        let Some(m) = message::Entity::find_by_id(id)
            .one(&core.db)
            .await
            .map_err(internal)?
        else {
            return Ok(());
        };
        let src = source::Entity::find_by_id(m.source_id)
            .one(&core.db)
            .await
            .map_err(internal)?
            .ok_or_else(|| JobError::Permanent("source gone".into()))?;
        let client = connectors::connector_for(core, &src)
            .map_err(|e| JobError::Permanent(e.to_string()))?;
        let mut atts: Vec<StoredAttachment> = attachments_of(&m);
        let mut changed = false;
        for a in atts.iter_mut().filter(|a| a.blob.is_none()) {
            let file = client.download(&a.file_ref).await.map_err(channel_to_job)?;
            a.blob = Some(
                blobs::put(&core.blobs, &file.bytes)
                    .await
                    .map_err(internal)?,
            );
            a.raster = blobs::raster_type(&file.bytes).map(str::to_owned);
            if a.size.is_none() {
                a.size = Some(file.bytes.len() as i64);
            }
            if a.mime_type.is_none() {
                a.mime_type = file.mime_type;
            }
            if a.file_name.is_none() {
                a.file_name = file.file_name;
            }
            changed = true;
        }
        if changed {
            let txn = core.db.begin().await.map_err(internal)?;
            let mut am = m.clone().into_active_model();
            am.attachments = Set(serde_json::to_string(&atts).unwrap_or_else(|_| "[]".into()));
            am.update(&txn).await.map_err(internal)?;
            commit_with_event(core, txn, &m).await?;
        }
        Ok(())
    }
}
