//! Raw statements written once with PostgreSQL's `$n` placeholders and rewritten to SQLite's
//! `?n` form, so one text serves both backends where SeaORM's builder cannot express the SQL.

use sea_orm::{DbBackend, Statement, Value};

/// Builds a statement for `backend` from SQL with `$1…$n` placeholders.
pub fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => sql.to_string(),
        _ => sql.replace('$', "?"),
    };
    Statement::from_sql_and_values(backend, sql, values)
}
