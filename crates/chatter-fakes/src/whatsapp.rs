//! Fake WhatsApp Business Cloud API: a stateful HTTP server on loopback that speaks the Graph
//! API as `docs/providers/channels.md` §5 describes, with per-phone-number state (token, sent
//! messages, the customers' 24-hour windows, media, templates) and a control API so tests and
//! `chatter demo` can act as customers and inject failures.
//!
//! Clients call `{base_url}/{version}/…` with `Authorization: Bearer <token>`, as against
//! `https://graph.facebook.com`. Notifications (customer messages, then `sent` → `delivered` →
//! `read` or `failed` statuses for every message the business sends) are POSTed one at a time,
//! in order, to the callback URL set with [`FakeWhatsApp::subscribe`], signed with
//! `X-Hub-Signature-256` and retried with backoff until answered 2xx.

use crate::server::{self, random_string, unix_millis, Backoff, Next, StopGuard, ALPHANUMERIC};
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const MAX_BODY: usize = 110 * 1024 * 1024;
const MAX_TEXT: usize = 4096;
const WINDOW_MS: i64 = 24 * 3600 * 1000;
const WEBHOOK_BACKOFF_START: Duration = Duration::from_millis(50);
const WEBHOOK_BACKOFF_CAP: Duration = Duration::from_secs(2);

/// A business phone number registered on the fake, with everything a source needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaNumber {
    pub phone_number_id: String,
    pub waba_id: String,
    /// As given to `add_number`, e.g. `+7 999 000-11-22`.
    pub display_phone_number: String,
    pub verified_name: String,
    pub access_token: String,
    /// The app secret notifications are signed with.
    pub app_secret: String,
}

/// What an injected failure does to a call.
#[derive(Debug, Clone)]
pub enum WaFailure {
    /// Answer `{"error":{"message","type":"OAuthException","code",…}}` with this HTTP status.
    Graph {
        http_status: u16,
        code: i64,
        message: String,
    },
    /// Never answer, so the client's own timeout fires.
    Hang,
}

impl WaFailure {
    /// 429 with 130429 "Rate limit hit" (throughput).
    pub fn rate_limited() -> Self {
        Self::Graph {
            http_status: 429,
            code: 130_429,
            message: "(#130429) Rate limit hit".into(),
        }
    }

    /// 500 with 131000 "Something went wrong".
    pub fn server_error() -> Self {
        Self::Graph {
            http_status: 500,
            code: 131_000,
            message: "(#131000) Something went wrong".into(),
        }
    }
}

/// What a simulated customer sends.
#[derive(Debug, Clone)]
pub enum WaCustomerContent {
    Text(String),
    Image {
        bytes: Vec<u8>,
        mime: String,
        caption: Option<String>,
    },
    Document {
        bytes: Vec<u8>,
        mime: String,
        filename: String,
    },
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
    },
    /// A tap on a reply button: `button_reply{id,title}`.
    ButtonReply {
        id: String,
        title: String,
    },
}

/// A message the business sent, as the fake accepted it.
#[derive(Debug, Clone, PartialEq)]
pub struct WaSentMessage {
    pub id: String,
    /// Digits of the recipient's wa_id.
    pub to: String,
    /// `text`, `image`, `document`, `audio`, `video`, `sticker` or `template`.
    pub kind: String,
    pub text: Option<String>,
    pub caption: Option<String>,
    /// The media `link` or `id`.
    pub media: Option<String>,
    pub filename: Option<String>,
    pub template: Option<String>,
    pub template_params: Vec<String>,
    pub reply_to: Option<String>,
    /// The statuses queued for it, in order.
    pub statuses: Vec<String>,
}

/// One notification's delivery history, in queue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaDelivery {
    pub body: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub delivered: bool,
}

/// Handle to a running fake. Clones share the server; it stops when the last handle drops or on
/// [`FakeWhatsApp::shutdown`].
#[derive(Clone)]
pub struct FakeWhatsApp {
    shared: Arc<Shared>,
    guard: Arc<StopGuard>,
}

