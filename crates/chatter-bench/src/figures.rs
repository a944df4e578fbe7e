//! The team's pages on a big company: a signed-up company is given `--conversations`
//! conversations (a tenth of them open) of `--messages-per` messages each, spread over 60 days
//! across 5 sources, written straight into the server's database; then the signed-in pages
//! people open all day are timed one request at a time: the dashboard, the reports page (30
//! days), the inbox list (open conversations) and an inbox search by a word and by a name.
//! Rows written straight into the database get the dashboard's facts from the upgrade's
//! backfill (`chatter_store::figures::backfill`), timed as well.

use crate::seed::{self, Customer, Line, Owner};
use crate::server::{self, Common, Server};
use anyhow::Context as _;
use chatter_domain::ConversationStatus;
use chatter_store::entity::{contact, conversation, message, source};
use reqwest::header::{HeaderValue, COOKIE};
use sea_orm::{ConnectionTrait as _, EntityTrait, Statement};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Conversations to create.
    #[arg(long, default_value_t = 100_000)]
    pub conversations: usize,
    /// Messages per conversation (customer and manager in turn).
    #[arg(long, default_value_t = 3)]
    pub messages_per: usize,
    /// Timed requests per page.
    #[arg(long, default_value_t = 20)]
    pub requests: usize,
}

const DAY_MS: i64 = 24 * 3600 * 1000;
const BATCH: usize = 500;
const WORDS: [&str; 8] = [
    "Здравствуйте, сколько стоит доставка?",
    "Есть ли в наличии белый чайник?",
    "Можно забрать сегодня после шести?",
    "Спасибо, жду ответа",
    "Пришлите, пожалуйста, счёт",
    "Какая гарантия на диван?",
    "Добрый день! Заказ уже готов?",
    "Перезвоните мне, пожалуйста",
];
const NAMES: [&str; 6] = ["Ольга", "Павел", "Ирина", "Николай", "Анна", "Сергей"];

pub async fn run(a: &Args) -> anyhow::Result<()> {
    let binary = a.common.binary()?;
    let port = server::free_port()?;
    let server = Server::start(&binary, a.common.database_url.as_deref(), port, &[]).await?;
    let cookie = server::sign_up(&server.base).await?;
    let seeded = Instant::now();
    seed(&server.database_url, a).await?;
    eprintln!(
        "{}: {} conversations, {} messages written in {:.1} s",
        server.database,
        a.conversations,
        a.conversations * a.messages_per,
        seeded.elapsed().as_secs_f64()
    );
    println!(
        "| page ({}, {} conversations, {} open, {} messages) | p50 ms | p95 ms | p99 ms | max ms |",
        server.database,
        a.conversations,
        a.conversations / 10,
        a.conversations * a.messages_per
    );
    println!("|---|---|---|---|---|");
    for (name, path) in [
        ("dashboard", "/app"),
        ("reports, 30 days", "/app/reports"),
        ("inbox list, open", "/app/inbox"),
        (
            "inbox search, a word",
            "/app/inbox?q=%D0%B3%D0%B0%D1%80%D0%B0%D0%BD%D1%82%D0%B8%D1%8F",
        ),
        (
            "inbox search, a name",
            "/app/inbox?q=%D0%BE%D0%BB%D1%8C%D0%B3%D0%B0",
        ),
    ] {
        let times = time(&server.base, path, &cookie, a.requests).await?;
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
            server::percentile_ms(&times, 50.0),
            server::percentile_ms(&times, 95.0),
            server::percentile_ms(&times, 99.0),
            server::percentile_ms(&times, 100.0)
        );
    }
    server.stop().await?;
    Ok(())
}

/// `requests` sequential GETs of `path` (after one unmeasured), each µs.
async fn time(
    base: &str,
    path: &str,
    cookie: &HeaderValue,
    requests: usize,
) -> anyhow::Result<Vec<u64>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let mut times = Vec::with_capacity(requests);
    for i in 0..=requests {
        let started = Instant::now();
        let r = http
            .get(format!("{base}{path}"))
            .header(COOKIE, cookie.clone())
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
        r.bytes().await?;
        if i > 0 {
            times.push(started.elapsed().as_micros() as u64);
        }
    }
    times.sort_unstable();
    Ok(times)
}

