//! Connecting a company's amoCRM account (requirement R3.1): the OAuth consent, the code
//! exchange, tokens stored encrypted, and the account's pipelines, users and custom fields
//! synced for the CRM page. Creating contacts and deals from conversations builds on this.

pub mod integration;
pub mod rules;
pub mod settings;
pub mod signin;
pub mod sync;

use crate::{audit, hash_token, new_token, Actor, Core, CoreError, Result, Secret};
use chatter_crm::amocrm::oauth::{parse_callback, Callback, ConsentMode};
use chatter_crm::amocrm::{AccountHosts, AmoCrm, OAuthApp, RateLimit, RateLimiter};
use chatter_crm::{Crm, CrmError, EntityKind, Tokens};
use chatter_domain::Permission;
use chatter_store::entity::{crm_integration, oauth_state};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

use integration::{Metadata, CONNECTED, DISCONNECTED, TOKEN_INVALID};

const STATE_TTL_MS: i64 = 15 * 60 * 1000;

/// The integration's registration at amoCRM.
#[derive(Clone, Debug, Deserialize)]
pub struct AmoConfig {
    pub client_id: String,
    pub client_secret: Secret,
    /// Exactly as registered at amoCRM; default `<public_url>/crm/amocrm/callback`.
    pub redirect_uri: Option<String>,
    /// Default: amoCRM's consent page (`https://www.amocrm.ru/oauth`).
    pub consent_url: Option<String>,
    /// For tests and the demo: every account's API at this base (with `{subdomain}` replaced).
    pub account_base: Option<String>,
    /// The Chats API channel amoCRM support registered for us (§4.1). Without it conversations
    /// reach deals as notes, and managers answer from Chatter.
    #[serde(default)]
    pub chats: Option<ChatsConfig>,
}

/// A registered Chats API channel.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatsConfig {
    pub channel_id: String,
    pub secret: Secret,
    /// Default `https://amojo.amocrm.ru`.
    pub base_url: Option<String>,
    /// The chat's title in amoCRM (default «Chatter»).
    pub title: Option<String>,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredTokens {
    access: String,
    refresh: String,
    expires_at: i64,
}

pub(crate) fn amo(core: &Core) -> Result<&AmoConfig> {
    core.config
        .amocrm
        .as_ref()
        .ok_or(CoreError::NotConfigured("amocrm"))
}

/// How a redirect's `referer` becomes an account's base URL (one fixed base in tests and the demo).
pub(crate) fn account_hosts(cfg: &AmoConfig) -> AccountHosts {
    match &cfg.account_base {
        Some(t) => AccountHosts::Template(t.clone()),
        None => AccountHosts::Amocrm,
    }
}

/// Tokens as stored: encrypted JSON with the expiry in milliseconds.
pub(crate) fn seal_tokens(core: &Core, t: &Tokens) -> Result<String> {
    let stored = StoredTokens {
        access: t.access.clone(),
        refresh: t.refresh.clone(),
        expires_at: t.expires_at * 1000,
    };
    Ok(core
        .secrets
        .encrypt(&serde_json::to_string(&stored).map_err(|e| CoreError::Internal(e.to_string()))?))
}

fn redirect_uri(core: &Core, cfg: &AmoConfig) -> String {
    cfg.redirect_uri
        .clone()
        .unwrap_or_else(|| format!("{}/crm/amocrm/callback", core.config.public_url))
}

/// The origin of amoCRM's consent page (`https://www.amocrm.ru` unless configured), where the
/// «Connect amoCRM» and «Sign in with amoCRM» forms are redirected: the pages' CSP must allow
/// it as a form target. `None` when amoCRM is not set up.
pub fn consent_origin(core: &Core) -> Option<String> {
    let cfg = core.config.amocrm.as_ref()?;
    let consent = cfg
        .consent_url
        .as_deref()
        .unwrap_or(chatter_crm::amocrm::oauth::CONSENT_URL_RU);
    url::Url::parse(consent)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
}

#[derive(Debug)]
pub(crate) struct CrmClock;

impl chatter_crm::Clock for CrmClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