/// The numbers behind the fake's lock; the clock offset tests set (the `extra`) is read on every
/// answer, outside it.
type Shared = server::Shared<State, AtomicI64>;

impl Shared {
    fn now_ms(&self) -> i64 {
        unix_millis() + self.extra.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct State {
    numbers: BTreeMap<String, Number>,
    /// Token → phone_number_id.
    tokens: HashMap<String, String>,
    media: HashMap<String, Media>,
}

struct Media {
    owner: String,
    bytes: Vec<u8>,
    mime: String,
    sha256: String,
    /// The uploaded part's file name (`None` for what customers sent).
    file_name: Option<String>,
}

/// A medium uploaded to the fake (`POST /{phone_number_id}/media`), as a customer would get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaMedia {
    pub file_name: Option<String>,
    pub mime: String,
    pub size: usize,
    pub bytes: Vec<u8>,
}

struct Template {
    id: String,
    name: String,
    language: String,
    category: String,
    status: String,
    body: String,
}

struct Webhook {
    url: String,
}

struct Number {
    info: WaNumber,
    revoked: bool,
    /// wa_id → when the customer last wrote (fake clock, ms).
    last_inbound: HashMap<String, i64>,
    blocked: HashSet<String>,
    window_errors_sync: bool,
    auto_read: bool,
    templates: Vec<Template>,
    sent: Vec<WaSentMessage>,
    failures: VecDeque<(WaFailure, usize)>,
    webhook: Option<Webhook>,
    outbox: VecDeque<usize>,
    deliveries: Vec<WaDelivery>,
    notify: Arc<Notify>,
    worker: bool,
}

impl Number {
    fn queue(&mut self, value: Value) {
        let body = json!({"object": "whatsapp_business_account", "entry": [{
            "id": self.info.waba_id,
            "changes": [{"field": "messages", "value": value}]}]});
        self.deliveries.push(WaDelivery {
            body: body.to_string(),
            attempts: 0,
            last_status: None,
            delivered: false,
        });
        self.outbox.push_back(self.deliveries.len() - 1);
        self.notify.notify_waiters();
    }

    fn metadata(&self) -> Value {
        json!({"display_phone_number": digits(&self.info.display_phone_number),
               "phone_number_id": self.info.phone_number_id})
    }

    fn queue_status(
        &mut self,
        wamid: &str,
        to: &str,
        status: &str,
        at_secs: i64,
        error: Option<Value>,
    ) {
        let mut s = json!({"id": wamid, "status": status, "timestamp": at_secs.to_string(),
                           "recipient_id": to});
        if status != "failed" {
            s["pricing"] = json!({"billable": true, "pricing_model": "PMP", "category": "service"});
        }
        if let Some(error) = error {
            s["errors"] = json!([error]);
        }
        if let Some(m) = self.sent.iter_mut().find(|m| m.id == wamid) {
            m.statuses.push(status.to_owned());
        }
        let value = json!({"messaging_product": "whatsapp", "metadata": self.metadata(),
                           "statuses": [s]});
        self.queue(value);
    }
}

impl FakeWhatsApp {
    /// Starts the fake on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<FakeWhatsApp> {
        let spec = server::Spec::new(State::default(), "fake WhatsApp server stopped")
            .with_extra(AtomicI64::new(0));
        let (shared, guard) = server::start(spec, |shared| {
            Router::new().fallback(api).with_state(shared)
        })
        .await?;
        Ok(FakeWhatsApp { shared, guard })
    }

    /// Stops the server now (hanging requests and webhook deliveries end too).
    pub fn shutdown(&self) {
        self.guard.stop();
    }

