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

/// Email + password. On success the session is new (the id rotates at every sign-in); with
/// 2FA on, it is only good for the second step. The attempt is reserved on its throttle keys
/// (the account from this IP, the account, the IP) before the password is checked, so a burst
/// of parallel guesses gets no more checks than the limit; a right password gives it back.
pub async fn sign_in(
    core: &Core,
    email: &str,
    password: &str,
    meta: &ReqMeta,
) -> Result<NewSession> {
    let now = core.now();
    let limits = throttle::sign_in_limits(email, &meta.ip);
    if let Some(r) = throttle::reserve(&core.db, &limits, now).await? {
        return Err(CoreError::Throttled(r.retry_after_secs));
    }
    let user = find_user_by_email(&core.db, email).await?;
    let ok = match user.as_ref().and_then(|u| u.password_hash.as_deref()) {
        Some(h) => verify_password(password, h),
        None => {
            verify_password(password, dummy_hash());
            false
        }
    };
    let txn = core.db.begin().await?;
    let Some(user) = user.filter(|_| ok) else {
        let label = email.trim().to_lowercase();
        let company = match find_user_by_email(&txn, &label).await? {
            Some(u) => first_company(&txn, u.id).await?,
            None => None,
        };
        audit::insert(
            &txn,
            company,
            None,
            &label,
            meta,
            now,
            "user.sign_in_failed",
            &label,
            serde_json::json!({}),
        )
        .await?;
        txn.commit().await?;
        return Err(CoreError::BadCredentials);
    };
    throttle::clear(&txn, &limits[0].key).await?;
    throttle::release(&txn, &limits[1].key).await?;
    throttle::release(&txn, &limits[2].key).await?;
    let s = start_session(core, &txn, &user, None, "password", meta, now).await?;
    txn.commit().await?;
    Ok(s)
}

/// A session after the first factor: full, or waiting for the second when 2FA is on (the
/// sign-in is audited once it is complete). `company`: where to land; `None` for the first
/// company the person joined.
pub(crate) async fn start_session(
    core: &Core,
    conn: &impl ConnectionTrait,
    user: &user::Model,
    company: Option<Uuid>,
    method: &str,
    meta: &ReqMeta,
    now: i64,
) -> Result<NewSession> {
    let s = insert_session(core, conn, user.id, company, user.totp_enabled, meta, now).await?;
    if !s.pending_2fa {
        let company = match company {
            Some(c) => Some(c),
            None => first_company(conn, user.id).await?,
        };
        let details = serde_json::json!({ "method": method });
        audit::insert(
            conn,
            company,
            Some(user.id),
            &user.email,
            meta,
            now,
            "user.sign_in",
            &user.email,
            details,
        )
        .await?;
    }
    Ok(s)
}

/// The second step: a TOTP code (or a recovery code). Replaces the pending session by a full one.
/// Wrong codes are counted per person and per IP in counters of their own, reserved before the
/// code is checked; signing in with the password again does not reset them, only a completed
/// sign-in does. Every wrong code is audited.
pub async fn sign_in_2fa(
    core: &Core,
    token: &str,
    code: &str,
    meta: &ReqMeta,
) -> Result<NewSession> {
    let now = core.now();
    let s = session::Entity::find_by_id(hash_token(token))
        .one(&core.db)
        .await?
        .filter(|s| s.pending_2fa && s.expires_at > now)
        .ok_or(CoreError::Unauthenticated)?;
    let limits = throttle::two_factor_limits(s.user_id, &meta.ip);
    if let Some(r) = throttle::reserve(&core.db, &limits, now).await? {
        return Err(CoreError::Throttled(r.retry_after_secs));
    }
    let txn = core.db.begin().await?;
    let user = user::Entity::find_by_id(s.user_id)
        .one(&txn)
        .await?
        .ok_or(CoreError::Unauthenticated)?;
    let method = match check_second_factor(core, &txn, &user, code, now).await? {
        Some(m) => m,
        None => {
            audit::insert(
                &txn,
                s.company_id,
                Some(user.id),
                &user.email,
                meta,
                now,
                "user.two_factor_failed",
                &user.email,
                serde_json::json!({}),
            )
            .await?;
            txn.commit().await?;
            return Err(CoreError::BadCode);
        }
    };
    // Of two parallel uses of one pending session, one wins.
    let gone = session::Entity::delete_many()
        .filter(session::Column::IdHash.eq(s.id_hash.clone()))
        .filter(session::Column::Pending2fa.eq(true))
        .exec(&txn)
        .await?;
    if gone.rows_affected != 1 {
        return Err(CoreError::Unauthenticated);
    }
    let new = insert_session(core, &txn, user.id, s.company_id, false, meta, now).await?;
    throttle::clear(&txn, &limits[0].key).await?;
    throttle::release(&txn, &limits[1].key).await?;
    audit::insert(
        &txn,
        s.company_id,
        Some(user.id),
        &user.email,
        meta,
        now,
        "user.sign_in",
        &user.email,
        serde_json::json!({"method": method}),
    )
    .await?;
    txn.commit().await?;
    Ok(new)
}

