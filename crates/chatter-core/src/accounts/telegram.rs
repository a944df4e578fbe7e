//! Sign in with Telegram: checking the Login Widget's signed fields, signing in with a linked
//! Telegram account and linking one.

use super::*;

/// Checks Telegram Login Widget data (docs/providers/channels.md §1.10) and returns the
/// Telegram user id.
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