    /// `http://127.0.0.1:PORT`, the fake's stand-in for `https://graph.facebook.com`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Registers a business number (its own WABA, token and app secret).
    pub fn add_number(&self, display_phone_number: &str, verified_name: &str) -> WaNumber {
        let mut rng = rand::thread_rng();
        let info = WaNumber {
            phone_number_id: rng
                .gen_range(100_000_000_000_000u64..999_999_999_999_999)
                .to_string(),
            waba_id: rng
                .gen_range(100_000_000_000_000u64..999_999_999_999_999)
                .to_string(),
            display_phone_number: display_phone_number.to_owned(),
            verified_name: verified_name.to_owned(),
            access_token: format!("EAAG{}", random_string(ALPHANUMERIC, 120)),
            app_secret: hex::encode(rng.gen::<[u8; 16]>()),
        };
        let mut state = self.shared.lock();
        state
            .tokens
            .insert(info.access_token.clone(), info.phone_number_id.clone());
        state.numbers.insert(
            info.phone_number_id.clone(),
            Number {
                info: info.clone(),
                revoked: false,
                last_inbound: HashMap::new(),
                blocked: HashSet::new(),
                window_errors_sync: false,
                auto_read: true,
                templates: Vec::new(),
                sent: Vec::new(),
                failures: VecDeque::new(),
                webhook: None,
                outbox: VecDeque::new(),
                deliveries: Vec::new(),
                notify: Arc::new(Notify::new()),
                worker: false,
            },
        );
        info
    }

    fn with_number<T>(&self, phone_number_id: &str, f: impl FnOnce(&mut Number) -> T) -> T {
        let mut state = self.shared.lock();
        let number = state
            .numbers
            .get_mut(phone_number_id)
            .expect("the phone_number_id was returned by add_number on this fake");
        f(number)
    }

    /// Adds a message template to the number's WABA. `body` uses `{{1}}`, `{{2}}`…; `status`
    /// is `APPROVED`, `PENDING` or `REJECTED` (only approved ones can be sent).
    pub fn add_template(
        &self,
        phone_number_id: &str,
        name: &str,
        language: &str,
        category: &str,
        status: &str,
        body: &str,
    ) {
        let id = rand::thread_rng()
            .gen_range(1_000_000_000_000u64..9_999_999_999_999)
            .to_string();
        self.with_number(phone_number_id, |n| {
            n.templates.push(Template {
                id,
                name: name.to_owned(),
                language: language.to_owned(),
                category: category.to_owned(),
                status: status.to_owned(),
                body: body.to_owned(),
            });
        });
    }

    /// Points the number's notifications at `callback_url`, as the App Dashboard does: first the
    /// GET verification handshake with `verify_token` and a random challenge (the answer must
    /// be 200 with the challenge verbatim), then notifications start flowing, queued ones first.
    pub async fn subscribe(
        &self,
        phone_number_id: &str,
        callback_url: &str,
        verify_token: &str,
    ) -> Result<(), String> {
        let challenge = rand::thread_rng()
            .gen_range(1_000_000_000u64..9_999_999_999)
            .to_string();
        let mut url = url::Url::parse(callback_url).map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("hub.mode", "subscribe")
            .append_pair("hub.verify_token", verify_token)
            .append_pair("hub.challenge", &challenge);
        let resp = self
            .shared
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("the callback URL could not be reached: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        if status != 200 || body != challenge {
            return Err(format!(
                "The callback URL or verify token couldn't be validated (HTTP {status})"
            ));
        }
        let start = self.with_number(phone_number_id, |n| {
            n.webhook = Some(Webhook {
                url: callback_url.to_owned(),
            });
            n.notify.notify_waiters();
            !std::mem::replace(&mut n.worker, true)
        });
        if start {
            tokio::spawn(deliver_loop(
                self.shared.clone(),
                phone_number_id.to_owned(),
            ));
        }
        Ok(())
    }

