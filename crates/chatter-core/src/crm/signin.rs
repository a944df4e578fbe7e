//! Sign in with amoCRM (requirement R2.3, docs/providers/amocrm.md §1.8): the consent started
//! from the sign-in page, the callback that signs a known person in or offers a company to a new one,
//! the links between amoCRM users and Chatter people (made when someone connects amoCRM, from
//! the profile, or by a matching email inside the linked company), and amoCRM's "integration
//! disabled" hook (§1.7), which ends a company's connection.
//!
//! A company is linked to an amoCRM account while its integration names that account and is
//! not disconnected; an amoCRM user (`{account_id}:{user_id}`) is linked to at most one person.

use crate::accounts::{self, NewSession, SessionInfo};
use crate::crm::{self, account_hosts, amo, crm_error, limiter_for, oauth, seal_tokens};
use crate::{audit, hash_token, new_token, Actor, Core, CoreError, ReqMeta, Result};
use chatter_crm::amocrm::oauth::{identify, parse_callback, Callback, ConsentMode, SignedInUser};
use chatter_crm::amocrm::{AmoCrm, HookError};
use chatter_crm::{CrmAccount, Tokens};
use chatter_domain::{Email, Password};
use chatter_store::entity::{
    crm_integration, membership, oauth_state, pending_signup, user, user_identity,
};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `user_identities.provider` of amoCRM users.
pub const PROVIDER: &str = "amocrm";
/// `oauth_states.purpose` of a consent started from the sign-in page.
pub const PURPOSE_SIGNIN: &str = "amocrm_signin";
/// `oauth_states.purpose` of a consent started from the profile to link an amoCRM user.
pub const PURPOSE_LINK: &str = "amocrm_link";
/// `oauth_states.purpose` of connecting a company (see `crm::connect_url`).
const PURPOSE_CONNECT: &str = "amocrm_connect";
const STATE_TTL_MS: i64 = 15 * 60 * 1000;
const SIGNUP_TTL_MS: i64 = 15 * 60 * 1000;

/// What an OAuth state in a callback was started for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Connect,
    SignIn,
    Link,
}

/// The link key of an amoCRM user: the account id is stable, the subdomain is not (§1.8).
pub fn subject(account_id: i64, user_id: i64) -> String {
    format!("{account_id}:{user_id}")
}

/// The `state` of a well-formed callback.
fn state_param(query: &str) -> Option<String> {
    match parse_callback(query).ok()? {
        Callback::Approved { state, .. } | Callback::Denied { state } => state,
    }
}

/// Whether the callback is well formed and carries a `state`.
pub fn has_state(query: &str) -> bool {
    state_param(query).is_some_and(|s| !s.is_empty())
}

/// The `state` of the callback's query, for comparing with the one the browser kept.
pub fn callback_state(query: &str) -> Option<String> {
    state_param(query)
}

/// What the callback's live (unexpired, unused) state was started for; `None` when there is
/// no such state.
pub async fn state_purpose(core: &Core, query: &str) -> Result<Option<Purpose>> {
    let Some(state) = state_param(query) else {
        return Ok(None);
    };
    let row = oauth_state::Entity::find_by_id(hash_token(&state))
        .filter(oauth_state::Column::ExpiresAt.gt(core.now()))
        .one(&core.db)
        .await?;
    Ok(row.and_then(|r| match r.purpose.as_str() {
        PURPOSE_CONNECT => Some(Purpose::Connect),
        PURPOSE_SIGNIN => Some(Purpose::SignIn),
        PURPOSE_LINK => Some(Purpose::Link),
        _ => None,
    }))
}

/// Remembers a single-use state and returns `(consent URL, state)`.
async fn start(core: &Core, purpose: &str, company: Uuid, user: Uuid) -> Result<(String, String)> {
    let app = oauth(core)?;
    let (state, hash) = new_token();
    oauth_state::ActiveModel {
        state_hash: Set(hash),
        company_id: Set(company),
        user_id: Set(user),
        purpose: Set(purpose.into()),
        expires_at: Set(core.now() + STATE_TTL_MS),
    }
    .insert(&core.db)
    .await?;
    let url = app
        .consent_url(&state, ConsentMode::Popup)
        .map_err(crm_error)?;
    Ok((url, state))
}

