//! Fake SMS gateway shaped like Sipout's user API (`docs/providers/channels.md` §6): per-key
//! accounts with a balance, sending that bills per part, delivery reports and incoming SMS
//! POSTed to configured callback URLs, and a control API to act as customers and inject failures.
//!
//! Clients call `{base_url}?key=<key>&method=<m>&action=<a>` (`base_url` ends in `/userapi/`)
//! with multipart, form or query parameters and get `{"result":"ok"|"bad","err","err_text",
//! "data"}`. `balance/get` follows Sipout's documentation; `sms/send` and the callbacks follow
//! `chatter_channels::sms::SmsApi::sipout`, which is our assumption (Sipout documents no SMS
//! API). Callbacks are form-encoded, unsigned, one at a time in order, retried until answered
//! 200 with body `ok`.

use crate::server::{self, random_string, unix_secs, Backoff, Next, StopGuard, LOWER_ALPHANUMERIC};
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const MAX_BODY: usize = 1024 * 1024;
const CALLBACK_BACKOFF_START: Duration = Duration::from_millis(50);
const CALLBACK_BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Roubles per part unless `set_price` says otherwise.
const DEFAULT_PRICE: f64 = 3.5;

/// What an injected failure does to a call.
#[derive(Debug, Clone)]
pub enum SmsFailure {
    /// Answer this HTTP status with the envelope `{"result":"bad","err","err_text"}`; a status
    /// ≥ 500 with an empty `err` answers a plain-text page instead, as a broken proxy would.
    Status {
        http_status: u16,
        err: String,
        err_text: String,
    },
    /// Never answer, so the client's own timeout fires.
    Hang,
}

impl SmsFailure {
    /// HTTP 429 with `err = too_many_requests`.
    pub fn rate_limited() -> Self {
        Self::Status {
            http_status: 429,
            err: "too_many_requests".into(),
            err_text: "Слишком много запросов".into(),
        }
    }

    /// HTTP 503 with an HTML page.
    pub fn server_error() -> Self {
        Self::Status {
            http_status: 503,
            err: String::new(),
            err_text: String::new(),
        }
    }
}

/// An SMS the account sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SmsSent {
    pub id: String,
    /// Digits, as the client sent them.
    pub to: String,
    pub text: String,
    pub sender: Option<String>,
    pub parts: u32,
    pub cost: f64,
}

/// One callback the gateway made (or is still trying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsCallback {
    /// `status` or `inbound`.
    pub kind: String,
    pub fields: Vec<(String, String)>,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub delivered: bool,
    /// No URL was configured for this kind: the gateway dropped it.
    pub dropped: bool,
}

/// Handle to a running fake. Clones share the server; it stops when the last handle drops or on
/// [`FakeSms::shutdown`].
#[derive(Clone)]
pub struct FakeSms {
    shared: Arc<Shared>,
    guard: Arc<StopGuard>,
}

/// The fake's world behind its one lock, with what every fake shares (see [`server::Shared`]).
type Shared = server::Shared<Accounts>;

/// The gateway's accounts by API key.
type Accounts = BTreeMap<String, Account>;

struct Account {
    name: String,
    inn: String,
    balance: f64,
    price: f64,
    revoked: bool,
    failing: HashSet<String>,
    failures: VecDeque<(SmsFailure, usize)>,
    sent: Vec<SmsSent>,
    status_url: Option<String>,
    inbound_url: Option<String>,
    callbacks: Vec<SmsCallback>,
    outbox: VecDeque<usize>,
    notify: Arc<Notify>,
    worker: bool,
    next_id: u64,
}

impl Account {
    fn queue(&mut self, kind: &str, fields: Vec<(String, String)>) {
        self.callbacks.push(SmsCallback {
            kind: kind.to_owned(),
            fields,
            attempts: 0,
            last_status: None,
            delivered: false,
            dropped: false,
        });
        self.outbox.push_back(self.callbacks.len() - 1);
        self.notify.notify_waiters();
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}", self.next_id)
    }
}