/// Checks a TOTP code (refusing a replayed step) or consumes a recovery code.
async fn check_second_factor(
    core: &Core,
    conn: &impl ConnectionTrait,
    user: &user::Model,
    code: &str,
    now: i64,
) -> Result<Option<&'static str>> {
    let secret = match &user.totp_secret {
        Some(enc) => core
            .secrets
            .decrypt(enc)
            .map_err(|e| CoreError::Internal(e.to_string()))?,
        None => return Ok(None),
    };
    let secret = totp::from_stored(secret.expose());
    if let Some(step) = totp::verify(&secret, code, now / 1000) {
        if user.totp_last_step.is_some_and(|last| step <= last) {
            return Ok(None);
        }
        let mut m = user.clone().into_active_model();
        m.totp_last_step = Set(Some(step));
        m.update(conn).await?;
        return Ok(Some("totp"));
    }
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    if normalized.len() == 10 {
        return use_recovery_code(conn, user, &normalized, now).await;
    }
    Ok(None)
}

/// Consumes one of the person's unused recovery codes. Codes are stored as argon2id hashes;
/// codes made before that were stored as SHA-256 and stay good until used (then they are
/// spent like any other).
async fn use_recovery_code(
    conn: &impl ConnectionTrait,
    user: &user::Model,
    normalized: &str,
    now: i64,
) -> Result<Option<&'static str>> {
    let unused = recovery_code::Entity::find()
        .filter(recovery_code::Column::UserId.eq(user.id))
        .filter(recovery_code::Column::UsedAt.is_null())
        .all(conn)
        .await?;
    let legacy = hash_token(normalized);
    let found = unused.into_iter().find(|rc| {
        if rc.code_hash.starts_with("$argon2") {
            verify_password(normalized, &rc.code_hash)
        } else {
            ct_eq(rc.code_hash.as_bytes(), legacy.as_bytes())
        }
    });
    let Some(rc) = found else {
        return Ok(None);
    };
    // Conditional update: of two concurrent uses, one wins.
    let used = recovery_code::Entity::update_many()
        .col_expr(
            recovery_code::Column::UsedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(recovery_code::Column::CodeHash.eq(rc.code_hash))
        .filter(recovery_code::Column::UsedAt.is_null())
        .exec(conn)
        .await?;
    Ok((used.rows_affected == 1).then_some("recovery_code"))
}

