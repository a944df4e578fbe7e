//! The keyword stage: the cheap filter that runs on every message of a watched chat before the
//! classifier. A source's [`KeywordRules`] are compiled once into a [`KeywordMatcher`]:
//!
//! - a keyword is a word ("сантехник": any form with the same Snowball stem, ё = е), a phrase
//!   ("нужен сантехник": those stems on consecutive words) or has `prefix*` words ("сантех*");
//! - regexes run on the folded text (lower case, ё → е), case-insensitive; one that does not
//!   compile is refused with its position;
//! - stop-words use the keyword syntax; any of them drops the message;
//! - a minimum length in characters.
//!
//! Speed: a word is only stemmed when a keyword can match it. Russian Snowball only ever cuts
//! endings, so a word whose stem equals a keyword's stem starts with that stem; words are
//! looked up by their first letter and checked with `starts_with` first, which rejects almost
//! all of them without stemming.

use chatter_domain::stem::{fold, stem};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;

/// A source's keyword settings as the user writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeywordRules {
    /// Words, phrases and `prefix*` words; any one makes a message a candidate.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Regular expressions over the folded text; any one makes a message a candidate.
    #[serde(default)]
    pub regexes: Vec<String>,
    /// Same syntax as keywords; any one drops the message.
    #[serde(default)]
    pub stop_words: Vec<String>,
    /// Messages shorter than this many characters are dropped (0: no minimum).
    #[serde(default)]
    pub min_length: usize,
}

/// A rule the matcher cannot use, naming the entry and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}[{index}] «{entry}»: {message}")]
pub struct KeywordError {
    /// `keywords`, `regexes` or `stop_words`.
    pub field: &'static str,
    /// The entry's place in its list (from 0).
    pub index: usize,
    pub entry: String,
    pub message: String,
    /// Byte offset in the entry where a regex stops parsing.
    pub position: Option<usize>,
}

/// What the keyword stage says about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeywordVerdict {
    /// Passes on to the classifier; the entries that matched (keywords as written, regexes as
    /// `/pattern/`), empty when the rules have neither keywords nor regexes.
    Candidate {
        matched: Vec<String>,
    },
    TooShort {
        length: usize,
        minimum: usize,
    },
    /// A stop-word matched (as written in the rules).
    Stopped {
        stop_word: String,
    },
    NoMatch,
}

impl KeywordVerdict {
    pub fn is_candidate(&self) -> bool {
        matches!(self, KeywordVerdict::Candidate { .. })
    }
}

#[derive(Debug, Clone)]
enum Part {
    Stem(String),
    Prefix(String),
}

impl Part {
    fn head(&self) -> Option<char> {
        match self {
            Part::Stem(s) | Part::Prefix(s) => s.chars().next(),
        }
    }

    fn matches(&self, word: &str) -> bool {
        match self {
            Part::Prefix(p) => word.starts_with(p.as_str()),
            Part::Stem(s) => {
                let russian = word.chars().all(|c| matches!(c, 'а'..='я'));
                // Russian stems are prefixes of their words (see the module header), and keep
                // the word up to its first vowel (Snowball only cuts inside RV, the part after
                // it): both are checked before stemming. Other scripts are stemmed outright.
                let plausible = !russian
                    || (word.starts_with(s.as_str()) && s.len() >= through_first_vowel(word));
                plausible && stem(word) == *s
            }
        }
    }
}

/// Bytes of a Russian word up to and including its first vowel (all of it when it has none).
fn through_first_vowel(word: &str) -> usize {
    word.char_indices()
        .find(|(_, c)| matches!(c, 'а' | 'е' | 'и' | 'о' | 'у' | 'ы' | 'э' | 'ю' | 'я'))
        .map_or(word.len(), |(i, c)| i + c.len_utf8())
}

#[derive(Debug, Clone)]
struct Term {
    written: String,
    parts: Vec<Part>,
}

/// Terms indexed by the first letter of their first part: a direct table for Latin and
/// Russian letters and digits (no hashing on the hot path), a map for anything else.
#[derive(Debug, Clone, Default)]
struct Terms {
    terms: Vec<Term>,
    by_slot: Vec<Vec<usize>>,
    by_other: HashMap<char, Vec<usize>>,
}

/// Slots of the direct table: a–z, а–я, 0–9.
const SLOTS: usize = 26 + 32 + 10;

fn slot(c: char) -> Option<usize> {
    match c {
        'a'..='z' => Some(c as usize - 'a' as usize),
        'а'..='я' => Some(26 + c as usize - 'а' as usize),
        '0'..='9' => Some(58 + c as usize - '0' as usize),
        _ => None,
    }
}

