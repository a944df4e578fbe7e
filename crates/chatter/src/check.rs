//! What cannot work, found before serving: each problem one sentence that says what is wrong
//! and what to do. `chatter check-config` prints them all (and the database's answer);
//! `chatter serve` refuses to start on the same static problems.

use crate::config::Config;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Ports a Telegram webhook may use (Bot API `setWebhook`).
const TELEGRAM_PORTS: [u16; 4] = [443, 80, 88, 8443];

/// Problems found without the network or the database.
pub fn static_problems(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let public = cfg.public_url(&cfg.bind);
    if cfg.secure_cookies == Some(true) && public.starts_with("http://") {
        out.push(format!(
            "secure_cookies = true with the http:// public_url {public}: browsers never send \
             Secure cookies over plain HTTP, so nobody could sign in; set public_url to the \
             https:// address people use (behind a TLS proxy), or remove secure_cookies"
        ));
    }
    if !matches!(cfg.log_format.as_str(), "text" | "json") {
        out.push(format!(
            "log_format = {:?}: it must be \"text\" or \"json\"",
            cfg.log_format
        ));
    }
    if let Some(k) = &cfg.master_key {
        if let Err(e) = chatter_core::Secrets::from_hex(k.expose()) {
            out.push(format!("master_key: {e}"));
        }
    }
    for c in &cfg.trusted_proxies {
        if let Err(e) = c.parse::<chatter_web::ctx::Cidr>() {
            out.push(format!("trusted_proxies: {e}"));
        }
    }
    if let Some((key, base)) = telegram_webhook_base(cfg) {
        if let Some(why) =
            telegram_refuses(base, cfg.telegram.api_base.contains("api.telegram.org"))
        {
            out.push(format!(
                "{key} = {base}: Telegram would refuse it as a webhook ({why}); use the public \
                 https:// address on port 443, 80, 88 or 8443 (a TLS proxy in front of Chatter), \
                 {}",
                if key == "public_webhook_base" {
                    "or set telegram.webhook_base to such an address for Telegram alone"
                } else {
                    "or leave it unset to poll"
                }
            ));
        }
    }
    out.extend(tls_problems(cfg));
    if let Some(p) = chatter_core::blobs::config_problem(&cfg.blobs, cfg.blob_store()) {
        out.push(p);
    }
    for (key, addr) in listeners(cfg) {
        if let Some(p) = low_port_problem(key, &addr) {
            out.push(p);
        }
    }
    out
}

/// The webhook base Telegram's bots are given, with its configuration key:
/// `telegram.webhook_base`, else `public_webhook_base` (unset or empty: bots are polled).
fn telegram_webhook_base(cfg: &Config) -> Option<(&'static str, &str)> {
    fn set(b: &Option<String>) -> Option<&str> {
        b.as_deref().map(str::trim).filter(|b| !b.is_empty())
    }
    set(&cfg.telegram.webhook_base)
        .map(|b| ("telegram.webhook_base", b))
        .or_else(|| set(&cfg.public_webhook_base).map(|b| ("public_webhook_base", b)))
}

/// Why Telegram's `setWebhook` would refuse `base`, if it would: not https or a port other
/// than 443, 80, 88 and 8443 always (the fakes refuse those too); a host the internet cannot
/// reach only when the bots talk to the real Telegram (`real`).
fn telegram_refuses(base: &str, real: bool) -> Option<String> {
    let u = match url::Url::parse(base) {
        Ok(u) => u,
        Err(e) => return Some(format!("not a URL: {e}")),
    };
    if u.scheme() != "https" {
        return Some("it only calls https:// URLs".into());
    }
    let port = u.port_or_known_default().unwrap_or(443);
    if !TELEGRAM_PORTS.contains(&port) {
        return Some(format!("port {port} is not one of 443, 80, 88, 8443"));
    }
    if !real {
        return None;
    }
    let host = u.host_str().unwrap_or_default();
    let private = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => !chatter_core::egress::is_public(ip),
        Err(_) => host == "localhost" || host.ends_with(".localhost") || !host.contains('.'),
    };
    private.then(|| format!("{host} cannot be reached from the internet"))
}

fn tls_problems(cfg: &Config) -> Vec<String> {
    let t = &cfg.tls;
    let mut out = Vec::new();
    match (&t.cert, &t.key, &t.acme) {
        (Some(_), Some(_), Some(_)) => out.push(
            "tls.cert/tls.key and tls.acme are both set: choose certificate files or ACME".into(),
        ),
        (Some(c), Some(k), None) => {
            if let Err(e) = chatter_tls::cert::from_files(c, k) {
                out.push(e.to_string());
            }
        }
        (Some(_), None, _) => {
            out.push("tls.cert is set without tls.key (the certificate's private key)".into())
        }
        (None, Some(_), _) => {
            out.push("tls.key is set without tls.cert (the certificate chain)".into())
        }
        (None, None, Some(a)) => {
            if a.domains.is_empty() {
                out.push("tls.acme.domains is empty: name the domains to certify".into());
            }
            if !a.email.contains('@') {
                out.push(format!(
                    "tls.acme.email = {:?}: the CA needs a contact address for expiry notices",
                    a.email
                ));
            }
            if t.http_bind.is_none() {
                out.push(
                    "tls.acme needs tls.http_bind (\"0.0.0.0:80\"): the CA checks each domain over \
                     plain HTTP on port 80"
                        .into(),
                );
            }
            if let Some(p) = &a.ca_pem {
                if let Err(e) = std::fs::read(p) {
                    out.push(format!(
                        "tls.acme.ca_pem {}: cannot read it ({e})",
                        p.display()
                    ));
                }
            }
        }
        (None, None, None) => {
            if t.http_bind.is_some() {
                out.push(
                    "tls.http_bind is set but Chatter serves no HTTPS: set tls.cert and tls.key, or \
                     tls.acme"
                        .into(),
                );
            }
        }
    }
    out
}

