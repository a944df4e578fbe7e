//! Sign-up: a company and its owner. On an instance that already has accounts, nothing is
//! created until the owner opens the link mailed to the address; the page answers "check your
//! mail" whoever owns it, and the request does the same work either way (it checks the form,
//! hashes the password, counts the request and enqueues one job). The job, not the request,
//! looks the address up: a known owner is told "you already have an account", a new one gets
//! the confirmation link. The very first account of an empty instance is created at once, so
//! that a self-hoster without mail set up can get in; an empty instance has nobody to find.

use crate::accounts::{
    create_company_in, find_user_by_email, first_company, hash_password, insert_session, NewSession,
};
use crate::jobs::{BackgroundJob, JobError, JobMeta, JobOptions};
use crate::{audit, hash_token, mailer, new_token, throttle, Core, CoreError, ReqMeta, Result};
use chatter_domain::values::{limits, required_text};
use chatter_domain::{Email, FieldError, Password};
use chatter_store::entity::{signup_confirmation, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, TransactionTrait,
};
use uuid::Uuid;

/// How long a confirmation link stays good.
pub const CONFIRM_TTL_MS: i64 = 24 * 3600 * 1000;

#[derive(Clone, Debug, serde::Deserialize)]
pub struct SignUp {
    pub company_name: String,
    pub name: String,
    pub email: String,
    pub password: String,
}

/// A person's or a company's name: required, at most `limits::NAME` characters, and on one
/// line — no line breaks or other control characters, which would reach mail text and headers,
/// and no bidi overrides, which would turn the company switcher's next entry around.
pub fn name_text(field: &'static str, raw: &str) -> Result<String, FieldError> {
    required_text(field, raw, limits::NAME)
}

/// A sign-up form that passed every check.
struct Valid {
    company_name: String,
    name: String,
    email: Email,
    password: Password,
}

fn validate(input: &SignUp) -> Result<Valid> {
    let mut errs = Vec::new();
    let company_name = name_text("company_name", &input.company_name)
        .map_err(|e| errs.push(e))
        .ok();
    let name = name_text("name", &input.name)
        .map_err(|e| errs.push(e))
        .ok();
    let email = Email::parse("email", &input.email)
        .map_err(|e| errs.push(e))
        .ok();
    let password = Password::parse("password", &input.password)
        .map_err(|e| errs.push(e))
        .ok();
    match (company_name, name, email, password) {
        (Some(company_name), Some(name), Some(email), Some(password)) => Ok(Valid {
            company_name,
            name,
            email,
            password,
        }),
        _ => Err(CoreError::Invalid(errs)),
    }
}

/// What a sign-up from the page led to.
#[derive(Debug)]
pub enum SignUpOutcome {
    /// The first account of an empty instance: created and signed in.
    Created {
        session: NewSession,
        user_id: Uuid,
        company_id: Uuid,
    },
    /// A mail is on its way (a confirmation link, or "you already have an account"); nothing
    /// was created.
    CheckMail,
}

/// Sign-up from the page (see the module's comment).
pub async fn sign_up_or_notify(
    core: &Core,
    input: &SignUp,
    lang: &str,
    meta: &ReqMeta,
) -> Result<SignUpOutcome> {
    let v = validate(input)?;
    let hash = hash_password(v.password.expose())?;
    if user::Entity::find().count(&core.db).await? == 0 {
        let (session, user_id, company_id) = create_account(
            core,
            &v.company_name,
            &v.name,
            v.email.as_str(),
            hash,
            lang,
            meta,
        )
        .await?;
        return Ok(SignUpOutcome::Created {
            session,
            user_id,
            company_id,
        });
    }
    let now = core.now();
    let limits = throttle::mail_limits("signup", v.email.as_str(), &meta.ip);
    match throttle::reserve(&core.db, &limits, now).await? {
        None => {}
        // Enough mail to this address this hour: the page says the same, no more mail goes.
        Some(r) if r.index == 0 => return Ok(SignUpOutcome::CheckMail),
        Some(r) => return Err(CoreError::Throttled(r.retry_after_secs)),
    }
    SignUpMail {
        company_name: v.company_name.clone(),
        email: v.email.as_str().to_string(),
        ip: meta.ip.clone(),
        lang: lang.to_string(),
        name: v.name.clone(),
        password_hash: core.secrets.encrypt(&hash),
        user_agent: meta.user_agent.chars().take(300).collect(),
    }
    .enqueue(&core.db, JobOptions::at(now))
    .await?;
    core.jobs_notify.notify_waiters();
    Ok(SignUpOutcome::CheckMail)
}

