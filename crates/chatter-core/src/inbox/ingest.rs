//! Group commit for webhooks. Each webhook request hands its event to the ingester and waits;
//! the ingester writes whatever has gathered (up to `MAX_BATCH`) in ONE transaction and
//! answers every waiter after the commit. Durability is unchanged — nothing is acknowledged
//! before its commit is on disk — but one fsync serves many requests.
//!
//! An event that can never be stored (see `dead_letters`) is parked and answered as done, so
//! the provider stops delivering it; an event of a source turned off is answered `SourceOff`
//! and stored nowhere.

use crate::events::Pending;
use crate::inbox::dead_letters;
use crate::inbox::Ingested;
use crate::{Core, CoreError, Result};
use chatter_channels::InboundEvent;
use chatter_store::entity::source;
use sea_orm::TransactionTrait;
use tokio::sync::{mpsc, oneshot};

pub const MAX_BATCH: usize = 512;

struct Item {
    src: source::Model,
    ev: InboundEvent,
    /// What the provider sent, kept if the event has to be parked.
    raw: Option<String>,
    /// A row that belongs with the message, written in its transaction when it is new.
    side: Option<ApiInboundRow>,
    done: oneshot::Sender<Result<Ingested, String>>,
}

/// What the API source keeps beside a message it received (`api_inbound`): the call's
/// idempotency key, the UTM tags and the sender's e-mail. Written in the message's own
/// transaction, so the CRM sync that the commit starts always finds the deal's UTM tags.
#[derive(Clone, Debug, Default)]
pub struct ApiInboundRow {
    pub idempotency_key: Option<String>,
    /// utm_source, utm_medium, utm_campaign, utm_content, utm_term.
    pub utm: [Option<String>; 5],
    pub email: Option<String>,
}

impl ApiInboundRow {
    /// Writes the row of message `message_id` of `src` (nothing if it has one already).
    pub async fn insert(
        &self,
        conn: &impl sea_orm::ConnectionTrait,
        src: chatter_domain::SourceId,
        message_id: chatter_domain::MessageId,
        now: i64,
    ) -> Result<()> {
        let [utm_source, utm_medium, utm_campaign, utm_content, utm_term] = self.utm.clone();
        conn.execute(chatter_store::stmt(
            conn.get_database_backend(),
            "INSERT INTO api_inbound (message_id, source_id, idempotency_key, utm_source, \
             utm_medium, utm_campaign, utm_content, utm_term, sender_email, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            vec![
                message_id.into(),
                src.into(),
                self.idempotency_key.clone().into(),
                utm_source.into(),
                utm_medium.into(),
                utm_campaign.into(),
                utm_content.into(),
                utm_term.into(),
                self.email.clone().into(),
                now.into(),
            ],
        ))
        .await?;
        Ok(())
    }
}

/// The handle webhook handlers submit to.
#[derive(Clone)]
pub struct Ingester {
    /// One queue per writer task; a chat's events always go to the same one.
    tx: std::sync::Arc<[mpsc::Sender<Item>]>,
}

/// Writer tasks on PostgreSQL (SQLite has one writer, so one task writes there). Each writes
/// its own batches in its own transaction; a commit's disk flush then serves several writers'
/// batches at once (PostgreSQL's group commit). More writers than this only make smaller
/// batches on the same cores (`chatter-bench ingest`).
pub const POSTGRES_WRITERS: usize = 3;

impl Ingester {
    /// Starts the writer tasks.
    ///
    /// On PostgreSQL several tasks write batches side by side (live streams cope with event ids
    /// that commit out of order, see `events::Cursor`). Events are dealt to them by chat, so two
    /// writers never wait for each other's row locks on one conversation (nor deadlock on two),
    /// and a chat's messages are stored in the order they came.
    pub fn start(core: Core) -> Ingester {
        let writers = if core.database_url_is_postgres() {
            POSTGRES_WRITERS
        } else {
            1
        };
        let mut tx = Vec::with_capacity(writers);
        for _ in 0..writers {
            let (t, rx) = mpsc::channel(MAX_BATCH * 8);
            tx.push(t);
            tokio::spawn(run(core.clone(), rx));
        }
        Ingester { tx: tx.into() }
    }

    /// The writer of `ev`'s chat.
    fn queue_of(&self, src: &source::Model, ev: &InboundEvent) -> &mpsc::Sender<Item> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        src.id.hash(&mut h);
        match ev {
            InboundEvent::Message(m) | InboundEvent::Mirrored(m) => m.chat.external_id.hash(&mut h),
            InboundEvent::Blocked { chat, .. } => chat.external_id.hash(&mut h),
            InboundEvent::Status { external_id, .. } => external_id.hash(&mut h),
            InboundEvent::Ignored { .. } => {}
        }
        &self.tx[(h.finish() % self.tx.len() as u64) as usize]
    }

    /// Stores `ev`; returns once it is committed (or failed).
    pub async fn submit(&self, src: source::Model, ev: InboundEvent) -> Result<Ingested> {
        self.submit_item(src, ev, None, None).await
    }

    /// Stores `ev` of an API source with its side row, in one transaction.
    pub async fn submit_api(
        &self,
        src: source::Model,
        ev: InboundEvent,
        side: ApiInboundRow,
    ) -> Result<Ingested> {
        self.submit_item(src, ev, None, Some(side)).await
    }

    /// Stores `ev` (normalised here: every string made storable), keeping `raw` — the body
    /// the provider sent — should the event have to be parked.
    pub async fn submit_raw(
        &self,
        src: source::Model,
        ev: InboundEvent,
        raw: Option<String>,
    ) -> Result<Ingested> {
        self.submit_item(src, ev, raw, None).await
    }

    async fn submit_item(
        &self,
        src: source::Model,
        mut ev: InboundEvent,
        raw: Option<String>,
        side: Option<ApiInboundRow>,
    ) -> Result<Ingested> {
        crate::connectors::normalize(&mut ev);
        let (done, rx) = oneshot::channel();
        self.queue_of(&src, &ev)
            .send(Item {
                src,
                ev,
                raw,
                side,
                done,
            })
            .await
            .map_err(|_| CoreError::Internal("ingester stopped".into()))?;
        rx.await
            .map_err(|_| CoreError::Internal("ingester dropped the request".into()))?
            .map_err(CoreError::Internal)
    }
}

