//! Conversations into the CRM (MISSION R3.2–R3.5). Every new message of a company with a
//! connected CRM puts a row into `crm_outbox` in the same transaction that stores the message,
//! and wakes one `crm_drain` job per company. The drain holds the company's lease, so all of an
//! account's CRM traffic runs on one node at a time through one rate limiter, and works the
//! outbox in order:
//!
//! 1. conversations without a deal: the routing decision, the contact (our mapping, else a
//!    search by phone or email, else a new one), the customer's open deal or a new one — new
//!    deals go out up to 50 per `leads/complex` call, keyed by our conversation id;
//! 2. then each message, in order per conversation: into amoCRM's chat (Chats API) when the
//!    channel is configured, else as a note on the deal (notes batched too);
//! 3. delivery statuses of managers' replies written in amoCRM, and the responsible of deals
//!    set to the first manager who answered.
//!
//! A rate limit stops the run and resumes when amoCRM says; a 5xx or timeout retries that item
//! with backoff; a refused item is parked as failed with amoCRM's words (the troubleshooting
//! page retries it); a revoked token holds everything — nothing is dropped — until the account
//! is connected again.

use crate::crm::settings::{self as crm_settings, ChatsState, SyncSettings};
use crate::crm::{self, Metadata};
use crate::events::Pending;
use crate::inbox;
use crate::jobs::worker::{JobError, JobHandler, Registry};
use crate::{audit, Actor, Core, CoreError, Result};
use async_trait::async_trait;
use chatter_crm::amocrm::chats::ChatsClient;
use chatter_crm::amocrm::AmoCrm;
use chatter_crm::{
    ChatDirection, ChatMessage, ChatParty, ContactQuery, Crm, CrmError, CrmReply, DealDraft,
    DeliveryFailure, DeliveryStatus, DraftContact, FieldScalar, FieldValue, MessengerKey,
    NewContact, NewDeal,
};
use chatter_domain::routing::{self, Actions, Decision, Responsible};
use chatter_domain::{Permission, SourceKind};
use chatter_store::entity::{contact, conversation, crm_integration, message, source, user};
use chatter_store::jobs::{self, Claimed, NewJob};
use chatter_store::{leases, stmt};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait, Value,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

pub const JOB_CRM_DRAIN: &str = "crm_drain";

const K_MESSAGE: &str = "message";
const K_STATUS: &str = "status";
const K_ASSIGN: &str = "assign";

const PENDING: &str = "pending";
const FAILED: &str = "failed";

/// Attempts of one item before it is parked as failed.
const MAX_ATTEMPTS: i32 = 8;
/// A drain gives its slot back after this long and runs again at once.
const RUN_BUDGET_MS: i64 = 45_000;
const LEASE_TTL_MS: i64 = 60_000;
/// How long held work waits before looking again at a revoked token.
const HOLD_MS: i64 = 5 * 60_000;

pub fn register(r: Registry) -> Registry {
    r.with(JOB_CRM_DRAIN, Drain)
}

fn drain_job(company_id: Uuid, now: i64) -> NewJob {
    NewJob::new(
        JOB_CRM_DRAIN,
        serde_json::json!({ "company_id": company_id }),
        now,
    )
    .company(company_id)
    .dedup(format!("crm_drain:{company_id}"))
    .max_attempts(1_000_000)
}

/// The integration statuses under which work is queued (a revoked token holds it).
fn queues_work(status: &str) -> bool {
    status == crm::CONNECTED || status == crm::TOKEN_INVALID
}

/// Queues messages for the CRM inside the caller's transaction: `(company, conversation,
/// message)` each. Companies without a connected CRM are skipped with one query.
pub async fn enqueue_messages(
    conn: &impl ConnectionTrait,
    items: &[(Uuid, Uuid, Uuid)],
    now: i64,
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let companies: HashSet<Uuid> = items.iter().map(|i| i.0).collect();
    let connected: HashSet<Uuid> = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.is_in(companies))
        .all(conn)
        .await?
        .into_iter()
        .filter(|i| queues_work(&i.status))
        .map(|i| i.company_id)
        .collect();
    let rows: Vec<&(Uuid, Uuid, Uuid)> =
        items.iter().filter(|i| connected.contains(&i.0)).collect();
    if rows.is_empty() {
        return Ok(());
    }
    for chunk in rows.chunks(100) {
        let mut sql = String::from(
            "INSERT INTO crm_outbox (company_id, conversation_id, message_id, kind, payload, status, attempts, next_at, created_at) VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 5);
        for (i, (company, conv, msg)) in chunk.iter().enumerate() {
            let b = i * 5;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, '{K_MESSAGE}', '{{}}', '{PENDING}', 0, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            ));
            values.extend([
                (*company).into(),
                (*conv).into(),
                (*msg).into(),
                now.into(),
                now.into(),
            ]);
        }
        conn.execute(stmt(conn.get_database_backend(), &sql, values))
            .await?;
    }
    for company in connected {
        jobs::enqueue(conn, drain_job(company, now), now).await?;
    }
    Ok(())
}

async fn enqueue_item(
    conn: &impl ConnectionTrait,
    company_id: Uuid,
    conversation_id: Uuid,
    message_id: Option<Uuid>,
    kind: &str,
    payload: serde_json::Value,
    now: i64,
) -> Result<()> {
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO crm_outbox (company_id, conversation_id, message_id, kind, payload, status, attempts, next_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
        vec![
            company_id.into(),
            conversation_id.into(),
            message_id.into(),
            kind.into(),
            payload.to_string().into(),
            now.into(),
        ],
    ))
    .await?;
    jobs::enqueue(conn, drain_job(company_id, now), now).await?;
    Ok(())
}

/// Starts a drain for `company_id` now (after a reconnect, a retry, or held work).
pub async fn wake(core: &Core, company_id: Uuid) -> Result<()> {
    let now = core.now();
    let key = format!("crm_drain:{company_id}");
    // A queued drain may be waiting (held on a revoked token): bring it forward.
    core.db
        .execute(stmt(
            core.db.get_database_backend(),
            "UPDATE jobs SET run_at = $1 WHERE dedup_key = $2 AND status = 'queued'",
            vec![now.into(), key.into()],
        ))
        .await?;
    jobs::enqueue(&core.db, drain_job(company_id, now), now).await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

// ---- what the drain knows about one conversation ----

/// The sync record of a conversation, for the inbox and the API.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CrmLink {
    pub deal_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub chat_ref: Option<String>,
    /// The routing rule that placed the deal; `None` = the default.
    pub rule_id: Option<String>,
    pub rule_name: Option<String>,
    /// A link to the deal in amoCRM.
    pub deal_url: Option<String>,
    /// Items not yet in the CRM, and how many of them failed for good.
    pub pending: i64,
    pub failed: i64,
    pub last_error: Option<String>,
}

