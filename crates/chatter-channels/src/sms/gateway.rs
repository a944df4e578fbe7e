//! A gateway's shape as a value (§6.3): how credentials travel, each call's endpoint and
//! encoding, where answers keep their fields, and how callbacks name theirs; with the Sipout
//! preset. Changing what a gateway speaks is a change of data here, not of the client.

use std::fmt;

use crate::DeliveryState;

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
    pub(super) fn secrets(&self) -> Vec<&str> {
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
