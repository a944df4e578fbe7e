//! Passwords and the profile: reset by a single-use mailed link (its job writes the mail),
//! changing the password, and the member's own name and language.

use super::*;

use crate::jobs::{BackgroundJob, JobError, JobMeta, JobOptions};

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
    PasswordResetMail {
        email: email.as_str().to_string(),
        ip: meta.ip.clone(),
        lang: lang.to_string(),
        user_agent: meta.user_agent.chars().take(300).collect(),
    }
    .enqueue(&core.db, JobOptions::at(now))
    .await?;
    core.jobs_notify.notify_waiters();
    Ok(())
}

/// The job behind "forgot password": if the address has an account, a reset link is made and
/// mailed (through the mail job) and the request audited; else nothing happens.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PasswordResetMail {
    pub email: String,
    pub ip: String,
    pub lang: String,
    pub user_agent: String,
}

#[async_trait::async_trait]
impl BackgroundJob for PasswordResetMail {
    const NAME: &'static str = "password_reset_mail";

    async fn run(&self, core: &Core, _job: &JobMeta) -> std::result::Result<(), JobError> {
        let meta = ReqMeta {
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
        };
        mail_reset_link(core, &self.email, &self.lang, &meta)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))
    }
}

pub(super) async fn mail_reset_link(
    core: &Core,
    email: &str,
    lang: &str,
    meta: &ReqMeta,
) -> Result<()> {
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
pub(super) async fn spend_reset_links(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    now: i64,
) -> Result<()> {
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
