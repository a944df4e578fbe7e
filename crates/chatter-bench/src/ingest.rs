//! `ingest`: Telegram updates POSTed straight to `/hooks/telegram/{id}` with the secret header
//! from many keep-alive clients; a 200 means the update is committed. Next to it, the raw rate
//! of single-row INSERT transactions on the same kind of database from the same concurrency,
//! and afterwards a count in the database that must equal the number of 200s.

use crate::server::{self, Common, Run};
use crate::telegram;
use anyhow::{bail, Context as _};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait as _, DbBackend, Statement, TransactionTrait as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Seconds of measured webhook load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive webhook clients (and raw-commit tasks).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Distinct customers (private chats) the updates come from.
    #[arg(long, default_value_t = 1000)]
    customers: u64,
    /// Seconds of unmeasured webhook load first.
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
    /// Seconds of raw single-row commits.
    #[arg(long, default_value_t = 5)]
    raw_seconds: u64,
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let setup = telegram::webhook_setup(&args.common).await?;
    let database = setup.server.database;

    // The raw rate: a scratch SQLite file next to the server's (same disk, same pragmas through
    // chatter_store::connect), or a scratch table in the same PostgreSQL database.
    let raw_url = match &args.common.database_url {
        Some(url) => url.clone(),
        None => format!(
            "sqlite://{}?mode=rwc",
            setup.server.data_dir().join("raw-commits.db").display()
        ),
    };
    eprintln!(
        "raw single-row commits for {} s from {} tasks",
        args.raw_seconds, args.connections
    );
    let raw = raw_commits(
        &raw_url,
        args.connections,
        Duration::from_secs(args.raw_seconds),
    )
    .await?;

    eprintln!(
        "webhook ingest for {} s from {} clients ({} customers)",
        args.seconds, args.connections, args.customers
    );
    let load = Load {
        url: setup.hook_url.clone(),
        secret: setup.secret.clone(),
        customers: args.customers.max(1),
        seq: Arc::new(AtomicU64::new(0)),
        accepted: Arc::new(AtomicU64::new(0)),
    };
    let clients: Vec<reqwest::Client> = (0..args.connections)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
        })
        .collect::<Result<_, _>>()?;
    if args.warmup_seconds > 0 {
        load.run(&clients, Duration::from_secs(args.warmup_seconds))
            .await?;
    }
    let cpu_before = cpu_seconds(setup.server.pid)?;
    let ingest = load
        .run(&clients, Duration::from_secs(args.seconds))
        .await?;
    let cpu_used = cpu_seconds(setup.server.pid)? - cpu_before;
    let peak_rss = setup.server.status("VmHWM:")?;

    let accepted = load.accepted.load(Ordering::SeqCst);
    let sent = load.seq.load(Ordering::SeqCst);
    let stored = server::count(
        &setup.server.database_url,
        "SELECT COUNT(*) FROM messages WHERE direction = 'in'",
    )
    .await?;
    let (shutdown, exit) = setup.server.stop().await?;

    println!(
        "### Webhook ingest on {database}: {} clients, {} s, {} customers\n",
        args.connections, args.seconds, args.customers
    );
    println!("| measure | committed | per s | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, r) in [
        (
            format!(
                "POST /hooks/telegram ({} keep-alive clients)",
                args.connections
            ),
            &ingest,
        ),
        (
            format!(
                "raw single-row INSERT, one transaction each ({} tasks)",
                args.connections
            ),
            &raw,
        ),
    ] {
        println!(
            "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            r.latencies_us.len(),
            r.per_second(),
            r.percentile_ms(50.0),
            r.percentile_ms(99.0),
            r.percentile_ms(100.0),
            r.errors
        );
    }
    println!();
    let ratio = ingest.per_second() / raw.per_second().max(f64::MIN_POSITIVE);
    println!("| check | value | goal |");
    println!("|---|---:|---|");
    println!(
        "| ingest updates/s | {:.0} | ≥ 10,000 {} |",
        ingest.per_second(),
        mark(ingest.per_second() >= 10_000.0)
    );
    println!(
        "| ingest / raw single-row commits | {ratio:.1}× | > 1 {} |",
        mark(ratio > 1.0)
    );
    println!(
        "| inbound messages in the database / updates answered 200 | {stored} / {accepted} | equal {} |",
        mark(stored as u64 == accepted)
    );
    println!("| updates sent (incl. warm-up) | {sent} | |");
    println!(
        "| server CPU during the measured load | {:.2} s of {} s ({:.0}% of one core) | |",
        cpu_used,
        args.seconds,
        100.0 * cpu_used / ingest.elapsed.as_secs_f64()
    );
    println!(
        "| server peak RSS (VmHWM) | {:.1} MiB | |",
        server::mib(peak_rss)
    );
    println!();
    println!("SIGTERM to exit: {:.2} s ({exit}).", shutdown.as_secs_f64());
    if stored as u64 != accepted {
        bail!("{stored} inbound messages stored, but {accepted} updates were answered 200");
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn mark(ok: bool) -> &'static str {
    if ok {
        "✅"
    } else {
        "❌"
    }
}

