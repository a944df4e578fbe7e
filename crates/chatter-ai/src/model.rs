//! The embedded lead classifier: logistic regression over the hashed features of
//! [`crate::features`], trained by stochastic gradient descent. A mark («лид» / «не лид») is one
//! more gradient step, so a per-source model follows its managers from the first marks on.
//!
//! Stored as a small own binary format (no serialisation dependency for a flat `f32` table):
//!
//! ```text
//! "CHLM" | version u8 = 1 | bits u8 | marks u32 LE | bias f32 LE | 2^bits weights f32 LE
//! ```

use crate::features::{extract, Extracted, Origin, DEFAULT_BITS};
use crate::{LeadClassifier, Trainable, Verdict};

const MAGIC: &[u8; 4] = b"CHLM";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 1 + 4 + 4;
/// Step size of training passes.
const TRAIN_RATE: f32 = 0.6;
/// Step size of one mark: large enough that a handful of marks turn a confident verdict.
const MARK_RATE: f32 = 1.0;
/// L2 shrinkage applied to the weights a step touches.
const L2: f32 = 1e-4;
/// A reason names at most this many features.
const REASON_PARTS: usize = 3;

/// Why bytes are not a model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("not a Chatter lead model (the file does not start with CHLM)")]
    NotAModel,
    #[error("model format version {0} is not known to this build (it reads version 1)")]
    Version(u8),
    #[error("the model's table size 2^{0} is out of range (8..=24)")]
    Bits(u8),
    #[error("the model is truncated or has extra bytes: {got} bytes, expected {expected}")]
    Length { got: usize, expected: usize },
    #[error("the model holds a weight that is not a finite number")]
    NotFinite,
}

/// Logistic regression over hashed features.
#[derive(Clone, PartialEq)]
pub struct LeadModel {
    bits: u8,
    bias: f32,
    weights: Vec<f32>,
    marks: u32,
}

impl std::fmt::Debug for LeadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeadModel")
            .field("bits", &self.bits)
            .field("bias", &self.bias)
            .field("marks", &self.marks)
            .finish_non_exhaustive()
    }
}

impl Default for LeadModel {
    fn default() -> Self {
        LeadModel::empty(DEFAULT_BITS)
    }
}

impl LeadModel {
    /// A model that knows nothing (every score 0.5).
    pub fn empty(bits: u8) -> LeadModel {
        LeadModel {
            bits,
            bias: 0.0,
            weights: vec![0.0; 1 << bits],
            marks: 0,
        }
    }