/// Resolves a session cookie to the signed-in person. Pending-2FA sessions are not signed in.
pub async fn load_session(core: &Core, token: &str) -> Result<Option<SessionInfo>> {
    let now = core.now();
    let Some(s) = session::Entity::find_by_id(hash_token(token))
        .one(&core.db)
        .await?
    else {
        return Ok(None);
    };
    if s.expires_at <= now || s.pending_2fa {
        return Ok(None);
    }
    let Some(user) = user::Entity::find_by_id(s.user_id).one(&core.db).await? else {
        return Ok(None);
    };
    let companies = companies_of(&core.db, user.id).await?;
    let company = s
        .company_id
        .and_then(|c| companies.iter().find(|(m, _)| m.id == c).cloned())
        .or_else(|| companies.first().cloned());
    let s = if now - s.last_seen_at > 60_000 || company.as_ref().map(|c| c.0.id) != s.company_id {
        let mut m = s.clone().into_active_model();
        m.last_seen_at = Set(now);
        m.company_id = Set(company.as_ref().map(|c| c.0.id));
        m.update(&core.db).await?
    } else {
        s
    };
    Ok(Some(SessionInfo {
        session: s,
        user,
        company,
        companies,
    }))
}

/// Whether a live stream opened with the session `token` for `company_id` as `role` may go
/// on: the session still exists (not signed out, not ended by "sign out everywhere" or a
/// password change), has not expired, and its person is still a member of the company with
/// that role. Two lookups by primary key, cheap enough to ask every few seconds.
pub async fn session_still_member(
    core: &Core,
    token: &str,
    company_id: Uuid,
    role: Role,
) -> Result<bool> {
    let Some(s) = session::Entity::find_by_id(hash_token(token))
        .one(&core.db)
        .await?
    else {
        return Ok(false);
    };
    if s.expires_at <= core.now() || s.pending_2fa {
        return Ok(false);
    }
    Ok(membership::Entity::find_by_id((company_id, s.user_id))
        .one(&core.db)
        .await?
        .is_some_and(|m| Role::parse(&m.role) == Some(role)))
}

/// Whether `token` is a session waiting for its second factor.
pub async fn pending_2fa(core: &Core, token: &str) -> Result<bool> {
    Ok(session::Entity::find_by_id(hash_token(token))
        .one(&core.db)
        .await?
        .is_some_and(|s| s.pending_2fa && s.expires_at > core.now()))
}

