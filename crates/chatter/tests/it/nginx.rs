//! Chatter behind a real nginx with TLS, configured by `deploy/nginx.conf` exactly as the
//! guide ships it (only names, ports and certificate paths replaced): a browser signs up,
//! connects a bot and sees a customer's message arrive live within a second through the proxy;
//! the largest body Chatter accepts passes and one byte more is refused, while a file for the
//! reply box passes its own larger limit; the client's address
//! comes from `X-Forwarded-For` only when nginx sent the request, never from what a client
//! wrote itself; cookies are Secure. Also measures the live-message latency through nginx
//! against a stream straight to Chatter, in the same run.

use crate::api_source::{attr_after, message_body, sign};
use crate::cli::{chatter, Running};
use crate::prod::{self, https_client, stream_until, wait_ok, Leaf, Pki, HOST};
use crate::tools;
use chatter_fakes::FakeTelegram;
use chatter_testkit::{Browser, Session, TestDb};
use sea_orm::{ConnectionTrait, Statement};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Chatter's default `body_limit_bytes`, which the guide's `client_max_body_size 1m` matches
/// everywhere but the two upload routes.
const BODY_LIMIT: usize = 1024 * 1024;
/// Where the "client" of the address test connects from (loopback, but not nginx's address).
const CLIENT_IP: &str = "127.0.0.2";
/// How long a page may take to move on after a form is sent.
const NAV_WAIT: Duration = Duration::from_secs(20);

