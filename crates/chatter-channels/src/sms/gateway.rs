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
    /// Why a failed status failed, when the report carries no reason of its own (SMS.ru `104`
    /// → expired); status values not listed fall back to `SMS <value>`.
    pub reasons: Vec<(String, String)>,
    /// What to answer on success (status 200 and this body).
    pub ack_body: String,
    /// How records are laid out in the body.
    pub format: CallbackFormat,
    /// Incoming SMS arrive at the delivery-report URL too (SMSC's one handler), told apart by
    /// a text and no status; otherwise they have their own URL, if any.
    pub inbound_in_reports: bool,
}

/// How a gateway lays out its callback body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackFormat {
    /// One record as form fields, or JSON: one object or an array of objects.
    Fields,
    /// SMS.ru: a form whose `data[]` values are blocks of lines: `sms_status`, the id, the
    /// status code (and maybe a time); other blocks are skipped.
    SmsRuLines,
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
    /// … the account has no money left.
    pub no_money_errors: Vec<String>,
    /// … the number is wrong or cannot be reached.
    pub invalid_number_errors: Vec<String>,
    /// Where a per-number answer says whether that number was accepted (SMS.ru), its error
    /// code and text; `{to}` in these and in `id_pointers` stands for the number's digits.
    pub item_success_pointer: Option<String>,
    pub item_error_code_pointer: String,
    pub item_error_text_pointer: String,
    /// JSON bodies: parameters sent as numbers (SMS Aero's `number`).
    pub numeric_params: Vec<String>,
    /// The parameter that carries the delivery-report URL with each message (SMS Aero's
    /// `callbackUrl`); `None`: set once in the gateway's cabinet.
    pub callback_url_param: Option<String>,
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
                reasons: vec![("expired".into(), "expired".into())],
                ack_body: "ok".into(),
                format: CallbackFormat::Fields,
                inbound_in_reports: false,
            },
            no_money_errors: codes(&["no_money"]),
            invalid_number_errors: codes(&["bad_phone"]),
            item_success_pointer: None,
            item_error_code_pointer: String::new(),
            item_error_text_pointer: String::new(),
            numeric_params: Vec::new(),
            callback_url_param: None,
        }
    }

    /// SMSC.ru (`https://smsc.ru/sys/<command>.php`): login and password with every call,
    /// `fmt=3` (JSON) and `charset=utf-8`; errors arrive with HTTP 200 as
    /// `{"error","error_code"}`, so success is the absence of `error_code`. Delivery reports go to
    /// the one handler URL set in the cabinet; its field names are unconfirmed (see
    /// `docs/providers/smsc.md`).
    pub fn smsc() -> Self {
        let fixed = || {
            vec![
                ("fmt".to_owned(), "3".to_owned()),
                ("charset".to_owned(), "utf-8".to_owned()),
            ]
        };
        let mut send_query = fixed();
        // cost=3: the answer also carries the cost and the balance left.
        send_query.push(("cost".into(), "3".into()));
        SmsApi {
            auth: AuthStyle::LoginPasswordParams {
                login: "login".into(),
                password: "psw".into(),
            },
            balance: Endpoint {
                path: "sys/balance.php".into(),
                fixed_query: fixed(),
                encoding: BodyEncoding::Form,
            },
            send: Endpoint {
                path: "sys/send.php".into(),
                fixed_query: send_query,
                encoding: BodyEncoding::Form,
            },
            to_param: "phones".into(),
            text_param: "mes".into(),
            sender_param: "sender".into(),
            client_ref_param: None,
            success_pointer: String::new(),
            success_value: String::new(),
            error_code_pointer: "/error_code".into(),
            error_text_pointer: "/error".into(),
            id_pointers: vec!["/id".into()],
            balance_pointer: "/balance".into(),
            account_id_pointer: String::new(),
            account_name_pointer: String::new(),
            unauthorized_errors: codes(&["2"]),
            rate_limited_errors: codes(&["4", "9"]),
            transient_errors: Vec::new(),
            no_money_errors: codes(&["3"]),
            invalid_number_errors: codes(&["7", "8"]),
            item_success_pointer: None,
            item_error_code_pointer: String::new(),
            item_error_text_pointer: String::new(),
            numeric_params: Vec::new(),
            callback_url_param: None,
            callback: CallbackMapping {
                id_field: "id".into(),
                status_field: "status".into(),
                // `err` is a numeric reason code whose table is unconfirmed: the status's own
                // meaning is the reason.
                error_field: String::new(),
                time_field: "time".into(),
                // SMSC posts incoming SMS to the same handler: a record with the text (`mes`)
                // and no `status` is one (field names unconfirmed, docs/providers/smsc.md).
                from_field: "phone".into(),
                to_field: "to".into(),
                text_field: "mes".into(),
                statuses: states(&[
                    ("0", DeliveryState::Sent),
                    ("1", DeliveryState::Delivered),
                    ("2", DeliveryState::Delivered),
                    ("4", DeliveryState::Delivered),
                    ("3", DeliveryState::Failed),
                    ("-2", DeliveryState::Failed),
                    ("20", DeliveryState::Failed),
                    ("22", DeliveryState::Failed),
                    ("23", DeliveryState::Failed),
                    ("24", DeliveryState::Failed),
                    ("25", DeliveryState::Failed),
                ]),
                reasons: reasons(&[
                    ("3", "expired"),
                    ("-2", "stopped"),
                    ("20", "cannot be delivered"),
                    ("22", "wrong number"),
                    ("23", "prohibited"),
                    ("24", "not enough money"),
                    ("25", "unreachable number"),
                ]),
                ack_body: "OK".into(),
                format: CallbackFormat::Fields,
                inbound_in_reports: true,
            },
        }
    }

    /// SMS.ru (`https://sms.ru/<group>/<method>`): `api_id` with every call, `json=1`; the
    /// envelope's `status` says whether the request was fine and each number has its own
    /// result under `sms.<number>`. Delivery reports are `data[]` line blocks, acknowledged
    /// with the body `100`.
    pub fn smsru() -> Self {
        let json = || vec![("json".to_owned(), "1".to_owned())];
        SmsApi {
            auth: AuthStyle::QueryKey("api_id".into()),
            balance: Endpoint {
                path: "my/balance".into(),
                fixed_query: json(),
                encoding: BodyEncoding::Form,
            },
            send: Endpoint {
                path: "sms/send".into(),
                fixed_query: json(),
                encoding: BodyEncoding::Form,
            },
            to_param: "to".into(),
            text_param: "msg".into(),
            sender_param: "from".into(),
            client_ref_param: None,
            success_pointer: "/status".into(),
            success_value: "OK".into(),
            error_code_pointer: "/status_code".into(),
            error_text_pointer: "/status_text".into(),
            id_pointers: vec!["/sms/{to}/sms_id".into()],
            balance_pointer: "/balance".into(),
            account_id_pointer: String::new(),
            account_name_pointer: String::new(),
            unauthorized_errors: codes(&["200", "300", "301", "302"]),
            rate_limited_errors: codes(&["230", "231", "233", "304", "504"]),
            transient_errors: codes(&["220", "500"]),
            no_money_errors: codes(&["201"]),
            invalid_number_errors: codes(&["202", "207", "209", "214", "215"]),
            item_success_pointer: Some("/sms/{to}/status".into()),
            item_error_code_pointer: "/sms/{to}/status_code".into(),
            item_error_text_pointer: "/sms/{to}/status_text".into(),
            numeric_params: Vec::new(),
            callback_url_param: None,
            callback: CallbackMapping {
                id_field: String::new(),
                status_field: String::new(),
                error_field: String::new(),
                time_field: String::new(),
                from_field: String::new(),
                to_field: String::new(),
                text_field: String::new(),
                statuses: states(&[
                    ("101", DeliveryState::Sent),
                    ("102", DeliveryState::Sent),
                    ("103", DeliveryState::Delivered),
                    ("110", DeliveryState::Read),
                    ("104", DeliveryState::Failed),
                    ("105", DeliveryState::Failed),
                    ("106", DeliveryState::Failed),
                    ("107", DeliveryState::Failed),
                    ("108", DeliveryState::Failed),
                    ("150", DeliveryState::Failed),
                ]),
                reasons: reasons(&[
                    ("104", "expired"),
                    ("105", "deleted by the operator"),
                    ("106", "phone failure"),
                    ("107", "unknown reason"),
                    ("108", "rejected"),
                    ("150", "no route to the number"),
                ]),
                ack_body: "100".into(),
                format: CallbackFormat::SmsRuLines,
                inbound_in_reports: false,
            },
        }
    }

    /// SMS Aero API v2 (`https://gate.smsaero.ru/v2/<selector>`): HTTP basic with the account's
    /// e-mail and API key, JSON bodies, `{"success","data","message"}` envelopes; the number is
    /// a JSON integer and each message names its delivery-report URL (`callbackUrl`).
    pub fn smsaero() -> Self {
        let post = |path: &str| Endpoint {
            path: path.into(),
            fixed_query: Vec::new(),
            encoding: BodyEncoding::Json,
        };
        SmsApi {
            auth: AuthStyle::Basic,
            balance: post("v2/balance"),
            send: post("v2/sms/send"),
            to_param: "number".into(),
            text_param: "text".into(),
            sender_param: "sign".into(),
            client_ref_param: None,
            success_pointer: "/success".into(),
            success_value: "true".into(),
            // The legacy answers `{"result":"no credits"}`, `{"result":"reject"}`.
            error_code_pointer: "/result".into(),
            error_text_pointer: "/message".into(),
            id_pointers: vec!["/data/id".into(), "/data/0/id".into()],
            balance_pointer: "/data/balance".into(),
            account_id_pointer: String::new(),
            account_name_pointer: String::new(),
            unauthorized_errors: Vec::new(),
            rate_limited_errors: Vec::new(),
            transient_errors: Vec::new(),
            no_money_errors: codes(&["no credits"]),
            invalid_number_errors: codes(&["reject"]),
            item_success_pointer: None,
            item_error_code_pointer: String::new(),
            item_error_text_pointer: String::new(),
            numeric_params: vec!["number".into()],
            callback_url_param: Some("callbackUrl".into()),
            callback: CallbackMapping {
                id_field: "id".into(),
                status_field: "status".into(),
                error_field: "reason".into(),
                time_field: "dateAnswer".into(),
                // SMS Aero's published API posts no incoming SMS.
                from_field: String::new(),
                to_field: String::new(),
                text_field: String::new(),
                statuses: states(&[
                    ("1", DeliveryState::Delivered),
                    ("3", DeliveryState::Sent),
                    ("4", DeliveryState::Sent),
                    ("2", DeliveryState::Failed),
                    ("6", DeliveryState::Failed),
                ]),
                reasons: reasons(&[("2", "not delivered"), ("6", "rejected")]),
                ack_body: String::new(),
                format: CallbackFormat::Fields,
                inbound_in_reports: false,
            },
        }
    }
}

