//! People and sign-in: sign-up (a company and its owner), email + password, sessions,
//! two-factor (TOTP + recovery codes), password reset by mail, Sign in with Telegram.

pub mod api_keys;
pub mod operators;
pub mod signup;
pub mod team;

use crate::{
    audit, ct_eq, hash_token, mailer, new_token, throttle, Core, CoreError, ReqMeta, Result,
};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use chatter_domain::{totp, Email, FieldError, Password, Role, Slug};
use chatter_store::entity::{company, membership, password_reset, recovery_code, session, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, TransactionTrait,
};
use std::collections::BTreeMap;
use uuid::Uuid;

pub const RESET_TTL_MS: i64 = 3600 * 1000;
const PENDING_2FA_TTL_MS: i64 = 10 * 60 * 1000;

/// A fresh session: the cookie value to hand to the browser.
#[derive(Clone)]
pub struct NewSession {
    pub token: String,
    pub pending_2fa: bool,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("pending_2fa", &self.pending_2fa)
            .finish_non_exhaustive()
    }
}

/// A signed-in person, as a request sees them.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub session: session::Model,
    pub user: user::Model,
    /// The current company and the role in it (None: member of no company yet).
    pub company: Option<(company::Model, Role)>,
    /// All companies the person belongs to, for the switcher.
    pub companies: Vec<(company::Model, Role)>,
}

pub fn hash_password(p: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(p.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CoreError::Internal(format!("argon2: {e}")))
}

fn verify_password(p: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| Argon2::default().verify_password(p.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A hash of nothing in particular, verified when the account does not exist so that the
/// answer takes as long as for a real account.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

pub use crate::accounts::signup::{name_text, sign_up, sign_up_or_notify, SignUp, SignUpOutcome};

mod passwords;
mod sessions;
mod telegram;
mod two_factor;
pub use passwords::*;
pub use sessions::*;
pub use telegram::*;
pub use two_factor::*;

/// Inserts a company with a unique slug and makes `owner` its owner.
pub async fn create_company_in(
    conn: &impl ConnectionTrait,
    name: &str,
    owner: Uuid,
    now: i64,
) -> Result<Uuid> {
    let base = Slug::suggest(name);
    let mut slug = base.clone();
    for n in 2.. {
        let taken = company::Entity::find()
            .filter(company::Column::Slug.eq(&slug))
            .one(conn)
            .await?
            .is_some();
        if !taken {
            break;
        }
        slug = format!("{base}-{n}");
    }
    let id = Uuid::now_v7();
    company::ActiveModel {
        id: Set(id),
        name: Set(name.to_string()),
        slug: Set(slug),
        timezone: Set("Europe/Moscow".into()),
        created_at: Set(now),
    }
    .insert(conn)
    .await
    .map_err(|e| chatter_store::on_unique(e, "slug"))?;
    membership::ActiveModel {
        company_id: Set(id),
        user_id: Set(owner),
        role: Set(Role::Owner.as_str().into()),
        created_at: Set(now),
    }
    .insert(conn)
    .await?;
    crate::billing::start_trial(conn, id, now).await?;
    Ok(id)
}

pub async fn find_user_by_email(
    conn: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email.trim().to_lowercase()))
        .one(conn)
        .await?)
}

pub(crate) async fn insert_session(
    core: &Core,
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    company_id: Option<Uuid>,
    pending_2fa: bool,
    meta: &ReqMeta,
    now: i64,
) -> Result<NewSession> {
    let (token, hash) = new_token();
    let (csrf, _) = new_token();
    let company_id = match company_id {
        Some(c) => Some(c),
        None => first_company(conn, user_id).await?,
    };
    let ttl = if pending_2fa {
        PENDING_2FA_TTL_MS
    } else {
        core.config.session_ttl_ms
    };
    session::ActiveModel {
        id_hash: Set(hash),
        user_id: Set(user_id),
        company_id: Set(company_id),
        pending_2fa: Set(pending_2fa),
        csrf: Set(csrf),
        ip: Set(meta.ip.clone()),
        user_agent: Set(meta.user_agent.chars().take(300).collect()),
        created_at: Set(now),
        last_seen_at: Set(now),
        expires_at: Set(now + ttl),
    }
    .insert(conn)
    .await?;
    Ok(NewSession { token, pending_2fa })
}

pub(crate) async fn first_company(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<Option<Uuid>> {
    Ok(membership::Entity::find()
        .filter(membership::Column::UserId.eq(user_id))
        .order_by_asc(membership::Column::CreatedAt)
        .one(conn)
        .await?
        .map(|m| m.company_id))
}

/// Records an action of a signed-in person on their own account, in their current company.
async fn audit_self(
    conn: &impl ConnectionTrait,
    info: &SessionInfo,
    meta: &ReqMeta,
    now: i64,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<()> {
    audit::insert(
        conn,
        info.session.company_id,
        Some(info.user.id),
        &info.user.email,
        meta,
        now,
        action,
        target,
        details,
    )
    .await
}