/// A running nginx with the guide's site configuration.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts nginx in `dir` in front of `upstream`, listening for TLS on `tls_port` and plain
    /// HTTP on `http_port`.
    fn start(
        nginx: &Path,
        dir: &Path,
        upstream: SocketAddr,
        (tls_port, http_port): (u16, u16),
        leaf: &Leaf,
    ) -> Nginx {
        let guide = std::fs::read_to_string(tools::repo().join("deploy/nginx.conf"))
            .expect("deploy/nginx.conf");
        let (cert, key) = (dir.join("fullchain.pem"), dir.join("privkey.pem"));
        std::fs::write(&cert, &leaf.cert_pem).expect("cert");
        std::fs::write(&key, &leaf.key_pem).expect("key");
        let mut site = guide.clone();
        for (from, to) in [
            (
                "/etc/letsencrypt/live/chatter.example.ru/fullchain.pem",
                cert.display().to_string(),
            ),
            (
                "/etc/letsencrypt/live/chatter.example.ru/privkey.pem",
                key.display().to_string(),
            ),
            ("chatter.example.ru", HOST.to_string()),
            ("server 127.0.0.1:8080;", format!("server {upstream};")),
            (
                "listen 443 ssl http2;",
                format!("listen 127.0.0.1:{tls_port} ssl http2;"),
            ),
            ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
        ] {
            assert!(
                site.contains(from),
                "deploy/nginx.conf no longer has `{from}`"
            );
            site = site.replace(from, &to);
        }
        // No IPv6 listeners in a test container.
        site = site
            .lines()
            .filter(|l| !l.contains("listen [::]"))
            .collect::<Vec<_>>()
            .join("\n");
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).expect("temp dir");
            // nginx's workers run as nobody when the tests are root.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        std::fs::write(dir.join("site.conf"), site).expect("site.conf");
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
                 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
                 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
            ),
        )
        .expect("nginx.conf");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut n = Nginx {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
            if let Ok(Some(status)) = n.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", n.log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen:\n{}",
                n.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_the_live_inbox_uploads_addresses_and_cookies_work() {
    let Some(nginx_bin) = tools::find("nginx", "nginx") else {
        return;
    };
    if !Browser::available_or_skip() {
        return;
    }
    let db = TestDb::new().await;
    let telegram = FakeTelegram::start().await.expect("Telegram fake");
    let pki = Pki::new();
    let leaf = pki.leaf(&[HOST]);
    let (chatter_port, tls_port, http_port) =
        (tools::free_port(), tools::free_port(), tools::free_port());
    let upstream: SocketAddr = format!("127.0.0.1:{chatter_port}").parse().expect("addr");
    let base = format!("https://{HOST}:{tls_port}");
    let direct = format!("http://{upstream}");

    // Chatter as the guide configures it behind a proxy.
    let config = db.data_dir().join("chatter.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"{upstream}\"\npublic_url = \"{base}\"\ntrust_proxy = true\n\
             trusted_proxies = [\"127.0.0.1/32\"]\n"
        ),
    )
    .expect("chatter.toml");
    let mut cmd = chatter(db.data_dir());
    cmd.env("CHATTER_TELEGRAM__API_BASE", telegram.base_url());
    if db.is_postgres() {
        cmd.env("DATABASE_URL", &db.url);
    }
    let mut server = Running::spawn(
        cmd.args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(db.data_dir()),
    );
    assert_eq!(server.url(), direct);
    let nginx_dir = tempfile::tempdir().expect("tempdir");
    let nginx = Nginx::start(
        &nginx_bin,
        nginx_dir.path(),
        upstream,
        (tls_port, http_port),
        &leaf,
    );
    let proxy: SocketAddr = format!("127.0.0.1:{tls_port}").parse().expect("addr");
    wait_ok(
        &https_client(&pki.ca_pem(), proxy),
        &format!("{base}/readyz"),
        Duration::from_secs(30),
    )
    .await;

    // Port 80 of the guide's config sends people to HTTPS.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{http_port}/app"))
        .header("host", HOST)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("https://{HOST}/app").as_str())
    );

    // Secure cookies and HSTS through the proxy.
    let r = https_client(&pki.ca_pem(), proxy)
        .get(format!("{base}/sign-in"))
        .send()
        .await
        .expect("GET");
    let cookies: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        !cookies.is_empty() && cookies.iter().all(|c| c.contains("; Secure")),
        "{cookies:?}"
    );
    assert!(r.headers().get("strict-transport-security").is_some());

    // A browser through nginx: sign up, connect the bot, open the inbox.
    let spki = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&leaf.spki))
    };
    let browser = Browser::start_with_args(
        1280,
        800,
        &[
            format!("--host-resolver-rules=MAP {HOST} 127.0.0.1"),
            format!("--ignore-certificate-errors-spki-list={spki}"),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("start a browser: {e:#}"));
    let go = |path: &str| format!("{base}{path}");
    browser.goto(&go("/sign-up")).await.expect("sign-up page");
    for (css, v) in [
        ("input[name=company_name]", "Ромашка"),
        ("input[name=name]", "Анна Петрова"),
        ("input[name=email]", "anna@romashka.test"),
        ("input[name=password]", prod::PW),
    ] {
        browser.fill(css, v).await.expect("fill");
    }
    browser.click("#sign-up-submit").await.expect("submit");
    browser
        .wait_path(|p| p == "/app", NAV_WAIT)
        .await
        .expect("signed up");
    let token = telegram.create_bot("romashka_bot", "Ромашка");
    browser
        .goto(&go("/app/sources/new?kind=1"))
        .await
        .expect("page");
    browser
        .fill("input[name=token]", &token)
        .await
        .expect("fill");
    browser.click("#source-submit").await.expect("submit");
    browser
        .wait_path(
            |p| p.starts_with("/app/sources/") && p != "/app/sources/new",
            NAV_WAIT,
        )
        .await
        .expect("source added");
    browser.goto(&go("/app/inbox")).await.expect("inbox");
    browser
        .client()
        .execute(
            "window.__want = []; window.__seen = {};
             new MutationObserver(() => {
               for (const t of window.__want) {
                 if (!window.__seen[t] && document.body.innerText.includes(t)) window.__seen[t] = Date.now();
               }
             }).observe(document.body, {childList: true, subtree: true, characterData: true});",
            vec![],
        )
        .await
        .expect("watch the page");
    // The event stream is open before the customer writes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut browser_ms = Vec::new();
    for (i, text) in [
        "Здравствуйте! Есть доставка в Тверь?",
        "А в субботу привезёте?",
    ]
    .into_iter()
    .enumerate()
    {
        let ms = browser_latency(&browser, &telegram, &token, 7100 + i as i64, text).await;
        assert!(
            ms < 1000,
            "the message reached the open inbox through nginx in {ms} ms, not within 1 s"
        );
        browser_ms.push(ms);
    }
    browser
        .screenshot("nginx-inbox-live")
        .await
        .expect("screenshot");

    // The client's address: through nginx, from X-Forwarded-For (what the client wrote itself
    // ignored); straight to Chatter, the peer (its X-Forwarded-For ignored).
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let via_proxy = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).expect("CA"))
        .resolve(HOST, proxy)
        .local_address(CLIENT_IP.parse::<IpAddr>().expect("ip"))
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let s = Session {
        http: via_proxy.clone(),
        base: base.clone(),
    };
    let csrf = chatter_testkit::csrf_of(&s.html("/sign-in").await);
    let r = via_proxy
        .post(format!("{base}/sign-in"))
        .header("x-forwarded-for", "203.0.113.7")
        .form(&[
            ("_csrf", csrf.as_str()),
            ("email", "anna@romashka.test"),
            ("password", prod::PW),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 303, "signed in through nginx");
    let straight = reqwest::Client::builder()
        .local_address(CLIENT_IP.parse::<IpAddr>().expect("ip"))
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = straight
        .get(format!("{direct}/sign-in"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    let r = straight
        .post(format!("{direct}/sign-in"))
        .header("x-forwarded-for", "198.51.100.9")
        .form(&[
            ("_csrf", chatter_testkit::csrf_of(&page).as_str()),
            ("email", "anna@romashka.test"),
            ("password", prod::PW),
        ])
        .send()
        .await
        .expect("POST");
    assert!(r.status().is_redirection(), "{}", r.status());
    let ips = strings(
        &db,
        "SELECT ip FROM audit_log WHERE action = 'user.sign_in'",
    )
    .await;
    assert_eq!(
        ips,
        vec![CLIENT_IP.to_string(); 2],
        "the client's own address both times"
    );
    let spoofed = strings(
        &db,
        "SELECT ip FROM audit_log WHERE ip LIKE '203.0.113.%' OR ip LIKE '198.51.100.%'",
    )
    .await;
    assert!(
        spoofed.is_empty(),
        "a written X-Forwarded-For was believed: {spoofed:?}"
    );

    // The largest body Chatter accepts (an API source message padded to body_limit_bytes)
    // passes nginx and is stored; one byte more is refused.
    let r = s
        .post_from(
            "/app/sources/new/api",
            "/app/api-sources",
            &[("name", "Сайт")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let created = r.text().await.expect("body");
    let secret = attr_after(&created, "id=\"api-secret\"", "value").to_string();
    let source = created
        .split("/app/api-sources/")
        .nth(1)
        .and_then(|x| x.split('/').next())
        .expect("source id")
        .to_string();
    for (size, status) in [(BODY_LIMIT, 200), (BODY_LIMIT + 1, 413)] {
        let mut body = message_body(&format!("big-{size}"), "chat-big", "Большой заказ");
        body.push_str(&" ".repeat(size - body.len()));
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("time")
            .as_secs() as i64;
        let r = via_proxy
            .post(format!("{base}/hooks/api/{source}"))
            .header("content-type", "application/json")
            .header("x-chatter-timestamp", ts.to_string())
            .header("x-chatter-signature", sign(&secret, ts, &body))
            .body(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), status, "a body of {size} bytes");
    }
    let stored = strings(
        &db,
        "SELECT external_id FROM messages WHERE external_id LIKE 'big-%'",
    )
    .await;
    assert_eq!(stored.len(), 1, "the largest body was stored: {stored:?}");

    // A file from the reply box's API is far larger than body_limit_bytes; the guide's
    // upload location lets it through to Chatter, which checks the messenger's own limit.
    let conv = {
        use chatter_store::entity::message;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        message::Entity::find()
            .filter(message::Column::ExternalId.like("big-%"))
            .one(&db.db)
            .await
            .expect("read")
            .expect("the large message")
            .conversation_id
    };
    let key = crate::api::create_key(&s, "nginx").await;
    let pdf = {
        let mut b = b"%PDF-1.4\n".to_vec();
        b.resize(3 * BODY_LIMIT, b'x');
        b
    };
    let form = reqwest::multipart::Form::new().text("text", "Прайс").part(
        "file",
        reqwest::multipart::Part::bytes(pdf)
            .file_name("price.pdf")
            .mime_str("application/pdf")
            .expect("mime"),
    );
    let r = via_proxy
        .post(format!("{base}/api/v1/conversations/{conv}/attachments"))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201, "a 3 MB file through nginx");

    // Latency of the live stream: through nginx and straight to Chatter, same messages.
    let cookie = reqwest::cookie::CookieStore::cookies(&*jar, &base.parse().expect("url"))
        .expect("session cookie");
    let mut through = s.get("/app/events").await;
    let mut straight_stream = reqwest::Client::new()
        .get(format!("{direct}/app/events"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(
        (through.status().as_u16(), straight_stream.status().as_u16()),
        (200, 200)
    );
    let (mut via, mut plain) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let text = format!("Замер задержки {i}");
        let sent = Instant::now();
        telegram.customer_writes(&token, prod::customer(7200, &text));
        let a = async {
            stream_until(&mut through, &text, Duration::from_secs(10)).await;
            sent.elapsed()
        };
        let b = async {
            stream_until(&mut straight_stream, &text, Duration::from_secs(10)).await;
            sent.elapsed()
        };
        let (a, b) = tokio::join!(a, b);
        via.push(a.as_secs_f64() * 1000.0);
        plain.push(b.as_secs_f64() * 1000.0);
    }
    println!(
        "live-message latency (customer message to event on the stream, 20 messages): \
         through nginx median {:.1} ms, p95 {:.1} ms; straight to Chatter median {:.1} ms, \
         p95 {:.1} ms; in the browser through nginx {browser_ms:?} ms",
        percentile(&mut via, 0.5),
        percentile(&mut via, 0.95),
        percentile(&mut plain, 0.5),
        percentile(&mut plain, 0.95),
    );
    browser.close().await.expect("close the browser");
    assert!(
        !nginx.log().contains("[emerg]"),
        "nginx complained:\n{}",
        nginx.log()
    );
    drop(nginx);
    server.stop();
}

/// Milliseconds from the customer's message to its text on the open page (the page's clock
/// and ours are the same machine's).
async fn browser_latency(
    browser: &Browser,
    telegram: &FakeTelegram,
    token: &str,
    customer: i64,
    text: &str,
) -> i64 {
    let c = browser.client();
    c.execute(
        "window.__want.push(arguments[0]);",
        vec![serde_json::json!(text)],
    )
    .await
    .expect("watch for the text");
    let sent = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_millis() as i64;
    telegram.customer_writes(token, prod::customer(customer, text));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = c
            .execute(
                "return window.__seen[arguments[0]] || null;",
                vec![serde_json::json!(text)],
            )
            .await
            .expect("read the page");
        if let Some(at) = seen.as_i64() {
            return at - sent;
        }
        assert!(
            Instant::now() < deadline,
            "{text:?} never appeared in the inbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn strings(db: &TestDb, sql: &str) -> Vec<String> {
    db.db
        .query_all(Statement::from_string(db.db.get_database_backend(), sql))
        .await
        .expect("query")
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("text"))
        .collect()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}
