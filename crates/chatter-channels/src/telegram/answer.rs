//! Reading Bot API answers (§1.9): the `{ok, result, error_code, description, parameters}`
//! envelope, and the classification of every failure into a `ChannelError`.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::Update;
use crate::ChannelError;

/// `retry_after` when a 429 does not say how long to wait.
const DEFAULT_RETRY_AFTER_SECS: u64 = 5;

const UNAUTHORIZED: &str =
    "the bot token was revoked or is wrong: create a new token with @BotFather";
const MALFORMED_TOKEN: &str =
    "Telegram does not know this bot token (404 Not Found): check the token from @BotFather";

#[derive(Deserialize)]
pub(super) struct Envelope {
    ok: bool,
    result: Option<Value>,
    error_code: Option<i64>,
    description: Option<String>,
    parameters: Option<ResponseParameters>,
}

#[derive(Deserialize)]
struct ResponseParameters {
    retry_after: Option<u64>,
    migrate_to_chat_id: Option<i64>,
}

/// Reads a `getUpdates` answer (§1.3) of HTTP `status`: the raw updates with their ids, or a
/// classified error. Each update is then read by `parse_update`.
pub fn parse_get_updates(status: u16, body: &[u8]) -> Result<Vec<Update>, ChannelError> {
    let raw: Vec<Value> = decode("getUpdates", status, body)?;
    raw.into_iter()
        .map(|raw| match raw.get("update_id").and_then(Value::as_i64) {
            Some(update_id) => Ok(Update { update_id, raw }),
            None => Err(ChannelError::Permanent(
                "getUpdates: an update without update_id".into(),
            )),
        })
        .collect()
}

/// Reads a Bot API answer: `result` on `ok`, a classified error otherwise.
pub(super) fn decode<T: DeserializeOwned>(
    method: &str,
    status: u16,
    body: &[u8],
) -> Result<T, ChannelError> {
    let env: Envelope = match serde_json::from_slice(body) {
        Ok(env) => env,
        // A proxy's HTML error page or a cut-off body: judge by the status alone.
        Err(_) if (200..300).contains(&status) => {
            return Err(ChannelError::Transient(format!(
                "{method}: the answer is not Bot API JSON (HTTP {status})"
            )))
        }
        Err(_) => {
            return Err(classify(
                status,
                None,
                &format!("{method}: HTTP {status}"),
                None,
            ))
        }
    };
    if !env.ok {
        return Err(envelope_error(status, env));
    }
    serde_json::from_value(env.result.unwrap_or(Value::Null)).map_err(|e| {
        // Not retryable: the call may well have taken effect (a message sent).
        ChannelError::Permanent(format!("{method}: unexpected result: {e}"))
    })
}

pub(super) fn envelope_error(status: u16, env: Envelope) -> ChannelError {
    let description = env.description.unwrap_or_else(|| format!("HTTP {status}"));
    let params = env.parameters;
    let retry_after = params.as_ref().and_then(|p| p.retry_after);
    let migrate_to = params.as_ref().and_then(|p| p.migrate_to_chat_id);
    match classify(status, env.error_code, &description, retry_after) {
        ChannelError::Permanent(m) => match migrate_to {
            Some(id) => ChannelError::Permanent(format!("{m} (migrate_to_chat_id={id})")),
            None => ChannelError::Permanent(m),
        },
        other => other,
    }
}

/// Classifies a Bot API failure (§1.9) by `error_code` (the HTTP status when absent) and the
/// description's prefix:
///
/// | code | class |
/// |---|---|
/// | 401 | `Unauthorized` ("revoked or wrong: create a new token with @BotFather") |
/// | 404 | `Unauthorized`: Telegram answers 404 to a malformed token (getMe's check) |
/// | 429 | `RateLimited` after `retry_after` s (5 s when absent) |
/// | 5xx, any status with a 5xx code | `Transient` |
/// | 400, 403, 409, other 4xx | `Permanent` with Telegram's description |
/// | … whose description says `blocked` ("bot was blocked by the user") | `Blocked` |
///
/// A 400 carrying `parameters.migrate_to_chat_id` (a group upgraded to a supergroup) becomes a
/// `Permanent` whose message ends with `(migrate_to_chat_id=<id>)`: the caller rewrites the
/// stored chat id (see `migrate_to_chat_id`) and sends again. Network errors and timeouts never
/// reach here: they are always `Transient`.
pub fn classify(
    status: u16,
    error_code: Option<i64>,
    description: &str,
    retry_after: Option<u64>,
) -> ChannelError {
    crate::common::blocked_if(
        classify_status(status, error_code, description, retry_after),
        |m| m.contains("blocked"),
    )
}

fn classify_status(
    status: u16,
    error_code: Option<i64>,
    description: &str,
    retry_after: Option<u64>,
) -> ChannelError {
    let code = error_code.unwrap_or(i64::from(status));
    if status >= 500 || code >= 500 {
        return ChannelError::Transient(description.to_owned());
    }
    match code {
        401 => ChannelError::Unauthorized(UNAUTHORIZED.into()),
        404 => ChannelError::Unauthorized(MALFORMED_TOKEN.into()),
        429 => rate_limited(description, retry_after),
        400..=499 => ChannelError::Permanent(description.to_owned()),
        // Codes Telegram does not document: fall back on the description's prefix.
        _ if description.starts_with("Unauthorized") => {
            ChannelError::Unauthorized(UNAUTHORIZED.into())
        }
        _ if description.starts_with("Too Many Requests") => rate_limited(description, retry_after),
        _ if description.starts_with("Bad Request")
            || description.starts_with("Forbidden")
            || description.starts_with("Conflict") =>
        {
            ChannelError::Permanent(description.to_owned())
        }
        _ => ChannelError::Transient(description.to_owned()),
    }
}

