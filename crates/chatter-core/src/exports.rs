//! A company's export of its own data: contacts, conversations and messages, each as JSON lines
//! (exact values) and CSV (for spreadsheets), in one zip file. Asked for in Settings or through
//! the API, made by a durable job, stored under `<data_dir>/exports` with a random name (0600),
//! and downloaded only by that company's owners (or its API keys, which read all of it anyway).
//! The newest `KEEP` exports per company are kept.
//!
//! This replaces the full-database backup company owners could once make: the instance's
//! backups are the operator's (`operators`).

use crate::jobs::{BackgroundJob, JobError, JobMeta, JobOptions};
use crate::{audit, Actor, Core, CoreError, Result};
use async_trait::async_trait;
use chatter_domain::Permission;
use chatter_domain::UserId;
use chatter_store::entity::{company_export as export, contact, conversation, message};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;

pub const PENDING: &str = "pending";
pub const READY: &str = "ready";
pub const FAILED: &str = "failed";
/// Exports kept per company (older files are deleted when a new one is ready).
pub const KEEP: usize = 3;
const PAGE: u64 = 1000;

pub fn export_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("exports")
}

/// Members must own the company; an API key (admin rights) already reads every conversation
/// and message through the API, so it may export them too.
fn may_export(actor: &Actor) -> Result<()> {
    if actor.user_id.is_some() {
        actor.require(Permission::Own)
    } else {
        actor.require(Permission::Manage)
    }
}

/// Starts an export (or returns the one still being made).
pub async fn start(core: &Core, actor: &Actor) -> Result<export::Model> {
    may_export(actor)?;
    let now = core.now();
    let txn = core.db.begin().await?;
    if let Some(running) = export::Entity::find()
        .filter(export::Column::CompanyId.eq(actor.company_id))
        .filter(export::Column::Status.eq(PENDING))
        .one(&txn)
        .await?
    {
        txn.commit().await?;
        return Ok(running);
    }
    let id = Uuid::now_v7();
    let row = export::ActiveModel {
        id: Set(id),
        company_id: Set(actor.company_id.uuid()),
        requested_by: Set(actor.user_id.map(UserId::uuid)),
        requested_label: Set(actor.label.clone()),
        status: Set(PENDING.into()),
        file_name: Set(None),
        size_bytes: Set(None),
        error: Set(None),
        created_at: Set(now),
        finished_at: Set(None),
    }
    .insert(&txn)
    .await?;
    ExportJob { export_id: id }
        .enqueue(&txn, JobOptions::at(now).company(actor.company_id))
        .await?;
    audit::record(
        &txn,
        actor,
        now,
        "export.create",
        "company data",
        json!({"export_id": id}),
    )
    .await?;
    txn.commit().await?;
    core.jobs_notify.notify_waiters();
    Ok(row)
}

/// The company's exports, newest first.
pub async fn list(core: &Core, actor: &Actor) -> Result<Vec<export::Model>> {
    may_export(actor)?;
    Ok(export::Entity::find()
        .filter(export::Column::CompanyId.eq(actor.company_id))
        .order_by_desc(export::Column::CreatedAt)
        .limit(20)
        .all(&core.db)
        .await?)
}

/// One export of the actor's company.
pub async fn get(core: &Core, actor: &Actor, id: Uuid) -> Result<export::Model> {
    may_export(actor)?;
    export::Entity::find_by_id(id)
        .filter(export::Column::CompanyId.eq(actor.company_id))
        .one(&core.db)
        .await?
        .ok_or(CoreError::NotFound)
}

/// The file of a ready export and the name to download it as; audited.
pub async fn file(core: &Core, actor: &Actor, id: Uuid) -> Result<(PathBuf, String)> {
    let e = get(core, actor, id).await?;
    let name = match (&e.file_name, e.status.as_str()) {
        (Some(n), READY) => n.clone(),
        _ => return Err(CoreError::Conflict("the export is not ready yet")),
    };
    audit::record(
        &core.db,
        actor,
        core.now(),
        "export.download",
        "company data",
        json!({"export_id": id}),
    )
    .await?;
    let stamp = chrono::DateTime::from_timestamp_millis(e.created_at)
        .map(|t| t.format("%Y%m%d-%H%M").to_string())
        .unwrap_or_default();
    Ok((
        export_dir(&core.config.data_dir).join(name),
        format!("chatter-export-{stamp}.zip"),
    ))
}

// ---- the job ----

/// Makes one export (at most one job per export, by its dedup key).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ExportJob {
    pub export_id: Uuid,
}

#[async_trait]
impl BackgroundJob for ExportJob {
    const NAME: &'static str = "company_export";
    const MAX_ATTEMPTS: i32 = 5;

    fn dedup_key(&self) -> Option<String> {
        Some(format!("{}:{}", Self::NAME, self.export_id))
    }

