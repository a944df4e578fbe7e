//! A company's team: members and roles, invitations by mail link, removal. Admins manage
//! managers and viewers; only owners manage owners and admins; the last owner stays.

use crate::accounts::{self, hash_password, SessionInfo};
use crate::{
    audit, hash_token, mailer, new_token, throttle, Actor, Core, CoreError, ReqMeta, Result,
};
use chatter_domain::{Email, Password, Permission, Role, UserId};
use chatter_store::entity::{company, invite, membership, session, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use uuid::Uuid;

pub const INVITE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Member {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub since: i64,
    pub totp_enabled: bool,
}

/// Members of the actor's company, owners first.
pub async fn list_members(conn: &impl ConnectionTrait, actor: &Actor) -> Result<Vec<Member>> {
    actor.require(Permission::Read)?;
    let ms = membership::Entity::find()
        .filter(membership::Column::CompanyId.eq(actor.company_id))
        .order_by_asc(membership::Column::CreatedAt)
        .all(conn)
        .await?;
    let mut out = Vec::new();
    for m in ms {
        if let (Some(u), Some(role)) = (
            user::Entity::find_by_id(m.user_id).one(conn).await?,
            Role::parse(&m.role),
        ) {
            out.push(Member {
                user_id: u.id,
                name: u.name,
                email: u.email,
                role,
                since: m.created_at,
                totp_enabled: u.totp_enabled,
            });
        }
    }
    out.sort_by(|a, b| b.role.cmp(&a.role).then(a.since.cmp(&b.since)));
    Ok(out)
}

/// Open invitations of the actor's company.
pub async fn list_invites(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    now: i64,
) -> Result<Vec<invite::Model>> {
    actor.require(Permission::Manage)?;
    Ok(invite::Entity::find()
        .filter(invite::Column::CompanyId.eq(actor.company_id))
        .filter(invite::Column::AcceptedAt.is_null())
        .filter(invite::Column::RevokedAt.is_null())
        .filter(invite::Column::ExpiresAt.gt(now))
        .order_by_desc(invite::Column::CreatedAt)
        .all(conn)
        .await?)
}

/// Invites `email` with `role`: an invitation mailed with a link valid for 7 days.
/// Returns the link (also shown to the inviter, to pass on by other means).
pub async fn invite(
    core: &Core,
    actor: &Actor,
    email: &str,
    role: &str,
    lang: &str,
) -> Result<String> {
    actor.require(Permission::Manage)?;
    let email = Email::parse("email", email).map_err(|e| CoreError::Invalid(vec![e]))?;
    let role = Role::parse(role).ok_or(CoreError::field("role", "err.role_invalid"))?;
    if !actor.role.can_assign(role) {
        return Err(CoreError::field("role", "err.role_not_allowed"));
    }
    let now = core.now();
    // An invitation is a mail a member makes us send to any address: a few an hour per
    // address, a few dozen per IP.
    let limits = throttle::mail_limits("invite", email.as_str(), &actor.meta.ip);
    if let Some(r) = throttle::reserve(&core.db, &limits, now).await? {
        return Err(CoreError::Throttled(r.retry_after_secs));
    }
    let txn = core.db.begin().await?;
    if let Some(u) = accounts::find_user_by_email(&txn, email.as_str()).await? {
        let already = membership::Entity::find_by_id((actor.company_id.uuid(), u.id))
            .one(&txn)
            .await?
            .is_some();
        if already {
            return Err(CoreError::field("email", "err.already_member"));
        }
    }
    let company = company::Entity::find_by_id(actor.company_id)
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let (token, hash) = new_token();
    invite::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(actor.company_id.uuid()),
        email: Set(email.as_str().to_string()),
        role: Set(role.as_str().to_string()),
        token_hash: Set(hash),
        invited_by: Set(actor.user()?.uuid()),
        created_at: Set(now),
        expires_at: Set(now + INVITE_TTL_MS),
        accepted_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(&txn)
    .await?;
    let link = format!("{}/invites/{token}", core.config.public_url);
    let (inviter, company_name) = (
        mailer::one_line(&actor.label),
        mailer::one_line(&company.name),
    );
    let (subject, body) = if lang == "en" {
        (
            format!("Invitation to {company_name} in Chatter"),
            format!(
                "{inviter} invites you to join {company_name} in Chatter.\n\nAccept within 7 days:\n{link}\n"
            ),
        )
    } else {
        (format!("Приглашение в {company_name} в Чаттере"), format!("{inviter} приглашает вас в компанию «{company_name}» в Чаттере.\n\nПринять приглашение (ссылка действует 7 дней):\n{link}\n"))
    };
    mailer::enqueue(core, &txn, email.as_str(), &subject, &body).await?;
    audit::record(
        &txn,
        actor,
        now,
        "team.invite",
        email.as_str(),
        serde_json::json!({"role": role.as_str()}),
    )
    .await?;
    txn.commit().await?;
    Ok(link)
}

pub async fn revoke_invite(core: &Core, actor: &Actor, invite_id: Uuid) -> Result<()> {
    actor.require(Permission::Manage)?;
    let txn = core.db.begin().await?;
    let inv = invite::Entity::find_by_id(invite_id)
        .filter(invite::Column::CompanyId.eq(actor.company_id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let email = inv.email.clone();
    let mut m = inv.into_active_model();
    m.revoked_at = Set(Some(core.now()));
    m.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        core.now(),
        "team.invite_revoke",
        &email,
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// An invitation as its link shows it.
#[derive(Clone, Debug)]
pub struct InviteView {
    pub company_name: String,
    pub email: String,
    /// The address with most of its name hidden, for a person signed in as someone else.
    pub masked_email: String,
    pub role: Role,
    pub has_account: bool,
}

pub async fn find_invite(core: &Core, token: &str) -> Result<InviteView> {
    let inv = valid_invite(&core.db, token, core.now()).await?;
    let company = company::Entity::find_by_id(inv.company_id)
        .one(&core.db)
        .await?
        .ok_or(CoreError::LinkExpired)?;
    let has_account = accounts::find_user_by_email(&core.db, &inv.email)
        .await?
        .is_some();
    Ok(InviteView {
        company_name: company.name,
        masked_email: mask_email(&inv.email),
        email: inv.email,
        role: Role::parse(&inv.role).unwrap_or(Role::Viewer),
        has_account,
    })
}

/// `anna@example.ru` → `a***@example.ru`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// Whether the signed-in person is the one an invitation was sent to.
pub fn invite_is_for(view: &InviteView, info: &SessionInfo) -> bool {
    view.email.eq_ignore_ascii_case(&info.user.email)
}

async fn valid_invite(conn: &impl ConnectionTrait, token: &str, now: i64) -> Result<invite::Model> {
    invite::Entity::find()
        .filter(invite::Column::TokenHash.eq(hash_token(token)))
        .one(conn)
        .await?
        .filter(|i| i.accepted_at.is_none() && i.revoked_at.is_none() && i.expires_at > now)
        .ok_or(CoreError::LinkExpired)
}

/// Accepts an invitation as the signed-in person; their session switches to the company.
pub async fn accept_invite(
    core: &Core,
    info: &SessionInfo,
    token: &str,
    meta: &ReqMeta,
) -> Result<Uuid> {
    let now = core.now();
    let txn = core.db.begin().await?;
    let inv = valid_invite(&txn, token, now).await?;
    // The link is bound to the address it was sent to: holding it is not enough.
    if !inv.email.eq_ignore_ascii_case(&info.user.email) {
        return Err(CoreError::Forbidden);
    }
    join(&txn, &inv, info.user.id, now).await?;
    let mut s = info.session.clone().into_active_model();
    s.company_id = Set(Some(inv.company_id));
    s.update(&txn).await?;
    audit::insert(
        &txn,
        Some(inv.company_id),
        Some(info.user.id),
        &info.user.email,
        meta,
        now,
        "team.invite_accept",
        &info.user.email,
        serde_json::json!({"role": inv.role}),
    )
    .await?;
    txn.commit().await?;
    Ok(inv.company_id)
}

/// Accepts an invitation by creating the account it was sent to; returns a new session.
pub async fn accept_invite_new_account(
    core: &Core,
    token: &str,
    name: &str,
    password: &str,
    meta: &ReqMeta,
) -> Result<accounts::NewSession> {
    let mut errs = Vec::new();
    let name = accounts::name_text("name", name)
        .map_err(|e| errs.push(e))
        .ok();
    let password = Password::parse("password", password)
        .map_err(|e| errs.push(e))
        .ok();
    let (Some(name), Some(password)) = (name, password) else {
        return Err(CoreError::Invalid(errs));
    };
    let hash = hash_password(password.expose())?;
    let now = core.now();
    let txn = core.db.begin().await?;
    let inv = valid_invite(&txn, token, now).await?;
    if accounts::find_user_by_email(&txn, &inv.email)
        .await?
        .is_some()
    {
        return Err(CoreError::Conflict("account_exists"));
    }
    let user_id = Uuid::now_v7();
    user::ActiveModel {
        id: Set(user_id),
        email: Set(inv.email.clone()),
        name: Set(name),
        password_hash: Set(Some(hash)),
        telegram_id: Set(None),
        totp_secret: Set(None),
        totp_enabled: Set(false),
        totp_last_step: Set(None),
        locale: Set("ru".into()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| chatter_store::on_unique(e, "email"))?;
    join(&txn, &inv, user_id, now).await?;
    txn.commit().await?;
    // The session is made in its own short transaction after the account exists.
    let s = accounts::sign_in(core, &inv.email, password.expose(), meta).await?;
    let txn = core.db.begin().await?;
    audit::insert(
        &txn,
        Some(inv.company_id),
        Some(user_id),
        &inv.email,
        meta,
        now,
        "team.invite_accept",
        &inv.email,
        serde_json::json!({"role": inv.role, "new_account": true}),
    )
    .await?;
    let sess = session::Entity::find_by_id(hash_token(&s.token))
        .one(&txn)
        .await?;
    if let Some(sess) = sess {
        let mut m = sess.into_active_model();
        m.company_id = Set(Some(inv.company_id));
        m.update(&txn).await?;
    }
    txn.commit().await?;
    Ok(s)
}

async fn join(
    conn: &impl ConnectionTrait,
    inv: &invite::Model,
    user_id: Uuid,
    now: i64,
) -> Result<()> {
    let used = invite::Entity::update_many()
        .col_expr(
            invite::Column::AcceptedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(invite::Column::Id.eq(inv.id))
        .filter(invite::Column::AcceptedAt.is_null())
        .exec(conn)
        .await?;
    if used.rows_affected != 1 {
        return Err(CoreError::LinkExpired);
    }
    if membership::Entity::find_by_id((inv.company_id, user_id))
        .one(conn)
        .await?
        .is_some()
    {
        return Err(CoreError::Conflict("already_member"));
    }
    membership::ActiveModel {
        company_id: Set(inv.company_id),
        user_id: Set(user_id),
        role: Set(inv.role.clone()),
        created_at: Set(now),
    }
    .insert(conn)
    .await?;
    Ok(())
}

async fn owners(conn: &impl ConnectionTrait, company_id: chatter_domain::CompanyId) -> Result<u64> {
    Ok(membership::Entity::find()
        .filter(membership::Column::CompanyId.eq(company_id))
        .filter(membership::Column::Role.eq(Role::Owner.as_str()))
        .count(conn)
        .await?)
}

/// Gives the member `user_id` of the actor's company the role named `role`.
pub async fn change_role(core: &Core, actor: &Actor, user_id: UserId, role: &str) -> Result<()> {
    actor.require(Permission::Manage)?;
    let user_id = Uuid::from(user_id);
    let new = Role::parse(role).ok_or(CoreError::field("role", "err.role_invalid"))?;
    let txn = core.db.begin().await?;
    let m = membership::Entity::find_by_id((actor.company_id.uuid(), user_id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let old = Role::parse(&m.role).unwrap_or(Role::Viewer);
    if !actor.role.can_assign(old) || !actor.role.can_assign(new) {
        return Err(CoreError::Forbidden);
    }
    if old == Role::Owner && new != Role::Owner && owners(&txn, actor.company_id).await? <= 1 {
        return Err(CoreError::Conflict("last_owner"));
    }
    let mut am = m.into_active_model();
    am.role = Set(new.as_str().to_string());
    am.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        core.now(),
        "team.role_change",
        &user_id.to_string(),
        serde_json::json!({"from": old.as_str(), "to": new.as_str()}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Removes a member from the company (their account stays; sessions pointing here move on).
pub async fn remove_member(core: &Core, actor: &Actor, user_id: UserId) -> Result<()> {
    actor.require(Permission::Manage)?;
    let user_id = Uuid::from(user_id);
    let txn = core.db.begin().await?;
    let m = membership::Entity::find_by_id((actor.company_id.uuid(), user_id))
        .one(&txn)
        .await?
        .ok_or(CoreError::NotFound)?;
    let old = Role::parse(&m.role).unwrap_or(Role::Viewer);
    if !actor.role.can_assign(old) {
        return Err(CoreError::Forbidden);
    }
    if old == Role::Owner && owners(&txn, actor.company_id).await? <= 1 {
        return Err(CoreError::Conflict("last_owner"));
    }
    membership::Entity::delete_by_id((actor.company_id.uuid(), user_id))
        .exec(&txn)
        .await?;
    session::Entity::update_many()
        .col_expr(
            session::Column::CompanyId,
            sea_orm::sea_query::Expr::value(Option::<Uuid>::None),
        )
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::CompanyId.eq(actor.company_id))
        .exec(&txn)
        .await?;
    let email = user::Entity::find_by_id(user_id)
        .one(&txn)
        .await?
        .map(|u| u.email)
        .unwrap_or_default();
    audit::record(
        &txn,
        actor,
        core.now(),
        "team.remove",
        &email,
        serde_json::json!({"role": old.as_str()}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}
