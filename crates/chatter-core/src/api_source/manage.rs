//! Managing API sources: creating one, rotating its signing secret, setting its outgoing
//! webhook URL (checked as a public address), and the delivery log with replays.

use super::*;

/// Creates an API source; returns its id and the signing secret (shown once).
pub async fn create(core: &Core, actor: &Actor, name: &str) -> Result<(SourceId, String)> {
    actor.require(Permission::Manage)?;
    let name =
        required_text("name", name, limits::SHORT_NAME).map_err(|e| CoreError::Invalid(vec![e]))?;
    let (plain, enc) = new_secret(core);
    let now = core.now();
    let id = SourceId::new();
    let txn = core.db.begin().await?;
    source::ActiveModel {
        id: Set(id),
        company_id: Set(actor.company_id),
        kind: Set(SourceKind::Api),
        name: Set(name.clone()),
        secret: Set(Some(enc)),
        settings: Set(serde_json::to_string(&ApiSettings::default()).unwrap_or_default()),
        status: Set(crate::connectors::model::CONNECTED.into()),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        cursor: Set(None),
        last_inbound_at: Set(None),
        last_ok_at: Set(Some(now)),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        now,
        "source.create",
        &name,
        json!({"kind": SourceKind::Api.as_str(), "source_id": id}),
    )
    .await?;
    txn.commit().await?;
    Ok((id, plain))
}

/// An API source of the actor's company.
pub async fn get(core: &Core, actor: &Actor, id: SourceId) -> Result<source::Model> {
    actor.require(Permission::Read)?;
    source::Entity::find_by_id(id)
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .filter(source::Column::Kind.eq(SourceKind::Api))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)
}

/// Replaces the signing secret; the old one stops working at once. Returns the new one.
pub async fn rotate_secret(core: &Core, actor: &Actor, id: SourceId) -> Result<String> {
    actor.require(Permission::Manage)?;
    let s = get(core, actor, id).await?;
    let (plain, enc) = new_secret(core);
    let now = core.now();
    let txn = core.db.begin().await?;
    let name = s.name.clone();
    let mut am = s.into_active_model();
    am.secret = Set(Some(enc));
    am.updated_at = Set(now);
    am.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        now,
        "source.rotate_secret",
        &name,
        json!({"source_id": id}),
    )
    .await?;
    txn.commit().await?;
    Ok(plain)
}

/// Sets (or, with an empty `url`, clears) where the source's outgoing webhooks go.
pub async fn set_webhook_url(core: &Core, actor: &Actor, id: SourceId, url: &str) -> Result<()> {
    actor.require(Permission::Manage)?;
    let url = url.trim();
    let s = get(core, actor, id).await?;
    let url = if url.is_empty() {
        None
    } else {
        if url.chars().count() > limits::URL {
            return Err(CoreError::Invalid(vec![FieldError::too_long(
                "webhook_url",
                limits::URL,
            )]));
        }
        egress::check_url(url, core.config.allow_private_targets)
            .await
            .map_err(|r| CoreError::field("webhook_url", r.key()))?;
        Some(url.to_string())
    };
    let now = core.now();
    let mut settings = settings_of(&s);
    if settings.webhook_url == url {
        return Ok(());
    }
    if settings.webhook_url.is_none() {
        settings.webhook_since = now;
    }
    settings.webhook_url = url.clone();
    let txn = core.db.begin().await?;
    let name = s.name.clone();
    let mut am = s.into_active_model();
    am.settings = Set(serde_json::to_string(&settings).unwrap_or_default());
    am.updated_at = Set(now);
    am.update(&txn).await?;
    if url.is_some() {
        start_dispatcher(&txn, now).await?;
    }
    audit::record(
        &txn,
        actor,
        now,
        "source.webhook_url",
        &name,
        json!({"source_id": id, "url": url}),
    )
    .await?;
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// Makes sure the dispatcher runs, starting at the end of the event log the first time.
pub(super) async fn start_dispatcher(conn: &impl ConnectionTrait, now: i64) -> Result<()> {
    // `WHERE TRUE`: without it SQLite reads `ON CONFLICT` as a join constraint.
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO api_webhook_cursor (name, last_event_id, updated_at) \
         SELECT $1, COALESCE(MAX(id), 0), $2 FROM events WHERE TRUE ON CONFLICT (name) DO NOTHING",
        vec![CURSOR.into(), now.into()],
    ))
    .await?;
    Dispatch {}.enqueue(conn, JobOptions::at(now)).await?;
    Ok(())
}

/// A delivery as the log shows it.
#[derive(Clone, Debug)]
pub struct DeliveryRow {
    pub delivery: delivery::Model,
    /// When the next attempt is due, while one is.
    pub next_retry_at: Option<i64>,
}

/// The source's latest deliveries, newest first.
pub async fn deliveries(
    core: &Core,
    actor: &Actor,
    source_id: SourceId,
    limit: u64,
) -> Result<Vec<DeliveryRow>> {
    get(core, actor, source_id).await?;
    let ds = delivery::Entity::find()
        .filter(delivery::Column::SourceId.eq(source_id))
        .order_by_desc(delivery::Column::CreatedAt)
        .order_by_desc(delivery::Column::Id)
        .limit(limit)
        .all(&core.db)
        .await?;
    let job_ids: Vec<Uuid> = ds
        .iter()
        .filter(|d| d.status == PENDING)
        .filter_map(|d| d.job_id)
        .collect();
    let queued = job::Entity::find()
        .filter(job::Column::Id.is_in(job_ids))
        .filter(job::Column::Status.eq(jobs::QUEUED))
        .all(&core.db)
        .await?;
    Ok(ds
        .into_iter()
        .map(|d| DeliveryRow {
            next_retry_at: d
                .job_id
                .and_then(|j| queued.iter().find(|q| q.id == j))
                .filter(|_| d.status == PENDING)
                .map(|q| q.run_at),
            delivery: d,
        })
        .collect())
}

/// Sends a delivery again (whatever its state), with a fresh set of attempts.
pub async fn replay(
    core: &Core,
    actor: &Actor,
    source_id: SourceId,
    delivery_id: Uuid,
) -> Result<()> {
    actor.require(Permission::Manage)?;
    let s = get(core, actor, source_id).await?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let d = delivery::Entity::find_by_id(delivery_id)
        .filter(delivery::Column::SourceId.eq(s.id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    requeue(&txn, d.clone(), now).await?;
    audit::record(
        &txn,
        actor,
        now,
        "source.webhook_replay",
        &s.name,
        json!({"source_id": s.id, "delivery_id": d.id, "type": d.event_type}),
    )
    .await?;
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// Puts a delivery back to pending with a new job.
pub(super) async fn requeue(
    conn: &impl ConnectionTrait,
    d: delivery::Model,
    now: i64,
) -> Result<()> {
    let job_id = queue_delivery(conn, &d, now).await?;
    let mut am = d.into_active_model();
    am.status = Set(PENDING.into());
    am.updated_at = Set(now);
    if job_id.is_some() {
        am.job_id = Set(job_id);
    }
    am.update(conn).await?;
    Ok(())
}

/// Queues the job that posts `d`; `None` when one is already pending.
pub(super) async fn queue_delivery(
    conn: &impl ConnectionTrait,
    d: &delivery::Model,
    now: i64,
) -> Result<Option<Uuid>> {
    Deliver { delivery_id: d.id }
        .enqueue(conn, JobOptions::at(now).company(d.company_id))
        .await
}
