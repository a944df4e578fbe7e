//! `Browser`: headless Chromium driven through chromedriver (WebDriver, via fantoccini), one
//! private chromedriver and profile per browser, for end-to-end tests of the web UI.
//!
//! Browser tests skip themselves on machines without Chromium unless `Browser::required()`
//! says they must run (CI).

use anyhow::{anyhow, bail, Context as _};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// How long `fill`, `click` and `text` wait for their element to appear.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// How long chromedriver gets to answer `/status` after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// What a browser test prints (or panics with) when it cannot run.
pub const SKIP_MESSAGE: &str = "browser tests skipped: chromium/chromedriver not installed";

fn binary(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env)
        .filter(|value| !value.is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from)
}

fn chromedriver_path() -> PathBuf {
    binary("CHROMEDRIVER", "/usr/bin/chromedriver")
}

fn chromium_path() -> PathBuf {
    binary("CHROMIUM", "/usr/bin/chromium")
}

/// A headless Chromium session. Dropping it ends chromedriver and the browser with it.
pub struct Browser {
    client: Client,
    driver: Child,
    /// Holds the Chromium profile and the chromedriver log; removed on drop.
    profile: TempDir,
    closed: bool,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("driver_pid", &self.driver.id())
            .field("profile", &self.profile.path())
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Whether both chromedriver and Chromium are installed (see `CHROMEDRIVER`, `CHROMIUM`).
    pub fn available() -> bool {
        chromedriver_path().is_file() && chromium_path().is_file()
    }

    /// Whether browser tests must run rather than skip: `CHATTER_BROWSER_TESTS=required` or
    /// `CI=true`.
    pub fn required() -> bool {
        std::env::var("CHATTER_BROWSER_TESTS").is_ok_and(|v| v == "required")
            || std::env::var("CI").is_ok_and(|v| v == "true")
    }

    /// For the top of a browser test: `true` if it can run; `false` after printing
    /// [`SKIP_MESSAGE`] when it may skip; panics with that message when it is required.
    pub fn available_or_skip() -> bool {
        if Self::available() {
            return true;
        }
        if Self::required() {
            panic!("{SKIP_MESSAGE} (and CHATTER_BROWSER_TESTS=required or CI=true)");
        }
        println!("{SKIP_MESSAGE}");
        false
    }