impl FakeSms {
    /// Starts the fake on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<FakeSms> {
        let spec = server::Spec {
            path: "/userapi/",
            ..server::Spec::new(BTreeMap::new(), "fake SMS gateway stopped")
        };
        let (shared, guard) = server::start(spec, |shared| {
            Router::new().fallback(api).with_state(shared)
        })
        .await?;
        Ok(FakeSms { shared, guard })
    }

    /// Stops the server now (hanging requests and callbacks end too).
    pub fn shutdown(&self) {
        self.guard.stop();
    }

    /// `http://127.0.0.1:PORT/userapi/`, the stand-in for `https://lk.sipout.net/userapi/`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Opens an account with `balance` roubles; returns its API key.
    pub fn add_account(&self, name: &str, inn: &str, balance: f64) -> String {
        let key = random_string(LOWER_ALPHANUMERIC, 32);
        let first_id = rand::thread_rng().gen_range(100_000_000u64..900_000_000);
        self.shared.lock().insert(
            key.clone(),
            Account {
                name: name.to_owned(),
                inn: inn.to_owned(),
                balance,
                price: DEFAULT_PRICE,
                revoked: false,
                failing: HashSet::new(),
                failures: VecDeque::new(),
                sent: Vec::new(),
                status_url: None,
                inbound_url: None,
                callbacks: Vec::new(),
                outbox: VecDeque::new(),
                notify: Arc::new(Notify::new()),
                worker: false,
                next_id: first_id,
            },
        );
        key
    }

    fn with_account<T>(&self, key: &str, f: impl FnOnce(&mut Account) -> T) -> T {
        let mut accounts = self.shared.lock();
        let account = accounts
            .get_mut(key)
            .expect("the key was returned by add_account on this fake");
        f(account)
    }

    /// Roubles per SMS part.
    pub fn set_price(&self, key: &str, per_part: f64) {
        self.with_account(key, |a| a.price = per_part);
    }

    /// Where delivery reports and incoming SMS are POSTed (set in the cabinet, in real life).
    /// Must be called inside a Tokio runtime (it starts the account's callback sender).
    pub fn set_callbacks(&self, key: &str, status_url: Option<&str>, inbound_url: Option<&str>) {
        let start = self.with_account(key, |a| {
            a.status_url = status_url.map(str::to_owned);
            a.inbound_url = inbound_url.map(str::to_owned);
            a.notify.notify_waiters();
            !std::mem::replace(&mut a.worker, true)
        });
        if start {
            tokio::spawn(deliver_loop(self.shared.clone(), key.to_owned()));
        }
    }

    /// A customer's SMS from `from` to the account's number `to` (digits or `+…`): POSTed to the
    /// inbound URL. Returns its id.
    pub fn customer_sends(&self, key: &str, from: &str, to: &str, text: &str) -> String {
        self.with_account(key, |a| {
            let id = a.new_id();
            let fields = vec![
                ("id".to_owned(), id.clone()),
                ("from".to_owned(), digits(from)),
                ("to".to_owned(), digits(to)),
                ("text".to_owned(), text.to_owned()),
                ("time".to_owned(), unix_secs().to_string()),
            ];
            a.queue("inbound", fields);
            id
        })
    }

    /// SMS to this number (digits, `+` ignored) are accepted, then reported `failed`.
    pub fn set_failing_number(&self, key: &str, phone: &str) {
        self.with_account(key, |a| {
            a.failing.insert(digits(phone));
        });
    }

    /// The next `count` calls with this key fail with `f`.
    pub fn fail_next(&self, key: &str, f: SmsFailure, count: usize) {
        if count > 0 {
            self.with_account(key, |a| a.failures.push_back((f, count)));
        }
    }

    /// Blocks the key: every later call answers `bad_key`.
    pub fn revoke(&self, key: &str) {
        self.with_account(key, |a| a.revoked = true);
    }

    pub fn balance(&self, key: &str) -> f64 {
        self.with_account(key, |a| a.balance)
    }

    /// Everything the account sent, in order.
    pub fn sent(&self, key: &str) -> Vec<SmsSent> {
        self.with_account(key, |a| a.sent.clone())
    }

    /// Every callback queued for the account and how it went, in order.
    pub fn callbacks(&self, key: &str) -> Vec<SmsCallback> {
        self.with_account(key, |a| a.callbacks.clone())
    }
}

