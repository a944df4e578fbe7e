//! `chatter-bench`: starts a release `chatter serve` on a fresh data directory (SQLite, or the
//! PostgreSQL database given) and measures it.
//!
//! - no subcommand: idle memory, then closed-loop load through keep-alive connections at
//!   `/healthz` and at the signed-in dashboard `/app` (requests/s, latency percentiles, memory);
//! - `ingest`: Telegram webhook updates/s and latency to a durable commit, next to the raw
//!   single-row commit rate of the same kind of database;
//! - `sse`: latency from a webhook update to its event on a signed-in `/app/events` stream;
//! - `kinds`: webhook ingest for every source kind with a webhook, one fresh server each;
//! - `read-latency`: SQLite, dashboard and inbox p50/p99 while webhooks arrive at 5,000/s, with
//!   the read pool off and on;
//! - `pollers`: memory of one node long-polling 1,000 bots;
//! - `search`: full-text search p50/p99 over 1,000,000 messages of many companies (in process);
//! - `auto-rules`: µs per inbound message to look at 100 auto-reply rules (in process);
//! - `leads`: the Telegram parsing lead filter (chatter-ai) in process: keyword stage and
//!   classifier messages/s on one core, precision/recall on a time-ordered held-out split and
//!   on an unknown niche before and after 50 marks;
//! - `stem`: nanoseconds per word of the routing rules' stemmer over the words of given texts;
//! - `nodes`: two nodes on one PostgreSQL database: takeover after SIGKILL, SIGTERM with open
//!   live streams, ingest on one node against two.
//!
//! The fakes run inside this process. Results are printed as Markdown.
//!
//! ```text
//! cargo build --release -p chatter -p chatter-bench
//! target/release/chatter-bench --seconds 10 --connections 32
//! target/release/chatter-bench --database-url postgres://postgres@127.0.0.1:5432/bench
//! target/release/chatter-bench ingest --seconds 10 --connections 64
//! target/release/chatter-bench sse --rate 1000 --seconds 10
//! target/release/chatter-bench read-latency --rate 5000 --seconds 10
//! target/release/chatter-bench pollers --bots 1000
//! target/release/chatter-bench crm --rate 20 --seconds 10 --burst 1000
//! target/release/chatter-bench kinds --seconds 5
//! target/release/chatter-bench search --messages 1000000
//! target/release/chatter-bench search --database-url postgres://postgres@127.0.0.1:5432/search
//! target/release/chatter-bench stem faq.ru.txt
//! target/release/chatter-bench leads
//! target/release/chatter-bench auto-rules --rules 100
//! target/release/chatter-bench nodes --database-url postgres://postgres@127.0.0.1:5432/nodes
//! ```

mod auto_rules;
mod crm;
mod figures;
mod ingest;
mod kinds;
mod leads;
mod nodes;
mod pollers;
mod read_latency;
mod search;
mod seed;
mod server;
mod sse;
mod stem;
mod telegram;
mod timers;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use reqwest::header::{HeaderValue, COOKIE};
use reqwest::StatusCode;
use server::{mib, Common, Run, Server};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "chatter-bench",
    about = "Idle memory, throughput and latency of `chatter serve`"
)]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Seconds of load per endpoint.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive clients, each with its own connection.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds the started server sits idle before its memory is read.
    #[arg(long, default_value_t = 5)]
    idle_seconds: u64,
    /// Seconds of unmeasured load before each measured run.
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
    #[command(subcommand)]
    bench: Option<Bench>,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// Telegram webhook ingest: accepted updates/s and latency to commit, against the raw
    /// single-row commit rate of the same database.
    Ingest(ingest::Args),
    /// Inbound update → event on a signed-in SSE stream, at a paced rate.
    Sse(sse::Args),
    /// Memory of one node long-polling many bots.
    Pollers(pollers::Args),
    /// SQLite: dashboard and inbox p50/p99 while ingesting at a steady rate, read pool off
    /// against on, in one run.
    ReadLatency(read_latency::Args),
    /// Conversations into amoCRM: inbound → deal latency, and a burst of new customers.
    Crm(crm::Args),
    /// Webhook ingest per source kind (Telegram, VK, Max, Avito, API source, WhatsApp, SMS):
    /// accepted/s, latency to 2xx, rows stored against 2xx answers.
    Kinds(kinds::Args),
    /// Two nodes on one PostgreSQL database: takeover time after SIGKILL, SIGTERM with open
    /// live streams, webhook ingest on one node against two.
    Nodes(nodes::Args),
    /// The team's pages on a big company: dashboard, reports, inbox list and search timed over
    /// 100,000 conversations (a tenth open) and 300,000 messages written into the database.
    Figures(figures::Args),
    /// Full-text search over 1,000,000 messages of many companies written into a fresh
    /// database: p50/p99 per kind of query.
    Search(search::Args),
    /// The Telegram parsing lead filter: keyword stage and classifier msgs/s on one core,
    /// quality on a held-out time-ordered split and on an unknown niche after 50 marks.
    Leads(leads::Args),
    /// The routing rules' keyword stemmer: ns/word over the distinct words of given texts.
    Stem(stem::Args),
    /// Auto-reply rules: µs per inbound message to look at 100 rules, in process.
    AutoRules(auto_rules::Args),
    /// The "no answer in N minutes" timer: firing lateness with 10,000 pending timers.
    Timers(timers::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.bench {
        Some(Bench::Ingest(a)) => ingest::run(a).await,
        Some(Bench::Sse(a)) => sse::run(a).await,
        Some(Bench::Pollers(a)) => pollers::run(a).await,
        Some(Bench::ReadLatency(a)) => read_latency::run(a).await,
        Some(Bench::Crm(a)) => crm::run(a).await,
        Some(Bench::Kinds(a)) => kinds::run(a).await,
        Some(Bench::Nodes(a)) => nodes::run(a).await,
        Some(Bench::Figures(a)) => figures::run(a).await,
        Some(Bench::Search(a)) => search::run(a).await,
        Some(Bench::Stem(a)) => stem::run(a),
        Some(Bench::Leads(a)) => leads::run(a),
        Some(Bench::AutoRules(a)) => auto_rules::run(a),
        Some(Bench::Timers(a)) => timers::run(a).await,
        None => http(&args).await,
    }
}

