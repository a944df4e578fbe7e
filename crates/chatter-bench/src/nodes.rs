//! `nodes`: several `chatter serve` processes on one PostgreSQL database.
//!
//! - takeover: a reply's send job hangs at the fake Telegram on whichever node claimed it;
//!   that node is SIGKILLed and the time until another node has delivered the reply is
//!   measured, `--kills` times (the killed node is started again each round);
//! - stop: SIGTERM to a node holding `--streams` open `/app/events` streams, time to exit;
//! - ingest: webhook updates/s sent to one node, then spread over two, in the same run.

use crate::ingest::Load;
use crate::server::{self, percentile_ms, Common, Server};
use anyhow::{bail, Context as _};
use chatter_fakes::telegram::{CustomerMessage, Failure, FakeTelegram};
use reqwest::header::{HeaderValue, COOKIE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// SIGKILL rounds for the takeover time.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Live streams open on the node that gets SIGTERM.
    #[arg(long, default_value_t = 100)]
    streams: usize,
    /// Seconds of webhook load for each of the one-node and two-node runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Keep-alive clients posting webhooks.
    #[arg(long, default_value_t = 32)]
    connections: usize,
}

struct Cluster {
    /// Delivers each node's public https webhook address to its loopback port.
    fake: FakeTelegram,
    binary: std::path::PathBuf,
    url: String,
    env: Vec<(&'static str, String)>,
}

impl Cluster {
    async fn start(&self, port: u16) -> anyhow::Result<Server> {
        let mut env = self.env.clone();
        // Telegram is given an https address; the fake delivers it to the node's port, as a
        // TLS-terminating proxy would.
        let public = format!("https://node-{port}.chatter.test");
        self.fake
            .route(&public, &format!("http://127.0.0.1:{port}"));
        env.push(("CHATTER_TELEGRAM__WEBHOOK_BASE", public));
        Server::start(&self.binary, Some(&self.url), port, &env).await
    }
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let Some(url) = args.common.database_url.clone() else {
        bail!(
            "`nodes` needs --database-url postgres://… (a fresh database): nodes share PostgreSQL"
        );
    };
    let fake = FakeTelegram::start()
        .await
        .context("start the fake Telegram")?;
    let key: String = (0..32)
        .map(|i| format!("{:02x}", (i * 37 + 11) % 256))
        .collect();
    let cluster = Cluster {
        fake: fake.clone(),
        binary: args.common.binary()?,
        url: url.clone(),
        env: vec![
            ("CHATTER_TELEGRAM__API_BASE", fake.base_url()),
            ("CHATTER_MASTER_KEY", key),
        ],
    };
    let ports = [server::free_port()?, server::free_port()?];
    let mut nodes = vec![
        cluster.start(ports[0]).await?,
        cluster.start(ports[1]).await?,
    ];
    let base = nodes[0].base.clone();
    let cookie = server::sign_up(&base).await?;
    let csrf = server::session_csrf(&base, &cookie).await?;
    let token = fake.create_bot("nodes_bench_bot", "Магазин");
    let source = server::add_bot(
        &server::form_client()?,
        &base,
        &cookie,
        &csrf,
        &token,
        "Магазин",
    )
    .await?;
    let webhook = wait(30, "the bot's webhook", || fake.webhook(&token)).await?;
    let secret = webhook.secret_token.context("no secret_token")?;
    fake.customer_writes(
        &token,
        CustomerMessage::text(700_000_001, "Анна", "Здравствуйте!"),
    );
    let conversation = wait_db(
        &url,
        30,
        "the conversation",
        "SELECT id::text FROM conversations LIMIT 1",
    )
    .await?;

    // Takeover after SIGKILL.
    let http = server::form_client()?;
    let mut takeovers = Vec::new();
    for round in 0..args.kills {
        fake.fail_next(&token, "sendMessage", Failure::Hang, 1);
        let sends = |fake: &FakeTelegram| {
            fake.calls(&token)
                .iter()
                .filter(|m| *m == "sendMessage")
                .count()
        };
        let sends_before = sends(&fake);
        let text = format!("Ответ {round}");
        reply(&http, &nodes[0].base, &cookie, &csrf, &conversation, &text).await?;
        let message = wait_db(
            &url,
            30,
            "the reply",
            &format!("SELECT id::text FROM messages WHERE text = '{text}'"),
        )
        .await?;
        let holder = wait_db(
            &url,
            30,
            "the reply's send job running",
            &format!("SELECT locked_by FROM jobs WHERE status = 'running' AND payload LIKE '%{message}%'"),
        )
        .await?;
        let pid: u32 = holder
            .split('/')
            .next()
            .and_then(|node| node.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("no pid in the claim {holder}"))?;
        let Some(i) = nodes.iter().position(|n| n.pid == pid) else {
            bail!("the job is held by pid {pid}, which is not one of the nodes");
        };
        // Killed only once its send hangs at Telegram: killed between its claim and its
        // request, the node would leave the hang to the node that takes the job over.
        wait(30, "the reply's send hanging at Telegram", || {
            (sends(&fake) > sends_before).then_some(())
        })
        .await?;
        kill9(pid)?;
        let killed = Instant::now();
        wait_db(
            &url,
            60,
            "the reply delivered by the other node",
            &format!(
                "SELECT id::text FROM messages WHERE id::text = '{message}' AND status = 'sent'"
            ),
        )
        .await?;
        let took = killed.elapsed();
        eprintln!(
            "round {round}: node {i} killed, reply delivered {:.2} s later",
            took.as_secs_f64()
        );
        takeovers.push(took.as_micros() as u64);
        nodes[i] = cluster.start(ports[i]).await?;
    }
    takeovers.sort_unstable();
    let sent = fake.sent(&token).len();

