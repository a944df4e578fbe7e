//! `stem`: nanoseconds per word of the keyword stemmer routing rules run on every inbound message
//! (`chatter_domain::stem`, Snowball through `rust-stemmers`), in process, over the distinct
//! words of the given texts, so a stemmer change can be weighed in the same units as issue 10's
//! comparison with the hand-written stemmer it replaced (780–880 ns a word against 125–210).

use anyhow::{bail, Context as _};
use chatter_domain::stem::{fold, stem};
use std::collections::BTreeSet;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Text files whose words are stemmed, e.g. a FAQ in Russian.
    #[arg(required = true)]
    texts: Vec<PathBuf>,
    /// Passes over the word list per round.
    #[arg(long, default_value_t = 50)]
    passes: usize,
    /// Measured rounds (each printed, so the spread shows).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut words = BTreeSet::new();
    let mut running = 0usize;
    for path in &args.texts {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        for word in fold(&text).split(|c: char| !c.is_alphanumeric()) {
            if !word.is_empty() {
                running += 1;
                words.insert(word.to_owned());
            }
        }
    }
    if words.is_empty() {
        bail!("no words in the given texts");
    }
    let russian = words
        .iter()
        .filter(|w| w.chars().all(|c| matches!(c, 'а'..='я')))
        .count();
    println!(
        "### stem: {} distinct words ({russian} Russian) of {running} running words\n",
        words.len()
    );
    println!("| round | ns/word |");
    println!("|---:|---:|");
    for round in 1..=args.rounds {
        let started = Instant::now();
        for _ in 0..args.passes {
            for word in &words {
                black_box(stem(black_box(word)));
            }
        }
        let per_word = started.elapsed().as_nanos() as f64 / (args.passes * words.len()) as f64;
        println!("| {round} | {per_word:.0} |");
    }
    Ok(())
}
