//! Running sources of every kind: setting each up (webhook when a public URL is configured,
//! polling otherwise) and the pollers (exactly one per source across all nodes, through a lease;
//! the cursor advances only in the transaction that stores the events). Sending replies and
//! fetching files are the inbox's jobs (`inbox::send`); what differs by kind lives in
//! `crate::connectors`.

use crate::connectors;
use crate::connectors::model::{self as sources, CONNECTED, DISABLED, ERROR, TOKEN_REVOKED};
use crate::inbox::send::channel_to_job;
use crate::jobs::{BackgroundJob, JobError, JobMeta};
use crate::Core;
use async_trait::async_trait;
use chatter_channels::{ChannelError, PollState, Polled};
use chatter_domain::SourceId;
use chatter_store::entity::source;
use chatter_store::leases;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const LEASE_TTL_MS: i64 = 60_000;

// The source jobs (setup, sending, fetching files) for every kind are `SourceSetup`,
// `SendMessage` and `FetchFile` below; `crate::job_registry` lists them.

fn internal(e: impl std::fmt::Display) -> JobError {
    JobError::Transient(e.to_string())
}

/// The URL Telegram posts a source's updates to.
pub fn webhook_url(base: &str, source_id: SourceId) -> String {
    format!("{}/hooks/telegram/{source_id}", base.trim_end_matches('/'))
}

/// Sets a source up (webhook or polling) after it was added, reconnected or switched.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SourceSetup {
    pub source_id: SourceId,
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
        // A source whose kind has no provider connector (the API source: its customer's system
        // calls us) has nothing to set up at a provider: it is on when enabled.
        if chatter_channels::kind_of(src.kind).is_some_and(|k| !k.has_connector()) {
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
        let connector = connectors::connector_for(core, &src)
            .map_err(|e| JobError::Permanent(e.to_string()))?;
        let now = core.now();
        if src.status == DISABLED {
            connectors::stop(core, &src, connector.as_ref()).await;
            return Ok(());
        }
        match connectors::setup(core, &src, connector.as_ref()).await {
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
    let mut running: HashMap<SourceId, JoinHandle<()>> = HashMap::new();
    loop {
        running.retain(|_, h| !h.is_finished());
        match polling_sources(&core).await {
            Ok(ids) => {
                for (id, name) in ids {
                    if running.contains_key(&id) {
                        continue;
                    }
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

/// Sources to poll, with the name of their poller's lease.
async fn polling_sources(core: &Core) -> crate::Result<Vec<(SourceId, String)>> {
    let kinds: Vec<i32> = chatter_channels::connected_kinds()
        .map(|k| k.id())
        .collect();
    let all = source::Entity::find()
        .filter(source::Column::Kind.is_in(kinds))
        .filter(source::Column::Status.is_in([CONNECTED, ERROR]))
        .all(&core.db)
        .await?;
    Ok(all
        .into_iter()
        .filter(|s| sources::settings_of(s).mode == "polling")
        .filter_map(|s| Some((s.id, chatter_channels::kind_of(s.kind)?.lease_name(s.id.0))))
        .collect())
}

async fn poll_loop(core: Core, id: SourceId, lease: String, mut stop: watch::Receiver<bool>) {
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
        let connector = match connectors::connector_for(&core, &src) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, source = %id, "cannot read the source's credentials");
                break;
            }
        };
        let r = tokio::select! {
            r = connectors::poll_once(&core, &src, connector.as_ref(), &mut state) => r,
            _ = stop.changed() => break,
        };
        let now = core.now();
        match r {
            Ok(Polled {
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
                    connectors::name_senders(&core, &src, &mut evs).await;
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
                if let Some(pause) = connector.poll_pause() {
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
                if failures >= 3
                    || matches!(e, ChannelError::Permanent(_) | ChannelError::Blocked(_))
                {
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
