//! `crm`: conversations into amoCRM against the in-process amoCRM fake (which answers 429 above
//! 7 requests/s per account, like amoCRM).
//!
//! 1. Latency: new customers write at a paced rate (default 20/s); for the k-th customer, the
//!    time from the webhook POST until the fake holds k deals (deals are created in arrival
//!    order, so the k-th deal is the k-th customer's or one that came no later).
//! 2. Burst: 1,000 new customers write at once; the time until all their deals exist, the
//!    number of `leads/complex` calls, the most requests amoCRM saw in any one-second window,
//!    and how many it refused with 429.
//!
//! `BENCH_CHATTER_LOG` sets the server's `CHATTER_LOG` (e.g. `warn,chatter_core::crm::sync=debug`).

use crate::server::{self, percentile_ms};
use crate::telegram;
use anyhow::{bail, Context as _};
use chatter_fakes::FakeAmo;
use reqwest::header::{COOKIE, LOCATION};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: server::Common,
    /// New customers per second in the latency run.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// New customers writing at once in the burst.
    #[arg(long, default_value_t = 1000)]
    burst: u64,
    /// Without the Chats API channel (messages become notes).
    #[arg(long)]
    no_chats: bool,
}

const CLIENT_ID: &str = "chatter-bench";
const CLIENT_SECRET: &str = "bench-client-secret-0123456789";
const CHANNEL_ID: &str = "0b6e5c1d-bench-4c0e-9c1b-000000000001";
const CHANNEL_SECRET: &str = "7a1f3c5e7a9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f";

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let amo = FakeAmo::start().await.context("start the amoCRM fake")?;
    let account = amo.create_account("bench", "Бенчмарк CRM");
    let base = amo.base_url();
    let chats = !args.no_chats;
    let amo_env = |port: u16| {
        let public = format!("http://127.0.0.1:{port}");
        let redirect = format!("{public}/crm/amocrm/callback");
        amo.register_integration(CLIENT_ID, CLIENT_SECRET, &redirect);
        let mut env = vec![
            (
                "CHATTER_LOG",
                std::env::var("BENCH_CHATTER_LOG").unwrap_or_else(|_| "warn".into()),
            ),
            ("CHATTER_PUBLIC_URL", public.clone()),
            ("CHATTER_AMOCRM__CLIENT_ID", CLIENT_ID.to_string()),
            ("CHATTER_AMOCRM__CLIENT_SECRET", CLIENT_SECRET.to_string()),
            ("CHATTER_AMOCRM__REDIRECT_URI", redirect),
            ("CHATTER_AMOCRM__CONSENT_URL", format!("{base}/oauth")),
            ("CHATTER_AMOCRM__ACCOUNT_BASE", base.clone()),
        ];
        if chats {
            amo.register_chat_channel(
                CHANNEL_ID,
                CHANNEL_SECRET,
                Some(&format!("{public}/hooks/amojo/:scope_id")),
            );
            env.extend([
                ("CHATTER_AMOCRM__CHATS__CHANNEL_ID", CHANNEL_ID.to_string()),
                ("CHATTER_AMOCRM__CHATS__SECRET", CHANNEL_SECRET.to_string()),
                ("CHATTER_AMOCRM__CHATS__BASE_URL", base.clone()),
            ]);
        }
        env
    };
    let setup = telegram::webhook_setup_with(&args.common, amo_env).await?;
    connect(&setup, &amo, account).await?;
    let hook = Arc::new(Hook {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        url: setup.hook_url.clone(),
        secret: setup.secret.clone(),
    });

    // 1. Latency at a paced rate.
    let n = args.rate * args.seconds;
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let mut posted: Vec<Instant> = Vec::with_capacity(n as usize);
    let mut created: Vec<Option<Instant>> = vec![None; n as usize];
    let start = Instant::now();
    let mut next = 0u64;
    let deadline = start + Duration::from_secs(args.seconds + 60);
    loop {
        let due = start + interval * next as u32;
        if next < n && Instant::now() >= due {
            let h = hook.clone();
            let seq = next;
            posted.push(Instant::now());
            tokio::spawn(async move { h.post(seq, seq).await });
            next += 1;
            continue;
        }
        let have = amo.leads(account).len();
        let now = Instant::now();
        for slot in created.iter_mut().take(have.min(n as usize)) {
            if slot.is_none() {
                *slot = Some(now);
            }
        }
        if next == n && have >= n as usize {
            break;
        }
        if now > deadline {
            bail!("only {have} of {n} deals after {:?}", now - start);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut lat: Vec<u64> = posted
        .iter()
        .zip(&created)
        .filter_map(|(p, c)| c.map(|c| c.saturating_duration_since(*p).as_micros() as u64))
        .collect();
    lat.sort_unstable();
    let before_burst = amo.leads(account).len();
    let requests_before = amo.account_requests(account).len();

    // 2. The burst.
    let burst_start = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    let per = args.burst.div_ceil(32);
    for c in 0..32u64 {
        let h = hook.clone();
        let (lo, hi) = (c * per, ((c + 1) * per).min(args.burst));
        posts.spawn(async move {
            let mut ok = 0u64;
            for i in lo..hi {
                let seq = 1_000_000 + i;
                if h.post(seq, seq).await {
                    ok += 1;
                }
            }
            ok
        });
    }
    let mut accepted = 0;
    while let Some(r) = posts.join_next().await {
        accepted += r.unwrap_or(0);
    }
    let accepted_in = burst_start.elapsed();
    let want = before_burst + args.burst as usize;
    let deadline = Instant::now() + Duration::from_secs(600);
    while amo.leads(account).len() < want {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} burst deals after 600 s",
                amo.leads(account).len() - before_burst,
                args.burst
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let burst_time = burst_start.elapsed();
    let reqs = amo.account_requests(account);
    let burst_reqs = &reqs[requests_before..];
    let complex = burst_reqs
        .iter()
        .filter(|r| r.line == "POST /api/v4/leads/complex")
        .count();
    let mut max_window = 0usize;
    for (i, r) in reqs.iter().enumerate() {
        let in_window = reqs[i..]
            .iter()
            .take_while(|x| x.at.duration_since(r.at) < Duration::from_secs(1))
            .count();
        max_window = max_window.max(in_window);
    }
    println!(
        "## amoCRM sync ({}, chats {})\n",
        setup.server.database,
        if chats { "on" } else { "off (notes)" }
    );
    println!("| measure | value |\n|---|---|");
    println!(
        "| inbound → deal at {}/s, {n} customers: p50 / p99 / max | {:.0} / {:.0} / {:.0} ms |",
        args.rate,
        percentile_ms(&lat, 50.0),
        percentile_ms(&lat, 99.0),
        percentile_ms(&lat, 100.0)
    );
    println!(
        "| latency run: REST requests to amoCRM (leads/complex) | {requests_before} ({}) |",
        reqs[..requests_before]
            .iter()
            .filter(|r| r.line == "POST /api/v4/leads/complex")
            .count()
    );
    println!(
        "| burst of {} new customers: webhooks accepted | {accepted} in {:.2} s |",
        args.burst,
        accepted_in.as_secs_f64()
    );
    println!(
        "| burst: until all {} deals exist in amoCRM | **{:.2} s** |",
        args.burst,
        burst_time.as_secs_f64()
    );
    println!("| burst: leads/complex calls | {complex} |");
    println!(
        "| burst: REST requests to amoCRM (all kinds) | {} |",
        burst_reqs.len()
    );
    println!("| most requests in any 1 s window (whole run) | {max_window} |");
    println!(
        "| requests amoCRM refused with 429 | {} |",
        amo.throttled(account)
    );
    setup.server.stop().await?;
    Ok(())
}

/// Connects amoCRM the way a person does: the button, the consent page, the callback.
async fn connect(
    setup: &telegram::WebhookSetup,
    amo: &FakeAmo,
    account: chatter_fakes::AccountId,
) -> anyhow::Result<()> {
    let base = &setup.server.base;
    let csrf = server::session_csrf(base, &setup.cookie).await?;
    let http = server::form_client()?;
    let r = http
        .post(format!("{base}/app/crm/connect"))
        .header(COOKIE, setup.cookie.clone())
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await?;
    let consent = r
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("connect gave no consent URL")?
        .to_string();
    let state = consent
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .context("no state in the consent URL")?;
    let back = amo.approve(account, CLIENT_ID, state);
    let r = http
        .get(&back)
        .header(COOKIE, setup.cookie.clone())
        .send()
        .await?;
    if r.status().as_u16() != 303 {
        bail!("the amoCRM callback answered {}", r.status());
    }
    Ok(())
}

struct Hook {
    http: reqwest::Client,
    url: String,
    secret: String,
}

impl Hook {
    /// One new customer's first message; true when accepted.
    async fn post(&self, seq: u64, customer: u64) -> bool {
        let update = telegram::text_update(seq, customer, "");
        self.http
            .post(&self.url)
            .header("x-telegram-bot-api-secret-token", &self.secret)
            .json(&update)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}