fn rate_limited(description: &str, retry_after: Option<u64>) -> ChannelError {
    ChannelError::RateLimited {
        retry_after_secs: retry_after.unwrap_or(DEFAULT_RETRY_AFTER_SECS),
        message: description.to_owned(),
    }
}

/// The supergroup id a `Permanent` error from `classify` points to, when Telegram said the group
/// was upgraded (§1.9): store it as the chat's new id and send again.
pub fn migrate_to_chat_id(e: &ChannelError) -> Option<i64> {
    let ChannelError::Permanent(m) = e else {
        return None;
    };
    let (_, rest) = m.rsplit_once("(migrate_to_chat_id=")?;
    rest.strip_suffix(')')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::MessageId;
    use super::*;

    #[test]
    fn classify_401_is_unauthorized_with_the_fix() {
        assert_eq!(
            classify(401, Some(401), "Unauthorized", None),
            ChannelError::Unauthorized(
                "the bot token was revoked or is wrong: create a new token with @BotFather".into()
            )
        );
    }

    #[test]
    fn classify_404_is_a_malformed_token() {
        let e = classify(404, Some(404), "Not Found", None);
        assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
    }

    #[test]
    fn classify_429_uses_retry_after_or_5() {
        assert_eq!(
            classify(
                429,
                Some(429),
                "Too Many Requests: retry after 17",
                Some(17)
            ),
            ChannelError::RateLimited {
                retry_after_secs: 17,
                message: "Too Many Requests: retry after 17".into()
            }
        );
        assert_eq!(
            classify(429, Some(429), "Too Many Requests", None),
            ChannelError::RateLimited {
                retry_after_secs: 5,
                message: "Too Many Requests".into()
            }
        );
    }

    #[test]
    fn classify_5xx_is_transient() {
        for status in [500, 502, 503, 504] {
            let e = classify(status, None, "Bad Gateway", None);
            assert!(matches!(e, ChannelError::Transient(_)), "{status}: {e:?}");
        }
        let e = classify(200, Some(500), "Internal Server Error", None);
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
    }

    #[test]
    fn classify_403_is_permanent_with_the_description() {
        let d = "Forbidden: bot was blocked by the user";
        assert_eq!(
            classify(403, Some(403), d, None),
            ChannelError::Blocked(d.into())
        );
        for d in [
            "Forbidden: user is deactivated",
            "Forbidden: bot was kicked from the group chat",
            "Forbidden: bot can't initiate conversation with a user",
        ] {
            assert_eq!(
                classify(403, Some(403), d, None),
                ChannelError::Permanent(d.into())
            );
        }
    }

    #[test]
    fn classify_400_and_409_are_permanent() {
        let d = "Bad Request: chat not found";
        assert_eq!(
            classify(400, Some(400), d, None),
            ChannelError::Permanent(d.into())
        );
        let d = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
        assert_eq!(
            classify(409, Some(409), d, None),
            ChannelError::Permanent(d.into())
        );
    }

    #[test]
    fn classify_without_error_code_uses_the_http_status() {
        let e = classify(403, None, "Forbidden: bot was blocked by the user", None);
        assert!(matches!(e, ChannelError::Blocked(_)), "{e:?}");
        let e = classify(403, None, "Forbidden: user is deactivated", None);
        assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");
        let e = classify(429, None, "Too Many Requests: retry after 3", Some(3));
        assert!(matches!(
            e,
            ChannelError::RateLimited {
                retry_after_secs: 3,
                ..
            }
        ));
    }

    #[test]
    fn migrate_to_chat_id_is_in_the_message_and_readable() {
        let body = br#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234567890}}"#;
        let e = decode::<Value>("sendMessage", 400, body).expect_err("an error");
        assert_eq!(
            e,
            ChannelError::Permanent(
                "Bad Request: group chat was upgraded to a supergroup chat (migrate_to_chat_id=-1001234567890)".into()
            )
        );
        assert_eq!(migrate_to_chat_id(&e), Some(-1001234567890));
        assert_eq!(
            migrate_to_chat_id(&ChannelError::Permanent(
                "Bad Request: chat not found".into()
            )),
            None
        );
    }

    #[test]
    fn decode_reads_result_and_judges_non_json_by_status() {
        let ok: MessageId = decode(
            "sendMessage",
            200,
            br#"{"ok":true,"result":{"message_id":9}}"#,
        )
        .expect("ok");
        assert_eq!(ok.message_id, 9);
        let e = decode::<Value>("getMe", 502, b"<html>Bad Gateway</html>").expect_err("error");
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
        let e = decode::<Value>("getMe", 200, b"<html>hi</html>").expect_err("error");
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
        let e = decode::<Value>("getMe", 401, b"").expect_err("error");
        assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
        let e = decode::<Value>(
            "sendMessage",
            429,
            br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 30","parameters":{"retry_after":30}}"#,
        )
        .expect_err("error");
        assert!(matches!(
            e,
            ChannelError::RateLimited {
                retry_after_secs: 30,
                ..
            }
        ));
    }
}