/// POSTs the account's callbacks one by one, in order, each until answered 200 `ok`; a callback
/// of a kind with no URL configured is dropped, as the gateway does.
async fn deliver_loop(shared: Arc<Shared>, key: String) {
    let backoff = Backoff::new(CALLBACK_BACKOFF_START, CALLBACK_BACKOFF_CAP);
    let doorbell = |accounts: &Accounts| accounts.get(&key).map(|a| a.notify.clone());
    let next = |accounts: &mut Accounts| {
        let Some(a) = accounts.get_mut(&key) else {
            return Next::Gone;
        };
        while let Some(&i) = a.outbox.front() {
            let url = match a.callbacks[i].kind.as_str() {
                "status" => a.status_url.clone(),
                _ => a.inbound_url.clone(),
            };
            match url {
                Some(url) => return Next::Call(i, (url, a.callbacks[i].fields.clone())),
                None => {
                    a.callbacks[i].dropped = true;
                    a.outbox.pop_front();
                }
            }
        }
        Next::Idle
    };
    let http = &shared.http;
    let send = |(url, fields): (String, Vec<(String, String)>)| async move {
        match http.post(&url).form(&fields).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                (Some(status), status == 200 && body.trim() == "ok")
            }
            Err(_) => (None, false),
        }
    };
    let settle = |accounts: &mut Accounts, index: usize, status: Option<u16>, ok: bool| {
        let Some(a) = accounts.get_mut(&key) else {
            return false;
        };
        let c = &mut a.callbacks[index];
        c.attempts += 1;
        c.last_status = status;
        if ok {
            c.delivered = true;
            a.outbox.pop_front();
        }
        true
    };
    shared
        .deliver_in_order(backoff, doorbell, next, send, settle)
        .await;
}

// ---------------------------------------------------------------------------------------------
// Gateway surface

fn bad(http_status: u16, err: &str, err_text: &str) -> Response {
    let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::OK);
    (
        status,
        axum::Json(json!({"result": "bad", "err": err, "err_text": err_text})),
    )
        .into_response()
}

fn ok(data: Value) -> Response {
    axum::Json(json!({"result": "ok", "data": data})).into_response()
}