async fn run(core: Core, mut rx: mpsc::Receiver<Item>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(i) => batch.push(i),
                Err(_) => break,
            }
        }
        match write(&core, &batch).await {
            Ok(results) => {
                for (item, r) in batch.drain(..).zip(results) {
                    let _ = item.done.send(Ok(r));
                }
            }
            Err(e) => {
                // One bad event must not fail its neighbours: write them one by one.
                tracing::warn!(error = %e, size = batch.len(), "batch ingest failed; retrying one by one");
                for item in batch.drain(..) {
                    let r = match write(&core, std::slice::from_ref(&item)).await {
                        Ok(mut v) => Ok(v.pop().unwrap_or(Ingested::Other)),
                        // Never storable as it is: park it, so the provider stops retrying.
                        Err(e) if dead_letters::is_permanent(&e) => dead_letters::park(
                            &core,
                            &item.src,
                            &item.ev,
                            item.raw.as_deref(),
                            &dead_letters::reason(&e),
                        )
                        .await
                        .map(Ingested::Parked)
                        .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = item.done.send(r);
                }
            }
        }
    }
}

async fn write(core: &Core, items: &[Item]) -> Result<Vec<Ingested>> {
    let now = core.now();
    let txn = core.db.begin().await?;
    let mut pending = Pending::default();
    // Read in the transaction: a source turned off meanwhile stores nothing more.
    let off = sources_off(&txn, items).await?;
    let live: Vec<usize> = (0..items.len())
        .filter(|i| !off.contains(&items[*i].src.id))
        .collect();
    let batch: Vec<(&source::Model, &InboundEvent)> = live
        .iter()
        .map(|i| (&items[*i].src, &items[*i].ev))
        .collect();
    let stored = crate::inbox::batch::ingest_many(&txn, &mut pending, &batch, now).await?;
    let mut out = vec![Ingested::SourceOff; items.len()];
    for (i, r) in live.into_iter().zip(stored) {
        out[i] = r;
    }
    for (i, r) in items.iter().zip(&out) {
        if let (Some(side), Ingested::New(id)) = (&i.side, r) {
            side.insert(&txn, i.src.id, *id, now).await?;
        }
    }
    let mut touched: Vec<chatter_domain::SourceId> = Vec::new();
    for (i, r) in items.iter().zip(&out) {
        if matches!(r, Ingested::New(_) | Ingested::Edited(_)) && !touched.contains(&i.src.id) {
            touched.push(i.src.id);
        }
    }
    if !touched.is_empty() {
        touch_sources(&txn, &touched, now).await?;
    }
    txn.commit().await?;
    core.published_after_commit(pending).await;
    if out.iter().any(|i| matches!(i, Ingested::New(_))) {
        core.jobs_notify.notify_waiters();
    }
    Ok(out)
}

/// How stale a source's `last_inbound_at` / `last_ok_at` may be before a batch writes them.
const TOUCH_EVERY_MS: i64 = 1000;

/// Records that `sources` received messages at `now`. A source row is one hot row for every
/// writer: updating it in each batch would make every transaction wait for the previous one's
/// commit (the row lock is held until then) and forfeit PostgreSQL's group commit. So only a
/// batch that finds the times older than [`TOUCH_EVERY_MS`] writes them: a source's times are
/// at most that much behind, and other writers skip the row instead of queueing on it.
async fn touch_sources(
    txn: &impl sea_orm::ConnectionTrait,
    sources: &[chatter_domain::SourceId],
    now: i64,
) -> Result<()> {
    use sea_orm::{sea_query::Expr, ColumnTrait, Condition, EntityTrait, QueryFilter};
    let stale = now - TOUCH_EVERY_MS;
    source::Entity::update_many()
        .col_expr(source::Column::LastInboundAt, Expr::value(now))
        .col_expr(source::Column::LastOkAt, Expr::value(now))
        .filter(source::Column::Id.is_in(sources.iter().copied()))
        .filter(
            Condition::any()
                .add(source::Column::LastInboundAt.is_null())
                .add(source::Column::LastInboundAt.lte(stale))
                .add(source::Column::LastInboundAt.gt(now))
                .add(source::Column::LastOkAt.is_null())
                .add(source::Column::LastOkAt.lte(stale))
                .add(source::Column::LastOkAt.gt(now)),
        )
        .exec(txn)
        .await?;
    Ok(())
}

/// The sources among `items`' that are turned off.
async fn sources_off(
    txn: &impl sea_orm::ConnectionTrait,
    items: &[Item],
) -> Result<std::collections::HashSet<chatter_domain::SourceId>> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
    let mut ids: Vec<chatter_domain::SourceId> = items.iter().map(|i| i.src.id).collect();
    ids.sort();
    ids.dedup();
    let off: Vec<chatter_domain::SourceId> = source::Entity::find()
        .filter(source::Column::Id.is_in(ids))
        .filter(source::Column::Status.eq(crate::connectors::model::DISABLED))
        .select_only()
        .column(source::Column::Id)
        .into_tuple()
        .all(txn)
        .await?;
    Ok(off.into_iter().collect())
}