/// The CRM side of a conversation.
pub async fn link_of(core: &Core, actor: &Actor, conversation_id: Uuid) -> Result<Option<CrmLink>> {
    actor.require(Permission::Read)?;
    let db = &core.db;
    let backend = db.get_database_backend();
    let row = db
        .query_one(stmt(
            backend,
            "SELECT deal_id, remote_contact_id, chat_ref, rule_id, rule_name FROM crm_conversations \
             WHERE conversation_id = $1 AND company_id = $2",
            vec![conversation_id.into(), actor.company_id.into()],
        ))
        .await?;
    let counts = db
        .query_one(stmt(
            backend,
            "SELECT count(*) AS n, coalesce(sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS f, \
             max(last_error) AS e FROM crm_outbox WHERE conversation_id = $1 AND company_id = $2",
            vec![conversation_id.into(), actor.company_id.into()],
        ))
        .await?;
    let (pending, failed, last_error) = match counts {
        Some(r) => (
            r.try_get::<i64>("", "n").unwrap_or(0),
            r.try_get::<i64>("", "f").unwrap_or(0),
            r.try_get::<Option<String>>("", "e").unwrap_or(None),
        ),
        None => (0, 0, None),
    };
    if row.is_none() && pending == 0 {
        return Ok(None);
    }
    let base = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(actor.company_id))
        .one(db)
        .await?
        .map(|i| i.base_url);
    let mut link = CrmLink {
        pending,
        failed,
        last_error,
        ..CrmLink::default()
    };
    if let Some(r) = row {
        link.deal_id = r.try_get("", "deal_id")?;
        link.contact_id = r.try_get("", "remote_contact_id")?;
        link.chat_ref = r.try_get("", "chat_ref")?;
        link.rule_id = r.try_get("", "rule_id")?;
        link.rule_name = r.try_get("", "rule_name")?;
        link.deal_url = match (&base, link.deal_id) {
            (Some(b), Some(d)) => Some(format!("{b}/leads/detail/{d}")),
            _ => None,
        };
    }
    Ok(Some(link))
}

// ---- the drain ----

#[derive(Clone, Debug)]
struct Item {
    id: i64,
    conversation_id: Uuid,
    message_id: Option<Uuid>,
    kind: String,
    payload: serde_json::Value,
    attempts: i32,
}

/// What a step of the drain says about the whole run.
enum Stop {
    /// amoCRM asked us to wait.
    RateLimited(u64, String),
    /// The token is revoked: hold everything.
    Held(String),
}

struct Drain;

#[async_trait]
impl JobHandler for Drain {
    async fn run(&self, core: &Core, job: &Claimed) -> std::result::Result<(), JobError> {
        let company_id: Uuid = serde_json::from_str::<serde_json::Value>(&job.payload)
            .ok()
            .and_then(|v| v["company_id"].as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| JobError::Permanent("payload has no company_id".into()))?;
        let lease = format!("crm:{company_id}");
        let holder = format!("{}:{}", core.node_id, job.id);
        if !leases::acquire(&core.db, &lease, &holder, core.now(), LEASE_TTL_MS)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))?
        {
            return Err(JobError::Wait {
                retry_after_ms: 1_000,
                message: "another node is syncing this company".into(),
            });
        }
        let r = drain(core, company_id, &lease, &holder).await;
        let _ = leases::release(&core.db, &lease, &holder).await;
        r
    }

    async fn done(&self, core: &Core, job: &Claimed) {
        // Work that arrived while this drain finished found the dedup key taken: look again.
        let Some(company_id) = job.company_id else {
            return;
        };
        match next_due(&core.db, company_id).await {
            Ok(Some(at)) => {
                let now = core.now();
                let job = drain_job(company_id, now).run_at(at.max(now));
                if let Err(e) = jobs::enqueue(&core.db, job, now).await {
                    tracing::warn!(error = %e, "cannot requeue the CRM drain");
                }
                core.jobs_notify.notify_waiters();
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot look for CRM work"),
        }
    }
}

/// When the next pending item of the company is due, if any.
async fn next_due(conn: &impl ConnectionTrait, company_id: Uuid) -> Result<Option<i64>> {
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            "SELECT min(next_at) AS t FROM crm_outbox WHERE company_id = $1 AND status = 'pending'",
            vec![company_id.into()],
        ))
        .await?;
    Ok(row.and_then(|r| r.try_get::<Option<i64>>("", "t").ok().flatten()))
}

fn store_err(e: impl std::fmt::Display) -> JobError {
    JobError::Transient(e.to_string())
}

/// Everything a run needs about the company's CRM.
struct Session {
    integration: crm_integration::Model,
    meta: Metadata,
    api: AmoCrm,
    chats: Option<(ChatsClient, String)>,
}

async fn open_session(
    core: &Core,
    company_id: Uuid,
    force_refresh: bool,
) -> std::result::Result<Option<Session>, JobError> {
    let Some(i) = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(company_id))
        .one(&core.db)
        .await
        .map_err(store_err)?
    else {
        return Ok(None);
    };
    if i.status == crm::DISCONNECTED || i.tokens.is_none() {
        return Ok(None);
    }
    if i.status == crm::TOKEN_INVALID && !force_refresh {
        return Err(JobError::Wait {
            retry_after_ms: HOLD_MS,
            message: "amoCRM access is revoked: waiting for a reconnect".into(),
        });
    }
    let access = match crm::fresh_tokens(core, &i, force_refresh).await {
        Ok(a) => a,
        Err(e) => {
            return Err(JobError::Wait {
                retry_after_ms: if force_refresh { HOLD_MS } else { 5_000 },
                message: format!("cannot get a fresh amoCRM token: {e}"),
            })
        }
    };
    let meta: Metadata = serde_json::from_str(&i.metadata).unwrap_or_default();
    let mut api = AmoCrm::new(
        core.http.clone(),
        &i.base_url,
        &access,
        crm::limiter_for(&i.base_url),
    );
    let chats = match chats_scope(core, &i, &api).await? {
        Some((client, scope)) => {
            api = api.with_chats(client.clone(), &scope);
            Some((client, scope))
        }
        None => None,
    };
    Ok(Some(Session {
        integration: i,
        meta,
        api,
        chats,
    }))
}

fn chats_client(core: &Core) -> Option<ChatsClient> {
    let cfg = core.config.amocrm.as_ref()?.chats.as_ref()?;
    Some(ChatsClient::new(
        core.http.clone(),
        cfg.base_url.as_deref().unwrap_or("https://amojo.amocrm.ru"),
        &cfg.channel_id,
        cfg.secret.expose(),
        Arc::new(crm::CrmClock),
    ))
}

/// The Chats API scope of the company, connecting the channel first when needed (§4.3, §4.9).
/// `None` when no channel is configured or connecting failed (then notes are used and the
/// troubleshooting page says why).
async fn chats_scope(
    core: &Core,
    i: &crm_integration::Model,
    api: &AmoCrm,
) -> std::result::Result<Option<(ChatsClient, String)>, JobError> {
    let Some(client) = chats_client(core) else {
        return Ok(None);
    };
    let st = crm_settings::chats_state(&core.db, i.company_id)
        .await
        .map_err(store_err)?;
    if let Some(scope) = st.scope_id {
        return Ok(Some((client, scope)));
    }
    if st.error.is_some() {
        // A failed connect is retried from the troubleshooting page, not on every run.
        return Ok(None);
    }
    match connect_chats(core, i, api, &client).await {
        Ok(scope) => Ok(Some((client, scope))),
        Err(CrmError::RateLimited {
            retry_after_secs,
            message,
        }) => Err(JobError::RateLimited {
            retry_after_ms: retry_after_secs.max(1) as i64 * 1000,
            message,
        }),
        Err(CrmError::Transient(m)) => Err(JobError::Transient(m)),
        Err(e) => {
            let st = ChatsState {
                error: Some(e.to_string()),
                ..ChatsState::default()
            };
            crm_settings::store_chats_state(&core.db, i.company_id, &st, core.now())
                .await
                .map_err(store_err)?;
            Ok(None)
        }
    }
}

