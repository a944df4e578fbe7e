//! Reading Graph API errors (§5.7): the `{error:{message,code,error_data}}` body, the
//! classification of every failure into a `ChannelError`, and the `(code N)` suffix that lets
//! callers tell a closed 24-hour window from other refusals.

use serde::Deserialize;

use super::OUTSIDE_WINDOW_CODE;
use crate::ChannelError;

/// `retry_after` for the throughput limit (130429, ~80 msg/s per number).
const THROUGHPUT_RETRY_SECS: u64 = 1;
/// `retry_after` for the pair limit (131056, ≈1 message per 6 s to one user).
const PAIR_RETRY_SECS: u64 = 6;
/// `retry_after` for the spam rate limit (131048) and a bare HTTP 429.
const SPAM_RETRY_SECS: u64 = 60;

/// The Graph error code at the end of a classified error's message or a failed status's error
/// text (`… (code 131047)`).
pub fn error_code(message: &str) -> Option<i64> {
    let (_, rest) = message.rsplit_once("(code ")?;
    rest.split_once(')')?.0.parse().ok()
}

/// The send was refused because the customer's 24-hour window is closed (131047): only an
/// approved template may be sent now. True only for `Permanent` errors.
pub fn is_outside_window(e: &ChannelError) -> bool {
    matches!(e, ChannelError::Permanent(m) if error_code(m) == Some(OUTSIDE_WINDOW_CODE))
}

#[derive(Deserialize)]
struct GraphErrorEnvelope {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    #[serde(default)]
    message: String,
    code: Option<i64>,
    error_data: Option<GraphErrorData>,
}

#[derive(Deserialize)]
struct GraphErrorData {
    details: Option<String>,
}

pub(super) fn error_from_body(
    what: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<u64>,
) -> ChannelError {
    match serde_json::from_slice::<GraphErrorEnvelope>(body) {
        Ok(env) => {
            let details = env.error.error_data.and_then(|d| d.details);
            let mut message = env.error.message;
            if let Some(details) = details.filter(|d| !d.is_empty() && !message.contains(d)) {
                message = format!("{message}: {details}");
            }
            classify(
                status,
                env.error.code,
                &format!("{what}: {message}"),
                retry_after,
            )
        }
        // A proxy's HTML page or an empty body: judge by the status alone.
        Err(_) => classify(status, None, &format!("{what}: HTTP {status}"), retry_after),
    }
}

/// Classifies a Graph API failure (§5.7) by its `error.code` and the HTTP status. The message
/// gets ` (code N)` appended when there is a code (read it back with `error_code`).
///
/// | code / status | class |
/// |---|---|
/// | 190, HTTP 401 | `Unauthorized`: the token is invalid or expired |
/// | 10, 200 | `Unauthorized`: the token lacks a permission (the source needs a new token) |
/// | 130429 (throughput), 131056 (pair limit), 131048 (spam limit), HTTP 429 | `RateLimited` (1 s, 6 s, 60 s, 60 s unless `Retry-After` says) |
/// | 131000 (generic), HTTP 5xx | `Transient` |
/// | 131047 (outside the 24 h window) | `Permanent` (`is_outside_window`) |
/// | anything else (100, 131008, 131026, 131051, 132000, 132001, other 4xx) | `Permanent` |
///
/// Network errors and timeouts never reach here: they are always `Transient`.
pub fn classify(
    status: u16,
    code: Option<i64>,
    message: &str,
    retry_after: Option<u64>,
) -> ChannelError {
    let text = match code {
        Some(code) => format!("{message} (code {code})"),
        None => message.to_owned(),
    };
    let limited = |default: u64| ChannelError::RateLimited {
        retry_after_secs: retry_after.unwrap_or(default),
        message: text.clone(),
    };
    match code {
        Some(190) => ChannelError::Unauthorized(format!(
            "the access token is invalid or expired: paste a new system-user token ({text})"
        )),
        Some(10 | 200) => ChannelError::Unauthorized(format!(
            "the access token lacks the whatsapp_business_messaging permission ({text})"
        )),
        Some(130_429) => limited(THROUGHPUT_RETRY_SECS),
        Some(131_056) => limited(PAIR_RETRY_SECS),
        Some(131_048) => limited(SPAM_RETRY_SECS),
        Some(131_000) => ChannelError::Transient(text),
        Some(OUTSIDE_WINDOW_CODE) => ChannelError::Permanent(format!(
            "the customer's 24-hour window is closed: send an approved template ({text})"
        )),
        _ if status == 401 => ChannelError::Unauthorized(format!(
            "the access token was rejected: paste a new system-user token ({text})"
        )),
        _ if status == 429 => limited(SPAM_RETRY_SECS),
        _ if status >= 500 => ChannelError::Transient(text),
        _ => ChannelError::Permanent(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_follows_the_code_table() {
        let e = classify(401, Some(190), "Invalid OAuth access token", None);
        assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
        let e = classify(403, Some(200), "Permissions error", None);
        assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
        assert_eq!(
            classify(429, Some(130_429), "Rate limit hit", None),
            ChannelError::RateLimited {
                retry_after_secs: 1,
                message: "Rate limit hit (code 130429)".into()
            }
        );
        let e = classify(400, Some(131_056), "pair rate limit", Some(9));
        assert!(matches!(
            e,
            ChannelError::RateLimited {
                retry_after_secs: 9,
                ..
            }
        ));
        let e = classify(500, Some(131_000), "Something went wrong", None);
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
        let e = classify(503, None, "HTTP 503", None);
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
        let e = classify(400, Some(131_026), "Message undeliverable", None);
        assert_eq!(error_code(&e.to_string()), Some(131_026));
        assert!(matches!(e, ChannelError::Permanent(_)) && !is_outside_window(&e));
        let e = classify(400, Some(131_047), "Re-engagement message", None);
        assert!(is_outside_window(&e), "{e:?}");
        assert!(e.to_string().contains("24-hour window"), "{e}");
    }
}