/// Starts Sign in with amoCRM: returns amoCRM's consent URL and the state, which the browser
/// must keep (a cookie) so that nobody can finish someone else's sign-in in it. The state is
/// bound to no one yet: its company and user are the nil id.
pub async fn signin_url(core: &Core) -> Result<(String, String)> {
    start(core, PURPOSE_SIGNIN, Uuid::nil(), Uuid::nil()).await
}

/// Starts linking the signed-in person to their amoCRM user (from the profile).
pub async fn link_url(core: &Core, info: &SessionInfo) -> Result<String> {
    let company = info.session.company_id.unwrap_or_default();
    Ok(start(core, PURPOSE_LINK, company, info.user.id).await?.0)
}

/// Uses up the callback's state if it is live, of `purpose` and (when given) this person's.
async fn take_state(
    core: &Core,
    state: Option<&str>,
    purpose: &str,
    user: Option<Uuid>,
) -> Result<()> {
    let state = state.ok_or(CoreError::LinkExpired)?;
    let mut q = oauth_state::Entity::delete_many()
        .filter(oauth_state::Column::StateHash.eq(hash_token(state)))
        .filter(oauth_state::Column::Purpose.eq(purpose))
        .filter(oauth_state::Column::ExpiresAt.gt(core.now()));
    if let Some(u) = user {
        q = q.filter(oauth_state::Column::UserId.eq(u));
    }
    if q.exec(&core.db).await?.rows_affected != 1 {
        return Err(CoreError::LinkExpired);
    }
    Ok(())
}

/// Checks the callback and its state, exchanges the code and asks amoCRM who this is.
/// A refusal on amoCRM's page uses the state up and answers `err.crm_denied`.
async fn callback(
    core: &Core,
    query: &str,
    purpose: &str,
    user: Option<Uuid>,
) -> Result<(SignedInUser, String, Tokens)> {
    let cb = parse_callback(query)
        .map_err(|_| CoreError::field("amocrm", "err.crm_callback_invalid"))?;
    let (code, referer, state) = match cb {
        Callback::Approved {
            code,
            referer,
            state,
            ..
        } => (code, referer, state),
        Callback::Denied { state } => {
            take_state(core, state.as_deref(), purpose, user).await?;
            return Err(CoreError::field("amocrm", "err.crm_denied"));
        }
    };
    take_state(core, state.as_deref(), purpose, user).await?;
    let base = account_hosts(amo(core)?)
        .base_url_for(&referer)
        .map_err(|_| CoreError::field("amocrm", "err.crm_callback_invalid"))?;
    let tokens = oauth(core)?
        .exchange_code(&base, &code)
        .await
        .map_err(crm_error)?;
    let api = AmoCrm::new(core.http.clone(), &base, &tokens.access, limiter_for(&base));
    let who = identify(&api).await.map_err(crm_error)?;
    Ok((who, base, tokens))
}

fn label_of(who: &SignedInUser) -> String {
    match &who.name {
        Some(n) => format!("{} ({}) — {n}", who.account_name, who.subdomain),
        None => format!("{} ({})", who.account_name, who.subdomain),
    }
}

