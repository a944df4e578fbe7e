//! Leases: a named row that at most one holder owns until it expires. Used so that exactly
//! one node polls a given bot or runs a given account; the holder renews before expiry.

use crate::{stmt, Result};
use sea_orm::ConnectionTrait;

/// Takes or renews `name` for `holder` until `now + ttl_ms`. `true` if `holder` now holds it.
pub async fn acquire(
    conn: &impl ConnectionTrait,
    name: &str,
    holder: &str,
    now: i64,
    ttl_ms: i64,
) -> Result<bool> {
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.expires_at < $4 OR leases.holder = excluded.holder RETURNING holder",
            vec![name.into(), holder.into(), (now + ttl_ms).into(), now.into()],
        ))
        .await?;
    Ok(row.is_some())
}

/// Gives `name` up if `holder` holds it.
pub async fn release(conn: &impl ConnectionTrait, name: &str, holder: &str) -> Result<bool> {
    let r = conn
        .execute(stmt(
            conn.get_database_backend(),
            "DELETE FROM leases WHERE name = $1 AND holder = $2",
            vec![name.into(), holder.into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}