async fn connect_chats(
    core: &Core,
    i: &crm_integration::Model,
    api: &AmoCrm,
    client: &ChatsClient,
) -> std::result::Result<String, CrmError> {
    let account = api.account().await?;
    let amojo = account
        .chat_account_id
        .ok_or_else(|| CrmError::permanent("amoCRM gave no amojo_id for the account"))?;
    let title = core
        .config
        .amocrm
        .as_ref()
        .and_then(|a| a.chats.as_ref())
        .and_then(|c| c.title.clone())
        .unwrap_or_else(|| "Chatter".into());
    let conn = client.connect(&amojo, &title).await?;
    let st = ChatsState {
        amojo_id: Some(amojo),
        scope_id: Some(conn.scope_id.clone()),
        error: None,
        connected_at: Some(core.now()),
    };
    crm_settings::store_chats_state(&core.db, i.company_id, &st, core.now())
        .await
        .map_err(|e| CrmError::Transient(e.to_string()))?;
    Ok(conn.scope_id)
}

/// Connects the Chats API channel again (troubleshooting page).
pub async fn reconnect_chats(core: &Core, actor: &Actor) -> Result<()> {
    actor.require(Permission::Manage)?;
    let now = core.now();
    crm_settings::store_chats_state(&core.db, actor.company_id, &ChatsState::default(), now)
        .await?;
    audit::record(
        &core.db,
        actor,
        now,
        "crm.chats_reconnect",
        "amocrm",
        serde_json::json!({}),
    )
    .await?;
    wake(core, actor.company_id).await
}

async fn drain(
    core: &Core,
    company_id: Uuid,
    lease: &str,
    holder: &str,
) -> std::result::Result<(), JobError> {
    let started = core.now();
    let mut session = match open_session(core, company_id, false).await? {
        Some(s) => s,
        None => return Ok(()),
    };
    let mut refreshed = false;
    loop {
        let now = core.now();
        if now - started > RUN_BUDGET_MS {
            return Err(JobError::Wait {
                retry_after_ms: 0,
                message: "giving the slot back".into(),
            });
        }
        leases::acquire(&core.db, lease, holder, now, LEASE_TTL_MS)
            .await
            .map_err(store_err)?;
        let items = due_items(&core.db, company_id, now)
            .await
            .map_err(store_err)?;
        if items.is_empty() {
            return Ok(());
        }
        let t0 = std::time::Instant::now();
        let step = step(core, &session, &items).await;
        tracing::debug!(
            items = items.len(),
            ms = t0.elapsed().as_millis() as u64,
            "CRM drain pass"
        );
        match step {
            Ok(()) => {}
            Err(Stop::RateLimited(secs, message)) => {
                return Err(JobError::RateLimited {
                    retry_after_ms: secs.max(1) as i64 * 1000,
                    message,
                })
            }
            Err(Stop::Held(why)) => {
                // One refresh after a 401 (the token may just have expired early).
                if !refreshed {
                    refreshed = true;
                    if let Some(s) = open_session(core, company_id, true).await? {
                        session = s;
                        continue;
                    }
                    return Ok(());
                }
                crm::mark(core, session.integration.id, crm::TOKEN_INVALID, Some(why))
                    .await
                    .map_err(store_err)?;
                return Err(JobError::Wait {
                    retry_after_ms: HOLD_MS,
                    message: "amoCRM access is revoked: waiting for a reconnect".into(),
                });
            }
        }
    }
}

async fn due_items(conn: &impl ConnectionTrait, company_id: Uuid, now: i64) -> Result<Vec<Item>> {
    let rows = conn
        .query_all(stmt(
            conn.get_database_backend(),
            "SELECT id, conversation_id, message_id, kind, payload, attempts FROM crm_outbox \
             WHERE company_id = $1 AND status = 'pending' AND next_at <= $2 ORDER BY id LIMIT 500",
            vec![company_id.into(), now.into()],
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(Item {
            id: r.try_get("", "id")?,
            conversation_id: r.try_get("", "conversation_id")?,
            message_id: r.try_get("", "message_id")?,
            kind: r.try_get("", "kind")?,
            payload: serde_json::from_str(&r.try_get::<String>("", "payload")?).unwrap_or_default(),
            attempts: r.try_get("", "attempts")?,
        });
    }
    Ok(out)
}

/// The conversations (among `items`) whose earlier items are still waiting: their later
/// items must wait too, to keep the order.
async fn blocked_conversations(
    conn: &impl ConnectionTrait,
    company_id: Uuid,
    items: &[Item],
) -> Result<HashSet<Uuid>> {
    let first: HashMap<Uuid, i64> = items.iter().fold(HashMap::new(), |mut m, i| {
        m.entry(i.conversation_id).or_insert(i.id);
        m
    });
    let rows = conn
        .query_all(stmt(
            conn.get_database_backend(),
            "SELECT conversation_id, min(id) AS first FROM crm_outbox WHERE company_id = $1 \
             AND (status = 'failed' OR status = 'pending') GROUP BY conversation_id",
            vec![company_id.into()],
        ))
        .await?;
    let mut blocked = HashSet::new();
    for r in rows {
        let conv: Uuid = r.try_get("", "conversation_id")?;
        let min: i64 = r.try_get("", "first")?;
        if first.get(&conv).is_some_and(|f| min < *f) {
            blocked.insert(conv);
        }
    }
    Ok(blocked)
}

fn stop_of(e: &CrmError) -> Option<Stop> {
    match e {
        CrmError::RateLimited {
            retry_after_secs,
            message,
        } => Some(Stop::RateLimited(*retry_after_secs, message.clone())),
        CrmError::Unauthorized(m) => Some(Stop::Held(m.clone())),
        _ => None,
    }
}

/// One pass over the due items: deals first (batched), then messages, statuses, assignments.
async fn step(core: &Core, s: &Session, items: &[Item]) -> std::result::Result<(), Stop> {
    let company_id = s.integration.company_id;
    let blocked = match blocked_conversations(&core.db, company_id, items).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "CRM drain cannot read its queue");
            return Err(Stop::RateLimited(1, e.to_string()));
        }
    };
    let mut convs: Vec<Uuid> = Vec::new();
    for i in items {
        if !blocked.contains(&i.conversation_id) && !convs.contains(&i.conversation_id) {
            convs.push(i.conversation_id);
        }
    }
    let synced = synced_conversations(&core.db, &convs)
        .await
        .map_err(db_stop)?;
    // 1. Deals for conversations that have none yet, up to a batch at a time.
    let need: Vec<Uuid> = convs
        .iter()
        .filter(|c| !synced.contains_key(*c))
        .copied()
        .collect();
    if !need.is_empty() {
        let batch: Vec<Uuid> = need.into_iter().take(s.api.max_batch()).collect();
        return create_deals(core, s, &batch, items).await;
    }
    // 2. Chats for the conversations about to be mirrored, linked to contacts in batches.
    if let Some((client, scope)) = &s.chats {
        let mut to_link: Vec<(Uuid, i64, String)> = Vec::new();
        for conv in &convs {
            let Some(link) = synced.get(conv) else {
                continue;
            };
            if link.chat_linked || to_link.len() >= s.api.max_batch() {
                continue;
            }
            let chat = match &link.chat_ref {
                Some(c) => c.clone(),
                None => match open_chat(core, client, scope, *conv).await {
                    Ok(c) => c,
                    Err(e) => {
                        if let Some(stop) = stop_of(&e) {
                            return Err(stop);
                        }
                        tracing::warn!(error = %e, "cannot create the amoCRM chat");
                        continue;
                    }
                },
            };
            if let Some(contact) = link.contact_id {
                to_link.push((*conv, contact, chat));
            }
        }
        if !to_link.is_empty() {
            let pairs: Vec<(i64, String)> =
                to_link.iter().map(|(_, c, ch)| (*c, ch.clone())).collect();
            match s.api.link_chats(&pairs).await {
                Ok(()) => {
                    for (conv, _, chat) in &to_link {
                        set_chat(&core.db, *conv, chat, true)
                            .await
                            .map_err(db_stop)?;
                    }
                }
                Err(e) => {
                    if let Some(stop) = stop_of(&e) {
                        return Err(stop);
                    }
                    tracing::warn!(error = %e, "cannot link amoCRM chats to contacts");
                }
            }
            // Read the links again with their chats.
            return Ok(());
        }
    }
    // 3. Then the rest, item by item in id order, notes batched.
    let mut notes: Vec<(&Item, i64, String)> = Vec::new();
    let mut seen_conv: HashSet<Uuid> = HashSet::new();
    for item in items {
        if blocked.contains(&item.conversation_id) {
            continue;
        }
        // Strict order per conversation: one item per conversation per pass, unless notes.
        let Some(link) = synced.get(&item.conversation_id) else {
            continue;
        };
        let r = match item.kind.as_str() {
            K_MESSAGE => {
                if s.chats.is_none() {
                    match note_text(core, item).await {
                        Ok(Some(text)) => {
                            notes.push((item, link.deal_id, text));
                            if notes.len() >= s.api.max_batch() {
                                break;
                            }
                            continue;
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(CrmError::Transient(e.to_string())),
                    }
                } else {
                    if !seen_conv.insert(item.conversation_id) {
                        continue;
                    }
                    mirror_chat(core, s, item, link).await
                }
            }
            K_STATUS => status_back(s, item).await,
            K_ASSIGN => assign_first(core, s, item, link).await,
            other => Err(CrmError::permanent(format!(
                "unknown CRM item kind {other}"
            ))),
        };
        settle(core, item, r).await?;
    }
    if !notes.is_empty() {
        let list: Vec<(i64, String)> = notes.iter().map(|(_, d, t)| (*d, t.clone())).collect();
        match s.api.add_notes(&list).await {
            Ok(ids) => {
                for ((item, _, _), id) in notes.iter().zip(ids) {
                    if let Some(m) = item.message_id {
                        record_message(
                            &core.db,
                            company_id,
                            m,
                            "note",
                            &id.to_string(),
                            core.now(),
                        )
                        .await
                        .map_err(db_stop)?;
                    }
                    settle(core, item, Ok(())).await?;
                }
            }
            Err(e) => {
                for (item, _, _) in &notes {
                    settle(core, item, Err(e.clone())).await?;
                }
            }
        }
    }
    Ok(())
}

