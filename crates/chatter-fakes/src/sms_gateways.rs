//! Fakes of three Russian SMS gateways with published HTTP APIs, on one loopback server:
//! SMSC.ru under `/smsc/`, SMS.ru under `/smsru/`, SMS Aero under `/smsaero/`, each speaking its
//! own wire format as `docs/providers/smsc.md`, `smsru.md` and `smsaero.md` describe it.
//!
//! State per account (credentials, balance, price per part, sent messages with statuses that
//! advance, the delivery-report URL), billing per GSM-7/UCS-2 part, delivery reports POSTed in
//! each gateway's format and retried until acknowledged the gateway's way (SMSC: any 200; SMS.ru:
//! the body `100`; SMS Aero: any 200), and the errors the gateways document: wrong credentials,
//! no money, invalid numbers, rate limits (SMSC error 9, SMS.ru 231, SMS Aero HTTP 429), 5xx
//! pages and hangs.
//!
//! Each gateway's delivery-report URL is set as its customers set it: SMSC in the cabinet (here
//! [`FakeSmsGateways::set_callback_url`]), SMS.ru in the cabinet or with `callback/add`, SMS Aero
//! with each message (`callbackUrl`).

use crate::server::{self, unix_secs, Backoff, Next, StopGuard, LOWER_ALPHANUMERIC};
use crate::sms::{count_parts, digits};
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use md5::Digest;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const MAX_BODY: usize = 1024 * 1024;
const CALLBACK_BACKOFF_START: Duration = Duration::from_millis(50);
const CALLBACK_BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Roubles per part unless `set_price` says otherwise.
const DEFAULT_PRICE: f64 = 2.5;

/// Which gateway an account belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    Smsc,
    SmsRu,
    SmsAero,
}

/// An account's credentials: SMSC login and password, SMS.ru `api_id` (login empty), SMS Aero
/// e-mail and API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAccount {
    pub gateway: Gateway,
    pub login: String,
    pub secret: String,
}

/// A failure injected into the next calls of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayFailure {
    /// The gateway's own "too often" answer: SMSC error 9, SMS.ru 231 on each number, SMS Aero
    /// HTTP 429.
    RateLimited,
    /// HTTP 503 with an HTML page.
    ServerError,
    /// Never answer.
    Hang,
}

/// A message's delivery state as the fake tracks it (each gateway reports it in its codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GwStatus {
    Queued,
    Sent,
    Delivered,
    Failed,
    Expired,
}

/// An SMS an account sent.
#[derive(Debug, Clone, PartialEq)]
pub struct GwSent {
    pub id: String,
    /// Digits.
    pub to: String,
    pub text: String,
    pub sender: Option<String>,
    pub parts: u32,
    pub cost: f64,
    pub status: GwStatus,
    /// SMS Aero: the `callbackUrl` the message named.
    pub callback_url: Option<String>,
    created: i64,
}

/// One delivery report the gateway made (or is still trying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GwCallback {
    pub message_id: String,
    pub status: GwStatus,
    pub url: Option<String>,
    pub content_type: String,
    pub body: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub delivered: bool,
    /// No URL was known: the gateway dropped it.
    pub dropped: bool,
}

struct Account {
    creds: GatewayAccount,
    balance: f64,
    price: f64,
    revoked: bool,
    failing: HashSet<String>,
    invalid: HashSet<String>,
    expiring: HashSet<String>,
    failures: VecDeque<(GatewayFailure, usize)>,
    sent: Vec<GwSent>,
    callback_urls: Vec<String>,
    callbacks: Vec<GwCallback>,
    outbox: VecDeque<usize>,
    notify: Arc<Notify>,
    worker: bool,
    next_id: u64,
}

type Accounts = Vec<Account>;
type Shared = server::Shared<Accounts>;

/// Handle to the running fake; it stops when the last clone drops or on `shutdown`.
#[derive(Clone)]
pub struct FakeSmsGateways {
    shared: Arc<Shared>,
    guard: Arc<StopGuard>,
}

