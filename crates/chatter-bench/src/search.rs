//! `search`: full-text search over `--messages` messages (1,000,000 by default) of
//! `--companies` companies, written straight into a fresh database (SQLite in a temporary
//! directory, or the empty PostgreSQL database of `--database-url`) with the migrations of this
//! build and the index writes of the ingest path; then `--queries` searches per kind of query,
//! each in a random company, timed in process as the inbox runs them: the index query
//! (`chatter_store::search::find_messages`, 50 hits) and the read of the hit messages.
//!
//! Texts are generated from Russian and English sales chat sentences (three in four Russian)
//! with products, cities, prices and names in varying grammatical forms, so words recur as
//! they do in real inboxes: some in a tenth of the messages, some in one in a thousand.

use crate::seed::{self, Customer, Line, Owner};
use anyhow::Context as _;
use chatter_domain::stem::fold;
use chatter_domain::ConversationStatus;
use chatter_store::entity::{company, contact, conversation, message, source};
use sea_orm::{
    ColumnTrait, ConnectionTrait as _, DatabaseConnection, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};
use std::time::Instant;
use uuid::Uuid;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run on this empty PostgreSQL database instead of a fresh SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Messages to write.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Companies they are spread over (the first one, the biggest, holds a fifth of them).
    #[arg(long, default_value_t = 200)]
    companies: usize,
    /// Messages per conversation.
    #[arg(long, default_value_t = 20)]
    per_conversation: usize,
    /// Timed searches per kind of query.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Time the searches on the data an earlier run of this bench wrote to `--database-url`.
    #[arg(long)]
    no_seed: bool,
}

const BATCH: usize = 5_000;
const HITS: u64 = 50;

const RU: &[&str] = &[
    "Здравствуйте, сколько стоит доставка {product} в {city}?",
    "Добрый день! Есть ли в наличии {product}?",
    "Можно забрать {product} сегодня после {n}?",
    "Спасибо, жду ответа по заказу {n}",
    "Пришлите, пожалуйста, счёт на {product}",
    "Какая гарантия на {product}?",
    "Заказ {n} уже готов? Когда доставка?",
    "Перезвоните мне, пожалуйста, я {name}",
    "Доставку в {city} оплачу при получении",
    "Курьер не приехал, где мой заказ?",
    "Хочу вернуть {product}, не подошёл размер",
    "Сделаете скидку, если возьму два {product}?",
    "Оплатил картой, пришлите чек",
    "Стоимость доставки до {city} какая?",
    "Менеджер обещал перезвонить, но так и не позвонил",
    "Добрый вечер, подскажите по гарантии на {product}",
    "Ваш заказ {n} передан в службу доставки, ожидайте курьера",
    "Цена {product} — {n} ₽, доставка бесплатная",
    "Самовывоз из магазина в {city} возможен завтра",
    "Благодарим за покупку! Оцените, пожалуйста, работу менеджера",
];
const EN: &[&str] = &[
    "Hello, how much is delivery of the {product} to {city}?",
    "Is the {product} in stock?",
    "Can I pick up my order {n} tomorrow?",
    "Please send the invoice for the {product}",
    "What warranty do you give on the {product}?",
    "Your order {n} has been shipped, the courier will call you",
    "I want to return the {product}, it does not fit",
    "Thanks, waiting for your answer",
];
const PRODUCTS: &[&str] = &[
    "чайник",
    "диван",
    "холодильник",
    "пылесос",
    "кресло",
    "стол",
    "матрас",
    "телевизор",
    "ноутбук",
    "кофемашину",
    "велосипед",
    "шкаф",
    "лампу",
    "ковёр",
    "микроволновку",
];
const CITIES: &[&str] = &[
    "Москву",
    "Химки",
    "Казань",
    "Тверь",
    "Самару",
    "Пермь",
    "Сочи",
    "Калугу",
    "Омск",
    "Тулу",
];
const NAMES: &[&str] = &[
    "Ольга",
    "Павел",
    "Ирина",
    "Николай",
    "Анна",
    "Сергей",
    "Мария",
    "Дмитрий",
    "Елена",
];

