//! Text from outside — a provider's update, a person's form, a query string, an API body —
//! made storable the same way on both databases. PostgreSQL's `text` refuses exactly one code
//! point, U+0000 (SQLite keeps it), and Rust strings cannot hold lone surrogates, so removing
//! NUL is all it takes for a string to store identically everywhere. Identifiers get a length
//! bound too: PostgreSQL's B-tree index rows hold at most 2704 bytes (SQLite has no limit), so
//! a longer external id would store on one database and fail forever on the other.

use std::borrow::Cow;

/// Longest provider identifier (message, chat, sender id) Chatter stores, in bytes: far above
/// any real provider's ids, well under PostgreSQL's index row limit.
pub const MAX_ID_BYTES: usize = 1024;

/// Whether a database refuses `c` in text.
pub fn is_refused(c: char) -> bool {
    c == '\0'
}

/// `s` without the code points a database refuses (borrowed when there are none).
pub fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().any(is_refused) {
        Cow::Owned(s.chars().filter(|c| !is_refused(*c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// Removes, in place, the code points a database refuses.
pub fn clean_in_place(s: &mut String) {
    if s.chars().any(is_refused) {
        s.retain(|c| !is_refused(c));
    }
}

/// Removes refused code points from every string (keys included) of a JSON value.
pub fn clean_json(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => clean_in_place(s),
        Value::Array(a) => a.iter_mut().for_each(clean_json),
        Value::Object(o) => {
            if o.keys().any(|k| k.chars().any(is_refused)) {
                let old = std::mem::take(o);
                for (k, mut x) in old {
                    clean_json(&mut x);
                    o.insert(clean(&k).into_owned(), x);
                }
            } else {
                o.values_mut().for_each(clean_json);
            }
        }
        _ => {}
    }
}

/// Whether `c` is a Unicode bidi embedding, override or isolate (U+202A–U+202E,
/// U+2066–U+2069): one of these in a name would reverse how the text after it displays (in
/// the same line, the next field, the company switcher). Marks (U+200E, U+200F) are harmless.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` without control characters other than line feed and tab (C0, DEL and C1; a carriage
/// return goes too, so CRLF becomes LF): multi-line text people send to customers.
pub fn strip_controls(s: &str) -> Cow<'_, str> {
    let refused = |c: char| c.is_control() && c != '\n' && c != '\t';
    if s.chars().any(refused) {
        Cow::Owned(s.chars().filter(|c| !refused(*c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// Text from outside (a bot's name from its provider) made fit for a one-line name: control
/// characters and bidi controls removed, at most `max` characters.
pub fn one_line_lossy(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Whether an identifier fits `MAX_ID_BYTES`.
pub fn id_fits(id: &str) -> bool {
    id.len() <= MAX_ID_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_removed_and_nothing_else() {
        assert_eq!(clean("a\0b\u{0}c"), "abc");
        assert!(matches!(clean("Привет 👋\t\n"), Cow::Borrowed(_)));
        let mut s = String::from("\0\0Анна\0");
        clean_in_place(&mut s);
        assert_eq!(s, "Анна");
    }

    #[test]
    fn json_strings_and_keys_are_cleaned() {
        let mut v = serde_json::json!({"a\u{0}": ["x\u{0}y", {"t": "\u{0}"}], "n": 1});
        clean_json(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["xy", {"t": ""}], "n": 1}));
    }

    #[test]
    fn ids_are_bounded() {
        assert!(id_fits(&"9".repeat(MAX_ID_BYTES)));
        assert!(!id_fits(&"9".repeat(MAX_ID_BYTES + 1)));
    }
}
