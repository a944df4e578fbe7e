//! Gateway callbacks (§6.3): delivery reports and incoming SMS, as a form or JSON (one record
//! or an array), read field by field through the source's `CallbackMapping`.

use serde_json::Value;

use super::{as_text, CallbackFormat, CallbackMapping, SmsClient};
use crate::common::normalize_phone;
use crate::{ChatKind, ChatRef, DeliveryState, InboundEvent, InboundMessage, Sender};

/// Why a callback request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The body is not what the mapping expects: answer 400.
    #[error("malformed callback: {0}")]
    Malformed(String),
}

impl SmsClient {
    /// The answer a callback expects when it was handled: status 200 and this body.
    pub fn callback_ack(&self) -> (u16, &str) {
        (200, &self.config.api.callback.ack_body)
    }

    /// Whether the gateway posts incoming SMS (its mapping names a sender field).
    pub fn reports_inbound(&self) -> bool {
        let map = &self.config.api.callback;
        map.format == CallbackFormat::Fields && !map.from_field.is_empty()
    }

    /// Whether incoming SMS have a URL of their own (else they come with the reports, or not
    /// at all).
    pub fn has_inbound_url(&self) -> bool {
        self.reports_inbound() && !self.config.api.callback.inbound_in_reports
    }

    /// Parses a delivery-report callback (form or JSON, one report or a JSON array) into
    /// `Status` events. `received_at_ms` stands in for a report without a time.
    pub fn parse_status_callback(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        received_at_ms: i64,
    ) -> Result<Vec<InboundEvent>, CallbackError> {
        let map = &self.config.api.callback;
        if map.format == CallbackFormat::SmsRuLines {
            return smsru_statuses(map, body, received_at_ms);
        }
        callback_records(content_type, body)?
            .iter()
            .map(|r| {
                if map.inbound_in_reports
                    && field(r, &map.status_field).is_none()
                    && field(r, &map.text_field).is_some()
                {
                    return inbound_record(map, r, received_at_ms);
                }
                let id = field(r, &map.id_field)
                    .ok_or_else(|| CallbackError::Malformed(format!("no {}", map.id_field)))?;
                let raw = field(r, &map.status_field).unwrap_or_default();
                let at = field(r, &map.time_field)
                    .and_then(|t| unix_ms(&t))
                    .unwrap_or(received_at_ms);
                let state = map
                    .statuses
                    .iter()
                    .find(|(v, _)| v.eq_ignore_ascii_case(&raw))
                    .map(|(_, s)| *s);
                Ok(match state {
                    None => InboundEvent::Ignored {
                        reason: format!("SMS status {raw:?}"),
                    },
                    Some(state) => InboundEvent::Status {
                        external_id: id,
                        state,
                        error: match state {
                            DeliveryState::Failed => Some(
                                field(r, &map.error_field)
                                    .filter(|e| !e.is_empty() && e != "0")
                                    .unwrap_or_else(|| reason(map, &raw)),
                            ),
                            _ => None,
                        },
                        at,
                    },
                })
            })
            .collect()
    }

    /// Parses an incoming-SMS callback into `Message` events; the sender's phone (E.164) is the
    /// chat and the person. Without a gateway id the dedup key is built from phone, time and text.
    pub fn parse_inbound_callback(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        received_at_ms: i64,
    ) -> Result<Vec<InboundEvent>, CallbackError> {
        let map = &self.config.api.callback;
        if !self.reports_inbound() {
            return Err(CallbackError::Malformed(
                "this gateway reports no incoming SMS".into(),
            ));
        }
        callback_records(content_type, body)?
            .iter()
            .map(|r| inbound_record(map, r, received_at_ms))
            .collect()
    }
}

/// One incoming SMS record as a `Message` event; the sender's phone (E.164) is the chat and the
/// person. Without a gateway id the dedup key is built from phone, time and text.
fn inbound_record(
    map: &CallbackMapping,
    r: &Record,
    received_at_ms: i64,
) -> Result<InboundEvent, CallbackError> {
    let raw_from = field(r, &map.from_field)
        .ok_or_else(|| CallbackError::Malformed(format!("no {}", map.from_field)))?;
    let from = normalize_phone(&raw_from).unwrap_or(raw_from);
    let text = field(r, &map.text_field).unwrap_or_default();
    let time = field(r, &map.time_field).and_then(|t| unix_ms(&t));
    let sent_at = time.unwrap_or(received_at_ms);
    let external_id = field(r, &map.id_field)
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| {
            format!(
                "{from}:{}:{:016x}",
                time.unwrap_or(0),
                fnv1a(text.as_bytes())
            )
        });
    Ok(InboundEvent::Message(InboundMessage {
        external_id,
        chat: ChatRef {
            external_id: from.clone(),
            kind: ChatKind::Private,
            title: None,
        },
        sender: Sender {
            external_id: from.clone(),
            name: from.clone(),
            username: None,
            phone: Some(from),
            language: None,
        },
        text: Some(text).filter(|t| !t.is_empty()),
        attachments: Vec::new(),
        extra: None,
        reply_to_external_id: None,
        sent_at,
        edited: false,
    }))
}