/// The same folding as [`fold`] (lower case, ё → е), with a shortcut for ASCII and Russian
/// letters, which are nearly all of a Russian chat message.
fn fast_fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            'А'..='Я' => out.push(char::from_u32(c as u32 + 32).unwrap_or(c)),
            'ё' | 'Ё' => out.push('е'),
            c if c.is_ascii() || matches!(c, 'а'..='я') => out.push(c),
            c => out.extend(c.to_lowercase().map(|l| if l == 'ё' { 'е' } else { l })),
        }
    }
    out
}

impl Terms {
    fn compile(field: &'static str, entries: &[String]) -> Result<Terms, Vec<KeywordError>> {
        let mut out = Terms::default();
        let mut errors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match parse_term(entry) {
                Ok(term) => {
                    if let Some(head) = term.parts[0].head() {
                        let at = out.terms.len();
                        match slot(head) {
                            Some(i) => {
                                out.by_slot.resize(SLOTS, Vec::new());
                                out.by_slot[i].push(at);
                            }
                            None => out.by_other.entry(head).or_default().push(at),
                        }
                        out.terms.push(term);
                    }
                }
                Err(message) => errors.push(KeywordError {
                    field,
                    index,
                    entry: entry.clone(),
                    message,
                    position: None,
                }),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Every term that matches somewhere in the words, in rule order; stops at the first when
    /// `first_only`.
    fn find(&self, words: &[&str], first_only: bool) -> Vec<usize> {
        let mut hits: Vec<usize> = Vec::new();
        for (i, word) in words.iter().enumerate() {
            let Some(head) = word.chars().next() else {
                continue;
            };
            let candidates = match slot(head) {
                Some(i) => self.by_slot.get(i),
                None => self.by_other.get(&head),
            };
            let Some(candidates) = candidates else {
                continue;
            };
            for &t in candidates {
                if hits.contains(&t) {
                    continue;
                }
                let parts = &self.terms[t].parts;
                let fits = i + parts.len() <= words.len()
                    && parts.iter().zip(&words[i..]).all(|(p, w)| p.matches(w));
                if fits {
                    hits.push(t);
                    if first_only {
                        return hits;
                    }
                }
            }
        }
        hits.sort_unstable();
        hits
    }
}

fn parse_term(entry: &str) -> Result<Term, String> {
    let folded = fold(entry.trim());
    let mut parts = Vec::new();
    // Split like message texts are (on anything but letters and digits), so «з/п» is the
    // phrase «з п» and matches the text «з/п».
    for raw in folded.split(|c: char| !c.is_alphanumeric() && c != '*') {
        let (body, prefix) = match raw.strip_suffix('*') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        if body.contains('*') {
            return Err("«*» may only end a word (prefix*): remove it from the middle".into());
        }
        if body.is_empty() {
            if prefix {
                return Err("«*» needs a beginning of a word before it (e.g. «сантех*»)".into());
            }
            continue;
        }
        if prefix {
            if body.chars().count() < 2 {
                return Err("a prefix needs at least 2 letters before «*»".into());
            }
            parts.push(Part::Prefix(body.to_owned()));
        } else {
            parts.push(Part::Stem(stem(body)));
        }
    }
    if parts.is_empty() {
        return Err("empty keyword: write a word, a phrase or a prefix*".into());
    }
    Ok(Term {
        written: entry.trim().to_owned(),
        parts,
    })
}

/// [`KeywordRules`] compiled for matching many messages.
#[derive(Debug, Clone)]
pub struct KeywordMatcher {
    keywords: Terms,
    stop_words: Terms,
    regexes: Vec<(String, regex::Regex)>,
    min_length: usize,
}

impl KeywordMatcher {
    /// Compiles the rules; every unusable entry is reported, not only the first.
    pub fn compile(rules: &KeywordRules) -> Result<KeywordMatcher, Vec<KeywordError>> {
        let mut errors = Vec::new();
        let keywords = Terms::compile("keywords", &rules.keywords).unwrap_or_else(|e| {
            errors.extend(e);
            Terms::default()
        });
        let stop_words = Terms::compile("stop_words", &rules.stop_words).unwrap_or_else(|e| {
            errors.extend(e);
            Terms::default()
        });
        let mut regexes = Vec::new();
        for (index, pattern) in rules.regexes.iter().enumerate() {
            match compile_regex(pattern) {
                Ok(re) => regexes.push((format!("/{pattern}/"), re)),
                Err((message, position)) => errors.push(KeywordError {
                    field: "regexes",
                    index,
                    entry: pattern.clone(),
                    message,
                    position,
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(KeywordMatcher {
            keywords,
            stop_words,
            regexes,
            min_length: rules.min_length,
        })
    }

    /// The verdict on one message: length, then stop-words, then keywords and regexes.
    pub fn check(&self, text: &str) -> KeywordVerdict {
        if self.min_length > 0 {
            let length = text.trim().chars().count();
            if length < self.min_length {
                return KeywordVerdict::TooShort {
                    length,
                    minimum: self.min_length,
                };
            }
        }
        let folded = fast_fold(text);
        let words: Vec<&str> = folded
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        if let Some(&t) = self.stop_words.find(&words, true).first() {
            return KeywordVerdict::Stopped {
                stop_word: self.stop_words.terms[t].written.clone(),
            };
        }
        if self.keywords.is_empty() && self.regexes.is_empty() {
            return KeywordVerdict::Candidate {
                matched: Vec::new(),
            };
        }
        let mut matched: Vec<String> = self
            .keywords
            .find(&words, false)
            .into_iter()
            .map(|t| self.keywords.terms[t].written.clone())
            .collect();
        for (written, re) in &self.regexes {
            if re.is_match(&folded) {
                matched.push(written.clone());
            }
        }
        if matched.is_empty() {
            KeywordVerdict::NoMatch
        } else {
            KeywordVerdict::Candidate { matched }
        }
    }
}

/// Compiles a regex the way messages are matched (folded, case-insensitive); an error carries
/// the byte offset in the pattern where parsing stopped.
fn compile_regex(pattern: &str) -> Result<regex::Regex, (String, Option<usize>)> {
    if pattern.is_empty() {
        return Err((
            "an empty pattern matches everything: leave it out instead".into(),
            None,
        ));
    }
    // ё → е keeps byte offsets of everything but ё itself (both are two bytes in UTF-8).
    let folded: String = pattern
        .chars()
        .map(|c| match c {
            'ё' => 'е',
            'Ё' => 'Е',
            c => c,
        })
        .collect();
    let parsed = regex_syntax::ParserBuilder::new()
        .case_insensitive(true)
        .unicode(true)
        .build()
        .parse(&folded);
    let failure = match &parsed {
        Err(regex_syntax::Error::Parse(e)) => Some((e.kind().to_string(), *e.span())),
        Err(regex_syntax::Error::Translate(e)) => Some((e.kind().to_string(), *e.span())),
        Err(e) => return Err((e.to_string(), None)),
        Ok(_) => None,
    };
    if let Some((kind, span)) = failure {
        let mut message = kind;
        let _ = write!(
            message,
            " (at character {}): fix the pattern there",
            span.start.column
        );
        return Err((message, Some(span.start.offset)));
    }
    regex::RegexBuilder::new(&folded)
        .case_insensitive(true)
        .build()
        .map_err(|e| (e.to_string(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(keywords: &[&str], stop: &[&str], regexes: &[&str], min: usize) -> KeywordMatcher {
        KeywordMatcher::compile(&KeywordRules {
            keywords: keywords.iter().map(|s| s.to_string()).collect(),
            regexes: regexes.iter().map(|s| s.to_string()).collect(),
            stop_words: stop.iter().map(|s| s.to_string()).collect(),
            min_length: min,
        })
        .expect("rules compile")
    }

    fn matched(m: &KeywordMatcher, text: &str) -> Vec<String> {
        match m.check(text) {
            KeywordVerdict::Candidate { matched } => matched,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn word_forms_match_by_stem_and_yo_is_e() {
        let m = matcher(&["сантехник", "ёлка", "плитка"], &[], &[], 0);
        assert_eq!(matched(&m, "Ищу сантехника на завтра"), ["сантехник"]);
        assert_eq!(matched(&m, "Сантехнику позвонили?"), ["сантехник"]);
        assert_eq!(
            matched(&m, "купили ЕЛКУ и плиткой обложили"),
            ["ёлка", "плитка"]
        );
        assert_eq!(m.check("Ищу электрика"), KeywordVerdict::NoMatch);
        // A word that starts like the stem but stems differently does not match.
        assert_eq!(m.check("сантехническая смесь"), KeywordVerdict::NoMatch);
    }

    #[test]
    fn phrases_need_consecutive_words_and_prefixes_any_ending() {
        let m = matcher(&["нужен сантехник", "сантех*"], &[], &[], 0);
        assert_eq!(
            matched(&m, "Срочно нужен сантехник!"),
            ["нужен сантехник", "сантех*"]
        );
        assert_eq!(matched(&m, "нужен хороший сантехник"), ["сантех*"]);
        assert_eq!(matched(&m, "сантехническая смесь"), ["сантех*"]);
        let phrase_only = matcher(&["нужен сантехник"], &[], &[], 0);
        assert_eq!(
            phrase_only.check("нужен хороший сантехник"),
            KeywordVerdict::NoMatch
        );
        assert_eq!(
            matched(&phrase_only, "НУЖЕН сантехнику"),
            ["нужен сантехник"],
            "each word of a phrase matches by its stem"
        );
    }

    #[test]
    fn stop_words_and_minimum_length_drop_messages() {
        let m = matcher(&["сантехник"], &["вакансия", "з/п"], &[], 12);
        assert_eq!(
            m.check("сантехник"),
            KeywordVerdict::TooShort {
                length: 9,
                minimum: 12
            }
        );
        assert_eq!(
            m.check("Вакансии: сантехник в УК"),
            KeywordVerdict::Stopped {
                stop_word: "вакансия".into()
            }
        );
        assert!(m.check("Нужен сантехник сегодня").is_candidate());
    }

    #[test]
    fn regexes_match_folded_text_and_a_bad_one_is_refused_with_its_position() {
        let m = matcher(&[], &[], &[r"кто\s+(сделает|возьм[её]тся)"], 0);
        assert_eq!(
            matched(&m, "Кто возьмётся перенести радиатор?"),
            [r"/кто\s+(сделает|возьм[её]тся)/"]
        );
        assert_eq!(
            m.check("Кто знает, когда дадут воду?"),
            KeywordVerdict::NoMatch
        );
        let errors = KeywordMatcher::compile(&KeywordRules {
            keywords: vec!["сантехник".into()],
            regexes: vec!["ok".into(), "(ремонт|отделка".into()],
            ..KeywordRules::default()
        })
        .expect_err("an unclosed group is refused");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "regexes");
        assert_eq!(errors[0].index, 1);
        assert_eq!(errors[0].position, Some(0), "{}", errors[0]);
        let errors = KeywordMatcher::compile(&KeywordRules {
            regexes: vec!["цена[".into()],
            ..KeywordRules::default()
        })
        .expect_err("an unclosed class is refused");
        assert_eq!(errors[0].position, Some("цена".len()), "{}", errors[0]);
        assert!(errors[0].to_string().contains("at character 5"));
    }

    #[test]
    fn unusable_keywords_are_all_reported() {
        let errors = KeywordMatcher::compile(&KeywordRules {
            keywords: vec!["".into(), "*".into(), "сан*тех".into(), "ok".into()],
            stop_words: vec!["а*".into()],
            ..KeywordRules::default()
        })
        .expect_err("bad entries");
        let places: Vec<(&str, usize)> = errors.iter().map(|e| (e.field, e.index)).collect();
        assert_eq!(
            places,
            [
                ("keywords", 0),
                ("keywords", 1),
                ("keywords", 2),
                ("stop_words", 0)
            ]
        );
    }

    /// The shortcut before stemming never rejects a word the stemmer would match.
    #[test]
    fn the_vowel_shortcut_agrees_with_the_stemmer() {
        for r in crate::prior::fixtures() {
            for w in fold(&r.text).split(|c: char| !c.is_alphanumeric()) {
                if !w.is_empty() && w.chars().all(|c| matches!(c, 'а'..='я')) {
                    let s = stem(w);
                    assert!(
                        w.starts_with(&s) && s.len() >= through_first_vowel(w),
                        "{w} → {s}"
                    );
                }
            }
        }
        let m = matcher(&["з/п"], &[], &[], 0);
        assert!(m.check("з/п от 70 000").is_candidate());
        assert_eq!(m.check("завтра заберу"), KeywordVerdict::NoMatch);
    }

    #[test]
    fn the_fast_folding_is_the_domain_folding() {
        for r in crate::prior::fixtures() {
            assert_eq!(fast_fold(&r.text), fold(&r.text), "{}", r.text);
        }
        let odd = "ЁЛКА Straße İstanbul ΣΟΦΙΑ ǅ 💅 Ünïcödé";
        assert_eq!(fast_fold(odd), fold(odd));
    }

    #[test]
    fn no_keywords_means_every_long_enough_message_is_a_candidate() {
        let m = matcher(&[], &["казино"], &[], 3);
        assert!(m.check("привет всем").is_candidate());
        assert!(!m.check("казино").is_candidate());
    }
}
