//! JSON kept in text columns (settings, metadata, attachments, payloads), read back typed. A
//! value that is there but does not read as its type is never taken silently for the default:
//! it is logged with the column and the row, counted (`/metrics`:
//! `chatter_stored_json_unreadable_total`), and only then the caller's fallback is used, so a
//! damaged row shows up instead of quietly losing settings. An empty text is no value at all
//! and reads as the fallback without a word.

use serde::de::DeserializeOwned;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};

/// Stored JSON values that could not be read since this process started.
pub static UNREADABLE: AtomicU64 = AtomicU64::new(0);

/// `text` of `column` in row `row` as `T`, or `T::default()` (logged and counted when `text`
/// is not empty).
pub fn read<T: DeserializeOwned + Default>(column: &str, row: impl Display, text: &str) -> T {
    read_opt(column, row, Some(text)).unwrap_or_default()
}

/// `text` of `column` in row `row` as `T`; `None` when there is no text, or when it does not
/// read (logged and counted).
pub fn read_opt<T: DeserializeOwned>(
    column: &str,
    row: impl Display,
    text: Option<&str>,
) -> Option<T> {
    let text = text?;
    if text.trim().is_empty() {
        return None;
    }
    match serde_json::from_str(text) {
        Ok(v) => Some(v),
        Err(e) => {
            UNREADABLE.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                column,
                row = %row,
                error = %e,
                "a stored JSON value cannot be read; its default is used instead"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn good_values_read_empty_ones_default_and_damaged_ones_are_counted() {
        let before = UNREADABLE.load(Ordering::Relaxed);
        let m: BTreeMap<String, i64> = read("t.c", 1, r#"{"a":1}"#);
        assert_eq!(m.get("a"), Some(&1));
        let empty: BTreeMap<String, i64> = read("t.c", 2, "  ");
        assert!(empty.is_empty());
        assert_eq!(UNREADABLE.load(Ordering::Relaxed), before);
        let damaged: BTreeMap<String, i64> = read("t.c", 3, "{\"a\":");
        assert!(damaged.is_empty());
        assert_eq!(read_opt::<i64>("t.c", 4, Some("\"x\"")), None);
        assert_eq!(read_opt::<i64>("t.c", 5, None), None);
        assert!(UNREADABLE.load(Ordering::Relaxed) >= before + 2);
    }
}
