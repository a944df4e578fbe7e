//! Leases: a named row that at most one holder owns until it expires. Used so that exactly
//! one node polls a given bot or runs a given account; the holder renews before expiry. Like
//! job leases, they are measured on the database's clock on PostgreSQL.

use crate::{sql::lease_now, stmt, Result};
use sea_orm::{ConnectionTrait, Value};

/// Takes or renews `name` for `holder` for `ttl_ms` from now on the lease clock (`now` on
/// SQLite). `true` if `holder` now holds it.
pub async fn acquire(
    conn: &impl ConnectionTrait,
    name: &str,
    holder: &str,
    now: i64,
    ttl_ms: i64,
) -> Result<bool> {
    let backend = conn.get_database_backend();
    let mut values: Vec<Value> = vec![name.into(), holder.into(), ttl_ms.into()];
    let clock = lease_now(backend, &mut values, now);
    let sql = format!(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, {clock} + $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE leases.expires_at < {clock} OR leases.holder = excluded.holder RETURNING holder"
    );
    let row = conn.query_one(stmt(backend, &sql, values)).await?;
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