    async fn run(&self, core: &Core, _job: &JobMeta) -> Result<(), JobError> {
        let id = self.export_id;
        let Some(e) = export::Entity::find_by_id(id)
            .one(&core.db)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))?
        else {
            return Ok(());
        };
        if e.status != PENDING {
            return Ok(());
        }
        let dir = export_dir(&core.config.data_dir);
        let name = format!("{}.zip", crate::new_token().0);
        let path = dir.join(&name);
        let made = write_zip(core, e.company_id, &dir, &path).await;
        let made = match made {
            Ok(size) => size,
            Err(err) => {
                let _ = std::fs::remove_file(&path);
                return Err(JobError::Transient(err));
            }
        };
        let mut am = e.clone().into_active_model();
        am.status = Set(READY.into());
        am.file_name = Set(Some(name));
        am.size_bytes = Set(Some(made as i64));
        am.finished_at = Set(Some(core.now()));
        am.update(&core.db)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))?;
        prune(core, e.company_id).await;
        Ok(())
    }

    async fn dead(&self, core: &Core, _job: &JobMeta, reason: &str) {
        let id = self.export_id;
        let r = export::Entity::update_many()
            .col_expr(
                export::Column::Status,
                sea_orm::sea_query::Expr::value(FAILED),
            )
            .col_expr(
                export::Column::Error,
                sea_orm::sea_query::Expr::value(reason.chars().take(500).collect::<String>()),
            )
            .col_expr(
                export::Column::FinishedAt,
                sea_orm::sea_query::Expr::value(core.now()),
            )
            .filter(export::Column::Id.eq(id))
            .exec(&core.db)
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, export = %id, "cannot record a failed export");
        }
    }
}

/// Deletes the company's exports beyond the newest `KEEP` ready ones.
async fn prune(core: &Core, company_id: Uuid) {
    let Ok(rows) = export::Entity::find()
        .filter(export::Column::CompanyId.eq(company_id))
        .filter(export::Column::Status.ne(PENDING))
        .order_by_desc(export::Column::CreatedAt)
        .all(&core.db)
        .await
    else {
        return;
    };
    let dir = export_dir(&core.config.data_dir);
    for old in rows.into_iter().skip(KEEP) {
        if let Some(n) = &old.file_name {
            let _ = std::fs::remove_file(dir.join(n));
        }
        let _ = export::Entity::delete_by_id(old.id).exec(&core.db).await;
    }
}

/// A cell a spreadsheet would run as a formula gets a leading apostrophe (the JSON lines keep
/// the exact value).
fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(cell).unwrap_or_default()
}

fn opt_num(n: Option<i64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

fn opt_id(id: Option<Uuid>) -> String {
    id.map(|i| i.to_string()).unwrap_or_default()
}

/// One table's rows, as a JSON object and a CSV record each.
trait Exported {
    const NAME: &'static str;
    const HEADER: &'static [&'static str];
    fn json(&self) -> Value;
    fn record(&self) -> Vec<String>;
}

impl Exported for contact::Model {
    const NAME: &'static str = "contacts";
    const HEADER: &'static [&'static str] = &[
        "id",
        "source_id",
        "external_id",
        "name",
        "username",
        "phone",
        "created_at",
    ];
    fn json(&self) -> Value {
        json!({"id": self.id, "source_id": self.source_id, "external_id": self.external_id,
               "name": self.name, "username": self.username, "phone": self.phone,
               "created_at": self.created_at})
    }
    fn record(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.source_id.to_string(),
            cell(&self.external_id),
            cell(&self.name),
            opt(&self.username),
            opt(&self.phone),
            self.created_at.to_string(),
        ]
    }
}

impl Exported for conversation::Model {
    const NAME: &'static str = "conversations";
    const HEADER: &'static [&'static str] = &[
        "id",
        "source_id",
        "contact_id",
        "external_chat_id",
        "chat_kind",
        "title",
        "status",
        "assignee_id",
        "created_at",
        "last_message_at",
    ];
    fn json(&self) -> Value {
        json!({"id": self.id, "source_id": self.source_id, "contact_id": self.contact_id,
               "external_chat_id": self.external_chat_id, "chat_kind": self.chat_kind,
               "title": self.title, "status": self.status, "assignee_id": self.assignee_id,
               "created_at": self.created_at, "last_message_at": self.last_message_at})
    }
    fn record(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.source_id.to_string(),
            self.contact_id.to_string(),
            cell(&self.external_chat_id),
            self.chat_kind.clone(),
            opt(&self.title),
            self.status.to_string(),
            opt_id(self.assignee_id),
            self.created_at.to_string(),
            self.last_message_at.to_string(),
        ]
    }
}

