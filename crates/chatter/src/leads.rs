//! `chatter leads …`: the embedded lead classifier of Telegram parsing from the command line,
//! with no configuration and no database, so a model can be tried and measured on any JSON
//! lines file.
//!
//! - `classify [--model FILE]`: `{"id":…, "text":…}` lines on stdin → `{"id":…, "lead":…,
//!   "score":…, "reason":…}` lines on stdout;
//! - `eval FILE [--model FILE]`: precision, recall and F1 on lines labelled `"lead": true|false`;
//! - `train FILE --out MODEL`: a model file for `--model`.
//!
//! A line that cannot be used is reported on stderr with its number and what is wrong; the
//! other lines go on, and the command exits non-zero at the end so a script notices.

use anyhow::{bail, Context};
use chatter_ai::eval::Metrics;
use chatter_ai::{LeadClassifier, LeadModel};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum LeadsCommand {
    /// Classify JSON lines {"id":…, "text":…} from standard input; writes
    /// {"id":…, "lead":true|false, "score":0..1, "reason":"…"} per line.
    Classify {
        /// A model written by `chatter leads train` (default: the built-in model).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Print precision, recall and F1 of the model on JSON lines {"text":…, "lead":true|false}.
    Eval {
        file: PathBuf,
        /// A model written by `chatter leads train` (default: the built-in model).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Train a model on JSON lines {"text":…, "lead":true|false} and write it for --model.
    Train {
        file: PathBuf,
        /// Where to write the model.
        #[arg(long)]
        out: PathBuf,
        /// Training passes over the lines.
        #[arg(long, default_value_t = chatter_ai::prior::PRIOR_EPOCHS)]
        epochs: usize,
        /// Start from the built-in model instead of an empty one.
        #[arg(long)]
        from_builtin: bool,
    },
}

pub fn run(command: LeadsCommand) -> anyhow::Result<()> {
    match command {
        LeadsCommand::Classify { model } => {
            let model = load(model.as_deref())?;
            let stdin = std::io::stdin();
            classify(&*model, stdin.lock())
        }
        LeadsCommand::Eval { file, model } => {
            let model = load(model.as_deref())?;
            eval(&*model, &file)
        }
        LeadsCommand::Train {
            file,
            out,
            epochs,
            from_builtin,
        } => train(&file, &out, epochs, from_builtin),
    }
}

fn load(path: Option<&Path>) -> anyhow::Result<Cow<'static, LeadModel>> {
    let Some(path) = path else {
        return Ok(Cow::Borrowed(chatter_ai::prior::builtin()));
    };
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the model file {}", path.display()))?;
    let model = LeadModel::from_bytes(&bytes).with_context(|| {
        format!(
            "{} is not a usable model (make one with `chatter leads train`)",
            path.display()
        )
    })?;
    Ok(Cow::Owned(model))
}

/// Lines read and the ones that could not be used, reported as they come.
#[derive(Default)]
struct Lines {
    read: usize,
    skipped: usize,
}

impl Lines {
    fn skip(&mut self, number: usize, what: &str) {
        self.skipped += 1;
        eprintln!("line {number}: {what}; skipped");
    }

    fn finish(self) -> anyhow::Result<()> {
        if self.skipped > 0 {
            bail!(
                "{} of {} lines were skipped (each is named above)",
                self.skipped,
                self.read
            );
        }
        Ok(())
    }
}

/// Each non-empty line as a JSON object, or what is wrong with it.
fn objects(
    input: impl BufRead,
) -> impl Iterator<Item = (usize, Result<Map<String, Value>, String>)> {
    input.lines().enumerate().filter_map(|(i, line)| {
        let number = i + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => return Some((number, Err(format!("cannot be read ({e})")))),
        };
        if line.trim().is_empty() {
            return None;
        }
        let parsed = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err("is not a JSON object: write {\"id\": …, \"text\": \"…\"}".into()),
            Err(e) => Err(format!("is not JSON ({e})")),
        };
        Some((number, parsed))
    })
}

fn text_of(map: &Map<String, Value>) -> Result<&str, String> {
    match map.get("text") {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err("\"text\" is not a string".into()),
        None => Err("has no \"text\"".into()),
    }
}

fn label_of(map: &Map<String, Value>) -> Result<bool, String> {
    match map.get("lead") {
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!("\"lead\" is {other}, expected true or false")),
        None => Err("has no \"lead\" (true or false)".into()),
    }
}

fn classify(model: &dyn LeadClassifier, input: impl BufRead) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut lines = Lines::default();
    for (number, object) in objects(input) {
        lines.read += 1;
        let usable = object.and_then(|map| {
            let id = map.get("id").cloned().ok_or("has no \"id\"")?;
            let text = text_of(&map)?;
            Ok((id, model.classify(text)))
        });
        match usable {
            Ok((id, v)) => {
                let score = (f64::from(v.score) * 1000.0).round() / 1000.0;
                let line = json!({"id": id, "lead": v.lead, "score": score, "reason": v.reason});
                writeln!(out, "{line}").context("write to standard output")?;
            }
            Err(what) => {
                // Keep stdout and stderr in order for someone watching both.
                out.flush().context("write to standard output")?;
                lines.skip(number, &what);
            }
        }
    }
    out.flush().context("write to standard output")?;
    lines.finish()
}

/// The labelled lines of a file; bad ones reported.
fn labelled(file: &Path) -> anyhow::Result<(Vec<(String, bool)>, Lines)> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let mut lines = Lines::default();
    let mut rows = Vec::new();
    for (number, object) in objects(reader) {
        lines.read += 1;
        let usable = object.and_then(|map| Ok((text_of(&map)?.to_owned(), label_of(&map)?)));
        match usable {
            Ok(row) => rows.push(row),
            Err(what) => lines.skip(number, &what),
        }
    }
    Ok((rows, lines))
}

fn eval(model: &dyn LeadClassifier, file: &Path) -> anyhow::Result<()> {
    let (rows, lines) = labelled(file)?;
    let mut m = Metrics::default();
    for (text, lead) in &rows {
        m.add(model.classify(text).lead, *lead);
    }
    let leads = m.true_positive + m.false_negative;
    println!("lines {}, leads {leads}", m.total());
    println!("precision {:.3}", m.precision());
    println!("recall {:.3}", m.recall());
    println!("F1 {:.3}", m.f1());
    println!(
        "true positives {}, false positives {}, false negatives {}, true negatives {}",
        m.true_positive, m.false_positive, m.false_negative, m.true_negative
    );
    lines.finish()
}

fn train(file: &Path, out: &Path, epochs: usize, from_builtin: bool) -> anyhow::Result<()> {
    let (rows, lines) = labelled(file)?;
    if rows.is_empty() {
        bail!(
            "{} has no usable labelled lines ({{\"text\": …, \"lead\": true|false}}); no model written",
            file.display()
        );
    }
    let examples = rows.iter().map(|(t, l)| (t.as_str(), *l));
    let model = if from_builtin {
        let mut m = chatter_ai::prior::builtin().clone();
        m.train_more(examples, epochs);
        m
    } else {
        LeadModel::train(examples, epochs)
    };
    let bytes = model.to_bytes();
    std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    let leads = rows.iter().filter(|(_, l)| *l).count();
    println!(
        "trained on {} lines ({leads} leads) in {epochs} passes; model written to {} ({} KiB)",
        rows.len(),
        out.display(),
        bytes.len() / 1024
    );
    lines.finish()
}
