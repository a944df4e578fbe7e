//! A started `chatter serve` and what every benchmark does with it: wait until ready, read its
//! memory from `/proc`, sign up a company, add Telegram bots through the Sources form, stop it.

use anyhow::{bail, Context as _};
use reqwest::cookie::{CookieStore as _, Jar};
use reqwest::header::{HeaderValue, COOKIE, LOCATION};
use reqwest::{StatusCode, Url};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Options every benchmark takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// The chatter binary [default: $CARGO_TARGET_DIR/release/chatter, else target/release/chatter].
    #[arg(long)]
    pub chatter: Option<PathBuf>,
    /// Run on this (fresh) PostgreSQL database, passed as DATABASE_URL, instead of a fresh
    /// SQLite file in a temporary data directory.
    #[arg(long)]
    pub database_url: Option<String>,
}

impl Common {
    pub fn binary(&self) -> anyhow::Result<PathBuf> {
        let binary = self.chatter.clone().unwrap_or_else(default_binary);
        if !binary.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p chatter` or pass --chatter",
                binary.display()
            );
        }
        Ok(binary)
    }
}

fn default_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("release").join("chatter")
}

pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A running `chatter serve` on a fresh temporary data directory; killed when dropped.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub pid: u32,
    /// `SQLite` or `PostgreSQL`.
    pub database: &'static str,
    /// The database the server uses (the SQLite file in the data directory by default).
    pub database_url: String,
    pub startup: Duration,
    child: Child,
    data_dir: tempfile::TempDir,
}

impl Server {
    /// Starts `binary serve` with `env` added to its environment and waits for `/readyz`.
    pub async fn start(
        binary: &Path,
        database_url: Option<&str>,
        port: u16,
        env: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        let data_dir = tempfile::Builder::new()
            .prefix("chatter-bench-")
            .tempdir()
            .context("create a data directory")?;
        let base = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(binary);
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
        for (k, v) in env {
            command.env(k, v);
        }
        let (database, database_url) = match database_url {
            Some(url) => {
                command.env("DATABASE_URL", url);
                ("PostgreSQL", url.to_owned())
            }
            None => {
                command.env_remove("DATABASE_URL");
                ("SQLite", chatter_store::sqlite_url_in(data_dir.path()))
            }
        };
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let pid = child.id().context("the server's process id")?;
        wait_ready(&base, &mut child).await?;
        Ok(Server {
            base,
            pid,
            database,
            database_url,
            startup: started.elapsed(),
            child,
            data_dir,
        })
    }

    /// The data directory, for files that belong next to the server's own (a scratch SQLite
    /// database on the same disk).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// A field of `/proc/<pid>/status` given in kB (`VmRSS:`, `VmHWM:`) or as a count
    /// (`Threads:`).
    pub fn status(&self, field: &str) -> anyhow::Result<u64> {
        status_field(self.pid, field)
    }

    /// SIGTERM, then waits (up to 15 s) for the drained exit.
    pub async fn stop(mut self) -> anyhow::Result<(Duration, ExitStatus)> {
        let stopping = Instant::now();
        terminate(self.pid)?;
        let exit = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .context("the server did not stop within 15 s of SIGTERM")?
            .context("wait for the server")?;
        Ok((stopping.elapsed(), exit))
    }
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

/// A field of `/proc/<pid>/status`, such as `VmRSS:` (kB).
pub fn status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

pub fn mib(kib: u64) -> f64 {
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
pub async fn sign_up(base: &str) -> anyhow::Result<HeaderValue> {
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
    let csrf = csrf_in(&page).context("no CSRF token on /sign-up")?;
    let company = "Bench Co";
    let signed_up = http
        .post(format!("{base}/sign-up"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("company_name", company),
            ("name", "Bench Owner"),
            ("email", "owner@bench.test"),
            ("password", "bench-password-123"),
        ])
        .send()
        .await?;
    if signed_up.status() == StatusCode::OK {
        bail!(
            "the database already has accounts, so sign-up waits for a mailed link: \
             give the bench a fresh database"
        );
    }
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

fn csrf_in(page: &str) -> Option<String> {
    let marker = "name=\"_csrf\" value=\"";
    page.find(marker)
        .map(|i| &page[i + marker.len()..])
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned)
}

/// The signed-in session's CSRF token, read from the "add a source" form.
pub async fn session_csrf(base: &str, cookie: &HeaderValue) -> anyhow::Result<String> {
    let page = reqwest::Client::new()
        .get(format!("{base}/app/sources/new"))
        .header(COOKIE, cookie.clone())
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    csrf_in(&page).context("no CSRF token on /app/sources/new")
}

/// Adds a Telegram bot through the Sources form (POST /app/sources) and returns the source id
/// from the 303 redirect to `/app/sources/{id}`.
pub async fn add_bot(
    http: &reqwest::Client,
    base: &str,
    cookie: &HeaderValue,
    csrf: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<String> {
    let response = http
        .post(format!("{base}/app/sources"))
        .header(COOKIE, cookie.clone())
        .form(&[
            ("_csrf", csrf),
            ("kind", "1"),
            ("token", token),
            ("name", name),
        ])
        .send()
        .await?;
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match (status, location) {
        (StatusCode::SEE_OTHER, Some(l)) => l
            .strip_prefix("/app/sources/")
            .map(str::to_owned)
            .with_context(|| format!("unexpected redirect after adding a bot: {l}")),
        _ => {
            let body = response.text().await.unwrap_or_default();
            bail!(
                "adding a bot answered {status}: {}",
                body.chars().take(300).collect::<String>()
            )
        }
    }
}

/// A client that does not follow redirects (so a 303 can be read) with a generous timeout.
pub fn form_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Latencies of successful requests in microseconds, failures, and the measured time.
pub struct Run {
    pub latencies_us: Vec<u64>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Run {
    pub fn requests(&self) -> u64 {
        self.latencies_us.len() as u64 + self.errors
    }

    pub fn per_second(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile of the sorted latencies, in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies_us, p)
    }
}

/// Nearest-rank percentile of sorted microsecond latencies, in milliseconds.
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let n = sorted_us.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let index = rank.clamp(1, n) - 1;
    sorted_us[index] as f64 / 1000.0
}

/// Runs `count` in the database at `url` (through sea-orm, as the product does) and returns
/// the single number it selects.
pub async fn count(url: &str, sql: &str) -> anyhow::Result<i64> {
    use sea_orm::{ConnectionTrait as _, Statement};
    let db = chatter_store::connect(url).await?;
    let row = db
        .query_one(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .context("COUNT returned no row")?;
    let n: i64 = row.try_get_by_index(0)?;
    db.close().await?;
    Ok(n)
}
