//! System programs some tests start (systemd-analyze, nginx, pebble): found on `PATH` or in
//! the usual Debian places. Missing on a developer machine, the test says "skipped: …" and
//! passes; under CI (`CI=true`) it fails, since `.ci/run` installs them.

use std::path::PathBuf;

/// The program's path, or `None` after printing why the test is skipped (panics under CI).
pub(crate) fn find(program: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    if found.is_none() {
        let msg = format!(
            "skipped: `{program}` is not installed (Debian package `{package}`; `.ci/run` installs it)"
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}, and CI=true requires it");
        }
        println!("{msg}");
    }
    found
}

/// A free loopback TCP port.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The repository's root (for `deploy/` files the tests use as they are).
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}