fn db_stop(e: CoreError) -> Stop {
    tracing::warn!(error = %e, "CRM drain: database error");
    Stop::RateLimited(1, e.to_string())
}

/// Records an item's outcome: done (deleted), retried later, or parked as failed.
async fn settle(
    core: &Core,
    item: &Item,
    r: std::result::Result<(), CrmError>,
) -> std::result::Result<(), Stop> {
    let db = &core.db;
    let backend = db.get_database_backend();
    let now = core.now();
    let e = match r {
        Ok(()) => {
            db.execute(stmt(
                backend,
                "DELETE FROM crm_outbox WHERE id = $1",
                vec![item.id.into()],
            ))
            .await
            .map_err(|e| db_stop(e.into()))?;
            return Ok(());
        }
        Err(e) => e,
    };
    if let Some(stop) = stop_of(&e) {
        return Err(stop);
    }
    let attempts = item.attempts + 1;
    let (status, next_at) = match &e {
        CrmError::Transient(_) if attempts < MAX_ATTEMPTS => {
            (PENDING, now + jobs::backoff_ms(attempts, rand::random()))
        }
        _ => (FAILED, now),
    };
    db.execute(stmt(
        backend,
        "UPDATE crm_outbox SET status = $1, attempts = $2, last_error = $3, next_at = $4 WHERE id = $5",
        vec![
            status.into(),
            attempts.into(),
            e.to_string().into(),
            next_at.into(),
            item.id.into(),
        ],
    ))
    .await
    .map_err(|e| db_stop(e.into()))?;
    Ok(())
}

// ---- deals ----

/// A conversation's deal, once it exists.
#[derive(Clone, Debug)]
struct Synced {
    deal_id: i64,
    contact_id: Option<i64>,
    chat_ref: Option<String>,
    chat_linked: bool,
    responsible_user_id: Option<i64>,
}

async fn synced_conversations(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Synced>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(200) {
        if chunk.is_empty() {
            continue;
        }
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT conversation_id, deal_id, remote_contact_id, chat_ref, chat_linked, responsible_user_id \
             FROM crm_conversations WHERE deal_id IS NOT NULL AND conversation_id IN ({})",
            marks.join(",")
        );
        let values: Vec<Value> = chunk.iter().map(|u| (*u).into()).collect();
        for r in conn
            .query_all(stmt(conn.get_database_backend(), &sql, values))
            .await?
        {
            out.insert(
                r.try_get("", "conversation_id")?,
                Synced {
                    deal_id: r.try_get("", "deal_id")?,
                    contact_id: r.try_get("", "remote_contact_id")?,
                    chat_ref: r.try_get("", "chat_ref")?,
                    chat_linked: r.try_get("", "chat_linked")?,
                    responsible_user_id: r.try_get("", "responsible_user_id")?,
                },
            );
        }
    }
    Ok(out)
}

/// What the settings decide when no rule fires.
pub fn default_actions(settings: &SyncSettings) -> Actions {
    Actions {
        pipeline_id: settings.pipeline_id,
        status_id: settings.status_id,
        responsible: settings.responsible.clone(),
        tags: settings.tags.clone(),
    }
}

/// The name of the rule that fired, from the decision's explanation.
fn rule_name(d: &Decision) -> Option<String> {
    d.explanation.iter().find_map(|s| match s {
        routing::Step::Matched { rule, .. } => Some(rule.clone()),
        _ => None,
    })
}

/// The next user of a round-robin list (the drain holds the company's lease, so a plain
/// read-then-write is safe).
async fn next_in_turn(conn: &impl ConnectionTrait, company_id: Uuid, list: &[i64]) -> Result<i64> {
    let key: Vec<String> = list.iter().map(i64::to_string).collect();
    let key = key.join(",");
    let backend = conn.get_database_backend();
    let turn = conn
        .query_one(stmt(
            backend,
            "SELECT turn FROM crm_turns WHERE company_id = $1 AND list_key = $2",
            vec![company_id.into(), key.clone().into()],
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "turn"))
        .transpose()?
        .unwrap_or(0);
    conn.execute(stmt(
        backend,
        "INSERT INTO crm_turns (company_id, list_key, turn) VALUES ($1, $2, $3) \
         ON CONFLICT (company_id, list_key) DO UPDATE SET turn = excluded.turn",
        vec![company_id.into(), key.into(), (turn + 1).into()],
    ))
    .await?;
    Ok(list[(turn as usize) % list.len()])
}

fn kind_label(kind: Option<SourceKind>) -> &'static str {
    match kind {
        Some(SourceKind::TelegramBot) | Some(SourceKind::TelegramPrivate) => "Telegram",
        Some(SourceKind::TelegramParsing) => "Telegram-группы",
        Some(SourceKind::VkBot) => "VK",
        Some(SourceKind::MaxBot) => "Max",
        Some(SourceKind::Avito) => "Avito",
        Some(SourceKind::Api) => "API",
        Some(SourceKind::Whatsapp) => "WhatsApp",
        Some(SourceKind::SipoutSms) => "SMS",
        None => "Chatter",
    }
}

fn kind_tag(kind: Option<SourceKind>) -> String {
    kind.map(|k| k.as_str().to_string())
        .unwrap_or_else(|| "chatter".into())
}