impl FakeSmsGateways {
    /// Starts the fake on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<Self> {
        let spec = server::Spec::new(Vec::new(), "fake SMS gateways stopped");
        let (shared, guard) = server::start(spec, |shared| {
            Router::new().fallback(api).with_state(shared)
        })
        .await?;
        Ok(FakeSmsGateways { shared, guard })
    }

    pub fn shutdown(&self) {
        self.guard.stop();
    }

    /// The stand-in for `https://smsc.ru/`.
    pub fn smsc_base_url(&self) -> String {
        format!("{}/smsc/", self.shared.base_url)
    }

    /// The stand-in for `https://sms.ru/`.
    pub fn smsru_base_url(&self) -> String {
        format!("{}/smsru/", self.shared.base_url)
    }

    /// The stand-in for `https://gate.smsaero.ru/`.
    pub fn smsaero_base_url(&self) -> String {
        format!("{}/smsaero/", self.shared.base_url)
    }

    /// Opens an account with `balance` roubles. `login` is SMSC's login or SMS Aero's e-mail
    /// (ignored for SMS.ru); the secret (password, `api_id`, API key) is made up.
    pub fn add_account(&self, gateway: Gateway, login: &str, balance: f64) -> GatewayAccount {
        let secret = match gateway {
            Gateway::SmsRu => {
                let hex = server::random_string(b"0123456789ABCDEF", 32);
                format!("{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..])
            }
            _ => server::random_string(LOWER_ALPHANUMERIC, 32),
        };
        let creds = GatewayAccount {
            gateway,
            login: if gateway == Gateway::SmsRu {
                String::new()
            } else {
                login.to_owned()
            },
            secret,
        };
        let next_id = rand::thread_rng().gen_range(10_000u64..90_000);
        self.shared.lock().push(Account {
            creds: creds.clone(),
            balance,
            price: DEFAULT_PRICE,
            revoked: false,
            failing: HashSet::new(),
            invalid: HashSet::new(),
            expiring: HashSet::new(),
            failures: VecDeque::new(),
            sent: Vec::new(),
            callback_urls: Vec::new(),
            callbacks: Vec::new(),
            outbox: VecDeque::new(),
            notify: Arc::new(Notify::new()),
            worker: false,
            next_id,
        });
        creds
    }

    fn with<T>(&self, a: &GatewayAccount, f: impl FnOnce(&mut Account) -> T) -> T {
        let mut accounts = self.shared.lock();
        let account = accounts
            .iter_mut()
            .find(|x| x.creds == *a)
            .expect("the account was opened on this fake");
        f(account)
    }

    /// Starts the account's report sender (once). Must run inside a Tokio runtime.
    fn ensure_worker(&self, a: &GatewayAccount) {
        let start = self.with(a, |x| {
            x.notify.notify_waiters();
            !std::mem::replace(&mut x.worker, true)
        });
        if start {
            tokio::spawn(deliver_loop(self.shared.clone(), a.secret.clone()));
        }
    }

    /// The delivery-report URL set in the cabinet (SMSC, SMS.ru). Starts the report sender.
    pub fn set_callback_url(&self, a: &GatewayAccount, url: &str) {
        self.with(a, |x| {
            x.callback_urls.retain(|u| u != url);
            x.callback_urls.push(url.to_owned());
        });
        self.ensure_worker(a);
    }

    /// Starts the report sender without a cabinet URL (SMS Aero's reports name their URL).
    pub fn start_reports(&self, a: &GatewayAccount) {
        self.ensure_worker(a);
    }

    /// SMSC only: a customer's SMS from `from` to the account's number `to`, posted to the
    /// cabinet's handler URL like a report but with the text (`phone`, `mes`, `to`, `id`,
    /// `time`; field names unconfirmed, see docs/providers/smsc.md). Returns its id.
    pub fn customer_sends(&self, a: &GatewayAccount, from: &str, to: &str, text: &str) -> String {
        assert_eq!(a.gateway, Gateway::Smsc, "only SMSC passes incoming SMS on");
        self.with(a, |x| {
            let id = format!("in{}", x.new_id());
            let now = unix_secs();
            let form: Vec<(&str, String)> = vec![
                ("id", id.clone()),
                ("phone", digits(from)),
                ("mes", text.to_owned()),
                ("to", digits(to)),
                ("time", now.to_string()),
                ("ts", now.to_string()),
            ];
            x.callbacks.push(GwCallback {
                message_id: id.clone(),
                status: GwStatus::Delivered,
                url: None,
                content_type: "application/x-www-form-urlencoded".into(),
                body: encode_form(&form),
                attempts: 0,
                last_status: None,
                delivered: false,
                dropped: false,
            });
            x.outbox.push_back(x.callbacks.len() - 1);
            x.notify.notify_waiters();
            id
        })
    }

    /// SMS to this number are accepted, then reported failed (unreachable).
    pub fn set_failing_number(&self, a: &GatewayAccount, phone: &str) {
        self.with(a, |x| x.failing.insert(digits(phone)));
    }

    /// The gateway refuses SMS to this number outright (no such number, no route).
    pub fn set_invalid_number(&self, a: &GatewayAccount, phone: &str) {
        self.with(a, |x| x.invalid.insert(digits(phone)));
    }

    /// SMS to this number are accepted, then reported expired.
    pub fn set_expiring_number(&self, a: &GatewayAccount, phone: &str) {
        self.with(a, |x| x.expiring.insert(digits(phone)));
    }

    /// The next `count` calls of the account fail with `f`.
    pub fn fail_next(&self, a: &GatewayAccount, f: GatewayFailure, count: usize) {
        if count > 0 {
            self.with(a, |x| x.failures.push_back((f, count)));
        }
    }

    /// Blocks the credentials: every later call is refused as unauthorised.
    pub fn revoke(&self, a: &GatewayAccount) {
        self.with(a, |x| x.revoked = true);
    }

    pub fn set_balance(&self, a: &GatewayAccount, balance: f64) {
        self.with(a, |x| x.balance = balance);
    }

    pub fn set_price(&self, a: &GatewayAccount, per_part: f64) {
        self.with(a, |x| x.price = per_part);
    }

    pub fn balance(&self, a: &GatewayAccount) -> f64 {
        self.with(a, |x| x.balance)
    }

    pub fn sent(&self, a: &GatewayAccount) -> Vec<GwSent> {
        self.with(a, |x| x.sent.clone())
    }

    pub fn callbacks(&self, a: &GatewayAccount) -> Vec<GwCallback> {
        self.with(a, |x| x.callbacks.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery reports

impl Account {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Queues the report of `status` for message `index` in the gateway's format.
    fn report(&mut self, index: usize, status: GwStatus) {
        let m = &self.sent[index];
        let now = unix_secs();
        let (content_type, body) = match self.creds.gateway {
            Gateway::Smsc => {
                let (code, err) = smsc_status(status);
                let form: Vec<(&str, String)> = vec![
                    ("id", m.id.clone()),
                    ("phone", m.to.clone()),
                    ("status", code.to_string()),
                    ("err", err.to_string()),
                    ("time", now.to_string()),
                    ("ts", now.to_string()),
                ];
                ("application/x-www-form-urlencoded", encode_form(&form))
            }
            Gateway::SmsRu => {
                let block = format!("sms_status\n{}\n{}\n{now}", m.id, smsru_status(status));
                (
                    "application/x-www-form-urlencoded",
                    encode_form(&[("data[]", block)]),
                )
            }
            Gateway::SmsAero => (
                "application/json",
                aero_object(m, status, Some(now)).to_string(),
            ),
        };
        self.callbacks.push(GwCallback {
            message_id: m.id.clone(),
            status,
            url: None,
            content_type: content_type.to_owned(),
            body,
            attempts: 0,
            last_status: None,
            delivered: false,
            dropped: false,
        });
        self.outbox.push_back(self.callbacks.len() - 1);
        self.notify.notify_waiters();
    }

    /// The URL a report of `message_id` goes to: the message's own (SMS Aero), else the cabinet's.
    fn url_for(&self, message_id: &str) -> Option<String> {
        match self.creds.gateway {
            Gateway::SmsAero => self
                .sent
                .iter()
                .find(|m| m.id == message_id)
                .and_then(|m| m.callback_url.clone()),
            _ => self.callback_urls.last().cloned(),
        }
    }

    fn set_status(&mut self, message_id: &str, status: GwStatus) {
        if let Some(m) = self.sent.iter_mut().find(|m| m.id == message_id) {
            m.status = status;
        }
    }
}

fn encode_form(fields: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// POSTs the account's reports in order, each until acknowledged; the message's status
/// advances as its report goes out (or is dropped for want of a URL).
async fn deliver_loop(shared: Arc<Shared>, secret: String) {
    let backoff = Backoff::new(CALLBACK_BACKOFF_START, CALLBACK_BACKOFF_CAP);
    let find = |accounts: &mut Accounts| -> Option<usize> {
        accounts.iter().position(|a| a.creds.secret == secret)
    };
    let doorbell = |accounts: &Accounts| {
        accounts
            .iter()
            .find(|a| a.creds.secret == secret)
            .map(|a| a.notify.clone())
    };
    let next = |accounts: &mut Accounts| {
        let Some(i) = find(accounts) else {
            return Next::Gone;
        };
        let a = &mut accounts[i];
        while let Some(&c) = a.outbox.front() {
            let id = a.callbacks[c].message_id.clone();
            match a.url_for(&id) {
                Some(url) => {
                    a.callbacks[c].url = Some(url.clone());
                    let cb = &a.callbacks[c];
                    return Next::Call(
                        c,
                        (
                            a.creds.gateway,
                            url,
                            cb.content_type.clone(),
                            cb.body.clone(),
                        ),
                    );
                }
                None => {
                    a.callbacks[c].dropped = true;
                    let status = a.callbacks[c].status;
                    a.set_status(&id, status);
                    a.outbox.pop_front();
                }
            }
        }
        Next::Idle
    };
    let http = &shared.http;
    let send = |(gateway, url, content_type, body): (Gateway, String, String, String)| async move {
        let resp = http
            .post(&url)
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await;
        match resp {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let ok = status == 200 && (gateway != Gateway::SmsRu || text.trim() == "100");
                (Some(status), ok)
            }
            Err(_) => (None, false),
        }
    };
    let settle = |accounts: &mut Accounts, index: usize, status: Option<u16>, ok: bool| {
        let Some(i) = find(accounts) else {
            return false;
        };
        let a = &mut accounts[i];
        let c = &mut a.callbacks[index];
        c.attempts += 1;
        c.last_status = status;
        if ok {
            c.delivered = true;
            let (id, st) = (c.message_id.clone(), c.status);
            a.set_status(&id, st);
            a.outbox.pop_front();
        }
        true
    };
    shared
        .deliver_in_order(backoff, doorbell, next, send, settle)
        .await;
}

// ---------------------------------------------------------------------------------------------
// Status codes

/// SMSC `status` and `err` of a state.
fn smsc_status(s: GwStatus) -> (i32, i32) {
    match s {
        GwStatus::Queued => (-1, 0),
        GwStatus::Sent => (0, 0),
        GwStatus::Delivered => (1, 0),
        GwStatus::Expired => (3, 0),
        GwStatus::Failed => (20, 1),
    }
}

/// SMS.ru `status_code` of a state.
fn smsru_status(s: GwStatus) -> u16 {
    match s {
        GwStatus::Queued => 100,
        GwStatus::Sent => 102,
        GwStatus::Delivered => 103,
        GwStatus::Expired => 104,
        GwStatus::Failed => 106,
    }
}

/// SMS Aero `status` and `extendStatus` of a state.
fn aero_status(s: GwStatus) -> (u8, &'static str) {
    match s {
        GwStatus::Queued => (0, "queue"),
        GwStatus::Sent => (3, "transmitted"),
        GwStatus::Delivered => (1, "delivery"),
        GwStatus::Expired | GwStatus::Failed => (2, "error"),
    }
}

fn aero_object(m: &GwSent, status: GwStatus, answered: Option<i64>) -> Value {
    let (code, extend) = aero_status(status);
    let mut o = json!({
        "id": m.id.parse::<u64>().unwrap_or_default(),
        "from": m.sender.clone().unwrap_or_else(|| "SMS Aero".into()),
        "number": m.to,
        "text": m.text,
        "status": code,
        "extendStatus": extend,
        "channel": "FREE SIGN",
        "cost": m.cost,
        "dateCreate": m.created,
        "dateSend": m.created,
    });
    if let (Some(t), GwStatus::Delivered | GwStatus::Failed | GwStatus::Expired) =
        (answered, status)
    {
        o["dateAnswer"] = json!(t);
    }
    o
}

// ---------------------------------------------------------------------------------------------
// The gateways' surfaces

/// What a request carried: its path under the gateway's root, parameters from the query and a
/// form or JSON body (JSON values as text, arrays kept), and the headers.
struct Call {
    path: String,
    params: HashMap<String, String>,
    json: Value,
    headers: HeaderMap,
}

async fn api(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let mut params: HashMap<String, String> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let headers = request.headers().clone();
    let Ok(body) = to_bytes(request.into_body(), MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large").into_response();
    };
    let mut json = Value::Null;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("json"));
    if is_json {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => {
                if let Value::Object(o) = &v {
                    for (k, v) in o {
                        if let Some(t) = scalar(v) {
                            params.insert(k.clone(), t);
                        }
                    }
                }
                json = v;
            }
            Err(_) => {
                return aero_fail(StatusCode::BAD_REQUEST, "Invalid JSON body");
            }
        }
    } else if !body.is_empty() {
        params.extend(url::form_urlencoded::parse(&body).into_owned());
    }
    let (gateway, rest) = if let Some(r) = path.strip_prefix("/smsc/") {
        (Gateway::Smsc, r)
    } else if let Some(r) = path.strip_prefix("/smsru/") {
        (Gateway::SmsRu, r)
    } else if let Some(r) = path.strip_prefix("/smsaero/") {
        (Gateway::SmsAero, r)
    } else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let call = Call {
        path: rest.trim_end_matches('/').to_owned(),
        params,
        json,
        headers,
    };
    // Who is calling, and whether an injected failure answers first.
    let found = {
        let mut accounts = shared.lock();
        let index = accounts
            .iter()
            .position(|a| a.creds.gateway == gateway && authorised(a, &call));
        index.map(|i| {
            let a = &mut accounts[i];
            let failure = a.failures.front_mut().map(|(f, left)| {
                *left -= 1;
                f.clone()
            });
            if a.failures.front().is_some_and(|(_, left)| *left == 0) {
                a.failures.pop_front();
            }
            (i, failure)
        })
    };
    let Some((index, failure)) = found else {
        return unauthorised(gateway);
    };
    match failure {
        Some(GatewayFailure::Hang) => {
            shared.hang().await;
            return (StatusCode::BAD_GATEWAY, "Bad Gateway").into_response();
        }
        Some(GatewayFailure::ServerError) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "<html><body>503 Service Temporarily Unavailable</body></html>",
            )
                .into_response();
        }
        Some(GatewayFailure::RateLimited) => return rate_limited(gateway, &call),
        None => {}
    }
    let mut accounts = shared.lock();
    let a = &mut accounts[index];
    match gateway {
        Gateway::Smsc => smsc(a, &call),
        Gateway::SmsRu => smsru(a, &call),
        Gateway::SmsAero => smsaero(a, &call),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn param<'a>(call: &'a Call, name: &str) -> &'a str {
    call.params.get(name).map_or("", String::as_str)
}

