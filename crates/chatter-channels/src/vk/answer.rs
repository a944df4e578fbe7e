//! Reading VK answers (§2.5): a method's `{response}` or `{error}`, Bots Long Poll answers
//! (§2.3), and the classification of every failure into a `ChannelError`.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::{parse_event, LongPoll};
use crate::ChannelError;

const UNAUTHORIZED: &str = "the community token is invalid or revoked: create a new one in the \
     community's settings (Manage → API usage → Access tokens) with the messages, manage, photos \
     and docs rights";
const NOT_A_COMMUNITY_TOKEN: &str = "this is not a community token: create one in the \
     community's settings (Manage → API usage → Access tokens)";

#[derive(Deserialize)]
struct Envelope {
    response: Option<Value>,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    error_code: i64,
    #[serde(default)]
    error_msg: String,
}

/// Classifies a VK error (§2.5) by `error_code`:
///
/// | code | class |
/// |---|---|
/// | 5 | `Unauthorized`: token invalid or revoked (with the fix) |
/// | 27 | `Unauthorized`: not a community token |
/// | 6 | `RateLimited` 1 s (20 requests/s per community token) |
/// | 9 | `RateLimited` 60 s (flood control) |
/// | 14 | `RateLimited` 10 s (captcha: for a bot, a throttle) |
/// | 1, 10 | `Transient` (unknown / internal error) |
/// | 901 (messages from the community disallowed), 902 (privacy settings) | `Blocked` |
/// | 7, 15, 100, 925, anything else | `Permanent` with VK's message |
pub fn classify(error_code: i64, error_msg: &str) -> ChannelError {
    let message = format!("VK error {error_code}: {error_msg}");
    let limited = |secs| ChannelError::RateLimited {
        retry_after_secs: secs,
        message: message.clone(),
    };
    match error_code {
        5 => ChannelError::Unauthorized(format!("{message} ({UNAUTHORIZED})")),
        27 => ChannelError::Unauthorized(format!("{message} ({NOT_A_COMMUNITY_TOKEN})")),
        6 => limited(1),
        9 => limited(60),
        14 => limited(10),
        1 | 10 => ChannelError::Transient(message),
        901 | 902 => ChannelError::Blocked(message),
        _ => ChannelError::Permanent(message),
    }
}

/// Reads one `a_check` answer (§2.3) of HTTP `status` for community `group_id`: the events
/// and the next `ts`, or what to do about a `failed` session.
pub fn parse_long_poll(status: u16, body: &[u8], group_id: i64) -> Result<LongPoll, ChannelError> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) if (200..300).contains(&status) => value,
        _ => return Err(http_status_error("long poll", status)),
    };
    if let Some(failed) = value.get("failed").and_then(Value::as_i64) {
        return match failed {
            1 => match value.get("ts").and_then(ts_string) {
                Some(ts) => Ok(LongPoll::HistoryLost { ts }),
                None => Ok(LongPoll::SessionLost),
            },
            2 => Ok(LongPoll::KeyExpired),
            3 => Ok(LongPoll::SessionLost),
            other => Err(ChannelError::Permanent(format!(
                "long poll: failed {other} (not in the Bots Long Poll API)"
            ))),
        };
    }
    let ts = value
        .get("ts")
        .and_then(ts_string)
        .ok_or_else(|| ChannelError::Transient("long poll: an answer without ts".into()))?;
    let events = value
        .get("updates")
        .and_then(Value::as_array)
        .map(|updates| updates.iter().map(|u| parse_event(u, group_id)).collect())
        .unwrap_or_default();
    Ok(LongPoll::Events { ts, events })
}