    /// A customer writes to the business: the notification is queued and the customer's
    /// 24-hour window opens. Returns the message's wamid.
    pub fn customer_sends(
        &self,
        phone_number_id: &str,
        wa_id: &str,
        name: &str,
        content: WaCustomerContent,
    ) -> String {
        let now = self.shared.now_ms();
        let wamid = new_wamid();
        let mut state = self.shared.lock();
        let (kind, object) = match content {
            WaCustomerContent::Text(body) => ("text", json!({"body": body})),
            WaCustomerContent::Image {
                bytes,
                mime,
                caption,
            } => {
                let (id, sha) = store_media(&mut state, phone_number_id, bytes, &mime);
                let mut o = json!({"id": id, "mime_type": mime, "sha256": sha});
                if let Some(c) = caption {
                    o["caption"] = json!(c);
                }
                ("image", o)
            }
            WaCustomerContent::Document {
                bytes,
                mime,
                filename,
            } => {
                let (id, sha) = store_media(&mut state, phone_number_id, bytes, &mime);
                (
                    "document",
                    json!({"id": id, "mime_type": mime, "sha256": sha, "filename": filename}),
                )
            }
            WaCustomerContent::Location {
                latitude,
                longitude,
                name,
            } => {
                let mut o = json!({"latitude": latitude, "longitude": longitude});
                if let Some(n) = name {
                    o["name"] = json!(n);
                }
                ("location", o)
            }
            WaCustomerContent::ButtonReply { id, title } => (
                "interactive",
                json!({"type": "button_reply", "button_reply": {"id": id, "title": title}}),
            ),
        };
        let number = state
            .numbers
            .get_mut(phone_number_id)
            .expect("the phone_number_id was returned by add_number on this fake");
        number.last_inbound.insert(wa_id.to_owned(), now);
        let mut message = json!({"from": wa_id, "id": wamid, "timestamp": (now / 1000).to_string(),
                                 "type": kind});
        message[kind] = object;
        let value = json!({"messaging_product": "whatsapp", "metadata": number.metadata(),
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [message]});
        number.queue(value);
        wamid
    }

    /// Shorthand for a text from the customer.
    pub fn customer_writes(
        &self,
        phone_number_id: &str,
        wa_id: &str,
        name: &str,
        text: &str,
    ) -> String {
        self.customer_sends(
            phone_number_id,
            wa_id,
            name,
            WaCustomerContent::Text(text.to_owned()),
        )
    }

    /// Closes the customer's 24-hour window now (as if they last wrote long ago).
    pub fn close_window(&self, phone_number_id: &str, wa_id: &str) {
        self.with_number(phone_number_id, |n| {
            n.last_inbound.remove(wa_id);
        });
    }

    /// Moves the fake's clock forward (windows close after 24 h of it); timestamps follow.
    pub fn advance_clock(&self, by: Duration) {
        self.shared
            .extra
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }

    /// Messages to `wa_id` are accepted but fail (131026, undeliverable: blocked or not on WhatsApp).
    pub fn block(&self, phone_number_id: &str, wa_id: &str) {
        self.with_number(phone_number_id, |n| {
            n.blocked.insert(wa_id.to_owned());
        });
    }

    /// `true`: a free-form send outside the window is refused at once (HTTP 400, 131047);
    /// `false` (default, what Meta usually does): accepted, then a `failed` status with 131047.
    pub fn set_window_errors_sync(&self, phone_number_id: &str, sync: bool) {
        self.with_number(phone_number_id, |n| n.window_errors_sync = sync);
    }

    /// Whether customers read what they receive (`read` after `delivered`; default true).
    pub fn set_auto_read(&self, phone_number_id: &str, read: bool) {
        self.with_number(phone_number_id, |n| n.auto_read = read);
    }

    /// Invalidates the number's token: every later call answers 401 with code 190.
    pub fn revoke_token(&self, phone_number_id: &str) {
        self.with_number(phone_number_id, |n| n.revoked = true);
    }

    /// The next `count` API calls with the number's token fail with `f`.
    pub fn fail_next(&self, phone_number_id: &str, f: WaFailure, count: usize) {
        if count > 0 {
            self.with_number(phone_number_id, |n| n.failures.push_back((f, count)));
        }
    }

    /// Everything the business sent, in order.
    /// The medium with this id (an uploaded file: its name, type, size and bytes).
    pub fn media(&self, media_id: &str) -> Option<WaMedia> {
        let state = self.shared.lock();
        state.media.get(media_id).map(|m| WaMedia {
            file_name: m.file_name.clone(),
            mime: m.mime.clone(),
            size: m.bytes.len(),
            bytes: m.bytes.clone(),
        })
    }

