//! A manager's open inbox while the node serving it is stopped: two `chatter serve` nodes on
//! one PostgreSQL database behind a fail-over proxy (as a load balancer sends a new connection
//! to a node that still listens). On SIGTERM the node ends the page's live stream with a
//! `reconnect` event and exits; the page opens its stream again through the proxy, now on the
//! other node, and shows the next customer message without a reload and without losing the
//! reply the manager was typing. PostgreSQL only (one node per SQLite file); browser required
//! in CI.

use crate::api_source::{attr_after, message_body, sign};
use crate::nodes::{node, postgres_db};
use crate::server_process::Server;
use chatter_testkit::browser::Browser;
use chatter_testkit::Session;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PW: &str = "correct horse battery";

/// A TCP proxy on loopback: every new connection goes to the first backend that accepts it.
/// Open connections stay where they are until either side closes them.
struct FailoverProxy {
    port: u16,
}

impl FailoverProxy {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Posts a customer's signed message straight to one node; returns the conversation id.
async fn customer_writes(base: &str, source: &str, secret: &str, id: &str, text: &str) -> String {
    let body = message_body(id, "client-1", text);
    let ts = unix_secs();
    let r = reqwest::Client::new()
        .post(format!("{base}/hooks/api/{source}"))
        .header("content-type", "application/json")
        .header("x-chatter-timestamp", ts.to_string())
        .header("x-chatter-signature", sign(secret, ts, &body))
        .body(body)
        .send()
        .await
        .expect("POST the customer's message");
    assert_eq!(r.status(), 200, "the node stored the message");
    let v: Value = r.json().await.expect("JSON");
    v["conversation_id"]
        .as_str()
        .expect("conversation id")
        .to_string()
}

async fn page_has(browser: &Browser, text: &str) -> bool {
    browser
        .client()
        .execute(
            "return document.body.innerText.includes(arguments[0]);",
            vec![Value::String(text.to_string())],
        )
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

async fn eval(browser: &Browser, js: &str) -> Value {
    browser
        .client()
        .execute(js, vec![])
        .await
        .unwrap_or_else(|e| panic!("{js}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_the_open_inbox_to_the_other_node_without_a_reload_or_a_lost_draft() {
    let Some(db) = postgres_db("sigterm_sends_the_open_inbox_to_the_other_node").await else {
        return;
    };
    if !Browser::available_or_skip() {
        return;
    }
    // The proxy's address is the installation's public address (forms check their origin),
    // so its port is chosen before the nodes are told it.
    let proxy_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let public = format!("http://127.0.0.1:{proxy_port}");
    let env = [("CHATTER_PUBLIC_URL", public.clone())];
    let mut nodes: Vec<Server> = vec![node(&db, "a", &env), node(&db, "b", &env)];
    let backends = vec![port_of(&nodes[0].url()), port_of(&nodes[1].url())];
    let proxy = FailoverProxy::start_on(proxy_port, backends).await;
    assert_eq!(proxy.url(), public);
    for n in &mut nodes {
        n.start();
    }
    for n in &mut nodes {
        n.wait_for("/readyz", 120).await;
    }

    // The owner signs up in the browser, through the proxy (so on node a).
    let browser = Browser::start(1280, 800)
        .await
        .unwrap_or_else(|e| panic!("start a browser: {e:#}"));
    let go = |path: &str| format!("{public}{path}");
    browser.goto(&go("/sign-up")).await.expect("sign-up page");
    for (css, v) in [
        ("input[name=company_name]", "Ромашка"),
        ("input[name=name]", "Анна Петрова"),
        ("input[name=email]", "anna@romashka.test"),
        ("input[name=password]", PW),
    ] {
        browser.fill(css, v).await.expect("fill");
    }
    browser.click("#sign-up-submit").await.expect("submit");
    browser
        .wait_path(|p| p == "/app", Duration::from_secs(20))
        .await
        .expect("signed up");

    // The website's API source, made by a second session of the owner.
    let session = Session {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        base: public.clone(),
    };
    let r = session
        .post_from(
            "/sign-in",
            "/sign-in",
            &[("email", "anna@romashka.test"), ("password", PW)],
        )
        .await;
    assert_eq!(r.status(), 303, "signed in");
    let r = session
        .post_from(
            "/app/sources/new/api",
            "/app/api-sources",
            &[("name", "Сайт")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.expect("body");
    let secret = attr_after(&page, "id=\"api-secret\"", "value").to_string();
    let source = page
        .split("/app/api-sources/")
        .nth(1)
        .and_then(|x| x.split('/').next())
        .expect("source id in page")
        .to_string();

    let conv = customer_writes(
        &nodes[0].url(),
        &source,
        &secret,
        "m-1",
        "Здравствуйте! Есть доставка в Тверь?",
    )
    .await;
    browser
        .goto(&go(&format!("/app/inbox/{conv}")))
        .await
        .expect("the conversation");
    browser
        .wait_for("#reply-text", Duration::from_secs(10))
        .await
        .expect("the reply box");
    let draft = "Да, доставляем по вторникам и";
    browser.fill("#reply-text", draft).await.expect("type");
    eval(&browser, "window.__samePage = 'yes'; return true;").await;
    // Live on node a: a message there shows up without a reload.
    customer_writes(&nodes[0].url(), &source, &secret, "m-2", "А по субботам?").await;
    wait_text(&browser, "А по субботам?", Duration::from_secs(10)).await;

    // SIGTERM to node a with the page's stream open: it exits within its deadline.
    let pid = nodes[0].pid().expect("node a runs");
    let stopped = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let exit = loop {
        if let Some(s) = nodes[0].exited() {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(25),
            "node a still runs 25 s after SIGTERM with an inbox open:\n{}",
            nodes[0].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "node a exits 0: {exit}\n{}", nodes[0].log());
    let exit_secs = stopped.elapsed().as_secs_f64();

    // The next customer message reaches node b; the same page shows it.
    let written = Instant::now();
    customer_writes(
        &nodes[1].url(),
        &source,
        &secret,
        "m-3",
        "Тогда закажу на вторник",
    )
    .await;
    wait_text(&browser, "Тогда закажу на вторник", Duration::from_secs(15)).await;
    let shown_ms = written.elapsed().as_millis();
    assert_eq!(
        eval(&browser, "return window.__samePage || null;").await,
        Value::String("yes".into()),
        "the page was reloaded"
    );
    assert_eq!(
        eval(
            &browser,
            "return document.getElementById('reply-text').value;"
        )
        .await,
        Value::String(draft.into()),
        "the typed reply was lost"
    );
    // And the manager can send it, through node b.
    browser
        .wait_for("#reply-text", Duration::from_secs(5))
        .await
        .expect("the reply box")
        .send_keys(" тоже по субботам.")
        .await
        .expect("type more");
    browser.click("#reply-send").await.expect("send");
    let sent = format!("{draft} тоже по субботам.");
    wait_text(&browser, &sent, Duration::from_secs(10)).await;
    browser
        .screenshot("nodes-inbox-after-sigterm")
        .await
        .expect("screenshot");
    let _ = browser.close().await;
    println!(
        "nodes: SIGTERM with an inbox open → exit in {exit_secs:.2} s; the next message shown by the other node {shown_ms} ms after it was written"
    );
}

impl FailoverProxy {
    async fn start_on(port: u16, backends: Vec<u16>) -> FailoverProxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy");
        let backends = Arc::new(backends);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let backends = backends.clone();
                tokio::spawn(async move {
                    for p in backends.iter() {
                        if let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", *p)).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                            return;
                        }
                    }
                });
            }
        });
        FailoverProxy { port }
    }
}

async fn wait_text(browser: &Browser, text: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !page_has(browser, text).await {
        assert!(
            Instant::now() < deadline,
            "the open inbox did not show {text:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
