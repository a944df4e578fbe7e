//! `chatter serve` (and `worker`, `demo`): refuse a configuration that cannot work, listen at
//! once (answering 503 until ready, so a long migration is not mistaken for a dead process),
//! migrate and assemble the core, install the application, tell systemd it is ready; serve
//! HTTPS from certificate files (reloaded on change) or from ACME, with an optional plain
//! listener that redirects; on SIGTERM stop gracefully, telling systemd first.

use crate::config::Config;
use crate::{build_core, check, demo, notify::notify, shutdown_signal};
use anyhow::bail;
use chatter_core::jobs::worker::{Registry, WorkerConfig};
use chatter_core::{Clock, SystemClock};
use chatter_tls::{CertFiles, CertSlot, Source};
use chatter_web::front::{AppSlot, Front, Listener};
use chatter_web::server::Started;
use std::sync::Arc;

/// The TLS side of `serve`, prepared before anything listens.
enum Tls {
    Files {
        slot: Arc<CertSlot>,
        files: CertFiles,
        loaded: chatter_tls::files::Loaded,
    },
    Acme {
        slot: Arc<CertSlot>,
        cfg: chatter_tls::acme::AcmeConfig,
    },
}

impl Tls {
    fn prepare(cfg: &Config) -> anyhow::Result<Option<Tls>> {
        let t = &cfg.tls;
        if let (Some(cert), Some(key)) = (&t.cert, &t.key) {
            let slot = CertSlot::new(Source::Files);
            let files = CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            let loaded = files
                .load_into(&slot, SystemClock.now_ms())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            return Ok(Some(Tls::Files {
                slot,
                files,
                loaded,
            }));
        }
        Ok(t.acme.as_ref().map(|a| Tls::Acme {
            slot: CertSlot::new(Source::Acme),
            cfg: chatter_tls::acme::AcmeConfig {
                domains: a.domains.clone(),
                email: a.email.clone(),
                directory: a.directory.clone(),
                ca_pem: a.ca_pem.clone(),
                renew_before_days: a.renew_before_days,
            },
        }))
    }

    fn slot(&self) -> Arc<CertSlot> {
        match self {
            Tls::Files { slot, .. } | Tls::Acme { slot, .. } => slot.clone(),
        }
    }
}

async fn bind(key: &str, addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let low = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .is_some_and(|p| p != 0 && p < 1024);
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied && low {
            "ports below 1024 need root or the CAP_NET_BIND_SERVICE capability (deploy/chatter.service grants it)".to_string()
        } else {
            "is another program using it? try --bind 127.0.0.1:8081".to_string()
        };
        anyhow::anyhow!("cannot listen on {addr} ({key}): {e} ({hint})")
    })
}

/// Refuses, before anything is created or bound, a configuration `check-config` would refuse.
pub fn refuse_what_cannot_work(cfg: &Config) -> anyhow::Result<()> {
    let problems = check::static_problems(cfg);
    if !problems.is_empty() {
        bail!(
            "the configuration cannot work:\n- {}\n(`chatter check-config` shows the whole effective configuration)",
            problems.join("\n- ")
        );
    }
    Ok(())
}