    // Ingest: one node, then two.
    let clients: Vec<reqwest::Client> = (0..args.connections)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
        })
        .collect::<Result<_, _>>()?;
    let seq = Arc::new(AtomicU64::new(1_000_000));
    let accepted = Arc::new(AtomicU64::new(0));
    let load = |node: usize| Load {
        url: format!("http://127.0.0.1:{}/hooks/telegram/{source}", ports[node]),
        secret: secret.clone(),
        customers: 1000,
        seq: seq.clone(),
        accepted: accepted.clone(),
    };
    let secs = Duration::from_secs(args.seconds);
    let one = load(0).run(&clients, secs).await?;
    let half = clients.len() / 2;
    let (to_a, to_b) = (load(0), load(1));
    let (a, b) = tokio::join!(
        to_a.run(&clients[..half], secs),
        to_b.run(&clients[half..], secs)
    );
    let (a, b) = (a?, b?);
    let two_rate = (a.latencies_us.len() + b.latencies_us.len()) as f64
        / a.elapsed.max(b.elapsed).as_secs_f64();
    let stored =
        server::count(&url, "SELECT COUNT(*) FROM messages WHERE direction = 'in'").await?;
    let answered = accepted.load(Ordering::SeqCst) + 1;

    // SIGTERM with open live streams.
    let mut streams = Vec::new();
    let stream_client = reqwest::Client::new();
    for _ in 0..args.streams {
        let r = stream_client
            .get(format!("{}/app/events", nodes[0].base))
            .header(COOKIE, cookie.clone())
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("/app/events answered {}", r.status());
        }
        streams.push(r);
    }
    let node = nodes.remove(0);
    let (stop_took, exit) = node.stop().await?;
    drop(streams);
    for n in nodes {
        n.stop().await?;
    }

    println!("### Two nodes on one PostgreSQL database\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| takeover after SIGKILL (kill → reply delivered by the other node), p50 / max over {} | {:.2} / {:.2} s |",
        takeovers.len(),
        percentile_ms(&takeovers, 50.0) / 1000.0,
        percentile_ms(&takeovers, 100.0) / 1000.0
    );
    println!(
        "| replies the customer received (one per round expected) | {sent} of {} |",
        args.kills
    );
    println!(
        "| SIGTERM → exit with {} open live streams | {:.2} s ({exit}) |",
        args.streams,
        stop_took.as_secs_f64()
    );
    println!(
        "| webhook ingest, one node ({} clients) | {:.0} updates/s |",
        args.connections,
        one.per_second()
    );
    println!("| webhook ingest, two nodes (half the clients each) | {two_rate:.0} updates/s |");
    println!("| inbound messages stored / updates answered 200 | {stored} / {answered} |");
    if stored as u64 != answered {
        bail!("{stored} stored but {answered} answered 200");
    }
    Ok(())
}

async fn reply(
    http: &reqwest::Client,
    base: &str,
    cookie: &HeaderValue,
    csrf: &str,
    conversation: &str,
    text: &str,
) -> anyhow::Result<()> {
    let r = http
        .post(format!("{base}/app/inbox/{conversation}/reply"))
        .header(COOKIE, cookie.clone())
        .form(&[("_csrf", csrf), ("text", text)])
        .send()
        .await?;
    if r.status() != reqwest::StatusCode::SEE_OTHER {
        bail!("the reply answered {}", r.status());
    }
    Ok(())
}

fn kill9(pid: u32) -> anyhow::Result<()> {
    let ok = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .context("run kill")?
        .success();
    if !ok {
        bail!("kill -KILL {pid} failed");
    }
    Ok(())
}

async fn wait<T>(secs: u64, what: &str, mut probe: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {secs} s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `sql` (one text column) until it returns a row; its value.
async fn wait_db(url: &str, secs: u64, what: &str, sql: &str) -> anyhow::Result<String> {
    use sea_orm::{ConnectionTrait as _, Statement};
    let db = chatter_store::connect(url).await?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let row = db
            .query_one(Statement::from_string(db.get_database_backend(), sql))
            .await?;
        if let Some(row) = row {
            let v: String = row.try_get_by_index(0)?;
            db.close().await?;
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {secs} s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
