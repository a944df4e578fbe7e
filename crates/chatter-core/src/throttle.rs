//! Attempt throttling shared by every node through the database: sign-in passwords, second
//! factors, and mail a stranger can make us send. Each attempt is *reserved* before it is
//! checked, by one atomic upsert that returns the new count, so parallel attempts cannot all
//! slip under a limit; an attempt that turns out good is released again. Counters live in
//! fixed windows: a key over its limit stays refused until its window (started by the first
//! counted attempt) ends.

use crate::Result;
use chatter_store::entity::throttle;
use chatter_store::stmt;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Wrong passwords allowed per (account, IP) pair in a window: the lock a stranger can cause
/// by guessing touches only their own address.
pub const PAIR_LIMIT: i32 = 5;
/// Wrong passwords allowed per account from all addresses together (a distributed guess).
pub const ACCOUNT_LIMIT: i32 = 100;
/// Wrong passwords allowed per IP in a window (an office shares one IP).
pub const IP_LIMIT: i32 = 30;
/// Wrong second-factor codes allowed per person in a window; only a completed sign-in clears it.
pub const TWO_FACTOR_USER_LIMIT: i32 = 5;
/// Wrong second-factor codes allowed per IP in a window.
pub const TWO_FACTOR_IP_LIMIT: i32 = 30;
/// Mail a stranger can trigger (password resets, invitations): per address and per IP, per hour.
pub const MAIL_WINDOW_MS: i64 = 3600 * 1000;
pub const MAIL_PER_ADDRESS: i32 = 3;
pub const MAIL_PER_IP: i32 = 20;
/// Counters whose window started this long ago are of no use to any limit here.
const STALE_MS: i64 = 24 * 3600 * 1000;

pub fn ip_key(ip: &str) -> String {
    format!("ip:{ip}")
}
pub fn account_key(email: &str) -> String {
    format!("account:{}", email.trim().to_lowercase())
}
pub fn pair_key(email: &str, ip: &str) -> String {
    format!("pair:{}|{ip}", email.trim().to_lowercase())
}
pub fn two_factor_user_key(user: uuid::Uuid) -> String {
    format!("2fa:user:{user}")
}
pub fn two_factor_ip_key(ip: &str) -> String {
    format!("2fa:ip:{ip}")
}
/// `kind`: what the mail is (`reset`, `invite`).
pub fn mail_address_key(kind: &str, email: &str) -> String {
    format!("mail:{kind}:{}", email.trim().to_lowercase())
}
pub fn mail_ip_key(kind: &str, ip: &str) -> String {
    format!("mail:{kind}:ip:{ip}")
}

/// One counter and its limit.
#[derive(Clone, Debug)]
pub struct Limit {
    pub key: String,
    pub limit: i32,
    pub window_ms: i64,
}

impl Limit {
    pub fn new(key: String, limit: i32, window_ms: i64) -> Self {
        Self {
            key,
            limit,
            window_ms,
        }
    }
}

/// The keys of a password attempt for `email` from `ip`, checked in this order.
pub fn sign_in_limits(email: &str, ip: &str) -> [Limit; 3] {
    [
        Limit::new(pair_key(email, ip), PAIR_LIMIT, WINDOW_MS),
        Limit::new(account_key(email), ACCOUNT_LIMIT, WINDOW_MS),
        Limit::new(ip_key(ip), IP_LIMIT, WINDOW_MS),
    ]
}

/// The keys of a second-factor attempt.
pub fn two_factor_limits(user: uuid::Uuid, ip: &str) -> [Limit; 2] {
    [
        Limit::new(two_factor_user_key(user), TWO_FACTOR_USER_LIMIT, WINDOW_MS),
        Limit::new(two_factor_ip_key(ip), TWO_FACTOR_IP_LIMIT, WINDOW_MS),
    ]
}

/// The keys of a mail of `kind` to `email` asked for from `ip`.
pub fn mail_limits(kind: &str, email: &str, ip: &str) -> [Limit; 2] {
    [
        Limit::new(
            mail_address_key(kind, email),
            MAIL_PER_ADDRESS,
            MAIL_WINDOW_MS,
        ),
        Limit::new(mail_ip_key(kind, ip), MAIL_PER_IP, MAIL_WINDOW_MS),
    ]
}

