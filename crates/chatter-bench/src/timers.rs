//! The "no manager answered in N minutes" timer under load (issue 14): a signed-up company with
//! one such rule gets `--timers` customers, each with one unanswered message, written straight
//! into the server's database with the timer job the product queues for it; the timers fall due
//! evenly over `--spread-seconds`, starting `--lead-seconds` after the seeding. The server's own
//! job workers fire them. Lateness = when the rule fired (its firing's time) − when the timer
//! was due; reported as p50/p99/max, with the firings counted against the timers (each must
//! fire exactly once).

use crate::seed::{self, Customer, Line, Owner};
use crate::server::{self, Common, Server};
use anyhow::Context as _;
use chatter_domain::auto_reply::AutoReply;
use chatter_domain::{ConversationStatus, JobState};
use chatter_store::entity::{auto_reply, contact, conversation, job, message, source};
use sea_orm::{ConnectionTrait as _, EntityTrait, Set, Statement};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Pending timers (one customer each).
    #[arg(long, default_value_t = 10_000)]
    pub timers: usize,
    /// The timers fall due evenly over this many seconds.
    #[arg(long, default_value_t = 60)]
    pub spread_seconds: u64,
    /// Seconds between the end of seeding and the first timer.
    #[arg(long, default_value_t = 10)]
    pub lead_seconds: u64,
}

const MINUTE: i64 = 60_000;
const BATCH: usize = 500;

fn now_ms() -> anyhow::Result<i64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64)
}

