//! SMS through an HTTP gateway (specs/channels.md §6): one configurable adapter (§6.3) whose
//! request and response mapping is a value, `SmsApi`, with the Sipout preset (source kind 8).
//!
//! What is confirmed about Sipout (§6.1): the user API at `https://lk.sipout.net/userapi/` with
//! `?key=<api_key>&method=<m>&action=<a>`, multipart POST parameters, the envelope
//! `{"result":"ok"|"bad","err","err_text","data"}` and `balance/get` (used to check the key).
//! **Sipout's SMS wire format is not documented**: the preset's send call (`method=sms`,
//! `action=send`, fields `to`/`text`/`sender`, answer `data.id` or `data.ids`), its error codes
//! and its callback fields are our assumption, kept in `SmsApi::sipout` only, so fixing them once
//! Sipout answers is a change of that one function.
//!
//! Callbacks are not signed by any of these gateways. Core gives each source a callback URL with
//! an unguessable path token (`new_callback_token`, checked with `callback_token_matches`); this
//! module pretends to no other protection.
//!
//! Phones are E.164 (`+79991234567`) everywhere in Chatter; the gateway gets digits only.

mod parts;

use std::fmt;

use reqwest::multipart::Form;
use reqwest::RequestBuilder;
use serde_json::Value;

use crate::{
    ChannelError, ChatKind, ChatRef, DeliveryState, Download, Identity, InboundEvent,
    InboundMessage, OutboundMessage, Sender, Sent,
};

pub use parts::{sms_parts, SmsEncoding, SmsParts};

/// The Sipout user API (§6.1).
pub const SIPOUT_BASE_URL: &str = "https://lk.sipout.net/userapi/";

/// `retry_after` when a gateway says "too many requests" without a delay.
const DEFAULT_RETRY_AFTER_SECS: u64 = 30;

/// Normalises a phone number a person typed to E.164, or `None` when it cannot be one.
///
/// Spaces, dashes, dots and parentheses are dropped; `00` becomes `+`. Russian forms become
/// `+7…`: `8XXXXXXXXXX` (11 digits), `7XXXXXXXXXX` and the 10-digit mobile `9XXXXXXXXX`. Other
/// numbers need their country code (with or without `+`): 11–15 digits.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let mut s = String::with_capacity(raw.len());
    for (i, c) in raw.trim().chars().enumerate() {
        match c {
            '0'..='9' => s.push(c),
            '+' if i == 0 => s.push(c),
            ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
            _ => return None,
        }
    }
    let (plus, digits) = match s.strip_prefix('+') {
        Some(d) => (true, d.to_owned()),
        None => match s.strip_prefix("00") {
            Some(d) => (true, d.to_owned()),
            None => (false, s),
        },
    };
    if digits.is_empty() || digits.starts_with('0') {
        return None;
    }
    let len = digits.len();
    let e164 = if plus {
        digits
    } else if len == 11 && (digits.starts_with('8') || digits.starts_with('7')) {
        format!("7{}", &digits[1..])
    } else if len == 10 && digits.starts_with('9') {
        format!("7{digits}")
    } else if len >= 11 {
        digits
    } else {
        return None;
    };
    // E.164: at most 15 digits; Russian numbers exactly 11.
    let ok = (8..=15).contains(&e164.len()) && (!e164.starts_with('7') || e164.len() == 11);
    ok.then(|| format!("+{e164}"))
}

/// A fresh unguessable token for a source's callback URL path (gateways sign nothing).
pub fn new_callback_token() -> String {
    crate::telegram::new_secret_token()
}

/// Compares a callback URL's token with the source's, in constant time.
pub fn callback_token_matches(got: &str, expected: &str) -> bool {
    crate::telegram::secret_matches(Some(got), expected)
}

/// What the gateway account is given to authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum SmsCredentials {
    ApiKey(String),
    LoginPassword { login: String, password: String },
}