/// Whether `call` carries `a`'s credentials, the gateway's way.
fn authorised(a: &Account, call: &Call) -> bool {
    if a.revoked {
        return false;
    }
    match a.creds.gateway {
        Gateway::Smsc => {
            if param(call, "apikey") == a.creds.secret {
                return true;
            }
            let psw = param(call, "psw");
            let md5 = hex::encode(md5::Md5::digest(a.creds.secret.as_bytes()));
            param(call, "login") == a.creds.login && (psw == a.creds.secret || psw == md5)
        }
        Gateway::SmsRu => param(call, "api_id") == a.creds.secret,
        Gateway::SmsAero => {
            basic(&call.headers).is_some_and(|(u, p)| u == a.creds.login && p == a.creds.secret)
        }
    }
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (u, p) = raw.split_once(':')?;
    let u = url::form_urlencoded::parse(format!("u={u}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    Some((u, p.to_owned()))
}

fn unauthorised(gateway: Gateway) -> Response {
    match gateway {
        Gateway::Smsc => smsc_error(2, "authorise error"),
        Gateway::SmsRu => smsru_error(200, "Неправильный api_id"),
        Gateway::SmsAero => aero_fail(StatusCode::UNAUTHORIZED, "Authorization failed."),
    }
}

fn rate_limited(gateway: Gateway, call: &Call) -> Response {
    match gateway {
        Gateway::Smsc => smsc_error(9, "duplicate request, wait a minute"),
        Gateway::SmsRu => {
            // Per number, inside an OK envelope (see docs/providers/smsru.md): no HTTP 429 at SMS.ru.
            let entries: serde_json::Map<String, Value> = numbers(param(call, "to"))
                .into_iter()
                .map(|n| {
                    (
                        n,
                        json!({"status": "ERROR", "status_code": 231,
                               "status_text": "Превышен лимит одинаковых сообщений на этот номер в минуту"}),
                    )
                })
                .collect();
            axum::Json(json!({"status": "OK", "status_code": 100, "sms": entries, "balance": 0}))
                .into_response()
        }
        Gateway::SmsAero => {
            let mut r = aero_fail(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
            r
        }
    }
}

fn numbers(list: &str) -> Vec<String> {
    list.split([',', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_start_matches('+').to_owned())
        .collect()
}

/// International digits, 10 to 15 of them; Russian numbers (`7…`) exactly 11.
fn phone_ok(n: &str) -> bool {
    (10..=15).contains(&n.len())
        && n.bytes().all(|b| b.is_ascii_digit())
        && (!n.starts_with('7') || n.len() == 11)
}

/// Accepts one SMS: bills it, records it queued and queues its reports (sent, then delivered,
/// failed or expired). Returns its index.
fn accept(
    a: &mut Account,
    to: &str,
    text: &str,
    sender: Option<String>,
    callback_url: Option<String>,
) -> usize {
    let parts = count_parts(text);
    let cost = f64::from(parts) * a.price;
    a.balance -= cost;
    let id = a.new_id().to_string();
    a.sent.push(GwSent {
        id,
        to: to.to_owned(),
        text: text.to_owned(),
        sender,
        parts,
        cost,
        status: GwStatus::Queued,
        callback_url,
        created: unix_secs(),
    });
    let index = a.sent.len() - 1;
    a.report(index, GwStatus::Sent);
    let last = if a.failing.contains(to) {
        GwStatus::Failed
    } else if a.expiring.contains(to) {
        GwStatus::Expired
    } else {
        GwStatus::Delivered
    };
    a.report(index, last);
    index
}

fn cost_of(a: &Account, text: &str) -> f64 {
    f64::from(count_parts(text)) * a.price
}

fn money(x: f64) -> String {
    format!("{x:.2}")
}

// SMSC.ru ---------------------------------------------------------------------------------------

fn smsc_error(code: u8, text: &str) -> Response {
    // Errors come with HTTP 200 (docs/providers/smsc.md).
    axum::Json(json!({"error": text, "error_code": code})).into_response()
}

fn smsc(a: &mut Account, call: &Call) -> Response {
    if param(call, "fmt") != "3" {
        // Only the JSON answer format is faked.
        return (
            StatusCode::OK,
            "ERROR = 1 (parameters error: fmt=3 expected)",
        )
            .into_response();
    }
    match call.path.as_str() {
        "sys/balance.php" => {
            let mut o = json!({"balance": money(a.balance)});
            if param(call, "cur") == "1" {
                o["currency"] = json!("RUR");
            }
            axum::Json(o).into_response()
        }
        "sys/send.php" => {
            let phones = numbers(param(call, "phones"));
            let text = param(call, "mes");
            if phones.is_empty() || text.trim().is_empty() {
                return smsc_error(1, "parameters error");
            }
            if phones.iter().any(|p| !phone_ok(p)) {
                return smsc_error(7, "invalid number");
            }
            if phones.iter().any(|p| a.invalid.contains(p)) {
                return smsc_error(8, "message to the number cannot be delivered");
            }
            let sender = Some(param(call, "sender").to_owned()).filter(|s| !s.is_empty());
            if sender.as_deref().is_some_and(|s| s.len() > 11) {
                return smsc_error(6, "message is denied");
            }
            let total = cost_of(a, text) * phones.len() as f64;
            if a.balance < total {
                return smsc_error(3, "no money");
            }
            if param(call, "cost") == "1" {
                let parts = count_parts(text) as usize * phones.len();
                return axum::Json(json!({"cost": money(total), "cnt": parts})).into_response();
            }
            // One id for the call, however many numbers.
            let first = accept(a, &phones[0], text, sender.clone(), None);
            let id = a.sent[first].id.clone();
            for p in &phones[1..] {
                let i = accept(a, p, text, sender.clone(), None);
                a.sent[i].id.clone_from(&id);
                let n = a.callbacks.len();
                a.callbacks[n - 1].body = a.callbacks[n - 1]
                    .body
                    .replace(&format!("id={}", a.next_id), &format!("id={id}"));
                a.callbacks[n - 2].body = a.callbacks[n - 2]
                    .body
                    .replace(&format!("id={}", a.next_id), &format!("id={id}"));
                a.callbacks[n - 1].message_id.clone_from(&id);
                a.callbacks[n - 2].message_id.clone_from(&id);
            }
            let cnt = count_parts(text) as usize * phones.len();
            let id: u64 = id.parse().unwrap_or_default();
            let mut o = json!({"id": id, "cnt": cnt});
            match param(call, "cost") {
                "2" => o["cost"] = json!(money(total)),
                "3" => {
                    o["cost"] = json!(money(total));
                    o["balance"] = json!(money(a.balance));
                }
                _ => {}
            }
            axum::Json(o).into_response()
        }
        "sys/status.php" => {
            let list = param(call, "id").contains(',');
            let ids: Vec<&str> = param(call, "id")
                .split(',')
                .filter(|s| !s.is_empty())
                .collect();
            let phones = numbers(param(call, "phone"));
            if ids.is_empty() || ids.len() != phones.len() {
                return smsc_error(1, "parameters error");
            }
            let full = matches!(param(call, "all"), "1" | "2");
            let records: Vec<Value> = ids
                .iter()
                .zip(&phones)
                .map(|(id, phone)| {
                    let m = a.sent.iter().find(|m| m.id == *id && m.to == *phone);
                    let Some(m) = m else {
                        return json!({"status": -3, "last_date": "", "last_timestamp": 0,
                                      "flag": 0, "err": 0});
                    };
                    let (code, err) = smsc_status(m.status);
                    let mut o = json!({"status": code, "last_date": moscow(m.created),
                        "last_timestamp": m.created, "flag": 0, "err": err});
                    if full {
                        o["send_date"] = json!(moscow(m.created));
                        o["send_timestamp"] = json!(m.created);
                        o["phone"] = json!(m.to);
                        o["cost"] = json!(money(m.cost));
                        o["sender_id"] = json!(m.sender.clone().unwrap_or_default());
                        o["status_name"] = json!(smsc_status_name(code));
                        o["message"] = json!(m.text);
                        o["type"] = json!(0);
                    }
                    o
                })
                .collect();
            if list {
                axum::Json(Value::Array(records)).into_response()
            } else {
                axum::Json(records.into_iter().next().unwrap_or(Value::Null)).into_response()
            }
        }
        _ => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

fn smsc_status_name(code: i32) -> &'static str {
    match code {
        -1 => "Ожидает отправки",
        0 => "Передано оператору",
        1 => "Доставлено",
        3 => "Просрочено",
        _ => "Невозможно доставить",
    }
}

/// `dd.mm.yyyy hh:mm:ss`, Moscow time (UTC+3).
fn moscow(unix: i64) -> String {
    let t = chrono::DateTime::from_timestamp(unix + 3 * 3600, 0).unwrap_or_default();
    t.format("%d.%m.%Y %H:%M:%S").to_string()
}

// SMS.ru ----------------------------------------------------------------------------------------

fn smsru_error(code: u16, text: &str) -> Response {
    axum::Json(json!({"status": "ERROR", "status_code": code, "status_text": text})).into_response()
}

fn smsru(a: &mut Account, call: &Call) -> Response {
    match call.path.as_str() {
        "auth/check" => axum::Json(json!({"status": "OK", "status_code": 100})).into_response(),
        "my/balance" => axum::Json(json!({"status": "OK", "status_code": 100,
                                          "balance": (a.balance * 100.0).round() / 100.0}))
        .into_response(),
        "sms/send" => {
            let text = param(call, "msg");
            let to = numbers(param(call, "to"));
            if text.trim().is_empty() {
                return smsru_error(203, "Нет текста сообщения");
            }
            if to.is_empty() {
                return smsru_error(202, "Неправильно указан номер телефона получателя");
            }
            if to.len() > 100 {
                return smsru_error(213, "Слишком много получателей");
            }
            let sender = Some(param(call, "from").to_owned()).filter(|s| !s.is_empty());
            if sender.as_deref().is_some_and(|s| s.len() > 11) {
                return smsru_error(204, "Имя отправителя не согласовано с администрацией");
            }
            if count_parts(text) > 8 {
                return smsru_error(205, "Сообщение слишком длинное (превышает 8 СМС)");
            }
            let valid = to.iter().filter(|n| phone_ok(n)).count();
            if a.balance < cost_of(a, text) * valid as f64 {
                return smsru_error(201, "Не хватает средств на лицевом счету");
            }
            let now = unix_secs();
            let mut entries = serde_json::Map::new();
            for n in to {
                let entry = if !phone_ok(&n) || a.invalid.contains(&n) {
                    json!({"status": "ERROR", "status_code": 202,
                           "status_text": "Неправильно указан номер телефона получателя"})
                } else if a
                    .sent
                    .iter()
                    .any(|m| m.to == n && m.text == text && now.saturating_sub(m.created) < 60)
                {
                    json!({"status": "ERROR", "status_code": 231,
                           "status_text": "Превышен лимит одинаковых сообщений на этот номер в минуту"})
                } else {
                    let i = accept(a, &n, text, sender.clone(), None);
                    let id = a.sent[i].id.clone();
                    // SMS.ru ids look like `000000-10000000`.
                    let sms_id = format!("{:06}-{id}", id.len());
                    a.sent[i].id.clone_from(&sms_id);
                    for c in a.callbacks.iter_mut().filter(|c| c.message_id == id) {
                        c.body = c
                            .body
                            .replace(&format!("%0A{id}%0A"), &format!("%0A{sms_id}%0A"));
                        c.message_id.clone_from(&sms_id);
                    }
                    json!({"status": "OK", "status_code": 100, "sms_id": sms_id})
                };
                entries.insert(n, entry);
            }
            axum::Json(json!({"status": "OK", "status_code": 100, "sms": entries,
                              "balance": (a.balance * 100.0).round() / 100.0}))
            .into_response()
        }
        "sms/status" => {
            let mut entries = serde_json::Map::new();
            for id in param(call, "sms_id").split(',').filter(|s| !s.is_empty()) {
                let entry = match a.sent.iter().find(|m| m.id == id) {
                    Some(m) => json!({"status": "OK", "status_code": smsru_status(m.status),
                                      "cost": m.cost, "status_text": format!("{:?}", m.status)}),
                    None => json!({"status": "ERROR", "status_code": -1,
                                   "status_text": "Сообщение не найдено"}),
                };
                entries.insert(id.to_owned(), entry);
            }
            axum::Json(json!({"status": "OK", "status_code": 100, "sms": entries,
                              "balance": (a.balance * 100.0).round() / 100.0}))
            .into_response()
        }
        "callback/add" => {
            let url = param(call, "url");
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return smsru_error(901, "Callback: URL неверный (не начинается на http://)");
            }
            a.callback_urls.retain(|u| u != url);
            a.callback_urls.push(url.to_owned());
            a.notify.notify_waiters();
            axum::Json(json!({"status": "OK", "status_code": 100, "callback": a.callback_urls}))
                .into_response()
        }
        "callback/get" => {
            axum::Json(json!({"status": "OK", "status_code": 100, "callback": a.callback_urls}))
                .into_response()
        }
        "callback/del" => {
            let url = param(call, "url");
            if !a.callback_urls.iter().any(|u| u == url) {
                return smsru_error(902, "Callback: обработчик не найден");
            }
            a.callback_urls.retain(|u| u != url);
            axum::Json(json!({"status": "OK", "status_code": 100, "callback": a.callback_urls}))
                .into_response()
        }
        _ => smsru_error(211, "Метод не найден"),
    }
}

// SMS Aero --------------------------------------------------------------------------------------

fn aero_fail(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"success": false, "data": null, "message": message})),
    )
        .into_response()
}

