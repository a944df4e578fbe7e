//! Two-factor sign-in: TOTP setup with a secret stored encrypted, recovery codes, enabling and
//! disabling.

use super::*;

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
pub(super) async fn new_recovery_codes() -> Result<Vec<(String, String)>> {
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