/// The kinds of query timed, as people type them.
const QUERIES: &[(&str, &str)] = &[
    ("a frequent word, another form", "доставку"),
    ("a word in about 1 of 60", "гарантия"),
    ("two words", "стоимость доставки"),
    ("a rare word", "микроволновка"),
    ("English", "warranty"),
    ("as typed, a beginning", "холод"),
    ("a word nowhere", "абракадабра"),
];

/// A small deterministic generator (xorshift), so runs write the same texts.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
    fn text(&mut self) -> String {
        let sentences = 1 + self.next() % 2;
        let mut out = Vec::new();
        for _ in 0..sentences {
            let t = if self.next().is_multiple_of(4) {
                self.pick(EN)
            } else {
                self.pick(RU)
            };
            let n = (100 + self.next() % 90_000).to_string();
            out.push(
                t.replace("{product}", self.pick(PRODUCTS))
                    .replace("{city}", self.pick(CITIES))
                    .replace("{name}", self.pick(NAMES))
                    .replace("{n}", &n),
            );
        }
        out.join(" ")
    }
}

pub async fn run(a: &Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = match &a.database_url {
        Some(u) => u.clone(),
        None => chatter_store::sqlite_url_in(dir.path()),
    };
    let db = chatter_store::connect(&url).await?;
    chatter_store::migrate(&db).await?;
    let database = if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let started = Instant::now();
    let companies = if a.no_seed {
        let mut cs = company::Entity::find().all(&db).await?;
        cs.sort_by_key(|c| {
            c.slug
                .trim_start_matches("bench-")
                .parse::<usize>()
                .unwrap_or(0)
        });
        cs.into_iter().map(|c| c.id).collect()
    } else {
        seed(&db, a).await?
    };
    if database == "PostgreSQL" {
        db.execute_unprepared("VACUUM ANALYZE messages").await?;
    }
    eprintln!(
        "{database}: {} messages of {} companies written and indexed in {:.1} s",
        a.messages,
        a.companies,
        started.elapsed().as_secs_f64()
    );
    println!(
        "### Search on {database}: {} messages, {} companies, {} searches per query, {HITS} hits at most\n",
        a.messages, a.companies, a.queries
    );
    println!("| query | hits (mean) | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    let mut rng = Rng(0x5eed_cafe);
    let mut all = Vec::new();
    for (what, q) in QUERIES {
        let words: Vec<String> = fold(q)
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        let mut times = Vec::with_capacity(a.queries);
        let mut found = 0usize;
        for i in 0..=a.queries {
            // Half of the searches in the biggest company, half anywhere.
            let c = if i % 2 == 0 {
                companies[0]
            } else {
                companies[(rng.next() % companies.len() as u64) as usize]
            };
            let t = Instant::now();
            let ids = chatter_store::search::find_messages(&db, c.into(), &words, HITS).await?;
            let n = ids.len();
            let ms = message::Entity::find()
                .filter(message::Column::CompanyId.eq(c))
                .filter(message::Column::Id.is_in(ids))
                .all(&db)
                .await?;
            anyhow::ensure!(ms.len() == n, "every hit is the company's message");
            if i > 0 {
                times.push(t.elapsed().as_micros() as u64);
                found += n;
            }
        }
        times.sort_unstable();
        all.extend(&times);
        println!(
            "| {what}: «{q}» | {:.1} | {:.2} | {:.2} | {:.2} |",
            found as f64 / a.queries as f64,
            crate::server::percentile_ms(&times, 50.0),
            crate::server::percentile_ms(&times, 99.0),
            crate::server::percentile_ms(&times, 100.0)
        );
    }
    all.sort_unstable();
    println!(
        "| **all** | | {:.2} | {:.2} | {:.2} |",
        crate::server::percentile_ms(&all, 50.0),
        crate::server::percentile_ms(&all, 99.0),
        crate::server::percentile_ms(&all, 100.0)
    );
    db.close().await?;
    Ok(())
}

/// Writes the companies, a source each, contacts, conversations and messages (with their index
/// entries, in the same transactions); returns the companies, the biggest first.
async fn seed(db: &DatabaseConnection, a: &Args) -> anyhow::Result<Vec<Uuid>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let companies: Vec<Uuid> = (0..a.companies).map(|_| Uuid::now_v7()).collect();
    let sources: Vec<Uuid> = (0..a.companies).map(|_| Uuid::now_v7()).collect();
    company::Entity::insert_many(companies.iter().enumerate().map(|(i, id)| {
        company::ActiveModel {
            id: Set(*id),
            name: Set(format!("Компания {i}")),
            slug: Set(format!("bench-{i}")),
            timezone: Set("Europe/Moscow".into()),
            created_at: Set(now),
        }
    }))
    .exec(db)
    .await
    .context("companies")?;
    source::Entity::insert_many(
        sources
            .iter()
            .enumerate()
            .map(|(i, id)| seed::source(*id, companies[i], format!("Сайт {i}"), now, now)),
    )
    .exec(db)
    .await
    .context("sources")?;
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let conversations = a.messages.div_ceil(a.per_conversation.max(1));
    let start = now - a.messages as i64 * 1_000;
    let mut written = 0usize;
    let mut conv_no = 0usize;
    while written < a.messages {
        let txn = db.begin().await?;
        let (mut contacts, mut convs, mut msgs) = (Vec::new(), Vec::new(), Vec::new());
        let mut index: Vec<(Uuid, Uuid, String)> = Vec::new();
        while msgs.len() < BATCH && written < a.messages {
            // A fifth of the conversations in company 0, the rest spread over all.
            let c = if conv_no.is_multiple_of(5) {
                0
            } else {
                (rng.next() % a.companies as u64) as usize
            };
            let (company, src) = (companies[c], sources[c]);
            let (contact_id, conv_id) = (Uuid::now_v7(), Uuid::now_v7());
            let name = format!("{} {conv_no}", rng.pick(NAMES));
            let key = format!("c{conv_no}");
            let who = Owner {
                company,
                source: src,
            };
            let customer = Customer {
                contact: contact_id,
                conversation: conv_id,
                key: &key,
                name: &name,
                phone: Some(format!("+7916{:07}", conv_no)),
                at: start,
            };
            contacts.push(seed::contact(who, &customer));
            let n = a.per_conversation.min(a.messages - written);
            let mut last = (String::new(), start);
            for k in 0..n {
                let at = start + written as i64 * 1_000;
                let text = rng.text();
                let id = Uuid::now_v7();
                index.push((id, company, text.clone()));
                last = (text.clone(), at);
                let line = Line {
                    id,
                    external_id: format!("m{written}"),
                    text,
                    inbound: k % 2 == 0,
                    sender_name: &name,
                    author: None,
                    at,
                };
                msgs.push(seed::message(who, &customer, line));
                written += 1;
            }
            convs.push(seed::conversation(
                who,
                &customer,
                ConversationStatus::Closed,
                last,
            ));
            conv_no += 1;
        }
        for chunk in contacts.chunks(500) {
            contact::Entity::insert_many(chunk.to_vec())
                .exec(&txn)
                .await?;
        }
        for chunk in convs.chunks(500) {
            conversation::Entity::insert_many(chunk.to_vec())
                .exec(&txn)
                .await?;
        }
        for chunk in msgs.chunks(500) {
            message::Entity::insert_many(chunk.to_vec())
                .exec(&txn)
                .await?;
        }
        let rows: Vec<_> = index
            .iter()
            .map(|(id, c, t)| ((*id).into(), (*c).into(), Some(t.as_str())))
            .collect();
        chatter_store::search::index_messages(&txn, &rows).await?;
        txn.commit().await?;
        if conv_no % (conversations / 10).max(1) < BATCH / a.per_conversation.max(1) {
            eprintln!("  {written} messages");
        }
    }
    Ok(companies)
}
