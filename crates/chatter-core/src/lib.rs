//! Use cases. Each public function owns its transaction, checks permissions, records the
//! audit entry and enqueues jobs in that same transaction. Nothing here talks to the outside
//! world inside a transaction: mail, backups and provider calls are jobs.

pub mod accounts;
pub mod api_source;
pub mod attachments;
pub mod audit;
pub mod automation;
pub mod backup;
pub mod blobs;
pub mod clock;
pub mod connectors;
pub mod crm;
pub mod digest;
pub mod egress;
pub mod error;
pub mod events;
pub mod exports;
pub mod inbox;
pub mod job_registry;
pub mod jobs;
pub mod mailer;
pub mod media_links;
pub mod nodes;
pub mod notifications;
pub mod reports;
pub mod scheduled;
pub mod secrets;
pub mod sources;
pub mod throttle;

use chatter_domain::{Permission, Role};
use sea_orm::DatabaseConnection;
use std::path::PathBuf;
use std::sync::Arc;
use uuid::Uuid;

pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use error::{CoreError, Result};
pub use mailer::Mailer;
pub use secrets::{Secret, Secrets};

/// Settings the use cases need.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// The address people reach Chatter at, for links in mail (no trailing slash).
    pub public_url: String,
    pub data_dir: PathBuf,
    /// Platform bot for "Sign in with Telegram".
    pub telegram_login_bot_token: Option<Secret>,
    pub telegram_login_bot_username: Option<String>,
    pub session_ttl_ms: i64,
    /// How many daily backups to keep.
    pub backup_keep: usize,
    /// Where `pg_dump` / `pg_restore` live when not on PATH.
    pub pg_bin_dir: Option<PathBuf>,
    /// The amoCRM integration (client id and secret from amoCRM's developer page).
    pub amocrm: Option<crm::AmoConfig>,
    /// Every messenger kind's configuration (API bases, webhook bases, poll timing).
    pub kinds: chatter_channels::KindConfig,
    /// Let URLs people type (an API source's webhook) reach loopback and private addresses
    /// (`egress`): for tests, the demo and on-premise installs. Off by default.
    pub allow_private_targets: bool,
    /// Where the files customers send are kept (`blobs.*`).
    pub blobs: blobs::BlobsConfig,
    /// How long a signed link to a stored file (`media_links`: the files amoCRM downloads,
    /// the links in deal notes) keeps working. Default 7 days.
    pub media_link_ttl_ms: i64,
}

impl CoreConfig {
    pub fn new(public_url: &str, data_dir: PathBuf) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_string(),
            data_dir,
            telegram_login_bot_token: None,
            telegram_login_bot_username: None,
            session_ttl_ms: 30 * 24 * 3600 * 1000,
            backup_keep: 7,
            pg_bin_dir: None,
            amocrm: None,
            kinds: chatter_channels::KindConfig::default(),
            allow_private_targets: false,
            blobs: blobs::BlobsConfig::default(),
            media_link_ttl_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// Everything a use case needs: the database and the seams to the outside.
#[derive(Clone)]
pub struct Core {
    /// Writes, and reads that must see the caller's own transaction.
    pub db: DatabaseConnection,
    /// Reads of pages and live streams that only read (the inbox list, a conversation, the
    /// dashboard, search, event streams). On SQLite a pool of read-only connections beside the
    /// single writer (`chatter_store::connect_read`), so they never queue behind the ingester;
    /// elsewhere (PostgreSQL, tests that set none) the same pool as `db`. Every write commits
    /// before its request reads again, so reads here see a page's own writes.
    pub read: DatabaseConnection,
    pub clock: Arc<dyn Clock>,
    pub secrets: Arc<Secrets>,
    pub mailer: Arc<dyn Mailer>,
    pub config: Arc<CoreConfig>,
    /// Wakes this node's workers when a job is enqueued here.
    pub jobs_notify: Arc<tokio::sync::Notify>,
    /// Live events for this node's browsers.
    pub events: Arc<events::EventHub>,
    /// One HTTP client for every provider call (rustls, connection pooling).
    pub http: reqwest::Client,
    /// The client for URLs people typed: only public addresses, no redirects (`egress`).
    pub outbound: reqwest::Client,
    /// This process's name in leases.
    pub node_id: String,
    /// Sources' connectors, kept between calls (Avito's token cache), by source.
    pub(crate) clients: Arc<connectors::ConnectorCache>,
    /// Where files are stored and read (`config.blobs`; shared by the nodes unless local).
    pub blobs: blobs::BlobStore,
}

impl Core {
    pub fn new(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        secrets: Secrets,
        mailer: Arc<dyn Mailer>,
        config: CoreConfig,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        let clients = Arc::new(connectors::ConnectorCache::new(http.clone(), &config));
        let outbound = egress::client(config.allow_private_targets);
        let blobs = blobs::BlobStore::configured(&config.blobs, &config.data_dir, &db);
        Self {
            read: db.clone(),
            db,
            clock,
            secrets: Arc::new(secrets),
            mailer,
            config: Arc::new(config),
            jobs_notify: Arc::new(tokio::sync::Notify::new()),
            events: Arc::new(events::EventHub::default()),
            http,
            outbound,
            node_id: format!("node-{}", Uuid::new_v4().simple()),
            clients,
            blobs,
        }
    }