pub(crate) fn oauth(core: &Core) -> Result<OAuthApp> {
    let cfg = amo(core)?;
    Ok(OAuthApp::new(
        core.http.clone(),
        &cfg.client_id,
        cfg.client_secret.expose(),
        &redirect_uri(core, cfg),
        cfg.consent_url
            .as_deref()
            .unwrap_or(chatter_crm::amocrm::oauth::CONSENT_URL_RU),
        Arc::new(CrmClock),
    ))
}

pub(crate) fn crm_error(e: CrmError) -> CoreError {
    match e {
        CrmError::Unauthorized(_) => CoreError::field("crm", "err.crm_rejected"),
        CrmError::Transient(_) | CrmError::RateLimited { .. } => {
            CoreError::field("crm", "err.crm_unreachable")
        }
        CrmError::Permanent { message, .. } => {
            CoreError::Internal(format!("amoCRM refused: {message}"))
        }
    }
}

/// Starts a connect: remembers a state for this person and company, returns amoCRM's consent URL.
pub async fn connect_url(core: &Core, actor: &Actor) -> Result<String> {
    actor.require(Permission::Manage)?;
    let app = oauth(core)?;
    let (state, hash) = new_token();
    oauth_state::ActiveModel {
        state_hash: Set(hash),
        company_id: Set(actor.company_id.uuid()),
        user_id: Set(actor.user()?.uuid()),
        purpose: Set("amocrm_connect".into()),
        expires_at: Set(core.now() + STATE_TTL_MS),
    }
    .insert(&core.db)
    .await?;
    app.consent_url(&state, ConsentMode::Popup)
        .map_err(crm_error)
}

/// amoCRM sent the person back: checks the state, exchanges the code, reads the account and
/// stores the connection.
pub async fn finish_connect(core: &Core, actor: &Actor, query: &str) -> Result<()> {
    actor.require(Permission::Manage)?;
    let cb =
        parse_callback(query).map_err(|_| CoreError::field("crm", "err.crm_callback_invalid"))?;
    let (code, referer, state) = match cb {
        Callback::Approved {
            code,
            referer,
            state,
            ..
        } => (code, referer, state),
        Callback::Denied { .. } => return Err(CoreError::field("crm", "err.crm_denied")),
    };
    let state = state.ok_or(CoreError::LinkExpired)?;
    let now = core.now();
    // The state is single-use and must be this person's, for this company.
    let removed = oauth_state::Entity::delete_many()
        .filter(oauth_state::Column::StateHash.eq(hash_token(&state)))
        .filter(oauth_state::Column::CompanyId.eq(actor.company_id))
        .filter(oauth_state::Column::UserId.eq(actor.user()?))
        .filter(oauth_state::Column::ExpiresAt.gt(now))
        .exec(&core.db)
        .await?;
    if removed.rows_affected != 1 {
        return Err(CoreError::LinkExpired);
    }
    let cfg = amo(core)?;
    let hosts = match &cfg.account_base {
        Some(t) => AccountHosts::Template(t.clone()),
        None => AccountHosts::Amocrm,
    };
    let base = hosts
        .base_url_for(&referer)
        .map_err(|_| CoreError::field("crm", "err.crm_callback_invalid"))?;
    let tokens = oauth(core)?
        .exchange_code(&base, &code)
        .await
        .map_err(crm_error)?;
    let meta = read_metadata(core, &base, &tokens.access).await?;
    let account = meta.0;
    let txn = core.db.begin().await?;
    let existing = crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(actor.company_id))
        .one(&txn)
        .await?;
    let stored = StoredTokens {
        access: tokens.access.clone(),
        refresh: tokens.refresh.clone(),
        expires_at: tokens.expires_at * 1000,
    };
    let enc = core
        .secrets
        .encrypt(&serde_json::to_string(&stored).map_err(|e| CoreError::Internal(e.to_string()))?);
    let metadata =
        serde_json::to_string(&meta.1).map_err(|e| CoreError::Internal(e.to_string()))?;
    match existing {
        Some(e) => {
            let mut am = e.into_active_model();
            am.account_id = Set(Some(account.id));
            am.account_name = Set(account.name.clone());
            am.base_url = Set(base.clone());
            am.status = Set(CONNECTED.into());
            am.tokens = Set(Some(enc));
            am.metadata = Set(metadata);
            am.last_sync_at = Set(Some(now));
            am.last_error = Set(None);
            am.updated_at = Set(now);
            am.update(&txn).await?;
        }
        None => {
            crm_integration::ActiveModel {
                id: Set(Uuid::now_v7()),
                company_id: Set(actor.company_id.uuid()),
                kind: Set("amocrm".into()),
                account_id: Set(Some(account.id)),
                account_name: Set(account.name.clone()),
                base_url: Set(base.clone()),
                status: Set(CONNECTED.into()),
                tokens: Set(Some(enc)),
                metadata: Set(metadata),
                last_sync_at: Set(Some(now)),
                last_error: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&txn)
            .await?;
        }
    }
    // The person who connected is this amoCRM user: they can sign in with amoCRM from now on.
    crate::crm::signin::link_connecting(&txn, actor, &account, now).await?;
    audit::record(
        &txn,
        actor,
        now,
        "crm.connect",
        &account.name,
        serde_json::json!({"account_id": account.id, "base_url": base}),
    )
    .await?;
    txn.commit().await?;
    // Work held while access was revoked drains now.
    crate::crm::sync::wake(core, actor.company_id).await?;
    Ok(())
}