async fn api(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if request.uri().path().trim_end_matches('/') != "/userapi" {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    let mut params: HashMap<String, String> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let Ok(body) = to_bytes(request.into_body(), MAX_BODY).await else {
        return bad(413, "too_large", "Слишком большой запрос");
    };
    if content_type.starts_with("multipart/form-data") {
        let Some(fields) = multipart_fields(&content_type, &body) else {
            return bad(
                400,
                "bad_request",
                "Не удалось разобрать multipart/form-data",
            );
        };
        for f in fields {
            params.insert(f.name, String::from_utf8_lossy(&f.bytes).into_owned());
        }
    } else if !body.is_empty() {
        params.extend(url::form_urlencoded::parse(&body).into_owned());
    }
    let key = params.get("key").cloned().unwrap_or_default();
    let failure = {
        let mut accounts = shared.lock();
        let Some(account) = accounts.get_mut(&key).filter(|a| !a.revoked) else {
            return bad(200, "bad_key", "Неверный ключ API");
        };
        let failure = account.failures.front_mut().map(|(f, left)| {
            *left -= 1;
            f.clone()
        });
        if account.failures.front().is_some_and(|(_, left)| *left == 0) {
            account.failures.pop_front();
        }
        failure
    };
    match failure {
        Some(SmsFailure::Hang) => {
            shared.stopped().await;
            return (StatusCode::BAD_GATEWAY, "Bad Gateway").into_response();
        }
        Some(SmsFailure::Status {
            http_status,
            err,
            err_text,
        }) => {
            if err.is_empty() {
                let status =
                    StatusCode::from_u16(http_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return (status, "<html><body>Service Unavailable</body></html>").into_response();
            }
            return bad(http_status, &err, &err_text);
        }
        None => {}
    }
    let method = params.get("method").map_or("", String::as_str);
    let action = params.get("action").map_or("", String::as_str);
    let mut accounts = shared.lock();
    let Some(account) = accounts.get_mut(&key) else {
        return bad(200, "bad_key", "Неверный ключ API");
    };
    match (method, action) {
        ("balance", "get") => ok(json!({
            "list": [{"inn": account.inn, "balance": format!("{:.2}", account.balance),
                      "limit": "0.00", "name": account.name}],
            "summary": {"balance": account.balance, "limit": 0},
        })),
        ("sms", "send") => send(account, &params),
        _ => bad(200, "method_not_found", "Неизвестный метод"),
    }
}

fn send(account: &mut Account, params: &HashMap<String, String>) -> Response {
    let to = params
        .get("to")
        .map_or("", String::as_str)
        .trim_start_matches('+');
    if !(11..=15).contains(&to.len()) || !to.bytes().all(|b| b.is_ascii_digit()) {
        return bad(200, "bad_phone", "Неверный номер телефона");
    }
    let text = params.get("text").map_or("", String::as_str);
    if text.trim().is_empty() {
        return bad(200, "empty_text", "Пустой текст сообщения");
    }
    let parts = count_parts(text);
    let cost = f64::from(parts) * account.price;
    if account.balance < cost {
        return bad(200, "no_money", "Недостаточно средств на балансе");
    }
    account.balance -= cost;
    let id = account.new_id();
    account.sent.push(SmsSent {
        id: id.clone(),
        to: to.to_owned(),
        text: text.to_owned(),
        sender: params.get("sender").cloned(),
        parts,
        cost,
    });
    let report = |status: &str, err_text: Option<&str>| {
        let mut fields = vec![
            ("id".to_owned(), id.clone()),
            ("status".to_owned(), status.to_owned()),
            ("phone".to_owned(), to.to_owned()),
            ("time".to_owned(), unix_secs().to_string()),
        ];
        if let Some(e) = err_text {
            fields.push(("err_text".to_owned(), e.to_owned()));
        }
        fields
    };
    account.queue("status", report("sent", None));
    if account.failing.contains(to) {
        account.queue("status", report("failed", Some("Абонент недоступен")));
    } else {
        account.queue("status", report("delivered", None));
    }
    ok(json!({"id": id, "parts": parts, "cost": cost, "balance": account.balance}))
}

/// Parts billed: GSM-7 160/153 (extension characters count two), else UCS-2 70/67.
pub(crate) fn count_parts(text: &str) -> u32 {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "\u{c}^{}\\[~]|€";
    let septets: Option<usize> = text
        .chars()
        .map(|c| {
            if BASIC.contains(c) {
                Some(1)
            } else if EXTENSION.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .sum();
    let (len, single, part) = match septets {
        Some(n) => (n, 160, 153),
        None => (text.encode_utf16().count(), 70, 67),
    };
    let parts = if len <= single { 1 } else { len.div_ceil(part) };
    u32::try_from(parts).unwrap_or(u32::MAX)
}

/// One field of a `multipart/form-data` body.
pub(crate) struct FormField {
    pub name: String,
    pub file_name: Option<String>,
    pub mime: String,
    pub bytes: Vec<u8>,
}

/// Splits a `multipart/form-data` body (shared with the WhatsApp fake's media upload).
pub(crate) fn multipart_fields(content_type: &str, body: &[u8]) -> Option<Vec<FormField>> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    let mut rest = &body[position(body, delimiter.as_bytes())? + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(fields);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let end = position(rest, format!("\r\n{delimiter}").as_bytes())?;
        let part = &rest[..end];
        let split = position(part, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&part[..split]).ok()?;
        let mut field = FormField {
            name: String::new(),
            file_name: None,
            mime: "application/octet-stream".to_owned(),
            bytes: part[split + 4..].to_vec(),
        };
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                for attr in v.split(';').map(str::trim) {
                    if let Some(n) = attr.strip_prefix("name=") {
                        field.name = n.trim_matches('"').to_owned();
                    } else if let Some(n) = attr.strip_prefix("filename=") {
                        field.file_name = Some(n.trim_matches('"').to_owned());
                    }
                }
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                field.mime = v.trim().to_owned();
            }
        }
        fields.push(field);
        rest = &rest[end + 2 + delimiter.len()..];
    }
}

fn position(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_gsm7_and_ucs2_limits() {
        assert_eq!(count_parts(&"a".repeat(160)), 1);
        assert_eq!(count_parts(&"a".repeat(161)), 2);
        assert_eq!(count_parts(&"я".repeat(70)), 1);
        assert_eq!(count_parts(&"я".repeat(71)), 2);
        assert_eq!(count_parts(&"{".repeat(81)), 2);
    }

    #[test]
    fn multipart_is_split_into_fields() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n79991234567\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\r\n--XyZ--\r\n";
        let fields = multipart_fields("multipart/form-data; boundary=XyZ", body).expect("parsed");
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].name, "to");
        assert_eq!(fields[0].bytes, b"79991234567");
        assert_eq!(fields[1].file_name.as_deref(), Some("a.jpg"));
        assert_eq!(fields[1].mime, "image/jpeg");
        assert_eq!(fields[1].bytes, b"\xff\xd8");
    }
}
