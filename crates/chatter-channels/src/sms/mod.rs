//! SMS through an HTTP gateway (docs/providers/channels.md §6): one configurable adapter
//! (§6.3) whose request and response mapping is a value, `SmsApi`, with the Sipout preset (source kind 8).
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

mod callback;
mod connector;
mod form;
mod gateway;
mod kind;
mod parts;

pub use form::{part_price, PART_PRICE_MAX_KOPECKS};
pub use kind::SmsKind;

use std::fmt;

use reqwest::multipart::Form;
use reqwest::RequestBuilder;
use serde_json::Value;

use crate::common::{new_secret_token, retry_after_header, scrub, secret_matches, transport_error};
use crate::{ChannelError, Download, Identity, OutboundMessage, Sent};

pub use crate::common::normalize_phone;
pub use callback::CallbackError;
pub use gateway::{
    AuthStyle, BodyEncoding, CallbackFormat, CallbackMapping, Endpoint, SmsApi, SmsCredentials,
    SmsGateway, SmsGatewayConfig,
};
pub use parts::{sms_parts, SmsEncoding, SmsParts};

/// Longest reply sent as one SMS request (the gateway splits it into concatenated parts; the
/// reply box shows how many before sending).
pub const MAX_TEXT: usize = 2_000;

/// The Sipout user API (§6.1).
pub const SIPOUT_BASE_URL: &str = "https://lk.sipout.net/userapi/";
/// SMSC.ru's API root (`sys/send.php` and the rest are under it).
pub const SMSC_BASE_URL: &str = "https://smsc.ru/";
/// SMS.ru's API root (`sms/send`, `my/balance`).
pub const SMSRU_BASE_URL: &str = "https://sms.ru/";
/// SMS Aero's gate (`v2/sms/send`, `v2/balance`).
pub const SMSAERO_BASE_URL: &str = "https://gate.smsaero.ru/";

/// `retry_after` when a gateway says "too many requests" without a delay.
const DEFAULT_RETRY_AFTER_SECS: u64 = 30;

/// A fresh unguessable token for a source's callback URL path (gateways sign nothing).
pub fn new_callback_token() -> String {
    new_secret_token()
}

/// Compares a callback URL's token with the source's, in constant time.
pub fn callback_token_matches(got: &str, expected: &str) -> bool {
    secret_matches(Some(got), expected)
}

/// The account's money, as the gateway reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Balance {
    pub balance: f64,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
}

