//! The drain job: holds the company's lease, opens a session with amoCRM, and works due outbox
//! items in order within a time budget; rate limits, a revoked token and refusals stop or park
//! items as described in the module above.

use super::*;

#[derive(Clone, Debug)]
pub(super) struct Item {
    pub(super) id: i64,
    pub(super) conversation_id: Uuid,
    pub(super) message_id: Option<Uuid>,
    pub(super) kind: String,
    pub(super) payload: serde_json::Value,
    pub(super) attempts: i32,
}

/// What a step of the drain says about the whole run.
pub(super) enum Stop {
    /// amoCRM asked us to wait.
    RateLimited(u64, String),
    /// The token is revoked: hold everything.
    Held(String),
}

/// Works a company's CRM outbox: one per company at a time, by its dedup key.
#[derive(Serialize, Deserialize)]
pub struct CrmDrain {
    pub company_id: Uuid,
}

#[async_trait]
impl BackgroundJob for CrmDrain {
    const NAME: &'static str = "crm_drain";
    // Held work (a revoked token) waits as long as it takes; attempts are not a budget here.
    const MAX_ATTEMPTS: i32 = 1_000_000;

    fn dedup_key(&self) -> Option<String> {
        Some(format!("{}:{}", Self::NAME, self.company_id))
    }

    async fn run(&self, core: &Core, job: &JobMeta) -> std::result::Result<(), JobError> {
        let company_id = self.company_id;
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
        let r = drain(core, company_id, &lease, &holder, job.id).await;
        let _ = leases::release(&core.db, &lease, &holder).await;
        r
    }