fn aero_ok(data: Value) -> Response {
    axum::Json(json!({"success": true, "data": data, "message": null})).into_response()
}

fn smsaero(a: &mut Account, call: &Call) -> Response {
    match call.path.as_str() {
        "v2/auth" => aero_ok(Value::Null),
        "v2/balance" => aero_ok(json!({"balance": (a.balance * 100.0).round() / 100.0})),
        "v2/sms/send" | "v2/sms/testsend" => {
            let test = call.path.ends_with("testsend");
            let list: Vec<String> = match call.json.get("numbers") {
                Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
                _ => call
                    .params
                    .get("number")
                    .map(|n| vec![n.clone()])
                    .unwrap_or_default(),
            };
            let many = call.json.get("numbers").is_some();
            let text = param(call, "text");
            if list.is_empty() || list.iter().any(|n| !phone_ok(n) || a.invalid.contains(n)) {
                return aero_fail(StatusCode::BAD_REQUEST, "Validation error: invalid number.");
            }
            let chars = text.chars().count();
            if !(2..=640).contains(&chars) {
                return aero_fail(StatusCode::BAD_REQUEST, "Validation error: text length.");
            }
            let callback_url = call
                .params
                .get("callbackUrl")
                .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
                .cloned();
            if a.balance < cost_of(a, text) * list.len() as f64 {
                return aero_fail(StatusCode::PAYMENT_REQUIRED, "no credits");
            }
            let sign = Some(param(call, "sign").to_owned()).filter(|s| !s.is_empty());
            let objects: Vec<Value> = list
                .iter()
                .map(|n| {
                    if test {
                        let m = GwSent {
                            id: "0".into(),
                            to: n.clone(),
                            text: text.to_owned(),
                            sender: sign.clone(),
                            parts: count_parts(text),
                            cost: cost_of(a, text),
                            status: GwStatus::Queued,
                            callback_url: None,
                            created: unix_secs(),
                        };
                        return aero_object(&m, GwStatus::Queued, None);
                    }
                    let i = accept(a, n, text, sign.clone(), callback_url.clone());
                    aero_object(&a.sent[i], GwStatus::Queued, None)
                })
                .collect();
            if many {
                aero_ok(Value::Array(objects))
            } else {
                aero_ok(objects.into_iter().next().unwrap_or(Value::Null))
            }
        }
        "v2/sms/status" => {
            let id = param(call, "id");
            match a.sent.iter().find(|m| m.id == id) {
                Some(m) => aero_ok(aero_object(m, m.status, Some(unix_secs()))),
                None => aero_fail(StatusCode::NOT_FOUND, "Not found"),
            }
        }
        _ => aero_fail(StatusCode::NOT_FOUND, "Not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moscow_time_is_utc_plus_three() {
        assert_eq!(moscow(0), "01.01.1970 03:00:00");
    }

    #[test]
    fn number_lists_split_on_commas_and_semicolons() {
        assert_eq!(numbers("+7999,7888;"), ["7999", "7888"]);
    }
}
