//! The `chatter` binary: one program for the web server and workers (`serve`), workers only
//! (`worker`), migrations, the demo, backups and administration.

mod check;
mod config;
mod demo;
mod keys;
mod leads;
mod notify;
mod serve;

use anyhow::{bail, Context};
use chatter_core::mailer::{FileMailer, SmtpMailer};
use chatter_core::{Core, CoreConfig, Mailer, Secrets, SystemClock};
use clap::{Parser, Subcommand};
use config::Config;
use serve::serve;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "chatter",
    version,
    about = "Chatter: customers' messengers connected to your CRM"
)]
struct Cli {
    /// Configuration file (default: ./chatter.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Clone, Default)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    // Global, so that `chatter admin companies --data-dir X` works as well as
    // `chatter admin --data-dir X companies`.
    #[arg(long, global = true)]
    bind: Option<String>,
    /// Data directory (SQLite database, master key, backups) [default: ./data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web server and the job workers (the default).
    Serve(ServeArgs),
    /// Run job workers only (for extra nodes on PostgreSQL).
    Worker(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(ServeArgs),
    /// Run Chatter with a demo company, a Telegram bot with simulated customers and a mail
    /// catcher, all in this process, on a fresh data directory (unless --data-dir is given).
    Demo(ServeArgs),
    /// Check the configuration (file, environment, flags) and the database without starting;
    /// print each problem and the effective configuration, secrets redacted.
    CheckConfig(ServeArgs),
    /// Write a consistent backup of the database into <data-dir>/backups.
    Backup(ServeArgs),
    /// Restore the database from a backup file (stop the server first).
    Restore {
        file: PathBuf,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// The blob store (the files customers send).
    Blobs {
        #[command(subcommand)]
        command: BlobsCommand,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// The lead classifier of Telegram parsing on JSON lines: classify, eval, train (no
    /// configuration or database needed).
    Leads {
        #[command(subcommand)]
        command: leads::LeadsCommand,
    },
    /// Administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
        #[command(flatten)]
        args: ServeArgs,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Manage API keys.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// List companies.
    Companies,
    /// Manage the instance's operators (who see backups and every company's failed jobs).
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
}

#[derive(Subcommand)]
enum BlobsCommand {
    /// Copy the blobs of this node's data directory into a shared store (run it on every node
    /// that kept files locally; running it again copies only what is missing).
    Migrate {
        /// The store to copy into: `s3` (configured in [blobs.s3]) or `postgres` (the database).
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Make the account with this e-mail an operator (it must exist: sign up first).
    Add { email: String },
    /// Take the operator role away from the account with this e-mail.
    Remove { email: String },
    /// List the operators.
    List,
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key for a company; prints the key once.
    Create {
        /// The company's id or slug.
        #[arg(long)]
        company: String,
        /// A name to tell the key apart.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

fn init_logs(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CHATTER_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let b = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if format == "json" {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        // Before the configuration is read: the classifier needs none.
        Command::Leads { command } => return leads::run(command),
        other => other,
    };
    let args = match &command {
        Command::Serve(a)
        | Command::Worker(a)
        | Command::Migrate(a)
        | Command::Backup(a)
        | Command::CheckConfig(a) => a.clone(),
        Command::Restore { args, .. }
        | Command::Admin { args, .. }
        | Command::Blobs { args, .. } => args.clone(),
        Command::Leads { .. } => unreachable!("`leads` returns before the configuration is read"),
        Command::Demo(a) => {
            let mut a = a.clone();
            if a.data_dir.is_none() {
                let dir = std::env::temp_dir()
                    .join(format!("chatter-demo-{}", uuid::Uuid::new_v4().simple()));
                a.data_dir = Some(dir);
            }
            a
        }
    };
    let (mut cfg, sources) = Config::load(
        cli.config.as_deref(),
        args.bind.as_deref(),
        args.data_dir.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    if let Ok(f) = std::env::var("CHATTER_LOG_FORMAT") {
        cfg.log_format = f;
    }
    init_logs(&cfg.log_format);
    if let Command::CheckConfig(_) = command {
        // Reads only: no data directory is created.
        return check_config(&cfg, &sources).await;
    }
    for w in keys::unknown(&sources) {
        tracing::warn!("{w}");
    }
    if let Command::Serve(_) | Command::Worker(_) | Command::Demo(_) = command {
        serve::refuse_what_cannot_work(&cfg)?;
    }
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            cfg.data_dir.display()
        )
    })?;
    match command {
        Command::Serve(_) => serve(cfg, true, false).await,
        Command::Worker(_) => serve(cfg, false, false).await,
        Command::Demo(_) => serve(cfg, true, true).await,
        Command::Migrate(_) => {
            let db = chatter_store::connect(&cfg.database_url()).await?;
            chatter_store::migrate(&db).await?;
            chatter_core::backup::restrict_data_files(&cfg.data_dir, &cfg.database_url());
            println!("migrations applied");
            Ok(())
        }
        Command::Backup(_) => {
            let (core, _) = build_core(&cfg, &cfg.public_url(&cfg.bind), None).await?;
            let b = chatter_core::backup::backup_now(&core, &cfg.database_url(), "manual").await?;
            chatter_core::backup::prune(&core, cfg.backup_keep).await?;
            println!("backup written: {} ({} bytes)", b.path, b.size_bytes);
            Ok(())
        }
        Command::Restore { file, .. } => {
            let msg = chatter_core::backup::restore(
                &cfg.database_url(),
                &cfg.data_dir,
                &file,
                cfg.pg_bin_dir.as_deref(),
            )
            .await
            .map_err(anyhow::Error::msg)?;
            println!("{msg}");
            Ok(())
        }
        Command::Admin { command, .. } => admin(cfg, command).await,
        Command::Blobs {
            command: BlobsCommand::Migrate { to },
            ..
        } => migrate_blobs(&cfg, &to).await,
        Command::CheckConfig(_) => check_config(&cfg, &sources).await,
        Command::Leads { .. } => unreachable!("`leads` returns before the configuration is read"),
    }
}

/// `chatter check-config`: every problem (one line each), warnings, then the effective
/// configuration. Exits non-zero when anything cannot work.
async fn check_config(cfg: &Config, sources: &figment::Figment) -> anyhow::Result<()> {
    let mut problems = check::static_problems(cfg);
    problems.extend(check::database_problem(cfg).await);
    problems.extend(check::blob_store_problem(cfg).await);
    for w in keys::unknown(sources) {
        println!("warning: {w}");
    }
    for p in &problems {
        println!("error: {p}");
    }
    println!("# effective configuration (secrets redacted)");
    use figment::value::Value;
    let mut derived = vec![
        ("database_url", Value::from(cfg.database_url())),
        ("public_url", Value::from(cfg.public_url(&cfg.bind))),
        ("blobs.store", Value::from(cfg.blob_store().name())),
    ];
    if let Some(a) = &cfg.tls.acme {
        derived.push(("tls.acme.directory", Value::from(a.directory.clone())));
        derived.push((
            "tls.acme.renew_before_days",
            Value::from(a.renew_before_days),
        ));
    }
    for line in keys::effective(sources, &derived) {
        println!("{line}");
    }
    if problems.is_empty() {
        println!("# the configuration can work");
        Ok(())
    } else {
        bail!(
            "{} problem(s) in the configuration (listed above)",
            problems.len()
        )
    }
}

/// Connects, migrates and assembles the core.
pub(crate) async fn build_core(
    cfg: &Config,
    public_url: &str,
    mailer: Option<Arc<dyn Mailer>>,
) -> anyhow::Result<(Core, bool)> {
    let url = cfg.database_url();
    let db = chatter_store::connect(&url)
        .await
        .with_context(|| "cannot open the database (check DATABASE_URL)")?;
    chatter_store::migrate(&db)
        .await
        .context("migrations failed")?;
    // Every company's data: owner-only, like the master key (whatever the umask made).
    chatter_core::backup::restrict_data_files(&cfg.data_dir, &url);
    let (secrets, created) = Secrets::load_or_create(cfg.master_key.as_ref(), &cfg.data_dir)?;
    if created {
        tracing::warn!(path = %cfg.data_dir.join("master.key").display(), "generated a new master key for secrets at rest; back it up with the data");
    }
    let mailer: Arc<dyn Mailer> = match (mailer, &cfg.smtp) {
        (Some(m), _) => m,
        (None, Some(s)) => Arc::new(SmtpMailer::new(s).map_err(anyhow::Error::msg)?),
        (None, None) => Arc::new(FileMailer {
            dir: cfg.data_dir.join("outbox"),
        }),
    };
    let mut core_cfg = CoreConfig::new(public_url, cfg.data_dir.clone());
    core_cfg.backup_keep = cfg.backup_keep;
    core_cfg.pg_bin_dir = cfg.pg_bin_dir.clone();
    core_cfg.amocrm = cfg.amocrm.clone();
    core_cfg.kinds.telegram.api_base = cfg.telegram.api_base.clone();
    core_cfg.kinds.telegram.webhook_base =
        cfg.telegram.webhook_base.clone().filter(|w| !w.is_empty());
    core_cfg.kinds.telegram.poll_timeout_secs = cfg.telegram.poll_timeout_secs.clamp(1, 50);
    core_cfg.kinds.poll_timeout_secs = core_cfg.kinds.telegram.poll_timeout_secs;
    core_cfg.kinds.webhook_base = cfg.public_webhook_base.clone().filter(|w| !w.is_empty());
    core_cfg.kinds.vk.api_base = cfg.vk.api_base.clone();
    core_cfg.kinds.max.api_base = cfg.max.api_base.clone();
    if let Some(pem) = &cfg.max.extra_ca_pem {
        // Refuse to start with a CA file that cannot work, rather than fail every Max call.
        let bytes = std::fs::read(pem)
            .with_context(|| format!("max.extra_ca_pem: cannot read {}", pem.display()))?;
        chatter_channels::max::http_client_with_extra_ca(
            &bytes,
            std::time::Duration::from_secs(90),
        )
        .map_err(|e| anyhow::anyhow!("max.extra_ca_pem ({}): {e}", pem.display()))?;
        core_cfg.kinds.max.extra_ca_pem = Some(pem.clone());
    }
    core_cfg.kinds.avito.api_base = cfg.avito.api_base.clone();
    core_cfg.kinds.avito.poll_interval_secs = cfg.avito.poll_interval_secs.clamp(1, 3600);
    core_cfg.kinds.whatsapp.api_base = cfg.whatsapp.api_base.clone();
    core_cfg.kinds.whatsapp.api_version = cfg.whatsapp.api_version.clone();
    core_cfg.kinds.sms.api_base = cfg.sms.api_base.clone();
    core_cfg.kinds.sms.smsc_base = cfg.sms.smsc_base.clone();
    core_cfg.kinds.sms.smsru_base = cfg.sms.smsru_base.clone();
    core_cfg.kinds.sms.smsaero_base = cfg.sms.smsaero_base.clone();
    core_cfg.kinds.telegram_personal.gateway_url = cfg
        .telegram_personal
        .gateway_url
        .clone()
        .filter(|u| !u.trim().is_empty());
    core_cfg.kinds.telegram_personal.include_bots = cfg.telegram_personal.include_bots;
    core_cfg.allow_private_targets = cfg.allow_private_targets;
    core_cfg.blobs = cfg.blobs.clone();
    core_cfg.media_link_ttl_ms = i64::from(cfg.media_link_days.clamp(1, 365)) * 24 * 3600 * 1000;
    if let Some(t) = &cfg.telegram_login {
        core_cfg.telegram_login_bot_token = Some(t.bot_token.clone());
        core_cfg.telegram_login_bot_username = Some(t.bot_username.clone());
    }
    let _ = chatter_core::backup::DATABASE_URL.set(url.clone());
    let read = chatter_store::connect_read(&url, cfg.sqlite_readers)
        .await
        .context("cannot open the database's read-only connections")?;
    let core = Core::new(db, Arc::new(SystemClock), secrets, mailer, core_cfg).with_read_pool(read);
    if let Err(e) = chatter_core::nodes::check_master_key(&core).await {
        if created {
            // The key was generated just now, beside a database made with another one (a
            // restore onto a new machine, a copied database): the new key is no use to it.
            let _ = std::fs::remove_file(cfg.data_dir.join("master.key"));
            bail!(
                "{e}\nThis data directory had no master.key, so a new one was generated, but the \
                 database was made with another key: put the original master.key into {} (or set \
                 master_key) and start again.",
                cfg.data_dir.display()
            );
        }
        bail!(e);
    }
    Ok((core, created))
}

/// `chatter blobs migrate --to …`: copies the local blobs into the shared store.
async fn migrate_blobs(cfg: &Config, to: &str) -> anyhow::Result<()> {
    use chatter_core::blobs::{BlobStore, StoreKind};
    let kind: StoreKind = to.parse().map_err(anyhow::Error::msg)?;
    if kind == StoreKind::Local {
        bail!("--to local: blobs are already in the data directory; choose s3 or postgres");
    }
    if kind == StoreKind::Postgres && !cfg.database_url().starts_with("postgres") {
        bail!(
            "--to postgres needs a PostgreSQL database_url; this installation uses SQLite, \
             whose blobs stay in the data directory"
        );
    }
    let (core, _) = build_core(cfg, &cfg.public_url(&cfg.bind), None).await?;
    let target =
        BlobStore::open(kind, &cfg.blobs, &cfg.data_dir, &core.db).map_err(anyhow::Error::msg)?;
    let r = chatter_core::blobs::copy_local(&cfg.data_dir, &target)
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "blobs copied to {}: {} copied, {} already there, {} damaged",
        target.describe(),
        r.copied,
        r.present,
        r.damaged.len()
    );
    for d in &r.damaged {
        println!("damaged (its bytes do not match its name; not copied): {d}");
    }
    if cfg.blob_store() != kind {
        println!(
            "note: blobs.store is {}; set blobs.store = \"{}\" for the nodes to use this store",
            cfg.blob_store().name(),
            kind.name()
        );
    }
    Ok(())
}

async fn admin(cfg: Config, command: AdminCommand) -> anyhow::Result<()> {
    use chatter_store::entity::company;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
    let (core, _) = build_core(&cfg, &cfg.public_url(&cfg.bind), None).await?;
    match command {
        AdminCommand::Companies => {
            for c in company::Entity::find().all(&core.db).await? {
                println!("{}\t{}\t{}", c.id, c.slug, c.name);
            }
        }
        AdminCommand::Operator { command } => {
            use chatter_core::accounts::operators;
            match command {
                OperatorCommand::Add { email } => {
                    println!(
                        "{}",
                        operators::add(&core, &email)
                            .await
                            .map_err(anyhow::Error::msg)?
                    )
                }
                OperatorCommand::Remove { email } => println!(
                    "{}",
                    operators::remove(&core, &email)
                        .await
                        .map_err(anyhow::Error::msg)?
                ),
                OperatorCommand::List => {
                    for (email, since) in operators::list(&core).await? {
                        println!("{email}\t{since}");
                    }
                }
            }
        }
        AdminCommand::ApiKey {
            command:
                ApiKeyCommand::Create {
                    company: which,
                    name,
                },
        } => {
            let found = match uuid::Uuid::parse_str(&which) {
                Ok(id) => company::Entity::find_by_id(id).one(&core.db).await?,
                Err(_) => {
                    company::Entity::find()
                        .filter(company::Column::Slug.eq(which.as_str()))
                        .one(&core.db)
                        .await?
                }
            };
            let Some(c) = found else {
                bail!("no company with id or slug {which:?}; `chatter admin companies` lists them");
            };
            let txn = core.db.begin().await?;
            let (key, id) =
                chatter_core::accounts::api_keys::insert(&txn, c.id, None, &name, core.now())
                    .await?;
            chatter_core::audit::insert(
                &txn,
                Some(c.id),
                None,
                "cli",
                &chatter_core::ReqMeta {
                    ip: "local".into(),
                    user_agent: "chatter admin".into(),
                },
                core.now(),
                "api_key.create",
                &name,
                serde_json::json!({"id": id}),
            )
            .await?;
            txn.commit().await?;
            println!("API key: {key}");
        }
    }
    Ok(())
}

/// Listens for Ctrl-C and SIGTERM from the moment it is called (not from the first poll), so a
/// signal that arrives right after the "listening" line still stops the server gracefully.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let unix = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            async fn recv(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            let (term, int) = unix;
            tokio::select! { _ = recv(term) => {}, _ = recv(int) => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