/// One rate limiter per amoCRM account in this process (amoCRM allows 7 requests/s per
/// account). Across nodes the limit is not shared yet.
pub(crate) fn limiter_for(base: &str) -> RateLimiter {
    type Limiters = std::sync::Mutex<std::collections::HashMap<String, RateLimiter>>;
    static LIMITERS: std::sync::LazyLock<Limiters> = std::sync::LazyLock::new(Default::default);
    match LIMITERS.lock() {
        Ok(mut m) => m
            .entry(base.to_string())
            .or_insert_with(|| RateLimiter::new(RateLimit::AMOCRM))
            .clone(),
        Err(_) => RateLimiter::new(RateLimit::AMOCRM),
    }
}

pub(crate) async fn read_metadata(
    core: &Core,
    base: &str,
    access: &str,
) -> Result<(chatter_crm::CrmAccount, Metadata)> {
    // amoCRM counts every request of the account, ours included from other flows: when it
    // says "too many", wait as told and read again (a few times).
    let mut attempt = 0;
    loop {
        match try_read_metadata(core, base, access).await {
            Err(CrmError::RateLimited {
                retry_after_secs, ..
            }) if attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_secs(retry_after_secs.clamp(1, 5)))
                    .await;
            }
            r => return r.map_err(crm_error),
        }
    }
}

async fn try_read_metadata(
    core: &Core,
    base: &str,
    access: &str,
) -> Result<(chatter_crm::CrmAccount, Metadata), CrmError> {
    let client = AmoCrm::new(core.http.clone(), base, access, limiter_for(base));
    let account = client.account().await?;
    let meta = Metadata {
        subdomain: account.subdomain.clone(),
        pipelines: client.pipelines().await?,
        users: client.users().await?,
        lead_fields: client.custom_fields(EntityKind::Deals).await?,
        contact_fields: client.custom_fields(EntityKind::Contacts).await?,
    };
    Ok((account, meta))
}

/// The company's connection, if any.
pub async fn get(core: &Core, actor: &Actor) -> Result<Option<(crm_integration::Model, Metadata)>> {
    actor.require(Permission::Read)?;
    Ok(crm_integration::Entity::find()
        .filter(crm_integration::Column::CompanyId.eq(actor.company_id))
        .one(&core.db)
        .await?
        .map(|i| {
            let m = chatter_store::stored_json::read(
                "crm_integrations.metadata",
                i.company_id,
                &i.metadata,
            );
            (i, m)
        }))
}