/// The job behind a sign-up: mails the confirmation link to a new address, or tells the owner
/// of a known one that they already have an account. The password hash is encrypted at rest.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SignUpMail {
    pub company_name: String,
    pub email: String,
    pub ip: String,
    pub lang: String,
    pub name: String,
    pub password_hash: String,
    pub user_agent: String,
}

#[async_trait::async_trait]
impl BackgroundJob for SignUpMail {
    const NAME: &'static str = "sign_up_mail";

    async fn run(&self, core: &Core, _job: &JobMeta) -> std::result::Result<(), JobError> {
        mail_sign_up(core, self)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))
    }
}

async fn mail_sign_up(core: &Core, p: &SignUpMail) -> Result<()> {
    let now = core.now();
    let meta = ReqMeta {
        ip: p.ip.clone(),
        user_agent: p.user_agent.clone(),
    };
    let url = &core.config.public_url;
    let txn = core.db.begin().await?;
    if let Some(u) = find_user_by_email(&txn, &p.email).await? {
        let name = mailer::one_line(&u.name);
        let (subject, body) = if p.lang == "en" {
            ("Chatter: you already have an account".to_string(), format!("Hello, {name}!\n\nSomeone (perhaps you) tried to sign up to Chatter with this e-mail. You already have an account.\n\nSign in: {url}/sign-in\nForgot your password? {url}/forgot-password\n\nIf it was not you, ignore this mail; nothing has changed.\n"))
        } else {
            ("Чаттер: у вас уже есть аккаунт".to_string(), format!("Здравствуйте, {name}!\n\nКто-то (возможно, вы) пытался зарегистрироваться в Чаттере с этим email. У вас уже есть аккаунт.\n\nВойти: {url}/sign-in\nЗабыли пароль? {url}/forgot-password\n\nЕсли это были не вы, просто проигнорируйте письмо — ничего не изменилось.\n"))
        };
        mailer::enqueue(core, &txn, &u.email, &subject, &body).await?;
        let company = first_company(&txn, u.id).await?;
        audit::insert(
            &txn,
            company,
            None,
            &u.email,
            &meta,
            now,
            "user.sign_up_existing",
            &u.email,
            serde_json::json!({}),
        )
        .await?;
        txn.commit().await?;
        return Ok(());
    }
    let (token, token_hash) = new_token();
    signup_confirmation::ActiveModel {
        token_hash: Set(token_hash),
        email: Set(p.email.clone()),
        name: Set(p.name.clone()),
        company_name: Set(p.company_name.clone()),
        password_hash: Set(p.password_hash.clone()),
        locale: Set(if p.lang == "en" { "en" } else { "ru" }.into()),
        created_at: Set(now),
        expires_at: Set(now + CONFIRM_TTL_MS),
    }
    .insert(&txn)
    .await?;
    let link = format!("{url}/sign-up/confirm/{token}");
    let name = mailer::one_line(&p.name);
    let company = mailer::one_line(&p.company_name);
    let (subject, body) = if p.lang == "en" {
        ("Chatter: confirm your sign-up".to_string(), format!("Hello, {name}!\n\nTo create the company «{company}» in Chatter, open this link within 24 hours:\n{link}\n\nIf you did not sign up, ignore this mail; nothing is created.\n"))
    } else {
        ("Чаттер: подтвердите регистрацию".to_string(), format!("Здравствуйте, {name}!\n\nЧтобы создать компанию «{company}» в Чаттере, откройте ссылку в течение суток:\n{link}\n\nЕсли вы не регистрировались, просто проигнорируйте письмо — ничего не будет создано.\n"))
    };
    mailer::enqueue(core, &txn, &p.email, &subject, &body).await?;
    // Expired links of anybody go with each new one, so the table holds only live ones.
    signup_confirmation::Entity::delete_many()
        .filter(signup_confirmation::Column::ExpiresAt.lte(now))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// A sign-up waiting for its link, as the confirmation page shows it.
#[derive(Clone, Debug)]
pub struct PendingSignUp {
    pub email: String,
    pub company_name: String,
    pub name: String,
}

async fn live_confirmation(
    conn: &impl ConnectionTrait,
    token: &str,
    now: i64,
) -> Result<signup_confirmation::Model> {
    signup_confirmation::Entity::find_by_id(hash_token(token))
        .filter(signup_confirmation::Column::ExpiresAt.gt(now))
        .one(conn)
        .await?
        .ok_or(CoreError::LinkExpired)
}

/// The sign-up behind a mailed link, or `LinkExpired` when it is used, expired or unknown.
pub async fn pending_sign_up(core: &Core, token: &str) -> Result<PendingSignUp> {
    let row = live_confirmation(&core.db, token, core.now()).await?;
    Ok(PendingSignUp {
        email: row.email,
        company_name: row.company_name,
        name: row.name,
    })
}

/// Opens a mailed link: creates the company, its owner and a session, and spends every link
/// of the address. When the address got an account meanwhile, nothing is created.
pub async fn confirm_sign_up(
    core: &Core,
    token: &str,
    meta: &ReqMeta,
) -> Result<(NewSession, Uuid, Uuid)> {
    let now = core.now();
    let row = live_confirmation(&core.db, token, now).await?;
    let hash = core
        .secrets
        .decrypt(&row.password_hash)
        .map_err(|e| CoreError::Internal(format!("sign-up password hash: {e}")))?;
    let txn = core.db.begin().await?;
    // Conditional delete: of two concurrent clicks, one wins.
    let used = signup_confirmation::Entity::delete_many()
        .filter(signup_confirmation::Column::TokenHash.eq(row.token_hash.clone()))
        .exec(&txn)
        .await?;
    if used.rows_affected != 1 {
        return Err(CoreError::LinkExpired);
    }
    signup_confirmation::Entity::delete_many()
        .filter(signup_confirmation::Column::Email.eq(row.email.clone()))
        .exec(&txn)
        .await?;
    if find_user_by_email(&txn, &row.email).await?.is_some() {
        txn.commit().await?;
        return Err(CoreError::Conflict("sign_up_account_exists"));
    }
    let created = create_account_in(
        core,
        &txn,
        &row.company_name,
        &row.name,
        &row.email,
        hash.expose().to_string(),
        &row.locale,
        meta,
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(created)
}

/// Creates a company, its owner and a session at once, with no mail (the demo, tests and the
/// first account of an empty instance).
pub async fn sign_up(
    core: &Core,
    input: &SignUp,
    meta: &ReqMeta,
) -> Result<(NewSession, Uuid, Uuid)> {
    let v = validate(input)?;
    let hash = hash_password(v.password.expose())?;
    create_account(
        core,
        &v.company_name,
        &v.name,
        v.email.as_str(),
        hash,
        "ru",
        meta,
    )
    .await
}

async fn create_account(
    core: &Core,
    company_name: &str,
    name: &str,
    email: &str,
    password_hash: String,
    locale: &str,
    meta: &ReqMeta,
) -> Result<(NewSession, Uuid, Uuid)> {
    let now = core.now();
    let txn = core.db.begin().await?;
    if find_user_by_email(&txn, email).await?.is_some() {
        return Err(CoreError::field("email", "err.email_taken"));
    }
    let created = create_account_in(
        core,
        &txn,
        company_name,
        name,
        email,
        password_hash,
        locale,
        meta,
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(created)
}

#[allow(clippy::too_many_arguments)]
async fn create_account_in(
    core: &Core,
    txn: &impl ConnectionTrait,
    company_name: &str,
    name: &str,
    email: &str,
    password_hash: String,
    locale: &str,
    meta: &ReqMeta,
    now: i64,
) -> Result<(NewSession, Uuid, Uuid)> {
    let user_id = Uuid::now_v7();
    user::ActiveModel {
        id: Set(user_id),
        email: Set(email.to_string()),
        name: Set(name.to_string()),
        password_hash: Set(Some(password_hash)),
        telegram_id: Set(None),
        totp_secret: Set(None),
        totp_enabled: Set(false),
        totp_last_step: Set(None),
        locale: Set(locale.to_string()),
        created_at: Set(now),
    }
    .insert(txn)
    .await
    .map_err(|e| chatter_store::on_unique(e, "email"))?;
    let company_id = create_company_in(txn, company_name, user_id, now).await?;
    audit::insert(
        txn,
        Some(company_id),
        Some(user_id),
        email,
        meta,
        now,
        "company.create",
        company_name,
        serde_json::json!({}),
    )
    .await?;
    let s = insert_session(core, txn, user_id, Some(company_id), false, meta, now).await?;
    audit::insert(
        txn,
        Some(company_id),
        Some(user_id),
        email,
        meta,
        now,
        "user.sign_up",
        email,
        serde_json::json!({}),
    )
    .await?;
    Ok((s, user_id, company_id))
}
