//! HTTPS served by `chatter serve` itself from `tls.cert` / `tls.key`: HSTS over TLS only,
//! Secure cookies, the plain listener that only redirects (and answers ACME challenges); a
//! renewed certificate reaches new connections while an open live stream keeps receiving; a
//! bad pair is refused at start with its reason, and on reload reported while the old one is
//! kept.

use crate::cli::{chatter, run, text, Running};
use crate::prod::{self, https_client, served_der, stream_until, wait_ok, Pki, HOST};
use crate::tools;
use chatter_fakes::FakeTelegram;
use chatter_testkit::{Session, TestDb};
use std::net::SocketAddr;
use std::time::Duration;

// Two threads: `server.stop()` blocks this one while the client's connection task must keep
// answering the server's HTTP/2 GOAWAY/PING, as a browser does; on one thread the node would
// wait for that answer until its shutdown deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_directly_with_a_certificate_reloaded_without_dropping_live_streams() {
    let db = TestDb::new().await;
    let telegram = FakeTelegram::start().await.expect("Telegram fake");
    let pki = Pki::new();
    let dir = db.data_dir();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let first = pki.leaf(&[HOST]);
    prod::replace_file(&cert, &first.cert_pem);
    prod::replace_file(&key, &first.key_pem);
    let (port, plain_port) = (tools::free_port(), tools::free_port());
    let config = dir.join("chatter.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:{port}\"\npublic_url = \"https://{HOST}:{port}\"\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\nhttp_bind = \"127.0.0.1:{plain_port}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .expect("chatter.toml");
    let mut cmd = chatter(dir);
    cmd.env("CHATTER_TELEGRAM__API_BASE", telegram.base_url());
    if db.is_postgres() {
        cmd.env("DATABASE_URL", &db.url);
    }
    let mut server = Running::spawn(cmd.args(["serve", "--config"]).arg(&config));
    assert_eq!(server.url(), format!("https://127.0.0.1:{port}"));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let base = format!("https://{HOST}:{port}");
    let client = https_client(&pki.ca_pem(), addr);
    wait_ok(&client, &format!("{base}/readyz"), Duration::from_secs(30)).await;

    // HTTPS with the configured certificate and HSTS.
    let r = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(served_der(&r), first.der, "the configured certificate");
    assert_eq!(
        r.headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap_or_default()),
        Some("max-age=31536000")
    );
    // Monitoring sees when it expires.
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    let expiry: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("chatter_tls_certificate_expiry_seconds "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no certificate expiry gauge:\n{metrics}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        expiry > now,
        "the gauge is the certificate's end, in Unix seconds: {expiry}"
    );
    // Plain HTTP on the TLS port gets nothing.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_err_and(|e| !e.is_status()),
        "no plain HTTP on the HTTPS port"
    );

    // The plain listener redirects (keeping a POST a POST) and answers only ACME challenges.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let at = format!("http://127.0.0.1:{plain_port}");
    let r = plain
        .get(format!("{at}/app/inbox?status=open"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()
            .get("location")
            .map(|v| v.to_str().unwrap_or_default()),
        Some(format!("{base}/app/inbox?status=open").as_str())
    );
    assert!(r.headers().get("strict-transport-security").is_none());
    let r = plain
        .post(format!("{at}/sign-in"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 308);
    let r = plain
        .get(format!("{at}/.well-known/acme-challenge/unknown-token"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 404);

    // Signed in over HTTPS, with Secure cookies, and a live stream open.
    let s = Session {
        http: client.clone(),
        base: base.clone(),
    };
    let r = https_client(&pki.ca_pem(), addr)
        .get(format!("{base}/sign-in"))
        .send()
        .await
        .expect("GET");
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        !cookies.is_empty() && cookies.iter().all(|c| c.contains("; Secure")),
        "{cookies:?}"
    );
    let token = prod::company_with_bot(&s, &telegram).await;
    let mut stream = s.get("/app/events").await;
    assert_eq!(stream.status(), 200);
    // Over HTTP/2, as every browser negotiates it by ALPN.
    assert_eq!(stream.version(), reqwest::Version::HTTP_2);
    assert_eq!(served_der(&stream), first.der);

    // A renewed pair, written as deployment tools do: new connections get it.
    let second = pki.leaf(&[HOST]);
    prod::replace_file(&cert, &second.cert_pem);
    prod::replace_file(&key, &second.key_pem);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let fresh = https_client(&pki.ca_pem(), addr);
        let r = fresh
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("GET");
        if served_der(&r) == second.der {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate was not served within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server
        .line_with("TLS certificate reloaded")
        .contains("serial"));
    // The stream opened before the reload still delivers.
    telegram.customer_writes(&token, prod::customer(7001, "Работаете в субботу?"));
    stream_until(&mut stream, "Работаете в субботу?", Duration::from_secs(15)).await;

    // A key that belongs to another certificate: reported, and the served one stays.
    let third = pki.leaf(&[HOST]);
    prod::replace_file(&cert, &third.cert_pem);
    let report = server.line_with("cannot reload the TLS certificate");
    assert!(report.contains("does not match"), "{report}");
    assert!(
        report.contains("still serving the previous certificate"),
        "{report}"
    );
    let fresh = https_client(&pki.ca_pem(), addr);
    let r = fresh
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        served_der(&r),
        second.der,
        "the last good certificate stays"
    );
    server.stop();
}

#[test]
fn a_certificate_that_cannot_be_served_stops_the_start_with_its_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let (a, b) = (pki.leaf(&[HOST]), pki.leaf(&[HOST]));
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert, &a.cert_pem).expect("write");
    std::fs::write(&key, &b.key_pem).expect("write");
    let out = run(chatter(tmp.path())
        .env("CHATTER_TLS__CERT", &cert)
        .env("CHATTER_TLS__KEY", &key)
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data")));
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "tls.key {} does not match tls.cert {}",
            key.display(),
            cert.display()
        )),
        "{err}"
    );
}

/// Behind a TLS-terminating proxy (an `https://` public URL), HSTS goes only on answers that
/// came through a trusted proxy which did not say the browser used plain HTTP; a request
/// straight to the plain port (a health check, a scanner) gets none.
#[tokio::test]
async fn hsts_only_where_the_browser_came_over_https() {
    let app = chatter_testkit::TestApp::new().await;
    let mut core = app.core.clone();
    let mut cfg = (*core.config).clone();
    cfg.public_url = "https://chatter.example".into();
    core.config = std::sync::Arc::new(cfg);
    let hsts = |r: &reqwest::Response| r.headers().get("strict-transport-security").is_some();
    let anon = reqwest::Client::new();
    for (trusted, proto, expect) in [
        ("127.0.0.0/8", None, true),
        ("127.0.0.0/8", Some("https"), true),
        ("127.0.0.0/8", Some("http"), false),
        // The request does not come from a trusted proxy: it reached the plain port directly.
        ("10.0.0.0/8", None, false),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let web = chatter_web::WebConfig {
            database_url: app.db.url.clone(),
            trusted_proxies: vec![trusted.parse().expect("cidr")],
            ..chatter_web::WebConfig::default()
        };
        let server = chatter_web::server::start(core.clone(), web, Some(listener), None).await;
        let mut req = anon.get(format!("{url}/sign-in"));
        if let Some(p) = proto {
            req = req.header("x-forwarded-proto", p);
        }
        let r = req.send().await.expect("GET");
        assert_eq!(
            hsts(&r),
            expect,
            "trusted {trusted}, X-Forwarded-Proto {proto:?}"
        );
        server.shutdown().await;
    }
}
