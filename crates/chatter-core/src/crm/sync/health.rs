//! Troubleshooting: what the CRM has not taken, for the settings page, and retrying it.

use super::*;

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