/// A client for one gateway account.
#[derive(Clone)]
pub struct SmsClient {
    http: reqwest::Client,
    config: SmsGatewayConfig,
    /// The delivery-report URL sent with each message (gateways with `callback_url_param`),
    /// learnt when the source is set up.
    callback_url: std::sync::Arc<std::sync::Mutex<Option<String>>>,
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
        let callback_url = std::sync::Arc::new(std::sync::Mutex::new(config.callback_url.clone()));
        SmsClient {
            http,
            config,
            callback_url,
        }
    }

    /// Sets where delivery reports are to go (sent with each message where the gateway takes it).
    pub fn set_callback_url(&self, url: Option<String>) {
        *self
            .callback_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = url;
    }

    pub fn config(&self) -> &SmsGatewayConfig {
        &self.config
    }

    /// Reads the balance: the read-only call that validates the credentials.
    pub async fn balance(&self) -> Result<Balance, ChannelError> {
        let answer = self.call("balance", &self.config.api.balance, &[]).await?;
        let api = &self.config.api;
        let balance = at(&answer, &api.balance_pointer)
            .and_then(number)
            .ok_or_else(|| {
                ChannelError::Permanent("balance: the answer carries no balance".into())
            })?;
        Ok(Balance {
            balance,
            account_id: at(&answer, &api.account_id_pointer).and_then(as_text),
            account_name: at(&answer, &api.account_name_pointer).and_then(as_text),
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
        let digits = phone.trim_start_matches('+').to_owned();
        let mut params = vec![
            (api.to_param.clone(), digits.clone()),
            (api.text_param.clone(), text.to_owned()),
        ];
        if let Some(sender) = &self.config.sender {
            params.push((api.sender_param.clone(), sender.clone()));
        }
        if let (Some(name), Some(r)) = (&api.client_ref_param, client_ref) {
            params.push((name.clone(), r.to_owned()));
        }
        let callback_url = self
            .callback_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let (Some(name), Some(url)) = (&api.callback_url_param, callback_url) {
            params.push((name.clone(), url));
        }
        let answer = self.call("send", &api.send, &params).await?;
        let item = |p: &str| p.replace("{to}", &digits);
        if let Some(pointer) = &api.item_success_pointer {
            let ok = at(&answer, &item(pointer))
                .and_then(as_text)
                .is_some_and(|v| v.eq_ignore_ascii_case(&api.success_value));
            if !ok {
                let code = at(&answer, &item(&api.item_error_code_pointer)).and_then(as_text);
                let text = at(&answer, &item(&api.item_error_text_pointer)).and_then(as_text);
                return Err(self.scrub(self.classify("send", 200, code, text, None)));
            }
        }
        let ids = api
            .id_pointers
            .iter()
            .find_map(|p| at(&answer, &item(p)))
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
            let retry_after = retry_after_header(resp.headers());
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
                let numeric = &self.config.api.numeric_params;
                let object: serde_json::Map<String, Value> = body
                    .into_iter()
                    .map(|(k, v)| {
                        let n = numeric
                            .contains(&k)
                            .then(|| v.parse::<u64>().ok())
                            .flatten();
                        let v = n.map_or(Value::String(v), Value::from);
                        (k, v)
                    })
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
        let code = at(&json, &api.error_code_pointer).and_then(as_text);
        // No success marker: an answer without an error code is a success (SMSC).
        let ok = if api.success_pointer.is_empty() {
            code.is_none()
        } else {
            at(&json, &api.success_pointer)
                .and_then(as_text)
                .is_some_and(|v| v.eq_ignore_ascii_case(&api.success_value))
        };
        if ok && (200..300).contains(&status) {
            return Ok(json);
        }
        let text = at(&json, &api.error_text_pointer).and_then(as_text);
        Err(self.classify(what, status, code, text, retry_after))
    }

    /// Maps a gateway error (its code and text, the HTTP status) to ours: credentials →
    /// `Unauthorized` (the source asks to be reconnected), rate limits → `RateLimited`, outages
    /// → `Transient`, no money and wrong numbers → `Permanent` with a message saying so.
    fn classify(
        &self,
        what: &str,
        status: u16,
        code: Option<String>,
        text: Option<String>,
        retry_after: Option<u64>,
    ) -> ChannelError {
        let api = &self.config.api;
        // A gateway without codes (SMS Aero) is known by its text.
        let listed = |list: &[String]| {
            [&code, &text]
                .into_iter()
                .flatten()
                .any(|c| list.iter().any(|l| l.eq_ignore_ascii_case(c)))
        };
        let text = text.clone().unwrap_or_else(|| format!("HTTP {status}"));
        let message = match &code {
            Some(code) if *code != text => format!("{what}: {text} ({code})"),
            _ => format!("{what}: {text}"),
        };
        if listed(&api.unauthorized_errors) || matches!(status, 401 | 403) {
            unauthorized(&message)
        } else if listed(&api.rate_limited_errors) || status == 429 {
            rate_limited(&message, retry_after)
        } else if listed(&api.transient_errors) || status >= 500 {
            ChannelError::Transient(message)
        } else if listed(&api.no_money_errors) {
            ChannelError::Permanent(format!(
                "the SMS gateway account has no money left: top it up ({message})"
            ))
        } else if listed(&api.invalid_number_errors) {
            ChannelError::Permanent(format!("the number cannot receive SMS ({message})"))
        } else {
            ChannelError::Permanent(message)
        }
    }

    /// Removes the secrets from an error message, whatever put them there.
    fn scrub(&self, e: ChannelError) -> ChannelError {
        scrub(e, &self.config.credentials.secrets())
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

/// A string, number or boolean as text.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `json` at `pointer`; an empty pointer names nothing (not the whole document).
fn at<'a>(json: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        None
    } else {
        json.pointer(pointer)
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().replace(',', ".").parse().ok(),
        _ => None,
    }
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

/// The SMS gateway's section of the configuration (`[sms]`).
#[derive(Clone, Debug)]
pub struct Config {
    /// Sipout's API base URL (`https://lk.sipout.net/userapi/`).
    pub api_base: String,
    /// SMSC.ru's (`https://smsc.ru/`).
    pub smsc_base: String,
    /// SMS.ru's (`https://sms.ru/`).
    pub smsru_base: String,
    /// SMS Aero's (`https://gate.smsaero.ru/`).
    pub smsaero_base: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_base: SIPOUT_BASE_URL.into(),
            smsc_base: SMSC_BASE_URL.into(),
            smsru_base: SMSRU_BASE_URL.into(),
            smsaero_base: SMSAERO_BASE_URL.into(),
        }
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
            ChannelError::Permanent(
                "the SMS gateway account has no money left: top it up \
                 (send: Недостаточно средств (no_money))"
                    .into()
            )
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
}