    /// Starts chromedriver on a free port and opens a headless Chromium window of
    /// `width`×`height` with a fresh profile and Russian as its language.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Browser> {
        Self::start_with_args(width, height, &[]).await
    }

    /// [`Browser::start`] with extra Chromium switches (a host resolver rule, a certificate
    /// key to trust).
    pub async fn start_with_args(
        width: u32,
        height: u32,
        extra: &[String],
    ) -> anyhow::Result<Browser> {
        let chromedriver = chromedriver_path();
        let chromium = chromium_path();
        if !chromedriver.is_file() {
            bail!("chromedriver not found at {}", chromedriver.display());
        }
        if !chromium.is_file() {
            bail!("chromium not found at {}", chromium.display());
        }
        let profile = tempfile::Builder::new()
            .prefix("chatter-browser-")
            .tempdir()
            .context("create the browser profile directory")?;
        let log = profile.path().join("chromedriver.log");
        let port = free_port().context("find a free port for chromedriver")?;
        let mut command = Command::new(&chromedriver);
        command
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        // Its own process group, so dropping the browser can end Chromium too (see Drop).
        #[cfg(unix)]
        command.process_group(0);
        let mut driver = command
            .spawn()
            .with_context(|| format!("spawn {}", chromedriver.display()))?;
        let webdriver = format!("http://127.0.0.1:{port}");
        if let Err(err) = wait_until_ready(&webdriver, &mut driver).await {
            return Err(err.context(log_tail(&log)));
        }

        let user_data_dir = profile.path().join("profile");
        let args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--lang=ru-RU",
        ]
        .into_iter()
        .map(String::from)
        .chain([
            format!("--user-data-dir={}", user_data_dir.display()),
            format!("--window-size={width},{height}"),
        ])
        .chain(extra.iter().cloned())
        .collect();
        let mut capabilities = fantoccini::wd::Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium.display().to_string(),
                "args": args,
                "prefs": { "intl.accept_languages": "ru-RU,ru" },
            }),
        );
        // Plain HTTP: chromedriver only listens on loopback.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .map_err(|err| anyhow!("start a Chromium session: {err}"))
            .with_context(|| log_tail(&log))?;
        let browser = Browser {
            client,
            driver,
            profile,
            closed: false,
        };
        browser
            .client
            .set_window_size(width, height)
            .await
            .context("set the window size")?;
        Ok(browser)
    }

    /// The underlying WebDriver client, for anything the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Navigates to `url` and waits for the page load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("open {url}"))
    }

    /// Runs `source` in every document this browser opens from now on, before the page's own
    /// scripts and whatever its Content-Security-Policy says (Chrome DevTools'
    /// `Page.addScriptToEvaluateOnNewDocument`, through chromedriver). For watching a page
    /// from its first moment, e.g. for `securitypolicyviolation` events.
    pub async fn on_every_page(&self, source: &str) -> anyhow::Result<()> {
        self.client
            .issue_cmd(Cdp {
                cmd: "Page.addScriptToEvaluateOnNewDocument",
                params: serde_json::json!({ "source": source }),
            })
            .await
            .map(|_| ())
            .map_err(|e| anyhow!("add a script to every page: {e}"))
    }

    /// Clears the field matched by `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self.wait_for(css, DEFAULT_WAIT).await?;
        field
            .clear()
            .await
            .with_context(|| format!("clear {css}"))?;
        field
            .send_keys(text)
            .await
            .with_context(|| format!("type into {css}"))
    }

    /// Clicks the element matched by `css`.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        // The live inbox replaces rows as events arrive; an element replaced between finding
        // and clicking it is found again (as a person clicks again), a few times at most.
        let mut tries = 0;
        loop {
            let element = self.wait_for(css, DEFAULT_WAIT).await?;
            match element.click().await {
                Ok(()) => return Ok(()),
                Err(e) if tries < 5 && e.to_string().contains("stale element") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(anyhow::Error::new(e).context(format!("click {css}"))),
            }
        }
    }

    /// The rendered text of the element matched by `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let element = self.wait_for(css, DEFAULT_WAIT).await?;
        element
            .text()
            .await
            .with_context(|| format!("read the text of {css}"))
    }

    /// The current DOM serialized as HTML.
    pub async fn page_source(&self) -> anyhow::Result<String> {
        self.client.source().await.context("read the page source")
    }

    /// Waits up to `timeout` for an element matching `css` to exist.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> anyhow::Result<Element> {
        self.client
            .wait()
            .at_most(timeout)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("wait {timeout:?} for {css}"))
    }

    /// Waits up to `timeout` until the address bar's path satisfies `ok` (a redirect followed, a
    /// form that moved on), looking every 100 ms; the error names the last path seen.
    pub async fn wait_path(
        &self,
        ok: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Ok(u) = self.client.current_url().await {
                if ok(u.path()) {
                    return Ok(());
                }
                last = Some(u.path().to_owned());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("the page did not move on within {timeout:?}; last at {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the viewport as `<target dir>/screenshots/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self
            .client
            .screenshot()
            .await
            .context("take a screenshot")?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    /// The page's content width and the window's width, in CSS pixels: content wider than
    /// the window means something hides off to the right (sideways scrolling on a phone).
    pub async fn widths(&self) -> anyhow::Result<(u64, u64)> {
        let w = self
            .client()
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await?;
        let get = |i: usize| {
            w[i].as_u64()
                .ok_or_else(|| anyhow::anyhow!("the page did not report its widths: {w}"))
        };
        Ok((get(0)?, get(1)?))
    }

    pub async fn close(mut self) -> anyhow::Result<()> {
        let closed = self.client.clone().close().await;
        self.closed = closed.is_ok();
        let _ = self.driver.kill().await;
        closed.context("end the browser session")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        // Without a clean session end, killing chromedriver alone would orphan Chromium; its
        // process group holds both. `kill` the command keeps this crate free of unsafe code.
        #[cfg(unix)]
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // `kill_on_drop` then ends chromedriver itself if it is still there.
    }
}

/// A Chrome DevTools command through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (reqwest::Method, Option<String>) {
        let body = serde_json::json!({ "cmd": self.cmd, "params": self.params });
        (reqwest::Method::POST, Some(body.to_string()))
    }
}

/// `<CARGO_TARGET_DIR or the workspace's target>/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|value| !value.is_empty())
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            PathBuf::from,
        );
    target.join("screenshots")
}

/// A port that was free a moment ago. Another process could take it before chromedriver
/// binds it; for a test machine that race is rare enough, and the startup error says so.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

async fn wait_until_ready(webdriver: &str, driver: &mut Child) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("build an HTTP client")?;
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = driver.try_wait().context("check chromedriver")? {
            bail!("chromedriver exited during startup ({status})");
        }
        let ready = match http.get(format!("{webdriver}/status")).send().await {
            Ok(response) => response
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|body| body["value"]["ready"] == serde_json::Value::Bool(true)),
            Err(_) => false,
        };
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("chromedriver did not become ready within {STARTUP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last lines of the chromedriver log, as error context.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    format!("chromedriver log ({}):\n{tail}", log.display())
}