    /// Reads pages and streams through `read` (see the field).
    pub fn with_read_pool(mut self, read: Option<DatabaseConnection>) -> Self {
        if let Some(read) = read {
            self.read = read;
        }
        self
    }

    /// This core with `db` = `read`: for a page that only reads, handed to code that takes a
    /// `Core` (on SQLite a write through it is refused: the connections are read-only).
    pub fn reader(&self) -> Core {
        let mut c = self.clone();
        c.db = self.read.clone();
        c
    }

    /// Publishes events of a committed transaction to this node (SQLite; PostgreSQL uses NOTIFY).
    pub fn published(&self, pending: events::Pending) {
        pending.flush(
            &self.events,
            sea_orm::ConnectionTrait::get_database_backend(&self.db),
        );
    }

    /// Publishes events of a committed transaction whose batched events were recorded with
    /// `events::emit_many` (which leaves the PostgreSQL NOTIFY to this, after the commit).
    pub async fn published_after_commit(&self, pending: events::Pending) {
        events::notify_committed(&self.db, &pending).await;
        self.published(pending);
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn database_url_is_postgres(&self) -> bool {
        sea_orm::ConnectionTrait::get_database_backend(&self.db) == sea_orm::DbBackend::Postgres
    }
}

/// Where a request came from, for the audit log and throttling.
#[derive(Clone, Debug, Default)]
pub struct ReqMeta {
    pub ip: String,
    pub user_agent: String,
}

/// Who is acting: a signed-in member (in their current company) or an API key.
#[derive(Clone, Debug)]
pub struct Actor {
    pub user_id: Option<chatter_domain::UserId>,
    pub company_id: chatter_domain::CompanyId,
    pub role: Role,
    /// Shown in the audit log: the member's email or `api-key:<name>`.
    pub label: String,
    pub meta: ReqMeta,
}

impl Actor {
    /// Refuses unless the actor's role grants `p`.
    pub fn require(&self, p: Permission) -> Result<()> {
        if self.role.can(p) {
            Ok(())
        } else {
            Err(CoreError::Forbidden)
        }
    }

    /// The acting company, typed.
    pub fn company(&self) -> chatter_domain::CompanyId {
        self.company_id
    }

    /// The acting member; an API key is refused.
    pub fn user(&self) -> Result<chatter_domain::UserId> {
        self.user_id.ok_or(CoreError::Forbidden)
    }
}

/// Random URL-safe token of 32 bytes (hex) and its SHA-256 (what we store).
pub fn new_token() -> (String, String) {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    let t = hex::encode(b);
    let h = hash_token(&t);
    (t, h)
}

pub fn hash_token(t: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(t.as_bytes()))
}

/// Constant-time equality for secrets.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