/// The stored tokens of a connection, refreshed first when they expire within 5 minutes.
/// amoCRM refresh tokens are single-use: the new pair is stored before it is used.
/// With `force`, refreshes whatever the expiry says (after a 401).
pub(crate) async fn fresh_tokens(
    core: &Core,
    i: &crm_integration::Model,
    force: bool,
) -> Result<String> {
    let enc = i
        .tokens
        .as_deref()
        .ok_or(CoreError::field("crm", "err.crm_rejected"))?;
    let plain = core
        .secrets
        .decrypt(enc)
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    let t: StoredTokens =
        serde_json::from_str(plain.expose()).map_err(|e| CoreError::Internal(e.to_string()))?;
    if !force && t.expires_at - core.now() > 5 * 60 * 1000 {
        return Ok(t.access);
    }
    // One node at a time may spend the refresh token.
    let lease = format!("amocrm-refresh:{}", i.company_id);
    if !chatter_store::leases::acquire(&core.db, &lease, &core.node_id, core.now(), 30_000).await? {
        return Err(CoreError::field("crm", "err.crm_unreachable"));
    }
    let result = oauth(core)?.refresh(&i.base_url, &t.refresh).await;
    let out = match result {
        Ok(new) => {
            store_tokens(core, i.id, &new).await?;
            Ok(new.access)
        }
        Err(e) => {
            if matches!(e, CrmError::Unauthorized(_)) {
                mark(core, i.id, TOKEN_INVALID, Some(e.to_string())).await?;
            }
            Err(crm_error(e))
        }
    };
    let _ = chatter_store::leases::release(&core.db, &lease, &core.node_id).await;
    out
}

async fn store_tokens(core: &Core, id: Uuid, t: &Tokens) -> Result<()> {
    let stored = StoredTokens {
        access: t.access.clone(),
        refresh: t.refresh.clone(),
        expires_at: t.expires_at * 1000,
    };
    let enc = core
        .secrets
        .encrypt(&serde_json::to_string(&stored).map_err(|e| CoreError::Internal(e.to_string()))?);
    crm_integration::Entity::update_many()
        .col_expr(
            crm_integration::Column::Tokens,
            sea_orm::sea_query::Expr::value(enc),
        )
        .col_expr(
            crm_integration::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(core.now()),
        )
        .filter(crm_integration::Column::Id.eq(id))
        .exec(&core.db)
        .await?;
    Ok(())
}

pub(crate) async fn mark(core: &Core, id: Uuid, status: &str, error: Option<String>) -> Result<()> {
    use sea_orm::sea_query::Expr;
    crm_integration::Entity::update_many()
        .col_expr(crm_integration::Column::Status, Expr::value(status))
        .col_expr(crm_integration::Column::LastError, Expr::value(error))
        .col_expr(crm_integration::Column::UpdatedAt, Expr::value(core.now()))
        .filter(crm_integration::Column::Id.eq(id))
        .exec(&core.db)
        .await?;
    Ok(())
}

/// Reads pipelines, users and fields again.
pub async fn sync(core: &Core, actor: &Actor) -> Result<()> {
    actor.require(Permission::Manage)?;
    let (i, _) = get(core, actor).await?.ok_or(CoreError::NotFound)?;
    if i.status == DISCONNECTED {
        return Err(CoreError::NotFound);
    }
    let access = fresh_tokens(core, &i, false).await?;
    match read_metadata(core, &i.base_url, &access).await {
        Ok((account, meta)) => {
            let now = core.now();
            let mut am = i.into_active_model();
            am.account_name = Set(account.name);
            am.metadata =
                Set(serde_json::to_string(&meta).map_err(|e| CoreError::Internal(e.to_string()))?);
            am.status = Set(CONNECTED.into());
            am.last_sync_at = Set(Some(now));
            am.last_error = Set(None);
            am.updated_at = Set(now);
            let txn = core.db.begin().await?;
            am.update(&txn).await?;
            audit::record(
                &txn,
                actor,
                now,
                "crm.sync",
                "amocrm",
                serde_json::json!({}),
            )
            .await?;
            txn.commit().await?;
            Ok(())
        }
        Err(e) => {
            mark(core, i.id, if matches!(e, CoreError::Invalid(ref f) if f.iter().any(|x| x.key == "err.crm_rejected")) { TOKEN_INVALID } else { CONNECTED }, Some(format!("{e:?}"))).await?;
            Err(e)
        }
    }
}

/// Forgets the tokens; the history of what was synced stays.
pub async fn disconnect(core: &Core, actor: &Actor) -> Result<()> {
    actor.require(Permission::Manage)?;
    let (i, _) = get(core, actor).await?.ok_or(CoreError::NotFound)?;
    let now = core.now();
    let name = i.account_name.clone();
    let mut am = i.into_active_model();
    am.status = Set(DISCONNECTED.into());
    am.tokens = Set(None);
    am.updated_at = Set(now);
    let txn = core.db.begin().await?;
    am.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        now,
        "crm.disconnect",
        &name,
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}
