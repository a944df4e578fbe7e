//! Certificates by ACME against Pebble (Let's Encrypt's test CA, Debian package `pebble`),
//! started by the tests with `pebble-challtestsrv` as its DNS: issuance (timed from `chatter
//! serve` to a served certificate), renewal of a short-lived certificate, a renewal whose
//! challenge fails (the message in the log and on the health page, the certificate already
//! served kept), a CA that refuses the order, and two nodes on one PostgreSQL database sharing
//! one order.

use crate::cli::{chatter, run_ok, Running};
use crate::prod::{self, Pki, HOST};
use crate::tools;
use chatter_testkit::{Session, TestDb};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Pebble and its DNS, in a directory of their own.
struct Pebble {
    children: Vec<Child>,
    dir: tempfile::TempDir,
    port: u16,
    management: u16,
    dns_management: u16,
    ca_pem: String,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on `http_port`, issuing certificates valid for
    /// `validity_secs`, refusing `blocked.test`. `None` (skipped) when Pebble is missing.
    fn start(http_port: u16, validity_secs: u64) -> Option<Pebble> {
        let pebble = tools::find("pebble", "pebble")?;
        let challtestsrv = tools::find("pebble-challtestsrv", "pebble")?;
        let pki = Pki::new();
        let leaf = pki.leaf(&["localhost", "127.0.0.1"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, &leaf.cert_pem).expect("cert");
        std::fs::write(&key, &leaf.key_pem).expect("key");
        let (port, management, dns, dns_management) = (
            tools::free_port(),
            tools::free_port(),
            tools::free_port(),
            tools::free_port(),
        );
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert, "privateKey": key,
            "httpPort": http_port, "tlsPort": tools::free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
            "domainBlocklist": ["blocked.test"],
        }});
        let cfg = dir.path().join("pebble.json");
        std::fs::write(&cfg, config.to_string()).expect("pebble.json");
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log file");
        let dns_child = Command::new(challtestsrv)
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args([
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv6",
                "",
            ])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .stdin(Stdio::null())
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv");
        let child = Command::new(pebble)
            .arg("-config")
            .arg(&cfg)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No artificial delays, no nonce rejections, and a new challenge for every order.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble");
        let p = Pebble {
            children: vec![dns_child, child],
            dir,
            port,
            management,
            dns_management,
            ca_pem: pki.ca_pem(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [port, management, dns_management] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "Pebble did not start:\n{}",
                    p.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(p)
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The file with the test CA Pebble's own HTTPS is signed by (`tls.acme.ca_pem`).
    fn ca_file(&self) -> PathBuf {
        let p = self.dir.path().join("ca.pem");
        std::fs::write(&p, &self.ca_pem).expect("ca.pem");
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// The root Pebble issues under (regenerated at every start).
    async fn root(&self) -> String {
        reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA"),
            )
            .build()
            .expect("client")
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .expect("GET roots")
            .text()
            .await
            .expect("root PEM")
    }

    /// Makes `host` resolve to `ip` for Pebble's validation.
    async fn resolve(&self, host: &str, ip: &str) {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/add-a", self.dns_management))
            .body(serde_json::json!({"host": host, "addresses": [ip]}).to_string())
            .send()
            .await
            .expect("POST add-a");
        assert!(r.status().is_success(), "{}", r.status());
    }
}

/// `chatter.toml` for ACME from `pebble` for `domain`.
fn config(dir: &Path, pebble: &Pebble, domain: &str, port: u16, http_port: u16) -> PathBuf {
    let path = dir.join(format!("chatter-{port}.toml"));
    std::fs::write(
        &path,
        format!(
            "bind = \"127.0.0.1:{port}\"\npublic_url = \"https://{domain}:{port}\"\n\
             [tls]\nhttp_bind = \"127.0.0.1:{http_port}\"\n\
             [tls.acme]\ndomains = [\"{domain}\"]\nemail = \"admin@{domain}\"\n\
             directory = \"{}\"\nca_pem = \"{}\"\n",
            pebble.directory(),
            pebble.ca_file().display()
        ),
    )
    .expect("chatter.toml");
    path
}

fn node(db: &TestDb, config: &Path) -> Running {
    node_in(db, config, db.data_dir())
}

/// A node with its own data directory; every node shares the test's master key.
fn node_in(db: &TestDb, config: &Path, data_dir: &Path) -> Running {
    let mut cmd = chatter(data_dir);
    if db.is_postgres() {
        cmd.env("DATABASE_URL", &db.url);
    }
    Running::spawn(
        cmd.env("CHATTER_MASTER_KEY", "ab".repeat(32))
            .args(["serve", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir),
    )
}

/// The certificate `port` presents for `chatter.test`, if a client trusting `root` accepts it.
async fn served(root: &str, port: u16) -> Option<Vec<u8>> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let r = prod::https_client(root, addr)
        .get(format!("https://{HOST}:{port}/healthz"))
        .send()
        .await
        .ok()?;
    Some(prod::served_der(&r))
}

/// Waits for a served certificate other than `not`.
async fn served_other_than(root: &str, port: u16, not: Option<&[u8]>, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(der) = served(root, port).await {
            if Some(der.as_slice()) != not {
                return der;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no new certificate within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_issues_renews_and_keeps_serving_when_a_renewal_fails() {
    let (port, http_port) = (tools::free_port(), tools::free_port());
    // Thirty seconds: renewal falls due after two thirds of it.
    let Some(pebble) = Pebble::start(http_port, 30) else {
        return;
    };
    let db = TestDb::new().await;
    let cfg = config(db.data_dir(), &pebble, HOST, port, http_port);
    let started = Instant::now();
    let mut server = node(&db, &cfg);
    let root = pebble.root().await;
    let first = served_other_than(&root, port, None, Duration::from_secs(60)).await;
    let to_first = started.elapsed();
    println!(
        "ACME: from `chatter serve` to a served certificate from Pebble in {:.2} s",
        to_first.as_secs_f64()
    );
    assert!(server
        .line_with("TLS certificate issued by ACME")
        .contains(HOST));

    // The operator sees the certificate on the health page.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let s = Session {
        http: prod::https_client(&root, addr),
        base: format!("https://{HOST}:{port}"),
    };
    let r = s
        .post_from(
            "/sign-up",
            "/sign-up",
            &[
                ("company_name", "Хостинг"),
                ("name", "Олег"),
                ("email", "ops@chatter.test"),
                ("password", prod::PW),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let mut admin = chatter(db.data_dir());
    admin.env("CHATTER_MASTER_KEY", "ab".repeat(32));
    if db.is_postgres() {
        admin.env("DATABASE_URL", &db.url);
    }
    run_ok(
        admin
            .args(["admin", "operator", "add", "ops@chatter.test", "--data-dir"])
            .arg(db.data_dir()),
    );
    let page = s.html("/app/operator").await;
    assert!(page.contains("id=\"tls-names\">chatter.test<"), "{page}");
    assert!(!page.contains("id=\"tls-problem\""), "{page}");

    // Renewed before it expires, with no one asking.
    let second = served_other_than(&root, port, Some(&first), Duration::from_secs(60)).await;
    assert_ne!(first, second);

    // The CA can no longer reach this server: the renewal fails, is reported, and the
    // certificate served stays until it is replaced.
    pebble.resolve(HOST, "127.0.0.2").await;
    let failure = server.line_with("ACME order for chatter.test failed");
    assert!(
        failure.contains("the CA could not validate chatter.test by HTTP-01")
            && failure.contains("the certificate served now stays until")
            && failure.contains("next attempt at"),
        "{failure}"
    );
    assert_eq!(
        served(&root, port).await.as_deref(),
        Some(second.as_slice())
    );
    let page = s.html("/app/operator").await;
    assert!(
        page.contains("id=\"tls-problem\"") && page.contains("could not validate chatter.test"),
        "the health page shows the failure:\n{page}"
    );
    server.stop();
}

#[tokio::test]
async fn a_ca_that_refuses_the_order_is_reported_with_its_reason() {
    let (port, http_port) = (tools::free_port(), tools::free_port());
    let Some(pebble) = Pebble::start(http_port, 3600) else {
        return;
    };
    let db = TestDb::new().await;
    let cfg = config(db.data_dir(), &pebble, "blocked.test", port, http_port);
    let mut server = node(&db, &cfg);
    let failure = server.line_with("ACME order for blocked.test failed");
    assert!(
        failure.contains(&format!(
            "the ACME server at {} refused the order",
            pebble.directory()
        )) && failure.contains("no certificate is served until an order succeeds"),
        "{failure}"
    );
    assert!(failure.contains("blocked.test"), "{failure}");
    // Still alive and ready for what it can serve (the redirecting listener).
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{http_port}/"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 301);
    server.stop();
}

/// Two nodes of one PostgreSQL database: one orders, both serve the same certificate. The CA
/// validates on the second node's plain port, so that node is started (and answering) first,
/// as a load balancer sends traffic only to a node that is up: a challenge sent to a node still
/// starting fails the order, which then waits out its pause (five minutes), as it would in
/// production. Which node orders is left to the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_order() {
    let db = TestDb::new().await;
    if !db.is_postgres() {
        println!("skipped: two nodes share a PostgreSQL database (set TEST_DATABASE_URL)");
        return;
    }
    let ports = [
        (tools::free_port(), tools::free_port()),
        (tools::free_port(), tools::free_port()),
    ];
    // The CA validates on the second node's plain port, whichever node ordered.
    let Some(pebble) = Pebble::start(ports[1].1, 3600) else {
        return;
    };
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let start = |i: usize| {
        let ((port, http), dir) = (ports[i], &dirs[i]);
        let mut n = node_in(
            &db,
            &config(dir.path(), &pebble, HOST, port, http),
            dir.path(),
        );
        n.line_with("Chatter is listening");
        n
    };
    let second = start(1);
    let mut nodes = vec![start(0), second];
    let root = pebble.root().await;
    let a = served_other_than(&root, ports[0].0, None, Duration::from_secs(60)).await;
    let b = served_other_than(&root, ports[1].0, None, Duration::from_secs(60)).await;
    assert_eq!(a, b, "both nodes serve the same certificate");
    let mut output = Vec::new();
    for n in nodes.drain(..) {
        output.extend(n.stop());
    }
    let count = |needle: &str| output.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(
        count("ordering a TLS certificate by ACME"),
        1,
        "{output:#?}"
    );
    assert_eq!(count("TLS certificate issued by ACME"), 1, "{output:#?}");
    assert_eq!(count("ACME account created"), 1, "{output:#?}");
}