async fn seed(url: &str, a: &Args) -> anyhow::Result<()> {
    let db = chatter_store::connect(url).await?;
    let b = db.get_database_backend();
    let row = db
        .query_one(Statement::from_string(
            b,
            "SELECT c.id AS company, m.user_id AS owner FROM companies c \
             JOIN memberships m ON m.company_id = c.id LIMIT 1",
        ))
        .await?
        .context("the signed-up company")?;
    let company: Uuid = row.try_get("", "company")?;
    let owner: Uuid = row.try_get("", "owner")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let sources: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    source::Entity::insert_many(sources.iter().enumerate().map(|(i, id)| {
        let name = format!("Сайт {}", i + 1);
        seed::source(*id, company, name, now - 61 * DAY_MS, now)
    }))
    .exec(&db)
    .await?;
    let span = 60 * DAY_MS;
    for start in (0..a.conversations).step_by(BATCH) {
        let end = (start + BATCH).min(a.conversations);
        let (mut contacts, mut convs, mut msgs) = (Vec::new(), Vec::new(), Vec::new());
        let mut indexed: Vec<(Uuid, String)> = Vec::new();
        for i in start..end {
            let src = sources[i % sources.len()];
            let (contact_id, conv_id) = (Uuid::new_v4(), Uuid::new_v4());
            let name = format!("{} {i}", NAMES[i % NAMES.len()]);
            let began = now - span + (i as i64 * span) / a.conversations as i64;
            let key = format!("c{i}");
            let who = Owner {
                company,
                source: src,
            };
            let customer = Customer {
                contact: contact_id,
                conversation: conv_id,
                key: &key,
                name: &name,
                phone: None,
                at: began,
            };
            contacts.push(seed::contact(who, &customer));
            let mut last = (String::new(), began);
            for k in 0..a.messages_per {
                let inbound = k % 2 == 0;
                let at = began + k as i64 * 7 * 60_000;
                let text = WORDS[(i + k) % WORDS.len()].to_owned();
                last = (text.clone(), at);
                let id = Uuid::new_v4();
                indexed.push((id, text.clone()));
                let line = Line {
                    id,
                    external_id: format!("m{i}-{k}"),
                    text,
                    inbound,
                    sender_name: if inbound { &name } else { "Анна" },
                    author: (!inbound).then_some(owner),
                    at,
                };
                msgs.push(seed::message(who, &customer, line));
            }
            let status = if i % 10 == 0 {
                ConversationStatus::Open
            } else {
                ConversationStatus::Closed
            };
            convs.push(seed::conversation(who, &customer, status, last));
        }
        contact::Entity::insert_many(contacts).exec(&db).await?;
        conversation::Entity::insert_many(convs).exec(&db).await?;
        for chunk in msgs.chunks(BATCH) {
            message::Entity::insert_many(chunk.to_vec())
                .exec(&db)
                .await?;
        }
        // The search index, as the ingest path writes it (nothing to do on PostgreSQL).
        let rows: Vec<_> = indexed
            .iter()
            .map(|(id, text)| ((*id).into(), company.into(), Some(text.as_str())))
            .collect();
        chatter_store::search::index_messages(&db, &rows).await?;
    }
    // Written past the ingest path, so the dashboard's facts are filled as an upgrade fills
    // them (the m0016 migration's backfill), and that is timed too.
    // A server from before m0016 (`--chatter` of an older build, for a before/after on the
    // same data) has no such columns and derives everything from the messages.
    let has_facts = db
        .query_one(Statement::from_string(
            b,
            "SELECT count(*) AS n FROM seaql_migrations WHERE version = 'm0016_dashboard_figures'",
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0)
        > 0;
    // Before m0030 no message could be marked automatic (an older `--chatter`).
    let has_automatic = db
        .query_one(Statement::from_string(
            b,
            "SELECT count(*) AS n FROM seaql_migrations WHERE version = 'm0030_automatic_messages'",
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0)
        > 0;
    if has_facts {
        let started = Instant::now();
        if has_automatic {
            chatter_store::figures::backfill(&db).await?;
        } else {
            chatter_store::figures::backfill_before_m0030(&db).await?;
        }
        eprintln!(
            "the dashboard's facts computed from {} messages in {:.1} s (the m0016 backfill)",
            a.conversations * a.messages_per,
            started.elapsed().as_secs_f64()
        );
    }
    db.close().await?;
    Ok(())
}
