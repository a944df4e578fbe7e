//! Running sources of every kind: setting each up (webhook when a public URL is configured,
//! polling otherwise), the pollers (exactly one per source across all nodes, through a lease;
//! the cursor advances only in the transaction that stores the events), sending replies in
//! order, and fetching files into the blob store. What differs by kind lives in `connectors`.

use crate::attachments::{attachments_of, StoredAttachment};
use crate::events::{self, Pending};
use crate::jobs::{BackgroundJob, JobError, JobMeta};
use crate::sources::connectors::{self, PollState, SourceClient};
use crate::sources::{self, CONNECTED, DISABLED, ERROR, TOKEN_REVOKED};
use crate::{blobs, Core};
use async_trait::async_trait;
use chatter_channels::common::split_text;
use chatter_channels::ChannelError;
use chatter_domain::SourceKind;
use chatter_store::entity::{conversation, message, source};
use chatter_store::leases;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, TransactionTrait,
};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

const LEASE_TTL_MS: i64 = 60_000;

// The source jobs (setup, sending, fetching files) for every kind are `SourceSetup`,
// `SendMessage` and `FetchFile` below; `crate::job_registry` lists them.

fn internal(e: impl std::fmt::Display) -> JobError {
    JobError::Transient(e.to_string())
}

fn channel_to_job(e: ChannelError) -> JobError {
    match e {
        ChannelError::RateLimited {
            retry_after_secs,
            message,
        } => JobError::RateLimited {
            retry_after_ms: retry_after_secs as i64 * 1000,
            message,
        },
        ChannelError::Transient(m) => JobError::Transient(m),
        ChannelError::Unauthorized(m) | ChannelError::Permanent(m) => JobError::Permanent(m),
    }
}

/// The URL Telegram posts a source's updates to.
pub fn webhook_url(base: &str, source_id: Uuid) -> String {
    format!("{}/hooks/telegram/{source_id}", base.trim_end_matches('/'))
}

/// Sets a source up (webhook or polling) after it was added, reconnected or switched.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SourceSetup {
    pub source_id: Uuid,
}

#[async_trait]
impl BackgroundJob for SourceSetup {
    const NAME: &'static str = "source_setup";

    async fn run(&self, core: &Core, _job: &JobMeta) -> Result<(), JobError> {
        let id = self.source_id;
        let Some(src) = source::Entity::find_by_id(id)
            .one(&core.db)
            .await
            .map_err(internal)?
        else {
            return Ok(());
        };
        // An API source has nothing to set up at a provider: it is on when enabled.
        if src.kind == chatter_domain::SourceKind::Api.id() {
            let status = if src.status == DISABLED {
                DISABLED
            } else {
                CONNECTED
            };
            sources::record_health(&core.db, src.id, status, None, core.now())
                .await
                .map_err(internal)?;
            return Ok(());
        }
        let client =
            connectors::client_for(core, &src).map_err(|e| JobError::Permanent(e.to_string()))?;
        let now = core.now();
        if src.status == DISABLED {
            connectors::stop(core, &src, &client).await;
            return Ok(());
        }
        match connectors::setup(core, &src, &client).await {
            Ok(settings) => {
                sources::save_settings(&core.db, src.id, &settings)
                    .await
                    .map_err(internal)?;
                sources::record_health(&core.db, src.id, CONNECTED, None, now)
                    .await
                    .map_err(internal)?;
                Ok(())
            }
            Err(ChannelError::Unauthorized(m)) => {
                sources::record_health(&core.db, src.id, TOKEN_REVOKED, Some(m), now)
                    .await
                    .map_err(internal)?;
                Ok(())
            }
            Err(e) => {
                sources::record_health(&core.db, src.id, ERROR, Some(e.to_string()), now)
                    .await
                    .map_err(internal)?;
                Err(channel_to_job(e))
            }
        }
    }
}