impl fmt::Debug for SmsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmsCredentials::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            SmsCredentials::LoginPassword { login, .. } => f
                .debug_struct("LoginPassword")
                .field("login", login)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

impl SmsCredentials {
    /// The secret strings, for scrubbing error messages.
    fn secrets(&self) -> Vec<&str> {
        match self {
            SmsCredentials::ApiKey(k) => vec![k.as_str()],
            SmsCredentials::LoginPassword { password, .. } => vec![password.as_str()],
        }
    }
}

/// How the credentials travel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthStyle {
    /// `?{name}=<api key>` in the query string (Sipout `key`, SMS.ru `api_id`).
    QueryKey(String),
    /// `Authorization: Bearer <api key>`.
    Bearer,
    /// HTTP basic with login and password.
    Basic,
    /// Login and password as two parameters (SMSC `login`/`psw`).
    LoginPasswordParams { login: String, password: String },
}

/// How a call's parameters are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEncoding {
    /// Everything in the query string (GET).
    Query,
    /// POST `application/x-www-form-urlencoded`.
    Form,
    /// POST `multipart/form-data` (Sipout).
    Multipart,
    /// POST JSON object.
    Json,
}

/// One gateway call: parameters that never change (`method=balance&action=get`) travel in the
/// query string, variable ones in the body per `encoding`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Appended to the base URL (may be empty).
    pub path: String,
    pub fixed_query: Vec<(String, String)>,
    pub encoding: BodyEncoding,
}

/// How the gateway calls us back (delivery reports and incoming SMS), field by field.
#[derive(Clone, Debug, PartialEq)]
pub struct CallbackMapping {
    pub id_field: String,
    pub status_field: String,
    pub error_field: String,
    pub time_field: String,
    pub from_field: String,
    pub to_field: String,
    pub text_field: String,
    /// Gateway status value → ours; values not listed are ignored (queued, accepted…).
    pub statuses: Vec<(String, DeliveryState)>,
    /// What to answer on success (status 200 and this body).
    pub ack_body: String,
}

/// A gateway's request and response mapping (§6.3 `http_template`).
#[derive(Clone, Debug, PartialEq)]
pub struct SmsApi {
    pub auth: AuthStyle,
    pub balance: Endpoint,
    pub send: Endpoint,
    pub to_param: String,
    pub text_param: String,
    pub sender_param: String,
    /// Our message id for gateways that dedupe or echo it (`None`: not sent).
    pub client_ref_param: Option<String>,
    /// JSON pointer and the value it holds on success (`/result` = `ok`).
    pub success_pointer: String,
    pub success_value: String,
    pub error_code_pointer: String,
    pub error_text_pointer: String,
    /// The message id(s): a string or number (one per message) or an array (one per part).
    pub id_pointers: Vec<String>,
    pub balance_pointer: String,
    pub account_id_pointer: String,
    pub account_name_pointer: String,
    /// Gateway error codes that mean: wrong or blocked credentials.
    pub unauthorized_errors: Vec<String>,
    /// … slow down.
    pub rate_limited_errors: Vec<String>,
    /// … try again later.
    pub transient_errors: Vec<String>,
    pub callback: CallbackMapping,
}

