//! Raw statements written once with PostgreSQL's `$n` placeholders and rewritten to SQLite's
//! `?n` form, so one text serves both backends where SeaORM's builder cannot express the SQL;
//! and the clock leases are measured on, which differs by backend.

use sea_orm::{DbBackend, Statement, Value};

/// Builds a statement for `backend` from SQL with `$1…$n` placeholders.
pub fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => sql.to_string(),
        _ => sql.replace('$', "?"),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// PostgreSQL's clock in Unix ms. `clock_timestamp()`, not `now()`: the time the statement
/// runs, not when its transaction began.
const POSTGRES_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// "Now" in Unix ms as SQL for a lease deadline or expiry on `backend`. On PostgreSQL the
/// database's own clock, so nodes whose clocks are minutes apart still agree when a lease ends
/// (a node ahead cannot take live work, a node behind cannot keep dead work); on SQLite, where
/// every node is one process on one machine, the caller's `now`, appended to `values` as the
/// next placeholder.
pub fn lease_now(backend: DbBackend, values: &mut Vec<Value>, now: i64) -> String {
    match backend {
        DbBackend::Postgres => POSTGRES_NOW_MS.to_string(),
        _ => {
            values.push(now.into());
            format!("${}", values.len())
        }
    }
}
