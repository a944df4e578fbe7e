//! Splitting a long text into the parts a provider accepts (each kind has its own limit).

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
}