impl SmsApi {
    /// Sipout (§6.1). `balance/get` and the envelope are documented; the SMS send call, the
    /// error codes other than the envelope's and the callback fields are our assumption
    /// (unconfirmed: Sipout publishes no SMS API) and match `chatter_fakes::FakeSms`.
    pub fn sipout() -> Self {
        let fixed = |method: &str, action: &str| {
            vec![
                ("method".to_owned(), method.to_owned()),
                ("action".to_owned(), action.to_owned()),
            ]
        };
        let codes = |c: &[&str]| c.iter().map(|s| (*s).to_owned()).collect();
        SmsApi {
            auth: AuthStyle::QueryKey("key".into()),
            balance: Endpoint {
                path: String::new(),
                fixed_query: fixed("balance", "get"),
                encoding: BodyEncoding::Query,
            },
            send: Endpoint {
                path: String::new(),
                fixed_query: fixed("sms", "send"),
                encoding: BodyEncoding::Multipart,
            },
            to_param: "to".into(),
            text_param: "text".into(),
            sender_param: "sender".into(),
            client_ref_param: None,
            success_pointer: "/result".into(),
            success_value: "ok".into(),
            error_code_pointer: "/err".into(),
            error_text_pointer: "/err_text".into(),
            id_pointers: vec!["/data/ids".into(), "/data/id".into()],
            balance_pointer: "/data/summary/balance".into(),
            account_id_pointer: "/data/list/0/inn".into(),
            account_name_pointer: "/data/list/0/name".into(),
            unauthorized_errors: codes(&["bad_key", "key_not_found", "access_denied"]),
            rate_limited_errors: codes(&["too_many_requests"]),
            transient_errors: codes(&["internal_error", "temporarily_unavailable"]),
            callback: CallbackMapping {
                id_field: "id".into(),
                status_field: "status".into(),
                error_field: "err_text".into(),
                time_field: "time".into(),
                from_field: "from".into(),
                to_field: "to".into(),
                text_field: "text".into(),
                statuses: vec![
                    ("sent".into(), DeliveryState::Sent),
                    ("delivered".into(), DeliveryState::Delivered),
                    ("failed".into(), DeliveryState::Failed),
                    ("expired".into(), DeliveryState::Failed),
                    ("rejected".into(), DeliveryState::Failed),
                ],
                ack_body: "ok".into(),
            },
        }
    }
}

/// A source's gateway settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SmsGatewayConfig {
    pub base_url: String,
    pub credentials: SmsCredentials,
    /// Alphanumeric sender name (registered with operators in Russia); `None`: the gateway's default.
    pub sender: Option<String>,
    pub api: SmsApi,
}

impl SmsGatewayConfig {
    /// Sipout with its API key from the customer cabinet. `base_url` is `SIPOUT_BASE_URL` in
    /// production, the fake's URL in tests.
    pub fn sipout(base_url: &str, api_key: &str, sender: Option<&str>) -> Self {
        SmsGatewayConfig {
            base_url: base_url.to_owned(),
            credentials: SmsCredentials::ApiKey(api_key.trim().to_owned()),
            sender: sender
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            api: SmsApi::sipout(),
        }
    }
}

/// The account's money, as the gateway reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Balance {
    pub balance: f64,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
}

/// Why a callback request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The body is not what the mapping expects: answer 400.
    #[error("malformed callback: {0}")]
    Malformed(String),
}

/// A client for one gateway account.
#[derive(Clone)]
pub struct SmsClient {
    http: reqwest::Client,
    config: SmsGatewayConfig,
}

impl fmt::Debug for SmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsClient")
            .field("base_url", &self.config.base_url)
            .field("credentials", &self.config.credentials)
            .field("sender", &self.config.sender)
            .finish()
    }
}

impl SmsClient {
    pub fn new(http: reqwest::Client, config: SmsGatewayConfig) -> Self {
        SmsClient { http, config }
    }

    pub fn config(&self) -> &SmsGatewayConfig {
        &self.config
    }

    /// Reads the balance: the read-only call that validates the credentials.
    pub async fn balance(&self) -> Result<Balance, ChannelError> {
        let answer = self.call("balance", &self.config.api.balance, &[]).await?;
        let api = &self.config.api;
        let balance = answer
            .pointer(&api.balance_pointer)
            .and_then(number)
            .ok_or_else(|| {
                ChannelError::Permanent("balance: the answer carries no balance".into())
            })?;
        Ok(Balance {
            balance,
            account_id: answer.pointer(&api.account_id_pointer).and_then(as_text),
            account_name: answer.pointer(&api.account_name_pointer).and_then(as_text),
        })
    }

