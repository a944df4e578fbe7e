//! Error text every kind produces the same way: network failures, oversized files, and the
//! scrubbing that keeps tokens, keys and passwords out of any message that leaves this crate
//! (error messages are logged and shown on the Sources page, so this is a security property).

use crate::ChannelError;

/// What a secret is replaced with in an error message.
const MARK: &str = "<token>";

/// Replaces every non-empty secret in the error's message, whatever put it there (a URL in a
/// reqwest error, a provider echoing the request). Every client passes each of its errors
/// through this before returning it.
pub fn scrub(e: ChannelError, secrets: &[&str]) -> ChannelError {
    let clean = |mut s: String| {
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            s = s.replace(secret, MARK);
        }
        s
    };
    match e {
        ChannelError::Transient(m) => ChannelError::Transient(clean(m)),
        ChannelError::RateLimited {
            retry_after_secs,
            message,
        } => ChannelError::RateLimited {
            retry_after_secs,
            message: clean(message),
        },
        ChannelError::Unauthorized(m) => ChannelError::Unauthorized(clean(m)),
        ChannelError::Permanent(m) => ChannelError::Permanent(clean(m)),
        ChannelError::Blocked(m) => ChannelError::Blocked(clean(m)),
    }
}

/// A `Permanent` refusal whose message `says_blocked` is `Blocked` (the customer blocked us or
/// disallowed messages); anything else is returned as it is. Each kind calls this where it
/// classifies the provider's refusals, with the words its provider uses.
pub fn blocked_if(e: ChannelError, says_blocked: impl Fn(&str) -> bool) -> ChannelError {
    match e {
        ChannelError::Permanent(m) if says_blocked(&m) => ChannelError::Blocked(m),
        e => e,
    }
}

/// Network trouble of any kind (refused, reset, timed out, body cut off) is worth a retry.
/// The URL (it may hold a token or a long-poll key) is dropped before the error is rendered;
/// `what` names the call that failed.
pub fn transport_error(what: &str, e: reqwest::Error) -> ChannelError {
    let timed_out = e.is_timeout();
    let mut msg = format!("{what}: {}", error_chain(&e.without_url()));
    if timed_out && !msg.contains("timed out") {
        msg.push_str(" (timed out)");
    }
    ChannelError::Transient(msg)
}

/// An error and all its sources, `: `-separated (reqwest's own text hides the cause).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// A download refused for its size: `limit` is the most bytes a kind accepts.
pub fn too_large(limit: usize) -> ChannelError {
    ChannelError::Permanent(format!(
        "download: the file is larger than {} MB",
        limit / (1024 * 1024)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_secret_from_every_class() {
        let (key, password) = ("k3y-value-123", "pa55-word-456");
        for e in [
            ChannelError::Transient(format!("a {key} b {password}")),
            ChannelError::Permanent(format!("/bot{key}/getMe")),
            ChannelError::Unauthorized(password.into()),
            ChannelError::RateLimited {
                retry_after_secs: 1,
                message: key.into(),
            },
        ] {
            let s = scrub(e, &[key, "", password]).to_string();
            assert!(!s.contains(key) && !s.contains(password), "{s}");
        }
        assert_eq!(
            scrub(ChannelError::Permanent("x".into()), &[""]),
            ChannelError::Permanent("x".into())
        );
    }

    #[test]
    fn only_permanent_refusals_that_say_so_are_blocked() {
        let says = |m: &str| m.contains("blocked");
        assert_eq!(
            blocked_if(ChannelError::Permanent("user blocked".into()), says),
            ChannelError::Blocked("user blocked".into())
        );
        for e in [
            ChannelError::Permanent("chat not found".into()),
            ChannelError::Transient("blocked".into()),
            ChannelError::Unauthorized("blocked".into()),
        ] {
            assert_eq!(blocked_if(e.clone(), says), e);
        }
        assert!(!ChannelError::Blocked("x".into()).is_retryable());
        assert_eq!(
            ChannelError::Blocked("x".into()).to_string(),
            ChannelError::Permanent("x".into()).to_string()
        );
    }

    #[test]
    fn too_large_names_the_limit_in_megabytes() {
        assert_eq!(
            too_large(64 * 1024 * 1024),
            ChannelError::Permanent("download: the file is larger than 64 MB".into())
        );
    }
}