/// What a new deal is made from.
struct Prepared {
    conversation: conversation::Model,
    draft: Option<DealDraft>,
    /// The customer's open deal, joined instead of creating one.
    existing_deal: Option<i64>,
    contact_remote: Option<i64>,
    decision: Decision,
    rule_name: Option<String>,
    responsible: Option<i64>,
}

/// What preparing a batch of deals reads from our database, in a few queries for the batch.
#[derive(Default)]
struct Preloaded {
    convs: HashMap<Uuid, conversation::Model>,
    contacts: HashMap<Uuid, contact::Model>,
    sources: HashMap<Uuid, source::Model>,
    /// Each conversation's first customer message.
    first: HashMap<Uuid, message::Model>,
    /// Our contact → the CRM's contact.
    mapped: HashMap<Uuid, i64>,
    settings: HashMap<Uuid, SyncSettings>,
    decisions: HashMap<Uuid, Decision>,
}

async fn preload(core: &Core, company_id: Uuid, batch: &[Uuid]) -> Result<Preloaded> {
    let db = &core.db;
    let mut p = Preloaded::default();
    for c in conversation::Entity::find()
        .filter(conversation::Column::Id.is_in(batch.iter().copied()))
        .all(db)
        .await?
    {
        p.convs.insert(c.id, c);
    }
    let contact_ids: Vec<Uuid> = p.convs.values().map(|c| c.contact_id).collect();
    let source_ids: HashSet<Uuid> = p.convs.values().map(|c| c.source_id).collect();
    for c in contact::Entity::find()
        .filter(contact::Column::Id.is_in(contact_ids.iter().copied()))
        .all(db)
        .await?
    {
        p.contacts.insert(c.id, c);
    }
    for src in source::Entity::find()
        .filter(source::Column::Id.is_in(source_ids.iter().copied()))
        .all(db)
        .await?
    {
        let settings = crm_settings::effective(db, company_id, src.id).await?;
        p.settings.insert(src.id, settings);
        p.sources.insert(src.id, src);
    }
    for m in message::Entity::find()
        .filter(message::Column::ConversationId.is_in(batch.iter().copied()))
        .filter(message::Column::Direction.eq("in"))
        .order_by_asc(message::Column::CreatedAt)
        .all(db)
        .await?
    {
        p.first.entry(m.conversation_id).or_insert(m);
    }
    if !contact_ids.is_empty() {
        let marks: Vec<String> = (1..=contact_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT contact_id, remote_id FROM crm_contacts WHERE contact_id IN ({})",
            marks.join(",")
        );
        let values: Vec<Value> = contact_ids.iter().map(|u| (*u).into()).collect();
        for r in db
            .query_all(stmt(db.get_database_backend(), &sql, values))
            .await?
        {
            p.mapped
                .insert(r.try_get("", "contact_id")?, r.try_get("", "remote_id")?);
        }
    }
    // The rules, read and compiled once for the batch.
    let inputs: Vec<(Uuid, Actions, Uuid, String, i64)> = p
        .convs
        .values()
        .map(|c| {
            let first = p.first.get(&c.id);
            (
                c.id,
                p.settings
                    .get(&c.source_id)
                    .map(default_actions)
                    .unwrap_or_default(),
                c.source_id,
                first.and_then(|m| m.text.clone()).unwrap_or_default(),
                first.map_or(c.created_at, |m| m.created_at),
            )
        })
        .collect();
    let decided = crate::crm::rules::decide_many(
        core,
        company_id,
        &inputs
            .iter()
            .map(|(_, d, src, text, at)| (d, *src, text.as_str(), *at))
            .collect::<Vec<_>>(),
    )
    .await?;
    for ((id, ..), d) in inputs.iter().zip(decided) {
        p.decisions.insert(*id, d);
    }
    Ok(p)
}

async fn prepare(
    core: &Core,
    s: &Session,
    pre: &Preloaded,
    conv_id: Uuid,
) -> std::result::Result<Option<Prepared>, CrmError> {
    let db = &core.db;
    let c = |e: CoreError| CrmError::Transient(e.to_string());
    let Some(conv) = pre.convs.get(&conv_id).cloned() else {
        return Ok(None);
    };
    let contact = pre.contacts.get(&conv.contact_id);
    let src = pre.sources.get(&conv.source_id);
    let first = pre.first.get(&conv.id);
    let first_text = first.and_then(|m| m.text.clone()).unwrap_or_default();
    let settings = pre
        .settings
        .get(&conv.source_id)
        .cloned()
        .unwrap_or_default();
    let Some(decision) = pre.decisions.get(&conv.id).cloned() else {
        return Ok(None);
    };
    let rule_name = rule_name(&decision);
    let kind = src.as_ref().and_then(|s| SourceKind::from_id(s.kind));
    let source_name = src.as_ref().map(|s| s.name.clone()).unwrap_or_default();

    // The contact: our mapping, else the CRM by phone or email.
    let mut contact_remote = None;
    if let Some(ct) = contact {
        contact_remote = pre.mapped.get(&ct.id).copied();
        if contact_remote.is_none() {
            let phones: Vec<String> = ct
                .phone
                .as_deref()
                .and_then(chatter_crm::normalize_phone)
                .into_iter()
                .collect();
            // Where the company stores messenger usernames in a contact field, a contact made
            // by hand with the customer's @username is found too (one more request per new
            // customer, so only then).
            let messenger_keys: Vec<MessengerKey> = match (settings.fields.username, &ct.username) {
                (Some(field), Some(u)) => vec![MessengerKey {
                    field_id: Some(field),
                    value: format!("@{u}"),
                }],
                _ => Vec::new(),
            };
            if !phones.is_empty() || !messenger_keys.is_empty() {
                let q = ContactQuery {
                    phones,
                    messenger_keys,
                    ..ContactQuery::default()
                };
                contact_remote = s.api.find_contact(&q).await?.map(|c| c.id);
            }
        }
    }
    let responsible = match &decision.actions.responsible {
        Some(Responsible::User(u)) => Some(*u),
        Some(Responsible::RoundRobin(list)) if !list.is_empty() => {
            Some(next_in_turn(db, conv.company_id, list).await.map_err(c)?)
        }
        _ => None,
    };
    if let Some(remote) = contact_remote {
        if settings.reuse_open_deal != Some(false) {
            if let Some(open) = s.api.find_open_deal(remote).await? {
                return Ok(Some(Prepared {
                    conversation: conv,
                    draft: None,
                    existing_deal: Some(open.id),
                    contact_remote: Some(remote),
                    decision,
                    rule_name,
                    responsible: open.responsible_user_id,
                }));
            }
        }
    }
    let customer = contact
        .as_ref()
        .map(|c| c.name.clone())
        .unwrap_or_else(|| conv.title.clone().unwrap_or_default());
    let mut deal_fields = Vec::new();
    let text_field = |id: Option<i64>, v: String, out: &mut Vec<FieldValue>| {
        if let Some(id) = id {
            if !v.is_empty() {
                out.push(FieldValue {
                    field_id: id,
                    values: vec![FieldScalar::Text(v)],
                });
            }
        }
    };
    text_field(
        settings.fields.source_name,
        format!("{} {}", kind_label(kind), source_name),
        &mut deal_fields,
    );
    text_field(
        settings.fields.first_message,
        first_text.chars().take(1000).collect(),
        &mut deal_fields,
    );
    let chat_link = match (&contact, kind) {
        (Some(ct), Some(SourceKind::TelegramBot)) if ct.username.is_some() => format!(
            "https://t.me/{}",
            ct.username.as_deref().unwrap_or_default()
        ),
        _ => format!("{}/app/inbox/{}", core.config.public_url, conv.id),
    };
    text_field(settings.fields.chat_link, chat_link, &mut deal_fields);
    // What the API source passed with the first message: UTM tags and the sender's email.
    let api_meta = match (&first, kind) {
        (Some(m), Some(SourceKind::Api)) => crate::sources::api::inbound_meta(db, m.id)
            .await
            .map_err(c)?,
        _ => None,
    };
    if let Some(meta) = &api_meta {
        let utm = [
            (settings.fields.utm_source, &meta.utm_source),
            (settings.fields.utm_medium, &meta.utm_medium),
            (settings.fields.utm_campaign, &meta.utm_campaign),
        ];
        for (field, value) in utm {
            text_field(field, value.clone().unwrap_or_default(), &mut deal_fields);
        }
    }
    let mut tags = vec![kind_tag(kind)];
    if !source_name.is_empty() {
        tags.push(source_name.clone());
    }
    for t in &decision.actions.tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    let pipeline_id = decision.actions.pipeline_id;
    let status_id = decision.actions.status_id.or_else(|| {
        // A pipeline without a stage: its first regular stage.
        pipeline_id.and_then(|p| {
            s.meta.pipelines.iter().find(|x| x.id == p).and_then(|x| {
                x.statuses
                    .iter()
                    .find(|st| st.kind == chatter_crm::StageKind::Regular)
                    .map(|st| st.id)
            })
        })
    });
    let unsorted = settings.unsorted == Some(true);
    let deal = NewDeal {
        request_id: conv.id.to_string(),
        name: format!("{}: {customer}", kind_label(kind)),
        pipeline_id,
        status_id: if unsorted { None } else { status_id },
        responsible_user_id: responsible,
        tags,
        fields: deal_fields,
        contact_id: contact_remote,
        unsorted_form: unsorted.then(|| format!("{} {}", kind_label(kind), source_name)),
    };
    let draft_contact = match contact_remote {
        Some(id) => DraftContact::Existing(id),
        None => {
            let mut fields = Vec::new();
            if let Some(ct) = &contact {
                let handle = match &ct.username {
                    Some(u) => format!("@{u}"),
                    None => format!("{}:{}", kind_tag(kind), ct.external_id),
                };
                text_field(settings.fields.username, handle, &mut fields);
            }
            DraftContact::New(Box::new(NewContact {
                name: customer,
                phones: contact
                    .as_ref()
                    .and_then(|c| c.phone.as_deref())
                    .and_then(chatter_crm::normalize_phone)
                    .into_iter()
                    .collect(),
                emails: api_meta
                    .as_ref()
                    .and_then(|m| m.sender_email.clone())
                    .map(|e| e.to_lowercase())
                    .into_iter()
                    .collect(),
                responsible_user_id: responsible,
                fields,
                ..NewContact::default()
            }))
        }
    };
    Ok(Some(Prepared {
        conversation: conv,
        draft: Some(DealDraft {
            deal,
            contact: draft_contact,
        }),
        existing_deal: None,
        contact_remote,
        decision,
        rule_name,
        responsible,
    }))
}

