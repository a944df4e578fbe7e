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