/// CPU time (user + system) the process has used, from `/proc/<pid>/stat` (100 ticks/s).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short stat")?
            .parse::<u64>()
            .context("stat field")? as f64)
    };
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Closed-loop webhook load on one hook URL (shared counters let several loads add up).
pub struct Load {
    pub url: String,
    pub secret: String,
    pub customers: u64,
    pub seq: Arc<AtomicU64>,
    pub accepted: Arc<AtomicU64>,
}

impl Load {
    /// Closed-loop load: each client POSTs the next update as soon as the last one is answered.
    pub async fn run(
        &self,
        clients: &[reqwest::Client],
        duration: Duration,
    ) -> anyhow::Result<Run> {
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = tokio::task::JoinSet::new();
        for client in clients {
            let client = client.clone();
            let (url, secret) = (self.url.clone(), self.secret.clone());
            let (seq, accepted, customers) =
                (self.seq.clone(), self.accepted.clone(), self.customers);
            tasks.spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let n = seq.fetch_add(1, Ordering::SeqCst);
                    let update = telegram::text_update(n, n % customers, &format!("(#{n})"));
                    let body = serde_json::to_vec(&update).unwrap_or_default();
                    let sent = Instant::now();
                    let ok = match client
                        .post(&url)
                        .header("x-telegram-bot-api-secret-token", &secret)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                    {
                        Ok(r) => {
                            let status = r.status();
                            r.bytes().await.is_ok() && status == StatusCode::OK
                        }
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(sent.elapsed().as_micros() as u64);
                        accepted.fetch_add(1, Ordering::SeqCst);
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            });
        }
        collect(tasks, start).await
    }
}

/// Joins load tasks that each return their latencies (µs) and error count into one `Run`.
pub(crate) async fn collect(
    mut tasks: tokio::task::JoinSet<(Vec<u64>, u64)>,
    start: Instant,
) -> anyhow::Result<Run> {
    let mut run = Run {
        latencies_us: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(done) = tasks.join_next().await {
        let (latencies, errors) = done.context("a load task panicked")?;
        run.latencies_us.extend(latencies);
        run.errors += errors;
    }
    run.elapsed = start.elapsed();
    run.latencies_us.sort_unstable();
    Ok(run)
}

/// Single-row INSERTs, one transaction (so one durable commit) each, from `concurrency` tasks
/// sharing the pool `chatter_store::connect` builds (on SQLite: one connection, WAL,
/// synchronous = FULL; on PostgreSQL: up to 16 connections), as the product's writes do.
async fn raw_commits(url: &str, concurrency: usize, duration: Duration) -> anyhow::Result<Run> {
    let db = chatter_store::connect(url).await?;
    let backend = db.get_database_backend();
    db.execute_unprepared("DROP TABLE IF EXISTS bench_raw_commit")
        .await?;
    db.execute_unprepared(
        "CREATE TABLE bench_raw_commit (id BIGINT PRIMARY KEY, chat TEXT NOT NULL, \
         body TEXT NOT NULL, created_at BIGINT NOT NULL)",
    )
    .await?;
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO bench_raw_commit (id, chat, body, created_at) VALUES ($1, $2, $3, $4)"
        }
        _ => "INSERT INTO bench_raw_commit (id, chat, body, created_at) VALUES (?, ?, ?, ?)",
    };
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (db, next) = (db.clone(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::SeqCst) as i64;
                let sent = Instant::now();
                let stmt = Statement::from_sql_and_values(
                    backend,
                    sql,
                    [
                        n.into(),
                        telegram::customer_id(n as u64 % 1000).to_string().into(),
                        "Здравствуйте! Подскажите, когда будет доставка?".into(),
                        now_ms().into(),
                    ],
                );
                let done = async {
                    let txn = db.begin().await?;
                    txn.execute(stmt).await?;
                    txn.commit().await
                }
                .await;
                match done {
                    Ok(()) => latencies.push(sent.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let run = collect(tasks, start).await?;
    db.execute_unprepared("DROP TABLE IF EXISTS bench_raw_commit")
        .await?;
    db.close().await?;
    Ok(run)
}