pub async fn run(a: &Args) -> anyhow::Result<()> {
    let binary = a.common.binary()?;
    let port = server::free_port()?;
    let server = Server::start(&binary, a.common.database_url.as_deref(), port, &[]).await?;
    server::sign_up(&server.base).await?;
    let db = chatter_store::connect(&server.database_url).await?;
    let b = db.get_database_backend();
    let company: Uuid = db
        .query_one(Statement::from_string(
            b,
            "SELECT id FROM companies LIMIT 1",
        ))
        .await?
        .context("the signed-up company")?
        .try_get("", "id")?;

    // The rule as the API stores it (checked against the product's own type).
    let rule_json = serde_json::json!({
        "name": "Нет ответа 1 минуту",
        "trigger": {"type": "no_answer", "minutes": 1, "working_hours_only": false},
        "actions": [{"type": "reply", "text": "Извините за ожидание, скоро ответим."}],
    });
    let rule: AutoReply = serde_json::from_value(rule_json.clone()).context("the rule")?;
    let rule_id = Uuid::now_v7();
    let seeding = Instant::now();
    let t0 = now_ms()?;
    auto_reply::Entity::insert(auto_reply::ActiveModel {
        id: Set(rule_id),
        company_id: Set(company.into()),
        position: Set(0),
        enabled: Set(true),
        name: Set(rule.name.clone()),
        rule: Set(rule_json.to_string()),
        created_at: Set(t0),
        updated_at: Set(t0),
    })
    .exec(&db)
    .await?;
    let src = Uuid::new_v4();
    source::Entity::insert(seed::source(src, company, "Сайт".into(), t0, t0))
        .exec(&db)
        .await?;
    let owner = Owner {
        company,
        source: src,
    };
    // Seeding 10,000 customers takes a few seconds; the first timer is due `lead` after an
    // estimate of that, and each is due `spread / timers` after the previous one.
    let first_due = t0 + 5_000 + a.lead_seconds as i64 * 1000;
    let spread = a.spread_seconds as i64 * 1000;
    let mut due_of = Vec::with_capacity(a.timers);
    for start in (0..a.timers).step_by(BATCH) {
        let end = (start + BATCH).min(a.timers);
        let (mut contacts, mut convs, mut msgs, mut jobs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in start..end {
            let due = first_due + (i as i64 * spread) / a.timers.max(1) as i64;
            due_of.push(due);
            let at = due - MINUTE;
            let (contact_id, conv_id, msg_id) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::now_v7());
            let key = format!("t{i}");
            let name = format!("Клиент {i}");
            let customer = Customer {
                contact: contact_id,
                conversation: conv_id,
                key: &key,
                name: &name,
                phone: None,
                at,
            };
            let text = "Здравствуйте, есть в наличии?".to_owned();
            contacts.push(seed::contact(owner, &customer));
            convs.push(seed::conversation(
                owner,
                &customer,
                ConversationStatus::Open,
                (text.clone(), at),
            ));
            msgs.push(seed::message(
                owner,
                &customer,
                Line {
                    id: msg_id,
                    external_id: format!("m{i}"),
                    text,
                    inbound: true,
                    sender_name: &name,
                    author: None,
                    at,
                },
            ));
            // The job `NoAnswerTimer` queues (its name, payload and dedup key).
            jobs.push(job::ActiveModel {
                id: Set(Uuid::now_v7()),
                company_id: Set(Some(company)),
                kind: Set("auto_reply_no_answer".into()),
                payload: Set(serde_json::json!({
                    "conversation_id": conv_id,
                    "rule_id": rule_id,
                    "message_id": msg_id,
                })
                .to_string()),
                status: Set(JobState::Queued),
                attempts: Set(0),
                max_attempts: Set(10),
                run_at: Set(due),
                lease_until: Set(None),
                locked_by: Set(None),
                dedup_key: Set(Some(format!("auto_reply_no_answer:{conv_id}:{rule_id}"))),
                last_error: Set(None),
                created_at: Set(at),
                updated_at: Set(at),
                finished_at: Set(None),
            });
        }
        contact::Entity::insert_many(contacts).exec(&db).await?;
        conversation::Entity::insert_many(convs).exec(&db).await?;
        message::Entity::insert_many(msgs).exec(&db).await?;
        job::Entity::insert_many(jobs).exec(&db).await?;
    }
    let seeded = now_ms()?;
    anyhow::ensure!(
        seeded < first_due,
        "seeding took {:.1} s, past the first timer: raise --lead-seconds",
        seeding.elapsed().as_secs_f64()
    );
    eprintln!(
        "{}: {} timers seeded in {:.1} s, due from +{:.1} s over {} s",
        server.database,
        a.timers,
        seeding.elapsed().as_secs_f64(),
        (first_due - seeded) as f64 / 1000.0,
        a.spread_seconds
    );

    // Wait for every firing (or give up a minute after the last one was due).
    let last_due = due_of.iter().copied().max().unwrap_or(first_due);
    let count = |sql: &'static str| {
        let db = &db;
        async move {
            db.query_one(Statement::from_string(b, sql))
                .await?
                .context("count")?
                .try_get::<i64>("", "n")
                .map_err(anyhow::Error::from)
        }
    };
    loop {
        let fired = count("SELECT count(*) AS n FROM auto_reply_firings").await?;
        if fired >= a.timers as i64 || now_ms()? > last_due + MINUTE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Late firings would show here; give a second for any double firing to appear.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rows = db
        .query_all(Statement::from_string(
            b,
            "SELECT f.created_at - (m.created_at + 60000) AS late, f.outcome AS outcome \
             FROM auto_reply_firings f JOIN messages m ON m.id = f.cause_message_id",
        ))
        .await?;
    let mut late: Vec<u64> = Vec::with_capacity(rows.len());
    let mut fired = 0;
    for r in &rows {
        let l: i64 = r.try_get("", "late")?;
        late.push((l.max(0) as u64) * 1000);
        if r.try_get::<String>("", "outcome")? == "fired" {
            fired += 1;
        }
    }
    late.sort_unstable();
    let early = rows
        .iter()
        .filter(|r| r.try_get::<i64>("", "late").map(|l| l < 0).unwrap_or(false))
        .count();
    let pending = count(
        "SELECT count(*) AS n FROM jobs WHERE kind = 'auto_reply_no_answer' AND status <> 'done'",
    )
    .await?;
    println!(
        "| {} | timers | firings | fired | early | still pending | lateness p50 ms | p99 ms | max ms |",
        server.database
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} s spread | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
        a.spread_seconds,
        a.timers,
        rows.len(),
        fired,
        early,
        pending,
        server::percentile_ms(&late, 50.0),
        server::percentile_ms(&late, 99.0),
        server::percentile_ms(&late, 100.0)
    );
    db.close().await?;
    server.stop().await?;
    Ok(())
}
