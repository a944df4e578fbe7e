//! Which schema a database has, so that an older binary started on a database a newer one
//! migrated refuses to start (saying which versions differ) instead of misreading what the
//! newer one wrote. The applied migrations are in `seaql_migrations`; the version of the
//! binary that last migrated is kept in `instance_facts`.

use crate::entity::instance_fact;
use crate::{migration::Migrator, stmt, Result, StoreError};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait};
use sea_orm_migration::{MigratorTrait, SchemaManager};

const MIGRATED_BY: &str = "schema_migrated_by";

/// This binary's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The migrations this binary knows, oldest first.
pub fn known() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_string())
        .collect()
}

/// The migrations applied to `db`, oldest first (none for a fresh database).
pub async fn applied(db: &DatabaseConnection) -> Result<Vec<String>> {
    if !SchemaManager::new(db).has_table("seaql_migrations").await? {
        return Ok(Vec::new());
    }
    let rows = db
        .query_all(stmt(
            db.get_database_backend(),
            "SELECT version FROM seaql_migrations ORDER BY applied_at, version",
            vec![],
        ))
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String>("", "version").map_err(Into::into))
        .collect()
}

/// Refuses a database with migrations this binary does not know.
pub async fn refuse_newer(db: &DatabaseConnection) -> Result<()> {
    let known = known();
    let unknown: Vec<String> = applied(db)
        .await?
        .into_iter()
        .filter(|v| !known.contains(v))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let by = migrated_by(db)
        .await
        .map(|v| format!("Chatter {v}"))
        .unwrap_or_else(|| "a newer Chatter".into());
    Err(StoreError::NewerSchema(format!(
        "this database was migrated by {by}: it has migrations this binary (Chatter {VERSION}) \
         does not know: {}; this binary knows up to {}. Run the newer version (or restore the \
         backup taken before the upgrade); starting anyway could misread what the newer version wrote",
        unknown.join(", "),
        known.last().map_or("none", String::as_str)
    )))
}

/// Records that this binary's version brought the schema up to date.
pub async fn record_migrated(db: &DatabaseConnection, now_ms: i64) -> Result<()> {
    db.execute(stmt(
        db.get_database_backend(),
        "INSERT INTO instance_facts (name, value, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
        vec![MIGRATED_BY.into(), VERSION.into(), now_ms.into()],
    ))
    .await?;
    Ok(())
}

async fn migrated_by(db: &DatabaseConnection) -> Option<String> {
    instance_fact::Entity::find_by_id(MIGRATED_BY)
        .one(db)
        .await
        .ok()?
        .map(|f| f.value)
}

/// Applies the migrations up to and including `name` only (for upgrade tests that need a
/// database of an earlier schema).
pub async fn migrate_up_to(db: &DatabaseConnection, name: &str) -> Result<()> {
    let Some(at) = known().iter().position(|m| m == name) else {
        return Err(StoreError::NewerSchema(format!(
            "no migration named {name}"
        )));
    };
    Migrator::up(db, Some(at as u32 + 1)).await?;
    Ok(())
}
