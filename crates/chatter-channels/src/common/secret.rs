//! Webhook secrets: made fresh, and compared without leaking them through timing.

use rand::Rng;

/// Compares a secret a request carries (Telegram's `X-Telegram-Bot-Api-Secret-Token`, Max's
/// `X-Max-Bot-Api-Secret`, VK's callback `secret`, an SMS callback path token) with ours in
/// constant time (for equal lengths; a length mismatch is not secret). No secret given or an
/// empty one never matches.
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

/// A fresh webhook secret: 48 characters of `[A-Za-z0-9_-]` (≈288 bits) from the thread-local
/// CSPRNG. Every provider accepts this alphabet and length (Telegram's `secret_token`, Max's
/// 5–256, a URL path segment).
pub fn new_secret_token() -> String {
    let mut rng = rand::thread_rng();
    (0..48)
        .map(|_| char::from(SECRET_ALPHABET[rng.gen_range(0..SECRET_ALPHABET.len())]))
        .collect()
}

/// A fresh secret of `chars` lower-case hex digits (at most 64) from the thread-local CSPRNG,
/// for providers whose secrets are kept to that shape (VK's callback secret, Avito's path
/// token, WhatsApp's verify token).
pub fn new_hex_secret(chars: usize) -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill(&mut b);
    let mut s = hex::encode(b);
    s.truncate(chars);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn hex_secrets_have_the_length_asked() {
        for n in [32, 40, 64] {
            let s = new_hex_secret(n);
            assert_eq!(s.len(), n);
            assert!(s.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(new_hex_secret(32), new_hex_secret(32));
    }
}