/// The original benchmark: idle memory, `/healthz` and the signed-in dashboard under load.
async fn http(args: &Args) -> anyhow::Result<()> {
    let binary = args.common.binary()?;
    let port = server::free_port()?;
    let server = Server::start(&binary, args.common.database_url.as_deref(), port, &[]).await?;
    let (pid, base, database) = (server.pid, server.base.clone(), server.database);
    eprintln!(
        "chatter serve (pid {pid}, {database}) ready in {:.2} s; idle for {} s",
        server.startup.as_secs_f64(),
        args.idle_seconds
    );
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let idle_rss = server.status("VmRSS:")?;

    let cookie = server::sign_up(&base).await?;
    eprintln!(
        "signed up a company; loading with {} connections",
        args.connections
    );

    let health = load(args, &format!("{base}/healthz"), None).await?;
    let dashboard = load(args, &format!("{base}/app"), Some(cookie)).await?;
    let loaded_rss = server.status("VmRSS:")?;
    let peak_rss = server.status("VmHWM:")?;
    let startup = server.startup;
    let (shutdown, exit) = server.stop().await?;

    println!(
        "### chatter serve on {database}: {} connections, {} s per endpoint\n",
        args.connections, args.seconds
    );
    println!("| endpoint | requests | requests/s | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("GET /healthz", &health),
        ("GET /app (signed in)", &dashboard),
    ] {
        println!(
            "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            r.requests(),
            r.per_second(),
            r.percentile_ms(50.0),
            r.percentile_ms(99.0),
            r.percentile_ms(100.0),
            r.errors
        );
    }
    println!();
    println!("| memory (RSS) | MiB |");
    println!("|---|---:|");
    println!(
        "| idle, {} s after start | {:.1} |",
        args.idle_seconds,
        mib(idle_rss)
    );
    println!("| after the load | {:.1} |", mib(loaded_rss));
    println!("| peak (VmHWM) | {:.1} |", mib(peak_rss));
    println!();
    println!(
        "Startup to ready: {:.2} s. SIGTERM to exit: {:.2} s ({exit}).",
        startup.as_secs_f64(),
        shutdown.as_secs_f64()
    );
    if health.errors + dashboard.errors > 0 {
        bail!("{} requests failed", health.errors + dashboard.errors);
    }
    Ok(())
}

/// A warm-up, then `--seconds` of closed-loop load on `url` from `--connections` clients that
/// each keep one connection and send the next request as soon as the last one is answered.
async fn load(args: &Args, url: &str, cookie: Option<HeaderValue>) -> anyhow::Result<Run> {
    let clients: Vec<reqwest::Client> = (0..args.connections)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
        })
        .collect::<Result<_, _>>()?;
    if args.warmup_seconds > 0 {
        run_clients(
            &clients,
            url,
            &cookie,
            Duration::from_secs(args.warmup_seconds),
        )
        .await?;
    }
    run_clients(&clients, url, &cookie, Duration::from_secs(args.seconds)).await
}

async fn run_clients(
    clients: &[reqwest::Client],
    url: &str,
    cookie: &Option<HeaderValue>,
    duration: Duration,
) -> anyhow::Result<Run> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let (client, url, cookie) = (client.clone(), url.to_string(), cookie.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let mut request = client.get(&url);
                if let Some(c) = &cookie {
                    request = request.header(COOKIE, c.clone());
                }
                let sent = Instant::now();
                let ok = match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        response.bytes().await.is_ok() && status == StatusCode::OK
                    }
                    Err(_) => false,
                };
                if ok {
                    latencies.push(sent.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        });
    }
    let mut run = Run {
        latencies_us: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(done) = tasks.join_next().await {
        let (latencies, errors) = done.context("a load client panicked")?;
        run.latencies_us.extend(latencies);
        run.errors += errors;
    }
    run.elapsed = start.elapsed();
    run.latencies_us.sort_unstable();
    Ok(run)
}