/// Links `user` to the amoCRM user unless that one is linked already; true when linked now.
async fn insert_link(
    conn: &impl ConnectionTrait,
    subject: &str,
    user: Uuid,
    label: &str,
    now: i64,
) -> Result<bool> {
    let n = user_identity::Entity::insert(user_identity::ActiveModel {
        provider: Set(PROVIDER.into()),
        subject: Set(subject.into()),
        user_id: Set(user),
        label: Set(label.into()),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            user_identity::Column::Provider,
            user_identity::Column::Subject,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(n == 1)
}

/// Called inside `crm::finish_connect`: the member who connected the account is its token's
/// amoCRM user. An amoCRM user already linked to someone else stays theirs.
pub(crate) async fn link_connecting(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    account: &CrmAccount,
    now: i64,
) -> Result<()> {
    let Some(user) = actor.user_id else {
        return Ok(());
    };
    let subject = subject(account.id, account.current_user_id);
    let label = format!("{} ({})", account.name, account.subdomain);
    if insert_link(conn, &subject, user.uuid(), &label, now).await? {
        audit::record(
            conn,
            actor,
            now,
            "user.amocrm_link",
            &label,
            serde_json::json!({"subject": subject, "via": "connect"}),
        )
        .await?;
    }
    Ok(())
}

/// Where the amoCRM callback leaves someone who is not signed in.
#[derive(Debug)]
pub enum SignInOutcome {
    /// Signed in (or waiting for the second factor).
    SignedIn(NewSession),
    /// The account belongs to a company this person is not a member of.
    NotMember { account_name: String },
    /// No company uses this account: the handle of the waiting sign-up (for a cookie).
    NewCompany { handle: String },
}

/// Who signed in at amoCRM and the tokens obtained, kept encrypted until the form is sent.
#[derive(Serialize, Deserialize)]
struct Pending {
    account_id: i64,
    account_name: String,
    subdomain: String,
    user_id: i64,
    name: Option<String>,
    email: Option<String>,
    lang: Option<String>,
    base_url: String,
    tokens: Tokens,
}

/// Companies linked to the account, oldest connection first.
async fn linked_companies(conn: &impl ConnectionTrait, account_id: i64) -> Result<Vec<Uuid>> {
    Ok(crm_integration::Entity::find()
        .filter(crm_integration::Column::Kind.eq("amocrm"))
        .filter(crm_integration::Column::AccountId.eq(account_id))
        .filter(crm_integration::Column::Status.ne(crm::integration::DISCONNECTED))
        .order_by_asc(crm_integration::Column::CreatedAt)
        .all(conn)
        .await?
        .into_iter()
        .map(|i| i.company_id)
        .collect())
}

async fn first_membership(
    conn: &impl ConnectionTrait,
    companies: &[Uuid],
    user: Uuid,
) -> Result<Option<Uuid>> {
    for c in companies {
        if membership::Entity::find_by_id((*c, user))
            .one(conn)
            .await?
            .is_some()
        {
            return Ok(Some(*c));
        }
    }
    Ok(None)
}

/// amoCRM sent someone back from a sign-in consent. A linked person is signed in (into the
/// company linked to this account when they are a member of it); an unlinked one whose email
/// is a member's of a linked company is linked and signed in; anyone else is refused or, when
/// no company uses the account, offered to create one. The tokens are not kept on a sign-in:
/// a non-admin's token would quietly narrow the company's connection.
pub async fn finish_signin(core: &Core, query: &str, meta: &ReqMeta) -> Result<SignInOutcome> {
    let (who, base, tokens) = callback(core, query, PURPOSE_SIGNIN, None).await?;
    let subject = subject(who.account_id, who.user_id);
    let now = core.now();
    let txn = core.db.begin().await?;
    let companies = linked_companies(&txn, who.account_id).await?;
    let linked = user_identity::Entity::find_by_id((PROVIDER.to_string(), subject.clone()))
        .one(&txn)
        .await?;
    let mut found = None;
    if let Some(l) = &linked {
        if let Some(u) = user::Entity::find_by_id(l.user_id).one(&txn).await? {
            let company = first_membership(&txn, &companies, u.id).await?;
            found = Some((u, company));
        }
    }
    if found.is_none() && !companies.is_empty() {
        if let Some(email) = &who.email {
            if let Some(u) = accounts::find_user_by_email(&txn, email).await? {
                if let Some(c) = first_membership(&txn, &companies, u.id).await? {
                    let label = label_of(&who);
                    if insert_link(&txn, &subject, u.id, &label, now).await? {
                        audit::insert(
                            &txn,
                            Some(c),
                            Some(u.id),
                            &u.email,
                            meta,
                            now,
                            "user.amocrm_link",
                            &label,
                            serde_json::json!({"subject": subject, "via": "email"}),
                        )
                        .await?;
                    }
                    found = Some((u, Some(c)));
                }
            }
        }
    }
    if let Some((u, company)) = found {
        let s = accounts::start_session(core, &txn, &u, company, "amocrm", meta, now).await?;
        txn.commit().await?;
        return Ok(SignInOutcome::SignedIn(s));
    }
    if !companies.is_empty() {
        txn.commit().await?;
        return Ok(SignInOutcome::NotMember {
            account_name: who.account_name,
        });
    }
    let pending = Pending {
        account_id: who.account_id,
        account_name: who.account_name,
        subdomain: who.subdomain,
        user_id: who.user_id,
        name: who.name,
        email: who.email,
        lang: who.lang,
        base_url: base,
        tokens,
    };
    let payload =
        serde_json::to_string(&pending).map_err(|e| CoreError::Internal(e.to_string()))?;
    let (handle, hash) = new_token();
    pending_signup::ActiveModel {
        handle_hash: Set(hash),
        provider: Set(PROVIDER.into()),
        payload: Set(core.secrets.encrypt(&payload)),
        expires_at: Set(now + SIGNUP_TTL_MS),
    }
    .insert(&txn)
    .await?;
    // Abandoned sign-ups hold live tokens: drop the expired ones as new ones come.
    pending_signup::Entity::delete_many()
        .filter(pending_signup::Column::ExpiresAt.lte(now))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(SignInOutcome::NewCompany { handle })
}

/// What the "create a company" form shows, from amoCRM.
#[derive(Clone, Debug)]
pub struct SignupPrefill {
    pub account_name: String,
    pub subdomain: String,
    pub name: String,
    pub email: String,
    /// The amoCRM user's email already belongs to a Chatter account.
    pub email_taken: bool,
}

async fn load_pending(core: &Core, handle: &str) -> Result<(pending_signup::Model, Pending)> {
    let row = pending_signup::Entity::find_by_id(hash_token(handle))
        .filter(pending_signup::Column::ExpiresAt.gt(core.now()))
        .one(&core.db)
        .await?
        .ok_or(CoreError::LinkExpired)?;
    let plain = core
        .secrets
        .decrypt(&row.payload)
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    let p: Pending =
        serde_json::from_str(plain.expose()).map_err(|e| CoreError::Internal(e.to_string()))?;
    Ok((row, p))
}

/// The waiting sign-up behind `handle`, or `LinkExpired`.
pub async fn signup_prefill(core: &Core, handle: &str) -> Result<SignupPrefill> {
    let (_, p) = load_pending(core, handle).await?;
    let email = p.email.clone().unwrap_or_default();
    let email_taken = !email.is_empty()
        && accounts::find_user_by_email(&core.db, &email)
            .await?
            .is_some();
    Ok(SignupPrefill {
        account_name: p.account_name,
        subdomain: p.subdomain,
        name: p.name.unwrap_or_default(),
        email,
        email_taken,
    })
}

/// Creates a company for the amoCRM account of a waiting sign-up, in one transaction: the
/// owner (with the password given), their link to the amoCRM user, the connection with the
/// tokens obtained and the account's metadata, and a session. An email that already has an
/// account (or an amoCRM user linked to one) is refused with `Conflict("amocrm_account_exists")`:
/// that person signs in with their password and connects amoCRM from the CRM page.
pub async fn create_company(
    core: &Core,
    handle: &str,
    input: &accounts::SignUp,
    meta: &ReqMeta,
) -> Result<NewSession> {
    let (row, p) = load_pending(core, handle).await?;
    let mut errs = Vec::new();
    let company_name = accounts::name_text("company_name", &input.company_name)
        .map_err(|e| errs.push(e))
        .ok();
    let name = accounts::name_text("name", &input.name)
        .map_err(|e| errs.push(e))
        .ok();
    let email = Email::parse("email", &input.email)
        .map_err(|e| errs.push(e))
        .ok();
    let password = Password::parse("password", &input.password)
        .map_err(|e| errs.push(e))
        .ok();
    let (Some(company_name), Some(name), Some(email), Some(password)) =
        (company_name, name, email, password)
    else {
        return Err(CoreError::Invalid(errs));
    };
    let subject = subject(p.account_id, p.user_id);
    let taken = || CoreError::Conflict("amocrm_account_exists");
    if accounts::find_user_by_email(&core.db, email.as_str())
        .await?
        .is_some()
    {
        return Err(taken());
    }
    let hash = accounts::hash_password(password.expose())?;
    // The same first read as a connect, before the transaction (it calls amoCRM).
    let (account, metadata) = crm::read_metadata(core, &p.base_url, &p.tokens.access).await?;
    let metadata =
        serde_json::to_string(&metadata).map_err(|e| CoreError::Internal(e.to_string()))?;
    let sealed = seal_tokens(core, &p.tokens)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    // Single use: of two submits, one creates the company.
    let used = pending_signup::Entity::delete_many()
        .filter(pending_signup::Column::HandleHash.eq(row.handle_hash.clone()))
        .exec(&txn)
        .await?;
    if used.rows_affected != 1 {
        return Err(CoreError::LinkExpired);
    }
    if accounts::find_user_by_email(&txn, email.as_str())
        .await?
        .is_some()
        || user_identity::Entity::find_by_id((PROVIDER.to_string(), subject.clone()))
            .one(&txn)
            .await?
            .is_some()
    {
        return Err(taken());
    }
    let locale = match p.lang.as_deref() {
        Some(l) if l.starts_with("en") => "en",
        _ => "ru",
    };
    let user_id = Uuid::now_v7();
    let owner = user::ActiveModel {
        id: Set(user_id),
        email: Set(email.as_str().to_string()),
        name: Set(name),
        password_hash: Set(Some(hash)),
        telegram_id: Set(None),
        totp_secret: Set(None),
        totp_enabled: Set(false),
        totp_last_step: Set(None),
        locale: Set(locale.into()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| match chatter_store::on_unique(e, "email") {
        chatter_store::StoreError::Conflict(_) => taken(),
        other => other.into(),
    })?;
    let company_id = accounts::create_company_in(&txn, &company_name, user_id, now).await?;
    let label = format!("{} ({})", account.name, account.subdomain);
    insert_link(&txn, &subject, user_id, &label, now).await?;
    crm_integration::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(company_id),
        kind: Set("amocrm".into()),
        account_id: Set(Some(account.id)),
        account_name: Set(account.name.clone()),
        base_url: Set(p.base_url.clone()),
        status: Set(crm::integration::CONNECTED.into()),
        tokens: Set(Some(sealed)),
        metadata: Set(metadata),
        last_sync_at: Set(Some(now)),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let entries = [
        (
            "company.create_via_amocrm",
            company_name.clone(),
            serde_json::json!({"account_id": account.id, "subject": subject}),
        ),
        (
            "user.amocrm_link",
            label.clone(),
            serde_json::json!({"subject": subject, "via": "sign_up"}),
        ),
        (
            "crm.connect",
            account.name.clone(),
            serde_json::json!({"account_id": account.id, "base_url": p.base_url}),
        ),
    ];
    for (action, target, details) in entries {
        audit::insert(
            &txn,
            Some(company_id),
            Some(user_id),
            owner.email.as_str(),
            meta,
            now,
            action,
            &target,
            details,
        )
        .await?;
    }
    let s =
        accounts::start_session(core, &txn, &owner, Some(company_id), "amocrm", meta, now).await?;
    txn.commit().await?;
    Ok(s)
}

/// amoCRM sent the signed-in person back from a link consent: links them to that amoCRM user.
/// One already linked to someone else is refused with `Conflict("amocrm_linked_elsewhere")`.
pub async fn finish_link(
    core: &Core,
    info: &SessionInfo,
    query: &str,
    meta: &ReqMeta,
) -> Result<()> {
    let (who, _, _) = callback(core, query, PURPOSE_LINK, Some(info.user.id)).await?;
    let subject = subject(who.account_id, who.user_id);
    let label = label_of(&who);
    let now = core.now();
    let txn = core.db.begin().await?;
    if !insert_link(&txn, &subject, info.user.id, &label, now).await? {
        let owner = user_identity::Entity::find_by_id((PROVIDER.to_string(), subject.clone()))
            .one(&txn)
            .await?
            .map(|l| l.user_id);
        return if owner == Some(info.user.id) {
            Ok(())
        } else {
            Err(CoreError::Conflict("amocrm_linked_elsewhere"))
        };
    }
    audit::insert(
        &txn,
        info.session.company_id,
        Some(info.user.id),
        &info.user.email,
        meta,
        now,
        "user.amocrm_link",
        &label,
        serde_json::json!({"subject": subject, "via": "profile"}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The person's amoCRM users, oldest link first.
pub async fn links_of(core: &Core, user: Uuid) -> Result<Vec<user_identity::Model>> {
    Ok(user_identity::Entity::find()
        .filter(user_identity::Column::Provider.eq(PROVIDER))
        .filter(user_identity::Column::UserId.eq(user))
        .order_by_asc(user_identity::Column::CreatedAt)
        .all(&core.db)
        .await?)
}

/// Removes one of the person's own links (`NotFound` for anyone else's).
pub async fn unlink(core: &Core, info: &SessionInfo, subject: &str, meta: &ReqMeta) -> Result<()> {
    let txn = core.db.begin().await?;
    let link = user_identity::Entity::find_by_id((PROVIDER.to_string(), subject.to_string()))
        .filter(user_identity::Column::UserId.eq(info.user.id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    user_identity::Entity::delete_by_id((PROVIDER.to_string(), subject.to_string()))
        .exec(&txn)
        .await?;
    audit::insert(
        &txn,
        info.session.company_id,
        Some(info.user.id),
        &info.user.email,
        meta,
        core.now(),
        "user.amocrm_unlink",
        &link.label,
        serde_json::json!({"subject": subject}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Why an "integration disabled" hook was refused.
#[derive(Debug, thiserror::Error)]
pub enum DisabledHookError {
    /// The signature or the client id is not ours: 401.
    #[error("bad signature")]
    BadSignature,
    /// Parameters missing or not numbers: 400.
    #[error("malformed hook: {0}")]
    Malformed(String),
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// amoCRM's "integration disabled" hook (§1.7), given its query string: every company
/// connected to that account loses its tokens and shows the integration as disabled, with
/// the fix (reconnect). Returns how many connections were ended; a repeat ends none.
pub async fn integration_disabled(
    core: &Core,
    query: &str,
    meta: &ReqMeta,
) -> Result<u64, DisabledHookError> {
    let hook = oauth(core)?
        .verify_disabled_hook(query)
        .map_err(|e| match e {
            HookError::BadSignature => DisabledHookError::BadSignature,
            HookError::Malformed(m) => DisabledHookError::Malformed(m),
        })?;
    let now = core.now();
    let txn = core.db.begin().await.map_err(CoreError::from)?;
    let ended = crm_integration::Entity::find()
        .filter(crm_integration::Column::Kind.eq("amocrm"))
        .filter(crm_integration::Column::AccountId.eq(hook.account_id))
        .filter(
            crm_integration::Column::Status
                .is_not_in([crm::integration::DISCONNECTED, crm::integration::DISABLED]),
        )
        .all(&txn)
        .await
        .map_err(CoreError::from)?;
    for i in &ended {
        crm_integration::Entity::update_many()
            .col_expr(
                crm_integration::Column::Status,
                Expr::value(crm::integration::DISABLED),
            )
            .col_expr(crm_integration::Column::Tokens, Expr::value(None::<String>))
            .col_expr(crm_integration::Column::UpdatedAt, Expr::value(now))
            .filter(crm_integration::Column::Id.eq(i.id))
            .exec(&txn)
            .await
            .map_err(CoreError::from)?;
        audit::insert(
            &txn,
            Some(i.company_id),
            None,
            "amocrm",
            meta,
            now,
            "crm.disabled_in_amocrm",
            &i.account_name,
            serde_json::json!({"account_id": hook.account_id}),
        )
        .await?;
    }
    txn.commit().await.map_err(CoreError::from)?;
    Ok(ended.len() as u64)
}
