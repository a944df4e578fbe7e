//! `sse`: a signed-in client holds `/app/events` open while updates are POSTed to the webhook
//! at a paced rate; for every update, the time from its POST to the first SSE event that
//! carries its text.

use crate::ingest::mark;
use crate::server::{percentile_ms, Run};
use crate::telegram;
use anyhow::{bail, Context as _};
use reqwest::header::{ACCEPT, COOKIE};
use reqwest::StatusCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: crate::server::Common,
    /// Updates per second, paced (not closed-loop).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of paced updates.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Distinct customers (private chats) the updates come from.
    #[arg(long, default_value_t = 1000)]
    customers: u64,
    /// Seconds to wait for late events after the last POST.
    #[arg(long, default_value_t = 5)]
    drain_seconds: u64,
}

/// `SSE` and seven digits: the tag each update's text carries.
fn tag(n: u64) -> String {
    format!("SSE{n:07}")
}

/// Every tag in `text`.
fn tags_in(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.match_indices("SSE").filter_map(|(i, _)| {
        let digits = text.get(i + 3..i + 10)?;
        if digits.bytes().all(|b| b.is_ascii_digit()) {
            digits.parse().ok()
        } else {
            None
        }
    })
}

type Arrivals = Arc<Mutex<HashMap<u64, Instant>>>;

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let setup = telegram::webhook_setup(&args.common).await?;
    let database = setup.server.database;
    let customers = args.customers.max(1);

    let stream = reqwest::Client::new()
        .get(format!("{}/app/events", setup.server.base))
        .header(COOKIE, setup.cookie.clone())
        .header(ACCEPT, "text/event-stream")
        .send()
        .await?;
    if stream.status() != StatusCode::OK {
        bail!("/app/events answered {}", stream.status());
    }
    let arrivals: Arrivals = Arc::default();
    let events = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = tokio::spawn(read_events(stream, arrivals.clone(), events.clone()));

    let hook = Arc::new(Hook {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        url: setup.hook_url.clone(),
        secret: setup.secret.clone(),
    });
    // Update 0 proves the stream is live before the measured run.
    let (_, ok, _) = hook.post(0, customers).await;
    if !ok {
        bail!("the first webhook update was not accepted");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lock(&arrivals).contains_key(&0) {
        if Instant::now() > deadline {
            bail!("the first update did not reach /app/events within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let total = args.rate * args.seconds;
    eprintln!(
        "posting {total} updates at {}/s while reading /app/events",
        args.rate
    );
    let start = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    for n in 1..=total {
        let at = start + Duration::from_secs_f64((n - 1) as f64 / args.rate as f64);
        tokio::time::sleep_until(at.into()).await;
        let hook = hook.clone();
        posts.spawn(async move { (n, hook.post(n, customers).await) });
    }
    let paced = start.elapsed();
    let mut sent_at = HashMap::new();
    let mut webhook = Run {
        latencies_us: Vec::new(),
        errors: 0,
        elapsed: paced,
    };
    while let Some(done) = posts.join_next().await {
        let (n, (sent, ok, latency)) = done.context("a webhook task panicked")?;
        if ok {
            sent_at.insert(n, sent);
            webhook.latencies_us.push(latency);
        } else {
            webhook.errors += 1;
        }
    }
    webhook.latencies_us.sort_unstable();

    let drain = Instant::now() + Duration::from_secs(args.drain_seconds);
    while Instant::now() < drain {
        let all_seen = {
            let seen = lock(&arrivals);
            sent_at.keys().all(|n| seen.contains_key(n))
        };
        if all_seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.abort();
    let seen = lock(&arrivals).clone();
    let mut latencies: Vec<u64> = Vec::with_capacity(sent_at.len());
    let mut missed = 0u64;
    for (n, sent) in &sent_at {
        match seen.get(n) {
            Some(arrived) => {
                latencies.push(arrived.saturating_duration_since(*sent).as_micros() as u64)
            }
            None => missed += 1,
        }
    }
    latencies.sort_unstable();
    let events = events.load(std::sync::atomic::Ordering::SeqCst);
    let (shutdown, exit) = setup.server.stop().await?;

    println!(
        "### Inbound update → SSE on {database}: {} updates/s for {} s, {} customers\n",
        args.rate, args.seconds, customers
    );
    println!("| measure | count | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| POST /hooks/telegram → 200 (committed) | {} | {:.2} | {:.2} | {:.2} |",
        webhook.latencies_us.len(),
        webhook.percentile_ms(50.0),
        webhook.percentile_ms(99.0),
        webhook.percentile_ms(100.0)
    );
    println!(
        "| POST sent → event on /app/events | {} | {:.2} | {:.2} | {:.2} |",
        latencies.len(),
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
        percentile_ms(&latencies, 100.0)
    );
    println!();
    let p99 = percentile_ms(&latencies, 99.0);
    println!("| check | value | goal |");
    println!("|---|---:|---|");
    println!(
        "| update → SSE p99 | {p99:.2} ms | ≤ 50 ms {} |",
        mark(p99 <= 50.0)
    );
    println!(
        "| accepted updates never seen on the stream | {missed} | 0 {} |",
        mark(missed == 0)
    );
    println!("| webhook errors | {} | 0 |", webhook.errors);
    println!(
        "| achieved POST rate | {:.0}/s | {}/s |",
        total as f64 / paced.as_secs_f64(),
        args.rate
    );
    println!("| SSE events received | {events} | |");
    println!();
    println!("SIGTERM to exit: {:.2} s ({exit}).", shutdown.as_secs_f64());
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Hook {
    http: reqwest::Client,
    url: String,
    secret: String,
}

impl Hook {
    /// POSTs update `n`; returns when it was sent, whether it was answered 200, and the
    /// latency in microseconds.
    async fn post(&self, n: u64, customers: u64) -> (Instant, bool, u64) {
        let update = telegram::text_update(n, n % customers, &tag(n));
        let body = serde_json::to_vec(&update).unwrap_or_default();
        let sent = Instant::now();
        let ok = match self
            .http
            .post(&self.url)
            .header("x-telegram-bot-api-secret-token", &self.secret)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status();
                r.bytes().await.is_ok() && status == StatusCode::OK
            }
            Err(_) => false,
        };
        (sent, ok, sent.elapsed().as_micros() as u64)
    }
}

/// The `message` HTML fragment of an event's JSON data: the message itself, not the
/// conversation row (whose preview may already show a later message).
fn message_fragment(data: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    v.get("message")?.as_str().map(str::to_owned)
}

/// Reads the event stream; for every tag in an event's message, the first time it arrived.
async fn read_events(
    mut response: reqwest::Response,
    arrivals: Arrivals,
    events: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut buffer: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let now = Instant::now();
        buffer.extend_from_slice(&chunk);
        // Events end with a blank line.
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let data: String = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|l| l.strip_prefix(' ').unwrap_or(l))
                .collect::<Vec<_>>()
                .join("\n");
            if data.is_empty() {
                continue;
            }
            events.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(message) = message_fragment(&data) else {
                continue;
            };
            let mut seen = lock(&arrivals);
            for n in tags_in(&message) {
                seen.entry(n).or_insert(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_found_in_the_message_fragment_only() {
        let data = format!(
            "{{\"row\":\"<p>{}</p>\",\"message\":\"<p>Здравствуйте {}</p>\"}}",
            tag(43),
            tag(42)
        );
        let message = message_fragment(&data).expect("a message fragment");
        assert_eq!(tags_in(&message).collect::<Vec<_>>(), vec![42]);
        assert_eq!(message_fragment("{\"row\":\"x\"}"), None);
        assert_eq!(tags_in("SSE12 SSEabc").count(), 0);
    }
}
