//! Instance operators: the people who run this Chatter installation (backups, every company's
//! failed jobs), as opposed to a company's owner. Named from the command line only
//! (`chatter admin operator add EMAIL`), never from the web, so that nobody who can sign up can
//! become one. The operator area answers 404 to everyone else.

use crate::jobs::BackgroundJob;
use crate::{audit, backup, Core, CoreError, ReqMeta, Result};
use chatter_store::entity::{job, operator, user};
use chatter_store::jobs;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use uuid::Uuid;

/// The operator acting in the operator area.
#[derive(Clone, Debug)]
pub struct Operator {
    pub user_id: Uuid,
    pub email: String,
    pub meta: ReqMeta,
}

/// Whether `user_id` is an operator.
pub async fn is_operator(core: &Core, user_id: Uuid) -> Result<bool> {
    Ok(operator::Entity::find_by_id(user_id)
        .one(&core.db)
        .await?
        .is_some())
}

/// The operator behind a signed-in user, or `NotFound` (the area does not exist for others).
pub async fn require(core: &Core, user: &user::Model, meta: &ReqMeta) -> Result<Operator> {
    if is_operator(core, user.id).await? {
        Ok(Operator {
            user_id: user.id,
            email: user.email.clone(),
            meta: meta.clone(),
        })
    } else {
        Err(CoreError::NotFound)
    }
}

fn cli_meta() -> ReqMeta {
    ReqMeta {
        ip: "local".into(),
        user_agent: "chatter admin".into(),
    }
}

async fn user_by_email(core: &Core, email: &str) -> Result<user::Model, String> {
    crate::accounts::find_user_by_email(&core.db, email)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "no account with the e-mail {:?}; the person signs up first, then is made an operator",
                email.trim()
            )
        })
}

/// Makes the account with `email` an operator (the CLI). Adding one twice changes nothing.
pub async fn add(core: &Core, email: &str) -> Result<String, String> {
    let u = user_by_email(core, email).await?;
    if is_operator(core, u.id).await.map_err(|e| e.to_string())? {
        return Ok(format!("{} is already an operator", u.email));
    }
    let r: Result<()> = async {
        let now = core.now();
        let txn = core.db.begin().await?;
        operator::ActiveModel {
            user_id: Set(u.id),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        audit::insert(
            &txn,
            None,
            None,
            "cli",
            &cli_meta(),
            now,
            "operator.add",
            &u.email,
            serde_json::json!({"user_id": u.id}),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }
    .await;
    r.map_err(|e| e.to_string())?;
    Ok(format!("{} is now an operator", u.email))
}

/// Takes the operator role away (the CLI).
pub async fn remove(core: &Core, email: &str) -> Result<String, String> {
    let u = user_by_email(core, email).await?;
    let r: Result<u64> = async {
        let now = core.now();
        let txn = core.db.begin().await?;
        let n = operator::Entity::delete_by_id(u.id)
            .exec(&txn)
            .await?
            .rows_affected;
        if n > 0 {
            audit::insert(
                &txn,
                None,
                None,
                "cli",
                &cli_meta(),
                now,
                "operator.remove",
                &u.email,
                serde_json::json!({"user_id": u.id}),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(n)
    }
    .await;
    match r.map_err(|e| e.to_string())? {
        0 => Err(format!("{} is not an operator", u.email)),
        _ => Ok(format!("{} is no longer an operator", u.email)),
    }
}

/// Operators' e-mails with when they were named (UTC), oldest first.
pub async fn list(core: &Core) -> Result<Vec<(String, String)>> {
    let ops = operator::Entity::find()
        .order_by_asc(operator::Column::CreatedAt)
        .all(&core.db)
        .await?;
    let ids: Vec<Uuid> = ops.iter().map(|o| o.user_id).collect();
    let users = user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(&core.db)
        .await?;
    Ok(ops
        .into_iter()
        .filter_map(|o| {
            users.iter().find(|u| u.id == o.user_id).map(|u| {
                let since = chrono::DateTime::from_timestamp_millis(o.created_at)
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default();
                (u.email.clone(), since)
            })
        })
        .collect())
}

/// What the operator area shows.
pub struct Overview {
    pub backups: Vec<chatter_store::entity::backup::Model>,
    pub next_backup: Option<i64>,
    /// Dead jobs of every company, newest first.
    pub dead_jobs: Vec<job::Model>,
}

pub async fn overview(core: &Core, _op: &Operator) -> Result<Overview> {
    let next_backup = jobs::list(&core.db, jobs::QUEUED, None, 500)
        .await?
        .into_iter()
        .filter(|j| j.kind == backup::DailyBackup::NAME)
        .map(|j| j.run_at)
        .min();
    Ok(Overview {
        backups: backup::list(core, 50).await?,
        next_backup,
        dead_jobs: jobs::list(&core.db, jobs::DEAD, None, 200).await?,
    })
}

/// Makes a backup now (pruned like the daily ones) and audits it.
pub async fn backup_now(core: &Core, op: &Operator, db_url: &str) -> Result<bool> {
    let made = backup::backup_now(core, db_url, "manual").await;
    let _ = backup::prune(core, core.config.backup_keep).await;
    let detail = match &made {
        Ok(b) => serde_json::json!({"path": b.path, "size": b.size_bytes}),
        Err(e) => serde_json::json!({"error": e.to_string()}),
    };
    audit::insert(
        &core.db,
        None,
        Some(op.user_id),
        &op.email,
        &op.meta,
        core.now(),
        "backup.create",
        "database",
        detail,
    )
    .await?;
    Ok(made.is_ok())
}

/// Runs a dead job (of any company) again.
pub async fn retry_job(core: &Core, op: &Operator, id: Uuid) -> Result<()> {
    let dead = job::Entity::find_by_id(id).one(&core.db).await?;
    let company = dead.as_ref().and_then(|j| j.company_id);
    if !jobs::retry_dead(&core.db, id, None, core.now()).await? {
        return Err(CoreError::NotFound);
    }
    core.jobs_notify.notify_waiters();
    audit::insert(
        &core.db,
        company,
        Some(op.user_id),
        &op.email,
        &op.meta,
        core.now(),
        "job.retry",
        &id.to_string(),
        serde_json::json!({}),
    )
    .await?;
    Ok(())
}
