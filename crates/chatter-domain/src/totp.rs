//! RFC 6238 time-based one-time passwords (SHA-1, 6 digits, 30 s), as authenticator apps
//! expect them, and the RFC 4648 base32 their secrets are written in.

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const STEP_SECS: i64 = 30;

/// The 6-digit code for the 30-second step that contains `unix_secs`.
pub fn code_at(secret: &[u8], unix_secs: i64) -> String {
    hotp(secret, (unix_secs.max(0) / STEP_SECS) as u64)
}

fn hotp(secret: &[u8], counter: u64) -> String {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[19] & 0x0f) as usize;
    let bin = (u32::from(h[off]) & 0x7f) << 24
        | u32::from(h[off + 1]) << 16
        | u32::from(h[off + 2]) << 8
        | u32::from(h[off + 3]);
    format!("{:06}", bin % 1_000_000)
}

/// Checks a code with one step of clock drift either way. Returns the matched step, so a
/// caller can refuse a step that was already used (replay).
pub fn verify(secret: &[u8], code: &str, unix_secs: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let step = unix_secs / STEP_SECS;
    (step - 1..=step + 1).find(|s| *s >= 0 && hotp(secret, *s as u64) == code)
}

/// A new random 20-byte secret.
pub fn new_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut s = vec![0u8; 20];
    rand::thread_rng().fill_bytes(&mut s);
    s
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Base32 without padding, as used in `otpauth://` URIs.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(B32[((buf >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(B32[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The `otpauth://` URI an authenticator app scans or imports.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'@' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        // RFC 6238 appendix B, SHA-1, last 6 digits.
        assert_eq!(code_at(secret, 59), "287082");
        assert_eq!(code_at(secret, 1111111109), "081804");
        assert_eq!(code_at(secret, 2000000000), "279037");
    }

    #[test]
    fn verify_allows_one_step_of_drift_only() {
        let secret = b"12345678901234567890";
        let c = code_at(secret, 1_000_000);
        assert!(verify(secret, &c, 1_000_000 + 30).is_some());
        assert!(verify(secret, &c, 1_000_000 + 90).is_none());
        assert!(verify(secret, "12345", 1_000_000).is_none());
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
    }
}

/// Decodes base32 (as stored and shown); invalid characters are skipped.
pub fn from_stored(b32: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in b32.bytes() {
        let Some(v) = B32.iter().position(|&x| x == c.to_ascii_uppercase()) else {
            continue;
        };
        buf = (buf << 5) | v as u32;
        bits += 5;
        if bits >= 8 {
            out.push((buf >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

#[cfg(test)]
mod decode_tests {
    #[test]
    fn base32_round_trip() {
        let s = super::new_secret();
        assert_eq!(super::from_stored(&super::base32(&s)), s);
    }
}