    pub fn sent(&self, phone_number_id: &str) -> Vec<WaSentMessage> {
        self.with_number(phone_number_id, |n| n.sent.clone())
    }

    /// Every notification queued for the number and how its delivery went, in order.
    pub fn deliveries(&self, phone_number_id: &str) -> Vec<WaDelivery> {
        self.with_number(phone_number_id, |n| n.deliveries.clone())
    }
}

fn store_media(state: &mut State, owner: &str, bytes: Vec<u8>, mime: &str) -> (String, String) {
    let id = rand::thread_rng()
        .gen_range(1_000_000_000_000_000u64..9_999_999_999_999_999)
        .to_string();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    state.media.insert(
        id.clone(),
        Media {
            owner: owner.to_owned(),
            bytes,
            mime: mime.to_owned(),
            sha256: sha256.clone(),
            file_name: None,
        },
    );
    (id, sha256)
}

/// POSTs the number's notifications one by one, in order, each until a 2xx, signed with the
/// app secret as Meta signs them.
async fn deliver_loop(shared: Arc<Shared>, number_id: String) {
    let backoff = Backoff::new(WEBHOOK_BACKOFF_START, WEBHOOK_BACKOFF_CAP);
    let doorbell = |state: &State| state.numbers.get(&number_id).map(|n| n.notify.clone());
    let next = |state: &mut State| {
        let Some(n) = state.numbers.get(&number_id) else {
            return Next::Gone;
        };
        match (&n.webhook, n.outbox.front()) {
            (Some(w), Some(&i)) => Next::Call(
                i,
                (
                    w.url.clone(),
                    n.deliveries[i].body.clone(),
                    n.info.app_secret.clone(),
                ),
            ),
            _ => Next::Idle,
        }
    };
    let http = &shared.http;
    let send = |(url, body, secret): (String, String, String)| async move {
        let signature = format!("sha256={}", sign(&secret, body.as_bytes()));
        let result = http
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await;
        let status = result.ok().map(|r| r.status().as_u16());
        (status, status.is_some_and(|s| (200..300).contains(&s)))
    };
    let settle = |state: &mut State, index: usize, status: Option<u16>, ok: bool| {
        let Some(n) = state.numbers.get_mut(&number_id) else {
            return false;
        };
        let d = &mut n.deliveries[index];
        d.attempts += 1;
        d.last_status = status;
        if ok {
            d.delivered = true;
            n.outbox.pop_front();
        }
        true
    };
    shared
        .deliver_in_order(backoff, doorbell, next, send, settle)
        .await;
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

// ---------------------------------------------------------------------------------------------
// Graph API surface

struct GraphError {
    http_status: u16,
    code: i64,
    message: String,
    details: Option<String>,
}

impl GraphError {
    fn new(http_status: u16, code: i64, message: impl Into<String>) -> Self {
        Self {
            http_status,
            code,
            message: message.into(),
            details: None,
        }
    }

    fn invalid(details: &str) -> Self {
        Self {
            details: Some(details.to_owned()),
            ..Self::new(400, 100, "(#100) Invalid parameter")
        }
    }

    fn no_object(id: &str) -> Self {
        Self::new(
            400,
            100,
            format!("Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
        )
    }

    fn bad_token() -> Self {
        Self::new(
            401,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        )
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut error = json!({"message": self.message, "type": "OAuthException", "code": self.code,
                               "fbtrace_id": random_string(ALPHANUMERIC, 27)});
        if let Some(details) = self.details {
            error["error_data"] = json!({"messaging_product": "whatsapp", "details": details});
        }
        let status = StatusCode::from_u16(self.http_status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, axum::Json(json!({ "error": error }))).into_response()
    }
}

async fn api(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    match handle(&shared, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(shared: &Arc<Shared>, request: Request) -> Result<Response, GraphError> {
    let path = request.uri().path().to_owned();
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let (number_id, failure) = {
        let mut state = shared.lock();
        let number_id = token
            .as_ref()
            .and_then(|t| state.tokens.get(t).cloned())
            .ok_or_else(GraphError::bad_token)?;
        let number = state
            .numbers
            .get_mut(&number_id)
            .ok_or_else(GraphError::bad_token)?;
        if number.revoked {
            return Err(GraphError::new(
                401,
                190,
                "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
            ));
        }
        let failure = number.failures.front_mut().map(|(f, left)| {
            *left -= 1;
            f.clone()
        });
        if number.failures.front().is_some_and(|(_, left)| *left == 0) {
            number.failures.pop_front();
        }
        (number_id, failure)
    };
    match failure {
        Some(WaFailure::Hang) => {
            shared.stopped().await;
            return Err(GraphError::new(503, 2, "Service temporarily unavailable"));
        }
        Some(WaFailure::Graph {
            http_status,
            code,
            message,
        }) => return Err(GraphError::new(http_status, code, message)),
        None => {}
    }
    if path == "/whatsapp_business/attachments/" {
        return media_bytes(
            shared,
            &number_id,
            query.get("mid").map_or("", String::as_str),
        );
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let versioned = segments.first().is_some_and(|v| {
        v.strip_prefix('v').is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        })
    });
    if !versioned {
        return Err(GraphError::new(400, 2500, "Unknown path components"));
    }
    let method = request.method().clone();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|_| GraphError::invalid("request too large"))?;
    match (method.as_str(), &segments[1..]) {
        ("GET", [id]) => get_object(shared, &number_id, id),
        ("POST", [id, "messages"]) if **id == *number_id => send(shared, &number_id, &body),
        ("POST", [id, "media"]) if **id == *number_id => {
            upload(shared, &number_id, &content_type, &body)
        }
        ("GET", [waba, "message_templates"]) => templates(shared, &number_id, waba, &query),
        (_, [id, ..]) => Err(GraphError::no_object(id)),
        _ => Err(GraphError::new(400, 2500, "Unknown path components")),
    }
}

fn get_object(shared: &Shared, number_id: &str, id: &str) -> Result<Response, GraphError> {
    let state = shared.lock();
    if id == number_id {
        let n = &state.numbers[number_id].info;
        return Ok(axum::Json(json!({"verified_name": n.verified_name,
            "display_phone_number": n.display_phone_number, "id": n.phone_number_id,
            "quality_rating": "GREEN"}))
        .into_response());
    }
    match state.media.get(id) {
        Some(m) if m.owner == number_id => Ok(axum::Json(json!({
            "url": format!("{}/whatsapp_business/attachments/?mid={id}&ext={}", shared.base_url, random_string(ALPHANUMERIC, 10)),
            "mime_type": m.mime, "sha256": m.sha256, "file_size": m.bytes.len(), "id": id,
            "messaging_product": "whatsapp"}))
        .into_response()),
        _ => Err(GraphError::no_object(id)),
    }
}

fn media_bytes(shared: &Shared, number_id: &str, id: &str) -> Result<Response, GraphError> {
    let state = shared.lock();
    match state.media.get(id) {
        Some(m) if m.owner == number_id => Ok((
            [(header::CONTENT_TYPE, m.mime.clone())],
            Body::from(m.bytes.clone()),
        )
            .into_response()),
        _ => Ok((StatusCode::NOT_FOUND, "Not Found").into_response()),
    }
}

fn upload(
    shared: &Shared,
    number_id: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response, GraphError> {
    let fields = crate::sms::multipart_fields(content_type, body)
        .ok_or_else(|| GraphError::invalid("the body is not multipart/form-data"))?;
    if !fields
        .iter()
        .any(|f| f.name == "messaging_product" && f.bytes == b"whatsapp")
    {
        return Err(GraphError::invalid("messaging_product is required"));
    }
    let file = fields
        .into_iter()
        .find(|f| f.name == "file" && f.file_name.is_some())
        .ok_or_else(|| GraphError::invalid("file is required"))?;
    // Meta's media limits: pictures up to 5 MB, anything else up to 100 MB.
    let max = match file.mime.starts_with("image/") && file.mime != "image/svg+xml" {
        true => 5 * 1024 * 1024,
        false => 100 * 1024 * 1024,
    };
    if file.bytes.len() > max {
        return Err(GraphError {
            details: Some(format!(
                "file size {} exceeds the limit of {max} bytes for {}",
                file.bytes.len(),
                file.mime
            )),
            ..GraphError::new(400, 131_053, "(#131053) Media upload error")
        });
    }
    let mut state = shared.lock();
    let (id, _) = store_media(&mut state, number_id, file.bytes, &file.mime);
    if let Some(m) = state.media.get_mut(&id) {
        m.file_name = file.file_name;
    }
    Ok(axum::Json(json!({ "id": id })).into_response())
}

fn templates(
    shared: &Shared,
    number_id: &str,
    waba: &str,
    query: &HashMap<String, String>,
) -> Result<Response, GraphError> {
    let state = shared.lock();
    let n = &state.numbers[number_id];
    if n.info.waba_id != waba {
        return Err(GraphError::no_object(waba));
    }
    let wanted = query.get("status");
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(25)
        .clamp(1, 100);
    let start: usize = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let matching: Vec<&Template> = n
        .templates
        .iter()
        .filter(|t| wanted.is_none_or(|w| w.eq_ignore_ascii_case(&t.status)))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(limit)
        .map(|t| {
            json!({"id": t.id, "name": t.name, "language": t.language, "status": t.status,
            "category": t.category, "components": [{"type": "BODY", "text": t.body}]})
        })
        .collect();
    let end = start + page.len();
    let mut paging = json!({"cursors": {"before": start.to_string(), "after": end.to_string()}});
    if end < matching.len() {
        paging["next"] = json!(format!(
            "{}/{waba}/message_templates?after={end}",
            shared.base_url
        ));
    }
    Ok(axum::Json(json!({"data": page, "paging": paging})).into_response())
}

fn send(shared: &Shared, number_id: &str, body: &[u8]) -> Result<Response, GraphError> {
    let req: Value =
        serde_json::from_slice(body).map_err(|_| GraphError::invalid("the body is not JSON"))?;
    if req["messaging_product"] != "whatsapp" {
        return Err(GraphError::invalid("messaging_product must be whatsapp"));
    }
    let now = shared.now_ms();
    let mut state = shared.lock();
    let known_media: HashSet<String> = state
        .media
        .iter()
        .filter(|(_, m)| m.owner == number_id)
        .map(|(id, _)| id.clone())
        .collect();
    let n = state
        .numbers
        .get_mut(number_id)
        .ok_or_else(GraphError::bad_token)?;
    if req["status"] == "read" {
        return Ok(axum::Json(json!({"success": true})).into_response());
    }
    let raw_to = req["to"].as_str().unwrap_or("");
    let to = raw_to.trim().trim_start_matches('+');
    if !(8..=15).contains(&to.len()) || !to.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GraphError::invalid("to is not a valid phone number"));
    }
    let kind = req["type"].as_str().unwrap_or("text");
    let str_of = |v: &Value| v.as_str().map(str::to_owned);
    let mut sent = WaSentMessage {
        id: new_wamid(),
        to: to.to_owned(),
        kind: kind.to_owned(),
        text: None,
        caption: None,
        media: None,
        filename: None,
        template: None,
        template_params: Vec::new(),
        reply_to: str_of(&req["context"]["message_id"]),
        statuses: Vec::new(),
    };
    match kind {
        "text" => {
            let text = req["text"]["body"].as_str().unwrap_or("");
            if text.trim().is_empty() || text.chars().count() > MAX_TEXT {
                return Err(GraphError::invalid(
                    "text.body must be 1 to 4096 characters",
                ));
            }
            sent.text = Some(text.to_owned());
        }
        "image" | "document" | "audio" | "video" | "sticker" => {
            let object = &req[kind];
            let media = match (object["link"].as_str(), object["id"].as_str()) {
                (Some(link), _) if link.starts_with("http") => link.to_owned(),
                (None, Some(id)) if known_media.contains(id) => id.to_owned(),
                (None, Some(_)) => return Err(GraphError::invalid("the media id does not exist")),
                _ => {
                    return Err(GraphError::invalid(&format!(
                        "{kind}.link or {kind}.id is required"
                    )))
                }
            };
            sent.media = Some(media);
            sent.caption = str_of(&object["caption"]);
            sent.filename = str_of(&object["filename"]);
        }
        "template" => {
            let t = &req["template"];
            let name = t["name"].as_str().unwrap_or("");
            let language = t["language"]["code"].as_str().unwrap_or("");
            let Some(template) = n
                .templates
                .iter()
                .find(|x| x.name == name && x.language == language && x.status == "APPROVED")
            else {
                return Err(GraphError {
                    details: Some(format!(
                        "template name ({name}) does not exist in {language}"
                    )),
                    ..GraphError::new(
                        404,
                        132_001,
                        "(#132001) Template name does not exist in the translation",
                    )
                });
            };
            let params: Vec<String> = t["components"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| {
                    c["type"]
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case("body"))
                })
                .flat_map(|c| c["parameters"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| str_of(&p["text"]))
                .collect();
            let expected = placeholders(&template.body);
            if params.len() != expected {
                return Err(GraphError {
                    details: Some(format!("body: number of localizable_params ({}) does not match the expected number of params ({expected})", params.len())),
                    ..GraphError::new(400, 132_000, "(#132000) Number of parameters does not match the expected number of params")
                });
            }
            let mut text = template.body.clone();
            for (i, p) in params.iter().enumerate() {
                text = text.replace(&format!("{{{{{}}}}}", i + 1), p);
            }
            sent.text = Some(text);
            sent.template = Some(name.to_owned());
            sent.template_params = params;
        }
        other => {
            return Err(GraphError::new(
                400,
                131_051,
                format!("(#131051) Message type unknown: {other}"),
            ))
        }
    }
    let window_open = n
        .last_inbound
        .get(to)
        .is_some_and(|at| now - at < WINDOW_MS);
    let outside_window = kind != "template" && !window_open;
    let window_error = || {
        json!({"code": 131_047, "title": "Re-engagement message",
        "message": "Re-engagement message",
        "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}})
    };
    if outside_window && n.window_errors_sync {
        return Err(GraphError {
            details: Some("Message failed to send because more than 24 hours have passed since the customer last replied to this number.".into()),
            ..GraphError::new(400, 131_047, "(#131047) Re-engagement message")
        });
    }
    let wamid = sent.id.clone();
    n.sent.push(sent);
    let secs = now / 1000;
    if outside_window {
        n.queue_status(&wamid, to, "failed", secs, Some(window_error()));
    } else if n.blocked.contains(to) {
        let error = json!({"code": 131_026, "title": "Message undeliverable",
            "message": "Message undeliverable",
            "error_data": {"details": "Message Undeliverable."}});
        n.queue_status(&wamid, to, "failed", secs, Some(error));
    } else {
        n.queue_status(&wamid, to, "sent", secs, None);
        n.queue_status(&wamid, to, "delivered", secs, None);
        if n.auto_read {
            n.queue_status(&wamid, to, "read", secs, None);
        }
    }
    Ok(axum::Json(json!({"messaging_product": "whatsapp",
        "contacts": [{"input": raw_to, "wa_id": to}],
        "messages": [{"id": wamid, "message_status": "accepted"}]}))
    .into_response())
}

/// The highest `{{n}}` of a template body.
fn placeholders(body: &str) -> usize {
    body.split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}")?.0.trim().parse::<usize>().ok())
        .max()
        .unwrap_or(0)
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn new_wamid() -> String {
    format!("wamid.HBgL{}", random_string(ALPHANUMERIC, 40))
}
