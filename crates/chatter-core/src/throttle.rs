//! Sign-in throttling shared by every node through the database: failures are counted per
//! key (the client's IP, the account's email) in a window; past the limit the key is locked.

use crate::Result;
use chatter_store::entity::throttle;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};

pub const WINDOW_MS: i64 = 15 * 60 * 1000;
pub const LOCK_MS: i64 = 15 * 60 * 1000;
/// Failures allowed per account in a window.
pub const ACCOUNT_LIMIT: i32 = 5;
/// Failures allowed per IP in a window (an office shares one IP).
pub const IP_LIMIT: i32 = 30;

pub fn ip_key(ip: &str) -> String {
    format!("ip:{ip}")
}
pub fn account_key(email: &str) -> String {
    format!("account:{}", email.trim().to_lowercase())
}

/// Seconds until the first locked key opens, if any key is locked.
pub async fn locked_for(
    conn: &impl ConnectionTrait,
    keys: &[String],
    now: i64,
) -> Result<Option<i64>> {
    let mut worst = None;
    for k in keys {
        if let Some(row) = throttle::Entity::find_by_id(k.clone()).one(conn).await? {
            if row.locked_until > now {
                let secs = (row.locked_until - now + 999) / 1000;
                worst = Some(worst.map_or(secs, |w: i64| w.max(secs)));
            }
        }
    }
    Ok(worst)
}

/// Counts a failure against `key`; locks it once `limit` is reached within the window.
pub async fn fail(conn: &impl ConnectionTrait, key: &str, limit: i32, now: i64) -> Result<()> {
    let row = throttle::Entity::find_by_id(key.to_string())
        .one(conn)
        .await?;
    let (failures, start) = match row {
        Some(r) if now - r.window_start < WINDOW_MS => (r.failures + 1, r.window_start),
        _ => (1, now),
    };
    let locked_until = if failures >= limit { now + LOCK_MS } else { 0 };
    let m = throttle::ActiveModel {
        key: Set(key.to_string()),
        failures: Set(failures),
        window_start: Set(start),
        locked_until: Set(locked_until),
    };
    throttle::Entity::insert(m)
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(throttle::Column::Key)
                .update_columns([
                    throttle::Column::Failures,
                    throttle::Column::WindowStart,
                    throttle::Column::LockedUntil,
                ])
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Forgets the failures of `key` (after a successful sign-in).
pub async fn clear(conn: &impl ConnectionTrait, key: &str) -> Result<()> {
    throttle::Entity::delete_by_id(key.to_string())
        .exec(conn)
        .await?;
    Ok(())
}
