//! Backups (R7.3): a consistent online copy — `VACUUM INTO` on SQLite, `pg_dump` on
//! PostgreSQL — into `<data-dir>/backups`, made by hand or by the daily job, with retention;
//! and restore, run with the server stopped.

use crate::jobs::{BackgroundJob, JobError, JobMeta, JobOptions};
use crate::{Core, CoreError, Result};
use async_trait::async_trait;
use chatter_store::entity::backup;
use chatter_store::jobs;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait,
    QueryFilter, QueryOrder,
};
use std::path::{Path, PathBuf};
use uuid::Uuid;

const DAY_MS: i64 = 24 * 3600 * 1000;

pub fn backup_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("backups")
}

fn tool(core: &Core, name: &str) -> PathBuf {
    match &core.config.pg_bin_dir {
        Some(d) => d.join(name),
        None => PathBuf::from(name),
    }
}

/// Makes a backup now and records it (also when it fails, so Settings shows the error).
pub async fn backup_now(core: &Core, db_url: &str, trigger: &str) -> Result<backup::Model> {
    let dir = backup_dir(&core.config.data_dir);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| CoreError::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let stamp = chrono::DateTime::from_timestamp_millis(core.now())
        .map(|t| t.format("%Y%m%d-%H%M%S").to_string())
        .unwrap_or_default();
    let backend = core.db.get_database_backend();
    let ext = if backend == DbBackend::Postgres {
        "pgdump"
    } else {
        "db"
    };
    let path = dir.join(format!(
        "chatter-{stamp}-{trigger}-{}.{ext}",
        &Uuid::new_v4().simple().to_string()[..6]
    ));
    let result = match backend {
        DbBackend::Postgres => pg_dump(core, db_url, &path).await,
        _ => {
            let p = path.display().to_string().replace('\'', "''");
            core.db
                .execute_unprepared(&format!("VACUUM INTO '{p}'"))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    if result.is_ok() {
        if let Err(e) = owner_only(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot make the backup owner-only");
        }
    }
    let size = tokio::fs::metadata(&path)
        .await
        .map(|m| m.len() as i64)
        .unwrap_or(0);
    let row = backup::ActiveModel {
        id: Set(Uuid::now_v7()),
        path: Set(path.display().to_string()),
        size_bytes: Set(size),
        trigger: Set(trigger.to_string()),
        status: Set(if result.is_ok() { "ok" } else { "failed" }.to_string()),
        error: Set(result.as_ref().err().cloned()),
        created_at: Set(core.now()),
    }
    .insert(&core.db)
    .await?;
    match result {
        Ok(()) => {
            tracing::info!(path = %path.display(), size, "backup written");
            Ok(row)
        }
        Err(e) => Err(CoreError::Internal(format!("backup failed: {e}"))),
    }
}

async fn pg_dump(core: &Core, db_url: &str, path: &Path) -> Result<(), String> {
    let out = tokio::process::Command::new(tool(core, "pg_dump"))
        .arg("--format=custom")
        .arg("--no-owner")
        .arg("--file")
        .arg(path)
        .arg(db_url)
        .output()
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "pg_dump is not installed; install the PostgreSQL client tools (Debian: apt-get install postgresql-client) or set pg_bin_dir".to_string()
            } else {
                format!("cannot run pg_dump: {e}")
            }
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Recent backups, newest first.
pub async fn list(core: &Core, limit: u64) -> Result<Vec<backup::Model>> {
    use sea_orm::QuerySelect;
    Ok(backup::Entity::find()
        .order_by_desc(backup::Column::CreatedAt)
        .limit(limit)
        .all(&core.db)
        .await?)
}

/// Deletes backups beyond the newest `keep`, counted separately for daily and manual ones, so
/// that backing up by hand can neither fill the disk nor push the daily copies out.
pub async fn prune(core: &Core, keep: usize) -> Result<usize> {
    let mut n = 0;
    for trigger in ["daily", "manual"] {
        let rows = backup::Entity::find()
            .filter(backup::Column::Trigger.eq(trigger))
            .order_by_desc(backup::Column::CreatedAt)
            .order_by_desc(backup::Column::Id)
            .all(&core.db)
            .await?;
        for old in rows.into_iter().skip(keep) {
            let _ = tokio::fs::remove_file(&old.path).await;
            backup::Entity::delete_by_id(old.id).exec(&core.db).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Restricts a file to its owner (0600), as the master key is: backups, exports and the
/// database hold every company's data.
pub fn owner_only(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// On start: the SQLite database files (with `-wal` and `-shm`) and every backup file in the
/// data directory become owner-only, whatever umask made them.
pub fn restrict_data_files(data_dir: &Path, database_url: &str) {
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(db) = sqlite_path(database_url) {
        for ext in ["", "-wal", "-shm"] {
            files.push(PathBuf::from(format!("{}{ext}", db.display())));
        }
    }
    for dir in [backup_dir(data_dir), crate::exports::export_dir(data_dir)] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    for f in files.into_iter().filter(|f| f.exists()) {
        if let Err(e) = owner_only(&f) {
            tracing::warn!(path = %f.display(), error = %e, "cannot make the file owner-only");
        }
    }
}

/// The file of a `sqlite://` URL.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or_default();
    (!file.is_empty() && file != ":memory:").then(|| PathBuf::from(file))
}

/// Makes sure the next daily backup is queued (at the next 02:00 UTC). Safe to call on
/// every start of every node: the day's dedup key makes it once.
pub async fn schedule_daily(core: &Core) -> Result<()> {
    let now = core.now();
    let next = (now / DAY_MS) * DAY_MS + 2 * 3600 * 1000;
    let next = if next <= now { next + DAY_MS } else { next };
    enqueue_daily(core, &core.db, next).await
}

async fn enqueue_daily(core: &Core, conn: &impl ConnectionTrait, at: i64) -> Result<()> {
    let day = chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let pending = chatter_store::entity::job::Entity::find()
        .filter(chatter_store::entity::job::Column::Kind.eq(DailyBackup::NAME))
        .filter(chatter_store::entity::job::Column::Status.is_in([jobs::QUEUED, jobs::RUNNING]))
        .one(conn)
        .await?;
    if pending.is_none() {
        DailyBackup {}
            .enqueue(
                conn,
                JobOptions::at(core.now())
                    .run_at(at)
                    .dedup(format!("{}:{day}", DailyBackup::NAME)),
            )
            .await?;
    }
    Ok(())
}

/// The database URL the daily job dumps (set by the binary at start).
pub static DATABASE_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The daily backup (its payload is empty); each run queues the next one.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct DailyBackup {}

#[async_trait]
impl BackgroundJob for DailyBackup {
    const NAME: &'static str = "backup_daily";
    const MAX_ATTEMPTS: i32 = 3;

    async fn run(&self, core: &Core, job: &JobMeta) -> Result<(), JobError> {
        let url = DATABASE_URL.get().cloned().unwrap_or_default();
        let r = backup_now(core, &url, "daily").await;
        let _ = prune(core, core.config.backup_keep).await;
        // The next one is queued whatever happened to this one; the dedup key is the day.
        let next = core.now() + DAY_MS;
        let day = chrono::DateTime::from_timestamp_millis(next)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let _ = DailyBackup {}
            .enqueue(
                &core.db,
                JobOptions::at(core.now()).run_at(next).dedup(format!(
                    "{}:{day}:{}",
                    Self::NAME,
                    job.id
                )),
            )
            .await;
        r.map(|_| ())
            .map_err(|e| JobError::Transient(e.to_string()))
    }
}

/// Restores `file` into the database. Run with the server stopped.
///
/// SQLite: the file is checked, the current database is kept beside it as
/// `chatter.db.before-restore-<time>`, and the backup takes its place. PostgreSQL:
/// `pg_restore --clean --if-exists` into the database at `db_url`.
pub async fn restore(
    db_url: &str,
    data_dir: &Path,
    file: &Path,
    pg_bin_dir: Option<&Path>,
) -> Result<String, String> {
    let meta =
        std::fs::metadata(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", file.display()));
    }
    if db_url.starts_with("postgres") {
        let bin = pg_bin_dir
            .map(|d| d.join("pg_restore"))
            .unwrap_or_else(|| PathBuf::from("pg_restore"));
        let out = tokio::process::Command::new(bin)
            .args([
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                "--dbname",
                db_url,
            ])
            .arg(file)
            .output()
            .await
            .map_err(|e| {
                format!("cannot run pg_restore ({e}); install the PostgreSQL client tools")
            })?;
        if !out.status.success() {
            return Err(format!(
                "pg_restore failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        return Ok(format!("restored {} into PostgreSQL", file.display()));
    }
    let mut head = [0u8; 16];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(file).map_err(|e| e.to_string())?;
        f.read_exact(&mut head).map_err(|_| {
            format!(
                "{} is not a Chatter SQLite backup (too short)",
                file.display()
            )
        })?;
    }
    if &head != b"SQLite format 3\0" {
        return Err(format!(
            "{} is not a SQLite database; pass a .db file made by `chatter backup`",
            file.display()
        ));
    }
    let target = data_dir.join("chatter.db");
    std::fs::create_dir_all(data_dir).map_err(|e| e.to_string())?;
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    let mut kept = String::new();
    if target.exists() {
        let aside = data_dir.join(format!("chatter.db.before-restore-{stamp}"));
        std::fs::rename(&target, &aside)
            .map_err(|e| format!("cannot move the current database aside: {e}"))?;
        kept = format!("; the previous database is kept as {}", aside.display());
    }
    for ext in ["-wal", "-shm"] {
        let p = data_dir.join(format!("chatter.db{ext}"));
        if p.exists() {
            let _ = std::fs::rename(
                &p,
                data_dir.join(format!("chatter.db{ext}.before-restore-{stamp}")),
            );
        }
    }
    std::fs::copy(file, &target).map_err(|e| format!("cannot copy the backup: {e}"))?;
    Ok(format!(
        "restored {} to {}{kept}",
        file.display(),
        target.display()
    ))
}