fn codes(c: &[&str]) -> Vec<String> {
    c.iter().map(|s| (*s).to_owned()).collect()
}

fn states(c: &[(&str, DeliveryState)]) -> Vec<(String, DeliveryState)> {
    c.iter().map(|(v, s)| ((*v).to_owned(), *s)).collect()
}

fn reasons(c: &[(&str, &str)]) -> Vec<(String, String)> {
    c.iter()
        .map(|(v, r)| ((*v).to_owned(), (*r).to_owned()))
        .collect()
}

/// The gateways a source can use, by the slug its form and settings name them with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmsGateway {
    Sipout,
    Smsc,
    SmsRu,
    SmsAero,
}

impl SmsGateway {
    pub const ALL: [SmsGateway; 4] = [
        SmsGateway::Sipout,
        SmsGateway::Smsc,
        SmsGateway::SmsRu,
        SmsGateway::SmsAero,
    ];

    /// `sipout`, `smsc`, `smsru`, `smsaero`.
    pub fn slug(self) -> &'static str {
        match self {
            SmsGateway::Sipout => "sipout",
            SmsGateway::Smsc => "smsc",
            SmsGateway::SmsRu => "smsru",
            SmsGateway::SmsAero => "smsaero",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.slug() == slug)
    }

    /// The gateway's name as people know it.
    pub fn title(self) -> &'static str {
        match self {
            SmsGateway::Sipout => "Sipout",
            SmsGateway::Smsc => "SMSC.ru",
            SmsGateway::SmsRu => "SMS.ru",
            SmsGateway::SmsAero => "SMS Aero",
        }
    }

    /// The request and response mapping.
    pub fn api(self) -> SmsApi {
        match self {
            SmsGateway::Sipout => SmsApi::sipout(),
            SmsGateway::Smsc => SmsApi::smsc(),
            SmsGateway::SmsRu => SmsApi::smsru(),
            SmsGateway::SmsAero => SmsApi::smsaero(),
        }
    }

    /// The source's account id (`settings.bot_id`) names its gateway: `smsc@<login>:<sender>`;
    /// Sipout's ids (`<inn>:<sender>`) carry no prefix.
    pub fn of_account(account_id: &str) -> Self {
        account_id
            .split_once('@')
            .and_then(|(g, _)| Self::from_slug(g))
            .filter(|g| *g != SmsGateway::Sipout)
            .unwrap_or(SmsGateway::Sipout)
    }

    /// The base URL configured for this gateway.
    pub fn base_url(self, config: &super::Config) -> &str {
        match self {
            SmsGateway::Sipout => &config.api_base,
            SmsGateway::Smsc => &config.smsc_base,
            SmsGateway::SmsRu => &config.smsru_base,
            SmsGateway::SmsAero => &config.smsaero_base,
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
    /// Where delivery reports go, for gateways that take it with each message.
    pub callback_url: Option<String>,
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
            callback_url: None,
        }
    }

    /// `gateway` with its credentials: `login` is SMSC's login or SMS Aero's e-mail (unused by
    /// Sipout and SMS.ru), `secret` the API key (SMSC: the password).
    pub fn of(
        gateway: SmsGateway,
        base_url: &str,
        login: &str,
        secret: &str,
        sender: Option<&str>,
    ) -> Self {
        let secret = secret.trim().to_owned();
        let credentials = match gateway {
            SmsGateway::Sipout | SmsGateway::SmsRu => SmsCredentials::ApiKey(secret),
            SmsGateway::Smsc | SmsGateway::SmsAero => SmsCredentials::LoginPassword {
                login: login.trim().to_owned(),
                password: secret,
            },
        };
        SmsGatewayConfig {
            base_url: base_url.to_owned(),
            credentials,
            sender: sender
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            api: gateway.api(),
            callback_url: None,
        }
    }
}
