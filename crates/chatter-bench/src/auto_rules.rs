//! `auto-rules`: microseconds per inbound message to look at a company's 100 auto-reply rules
//! in process (`chatter_domain::auto_reply`): each rule's text conditions through the routing
//! matcher (keywords with stems, phrases, exclusions, a regex), as `AutoReplyCheck` does once a
//! message is stored. Three figures: compiling every rule alone for every message, matching each
//! rule alone compiled once (the message stemmed once per rule), and the set the job uses
//! (`Matchers`: compiled once per version of the company's rules, the message stemmed once).
//! The database reads of the job (the message, the rules, the hours) are not in these figures.

use chatter_domain::auto_reply::{Action, AutoReply, Matcher, Matchers, TextMatch, Trigger};
use std::hint::black_box;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rules per company.
    #[arg(long, default_value_t = 100)]
    rules: usize,
    /// Messages per round.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Measured rounds (each printed, so the spread shows).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

const WORDS: &[&str] = &[
    "доставка",
    "цена",
    "оплата",
    "возврат",
    "гарантия",
    "размер",
    "наличие",
    "скидка",
    "самовывоз",
    "адрес",
    "курьер",
    "рассрочка",
    "кредит",
    "подарок",
    "упаковка",
    "срок",
];

const TEXTS: &[&str] = &[
    "Здравствуйте! Сколько стоит доставка до Химок и можно ли оплатить картой курьеру?",
    "Есть ли размер M в наличии? Хочу забрать самовывозом сегодня вечером",
    "Добрый день, подскажите по гарантии на кофемолку, сломалась через месяц",
    "ок спасибо",
    "Можно ли оформить рассрочку без первого взноса и какие условия по кредиту?",
];

fn rules(n: usize) -> Vec<AutoReply> {
    (0..n)
        .map(|i| {
            let (trigger, conditions) = match i % 4 {
                0 => (Trigger::OutOfHours, TextMatch::default()),
                1 => (
                    Trigger::Keywords,
                    TextMatch {
                        regex: Some(format!(r"заказ\s*№?\s*{i}\d*")),
                        ..TextMatch::default()
                    },
                ),
                _ => (
                    Trigger::Keywords,
                    TextMatch {
                        keywords: vec![
                            WORDS[i % WORDS.len()].into(),
                            format!(
                                "{} {}",
                                WORDS[(i + 3) % WORDS.len()],
                                WORDS[(i + 5) % WORDS.len()]
                            ),
                            WORDS[(i + 7) % WORDS.len()].into(),
                        ],
                        exclude: vec!["опт".into()],
                        ..TextMatch::default()
                    },
                ),
            };
            AutoReply {
                name: format!("Правило {i}"),
                enabled: true,
                sources: vec![],
                trigger,
                conditions,
                actions: vec![Action::reply("Спасибо, ответим в течение 15 минут.")],
                once_per_minutes: None,
                once_ever: false,
            }
        })
        .collect()
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let rules = rules(args.rules);
    println!(
        "### auto-rules: {} rules, {} messages a round\n",
        rules.len(),
        args.messages
    );
    println!("| round | µs/message, each compiled per message | each compiled once | one set (the job) |");
    println!("|---:|---:|---:|---:|");
    let list: Vec<(String, &TextMatch)> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (i.to_string(), &r.conditions))
        .collect();
    let set = Matchers::compile(&list);
    let compiled: Vec<Matcher> = rules
        .iter()
        .map(|r| r.check().map_err(|e| anyhow::anyhow!("{e:?}")))
        .collect::<anyhow::Result<_>>()?;
    for round in 1..=args.rounds {
        let started = Instant::now();
        for m in 0..args.messages {
            let text = TEXTS[m % TEXTS.len()];
            for r in &rules {
                if let Ok(matcher) = r.check() {
                    black_box(matcher.matches(black_box(text)));
                }
            }
        }
        let fresh = started.elapsed().as_secs_f64() * 1e6 / args.messages as f64;
        let started = Instant::now();
        for m in 0..args.messages {
            let text = TEXTS[m % TEXTS.len()];
            for matcher in &compiled {
                black_box(matcher.matches(black_box(text)));
            }
        }
        let once = started.elapsed().as_secs_f64() * 1e6 / args.messages as f64;
        let started = Instant::now();
        for m in 0..args.messages {
            black_box(set.matching(black_box(TEXTS[m % TEXTS.len()])));
        }
        let one_set = started.elapsed().as_secs_f64() * 1e6 / args.messages as f64;
        println!("| {round} | {fresh:.1} | {once:.1} | {one_set:.1} |");
    }
    Ok(())
}