    /// Sends one SMS (the gateway splits long texts into concatenated parts) to `to`, any form
    /// `normalize_phone` accepts. Returns the gateway's id(s): one per message or one per part,
    /// as the gateway answers.
    pub async fn send_sms(
        &self,
        to: &str,
        text: &str,
        client_ref: Option<&str>,
    ) -> Result<Vec<String>, ChannelError> {
        let phone = normalize_phone(to)
            .ok_or_else(|| ChannelError::Permanent(format!("not a phone number: {to}")))?;
        if text.trim().is_empty() {
            return Err(ChannelError::Permanent("message text is empty".into()));
        }
        let api = &self.config.api;
        let mut params = vec![
            (
                api.to_param.clone(),
                phone.trim_start_matches('+').to_owned(),
            ),
            (api.text_param.clone(), text.to_owned()),
        ];
        if let Some(sender) = &self.config.sender {
            params.push((api.sender_param.clone(), sender.clone()));
        }
        if let (Some(name), Some(r)) = (&api.client_ref_param, client_ref) {
            params.push((name.clone(), r.to_owned()));
        }
        let answer = self.call("send", &api.send, &params).await?;
        let ids = api
            .id_pointers
            .iter()
            .find_map(|p| answer.pointer(p))
            .map(|v| match v {
                Value::Array(items) => items.iter().filter_map(as_text).collect(),
                other => as_text(other).into_iter().collect::<Vec<_>>(),
            })
            .unwrap_or_default();
        if ids.is_empty() {
            // Not retryable: the SMS may well have been accepted (and paid for).
            return Err(ChannelError::Permanent(
                "send: the answer carries no message id".into(),
            ));
        }
        Ok(ids)
    }

