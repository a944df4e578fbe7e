//! `leads`: the lead filter of Telegram parsing (chatter-ai), in process on one core — keyword
//! stage and embedded classifier throughput over the fixture set's messages, the classifier's
//! quality on the later 30% of the fixture set when trained on the earlier 70% (by time), and on
//! each niche left out of training before and after 50 marks of that niche's earlier messages.

use anyhow::{bail, Context as _};
use chatter_ai::eval::{evaluate, Metrics};
use chatter_ai::prior::{every_niche_left_out, fixtures, time_split, train_on};
use chatter_ai::{KeywordMatcher, KeywordRules, LeadClassifier};
use std::hint::black_box;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Passes over the fixture set's messages per measured round (keyword stage; the
    /// classifier makes a tenth of them).
    #[arg(long, default_value_t = 200)]
    passes: usize,
    /// Measured rounds (each printed, so the spread shows).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Marks of the left-out niche learnt before it is judged again.
    #[arg(long, default_value_t = 50)]
    marks: usize,
}

/// A plumbing company's rules, as a user would write them.
fn plumbing_rules() -> KeywordRules {
    let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    KeywordRules {
        keywords: list(&[
            "сантехник",
            "сантех*",
            "смеситель",
            "унитаз",
            "засор",
            "бойлер",
            "водонагреватель",
            "стояк",
            "нужен мастер",
            "полотенцесушитель",
        ]),
        regexes: list(&[r"кто\s+(сделает|может|возьм[её]тся)"]),
        stop_words: list(&["вакансия", "з/п", "казино", "крипта", "требуются"]),
        min_length: 15,
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let rows = fixtures();
    if rows.is_empty() || args.passes == 0 || args.rounds == 0 {
        bail!("nothing to measure: give --passes and --rounds above 0");
    }
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let matcher = KeywordMatcher::compile(&plumbing_rules())
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("compile the bench's keyword rules")?;
    let candidates = texts
        .iter()
        .filter(|t| matcher.check(t).is_candidate())
        .count();
    let model = chatter_ai::prior::builtin();
    let words: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    println!(
        "### leads: {} fixture messages ({:.1} words each), one core\n",
        texts.len(),
        words as f64 / texts.len() as f64
    );
    println!(
        "Keyword stage: a plumbing company's rules (10 keywords, 1 regex, 5 stop-words, minimum 15 characters); {candidates} of {} messages pass.\n",
        texts.len()
    );
    println!(
        "msgs/s per second of wall time, and (in brackets) per second this thread spent on a CPU \
         (Linux `/proc/thread-self/schedstat`), which stays a one-core figure on a busy machine.\n"
    );
    println!("| round | keyword stage msgs/s | embedded classifier msgs/s |");
    println!("|---:|---:|---:|");
    for round in 1..=args.rounds {
        let (wall, cpu) = (Instant::now(), cpu_ns());
        for _ in 0..args.passes {
            for t in &texts {
                black_box(matcher.check(black_box(t)));
            }
        }
        let keyword = rates(args.passes * texts.len(), wall, cpu);
        let passes = (args.passes / 10).max(1);
        let (wall, cpu) = (Instant::now(), cpu_ns());
        for _ in 0..passes {
            for t in &texts {
                black_box(model.classify(black_box(t)));
            }
        }
        let classifier = rates(passes * texts.len(), wall, cpu);
        println!("| {round} | {keyword} | {classifier} |");
    }

    let (train, test) = time_split(rows, 0.7);
    let started = Instant::now();
    let split_model = train_on(train);
    let trained_in = started.elapsed();
    let held_out = evaluate(&split_model, test.iter().map(|r| (r.text.as_str(), r.lead)));
    let (before, after) = every_niche_left_out(args.marks);
    println!(
        "\nQuality (the \"lead\" class). Training on {} messages took {:.0} ms.\n",
        train.len(),
        trained_in.as_secs_f64() * 1000.0
    );
    println!("| split | messages judged | precision | recall | F1 |");
    println!("|---|---:|---:|---:|---:|");
    row(
        &format!(
            "time-ordered: trained on the first 70% ({}), judged on the last 30%",
            train.len()
        ),
        &held_out,
    );
    row(
        "each niche left out of training, its messages after the first marks (sum over niches)",
        &before,
    );
    row(
        &format!(
            "the same after {} marks of the niche's earlier messages",
            args.marks
        ),
        &after,
    );
    Ok(())
}

/// Nanoseconds this thread has run on a CPU, where Linux tells.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

fn rates(messages: usize, wall: Instant, cpu: Option<u64>) -> String {
    let per_wall = messages as f64 / wall.elapsed().as_secs_f64();
    match (cpu, cpu_ns()) {
        (Some(start), Some(end)) if end > start => {
            let per_cpu = messages as f64 / ((end - start) as f64 / 1e9);
            format!("{per_wall:.0} ({per_cpu:.0})")
        }
        _ => format!("{per_wall:.0}"),
    }
}

fn row(name: &str, m: &Metrics) {
    println!(
        "| {name} | {} | {:.3} | {:.3} | {:.3} |",
        m.total(),
        m.precision(),
        m.recall(),
        m.f1()
    );
}