/// Why status `raw` failed, in the gateway's words where the mapping has them.
fn reason(map: &CallbackMapping, raw: &str) -> String {
    map.reasons
        .iter()
        .find(|(v, _)| v == raw)
        .map_or_else(|| format!("SMS {raw}"), |(_, r)| format!("SMS {raw}: {r}"))
}

/// SMS.ru's callback: a form whose `data[]` (or `data[N]`, `data`) values are line blocks
/// `sms_status`, id, status code[, unix time]. Blocks of other kinds are skipped; a body with no
/// `data` at all is malformed.
fn smsru_statuses(
    map: &CallbackMapping,
    body: &[u8],
    received_at_ms: i64,
) -> Result<Vec<InboundEvent>, CallbackError> {
    let blocks: Vec<String> = url::form_urlencoded::parse(body)
        .filter(|(k, _)| k == "data" || (k.starts_with("data[") && k.ends_with(']')))
        .map(|(_, v)| v.into_owned())
        .collect();
    if blocks.is_empty() {
        return Err(CallbackError::Malformed("no data[] entries".into()));
    }
    Ok(blocks
        .iter()
        .map(|block| {
            let lines: Vec<&str> = block.lines().map(str::trim).collect();
            let (Some(&"sms_status"), Some(id), Some(code)) =
                (lines.first(), lines.get(1), lines.get(2))
            else {
                return InboundEvent::Ignored {
                    reason: format!("SMS.ru entry {:?}", lines.first().unwrap_or(&"")),
                };
            };
            let at = lines
                .get(3)
                .and_then(|t| unix_ms(t))
                .unwrap_or(received_at_ms);
            match map
                .statuses
                .iter()
                .find(|(v, _)| v == code)
                .map(|(_, s)| *s)
            {
                None => InboundEvent::Ignored {
                    reason: format!("SMS status {code:?}"),
                },
                Some(state) => InboundEvent::Status {
                    external_id: (*id).to_owned(),
                    state,
                    error: (state == DeliveryState::Failed).then(|| reason(map, code)),
                    at,
                },
            }
        })
        .collect())
}

/// Unix seconds or milliseconds (by magnitude), as milliseconds.
fn unix_ms(s: &str) -> Option<i64> {
    let n: i64 = s.trim().parse().ok()?;
    Some(if n > 100_000_000_000 {
        n
    } else {
        n.saturating_mul(1000)
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

type Record = Vec<(String, String)>;

fn field(r: &Record, name: &str) -> Option<String> {
    r.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// A callback body as flat records: a form is one record, JSON an object or array of objects.
fn callback_records(content_type: Option<&str>, body: &[u8]) -> Result<Vec<Record>, CallbackError> {
    let is_json = content_type.is_some_and(|c| c.contains("json"))
        || body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| matches!(b, b'{' | b'['));
    if !is_json {
        let record: Record = url::form_urlencoded::parse(body).into_owned().collect();
        if record.is_empty() {
            return Err(CallbackError::Malformed("an empty form".into()));
        }
        return Ok(vec![record]);
    }
    let json: Value =
        serde_json::from_slice(body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
    let objects = match json {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => return Err(CallbackError::Malformed("not a JSON object".into())),
    };
    objects
        .into_iter()
        .map(|o| match o {
            Value::Object(map) => Ok(map
                .into_iter()
                .filter_map(|(k, v)| as_text(&v).map(|v| (k, v)))
                .collect()),
            _ => Err(CallbackError::Malformed("not a JSON object".into())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`sms_status`): a large negative `time` overflowed when made ms.
    #[test]
    fn a_huge_negative_time_does_not_overflow() {
        assert_eq!(unix_ms("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(unix_ms("1767225600"), Some(1_767_225_600_000));
    }
}