    /// The answer a callback expects when it was handled: status 200 and this body.
    pub fn callback_ack(&self) -> (u16, &str) {
        (200, &self.config.api.callback.ack_body)
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
        callback_records(content_type, body)?
            .iter()
            .map(|r| {
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
                                    .filter(|e| !e.is_empty())
                                    .unwrap_or_else(|| format!("SMS {raw}")),
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
        callback_records(content_type, body)?
            .iter()
            .map(|r| {
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
            })
            .collect()
    }

    async fn call(
        &self,
        what: &str,
        endpoint: &Endpoint,
        params: &[(String, String)],
    ) -> Result<Value, ChannelError> {
        let result = async {
            let resp = self
                .request(endpoint, params)?
                .send()
                .await
                .map_err(|e| transport_error(what, e))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = resp.bytes().await.map_err(|e| transport_error(what, e))?;
            self.decode(what, status, &body, retry_after)
        }
        .await;
        result.map_err(|e| self.scrub(e))
    }

    fn request(
        &self,
        endpoint: &Endpoint,
        params: &[(String, String)],
    ) -> Result<RequestBuilder, ChannelError> {
        let base = format!("{}{}", self.config.base_url, endpoint.path);
        let mut url = url::Url::parse(&base)
            .map_err(|e| ChannelError::Permanent(format!("bad gateway URL: {e}")))?;
        let mut body = params.to_vec();
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &endpoint.fixed_query {
                q.append_pair(k, v);
            }
            match (&self.config.api.auth, &self.config.credentials) {
                (AuthStyle::QueryKey(name), SmsCredentials::ApiKey(key)) => {
                    q.append_pair(name, key);
                }
                (
                    AuthStyle::LoginPasswordParams { login, password },
                    SmsCredentials::LoginPassword {
                        login: l,
                        password: p,
                    },
                ) => {
                    body.push((login.clone(), l.clone()));
                    body.push((password.clone(), p.clone()));
                }
                _ => {}
            }
            if endpoint.encoding == BodyEncoding::Query {
                for (k, v) in &body {
                    q.append_pair(k, v);
                }
            }
        }
        let mut req = match endpoint.encoding {
            BodyEncoding::Query => self.http.get(url),
            BodyEncoding::Form => self.http.post(url).form(&body),
            BodyEncoding::Multipart => {
                let form = body
                    .into_iter()
                    .fold(Form::new(), |form, (k, v)| form.text(k, v));
                self.http.post(url).multipart(form)
            }
            BodyEncoding::Json => {
                let object: serde_json::Map<String, Value> = body
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                self.http.post(url).json(&object)
            }
        };
        match (&self.config.api.auth, &self.config.credentials) {
            (AuthStyle::Bearer, SmsCredentials::ApiKey(key)) => req = req.bearer_auth(key),
            (AuthStyle::Basic, SmsCredentials::LoginPassword { login, password }) => {
                req = req.basic_auth(login, Some(password));
            }
            (AuthStyle::QueryKey(_), SmsCredentials::ApiKey(_))
            | (AuthStyle::LoginPasswordParams { .. }, SmsCredentials::LoginPassword { .. }) => {}
            _ => {
                return Err(ChannelError::Unauthorized(
                    "these credentials do not fit the gateway's sign-in method".into(),
                ))
            }
        }
        Ok(req)
    }

    /// Reads the gateway's answer: the JSON on success, a classified error otherwise.
    fn decode(
        &self,
        what: &str,
        status: u16,
        body: &[u8],
        retry_after: Option<u64>,
    ) -> Result<Value, ChannelError> {
        let api = &self.config.api;
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let Some(json) = json else {
            return Err(match status {
                401 | 403 => unauthorized(&format!("{what}: HTTP {status}")),
                429 => rate_limited(&format!("{what}: HTTP 429"), retry_after),
                200..=299 | 500.. => ChannelError::Transient(format!(
                    "{what}: the answer is not JSON (HTTP {status})"
                )),
                _ => ChannelError::Permanent(format!("{what}: HTTP {status}")),
            });
        };
        let ok = json
            .pointer(&api.success_pointer)
            .and_then(as_text)
            .is_some_and(|v| v.eq_ignore_ascii_case(&api.success_value));
        if ok && (200..300).contains(&status) {
            return Ok(json);
        }
        let code = json.pointer(&api.error_code_pointer).and_then(as_text);
        let message = json
            .pointer(&api.error_text_pointer)
            .and_then(as_text)
            .unwrap_or_else(|| format!("HTTP {status}"));
        let message = match &code {
            Some(code) => format!("{what}: {message} ({code})"),
            None => format!("{what}: {message}"),
        };
        let listed = |list: &[String]| code.as_ref().is_some_and(|c| list.contains(c));
        Err(
            if listed(&api.unauthorized_errors) || matches!(status, 401 | 403) {
                unauthorized(&message)
            } else if listed(&api.rate_limited_errors) || status == 429 {
                rate_limited(&message, retry_after)
            } else if listed(&api.transient_errors) || status >= 500 {
                ChannelError::Transient(message)
            } else {
                ChannelError::Permanent(message)
            },
        )
    }

    /// Removes the secrets from an error message, whatever put them there.
    fn scrub(&self, e: ChannelError) -> ChannelError {
        let secrets = self.config.credentials.secrets();
        let clean = |mut s: String| {
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                s = s.replace(secret, "<secret>");
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
        }
    }
}

fn unauthorized(message: &str) -> ChannelError {
    ChannelError::Unauthorized(format!(
        "the gateway rejected the credentials: check the API key ({message})"
    ))
}

fn rate_limited(message: &str, retry_after: Option<u64>) -> ChannelError {
    ChannelError::RateLimited {
        retry_after_secs: retry_after.unwrap_or(DEFAULT_RETRY_AFTER_SECS),
        message: message.to_owned(),
    }
}

/// Network trouble of any kind is worth a retry. The URL (it may hold the key) is dropped.
fn transport_error(what: &str, e: reqwest::Error) -> ChannelError {
    let timed_out = e.is_timeout();
    let e = e.without_url();
    let mut msg = format!("{what}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if timed_out && !msg.contains("timed out") {
        msg.push_str(" (timed out)");
    }
    ChannelError::Transient(msg)
}

/// A string or number as text.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().replace(',', ".").parse().ok(),
        _ => None,
    }
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