    /// Trains a new model on labelled texts: `epochs` passes in a fixed shuffled order (the
    /// same data gives the same model).
    pub fn train<'a>(examples: impl IntoIterator<Item = (&'a str, bool)>, epochs: usize) -> Self {
        let mut model = LeadModel::default();
        model.train_more(examples, epochs);
        model
    }

    /// More training passes over labelled texts on top of what the model knows.
    pub fn train_more<'a>(
        &mut self,
        examples: impl IntoIterator<Item = (&'a str, bool)>,
        epochs: usize,
    ) {
        let data: Vec<(Extracted, bool)> = examples
            .into_iter()
            .map(|(text, lead)| (extract(text, self.bits), lead))
            .collect();
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for epoch in 0..epochs {
            // Fisher–Yates with a fixed xorshift: reproducible without a rand dependency.
            for i in (1..order.len()).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                order.swap(i, (seed % (i as u64 + 1)) as usize);
            }
            let rate = TRAIN_RATE / (1.0 + epoch as f32 * 0.3);
            for &i in &order {
                let (features, lead) = &data[i];
                self.step(features, *lead, rate);
            }
        }
    }

    /// How many marks the model has learnt since it was trained.
    pub fn marks(&self) -> u32 {
        self.marks
    }

    /// The probability that a text is a lead.
    pub fn score(&self, text: &str) -> f32 {
        sigmoid(self.logit(&extract(text, self.bits)))
    }

    /// The verdict with its reason.
    pub fn verdict(&self, text: &str) -> Verdict {
        let features = extract(text, self.bits);
        let score = sigmoid(self.logit(&features));
        let lead = score >= 0.5;
        Verdict {
            lead,
            score,
            reason: self.reason(&features, lead),
            backend: "embedded",
        }
    }

    fn logit(&self, e: &Extracted) -> f32 {
        self.bias
            + e.features
                .iter()
                .map(|f| self.weights[f.index as usize] * f.value)
                .sum::<f32>()
    }

    fn step(&mut self, e: &Extracted, lead: bool, rate: f32) {
        let p = sigmoid(self.logit(e));
        let gradient = p - if lead { 1.0 } else { 0.0 };
        for f in &e.features {
            let w = &mut self.weights[f.index as usize];
            *w -= rate * (gradient * f.value + L2 * *w);
        }
        self.bias -= rate * gradient * 0.1;
    }

    /// The features that pushed hardest towards the verdict, as a line of Russian: intents by
    /// their names, words and word pairs quoted as written.
    fn reason(&self, e: &Extracted, lead: bool) -> String {
        // Sum per word, word pair and intent first; only the winners are formatted.
        let n = e.words.len();
        let mut sums = vec![0.0f32; 2 * n];
        let mut intents: Vec<(Origin, f32)> = Vec::new();
        for f in &e.features {
            let c = self.weights[f.index as usize] * f.value;
            match f.origin {
                Origin::Word(i) => sums[i as usize] += c,
                Origin::Bigram(i) => sums[n + i as usize] += c,
                Origin::Intent(_) => intents.push((f.origin, c)),
            }
        }
        let sign = if lead { 1.0 } else { -1.0 };
        let mut parts: Vec<(Origin, f32)> = sums
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let at = (i % n.max(1)) as u16;
                let origin = if i < n {
                    Origin::Word(at)
                } else {
                    Origin::Bigram(at)
                };
                (origin, c)
            })
            .chain(intents)
            .filter(|(_, c)| c * sign > 0.05)
            .collect();
        parts.sort_by(|a, b| (b.1 * sign).total_cmp(&(a.1 * sign)));
        let mut named: Vec<String> = Vec::with_capacity(REASON_PARTS);
        for (origin, _) in parts {
            let label = match origin {
                Origin::Intent(i) => i.label().to_owned(),
                Origin::Word(i) => format!("«{}»", e.words[i as usize]),
                Origin::Bigram(i) => {
                    format!("«{} {}»", e.words[i as usize], e.words[i as usize + 1])
                }
            };
            if !named.contains(&label) {
                named.push(label);
                if named.len() == REASON_PARTS {
                    break;
                }
            }
        }
        let head = if lead {
            "похоже на запрос клиента"
        } else {
            "не похоже на запрос клиента"
        };
        if named.is_empty() {
            format!("{head}: ничего определённого")
        } else {
            format!("{head}: {}", named.join(", "))
        }
    }

    /// The model as bytes (see the module documentation for the format).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.weights.len() * 4);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(self.bits);
        out.extend_from_slice(&self.marks.to_le_bytes());
        out.extend_from_slice(&self.bias.to_le_bytes());
        for w in &self.weights {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Reads a model written by [`LeadModel::to_bytes`]; anything else is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<LeadModel, ModelError> {
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(ModelError::NotAModel);
        }
        if bytes[4] != VERSION {
            return Err(ModelError::Version(bytes[4]));
        }
        let bits = bytes[5];
        if !(8..=24).contains(&bits) {
            return Err(ModelError::Bits(bits));
        }
        let expected = HEADER + (4usize << bits);
        if bytes.len() != expected {
            return Err(ModelError::Length {
                got: bytes.len(),
                expected,
            });
        }
        let f32_at = |at: usize| {
            f32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let marks = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
        let bias = f32_at(10);
        let weights: Vec<f32> = (0..1usize << bits)
            .map(|i| f32_at(HEADER + i * 4))
            .collect();
        if !bias.is_finite() || weights.iter().any(|w| !w.is_finite()) {
            return Err(ModelError::NotFinite);
        }
        Ok(LeadModel {
            bits,
            bias,
            weights,
            marks,
        })
    }
}

impl LeadClassifier for LeadModel {
    fn id(&self) -> &'static str {
        "embedded"
    }

    fn classify(&self, text: &str) -> Verdict {
        self.verdict(text)
    }
}

impl Trainable for LeadModel {
    fn learn(&mut self, text: &str, lead: bool) {
        let features = extract(text, self.bits);
        self.step(&features, lead, MARK_RATE);
        self.marks = self.marks.saturating_add(1);
    }

    fn snapshot(&self) -> Vec<u8> {
        self.to_bytes()
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
