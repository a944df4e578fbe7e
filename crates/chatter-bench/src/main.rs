//! `chatter-bench`: starts a release `chatter serve` on a fresh data directory (SQLite, or the
//! PostgreSQL database given), measures its idle memory, signs up a company over HTTP, then
//! drives closed-loop load through keep-alive connections at `/healthz` and at the signed-in
//! dashboard `/app`, and prints requests/s, latency percentiles, errors and memory as Markdown.
//!
//! ```text
//! cargo build --release -p chatter -p chatter-bench
//! target/release/chatter-bench --seconds 10 --connections 32
//! target/release/chatter-bench --database-url postgres://postgres@127.0.0.1:5432/bench
//! ```

use anyhow::{bail, Context as _};
use clap::Parser;
use reqwest::cookie::{CookieStore as _, Jar};
use reqwest::header::{HeaderValue, COOKIE};
use reqwest::{StatusCode, Url};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

#[derive(Parser, Debug)]
#[command(
    name = "chatter-bench",
    about = "Idle memory, throughput and latency of `chatter serve`"
)]
struct Args {
    /// The chatter binary [default: $CARGO_TARGET_DIR/release/chatter, else target/release/chatter].
    #[arg(long)]
    chatter: Option<PathBuf>,
    /// Run on this PostgreSQL database (passed as DATABASE_URL) instead of a fresh SQLite file.
    #[arg(long)]
    database_url: Option<String>,
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary = args.chatter.clone().unwrap_or_else(default_binary);
    if !binary.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p chatter` or pass --chatter",
            binary.display()
        );
    }
    let data_dir = tempfile::Builder::new()
        .prefix("chatter-bench-")
        .tempdir()
        .context("create a data directory")?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let database = if args.database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };

    let mut command = Command::new(&binary);
    command
        .arg("serve")
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("CHATTER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    match &args.database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    let started = Instant::now();
    let mut server = command
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let pid = server.id().context("the server's process id")?;
    wait_ready(&base, &mut server).await?;
    let startup = started.elapsed();
    eprintln!(
        "chatter serve (pid {pid}, {database}) ready in {:.2} s; idle for {} s",
        startup.as_secs_f64(),
        args.idle_seconds
    );
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let idle_rss = rss_kib(pid)?;

    let cookie = sign_up(&base).await?;
    eprintln!(
        "signed up a company; loading with {} connections",
        args.connections
    );

    let health = load(&args, &format!("{base}/healthz"), None).await?;
    let dashboard = load(&args, &format!("{base}/app"), Some(cookie)).await?;
    let loaded_rss = rss_kib(pid)?;
    let peak_rss = status_kib(pid, "VmHWM:")?;

    let stopping = Instant::now();
    terminate(pid)?;
    let exit = tokio::time::timeout(Duration::from_secs(15), server.wait())
        .await
        .context("the server did not stop within 15 s of SIGTERM")?
        .context("wait for the server")?;
    let shutdown = stopping.elapsed();

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

fn default_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("release").join("chatter")
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

async fn wait_ready(base: &str, server: &mut Child) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.try_wait()? {
            bail!("chatter serve exited during startup ({status})");
        }
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{base}/readyz not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A field of `/proc/<pid>/status` given in kB, such as `VmRSS:`.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// SIGTERM through `kill(1)`: the workspace forbids unsafe code, so no libc call here.
fn terminate(pid: u32) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill -TERM {pid} failed ({status})");
    }
    Ok(())
}

/// Signs up a company as a browser would and returns the `Cookie` header of the signed-in
/// session, checked against the dashboard.
async fn sign_up(base: &str) -> anyhow::Result<HeaderValue> {
    let jar = Arc::new(Jar::default());
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = http
        .get(format!("{base}/sign-up"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let marker = "name=\"_csrf\" value=\"";
    let csrf = page
        .find(marker)
        .map(|i| &page[i + marker.len()..])
        .and_then(|rest| rest.split('"').next())
        .context("no CSRF token on /sign-up")?;
    let company = "Bench Co";
    let signed_up = http
        .post(format!("{base}/sign-up"))
        .form(&[
            ("_csrf", csrf),
            ("company_name", company),
            ("name", "Bench Owner"),
            ("email", "owner@bench.test"),
            ("password", "bench-password-123"),
        ])
        .send()
        .await?;
    if signed_up.status() != StatusCode::SEE_OTHER {
        bail!("sign-up answered {}", signed_up.status());
    }
    let url = Url::parse(base)?;
    let cookie = jar.cookies(&url).context("sign-up set no session cookie")?;
    let dashboard = reqwest::Client::new()
        .get(format!("{base}/app"))
        .header(COOKIE, cookie.clone())
        .send()
        .await?;
    let status = dashboard.status();
    let body = dashboard.text().await?;
    if status != StatusCode::OK || !body.contains(company) {
        bail!("the dashboard with the session cookie answered {status}");
    }
    Ok(cookie)
}

/// Latencies of successful requests in microseconds, failures, and the measured time.
struct Run {
    latencies_us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
}

impl Run {
    fn requests(&self) -> u64 {
        self.latencies_us.len() as u64 + self.errors
    }

    fn per_second(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile of the sorted latencies, in milliseconds.
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let n = self.latencies_us.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let index = rank.clamp(1, n) - 1;
        self.latencies_us[index] as f64 / 1000.0
    }
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