/// An attempt that went over a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Which of the limits given to `reserve`.
    pub index: usize,
    /// Seconds until that key's window ends.
    pub retry_after_secs: i64,
}

/// Counts one attempt against `key` in one statement (an upsert that starts a new window when
/// the old one is over) and returns the new count and the window's start.
async fn bump(
    conn: &impl ConnectionTrait,
    key: &str,
    window_ms: i64,
    now: i64,
) -> Result<(i32, i64)> {
    let sql = "INSERT INTO sign_in_throttle (\"key\", failures, window_start, locked_until) \
               VALUES ($1, 1, $2, 0) \
               ON CONFLICT (\"key\") DO UPDATE SET \
               failures = CASE WHEN sign_in_throttle.window_start <= $3 THEN 1 \
                          ELSE sign_in_throttle.failures + 1 END, \
               window_start = CASE WHEN sign_in_throttle.window_start <= $3 THEN $2 \
                          ELSE sign_in_throttle.window_start END \
               RETURNING failures, window_start";
    let cut = now - window_ms;
    let values = vec![key.into(), now.into(), cut.into()];
    let row = conn
        .query_one(stmt(conn.get_database_backend(), sql, values))
        .await?
        .ok_or_else(|| crate::CoreError::Internal("throttle upsert returned no row".into()))?;
    let failures: i32 = row.try_get("", "failures")?;
    let start: i64 = row.try_get("", "window_start")?;
    Ok((failures, start))
}

/// Reserves one attempt on every limit, in order, before the attempt is checked. If a limit is
/// over, the reservations already made on the earlier ones are released (a refused attempt
/// counts only where it was refused) and the refusal is returned.
pub async fn reserve(
    conn: &impl ConnectionTrait,
    limits: &[Limit],
    now: i64,
) -> Result<Option<Refused>> {
    // Keys come from strangers (any e-mail, any address): now and then forget the ones whose
    // window ended long ago, so the table does not grow without end.
    if rand::random::<u8>() < 2 {
        throttle::Entity::delete_many()
            .filter(throttle::Column::WindowStart.lt(now - STALE_MS))
            .exec(conn)
            .await?;
    }
    for (i, l) in limits.iter().enumerate() {
        let (count, start) = bump(conn, &l.key, l.window_ms, now).await?;
        if count > l.limit {
            for earlier in &limits[..i] {
                release(conn, &earlier.key).await?;
            }
            let secs = ((start + l.window_ms - now) + 999) / 1000;
            return Ok(Some(Refused {
                index: i,
                retry_after_secs: secs.max(1),
            }));
        }
    }
    Ok(None)
}

/// Gives back one reserved attempt (the attempt was good).
pub async fn release(conn: &impl ConnectionTrait, key: &str) -> Result<()> {
    let sql = "UPDATE sign_in_throttle SET failures = failures - 1 \
               WHERE \"key\" = $1 AND failures > 0";
    conn.execute(stmt(conn.get_database_backend(), sql, vec![key.into()]))
        .await?;
    Ok(())
}

/// Forgets every attempt counted against `key`.
pub async fn clear(conn: &impl ConnectionTrait, key: &str) -> Result<()> {
    throttle::Entity::delete_by_id(key.to_string())
        .exec(conn)
        .await?;
    Ok(())
}

/// Seconds until the first of `limits` that is full opens again, if any is (read only).
pub async fn locked_for(
    conn: &impl ConnectionTrait,
    limits: &[Limit],
    now: i64,
) -> Result<Option<i64>> {
    let mut worst = None;
    for l in limits {
        if let Some(row) = throttle::Entity::find_by_id(l.key.clone())
            .one(conn)
            .await?
        {
            let open_at = row.window_start + l.window_ms;
            if row.failures >= l.limit && open_at > now {
                let secs = (open_at - now + 999) / 1000;
                worst = Some(worst.map_or(secs, |w: i64| w.max(secs)));
            }
        }
    }
    Ok(worst)
}
