//! The `chatter` binary as an operator uses it: help, `serve` with health checks and a graceful
//! stop on SIGTERM, `demo`, `admin`, `backup`/`restore`, JSON logs, and `migrate`. Each test runs
//! the real program over SQLite in its own temporary data directory (one test uses PostgreSQL
//! when `TEST_DATABASE_URL` is set).

use chatter_testkit::TestDb;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a starting program may take before the test gives up on it (a hang guard).
const START: Duration = Duration::from_secs(60);
/// How long a stopping program may take after SIGTERM.
const STOP: Duration = Duration::from_secs(15);

/// The program with a clean environment: SQLite unless the test says otherwise, info logs, no
/// operator settings leaking in from the test's environment, run from an empty directory so no
/// `chatter.toml` is picked up.
pub(crate) fn chatter(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chatter"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CHATTER_") {
            c.env_remove(k);
        }
    }
    c.env_remove("DATABASE_URL")
        .env_remove("TEST_DATABASE_URL")
        .env("CHATTER_LOG", "info")
        .current_dir(cwd);
    c
}

/// Runs to completion.
pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run chatter")
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs and expects success; returns stdout.
pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A running `chatter` process whose stdout and stderr lines are collected as they come.
pub(crate) struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub(crate) fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chatter");
        let (tx, lines) = mpsc::channel();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        for stream in [out, err] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line (from now on or already seen) that contains `needle`.
    pub(crate) fn line_with(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + START;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line with {needle:?} ({e}); output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The base URL from "Chatter is listening on http://…" (or https://).
    pub(crate) fn url(&mut self) -> String {
        let line = self.line_with("Chatter is listening on http");
        let rest = &line[line.find("http").expect("url")..];
        rest.split_whitespace()
            .next()
            .expect("url")
            .trim_end_matches('/')
            .to_string()
    }

    /// Sends SIGTERM and waits for the exit; asserts a clean exit. Returns all output.
    pub(crate) fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + STOP;
        let exit = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "chatter did not stop within {STOP:?} of SIGTERM; output:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader threads end with the process; collect what is left.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        assert!(
            exit.success(),
            "chatter exited with {exit} after SIGTERM; output:\n{}",
            self.seen.join("\n")
        );
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave its server behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

pub(crate) async fn get_text(url: &str) -> (u16, String) {
    let r = http().get(url).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// `(slug, name)` of each company `chatter admin companies` lists.
fn companies(data_dir: &Path, cwd: &Path) -> Vec<(String, String)> {
    let out = run_ok(
        chatter(cwd)
            .args(["admin", "companies", "--data-dir"])
            .arg(data_dir),
    );
    let mut list: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| {
            let mut parts = l.split('\t');
            let (_id, slug, name) = (parts.next()?, parts.next()?, parts.next()?);
            Some((slug.to_string(), name.to_string()))
        })
        .collect();
    list.sort();
    list
}

/// Runs `chatter demo` on `data_dir` until it is up; returns the process and its API key.
fn start_demo(data_dir: &Path, cwd: &Path) -> (Running, String, String) {
    let mut demo = Running::spawn(
        chatter(cwd)
            .args(["demo", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir),
    );
    let url = demo.url();
    let line = demo.line_with("API key: ");
    let key = line["API key: ".len()..].trim().to_string();
    (demo, url, key)
}

/// The first thing the demo's first customer writes.
const OLGA_OPENS: &str = "Здравствуйте! Сколько стоит кофемолка «Бодрое утро»?";

/// The "Customer's phone: <url>" line of a running demo.
fn demo_phone_url(demo: &mut Running) -> String {
    let line = demo.line_with("Customer's phone: ");
    let phone = line["Customer's phone: ".len()..].trim().to_string();
    assert!(
        phone.starts_with("http://127.0.0.1:") && phone.ends_with("/phone"),
        "{line}"
    );
    phone
}

/// The demo's website visitor writes through the API source; an answer to her, sent through
/// the API, is delivered to the simulated website and shown on its page.
async fn answers_reach_the_demo_website(demo: &mut Running, url: &str, key: &str) {
    let line = demo.line_with("Company website");
    let site = line
        .rsplit(' ')
        .next()
        .expect("the site's address")
        .trim()
        .to_string();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    let conv = loop {
        let list: serde_json::Value = http
            .get(format!("{url}/api/v1/conversations?status=all"))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET conversations")
            .json()
            .await
            .expect("JSON");
        let found = list.as_array().and_then(|a| {
            a.iter()
                .find(|c| c["source_name"] == "Сайт")
                .and_then(|c| c["id"].as_str().map(str::to_owned))
        });
        if let Some(id) = found {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "the website visitor never wrote: {list}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let answer = "Подобрали три дивана до 60 000 ₽ — ссылки на почте";
    let r = http
        .post(format!("{url}/api/v1/conversations/{conv}/messages"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "text": answer }))
        .send()
        .await
        .expect("POST message");
    assert_eq!(r.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = get_text(&site).await;
        assert_eq!(status, 200);
        if page.contains(answer) {
            assert!(page.contains("Ответ менеджера"), "{page}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the answer never reached the site: {page}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The demo connects a Telegram personal account (its customer's message reaches the inbox)
/// and prints what to type to connect a second one.
async fn the_demos_personal_account_is_connected(demo: &mut Running, url: &str, key: &str) {
    let line = demo.line_with("Telegram personal account to connect");
    assert!(line.contains("api_hash") && line.contains("code"), "{line}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http()
            .get(format!("{url}/api/v1/conversations?q=торт"))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET /api/v1/conversations");
        let body = r.text().await.expect("body");
        let sources = http()
            .get(format!("{url}/api/v1/sources"))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET /api/v1/sources")
            .text()
            .await
            .expect("body");
        let connected = sources.contains("\"kind\":\"telegram_private\"");
        if connected && body.contains("Ирина") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the personal account's customer never reached the inbox: {sources} {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The demo's phones page lists a customer of every messenger; writing as the SMS customer
/// there reaches the inbox like a real SMS, and the manager's answer shows in that dialogue.
async fn every_messengers_customer_writes_from_the_phones_page(
    demo: &mut Running,
    url: &str,
    key: &str,
) {
    let line = demo.line_with("Customers' phones of every messenger");
    let page = line
        .rsplit(' ')
        .next()
        .expect("the page's address")
        .trim()
        .trim_end_matches('/')
        .to_string();
    let (status, index) = get_text(&format!("{page}/")).await;
    assert_eq!(status, 200, "{index}");
    for messenger in ["Telegram", "ВКонтакте", "Max", "Авито", "WhatsApp", "SMS"] {
        assert!(index.contains(messenger), "{messenger} missing: {index}");
    }
    let sms = index
        .find(">SMS — ")
        .and_then(|at| {
            let start = index[..at].rfind("href=\"")? + "href=\"".len();
            Some(index[start..at - 1].to_string())
        })
        .unwrap_or_else(|| panic!("no SMS customer: {index}"));
    let asked = "Можно перезвонить после 19:00? Пишу с телефона";
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = http
        .post(format!("{page}{sms}"))
        .form(&[("text", asked)])
        .send()
        .await
        .expect("POST as the customer");
    assert_eq!(r.status(), 303);
    // Blank text changes nothing; an unknown customer is 404.
    let r = http
        .post(format!("{page}/c/99"))
        .form(&[("text", "x")])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 404);

    let deadline = Instant::now() + Duration::from_secs(40);
    let conv = 'found: loop {
        let list: serde_json::Value = http
            .get(format!("{url}/api/v1/conversations?status=all"))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET conversations")
            .json()
            .await
            .expect("JSON");
        for c in list.as_array().into_iter().flatten() {
            if c["source_name"] != "SMS: Рога и Копыта" {
                continue;
            }
            let id = c["id"].as_str().expect("id");
            let messages = http
                .get(format!("{url}/api/v1/conversations/{id}/messages"))
                .bearer_auth(key)
                .send()
                .await
                .expect("GET messages")
                .text()
                .await
                .expect("body");
            if messages.contains(asked) {
                break 'found id.to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the SMS written on the phones page never reached the inbox: {list}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let answer = "Да, перезвоним в 19:15";
    let r = http
        .post(format!("{url}/api/v1/conversations/{conv}/messages"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "text": answer }))
        .send()
        .await
        .expect("POST message");
    assert_eq!(r.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, dialogue) = get_text(&format!("{page}{sms}")).await;
        assert_eq!(status, 200);
        if dialogue.contains(answer) {
            let (q, a) = (
                dialogue.find(asked).expect("the question"),
                dialogue.find(answer).expect("the answer"),
            );
            assert!(q < a, "the answer follows the question: {dialogue}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the answer never reached the SMS customer's phone: {dialogue}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Mail the demo sends (here a password reset) shows on the page the demo prints, with its link.
async fn the_demos_mail_can_be_read(demo: &mut Running, url: &str) {
    let line = demo.line_with("Mail sent by the demo");
    let page_url = line
        .rsplit(' ')
        .next()
        .expect("the page's address")
        .trim()
        .to_string();
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let form = client
        .get(format!("{url}/forgot-password"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    let csrf = chatter_testkit::csrf_of(&form);
    let r = client
        .post(format!("{url}/forgot-password"))
        .form(&[("_csrf", csrf.as_str()), ("email", "demo@chatter.local")])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = get_text(&page_url).await;
        assert_eq!(status, 200);
        if page.contains("/reset-password/") {
            assert!(
                page.contains("<a href=\""),
                "the link can be clicked: {page}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reset mail never showed: {page}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A cookie-keeping client signed in with the printed demo credentials.
async fn demo_sign_in(url: &str) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let page = client
        .get(format!("{url}/sign-in"))
        .send()
        .await
        .expect("GET /sign-in")
        .text()
        .await
        .expect("body");
    let csrf = chatter_testkit::csrf_of(&page);
    let r = client
        .post(format!("{url}/sign-in"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("email", "demo@chatter.local"),
            ("password", "demo-password"),
        ])
        .send()
        .await
        .expect("POST /sign-in");
    assert_eq!(r.status(), 303, "the demo credentials sign in");
    client
}

/// Waits (up to 20 s) until the demo inbox lists the simulated customer Ольга Смирнова, whose
/// thread holds her opening question `times` times (once per demo run); returns the
/// conversation's id.
/// The demo company has a greeting, an out-of-hours answer and "no answer in 5 minutes"; the
/// first customer gets the greeting (or, out of hours, the out-of-hours answer) in her thread.
async fn the_demos_auto_replies_fire(client: &reqwest::Client, url: &str, key: &str, olga: &str) {
    let rules: serde_json::Value = http()
        .get(format!("{url}/api/v1/auto-replies"))
        .bearer_auth(key)
        .send()
        .await
        .expect("GET /api/v1/auto-replies")
        .json()
        .await
        .expect("JSON");
    let names: Vec<&str> = rules
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        ["Нерабочее время", "Приветствие", "Нет ответа 5 минут"],
        "{rules}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let thread = client
            .get(format!("{url}/app/inbox/{olga}"))
            .send()
            .await
            .expect("GET the conversation")
            .text()
            .await
            .expect("body");
        if thread.contains("Автоответ «Приветствие» отправлен")
            || thread.contains("Автоответ «Нерабочее время» отправлен")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no auto-reply in the thread: {thread}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The demo company has reply templates (so `/` in the reply box lists something), one with its
/// price list attached, rendered with the customer's name.
async fn the_demos_templates_render(url: &str, key: &str, olga: &str) {
    let list: serde_json::Value = http()
        .get(format!("{url}/api/v1/templates"))
        .bearer_auth(key)
        .send()
        .await
        .expect("GET /api/v1/templates")
        .json()
        .await
        .expect("JSON");
    let titles: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["title"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(titles, ["Здравствуйте", "Доставка", "Прайс-лист"], "{list}");
    let price = list
        .as_array()
        .and_then(|a| a.iter().find(|t| t["title"] == "Прайс-лист"))
        .expect("the price list");
    assert_eq!(price["file"]["name"], "Прайс-лист.pdf", "{price}");
    let id = price["id"].as_str().expect("id");
    let rendered: serde_json::Value = http()
        .get(format!(
            "{url}/api/v1/conversations/{olga}/templates/{id}/render"
        ))
        .bearer_auth(key)
        .send()
        .await
        .expect("GET render")
        .json()
        .await
        .expect("JSON");
    let text = rendered["text"].as_str().expect("text");
    assert!(
        text.starts_with("Ольга Смирнова, отправляю наш прайс-лист"),
        "{rendered}"
    );
}

async fn wait_for_olga(client: &reqwest::Client, url: &str, times: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen;
    loop {
        let inbox = client
            .get(format!("{url}/app/inbox"))
            .send()
            .await
            .expect("GET /app/inbox")
            .text()
            .await
            .expect("body");
        let conversation = inbox.find("Ольга Смирнова").and_then(|at| {
            let start = inbox[..at].rfind("id=\"conv-")? + "id=\"conv-".len();
            let end = start + inbox[start..].find('"')?;
            Some(inbox[start..end].to_string())
        });
        if let Some(id) = conversation {
            let thread = client
                .get(format!("{url}/app/inbox/{id}"))
                .send()
                .await
                .expect("GET the conversation")
                .text()
                .await
                .expect("body");
            // Counted in the thread's bubbles, not in the list's last-message preview.
            let bubble = format!("<div class=\"text\">{OLGA_OPENS}</div>");
            if thread.matches(&bubble).count() >= times {
                return id;
            }
            seen = thread;
        } else {
            seen = inbox;
        }
        assert!(
            Instant::now() < deadline,
            "Ольга Смирнова's opening question is not there {times} time(s) within 20 s:\n{seen}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn me(url: &str, key: &str) -> (u16, serde_json::Value) {
    let r = http()
        .get(format!("{url}/api/v1/me"))
        .bearer_auth(key)
        .send()
        .await
        .expect("GET /api/v1/me");
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

#[test]
fn help_lists_every_command() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let help = run_ok(chatter(tmp.path()).arg("--help"));
    for command in [
        "serve", "worker", "migrate", "demo", "backup", "restore", "admin",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "`chatter --help` does not list {command}:\n{help}"
        );
    }
    let serve = run_ok(chatter(tmp.path()).args(["serve", "--help"]));
    assert!(serve.contains("--bind"), "{serve}");
    assert!(serve.contains("--data-dir"), "{serve}");
    let admin = run_ok(chatter(tmp.path()).args(["admin", "--help"]));
    assert!(
        admin.contains("api-key") && admin.contains("companies"),
        "{admin}"
    );

    let wrong = run(chatter(tmp.path()).arg("serv"));
    assert!(!wrong.status.success(), "an unknown command is an error");
    assert!(
        text(&wrong.stderr).contains("serv"),
        "{}",
        text(&wrong.stderr)
    );
}

#[tokio::test]
async fn serve_answers_health_checks_and_stops_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A data directory that does not exist yet: serve creates it.
    let data = tmp.path().join("data");
    let mut server = Running::spawn(
        chatter(tmp.path())
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(&data),
    );
    let url = server.url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_ne!(url, "http://127.0.0.1:0", "the real port is printed");
    assert_eq!(
        get_text(&format!("{url}/healthz")).await,
        (200, "ok".into())
    );
    assert_eq!(
        get_text(&format!("{url}/readyz")).await,
        (200, "ready".into())
    );
    let (status, page) = get_text(&format!("{url}/sign-up")).await;
    assert_eq!(status, 200, "the product is served: {page}");

    assert!(
        data.join("chatter.db").is_file(),
        "SQLite lives in the data dir"
    );
    let key = data.join("master.key");
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&key)
            .expect("master.key is created on first start")
            .permissions()
            .mode()
    };
    assert_eq!(
        mode & 0o777,
        0o600,
        "master.key must be readable by its owner only"
    );

    let output = server.stop();
    assert!(
        output.iter().any(|l| l.contains("stopped")),
        "a graceful stop is logged:\n{}",
        output.join("\n")
    );
    // The port is released.
    assert!(http().get(format!("{url}/healthz")).send().await.is_err());
}

#[tokio::test]
async fn demo_gives_a_working_api_key_and_admin_manages_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let (mut demo, url, key) = start_demo(&data, tmp.path());
    assert!(key.starts_with("chk_"), "{key}");
    let (status, body) = me(&url, &key).await;
    assert_eq!(status, 200, "{body}");
    let slug = body["company"]["slug"]
        .as_str()
        .expect("company slug")
        .to_string();
    let name = body["company"]["name"]
        .as_str()
        .expect("company name")
        .to_string();
    assert!(!slug.is_empty());
    assert_eq!(me(&url, "chk_not-a-key").await.0, 401);

    // Simulated customers write to the demo bot: their conversations reach the demo inbox,
    // and the customer's phone page is served.
    let phone = demo_phone_url(&mut demo);
    let (status, page) = get_text(&phone).await;
    assert_eq!(status, 200, "{phone}: {page}");
    assert!(page.contains("@chatter_demo_bot"), "{page}");
    let manager = demo_sign_in(&url).await;
    let olga = wait_for_olga(&manager, &url, 1).await;
    the_demos_auto_replies_fire(&manager, &url, &key, &olga).await;
    the_demos_templates_render(&url, &key, &olga).await;
    answers_reach_the_demo_website(&mut demo, &url, &key).await;
    every_messengers_customer_writes_from_the_phones_page(&mut demo, &url, &key).await;
    the_demos_personal_account_is_connected(&mut demo, &url, &key).await;
    the_demos_mail_can_be_read(&mut demo, &url).await;
    demo.stop();

    // The same data directory again: still one company and one demo bot, and the customers'
    // new messages are stored (not taken for replays of the first run's ones).
    let (mut demo, url, second_key) = start_demo(&data, tmp.path());
    let _ = demo_phone_url(&mut demo);
    // One working demo key per run: the previous run's is revoked.
    assert_eq!(me(&url, &second_key).await.0, 200);
    assert_eq!(
        me(&url, &key).await.0,
        401,
        "the first run's key is revoked"
    );
    let manager = demo_sign_in(&url).await;
    let again = wait_for_olga(&manager, &url, 2).await;
    assert_eq!(again, olga, "Ольга's conversation carries on");
    let sources = manager
        .get(format!("{url}/app/sources"))
        .send()
        .await
        .expect("GET /app/sources")
        .text()
        .await
        .expect("body");
    assert_eq!(
        sources.matches("@chatter_demo_bot").count(),
        1,
        "one demo bot after a second start: {sources}"
    );
    demo.stop();

    assert_eq!(companies(&data, tmp.path()), vec![(slug.clone(), name)]);

    let out = run_ok(
        chatter(tmp.path())
            .args([
                "admin",
                "api-key",
                "create",
                "--company",
                &slug,
                "--name",
                "ops",
            ])
            .arg("--data-dir")
            .arg(&data),
    );
    let new_key = out
        .lines()
        .find_map(|l| l.strip_prefix("API key: "))
        .unwrap_or_else(|| panic!("no key printed:\n{out}"))
        .trim()
        .to_string();
    assert!(new_key.starts_with("chk_"), "{new_key}");
    assert_ne!(new_key, key);

    let wrong = run(chatter(tmp.path())
        .args(["admin", "api-key", "create", "--company", "no-such-company"])
        .arg("--data-dir")
        .arg(&data));
    assert!(!wrong.status.success(), "an unknown company is an error");
    let err = text(&wrong.stderr);
    assert!(
        err.contains("no-such-company"),
        "the message names the slug: {err}"
    );

    // The key made on the command line works against the server.
    let mut server = Running::spawn(
        chatter(tmp.path())
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(&data),
    );
    let url = server.url();
    let (status, body) = me(&url, &new_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["company"]["slug"], slug.as_str());
    assert_eq!(body["key_name"], "ops");
    server.stop();
}

#[tokio::test]
async fn backup_and_restore_from_the_command_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let (demo, _, _) = start_demo(&data, tmp.path());
    demo.stop();
    let original = companies(&data, tmp.path());
    assert_eq!(original.len(), 1, "{original:?}");

    let out = run_ok(
        chatter(tmp.path())
            .arg("backup")
            .arg("--data-dir")
            .arg(&data),
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("backup written: "))
        .unwrap_or_else(|| panic!("no backup line:\n{out}"));
    let path = PathBuf::from(
        line["backup written: ".len()..]
            .rsplit_once(" (")
            .map_or(&line["backup written: ".len()..], |(p, _)| p),
    );
    assert!(path.is_file(), "{} exists", path.display());
    assert!(path.starts_with(data.join("backups")), "{}", path.display());

    // Onto a new machine: an empty data directory.
    let restored = tmp.path().join("restored");
    let out = run_ok(
        chatter(tmp.path())
            .arg("restore")
            .arg(&path)
            .arg("--data-dir")
            .arg(&restored),
    );
    assert!(out.contains("restored"), "{out}");
    // Without the master key the secrets in it are unreadable: the start refuses and says so.
    let refused = run(chatter(tmp.path())
        .args(["admin", "companies", "--data-dir"])
        .arg(&restored));
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("master.key"),
        "{}",
        text(&refused.stderr)
    );
    std::fs::copy(data.join("master.key"), restored.join("master.key")).expect("copy the key");
    assert_eq!(companies(&restored, tmp.path()), original);

    // Over an existing database: the old one is kept aside.
    let out = run_ok(
        chatter(tmp.path())
            .arg("restore")
            .arg(&path)
            .arg("--data-dir")
            .arg(&data),
    );
    assert!(out.contains("before-restore"), "{out}");
    assert_eq!(companies(&data, tmp.path()), original);

    // Not a backup: refused, and the data directory is left alone.
    let elsewhere = tmp.path().join("elsewhere");
    let bad = run(chatter(tmp.path())
        .args(["restore", "/etc/hostname", "--data-dir"])
        .arg(&elsewhere));
    assert!(!bad.status.success(), "a non-backup file is refused");
    let err = text(&bad.stderr);
    assert!(
        err.contains("/etc/hostname")
            && (err.contains("not a SQLite database")
                || err.contains("not a Chatter SQLite backup")),
        "{err}"
    );
    assert!(!elsewhere.join("chatter.db").exists());
    let missing = run(chatter(tmp.path())
        .arg("restore")
        .arg(tmp.path().join("nope.db"))
        .arg("--data-dir")
        .arg(&elsewhere));
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("nope.db"),
        "{}",
        text(&missing.stderr)
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut server = Running::spawn(
        chatter(tmp.path())
            .env("CHATTER_LOG_FORMAT", "json")
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(tmp.path().join("data")),
    );
    let url = server.url();
    assert_eq!(get_text(&format!("{url}/healthz")).await.0, 200);
    let output = server.stop();
    let records: Vec<serde_json::Value> = output
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        !records.is_empty(),
        "no JSON log lines:\n{}",
        output.join("\n")
    );
    for r in &records {
        assert!(r["level"].is_string(), "a record without a level: {r}");
    }
    let listening = records
        .iter()
        .find(|r| r["fields"]["message"] == "Chatter is listening")
        .unwrap_or_else(|| panic!("no listening record:\n{}", output.join("\n")));
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["fields"]["database"], "SQLite");
    assert_eq!(
        format!(
            "http://{}",
            listening["fields"]["address"].as_str().expect("address")
        ),
        url
    );
    // Besides the one line written for people, everything that is logged is JSON.
    let plain: Vec<_> = output
        .iter()
        .filter(|l| !l.starts_with('{') && !l.starts_with("Chatter is listening"))
        .collect();
    assert!(plain.is_empty(), "non-JSON output: {plain:?}");
}

#[tokio::test]
async fn migrate_prepares_a_fresh_database() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    if db.is_postgres() {
        // A brand-new, empty PostgreSQL database (TestDb's, with its schema removed).
        use sea_orm::ConnectionTrait;
        db.db
            .execute_unprepared("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
            .await
            .expect("empty the database");
        for _ in 0..2 {
            let out = run_ok(
                chatter(tmp.path())
                    .env("DATABASE_URL", &db.url)
                    .arg("migrate")
                    .arg("--data-dir")
                    .arg(tmp.path().join("data")),
            );
            assert!(out.contains("migrations applied"), "{out}");
        }
        let n = db
            .db
            .query_one(sea_orm::Statement::from_string(
                db.db.get_database_backend(),
                "SELECT count(*) AS n FROM companies",
            ))
            .await
            .expect("the schema exists")
            .expect("a row");
        assert_eq!(n.try_get::<i64>("", "n").expect("count"), 0);
        assert!(
            !tmp.path().join("data").join("chatter.db").exists(),
            "no SQLite file when PostgreSQL is configured"
        );
    } else {
        let data = tmp.path().join("data");
        for _ in 0..2 {
            let out = run_ok(
                chatter(tmp.path())
                    .arg("migrate")
                    .arg("--data-dir")
                    .arg(&data),
            );
            assert!(out.contains("migrations applied"), "{out}");
        }
        assert!(data.join("chatter.db").is_file());
        assert!(companies(&data, tmp.path()).is_empty());
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A signed-in browser session after signing up through the running server.
async fn sign_up_over_http(url: &str, email: &str) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let page = client
        .get(format!("{url}/sign-up"))
        .send()
        .await
        .expect("GET /sign-up")
        .text()
        .await
        .expect("body");
    let csrf = chatter_testkit::csrf_of(&page);
    let r = client
        .post(format!("{url}/sign-up"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("company_name", "Хостинг"),
            ("name", "Олег"),
            ("email", email),
            ("password", "correct horse battery"),
        ])
        .send()
        .await
        .expect("POST /sign-up");
    assert_eq!(r.status(), 303, "signed up");
    client
}

#[tokio::test]
async fn admin_operator_names_who_sees_the_operator_area() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // SQLite or, when TEST_DATABASE_URL is set, PostgreSQL.
    let db = TestDb::new().await;
    let cli = |args: &[&str]| {
        let mut c = chatter(tmp.path());
        c.env("DATABASE_URL", &db.url)
            .args(args)
            .arg("--data-dir")
            .arg(&data);
        c
    };
    let mut server = Running::spawn(&mut cli(&["serve", "--bind", "127.0.0.1:0"]));
    let url = server.url();
    let browser = sign_up_over_http(&url, "ops@host.test").await;
    let operator_page = || async {
        browser
            .get(format!("{url}/app/operator"))
            .send()
            .await
            .expect("GET /app/operator")
            .status()
            .as_u16()
    };
    assert_eq!(operator_page().await, 404, "an owner is not an operator");

    let unknown = run(&mut cli(&["admin", "operator", "add", "nobody@host.test"]));
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no account with the e-mail"),
        "{}",
        text(&unknown.stderr)
    );
    let out = run_ok(&mut cli(&["admin", "operator", "add", "ops@host.test"]));
    assert!(out.contains("ops@host.test is now an operator"), "{out}");
    assert_eq!(operator_page().await, 200);
    let out = run_ok(&mut cli(&["admin", "operator", "list"]));
    assert!(
        out.lines().any(|l| l.starts_with("ops@host.test\t")),
        "{out}"
    );
    let out = run_ok(&mut cli(&["admin", "operator", "remove", "ops@host.test"]));
    assert!(out.contains("no longer an operator"), "{out}");
    assert_eq!(operator_page().await, 404);
    let out = run_ok(&mut cli(&["admin", "operator", "list"]));
    assert!(
        !out.lines().any(|l| l.starts_with("ops@host.test")),
        "{out}"
    );
    server.stop();
}

/// The database and its backups hold every company's data: owner-only, like the master key,
/// even when an older version (or a loose umask) left them readable by everyone.
#[tokio::test]
async fn the_database_files_and_backups_are_readable_by_their_owner_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    run_ok(
        chatter(tmp.path())
            .arg("migrate")
            .arg("--data-dir")
            .arg(&data),
    );
    let db = data.join("chatter.db");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let mut server = Running::spawn(
        chatter(tmp.path())
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(&data),
    );
    let url = server.url();
    assert_eq!(get_text(&format!("{url}/readyz")).await.0, 200);
    for name in ["chatter.db", "chatter.db-wal", "chatter.db-shm"] {
        let f = data.join(name);
        if name == "chatter.db" || f.exists() {
            assert_eq!(mode(&f), 0o600, "{name} while serving");
        }
    }
    server.stop();
    let out = run_ok(
        chatter(tmp.path())
            .arg("backup")
            .arg("--data-dir")
            .arg(&data),
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("backup written: "))
        .unwrap_or_else(|| panic!("no backup line:\n{out}"));
    let path = PathBuf::from(
        line["backup written: ".len()..]
            .rsplit_once(" (")
            .map_or(&line["backup written: ".len()..], |(p, _)| p),
    );
    assert_eq!(mode(&path), 0o600, "the backup {}", path.display());
    assert_eq!(mode(&db), 0o600);
}

/// Four `chatter migrate` processes started at the same instant on one fresh PostgreSQL
/// database all succeed and apply every migration exactly once: the advisory lock makes the
/// late ones wait and then find nothing left to do (without it they race on `CREATE TABLE`).
#[tokio::test]
async fn migrations_started_together_on_postgres_all_succeed() {
    let db = TestDb::new().await;
    if !db.is_postgres() {
        eprintln!("skipped: concurrent migrations need PostgreSQL (set TEST_DATABASE_URL)");
        return;
    }
    use sea_orm::ConnectionTrait;
    db.db
        .execute_unprepared("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .await
        .expect("empty the database");
    let tmp = tempfile::tempdir().expect("tempdir");
    let children: Vec<Child> = (0..4)
        .map(|i| {
            chatter(tmp.path())
                .env("DATABASE_URL", &db.url)
                .arg("migrate")
                .arg("--data-dir")
                .arg(tmp.path().join(format!("data{i}")))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start chatter migrate")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait for chatter migrate");
        assert!(
            out.status.success(),
            "a migrate started together with three others failed:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains("migrations applied"));
    }
    let row = db
        .db
        .query_one(sea_orm::Statement::from_string(
            db.db.get_database_backend(),
            "SELECT count(*) AS n, count(DISTINCT version) AS d FROM seaql_migrations",
        ))
        .await
        .expect("the migrations table exists")
        .expect("a row");
    let n: i64 = row.try_get("", "n").expect("count");
    let d: i64 = row.try_get("", "d").expect("distinct");
    assert_eq!(n, d, "a migration was recorded twice");
    let reference = TestDb::new().await;
    let all = reference
        .db
        .query_one(sea_orm::Statement::from_string(
            reference.db.get_database_backend(),
            "SELECT count(*) AS n FROM seaql_migrations",
        ))
        .await
        .expect("count a migrated database's migrations")
        .expect("a row");
    let all: i64 = all.try_get("", "n").expect("count");
    assert_eq!(n, all, "every migration applied");
}

/// A node started with another master key than the database was first used with refuses to
/// start, saying why, instead of writing secrets no other node can read.
#[test]
fn a_node_with_a_different_master_key_refuses_to_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    run_ok(
        chatter(tmp.path())
            .args(["admin", "companies", "--data-dir"])
            .arg(&data),
    );
    let out = run(chatter(tmp.path())
        .env("CHATTER_MASTER_KEY", "ab".repeat(32))
        .args(["admin", "companies", "--data-dir"])
        .arg(&data));
    assert!(!out.status.success(), "started with a foreign key");
    let err = text(&out.stderr);
    assert!(
        err.contains("master key differs"),
        "the refusal says why: {err}"
    );
    // The right key still works.
    run_ok(
        chatter(tmp.path())
            .args(["admin", "companies", "--data-dir"])
            .arg(&data),
    );
}

/// SIGTERM with a live stream open: the stream gets a final `reconnect` event and ends, and
/// the node exits cleanly without waiting on it; with a request still in flight, a second
/// SIGTERM exits at once and says so.
#[tokio::test]
async fn sigterm_with_an_open_live_stream_exits_within_the_deadline_and_twice_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for twice in [false, true] {
        let data = tmp.path().join(format!("data-{twice}"));
        let mut demo = Running::spawn(
            chatter(tmp.path())
                .env("CHATTER_WORKER__SHUTDOWN_TIMEOUT_SECS", "5")
                .args(["demo", "--bind", "127.0.0.1:0", "--data-dir"])
                .arg(&data),
        );
        let url = demo.url();
        demo.line_with("API key: ");
        let client = demo_sign_in(&url).await;
        let mut stream = client
            .get(format!("{url}/app/events"))
            .send()
            .await
            .expect("open the live stream");
        assert_eq!(stream.status(), 200);
        assert_eq!(
            stream
                .headers()
                .get("x-accel-buffering")
                .and_then(|v| v.to_str().ok()),
            Some("no"),
            "proxies are told not to buffer the stream"
        );
        // A request still in flight: a form body that never finishes arriving.
        let mut slow = None;
        if twice {
            use tokio::io::AsyncWriteExt;
            let addr = url.trim_start_matches("http://").to_string();
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            s.write_all(
                b"POST /sign-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nemail=",
            )
            .await
            .expect("send a partial request");
            slow = Some(s);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let pid = demo.child.id().to_string();
        let kill = |pid: &str| {
            let ok = Command::new("kill")
                .args(["-TERM", pid])
                .status()
                .expect("run kill");
            assert!(ok.success());
        };
        let asked = Instant::now();
        kill(&pid);
        if twice {
            tokio::time::sleep(Duration::from_millis(300)).await;
            kill(&pid);
        } else {
            let mut got = String::new();
            let read = tokio::time::timeout(Duration::from_secs(10), async {
                while let Ok(Some(chunk)) = stream.chunk().await {
                    got.push_str(&String::from_utf8_lossy(&chunk));
                }
            })
            .await;
            assert!(read.is_ok(), "the stream did not end after SIGTERM: {got}");
            assert!(
                got.contains("event: reconnect"),
                "the page is told to reconnect: {got}"
            );
        }
        let exit = loop {
            if let Some(s) = demo.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                asked.elapsed() < Duration::from_secs(15),
                "still running {:?} after SIGTERM",
                asked.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let took = asked.elapsed();
        while let Ok(l) = demo.lines.recv_timeout(Duration::from_secs(2)) {
            demo.seen.push(l);
        }
        let log = demo.seen.join("\n");
        if twice {
            assert!(took < Duration::from_secs(4), "second signal took {took:?}");
            assert!(!exit.success());
            assert!(log.contains("second stop signal"), "{log}");
        } else {
            assert!(exit.success(), "{exit}: {log}");
            assert!(log.contains("stopped"), "{log}");
        }
        drop(slow);
    }
}

/// A `trusted_proxies` entry that is not an address block stops the start with a message that
/// names the key, the value and the expected form.
#[test]
fn a_bad_trusted_proxies_entry_is_refused_at_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("chatter.toml"),
        "trust_proxy = true\ntrusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/33\"]\n",
    )
    .expect("write chatter.toml");
    let out = run(chatter(tmp.path())
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data")));
    assert!(!out.status.success(), "refused");
    let err = text(&out.stderr) + &text(&out.stdout);
    assert!(err.contains("trusted_proxies"), "{err}");
    assert!(err.contains("10.0.0.0/33"), "{err}");
    assert!(
        err.contains("10.0.0.0/8"),
        "the expected form is shown: {err}"
    );
}
