//! `read-latency`: the dashboard (`/app`) and the inbox (`/app/inbox`) of a signed-in person,
//! p50/p99, while Telegram webhook updates arrive at a steady rate (5,000/s by default), on
//! SQLite with the read pool off (`sqlite_readers = 0`: pages share the writer's one
//! connection) and on (`sqlite_readers = 4`), one fresh server each, in the same run.

use crate::ingest::{collect, Load};
use crate::server::{Common, Run};
use crate::telegram;
use reqwest::header::{HeaderValue, COOKIE};
use reqwest::StatusCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Webhook updates per second offered while the pages are read.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Seconds of measurement per setting.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent webhook clients sending the updates.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Distinct customers (private chats) the updates come from.
    #[arg(long, default_value_t = 1000)]
    customers: u64,
    /// Read-only connections with the pool on.
    #[arg(long, default_value_t = 4)]
    readers: u32,
}

struct Measured {
    readers: u32,
    ingest: Run,
    dashboard: Run,
    inbox: Run,
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    if args.common.database_url.is_some() {
        anyhow::bail!("read-latency measures SQLite's read pool; run it without --database-url");
    }
    let mut results = Vec::new();
    for readers in [0, args.readers] {
        eprintln!("sqlite_readers = {readers}");
        results.push(measure(args, readers).await?);
    }
    println!(
        "### Page latency on SQLite while ingesting {} updates/s ({} s each, {} customers)\n",
        args.rate, args.seconds, args.customers
    );
    println!("| sqlite_readers | page | requests | p50 ms | p99 ms | max ms | errors | updates/s stored |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for m in &results {
        for (page, r) in [("/app (dashboard)", &m.dashboard), ("/app/inbox", &m.inbox)] {
            println!(
                "| {} | {page} | {} | {:.2} | {:.2} | {:.2} | {} | {:.0} |",
                m.readers,
                r.latencies_us.len(),
                r.percentile_ms(50.0),
                r.percentile_ms(99.0),
                r.percentile_ms(100.0),
                r.errors,
                m.ingest.per_second()
            );
        }
    }
    Ok(())
}

async fn measure(args: &Args, readers: u32) -> anyhow::Result<Measured> {
    let setup = telegram::webhook_setup_with(&args.common, |_| {
        vec![("CHATTER_SQLITE_READERS", readers.to_string())]
    })
    .await?;
    let load = Load {
        url: setup.hook_url.clone(),
        secret: setup.secret.clone(),
        customers: args.customers.max(1),
        seq: Arc::new(AtomicU64::new(0)),
        accepted: Arc::new(AtomicU64::new(0)),
    };
    // A first update per customer, so the inbox has its conversations before the measurement.
    let clients: Vec<reqwest::Client> = (0..args.connections)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
        })
        .collect::<Result<_, _>>()?;
    load.run(&clients, Duration::from_secs(2)).await?;

    let duration = Duration::from_secs(args.seconds);
    let ingest = paced(&load, &clients, args.rate, duration);
    let dashboard = pages(&setup.server.base, &setup.cookie, "/app", duration);
    let inbox = pages(&setup.server.base, &setup.cookie, "/app/inbox", duration);
    let (ingest, dashboard, inbox) = tokio::try_join!(ingest, dashboard, inbox)?;
    setup.server.stop().await?;
    Ok(Measured {
        readers,
        ingest,
        dashboard,
        inbox,
    })
}

/// Updates at `rate` per second in total, spread over the clients, each sending on its own
/// schedule (a late answer delays only that client's next update).
async fn paced(
    load: &Load,
    clients: &[reqwest::Client],
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Run> {
    let start = Instant::now();
    let deadline = start + duration;
    let period = Duration::from_secs_f64(clients.len() as f64 / rate.max(1) as f64);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let (url, secret) = (load.url.clone(), load.secret.clone());
        let (seq, customers) = (load.seq.clone(), load.customers);
        tasks.spawn(async move {
            // Staggered, so the clients do not all send at the same instant.
            tokio::time::sleep(period.mul_f64(i as f64 / 64.0)).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                let n = seq.fetch_add(1, Ordering::SeqCst);
                let update = telegram::text_update(n, n % customers, &format!("(#{n})"));
                let sent = Instant::now();
                let ok = match client
                    .post(&url)
                    .header("x-telegram-bot-api-secret-token", &secret)
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&update).unwrap_or_default())
                    .send()
                    .await
                {
                    Ok(r) => r.status() == StatusCode::OK && r.bytes().await.is_ok(),
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
    collect(tasks, start).await
}

/// One signed-in client reading `path` in a closed loop.
async fn pages(
    base: &str,
    cookie: &HeaderValue,
    path: &str,
    duration: Duration,
) -> anyhow::Result<Run> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = format!("{base}{path}");
    let start = Instant::now();
    let deadline = start + duration;
    let mut latencies = Vec::new();
    let mut errors = 0;
    while Instant::now() < deadline {
        let sent = Instant::now();
        let ok = match client.get(&url).header(COOKIE, cookie.clone()).send().await {
            Ok(r) => r.status() == StatusCode::OK && r.bytes().await.is_ok(),
            Err(_) => false,
        };
        if ok {
            latencies.push(sent.elapsed().as_micros() as u64);
        } else {
            errors += 1;
        }
    }
    latencies.sort_unstable();
    Ok(Run {
        latencies_us: latencies,
        errors,
        elapsed: start.elapsed(),
    })
}