/// Every address this configuration listens on, with its key.
fn listeners(cfg: &Config) -> Vec<(&'static str, String)> {
    let mut l = vec![("bind", cfg.bind.clone())];
    if let Some(h) = &cfg.tls.http_bind {
        l.push(("tls.http_bind", h.clone()));
    }
    l
}

/// A port below 1024 needs root or `CAP_NET_BIND_SERVICE`.
fn low_port_problem(key: &str, addr: &str) -> Option<String> {
    let port = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|a: SocketAddr| a.port())?;
    if port == 0 || port >= 1024 || may_bind(port) {
        return None;
    }
    Some(format!(
        "{key} = {addr}: port {port} is below 1024 and this process has neither root nor the \
         CAP_NET_BIND_SERVICE capability (the unit file deploy/chatter.service grants it with \
         AmbientCapabilities=CAP_NET_BIND_SERVICE; or `setcap cap_net_bind_service=+ep` on the binary)"
    ))
}

/// Root, or `CAP_NET_BIND_SERVICE` (bit 10) in the effective set (from `/proc/self/status`),
/// or a system that lets everyone bind from a lower port.
fn may_bind(port: u16) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true; // Not Linux: let the bind itself say.
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    let euid = field("Uid:").split_whitespace().nth(1).map(str::to_string);
    if euid.as_deref() == Some("0") {
        return true;
    }
    // Linux lets unprivileged processes bind from `ip_unprivileged_port_start` (1024 by default).
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(1024);
    if port >= start {
        return true;
    }
    u64::from_str_radix(&field("CapEff:"), 16).is_ok_and(|caps| caps & (1 << 10) != 0)
}

/// The database's answer: `None` when it answers. SQLite is not opened (that would create
/// it): its data directory must exist and be writable, or be creatable.
pub async fn database_problem(cfg: &Config) -> Option<String> {
    let url = cfg.database_url();
    if url.starts_with("sqlite:") {
        return data_dir_problem(&cfg.data_dir);
    }
    let shown = crate::keys::redacted_url(&url);
    // The server first: the pool below retries a refused connection until its timeout and
    // then only says it timed out.
    if let Some((host, port)) = url::Url::parse(&url)
        .ok()
        .and_then(|u| Some((u.host_str()?.to_string(), u.port().unwrap_or(5432))))
    {
        let reach = tokio::net::TcpStream::connect((host.as_str(), port));
        match tokio::time::timeout(std::time::Duration::from_secs(5), reach).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Some(format!(
                    "cannot connect to the database {shown}: {host}:{port}: {e}"
                ))
            }
            Err(_) => {
                return Some(format!(
                    "cannot connect to the database {shown}: {host}:{port} did not answer within 5 s (the host, the port, a firewall?)"
                ))
            }
        }
    }
    let connect = chatter_store::connect(&url);
    match tokio::time::timeout(std::time::Duration::from_secs(10), connect).await {
        Err(_) => Some(format!(
            "the database {shown} did not answer within 10 s (check the host, the port and the firewall)"
        )),
        Ok(Err(e)) => Some(format!("cannot connect to the database {shown}: {e}")),
        Ok(Ok(db)) => {
            let ok = chatter_store::ping(&db).await;
            let _ = db.close().await;
            (!ok).then(|| format!("the database {shown} does not answer queries"))
        }
    }
}

/// The S3 store's answer (`None` when it answers, or for the other stores: the local one
/// is the data directory, the `postgres` one the database, both checked above). Reads only.
pub async fn blob_store_problem(cfg: &Config) -> Option<String> {
    use chatter_core::blobs::{BlobStore, StoreKind};
    if cfg.blob_store() != StoreKind::S3 {
        return None;
    }
    let store = BlobStore::s3(&cfg.blobs, &cfg.data_dir).ok()?;
    let answer = store.probe();
    match tokio::time::timeout(std::time::Duration::from_secs(30), answer).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!(
            "the blob store {} does not answer: {e}; check blobs.s3 (endpoint, bucket, keys)",
            store.describe()
        )),
        Err(_) => Some(format!(
            "the blob store {} did not answer within 30 s (check blobs.s3.endpoint and the firewall)",
            store.describe()
        )),
    }
}

fn data_dir_problem(dir: &std::path::Path) -> Option<String> {
    let mut probe = dir.to_path_buf();
    // The nearest existing ancestor must be writable (serve creates the rest).
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p.to_path_buf(),
            _ => return None,
        }
    }
    let test = probe.join(format!(".chatter-check-{}", std::process::id()));
    match std::fs::write(&test, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&test);
            None
        }
        Err(e) => Some(format!(
            "data_dir {}: {} is not writable by this user ({e}); the SQLite database lives there",
            dir.display(),
            probe.display()
        )),
    }
}