impl Exported for message::Model {
    const NAME: &'static str = "messages";
    const HEADER: &'static [&'static str] = &[
        "id",
        "conversation_id",
        "source_id",
        "direction",
        "external_id",
        "sender_name",
        "text",
        "attachments",
        "status",
        "error",
        "reply_to_id",
        "created_at",
        "sent_at",
    ];
    fn json(&self) -> Value {
        let attachments: Value = chatter_store::stored_json::read_opt(
            "messages.attachments",
            self.id,
            Some(&self.attachments),
        )
        .unwrap_or(json!([]));
        json!({"id": self.id, "conversation_id": self.conversation_id,
               "source_id": self.source_id, "direction": self.direction,
               "external_id": self.external_id, "sender_name": self.sender_name,
               "text": self.text, "attachments": attachments, "status": self.status,
               "error": self.error, "reply_to_id": self.reply_to_id,
               "created_at": self.created_at, "sent_at": self.sent_at})
    }
    fn record(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.conversation_id.to_string(),
            self.source_id.to_string(),
            self.direction.to_string(),
            opt(&self.external_id),
            cell(&self.sender_name),
            opt(&self.text),
            cell(&self.attachments),
            self.status.to_string(),
            opt(&self.error),
            opt_id(self.reply_to_id.map(Uuid::from)),
            self.created_at.to_string(),
            opt_num(self.sent_at),
        ]
    }
}

/// How each table is read, always scoped by company.
#[async_trait]
trait Page: Sized {
    async fn page(core: &Core, company: Uuid, after: Option<Uuid>) -> Result<Vec<Self>>;
    fn id(&self) -> Uuid;
}

macro_rules! paged {
    ($m:ident) => {
        #[async_trait]
        impl Page for $m::Model {
            async fn page(core: &Core, company: Uuid, after: Option<Uuid>) -> Result<Vec<Self>> {
                let mut q = $m::Entity::find().filter($m::Column::CompanyId.eq(company));
                if let Some(a) = after {
                    q = q.filter($m::Column::Id.gt(a));
                }
                Ok(q.order_by_asc($m::Column::Id)
                    .limit(PAGE)
                    .all(&core.db)
                    .await?)
            }
            fn id(&self) -> Uuid {
                self.id.into()
            }
        }
    };
}
paged!(contact);
paged!(conversation);
paged!(message);

type Zip = zip::ZipWriter<std::io::BufWriter<std::fs::File>>;

fn io(e: impl std::fmt::Display) -> String {
    format!("cannot write the export: {e}")
}

/// Writes both files of one table into the zip, reading the rows twice, a page at a time.
async fn add_table<T: Exported + Page>(
    core: &Core,
    company: Uuid,
    zip: &mut Zip,
) -> Result<(), String> {
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(format!("{}.jsonl", T::NAME), opts)
        .map_err(io)?;
    let mut after = None;
    loop {
        let rows: Vec<T> = T::page(core, company, after)
            .await
            .map_err(|e| e.to_string())?;
        for r in &rows {
            serde_json::to_writer(&mut *zip, &r.json()).map_err(io)?;
            zip.write_all(b"\n").map_err(io)?;
        }
        match rows.last() {
            Some(last) if rows.len() as u64 == PAGE => after = Some(last.id()),
            _ => break,
        }
    }
    zip.start_file(format!("{}.csv", T::NAME), opts)
        .map_err(io)?;
    let mut header = csv::Writer::from_writer(Vec::new());
    header.write_record(T::HEADER).map_err(io)?;
    zip.write_all(&header.into_inner().map_err(io)?)
        .map_err(io)?;
    let mut after = None;
    loop {
        let rows: Vec<T> = T::page(core, company, after)
            .await
            .map_err(|e| e.to_string())?;
        let mut csv = csv::Writer::from_writer(Vec::new());
        for r in &rows {
            csv.write_record(r.record()).map_err(io)?;
        }
        zip.write_all(&csv.into_inner().map_err(io)?).map_err(io)?;
        match rows.last() {
            Some(last) if rows.len() as u64 == PAGE => after = Some(last.id()),
            _ => break,
        }
    }
    Ok(())
}

/// Writes the zip (owner-only) and returns its size.
async fn write_zip(core: &Core, company: Uuid, dir: &Path, path: &Path) -> Result<u64, String> {
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = std::fs::File::create(path).map_err(io)?;
    crate::backup::owner_only(path).map_err(io)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    add_table::<contact::Model>(core, company, &mut zip).await?;
    add_table::<conversation::Model>(core, company, &mut zip).await?;
    add_table::<message::Model>(core, company, &mut zip).await?;
    let mut out = zip.finish().map_err(io)?;
    out.flush().map_err(io)?;
    Ok(std::fs::metadata(path).map_err(io)?.len())
}