    async fn done(&self, core: &Core, job: &JobMeta) {
        // Work that arrived while this drain finished found the dedup key taken: look again.
        let Some(company_id) = job.company_id else {
            return;
        };
        match next_due(&core.db, company_id).await {
            Ok(Some(at)) => {
                let now = core.now();
                if let Err(e) = queue_drain(&core.db, company_id, now, at.max(now)).await {
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
pub(super) async fn next_due(conn: &impl ConnectionTrait, company_id: Uuid) -> Result<Option<i64>> {
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            "SELECT min(next_at) AS t FROM crm_outbox WHERE company_id = $1 AND status = 'pending'",
            vec![company_id.into()],
        ))
        .await?;
    Ok(row.and_then(|r| r.try_get::<Option<i64>>("", "t").ok().flatten()))
}

pub(super) fn store_err(e: impl std::fmt::Display) -> JobError {
    JobError::Transient(e.to_string())
}

/// Everything a run needs about the company's CRM.
pub(super) struct Session {
    pub(super) integration: crm_integration::Model,
    pub(super) meta: Metadata,
    pub(super) api: AmoCrm,
    pub(super) chats: Option<(ChatsClient, String)>,
}

pub(super) async fn open_session(
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
    if i.status == crm::integration::DISCONNECTED || i.tokens.is_none() {
        return Ok(None);
    }
    if i.status == crm::integration::TOKEN_INVALID && !force_refresh {
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
    let meta: Metadata =
        chatter_store::stored_json::read("crm_integrations.metadata", i.company_id, &i.metadata);
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

pub(super) fn chats_client(core: &Core) -> Option<ChatsClient> {
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
pub(super) async fn chats_scope(
    core: &Core,
    i: &crm_integration::Model,
    api: &AmoCrm,
) -> std::result::Result<Option<(ChatsClient, String)>, JobError> {
    let Some(client) = chats_client(core) else {
        return Ok(None);
    };
    let st = crm_settings::chats_state(&core.db, i.company_id.into())
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
            crm_settings::store_chats_state(&core.db, i.company_id.into(), &st, core.now())
                .await
                .map_err(store_err)?;
            Ok(None)
        }
    }
}

pub(super) async fn connect_chats(
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
    crm_settings::store_chats_state(&core.db, i.company_id.into(), &st, core.now())
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

/// The wait of a drain while the company may not sync (`billing::gate`), with its hold
/// recorded; `None` when it may.
async fn billing_hold(
    core: &Core,
    company_id: Uuid,
    job: Uuid,
) -> std::result::Result<Option<JobError>, JobError> {
    use crate::billing::gate;
    let e = |e: crate::CoreError| JobError::Transient(e.to_string());
    if gate::check(core, company_id, gate::Purpose::Sync)
        .await
        .map_err(e)?
        .is_none()
    {
        return Ok(None);
    }
    gate::hold(core, company_id, job).await.map_err(e)?;
    Ok(Some(JobError::Wait {
        retry_after_ms: gate::HOLD_RECHECK_MS,
        message: gate::PAUSED.into(),
    }))
}

pub(super) async fn drain(
    core: &Core,
    company_id: Uuid,
    lease: &str,
    holder: &str,
    job: Uuid,
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
        // Over the plan's limit (or after the trial) the CRM sync waits, asked before every
        // pass; the outbox keeps its order and is drained once the limit is lifted.
        if let Some(held) = billing_hold(core, company_id, job).await? {
            return Err(held);
        }
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
                crm::mark(
                    core,
                    session.integration.id,
                    crm::integration::TOKEN_INVALID,
                    Some(why),
                )
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

pub(super) async fn due_items(
    conn: &impl ConnectionTrait,
    company_id: Uuid,
    now: i64,
) -> Result<Vec<Item>> {
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
            payload: chatter_store::stored_json::read(
                "crm_outbox.payload",
                r.try_get::<i64>("", "id").unwrap_or_default(),
                &r.try_get::<String>("", "payload")?,
            ),
            attempts: r.try_get("", "attempts")?,
        });
    }
    Ok(out)
}

/// The conversations (among `items`) whose earlier items are still waiting: their later
/// items must wait too, to keep the order.
pub(super) async fn blocked_conversations(
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

pub(super) fn stop_of(e: &CrmError) -> Option<Stop> {
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
pub(super) async fn step(
    core: &Core,
    s: &Session,
    items: &[Item],
) -> std::result::Result<(), Stop> {
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
                None => match open_chat(core, client, scope, (*conv).into()).await {
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
                        set_chat(&core.db, (*conv).into(), chat, true)
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
    // Conversations whose message waits for its files: nothing of theirs overtakes it.
    let mut held: HashSet<Uuid> = HashSet::new();
    for item in items {
        if blocked.contains(&item.conversation_id) || held.contains(&item.conversation_id) {
            continue;
        }
        // Strict order per conversation: one item per conversation per pass, unless notes.
        let Some(link) = synced.get(&item.conversation_id) else {
            continue;
        };
        let r = match item.kind.as_str() {
            K_MESSAGE if waiting_for_files(core, item).await.map_err(db_stop)? => {
                // The customer's file is still coming from the messenger: amoCRM gets it as a
                // file a moment later rather than as its name now.
                postpone(core, item, FILE_RETRY_MS).await.map_err(db_stop)?;
                held.insert(item.conversation_id);
                continue;
            }
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
            K_NOTE => match note_of(item) {
                Some(text) => {
                    notes.push((item, link.deal_id, text));
                    if notes.len() >= s.api.max_batch() {
                        break;
                    }
                    continue;
                }
                None => Err(CrmError::permanent("a note item without its text")),
            },
            K_STATUS => status_back(core, s, item).await,
            K_ASSIGN => assign_first(core, s, item, link).await,
            K_RESPONSIBLE => set_responsible(core, s, item, link).await,
            K_STAGE => match item.payload["status_id"].as_i64() {
                Some(status) => {
                    let pipeline = item.payload["pipeline_id"].as_i64();
                    s.api.move_deal(link.deal_id, pipeline, status).await
                }
                None => Err(CrmError::permanent("a stage item without its stage")),
            },
            K_CONTACT => contact_change(core, s, item, link).await,
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
                            company_id.into(),
                            m.into(),
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

pub(super) fn db_stop(e: CoreError) -> Stop {
    tracing::warn!(error = %e, "CRM drain: database error");
    Stop::RateLimited(1, e.to_string())
}

/// Records an item's outcome: done (deleted), retried later, or parked as failed.
pub(super) async fn settle(
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
