//! Sources: the messenger accounts a company connects (MISSION R1). Credentials are validated
//! against the provider before anything is stored, kept encrypted, and the source's health
//! (connected, mode, last message, last error) is tracked for the Sources page.

use crate::{audit, Actor, Core, CoreError, Result};
use chatter_channels::{telegram::TelegramClient, ChannelError};
use chatter_domain::{values::required_text, Permission, SourceKind};
use chatter_store::entity::source;
use chatter_store::jobs::{self, NewJob};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const JOB_SOURCE_SETUP: &str = "source_setup";

pub const CONNECTING: &str = "connecting";
pub const CONNECTED: &str = "connected";
pub const TOKEN_REVOKED: &str = "token_revoked";
pub const ERROR: &str = "error";
pub const DISABLED: &str = "disabled";

/// Credentials, stored encrypted.
#[derive(Clone, Serialize, Deserialize)]
pub struct SourceSecret {
    pub token: String,
    /// What Telegram must send in `X-Telegram-Bot-Api-Secret-Token`.
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for SourceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceSecret(***)")
    }
}

/// Public settings (JSON in `sources.settings`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SourceSettings {
    /// webhook | polling
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub bot_id: String,
    #[serde(default)]
    pub bot_name: String,
    #[serde(default)]
    pub bot_username: Option<String>,
}

pub fn settings_of(s: &source::Model) -> SourceSettings {
    serde_json::from_str(&s.settings).unwrap_or_default()
}

pub fn secret_of(core: &Core, s: &source::Model) -> Result<SourceSecret> {
    let enc = s
        .secret
        .as_deref()
        .ok_or(CoreError::Internal("source has no credentials".into()))?;
    let plain = core
        .secrets
        .decrypt(enc)
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    serde_json::from_str(plain.expose())
        .map_err(|e| CoreError::Internal(format!("bad source secret: {e}")))
}

pub fn telegram_client(core: &Core, s: &source::Model) -> Result<TelegramClient> {
    let secret = secret_of(core, s)?;
    Ok(TelegramClient::new(
        core.http.clone(),
        &core.config.telegram_api_base,
        &secret.token,
    ))
}

/// Connects a Telegram bot by its token: checked with getMe first, so a wrong token changes nothing.
pub async fn add_telegram_bot(core: &Core, actor: &Actor, name: &str, token: &str) -> Result<Uuid> {
    actor.require(Permission::Manage)?;
    let token = token.trim();
    let looks_right = token.split_once(':').is_some_and(|(id, rest)| {
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) && rest.len() >= 20
    });
    if !looks_right {
        return Err(CoreError::field("token", "err.token_format"));
    }
    let client = TelegramClient::new(core.http.clone(), &core.config.telegram_api_base, token);
    let me = match client.get_me().await {
        Ok(me) => me,
        Err(ChannelError::Unauthorized(_)) => {
            return Err(CoreError::field("token", "err.token_rejected"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "getMe failed while adding a bot");
            return Err(CoreError::field("token", "err.provider_unreachable"));
        }
    };
    let name = match name.trim() {
        "" => me
            .username
            .clone()
            .map(|u| format!("@{u}"))
            .unwrap_or_else(|| me.name.clone()),
        n => required_text("name", n, 80).map_err(|e| CoreError::Invalid(vec![e]))?,
    };
    let now = core.now();
    let txn = core.db.begin().await?;
    let dup = source::Entity::find()
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .filter(source::Column::Kind.eq(SourceKind::TelegramBot.id()))
        .all(&txn)
        .await?
        .into_iter()
        .any(|s| settings_of(&s).bot_id == me.id && s.status != DISABLED);
    if dup {
        return Err(CoreError::field("token", "err.bot_already_added"));
    }
    let secret = SourceSecret {
        token: token.to_string(),
        webhook_secret: Some(chatter_channels::telegram::new_secret_token()),
    };
    let settings = SourceSettings {
        mode: String::new(),
        bot_id: me.id.clone(),
        bot_name: me.name.clone(),
        bot_username: me.username.clone(),
    };
    let id = Uuid::now_v7();
    source::ActiveModel {
        id: Set(id),
        company_id: Set(actor.company_id),
        kind: Set(SourceKind::TelegramBot.id()),
        name: Set(name.clone()),
        secret: Set(Some(core.secrets.encrypt(
            &serde_json::to_string(&secret).map_err(|e| CoreError::Internal(e.to_string()))?,
        ))),
        settings: Set(serde_json::to_string(&settings).unwrap_or_else(|_| "{}".into())),
        status: Set(CONNECTING.into()),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        cursor: Set(None),
        last_inbound_at: Set(None),
        last_ok_at: Set(Some(now)),
    }
    .insert(&txn)
    .await?;
    jobs::enqueue(
        &txn,
        NewJob::new(JOB_SOURCE_SETUP, serde_json::json!({"source_id": id}), now)
            .company(actor.company_id),
        now,
    )
    .await?;
    audit::record(
        &txn,
        actor,
        now,
        "source.create",
        &name,
        serde_json::json!({"kind": SourceKind::TelegramBot.as_str(), "bot": me.username}),
    )
    .await?;
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    Ok(id)
}

