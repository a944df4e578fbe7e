//! The lead filter of Telegram parsing (issue 13): which messages of a watched group chat are a
//! customer's request ("нужен сантехник в Химках срочно") rather than an ad, spam, a vacancy or
//! chatter. Cheapest first:
//!
//! - [`keywords`]: a compiled keyword stage (stems, phrases, `prefix*`, regexes, stop-words,
//!   minimum length) that decides whether a message is a candidate at all;
//! - [`model`]: the embedded classifier, logistic regression over hashed features
//!   ([`features`]), trainable from marks and stored as bytes;
//! - [`prior`]: the built-in model, trained on first use from the fixture set kept in this
//!   crate (`fixtures/leads.jsonl`, labelling rules in `fixtures/README.md`);
//! - [`eval`]: precision, recall and F1 of a classifier on labelled messages;
//! - [`llm`]: the optional OpenAI-compatible backend and the cascade that asks it only where
//!   the embedded model is unsure.
//!
//! No database and no clock; the network only in [`llm`].

pub mod eval;
pub mod features;
pub mod keywords;
pub mod llm;
pub mod model;
pub mod prior;

pub use keywords::{KeywordError, KeywordMatcher, KeywordRules, KeywordVerdict};
pub use model::{LeadModel, ModelError};

/// What a classifier says about one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The message is a customer's request worth a lead.
    pub lead: bool,
    /// The classifier's confidence that it is a lead, 0..1 (`lead` is `score >= 0.5`).
    pub score: f32,
    /// One line in Russian a manager can read: which features decided it.
    pub reason: String,
    /// Which backend decided (`"embedded"`, later `"llm"`).
    pub backend: &'static str,
}

/// A lead classifier. The embedded model is one; an LLM backend or a cascade of both would be
/// others, with the same verdict shape.
pub trait LeadClassifier: Send + Sync {
    /// A short stable name of the backend.
    fn id(&self) -> &'static str;
    /// The verdict on one message text.
    fn classify(&self, text: &str) -> Verdict;
}

/// A classifier that learns from managers' marks («лид» / «не лид») and can be stored.
pub trait Trainable {
    /// One mark: this text is (or is not) a lead.
    fn learn(&mut self, text: &str, lead: bool);
    /// The model as bytes, for [`model::LeadModel::from_bytes`].
    fn snapshot(&self) -> Vec<u8>;
}