/// Keeps exactly one poller per polling source (of every kind) across the nodes sharing the
/// database.
pub async fn run_pollers(core: Core, mut stop: watch::Receiver<bool>) {
    let mut running: HashMap<Uuid, JoinHandle<()>> = HashMap::new();
    loop {
        running.retain(|_, h| !h.is_finished());
        match polling_sources(&core).await {
            Ok(ids) => {
                for (id, prefix) in ids {
                    if running.contains_key(&id) {
                        continue;
                    }
                    let name = format!("{prefix}:{id}");
                    match leases::acquire(&core.db, &name, &core.node_id, core.now(), LEASE_TTL_MS)
                        .await
                    {
                        Ok(true) => {
                            running.insert(
                                id,
                                tokio::spawn(poll_loop(core.clone(), id, name, stop.clone())),
                            );
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot take a poller lease"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list sources to poll"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(1000)) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    for (_, h) in running {
        let _ = h.await;
    }
}

/// Sources to poll, with their lease prefix.
async fn polling_sources(core: &Core) -> crate::Result<Vec<(Uuid, &'static str)>> {
    let kinds: Vec<i32> = connectors::SUPPORTED.iter().map(|k| k.id()).collect();
    let all = source::Entity::find()
        .filter(source::Column::Kind.is_in(kinds))
        .filter(source::Column::Status.is_in([CONNECTED, ERROR]))
        .all(&core.db)
        .await?;
    Ok(all
        .into_iter()
        .filter(|s| sources::settings_of(s).mode == "polling")
        .filter_map(|s| Some((s.id, chatter_channels::kind_of_id(s.kind)?.lease_prefix())))
        .collect())
}

async fn poll_loop(core: Core, id: Uuid, lease: String, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(500);
    let mut failures = 0u32;
    let mut last_ok_write = 0i64;
    let mut state = PollState::default();
    loop {
        if *stop.borrow() {
            break;
        }
        match leases::acquire(&core.db, &lease, &core.node_id, core.now(), LEASE_TTL_MS).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, source = %id, "cannot renew the poller lease");
                tokio::time::sleep(backoff).await;
                continue;
            }
        }
        let src = match source::Entity::find_by_id(id).one(&core.db).await {
            Ok(Some(s))
                if (s.status == CONNECTED || s.status == ERROR)
                    && sources::settings_of(&s).mode == "polling" =>
            {
                s
            }
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot load source");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let client = match connectors::client_for(&core, &src) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, source = %id, "cannot read the source's credentials");
                break;
            }
        };
        let r = tokio::select! {
            r = connectors::poll_once(&core, &src, &client, &mut state) => r,
            _ = stop.changed() => break,
        };
        let now = core.now();
        match r {
            Ok(connectors::Polled {
                events: mut evs,
                raws,
                cursor,
            }) => {
                failures = 0;
                backoff = Duration::from_millis(500);
                if src.status != CONNECTED {
                    let _ = sources::record_health(&core.db, id, CONNECTED, None, now).await;
                }
                if !evs.is_empty() || cursor.is_some() {
                    evs.iter_mut().for_each(connectors::normalize);
                    // Unstorable events are parked and the cursor still moves on.
                    if let Err(e) =
                        crate::inbox::dead_letters::ingest_polled(&core, &src, &evs, &raws, cursor)
                            .await
                    {
                        // Not committed, so the cursor did not move: the same events come again.
                        tracing::error!(error = %e, source = %id, "cannot store updates; will fetch them again");
                        state.reset();
                        tokio::time::sleep(backoff).await;
                    }
                } else if now - last_ok_write > 30_000 {
                    last_ok_write = now;
                    let _ = source::Entity::update_many()
                        .col_expr(source::Column::LastOkAt, Expr::value(now))
                        .filter(source::Column::Id.eq(id))
                        .exec(&core.db)
                        .await;
                }
                if let Some(pause) = client.poll_pause(&core.config) {
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
            Err(ChannelError::Unauthorized(m)) => {
                let _ = sources::record_health(&core.db, id, TOKEN_REVOKED, Some(m), now).await;
                break;
            }
            Err(ChannelError::RateLimited {
                retry_after_secs, ..
            }) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(retry_after_secs.max(1))) => {}
                    _ = stop.changed() => break,
                }
            }
            Err(e) => {
                failures += 1;
                state.reset();
                if failures >= 3 || matches!(e, ChannelError::Permanent(_)) {
                    let _ =
                        sources::record_health(&core.db, id, ERROR, Some(e.to_string()), now).await;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    let _ = leases::release(&core.db, &lease, &core.node_id).await;
}

/// Sends one reply, in order within its conversation.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SendMessage {
    pub message_id: Uuid,
}

async fn finish_message(
    core: &Core,
    m: &message::Model,
    status: &str,
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
    let overtaken = status == "sent"
        && current
            .as_ref()
            .is_some_and(|c| matches!(c.status.as_str(), "delivered" | "read" | "failed"));
    let mut am = m.clone().into_active_model();
    if overtaken {
        if let Some(c) = &current {
            am.status = Set(c.status.clone());
            am.error = Set(c.error.clone());
        }
    } else {
        am.status = Set(status.to_string());
        am.error = Set(error.clone());
    }
    if status == "sent" {
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
            if m.status == "pending" {
                let _ =
                    finish_message(core, &m, "failed", Some(reason.to_string()), None, false).await;
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
        if m.status != "pending" {
            return Ok(());
        }
        // Per conversation, replies go out in the order they were written.
        let earlier = message::Entity::find()
            .filter(message::Column::ConversationId.eq(m.conversation_id))
            .filter(message::Column::Direction.eq("out"))
            .filter(message::Column::Status.eq("pending"))
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
                "failed",
                Some("the source is turned off; turn it on in Sources and retry".into()),
                None,
                false,
            )
            .await;
        }
        // An API source's customer system gets the reply through its outgoing webhook; with
        // none set, the reply fails at once and says so in the conversation.
        if src.kind == SourceKind::Api.id() {
            if crate::sources::api::settings_of(&src).webhook_url.is_none() {
                return finish_message(
                    core,
                    &m,
                    "failed",
                    Some(crate::sources::api::NO_WEBHOOK.into()),
                    None,
                    false,
                )
                .await;
            }
            return crate::sources::api::deliver_reply(core, &m).await;
        }
        let client =
            connectors::client_for(core, &src).map_err(|e| JobError::Permanent(e.to_string()))?;
        let mut sent: Vec<String> =
            chatter_store::stored_json::read("messages.sent_parts", m.id, &m.sent_parts);
        // Templates and media go out whole, as one provider message.
        let atts = attachments_of(&m);
        if sent.is_empty() {
            let special = client
                .send_special(
                    &conv.external_chat_id,
                    m.text.as_deref(),
                    m.extra.as_deref(),
                    &atts,
                )
                .await;
            match special {
                Some(Ok(id)) => {
                    record_parts(core, m.id, std::slice::from_ref(&id)).await?;
                    return finish_message(core, &m, "sent", None, Some(id), false).await;
                }
                Some(Err(e)) => return handle_send_error(core, job, &m, &conv, &client, e).await,
                None => {}
            }
        } else if m.extra.is_some() || !atts.is_empty() {
            return finish_message(core, &m, "sent", None, sent.first().cloned(), false).await;
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
            match client
                .send_part(&conv.external_chat_id, &parts[i], reply_to, &key, i)
                .await
            {
                Ok(id) => {
                    sent.push(id);
                    // Record each part at once, so a retry does not send it twice.
                    record_parts(core, m.id, &sent).await?;
                }
                Err(e) => return handle_send_error(core, job, &m, &conv, &client, e).await,
            }
        }
        let _ = sources::record_health(&core.db, src.id, CONNECTED, None, core.now())
            .await
            .ok();
        finish_message(core, &m, "sent", None, sent.first().cloned(), false).await
    }
}

/// Stores the provider ids of the parts sent so far.
async fn record_parts(core: &Core, id: Uuid, sent: &[String]) -> Result<(), JobError> {
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
    client: &SourceClient,
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
            finish_message(core, m, "failed", Some(msg), None, false).await
        }
        ChannelError::Permanent(msg) => {
            let blocked = client.is_blocked(&msg);
            if blocked {
                let _ = conversation::Entity::update_many()
                    .col_expr(conversation::Column::Blocked, Expr::value(true))
                    .filter(conversation::Column::Id.eq(conv.id))
                    .exec(&core.db)
                    .await;
            }
            finish_message(core, m, "failed", Some(msg), None, blocked).await
        }
        e if job.attempts >= job.max_attempts => {
            finish_message(
                core,
                m,
                "failed",
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
    pub message_id: Uuid,
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
        let client =
            connectors::client_for(core, &src).map_err(|e| JobError::Permanent(e.to_string()))?;
        let mut atts: Vec<StoredAttachment> = attachments_of(&m);
        let mut changed = false;
        for a in atts.iter_mut().filter(|a| a.blob.is_none()) {
            let file = client.download(&a.file_ref).await.map_err(channel_to_job)?;
            a.blob = Some(
                blobs::put(&core.config.data_dir, &file.bytes)
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