pub async fn serve(cfg: Config, http: bool, demo: bool) -> anyhow::Result<()> {
    let tls = if http { Tls::prepare(&cfg)? } else { None };
    let mut started = None;
    let mut bound = cfg.bind.clone();
    let mut redirect_bound = None;
    if http {
        let main = bind("bind", &cfg.bind).await?;
        let app = AppSlot::default();
        let addr = main.local_addr().ok();
        if let Some(a) = addr {
            bound = a.to_string();
        }
        let server_tls = match &tls {
            Some(t) => {
                Some(chatter_tls::server_config(t.slot()).map_err(|e| anyhow::anyhow!("{e}"))?)
            }
            None => None,
        };
        let mut listeners = vec![Listener {
            tcp: main,
            tls: server_tls,
            slot: app.clone(),
        }];
        let mut redirect = None;
        if let (Some(_), Some(h)) = (&tls, &cfg.tls.http_bind) {
            let l = bind("tls.http_bind", h).await?;
            redirect_bound = l.local_addr().ok().map(|a| a.to_string());
            let slot = AppSlot::default();
            listeners.push(Listener {
                tcp: l,
                tls: None,
                slot: slot.clone(),
            });
            redirect = Some(slot);
        }
        let origin = origin_of(&cfg.public_url(&bound));
        started = Some(Started {
            front: Front::start(listeners),
            app,
            addr,
            redirect: redirect.map(|s| (s, origin)),
        });
    }
    let public_url = cfg.public_url(&bound);
    let mut cfg = cfg;
    let demo_fakes = if demo {
        let fakes = demo::Fakes::start().await?;
        fakes.configure(&mut cfg, &public_url);
        Some(fakes)
    } else {
        None
    };
    let demo_mailer = demo_fakes.as_ref().map(demo::Fakes::mailer).transpose()?;
    let (core, _) = build_core(&cfg, &public_url, demo_mailer).await?;
    chatter_core::backup::schedule_daily(&core).await?;
    chatter_core::digest::schedule(&core).await?;
    let demo_run = match &demo_fakes {
        Some(fakes) => Some(demo::Demo::start(&core, fakes).await?),
        None => None,
    };
    let web = chatter_web::WebConfig {
        secure_cookies: cfg
            .secure_cookies
            .unwrap_or(public_url.starts_with("https://")),
        body_limit: cfg.body_limit_bytes,
        database_url: cfg.database_url(),
        trust_proxy: cfg.trust_proxy,
        trusted_proxies: cfg
            .trusted_proxies
            .iter()
            .map(|c| c.parse())
            .collect::<Result<_, String>>()
            .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))?,
        tls: tls.as_ref().map(Tls::slot),
    };
    let workers = WorkerConfig {
        concurrency: cfg.worker.concurrency.max(1),
        lease_ms: (cfg.worker.lease_secs.max(3) * 1000) as i64,
        poll_ms: 500,
        shutdown_ms: cfg.worker.shutdown_timeout_secs * 1000,
    };
    // Before the server answers or says it is up: from then on a SIGTERM means a graceful stop.
    let stop = shutdown_signal();
    let server = chatter_web::server::start_with(
        core.clone(),
        web,
        started,
        Some((Registry::standard(), workers)),
    )
    .await;
    match tls {
        Some(Tls::Files {
            slot,
            files,
            loaded,
        }) => {
            let clock: Arc<dyn Clock> = core.clock.clone();
            tokio::spawn(files.watch(slot, loaded, clock, server.stopper().subscribe()));
        }
        Some(Tls::Acme { slot, cfg: acme }) => {
            let acme = chatter_tls::acme::Acme::new(core.clone(), acme, slot)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            tokio::spawn(acme.run(server.stopper().subscribe()));
        }
        None => {}
    }
    let db_kind = if cfg.database_url().starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    if http {
        let scheme = if cfg.tls.enabled() { "https" } else { "http" };
        tracing::info!(address = %bound, tls = cfg.tls.enabled(), redirect = ?redirect_bound, database = db_kind, data_dir = %cfg.data_dir.display(), blobs = %core.blobs.describe(), "Chatter is listening");
        let redirect = redirect_bound
            .map(|r| format!(", plain HTTP on {r} redirects to HTTPS"))
            .unwrap_or_default();
        println!(
            "Chatter is listening on {scheme}://{bound}  (database: {db_kind}, data: {}{redirect})",
            cfg.data_dir.display()
        );
    } else {
        println!("Chatter worker running (database: {db_kind})");
    }
    notify(&format!(
        "READY=1\nSTATUS=serving {} (database: {db_kind})",
        if http { public_url.as_str() } else { "jobs" }
    ));
    if let Some(d) = &demo_run {
        d.print();
    }
    stop.await;
    notify("STOPPING=1\nSTATUS=stopping: finishing requests and running jobs");
    tracing::info!("stopping: finishing requests and running jobs");
    // A second signal means "now": say what is abandoned and exit without waiting.
    let again = shutdown_signal();
    tokio::spawn(async move {
        again.await;
        let running = chatter_core::jobs::worker::METRICS
            .running
            .load(std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            running_jobs = running,
            "second stop signal: exiting now; the running jobs run again on another node once their lease ends"
        );
        eprintln!("second stop signal: exiting now, abandoning {running} running job(s)");
        std::process::exit(130);
    });
    if let Some(d) = demo_run {
        d.stop().await;
    }
    server.shutdown().await;
    // The fakes outlive the server, so its pollers and jobs end against a live Bot API.
    drop(demo_fakes);
    tracing::info!("stopped");
    Ok(())
}

/// `scheme://host[:port]` of a URL, for redirects.
fn origin_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.trim_end_matches('/').to_string(),
    }
}