/// The companies a person belongs to, oldest membership first.
pub async fn companies_of(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<Vec<(company::Model, Role)>> {
    let ms = membership::Entity::find()
        .filter(membership::Column::UserId.eq(user_id))
        .order_by_asc(membership::Column::CreatedAt)
        .all(conn)
        .await?;
    let mut out = Vec::new();
    for m in ms {
        if let (Some(c), Some(r)) = (
            company::Entity::find_by_id(m.company_id).one(conn).await?,
            Role::parse(&m.role),
        ) {
            out.push((c, r));
        }
    }
    Ok(out)
}

pub async fn sign_out(core: &Core, info: &SessionInfo, meta: &ReqMeta) -> Result<()> {
    let txn = core.db.begin().await?;
    session::Entity::delete_by_id(info.session.id_hash.clone())
        .exec(&txn)
        .await?;
    audit_self(
        &txn,
        info,
        meta,
        core.now(),
        "user.sign_out",
        &info.user.email,
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Ends every session of the person, on every device.
pub async fn sign_out_everywhere(core: &Core, info: &SessionInfo, meta: &ReqMeta) -> Result<u64> {
    let txn = core.db.begin().await?;
    let n = session::Entity::delete_many()
        .filter(session::Column::UserId.eq(info.user.id))
        .exec(&txn)
        .await?
        .rows_affected;
    audit_self(
        &txn,
        info,
        meta,
        core.now(),
        "user.sign_out_everywhere",
        &info.user.email,
        serde_json::json!({"sessions": n}),
    )
    .await?;
    txn.commit().await?;
    Ok(n)
}

/// Points the session at another company the person belongs to.
pub async fn switch_company(
    core: &Core,
    info: &SessionInfo,
    company_id: Uuid,
    meta: &ReqMeta,
) -> Result<()> {
    if !info.companies.iter().any(|(c, _)| c.id == company_id) {
        return Err(CoreError::Forbidden);
    }
    let txn = core.db.begin().await?;
    let mut m = info.session.clone().into_active_model();
    m.company_id = Set(Some(company_id));
    m.update(&txn).await?;
    audit::insert(
        &txn,
        Some(company_id),
        Some(info.user.id),
        &info.user.email,
        meta,
        core.now(),
        "user.switch_company",
        &company_id.to_string(),
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Another company, owned by an already signed-in person.
pub async fn create_company(
    core: &Core,
    info: &SessionInfo,
    name: &str,
    meta: &ReqMeta,
) -> Result<Uuid> {
    let name = name_text("company_name", name).map_err(|e| CoreError::Invalid(vec![e]))?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let id = create_company_in(&txn, &name, info.user.id, now).await?;
    let mut m = info.session.clone().into_active_model();
    m.company_id = Set(Some(id));
    m.update(&txn).await?;
    audit::insert(
        &txn,
        Some(id),
        Some(info.user.id),
        &info.user.email,
        meta,
        now,
        "company.create",
        &name,
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    Ok(id)
}

pub const JOB_PASSWORD_RESET: &str = "password_reset_mail";

/// "Forgot password": mails a single-use link valid for an hour. The request does the same
/// work whether or not the account exists (it checks the address, counts the request and
/// enqueues a job); the job looks the account up and writes the mail, so the answer and its
/// timing say nothing. At most `MAIL_PER_ADDRESS` links an hour go to one address (more are
/// dropped silently) and `MAIL_PER_IP` requests an hour come from one IP (more get 429).
pub async fn request_password_reset(
    core: &Core,
    email: &str,
    lang: &str,
    meta: &ReqMeta,
) -> Result<()> {
    let email = Email::parse("email", email).map_err(|e| CoreError::Invalid(vec![e]))?;
    let now = core.now();
    let limits = throttle::mail_limits("reset", email.as_str(), &meta.ip);
    match throttle::reserve(&core.db, &limits, now).await? {
        None => {}
        Some(r) if r.index == 0 => return Ok(()),
        Some(r) => return Err(CoreError::Throttled(r.retry_after_secs)),
    }
    let payload = serde_json::json!({
        "email": email.as_str(),
        "lang": lang,
        "ip": meta.ip,
        "user_agent": meta.user_agent.chars().take(300).collect::<String>(),
    });
    chatter_store::jobs::enqueue(
        &core.db,
        chatter_store::jobs::NewJob::new(JOB_PASSWORD_RESET, payload, now),
        now,
    )
    .await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// The job behind "forgot password": if the address has an account, a reset link is made and
/// mailed (through the mail job) and the request audited; else nothing happens.
pub struct PasswordResetMail;

#[async_trait::async_trait]
impl crate::jobs::worker::JobHandler for PasswordResetMail {
    async fn run(
        &self,
        core: &Core,
        job: &chatter_store::jobs::Claimed,
    ) -> std::result::Result<(), crate::jobs::worker::JobError> {
        use crate::jobs::worker::JobError;
        #[derive(serde::Deserialize)]
        struct P {
            email: String,
            lang: String,
            ip: String,
            user_agent: String,
        }
        let p: P = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::Permanent(format!("bad payload: {e}")))?;
        let meta = ReqMeta {
            ip: p.ip,
            user_agent: p.user_agent,
        };
        mail_reset_link(core, &p.email, &p.lang, &meta)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))
    }
}

async fn mail_reset_link(core: &Core, email: &str, lang: &str, meta: &ReqMeta) -> Result<()> {
    let now = core.now();
    let txn = core.db.begin().await?;
    let Some(u) = find_user_by_email(&txn, email).await? else {
        return Ok(());
    };
    let (token, hash) = new_token();
    password_reset::ActiveModel {
        token_hash: Set(hash),
        user_id: Set(u.id),
        created_at: Set(now),
        expires_at: Set(now + RESET_TTL_MS),
        used_at: Set(None),
    }
    .insert(&txn)
    .await?;
    let link = format!("{}/reset-password/{token}", core.config.public_url);
    let name = mailer::one_line(&u.name);
    let (subject, body) = if lang == "en" {
        ("Chatter: reset your password".to_string(), format!("Hello, {name}!\n\nTo set a new password, open this link within an hour:\n{link}\n\nIf you did not ask for it, ignore this mail; your password stays as it is.\n"))
    } else {
        ("Чаттер: сброс пароля".to_string(), format!("Здравствуйте, {name}!\n\nЧтобы задать новый пароль, откройте ссылку в течение часа:\n{link}\n\nЕсли вы не запрашивали сброс, просто проигнорируйте письмо — пароль останется прежним.\n"))
    };
    mailer::enqueue(core, &txn, u.email.as_str(), &subject, &body).await?;
    let company = first_company(&txn, u.id).await?;
    audit::insert(
        &txn,
        company,
        Some(u.id),
        &u.email,
        meta,
        now,
        "user.password_reset_requested",
        &u.email,
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Spends every unused reset link of the person (after a reset or a password change).
async fn spend_reset_links(conn: &impl ConnectionTrait, user_id: Uuid, now: i64) -> Result<()> {
    password_reset::Entity::update_many()
        .col_expr(
            password_reset::Column::UsedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(password_reset::Column::UserId.eq(user_id))
        .filter(password_reset::Column::UsedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// Whether a reset link is still good (for showing the form or the "expired" page).
pub async fn reset_link_valid(core: &Core, token: &str) -> Result<bool> {
    Ok(password_reset::Entity::find_by_id(hash_token(token))
        .one(&core.db)
        .await?
        .is_some_and(|r| r.used_at.is_none() && r.expires_at > core.now()))
}

/// Sets a new password from a reset link; the link is used up and every session ends.
pub async fn reset_password(
    core: &Core,
    token: &str,
    new_password: &str,
    meta: &ReqMeta,
) -> Result<()> {
    let password =
        Password::parse("password", new_password).map_err(|e| CoreError::Invalid(vec![e]))?;
    let hash = hash_password(password.expose())?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let r = password_reset::Entity::find_by_id(hash_token(token))
        .one(&txn)
        .await?
        .filter(|r| r.used_at.is_none() && r.expires_at > now)
        .ok_or(CoreError::LinkExpired)?;
    // Conditional update: of two concurrent uses, one wins.
    let used = password_reset::Entity::update_many()
        .col_expr(
            password_reset::Column::UsedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(password_reset::Column::TokenHash.eq(r.token_hash.clone()))
        .filter(password_reset::Column::UsedAt.is_null())
        .exec(&txn)
        .await?;
    if used.rows_affected != 1 {
        return Err(CoreError::LinkExpired);
    }
    let u = user::Entity::find_by_id(r.user_id)
        .one(&txn)
        .await?
        .ok_or(CoreError::LinkExpired)?;
    let mut m = u.clone().into_active_model();
    m.password_hash = Set(Some(hash));
    m.update(&txn).await?;
    session::Entity::delete_many()
        .filter(session::Column::UserId.eq(u.id))
        .exec(&txn)
        .await?;
    spend_reset_links(&txn, u.id, now).await?;
    let company = first_company(&txn, u.id).await?;
    audit::insert(
        &txn,
        company,
        Some(u.id),
        &u.email,
        meta,
        now,
        "user.password_reset",
        &u.email,
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Changes the password of a signed-in person (the current one is required). Other sessions end.
pub async fn change_password(
    core: &Core,
    info: &SessionInfo,
    current: &str,
    new: &str,
    meta: &ReqMeta,
) -> Result<()> {
    let ok = info
        .user
        .password_hash
        .as_deref()
        .is_some_and(|h| verify_password(current, h));
    if !ok {
        return Err(CoreError::field(
            "current_password",
            "err.current_password_wrong",
        ));
    }
    let password = Password::parse("new_password", new).map_err(|e| CoreError::Invalid(vec![e]))?;
    let hash = hash_password(password.expose())?;
    let txn = core.db.begin().await?;
    let mut m = info.user.clone().into_active_model();
    m.password_hash = Set(Some(hash));
    m.update(&txn).await?;
    session::Entity::delete_many()
        .filter(session::Column::UserId.eq(info.user.id))
        .filter(session::Column::IdHash.ne(info.session.id_hash.clone()))
        .exec(&txn)
        .await?;
    spend_reset_links(&txn, info.user.id, core.now()).await?;
    audit_self(
        &txn,
        info,
        meta,
        core.now(),
        "user.password_change",
        &info.user.email,
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Updates the person's name and interface language.
pub async fn update_profile(
    core: &Core,
    info: &SessionInfo,
    name: &str,
    locale: &str,
    meta: &ReqMeta,
) -> Result<()> {
    let name = name_text("name", name).map_err(|e| CoreError::Invalid(vec![e]))?;
    if locale != "ru" && locale != "en" {
        return Err(CoreError::field("locale", "err.locale_invalid"));
    }
    let txn = core.db.begin().await?;
    let mut m = info.user.clone().into_active_model();
    m.name = Set(name);
    m.locale = Set(locale.to_string());
    m.update(&txn).await?;
    audit_self(
        &txn,
        info,
        meta,
        core.now(),
        "user.profile_update",
        &info.user.email,
        serde_json::json!({"locale": locale}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Starts 2FA setup: a new secret (stored encrypted, not yet enabled). Returns the base32
/// secret and the `otpauth://` URI.
pub async fn begin_totp(core: &Core, info: &SessionInfo) -> Result<(String, String)> {
    if info.user.totp_enabled {
        return Err(CoreError::Conflict("totp_already_enabled"));
    }
    let secret = totp::new_secret();
    let b32 = totp::base32(&secret);
    let mut m = info.user.clone().into_active_model();
    m.totp_secret = Set(Some(core.secrets.encrypt(&b32)));
    m.update(&core.db).await?;
    Ok((
        b32.clone(),
        totp::otpauth_uri(&secret, "Chatter", &info.user.email),
    ))
}

/// The pending (not yet confirmed) secret, to show again if the first code was wrong.
pub fn pending_totp(core: &Core, info: &SessionInfo) -> Option<(String, String)> {
    let enc = info
        .user
        .totp_secret
        .as_ref()
        .filter(|_| !info.user.totp_enabled)?;
    let b32 = core.secrets.decrypt(enc).ok()?;
    let raw = totp::from_stored(b32.expose());
    Some((
        b32.expose().to_string(),
        totp::otpauth_uri(&raw, "Chatter", &info.user.email),
    ))
}

/// Ten fresh recovery codes and their argon2id hashes (hashed off the async threads).
async fn new_recovery_codes() -> Result<Vec<(String, String)>> {
    let codes: Vec<String> = (0..10).map(|_| new_token().0[..10].to_string()).collect();
    let hashes: Vec<_> = codes
        .iter()
        .map(|c| {
            let c = c.clone();
            tokio::task::spawn_blocking(move || hash_password(&c))
        })
        .collect();
    let mut out = Vec::new();
    for (c, h) in codes.iter().zip(hashes) {
        let h = h
            .await
            .map_err(|e| CoreError::Internal(format!("hashing a recovery code: {e}")))??;
        out.push((c.clone(), h));
    }
    Ok(out)
}

/// Confirms 2FA with a first code; returns ten one-time recovery codes (shown once).
pub async fn enable_totp(
    core: &Core,
    info: &SessionInfo,
    code: &str,
    meta: &ReqMeta,
) -> Result<Vec<String>> {
    let now = core.now();
    let enc = info
        .user
        .totp_secret
        .as_ref()
        .ok_or(CoreError::Conflict("totp_not_started"))?;
    let b32 = core
        .secrets
        .decrypt(enc)
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    let step = totp::verify(&totp::from_stored(b32.expose()), code, now / 1000).ok_or(
        CoreError::Invalid(vec![FieldError::new("code", "err.code_wrong")]),
    )?;
    let txn = core.db.begin().await?;
    let mut m = info.user.clone().into_active_model();
    m.totp_enabled = Set(true);
    m.totp_last_step = Set(Some(step));
    m.update(&txn).await?;
    recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(info.user.id))
        .exec(&txn)
        .await?;
    let mut codes = Vec::new();
    for (c, hash) in new_recovery_codes().await? {
        recovery_code::ActiveModel {
            code_hash: Set(hash),
            user_id: Set(info.user.id),
            used_at: Set(None),
        }
        .insert(&txn)
        .await?;
        codes.push(format!("{}-{}", &c[..5], &c[5..]));
    }
    audit_self(
        &txn,
        info,
        meta,
        now,
        "user.2fa_enable",
        &info.user.email,
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    Ok(codes)
}

/// Turns 2FA off; needs the password.
pub async fn disable_totp(
    core: &Core,
    info: &SessionInfo,
    password: &str,
    meta: &ReqMeta,
) -> Result<()> {
    let ok = info
        .user
        .password_hash
        .as_deref()
        .is_some_and(|h| verify_password(password, h));
    if !ok {
        return Err(CoreError::field("password", "err.current_password_wrong"));
    }
    let txn = core.db.begin().await?;
    let mut m = info.user.clone().into_active_model();
    m.totp_enabled = Set(false);
    m.totp_secret = Set(None);
    m.totp_last_step = Set(None);
    m.update(&txn).await?;
    recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(info.user.id))
        .exec(&txn)
        .await?;
    audit_self(
        &txn,
        info,
        meta,
        core.now(),
        "user.2fa_disable",
        &info.user.email,
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Checks Telegram Login Widget data (specs/channels.md §1.10) and returns the Telegram user id.
pub fn verify_telegram_login(core: &Core, fields: &BTreeMap<String, String>) -> Result<i64> {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let token = core
        .config
        .telegram_login_bot_token
        .as_ref()
        .ok_or(CoreError::NotConfigured("telegram_login"))?;
    let hash = fields.get("hash").ok_or(CoreError::BadCredentials)?;
    let check: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k.as_str() != "hash")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let data_check_string = check.join("\n");
    let secret_key = Sha256::digest(token.expose().as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret_key)
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    mac.update(data_check_string.as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    if !ct_eq(expected.as_bytes(), hash.to_lowercase().as_bytes()) {
        return Err(CoreError::BadCredentials);
    }
    let auth_date: i64 = fields
        .get("auth_date")
        .and_then(|d| d.parse().ok())
        .ok_or(CoreError::BadCredentials)?;
    let now_s = core.now() / 1000;
    if now_s - auth_date > 3600 || auth_date - now_s > 300 {
        return Err(CoreError::LinkExpired);
    }
    fields
        .get("id")
        .and_then(|i| i.parse().ok())
        .ok_or(CoreError::BadCredentials)
}

/// Sign in with Telegram: the widget's data must be valid and linked to an account.
pub async fn sign_in_telegram(
    core: &Core,
    fields: &BTreeMap<String, String>,
    meta: &ReqMeta,
) -> Result<NewSession> {
    let tg_id = verify_telegram_login(core, fields)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let user = user::Entity::find()
        .filter(user::Column::TelegramId.eq(tg_id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let s = start_session(core, &txn, &user, None, "telegram", meta, now).await?;
    txn.commit().await?;
    Ok(s)
}

/// Links the signed-in person's account to their Telegram account (for Sign in with Telegram).
pub async fn link_telegram(
    core: &Core,
    info: &SessionInfo,
    fields: &BTreeMap<String, String>,
    meta: &ReqMeta,
) -> Result<()> {
    let tg_id = verify_telegram_login(core, fields)?;
    let txn = core.db.begin().await?;
    let mut m = info.user.clone().into_active_model();
    m.telegram_id = Set(Some(tg_id));
    m.update(&txn)
        .await
        .map_err(|e| chatter_store::on_unique(e, "telegram_id"))?;
    audit_self(
        &txn,
        info,
        meta,
        core.now(),
        "user.telegram_link",
        &tg_id.to_string(),
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}
