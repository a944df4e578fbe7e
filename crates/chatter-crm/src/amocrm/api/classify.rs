//! How amoCRM's failed answers are classified (§2.1), and its Retry-After header.

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use serde_json::Value;

use super::DEFAULT_RETRY_AFTER_SECS;
use crate::{CrmError, FieldProblem};

/// The Retry-After header in seconds, if given as a number.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
    #[serde(rename = "validation-errors")]
    validation_errors: Vec<ValidationItem>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ValidationItem {
    request_id: Option<Value>,
    errors: Vec<ValidationError>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ValidationError {
    code: String,
    path: String,
    detail: String,
}

/// Classifies a failed amoCRM answer (§2.1) by status, reading problem+json when present:
///
/// | status | class |
/// |---|---|
/// | 401 | `Unauthorized`: expired or revoked token, refresh once then reconnect |
/// | 429 | `RateLimited` after Retry-After (1 s when absent) |
/// | 5xx | `Transient` |
/// | 400, 422 | `Permanent` with `validation-errors` as field problems |
/// | 402 | `Permanent`: the account is not paid |
/// | 403 | `Permanent`: no rights, or (an HTML page) the account/IP is blocked |
/// | other | `Permanent` |
pub fn classify(status: u16, body: &[u8], retry_after: Option<u64>) -> CrmError {
    let problem: Option<Problem> = serde_json::from_slice(body).ok();
    let said = problem
        .as_ref()
        .map(|p| {
            [p.title.as_deref(), p.detail.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("HTTP {status}"));
    match status {
        401 => CrmError::Unauthorized(format!(
            "amoCRM rejected the access token, it is expired or revoked ({said})"
        )),
        429 => CrmError::RateLimited {
            retry_after_secs: retry_after.unwrap_or(DEFAULT_RETRY_AFTER_SECS),
            message: format!("amoCRM: too many requests ({said})"),
        },
        500..=599 => CrmError::Transient(format!("amoCRM server error ({said})")),
        402 => CrmError::permanent(format!(
            "the amoCRM account is not paid or its subscription expired ({said})"
        )),
        403 if problem.is_none() => CrmError::permanent(
            "amoCRM blocked API access (HTTP 403 without details): the account or our IP may be \
             blocked for exceeding the request limit; contact amoCRM support",
        ),
        403 => CrmError::permanent(format!(
            "amoCRM refused: the connected user lacks the rights ({said})"
        )),
        _ => {
            let fields = problem
                .map(|p| {
                    p.validation_errors
                        .into_iter()
                        .flat_map(|item| {
                            let rid = item.request_id.map(|r| match r {
                                Value::String(s) => s,
                                other => other.to_string(),
                            });
                            item.errors.into_iter().map(move |e| FieldProblem {
                                request_id: rid.clone(),
                                code: e.code,
                                path: e.path,
                                detail: e.detail,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            CrmError::Permanent {
                message: format!("amoCRM refused the request ({said})"),
                fields,
            }
        }
    }
}

// ---- wire shapes (reads) ----

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_by_status() {
        assert!(matches!(
            classify(401, b"", None),
            CrmError::Unauthorized(_)
        ));
        assert_eq!(
            classify(429, b"", Some(3)),
            CrmError::RateLimited {
                retry_after_secs: 3,
                message: "amoCRM: too many requests (HTTP 429)".into()
            }
        );
        assert!(matches!(
            classify(429, b"", None),
            CrmError::RateLimited {
                retry_after_secs: 1,
                ..
            }
        ));
        assert!(matches!(
            classify(502, b"<html>", None),
            CrmError::Transient(_)
        ));
        assert!(matches!(classify(504, b"", None), CrmError::Transient(_)));
        let CrmError::Permanent { message, .. } = classify(402, b"", None) else {
            panic!("402 is permanent");
        };
        assert!(message.contains("not paid"), "{message}");
        let CrmError::Permanent { message, .. } = classify(403, b"<html>nginx</html>", None) else {
            panic!("403 is permanent");
        };
        assert!(message.contains("blocked"), "{message}");
        let CrmError::Permanent { message, .. } = classify(
            403,
            br#"{"title":"Forbidden","status":403,"detail":"No rights"}"#,
            None,
        ) else {
            panic!("403 is permanent");
        };
        assert!(message.contains("No rights"), "{message}");
        assert!(matches!(
            classify(404, b"", None),
            CrmError::Permanent { .. }
        ));
    }

    #[test]
    fn classify_reads_validation_errors() {
        let body = br#"{"title":"Bad Request","type":"https://httpstatus.es/400","status":400,
            "detail":"Request validation failed","validation-errors":[{"request_id":"0","errors":[
            {"code":"NotSupportedChoice","path":"custom_fields_values.0.field_id","detail":"This field is not supported"}]}]}"#;
        assert_eq!(
            classify(400, body, None),
            CrmError::Permanent {
                message: "amoCRM refused the request (Bad Request: Request validation failed)"
                    .into(),
                fields: vec![FieldProblem {
                    request_id: Some("0".into()),
                    code: "NotSupportedChoice".into(),
                    path: "custom_fields_values.0.field_id".into(),
                    detail: "This field is not supported".into(),
                }],
            }
        );
    }
}