async fn record_conversation(
    conn: &impl ConnectionTrait,
    p: &Prepared,
    deal_id: i64,
    contact_remote: Option<i64>,
    now: i64,
) -> Result<()> {
    let decision = serde_json::to_string(&p.decision).unwrap_or_default();
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO crm_conversations (conversation_id, company_id, deal_id, remote_contact_id, chat_ref, chat_linked, \
         rule_id, rule_name, decision, responsible_user_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, NULL, false, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (conversation_id) DO UPDATE SET deal_id = excluded.deal_id, \
         remote_contact_id = excluded.remote_contact_id, rule_id = excluded.rule_id, rule_name = excluded.rule_name, \
         decision = excluded.decision, responsible_user_id = excluded.responsible_user_id, updated_at = excluded.updated_at",
        vec![
            p.conversation.id.into(),
            p.conversation.company_id.into(),
            deal_id.into(),
            contact_remote.into(),
            p.decision.rule_id.clone().into(),
            p.rule_name.clone().into(),
            decision.into(),
            p.responsible.into(),
            now.into(),
        ],
    ))
    .await?;
    if let Some(remote) = contact_remote {
        conn.execute(stmt(
            conn.get_database_backend(),
            "INSERT INTO crm_contacts (contact_id, company_id, remote_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (contact_id) DO NOTHING",
            vec![
                p.conversation.contact_id.into(),
                p.conversation.company_id.into(),
                remote.into(),
                now.into(),
            ],
        ))
        .await?;
    }
    Ok(())
}

/// Creates the deals of `batch` (one `leads/complex` call for the new ones).
async fn create_deals(
    core: &Core,
    s: &Session,
    batch: &[Uuid],
    items: &[Item],
) -> std::result::Result<(), Stop> {
    let first_item = |conv: Uuid| items.iter().find(|i| i.conversation_id == conv);
    let t0 = std::time::Instant::now();
    let pre = match preload(core, s.integration.company_id, batch).await {
        Ok(p) => p,
        Err(e) => return Err(db_stop(e)),
    };
    tracing::debug!(
        conversations = batch.len(),
        ms = t0.elapsed().as_millis() as u64,
        "CRM deals: preloaded"
    );
    let mut prepared: Vec<Prepared> = Vec::new();
    for conv in batch {
        match prepare(core, s, &pre, *conv).await {
            Ok(Some(p)) => prepared.push(p),
            Ok(None) => {
                // The conversation is gone: its items have nothing to do.
                for i in items.iter().filter(|i| i.conversation_id == *conv) {
                    settle(core, i, Ok(())).await?;
                }
            }
            Err(e) => {
                if let Some(stop) = stop_of(&e) {
                    return Err(stop);
                }
                if let Some(i) = first_item(*conv) {
                    settle(core, i, Err(e)).await?;
                }
            }
        }
    }
    let now = core.now();
    let mut drafts = Vec::new();
    for p in &prepared {
        match (&p.draft, p.existing_deal) {
            (_, Some(deal)) => record_conversation(&core.db, p, deal, p.contact_remote, now)
                .await
                .map_err(db_stop)?,
            (Some(d), None) => drafts.push(d.clone()),
            (None, None) => {}
        }
    }
    if drafts.is_empty() {
        return Ok(());
    }
    let t0 = std::time::Instant::now();
    let answer = s.api.create_deals(&drafts).await;
    tracing::debug!(
        deals = drafts.len(),
        ms = t0.elapsed().as_millis() as u64,
        "CRM deals: leads/complex"
    );
    match answer {
        Ok(results) => {
            let by_request: HashMap<String, &Prepared> = prepared
                .iter()
                .map(|p| (p.conversation.id.to_string(), p))
                .collect();
            let mut created = Vec::new();
            let mut refused = Vec::new();
            for r in results {
                let Some(p) = by_request.get(&r.request_id) else {
                    continue;
                };
                match r.result {
                    Ok(c) => created.push((*p, c.deal_id, c.contact_id.or(p.contact_remote))),
                    Err(e) => refused.push((p.conversation.id, e)),
                }
            }
            // Every mapping of the batch in one commit (nothing else may use the connection
            // meanwhile: SQLite has one).
            let now = core.now();
            let write = async {
                let txn = core.db.begin().await?;
                for (p, deal, contact) in &created {
                    record_conversation(&txn, p, *deal, *contact, now).await?;
                }
                txn.commit().await?;
                Ok::<(), CoreError>(())
            };
            write.await.map_err(db_stop)?;
            for (conv, e) in refused {
                if let Some(i) = first_item(conv) {
                    settle(core, i, Err(e)).await?;
                }
            }
            touch_sync(core, s).await;
            Ok(())
        }
        Err(e) => {
            if let Some(stop) = stop_of(&e) {
                return Err(stop);
            }
            for p in &prepared {
                if let Some(i) = first_item(p.conversation.id) {
                    settle(core, i, Err(e.clone())).await?;
                }
            }
            Ok(())
        }
    }
}