pub async fn list(core: &Core, actor: &Actor) -> Result<Vec<source::Model>> {
    actor.require(Permission::Read)?;
    Ok(source::Entity::find()
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .order_by_asc(source::Column::CreatedAt)
        .all(&core.db)
        .await?)
}

pub async fn get(core: &Core, actor: &Actor, id: Uuid) -> Result<source::Model> {
    actor.require(Permission::Read)?;
    source::Entity::find_by_id(id)
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)
}

/// Turns a source off (stops receiving; history stays) or on again (set up afresh).
pub async fn set_enabled(core: &Core, actor: &Actor, id: Uuid, enabled: bool) -> Result<()> {
    actor.require(Permission::Manage)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let s = source::Entity::find_by_id(id)
        .filter(source::Column::CompanyId.eq(actor.company_id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let name = s.name.clone();
    let mut am = s.into_active_model();
    am.status = Set(if enabled { CONNECTING } else { DISABLED }.into());
    am.last_error = Set(None);
    am.updated_at = Set(now);
    am.update(&txn).await?;
    jobs::enqueue(
        &txn,
        NewJob::new(JOB_SOURCE_SETUP, serde_json::json!({"source_id": id}), now)
            .company(actor.company_id),
        now,
    )
    .await?;
    audit::record(
        &txn,
        actor,
        now,
        if enabled {
            "source.enable"
        } else {
            "source.disable"
        },
        &name,
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// Records the outcome of talking to the provider for the Sources page.
pub async fn record_health(
    conn: &impl ConnectionTrait,
    id: Uuid,
    status: &str,
    error: Option<String>,
    now: i64,
) -> Result<()> {
    use sea_orm::sea_query::Expr;
    let mut q = source::Entity::update_many()
        .col_expr(source::Column::Status, Expr::value(status))
        .col_expr(source::Column::LastError, Expr::value(error.clone()))
        .col_expr(source::Column::UpdatedAt, Expr::value(now))
        .filter(source::Column::Id.eq(id))
        .filter(source::Column::Status.ne(DISABLED));
    if error.is_none() {
        q = q.col_expr(source::Column::LastOkAt, Expr::value(now));
    }
    q.exec(conn).await?;
    Ok(())
}

pub async fn set_mode(conn: &impl ConnectionTrait, s: &source::Model, mode: &str) -> Result<()> {
    let mut settings = settings_of(s);
    if settings.mode == mode {
        return Ok(());
    }
    settings.mode = mode.to_string();
    let mut am = s.clone().into_active_model();
    am.settings = Set(serde_json::to_string(&settings).unwrap_or_else(|_| "{}".into()));
    am.update(conn).await?;
    Ok(())
}