#[async_trait::async_trait]
impl crate::Channel for SmsClient {
    /// The account behind the credentials (balance call): id and name as the gateway has them.
    async fn identify(&self) -> Result<Identity, ChannelError> {
        let b = self.balance().await?;
        Ok(Identity {
            id: b.account_id.clone().unwrap_or_default(),
            name: b
                .account_name
                .or(b.account_id)
                .unwrap_or_else(|| "SMS".to_owned()),
            username: self.config.sender.clone(),
        })
    }

    /// Sends the text to `chat_external_id` (a phone). `idempotency_key` goes out as the
    /// gateway's client reference where the mapping has one.
    async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError> {
        let external_ids = self
            .send_sms(&m.chat_external_id, &m.text, m.idempotency_key.as_deref())
            .await?;
        Ok(Sent { external_ids })
    }

    async fn download(&self, _file_ref: &str) -> Result<Download, ChannelError> {
        Err(ChannelError::Permanent("SMS carries no attachments".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_credentials() {
        let c = SmsClient::new(
            reqwest::Client::new(),
            SmsGatewayConfig::sipout(SIPOUT_BASE_URL, "k3y-very-secret", Some("Romashka")),
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("very-secret"), "{dbg}");
        assert!(dbg.contains("Romashka"), "{dbg}");
        let creds = SmsCredentials::LoginPassword {
            login: "shop".into(),
            password: "pa55word".into(),
        };
        assert!(!format!("{creds:?}").contains("pa55word"));
    }

    #[test]
    fn decode_classifies_the_sipout_envelope() {
        let c = SmsClient::new(
            reqwest::Client::new(),
            SmsGatewayConfig::sipout("http://x/", "key", None),
        );
        let e = c
            .decode(
                "send",
                200,
                br#"{"result":"bad","err":"bad_key","err_text":"Wrong key"}"#,
                None,
            )
            .expect_err("bad");
        assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
        let e = c
            .decode(
                "send",
                200,
                r#"{"result":"bad","err":"no_money","err_text":"Недостаточно средств"}"#.as_bytes(),
                None,
            )
            .expect_err("bad");
        assert_eq!(
            e,
            ChannelError::Permanent("send: Недостаточно средств (no_money)".into())
        );
        let e = c
            .decode(
                "send",
                200,
                br#"{"result":"bad","err":"too_many_requests"}"#,
                Some(7),
            )
            .expect_err("bad");
        assert!(matches!(
            e,
            ChannelError::RateLimited {
                retry_after_secs: 7,
                ..
            }
        ));
        let e = c.decode("send", 502, b"<html>", None).expect_err("bad");
        assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
        assert!(c
            .decode("send", 200, br#"{"result":"ok","data":{}}"#, None)
            .is_ok());
    }

    #[test]
    fn scrub_removes_the_key() {
        let c = SmsClient::new(
            reqwest::Client::new(),
            SmsGatewayConfig::sipout("http://x/", "topsecretkey", None),
        );
        let s = c
            .scrub(ChannelError::Transient("GET /?key=topsecretkey".into()))
            .to_string();
        assert!(!s.contains("topsecretkey"), "{s}");
    }

    /// Found by fuzzing (`sms_status`): a large negative `time` overflowed when made ms.
    #[test]
    fn a_huge_negative_time_does_not_overflow() {
        assert_eq!(unix_ms("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(unix_ms("1767225600"), Some(1_767_225_600_000));
    }
}