/// Reads a method's answer: `response` on success, a classified `error` otherwise. VK answers
/// errors with HTTP 200, so the body decides; a body that is not VK JSON is judged by status.
pub(super) fn decode<T: DeserializeOwned>(
    method: &str,
    status: u16,
    body: &[u8],
) -> Result<T, ChannelError> {
    let env: Envelope = match serde_json::from_slice(body) {
        Ok(env) => env,
        Err(_) => return Err(http_status_error(method, status)),
    };
    if let Some(error) = env.error {
        let e = classify(error.error_code, &error.error_msg);
        return Err(prefix(method, e));
    }
    let Some(response) = env.response else {
        return Err(http_status_error(method, status));
    };
    serde_json::from_value(response).map_err(|e| {
        // Not retryable: the call may well have taken effect (a message sent).
        ChannelError::Permanent(format!("{method}: unexpected response: {e}"))
    })
}

/// A failure told only by the HTTP status (a proxy's page, an empty body).
pub(super) fn http_status_error(what: &str, status: u16) -> ChannelError {
    let message = format!("{what}: HTTP {status} without a VK answer");
    match status {
        429 => ChannelError::RateLimited {
            retry_after_secs: 1,
            message,
        },
        // A 2xx that is not VK JSON is a cut-off body or a proxy in the way.
        200..=299 | 500..=599 | 408 => ChannelError::Transient(message),
        _ => ChannelError::Permanent(message),
    }
}

fn prefix(method: &str, e: ChannelError) -> ChannelError {
    match e {
        ChannelError::Transient(m) => ChannelError::Transient(format!("{method}: {m}")),
        ChannelError::RateLimited {
            retry_after_secs,
            message,
        } => ChannelError::RateLimited {
            retry_after_secs,
            message: format!("{method}: {message}"),
        },
        ChannelError::Unauthorized(m) => ChannelError::Unauthorized(format!("{method}: {m}")),
        ChannelError::Permanent(m) => ChannelError::Permanent(format!("{method}: {m}")),
        ChannelError::Blocked(m) => ChannelError::Blocked(format!("{method}: {m}")),
    }
}

/// `ts` as VK sends it: a string, or a number in some answers.
pub(super) fn ts_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_follows_the_error_table() {
        assert!(matches!(
            classify(5, "User authorization failed"),
            ChannelError::Unauthorized(_)
        ));
        assert!(matches!(
            classify(27, "Group authorization failed"),
            ChannelError::Unauthorized(_)
        ));
        assert_eq!(
            classify(6, "Too many requests per second"),
            ChannelError::RateLimited {
                retry_after_secs: 1,
                message: "VK error 6: Too many requests per second".into()
            }
        );
        assert!(matches!(
            classify(9, "Flood control"),
            ChannelError::RateLimited {
                retry_after_secs: 60,
                ..
            }
        ));
        assert!(matches!(
            classify(14, "Captcha needed"),
            ChannelError::RateLimited { .. }
        ));
        assert!(matches!(
            classify(10, "Internal server error"),
            ChannelError::Transient(_)
        ));
        for code in [7, 15, 100, 925] {
            assert!(
                matches!(classify(code, "x"), ChannelError::Permanent(_)),
                "{code}"
            );
        }
        for code in [901, 902] {
            assert!(
                matches!(classify(code, "x"), ChannelError::Blocked(_)),
                "{code}"
            );
        }
    }

    #[test]
    fn decode_reads_response_and_judges_other_bodies_by_status() {
        let id: i64 = decode("messages.send", 200, br#"{"response":513}"#).expect("ok");
        assert_eq!(id, 513);
        let e = decode::<Value>(
            "messages.send",
            200,
            br#"{"error":{"error_code":901,"error_msg":"Can't send messages for users without permission","request_params":[]}}"#,
        )
        .expect_err("error");
        assert_eq!(
            e,
            ChannelError::Blocked(
                "messages.send: VK error 901: Can't send messages for users without permission"
                    .into()
            )
        );
        let e = decode::<Value>("groups.getById", 502, b"<html>Bad Gateway</html>").expect_err("e");
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
        let e = decode::<Value>("groups.getById", 200, b"").expect_err("e");
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
        let e = decode::<Value>("groups.getById", 404, b"Not Found").expect_err("e");
        assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");
    }
}
