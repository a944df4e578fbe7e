//! Signing in and out: email + password with throttling, the second step of 2FA, loading and
//! ending sessions, and switching or creating a company within a session.

use super::*;

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
pub(super) async fn check_second_factor(
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
pub(super) async fn use_recovery_code(
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
        .one(&core.read)
        .await?
    else {
        return Ok(None);
    };
    if s.expires_at <= now || s.pending_2fa {
        return Ok(None);
    }
    let Some(user) = user::Entity::find_by_id(s.user_id).one(&core.read).await? else {
        return Ok(None);
    };
    let companies = companies_of(&core.read, user.id).await?;
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
    company_id: chatter_domain::CompanyId,
    role: Role,
) -> Result<bool> {
    let Some(s) = session::Entity::find_by_id(hash_token(token))
        .one(&core.read)
        .await?
    else {
        return Ok(false);
    };
    if s.expires_at <= core.now() || s.pending_2fa {
        return Ok(false);
    }
    Ok(
        membership::Entity::find_by_id((company_id.uuid(), s.user_id))
            .one(&core.read)
            .await?
            .is_some_and(|m| Role::parse(&m.role) == Some(role)),
    )
}

/// Whether `token` is a session waiting for its second factor.
pub async fn pending_2fa(core: &Core, token: &str) -> Result<bool> {
    Ok(session::Entity::find_by_id(hash_token(token))
        .one(&core.read)
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