/// Remembers when the CRM last accepted our work (the troubleshooting page shows it).
async fn touch_sync(core: &Core, s: &Session) {
    let r = crm_integration::Entity::update_many()
        .col_expr(
            crm_integration::Column::LastSyncAt,
            sea_orm::sea_query::Expr::value(core.now()),
        )
        .filter(crm_integration::Column::Id.eq(s.integration.id))
        .exec(&core.db)
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "cannot record the CRM sync time");
    }
}

// ---- messages ----

async fn record_message(
    conn: &impl ConnectionTrait,
    company_id: Uuid,
    message_id: Uuid,
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

async fn already_mirrored(conn: &impl ConnectionTrait, message_id: Uuid) -> Result<bool> {
    Ok(conn
        .query_one(stmt(
            conn.get_database_backend(),
            "SELECT 1 AS x FROM crm_messages WHERE message_id = $1",
            vec![message_id.into()],
        ))
        .await?
        .is_some())
}

/// A message's text for the CRM, attachments named.
fn body_of(m: &message::Model) -> String {
    let mut parts: Vec<String> = Vec::new();
    for a in inbox::attachments_of(m) {
        parts.push(match a.kind.as_str() {
            "photo" => "[Фото]".to_string(),
            "voice" => "[Голосовое сообщение]".to_string(),
            "video" => "[Видео]".to_string(),
            _ => format!("[Файл {}]", a.file_name.unwrap_or_default()),
        });
    }
    if let Some(extra) = &m.extra {
        if let Ok(e) = serde_json::from_str::<chatter_channels::Extra>(extra) {
            parts.push(match e {
                chatter_channels::Extra::Contact { phone, name } => {
                    format!("[Контакт {name} {phone}]")
                }
                chatter_channels::Extra::Location {
                    latitude,
                    longitude,
                } => format!("[Геопозиция {latitude:.5}, {longitude:.5}]"),
            });
        }
    }
    if let Some(t) = &m.text {
        parts.push(t.clone());
    }
    parts.join(" ")
}

async fn note_text(core: &Core, item: &Item) -> Result<Option<String>> {
    let Some(id) = item.message_id else {
        return Ok(None);
    };
    if already_mirrored(&core.db, id).await? {
        return Ok(None);
    }
    let Some(m) = message::Entity::find_by_id(id).one(&core.db).await? else {
        return Ok(None);
    };
    Ok(Some(if m.direction == "in" {
        format!("💬 {}: {}", m.sender_name, body_of(&m))
    } else {
        format!("↩ {} (Chatter): {}", m.sender_name, body_of(&m))
    }))
}

fn customer_party(ct: Option<&contact::Model>, kind: Option<SourceKind>) -> ChatParty {
    ChatParty {
        id: ct.map_or_else(|| "unknown".into(), |c| format!("c-{}", c.id)),
        name: ct.map(|c| c.name.clone()).unwrap_or_default(),
        phone: ct.and_then(|c| c.phone.clone()),
        profile_link: match (ct.and_then(|c| c.username.as_deref()), kind) {
            (Some(u), Some(SourceKind::TelegramBot)) => Some(format!("https://t.me/{u}")),
            _ => None,
        },
        ..ChatParty::default()
    }
}

async fn mirror_chat(
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
        .and_then(|s| SourceKind::from_id(s.kind));
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
    let direction = if m.direction == "in" {
        ChatDirection::FromCustomer
    } else {
        ChatDirection::ToCustomer {
            customer: customer.clone(),
        }
    };
    let sender = if m.direction == "in" {
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
    let sent = s
        .api
        .send_chat_message(&ChatMessage {
            conversation_id: conv.id.to_string(),
            conversation_ref: chat_ref,
            msgid: m.id.to_string(),
            sender,
            direction,
            text: body_of(&m),
            sent_at_ms: m.sent_at.unwrap_or(m.created_at),
            source_external_id: Some(source_ref),
            silent: false,
        })
        .await?;
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
async fn open_chat(
    core: &Core,
    client: &ChatsClient,
    scope: &str,
    conv_id: Uuid,
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
        .and_then(|s| SourceKind::from_id(s.kind));
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

async fn set_chat(conn: &impl ConnectionTrait, conv: Uuid, chat: &str, linked: bool) -> Result<()> {
    conn.execute(stmt(
        conn.get_database_backend(),
        "UPDATE crm_conversations SET chat_ref = $1, chat_linked = $2 WHERE conversation_id = $3",
        vec![chat.into(), linked.into(), conv.into()],
    ))
    .await?;
    Ok(())
}

async fn status_back(s: &Session, item: &Item) -> std::result::Result<(), CrmError> {
    let Some(msgid) = item.payload["msgid"].as_str() else {
        return Ok(());
    };
    if s.chats.is_none() {
        return Ok(());
    }
    let status = match item.payload["error"].as_str() {
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

async fn assign_first(
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

// ---- hooks from the rest of core ----

/// A manager answered from Chatter's inbox: mirror the answer, and when the deal waits for
/// "the first manager who answers", make them responsible (matched to amoCRM by email).
pub(crate) async fn on_reply(
    conn: &impl ConnectionTrait,
    conv: &conversation::Model,
    message_id: Uuid,
    author: Option<Uuid>,
    now: i64,
) -> Result<()> {
    enqueue_messages(conn, &[(conv.company_id, conv.id, message_id)], now).await?;
    match author {
        Some(a) => assign_first_answer(conn, conv, Answerer::Member(a), now).await,
        None => Ok(()),
    }
}

/// Who answered a customer.
pub(crate) enum Answerer<'a> {
    /// A member, in Chatter's inbox (matched to an amoCRM user by email).
    Member(Uuid),
    /// An amoCRM user, in amoCRM's chat (by their chat service id).
    CrmChatUser(&'a str),
}

/// When the conversation's deal waits for "whoever answers first" and has no responsible yet,
/// queues making the one who just answered responsible.
async fn assign_first_answer(
    conn: &impl ConnectionTrait,
    conv: &conversation::Model,
    who: Answerer<'_>,
    now: i64,
) -> Result<()> {
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            "SELECT decision, responsible_user_id FROM crm_conversations WHERE conversation_id = $1",
            vec![conv.id.into()],
        ))
        .await?;
    let first_to_answer = match &row {
        Some(r) => {
            r.try_get::<Option<i64>>("", "responsible_user_id")?
                .is_none()
                && r.try_get::<Option<String>>("", "decision")?
                    .and_then(|d| serde_json::from_str::<Decision>(&d).ok())
                    .is_some_and(|d| {
                        matches!(d.actions.responsible, Some(Responsible::FirstToAnswer))
                    })
        }
        None => false,
    };
    if !first_to_answer {
        return Ok(());
    }
    let Some(i) = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(conv.company_id))
        .one(conn)
        .await?
    else {
        return Ok(());
    };
    let meta: Metadata = serde_json::from_str(&i.metadata).unwrap_or_default();
    let crm_user = match who {
        Answerer::Member(author) => {
            let Some(u) = user::Entity::find_by_id(author).one(conn).await? else {
                return Ok(());
            };
            meta.users
                .iter()
                .find(|x| {
                    x.email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(&u.email))
                })
                .map(|x| x.id)
        }
        Answerer::CrmChatUser(r) => meta
            .users
            .iter()
            .find(|x| x.chat_user_id.as_deref() == Some(r))
            .map(|x| x.id),
    };
    if let Some(id) = crm_user {
        enqueue_item(
            conn,
            conv.company_id,
            conv.id,
            None,
            K_ASSIGN,
            serde_json::json!({ "crm_user_id": id }),
            now,
        )
        .await?;
    }
    Ok(())
}

/// A message was delivered (or failed for good): when it was a manager's answer written in
/// amoCRM, tell amoCRM (§4.7).
pub(crate) async fn on_delivery(
    core: &Core,
    message_id: Uuid,
    error: Option<&str>,
    blocked: bool,
) -> Result<()> {
    let row = core
        .db
        .query_one(stmt(
            core.db.get_database_backend(),
            "SELECT m.company_id AS company_id, m.conversation_id AS conversation_id, c.remote_id AS remote_id \
             FROM crm_messages c JOIN messages m ON m.id = c.message_id WHERE c.message_id = $1 AND c.kind = 'reply'",
            vec![message_id.into()],
        ))
        .await?;
    let Some(r) = row else {
        return Ok(());
    };
    let company: Uuid = r.try_get("", "company_id")?;
    let conv: Uuid = r.try_get("", "conversation_id")?;
    let msgid: String = r.try_get("", "remote_id")?;
    let payload = match error {
        None => serde_json::json!({ "msgid": msgid }),
        Some(e) => serde_json::json!({ "msgid": msgid, "error": e, "blocked": blocked }),
    };
    enqueue_item(
        &core.db,
        company,
        conv,
        Some(message_id),
        K_STATUS,
        payload,
        core.now(),
    )
    .await?;
    core.jobs_notify.notify_waiters();
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
    let text = match (&reply.media, reply.text.trim()) {
        (Some(url), "") => url.clone(),
        (Some(url), t) => format!("{t}\n{url}"),
        (None, t) => t.to_string(),
    };
    if text.is_empty() {
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
    let m = inbox::insert_outgoing(
        &txn,
        &mut pending,
        &conv,
        inbox::Outgoing {
            text: &text,
            author_id: None,
            author_name: format!("{} (amoCRM)", reply.manager_name),
            reply_to: None,
        },
        now,
    )
    .await?;
    record_message(&txn, conv.company_id, m.id, "reply", &reply.msgid, now).await?;
    assign_first_answer(&txn, &conv, Answerer::CrmChatUser(&reply.manager_ref), now).await?;
    txn.commit().await?;
    core.published(pending);
    core.jobs_notify.notify_waiters();
    Ok(HookOutcome::Accepted)
}

// ---- troubleshooting ----

/// One item the CRM has not taken, for the troubleshooting page.
#[derive(Clone, Debug, Serialize)]
pub struct FailedItem {
    pub id: i64,
    pub conversation_id: Uuid,
    pub customer: String,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub error: Option<String>,
    pub created_at: i64,
}

/// Everything the troubleshooting page shows.
#[derive(Clone, Debug, Serialize)]
pub struct Health {
    pub status: String,
    pub last_error: Option<String>,
    pub last_sync_at: Option<i64>,
    pub token_expires_soon: bool,
    pub pipelines: usize,
    pub users: usize,
    pub settings_ok: bool,
    pub chats_configured: bool,
    pub chats: ChatsState,
    pub webhook_url: Option<String>,
    pub pending: i64,
    pub failed: i64,
    pub items: Vec<FailedItem>,
}

pub async fn health(core: &Core, actor: &Actor) -> Result<Option<Health>> {
    actor.require(Permission::Read)?;
    let Some((i, meta)) = crm::get(core, actor).await? else {
        return Ok(None);
    };
    let db = &core.db;
    let backend = db.get_database_backend();
    let counts = db
        .query_one(stmt(
            backend,
            "SELECT coalesce(sum(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS p, \
             coalesce(sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS f FROM crm_outbox WHERE company_id = $1",
            vec![actor.company_id.into()],
        ))
        .await?;
    let (pending, failed) = counts
        .map(|r| {
            (
                r.try_get::<i64>("", "p").unwrap_or(0),
                r.try_get::<i64>("", "f").unwrap_or(0),
            )
        })
        .unwrap_or((0, 0));
    let rows = db
        .query_all(stmt(
            backend,
            "SELECT o.id AS id, o.conversation_id AS conversation_id, o.kind AS kind, o.status AS status, \
             o.attempts AS attempts, o.last_error AS last_error, o.created_at AS created_at, ct.name AS customer \
             FROM crm_outbox o LEFT JOIN conversations c ON c.id = o.conversation_id \
             LEFT JOIN contacts ct ON ct.id = c.contact_id \
             WHERE o.company_id = $1 AND (o.status = 'failed' OR o.attempts > 0) ORDER BY o.id LIMIT 100",
            vec![actor.company_id.into()],
        ))
        .await?;
    let mut items = Vec::new();
    for r in rows {
        items.push(FailedItem {
            id: r.try_get("", "id")?,
            conversation_id: r.try_get("", "conversation_id")?,
            customer: r
                .try_get::<Option<String>>("", "customer")?
                .unwrap_or_default(),
            kind: r.try_get("", "kind")?,
            status: r.try_get("", "status")?,
            attempts: r.try_get("", "attempts")?,
            error: r.try_get("", "last_error")?,
            created_at: r.try_get("", "created_at")?,
        });
    }
    let defaults = crm_settings::get(core, actor, None).await?;
    let chats = crm_settings::chats_state(db, actor.company_id).await?;
    let chats_configured = chats_client(core).is_some();
    Ok(Some(Health {
        status: i.status.clone(),
        last_error: i.last_error.clone(),
        last_sync_at: i.last_sync_at,
        token_expires_soon: false,
        pipelines: meta.pipelines.len(),
        users: meta.users.len(),
        settings_ok: defaults.validate(&meta).is_ok(),
        chats_configured,
        webhook_url: chats
            .scope_id
            .as_ref()
            .map(|s| format!("{}/hooks/amojo/{s}", core.config.public_url)),
        chats,
        pending,
        failed,
        items,
    }))
}

/// Puts failed items back in the queue: one (`Some(id)`) or all.
pub async fn retry(core: &Core, actor: &Actor, id: Option<i64>) -> Result<u64> {
    actor.require(Permission::Manage)?;
    let now = core.now();
    let backend = core.db.get_database_backend();
    let r = match id {
        Some(id) => {
            core.db
                .execute(stmt(
                    backend,
                    "UPDATE crm_outbox SET status = 'pending', attempts = 0, next_at = $1 \
                     WHERE company_id = $2 AND id = $3",
                    vec![now.into(), actor.company_id.into(), id.into()],
                ))
                .await?
        }
        None => {
            core.db
                .execute(stmt(
                    backend,
                    "UPDATE crm_outbox SET status = 'pending', attempts = 0, next_at = $1 \
                     WHERE company_id = $2 AND (status = 'failed' OR attempts > 0)",
                    vec![now.into(), actor.company_id.into()],
                ))
                .await?
        }
    };
    if id.is_some() && r.rows_affected() == 0 {
        return Err(CoreError::NotFound);
    }
    audit::record(
        &core.db,
        actor,
        now,
        "crm.retry",
        &id.map_or_else(|| "all".into(), |i| i.to_string()),
        serde_json::json!({ "items": r.rows_affected() }),
    )
    .await?;
    wake(core, actor.company_id).await?;
    Ok(r.rows_affected())
}
