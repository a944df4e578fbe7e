//! Running Chatter as a service: the systemd unit in `deploy/` passes `systemd-analyze verify`
//! and is hardened; `chatter serve` tells systemd when it is ready (migrated and serving) and
//! when it stops; `/readyz` answers 503 while the database is being migrated, while `/healthz`
//! already says the process is alive.

use crate::cli::{chatter, get_text, http, Running};
use crate::tools;
use chatter_testkit::TestDb;
use sea_orm::{ConnectionTrait, TransactionTrait};
use std::process::Command;
use std::time::Duration;

/// The unit as shipped, with `ExecStart` pointing at the binary under test (verify checks
/// that the program exists).
fn unit_for_test(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(tools::repo().join("deploy/chatter.service"))
        .expect("deploy/chatter.service");
    let path = dir.join("chatter.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/chatter", env!("CARGO_BIN_EXE_chatter")),
    )
    .expect("write the unit");
    path
}

#[test]
fn the_service_unit_passes_systemd_analyze_and_is_hardened() {
    let unit = std::fs::read_to_string(tools::repo().join("deploy/chatter.service"))
        .expect("deploy/chatter.service");
    for line in [
        "Type=notify",
        "User=chatter",
        "ExecStart=/usr/local/bin/chatter serve --config /etc/chatter/chatter.toml",
        "StateDirectory=chatter",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/chatter",
        "PrivateTmp=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "deploy/chatter.service lacks `{line}`"
        );
    }
    let Some(analyze) = tools::find("systemd-analyze", "systemd") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = unit_for_test(tmp.path());
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify ({}):\n{stderr}",
        out.status
    );
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze security");
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let exposure: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for chatter.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(
        exposure <= 2.0,
        "the unit is less hardened than it was ({exposure} > 2.0):\n{report}"
    );
}

#[tokio::test]
async fn serve_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock_path = tmp.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    let mut server = Running::spawn(
        chatter(tmp.path())
            .env("NOTIFY_SOCKET", &sock_path)
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(tmp.path().join("data")),
    );
    let ready = recv(&sock).await;
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready.contains("STATUS=serving http://127.0.0.1:"),
        "{ready:?}"
    );
    // Ready means ready: the readiness check agrees at that moment.
    let url = server.url();
    assert_eq!(
        get_text(&format!("{url}/readyz")).await,
        (200, "ready".into())
    );

    let stopping = tokio::task::spawn_blocking(move || server.stop());
    let bye = recv(&sock).await;
    assert!(bye.lines().any(|l| l == "STOPPING=1"), "{bye:?}");
    stopping.await.expect("stopped");
}

async fn recv(sock: &tokio::net::UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(60), sock.recv(&mut buf))
        .await
        .expect("a notification within 60 s")
        .expect("read the notify socket");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// While another holder keeps the database from being migrated (another node migrating on
/// PostgreSQL, a writer on SQLite), the process is alive but not ready: the balancer sends
/// nothing, and a person who gets there anyway is told to come back, not shown an error.
#[tokio::test]
async fn readyz_answers_503_until_the_database_is_migrated() {
    let db = TestDb::new().await;
    let holder = chatter_store::connect(&db.url).await.expect("connect");
    let txn = holder.begin().await.expect("begin");
    if db.is_postgres() {
        // The advisory lock `chatter migrate` takes ("chatter migrate" as eight bytes).
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(7163082360012498802)")
            .await
            .expect("take the migration lock");
    } else {
        txn.execute_unprepared(
            "INSERT INTO instance_facts (name, value, created_at) VALUES ('test_writer', 'x', 0)",
        )
        .await
        .expect("hold SQLite's write lock");
    }
    let port = tools::free_port();
    let mut cmd = chatter(db.data_dir());
    if db.is_postgres() {
        cmd.env("DATABASE_URL", &db.url);
    }
    let mut server = Running::spawn(
        cmd.args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(db.data_dir()),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !alive(&format!("{url}/healthz")).await {
        assert!(tokio::time::Instant::now() < deadline, "never alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        get_text(&format!("{url}/readyz")).await,
        (503, "starting: applying database migrations".into())
    );
    let page = http()
        .get(format!("{url}/sign-in"))
        .send()
        .await
        .expect("GET");
    assert_eq!(page.status(), 503);
    assert_eq!(
        page.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"5"[..])
    );
    txn.rollback().await.expect("let go");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if get_text(&format!("{url}/readyz")).await == (200, "ready".into()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready 30 s after the database was free"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.url(), url);
    server.stop();
}

/// Whether `url` answers 200 (false while nothing listens yet).
async fn alive(url: &str) -> bool {
    http()
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}
