//! Pure helpers: splitting long texts to Telegram's limit, webhook secret tokens.

use rand::Rng;

/// Splits `text` into parts of at most `max_chars` characters (Unicode scalar values, not bytes).
///
/// A cut prefers the last newline in the second half of the window, then the last space there,
/// then any newline or space, and only then the hard limit. The separator stays at the end of
/// the earlier part, so the parts concatenate back to `text`; parts that would be only whitespace
/// are dropped (Telegram refuses an empty text). An empty or all-whitespace text gives no parts.
pub fn split_text(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        // Byte index just past the first `max_chars` chars, or the whole remainder.
        let Some((window_end, _)) = rest.char_indices().nth(max_chars) else {
            parts.push(rest.to_owned());
            break;
        };
        let window = &rest[..window_end];
        let cut = break_point(window, max_chars).unwrap_or(window_end);
        parts.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    parts.retain(|p| !p.trim().is_empty());
    parts
}

/// Byte index just after the preferred separator in `window`, if there is one worth using.
fn break_point(window: &str, max_chars: usize) -> Option<usize> {
    let half = max_chars / 2;
    let after = |sep: char| {
        window
            .rfind(sep)
            .map(|i| (i + sep.len_utf8(), window[..i].chars().count()))
    };
    let newline = after('\n');
    let space = after(' ');
    let late = |c: Option<(usize, usize)>| c.filter(|(_, chars)| *chars >= half);
    late(newline)
        .or(late(space))
        .or(newline)
        .or(space)
        .map(|(i, _)| i)
        .filter(|i| *i > 0)
}

/// Compares the `X-Telegram-Bot-Api-Secret-Token` header with our secret in constant time
/// (for equal lengths; a length mismatch is not secret). No header or no secret never matches.
pub fn secret_matches(header: Option<&str>, expected: &str) -> bool {
    let Some(header) = header else {
        return false;
    };
    let (a, b) = (header.as_bytes(), expected.as_bytes());
    if a.is_empty() || a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// A fresh `secret_token` for `setWebhook`: 48 characters of `[A-Za-z0-9_-]` (≈288 bits) from
/// the thread-local CSPRNG.
pub fn new_secret_token() -> String {
    let mut rng = rand::thread_rng();
    (0..48)
        .map(|_| char::from(SECRET_ALPHABET[rng.gen_range(0..SECRET_ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 4096;

    fn chars(s: &str) -> usize {
        s.chars().count()
    }

    #[test]
    fn exactly_the_limit_is_one_part() {
        let text = "a".repeat(MAX);
        assert_eq!(split_text(&text, MAX), vec![text]);
    }

    #[test]
    fn five_thousand_chars_are_two_parts_without_loss() {
        let text: String = (0..1000).map(|i| format!("w{:03} ", i % 1000)).collect();
        assert_eq!(chars(&text), 5000);
        let parts = split_text(&text, MAX);
        assert_eq!(parts.len(), 2);
        assert!(chars(&parts[0]) <= MAX);
        assert!(chars(&parts[1]) <= MAX);
        assert_eq!(parts.concat(), text);
        // Cut at a space, not inside a word.
        assert!(
            parts[0].ends_with(' '),
            "{:?}",
            &parts[0][parts[0].len() - 10..]
        );
    }

    #[test]
    fn prefers_a_newline_over_a_later_space() {
        let mut text = "x".repeat(3000);
        text.push('\n');
        text.push_str(&"слово ".repeat(400));
        let parts = split_text(&text, MAX);
        assert_eq!(parts.len(), 2);
        assert_eq!(chars(&parts[0]), 3001);
        assert!(parts[0].ends_with('\n'));
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn russian_text_is_counted_in_chars_not_bytes() {
        // 4096 Cyrillic chars are 8192 bytes: still one message.
        let text = "ж".repeat(MAX);
        assert_eq!(split_text(&text, MAX).len(), 1);

        let text = "Привет мир ".repeat(500); // 5500 chars, 10 000+ bytes
        let parts = split_text(&text, MAX);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| chars(p) <= MAX));
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn a_text_without_separators_is_cut_hard() {
        let text = "я".repeat(2 * MAX + 1);
        let parts = split_text(&text, MAX);
        let lens: Vec<usize> = parts.iter().map(|p| chars(p)).collect();
        assert_eq!(lens, vec![MAX, MAX, 1]);
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn empty_and_blank_texts_have_no_parts() {
        assert!(split_text("", MAX).is_empty());
        assert!(split_text(" \n ", MAX).is_empty());
        assert_eq!(split_text("hi", MAX), vec!["hi".to_owned()]);
    }

    #[test]
    fn secret_matches_only_the_exact_secret() {
        let ours = "abc_DEF-123";
        assert!(secret_matches(Some("abc_DEF-123"), ours));
        assert!(!secret_matches(Some("abc_DEF-124"), ours));
        assert!(!secret_matches(Some("abc_DEF-12"), ours));
        assert!(!secret_matches(Some(""), ours));
        assert!(!secret_matches(None, ours));
        assert!(!secret_matches(Some(""), ""));
    }

    #[test]
    fn secret_tokens_are_48_allowed_chars_and_fresh() {
        let a = new_secret_token();
        let b = new_secret_token();
        assert_eq!(a.len(), 48);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        assert_ne!(a, b);
    }
}
