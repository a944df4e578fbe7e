//! `pollers`: one node long-polling many bots. The bots are created in the in-process fake and
//! added through the Sources form (concurrently); once the fake has seen getUpdates from every
//! token and the node has settled, its memory and threads are read, and one customer message
//! is followed into the database.

use crate::ingest::mark;
use crate::server::{self, mib, Common, Server};
use anyhow::{bail, Context as _};
use chatter_fakes::telegram::{CustomerMessage, FakeTelegram};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Bot sources to add.
    #[arg(long, default_value_t = 1000)]
    bots: usize,
    /// Concurrent Sources-form submissions while adding them.
    #[arg(long, default_value_t = 16)]
    add_concurrency: usize,
    /// getUpdates timeout the server uses (CHATTER_TELEGRAM__POLL_TIMEOUT_SECS).
    #[arg(long, default_value_t = 25)]
    poll_timeout_secs: u64,
    /// Seconds to wait after every bot is polled before memory is read.
    #[arg(long, default_value_t = 20)]
    settle_seconds: u64,
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let binary = args.common.binary()?;
    let fake = FakeTelegram::start()
        .await
        .context("start the fake Telegram")?;
    let tokens: Vec<String> = (0..args.bots)
        .map(|i| fake.create_bot(&format!("bench_{i}_bot"), &format!("Магазин {i}")))
        .collect();
    let port = server::free_port()?;
    let server = Server::start(
        &binary,
        args.common.database_url.as_deref(),
        port,
        &[
            ("CHATTER_TELEGRAM__API_BASE", fake.base_url()),
            (
                "CHATTER_TELEGRAM__POLL_TIMEOUT_SECS",
                args.poll_timeout_secs.to_string(),
            ),
        ],
    )
    .await?;
    let database = server.database;
    eprintln!(
        "chatter serve (pid {}, {database}) ready in {:.2} s",
        server.pid,
        server.startup.as_secs_f64()
    );
    let cookie = server::sign_up(&server.base).await?;
    let csrf = server::session_csrf(&server.base, &cookie).await?;
    let before = (server.status("VmRSS:")?, server.status("Threads:")?);

    eprintln!(
        "adding {} bots through the Sources form, {} at a time",
        args.bots, args.add_concurrency
    );
    let adding = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(tokens);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.add_concurrency.max(1) {
        let (next, tokens) = (next.clone(), tokens.clone());
        let (base, cookie, csrf) = (server.base.clone(), cookie.clone(), csrf.clone());
        let http = server::form_client()?;
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(token) = tokens.get(i) else {
                    return anyhow::Ok(());
                };
                server::add_bot(&http, &base, &cookie, &csrf, token, &format!("Магазин {i}"))
                    .await
                    .with_context(|| format!("add bot {i}"))?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("an adding task panicked")??;
    }
    let added = adding.elapsed();
    eprintln!(
        "added in {:.1} s; waiting for getUpdates from every bot",
        added.as_secs_f64()
    );

    let deadline = Instant::now() + Duration::from_secs(300);
    let polled_after = loop {
        let waiting = tokens
            .iter()
            .filter(|t| !fake.calls(t).iter().any(|c| c == "getUpdates"))
            .count();
        if waiting == 0 {
            break adding.elapsed();
        }
        if Instant::now() > deadline {
            bail!("{waiting} bots were never polled within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "every bot polled {:.1} s after adding began; settling {} s",
        polled_after.as_secs_f64(),
        args.settle_seconds
    );
    tokio::time::sleep(Duration::from_secs(args.settle_seconds)).await;
    let rss = server.status("VmRSS:")?;
    let hwm = server.status("VmHWM:")?;
    let threads = server.status("Threads:")?;
    let cpu_before = crate::ingest::cpu_seconds(server.pid)?;
    let idle_window = Duration::from_secs(5);
    tokio::time::sleep(idle_window).await;
    let idle_cpu = crate::ingest::cpu_seconds(server.pid)? - cpu_before;

    // A customer writes to the last bot: it must reach the database through its poller.
    let token = tokens.last().context("no bots")?;
    let marker = "Проверка доставки через long polling";
    let written = Instant::now();
    fake.customer_writes(token, CustomerMessage::text(700_000_001, "Анна", marker));
    let query = format!("SELECT COUNT(*) FROM messages WHERE text = '{marker}'");
    let arrived = loop {
        if server::count(&server.database_url, &query).await? == 1 {
            break Some(written.elapsed());
        }
        if written.elapsed() > Duration::from_secs(30) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (shutdown, exit) = server.stop().await?;

    println!(
        "### {} long-polled bots on one node ({database}, getUpdates timeout {} s)\n",
        args.bots, args.poll_timeout_secs
    );
    println!("| measure | value | goal |");
    println!("|---|---:|---|");
    println!(
        "| VmRSS, {} s after every bot was polled | {:.1} MiB | ≤ 150 MB {} |",
        args.settle_seconds,
        mib(rss),
        mark(rss * 1024 <= 150_000_000)
    );
    println!(
        "| VmHWM (peak RSS) | {:.1} MiB | ≤ 150 MB {} |",
        mib(hwm),
        mark(hwm * 1024 <= 150_000_000)
    );
    println!("| threads | {threads} | |");
    println!(
        "| before adding bots: VmRSS, threads | {:.1} MiB, {} | |",
        mib(before.0),
        before.1
    );
    println!(
        "| server CPU while idle-polling | {:.1}% of one core | |",
        100.0 * idle_cpu / idle_window.as_secs_f64()
    );
    println!(
        "| {} bots added through the form | {:.1} s | |",
        args.bots,
        added.as_secs_f64()
    );
    println!(
        "| every bot polled (from the first add) | {:.1} s | |",
        polled_after.as_secs_f64()
    );
    match arrived {
        Some(t) => println!(
            "| customer message → row in the database | {:.0} ms | stored ✅ |",
            t.as_secs_f64() * 1000.0
        ),
        None => {
            println!("| customer message → row in the database | not within 30 s | stored ❌ |")
        }
    }
    println!();
    println!("SIGTERM to exit: {:.2} s ({exit}).", shutdown.as_secs_f64());
    if arrived.is_none() {
        bail!("the customer's message never reached the database");
    }
    Ok(())
}
