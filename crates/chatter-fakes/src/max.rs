//! Fake Max Bot API: a stateful HTTP server on loopback that speaks the API as
//! `docs/providers/channels.md` §3 describes. Per token it keeps the bot, its dialogs and group
//! chats, an update queue with marker semantics and long polling, a webhook subscription with
//! ordered, retried delivery, files uploaded for messages (`upload`), and the messages the bot
//! sent; a control API lets tests act as customers and inject failures.
//!
//! Clients call `{base_url}/me`, `/updates`, `/subscriptions`, `/messages` with the raw token in
//! `Authorization`, exactly as against `https://platform-api2.max.ru`. Media the customers send
//! are served without credentials at `{base_url}/files/{id}`.

mod upload;

pub use upload::SentFile;

use crate::server::{self, random_string, unix_millis, Backoff, StopGuard, URL_SAFE};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

const MAX_TEXT: usize = 4000;
const MAX_POLL_SECS: u64 = 90;
const DELIVERY_BACKOFF_START: Duration = Duration::from_millis(50);
const DELIVERY_BACKOFF_CAP: Duration = Duration::from_secs(1);

/// A message a simulated customer writes to a bot. Build one with [`CustomerMessage::text`] and
/// struct update syntax for the rest.
#[derive(Debug, Clone, Default)]
pub struct CustomerMessage {
    pub user_id: i64,
    pub first_name: String,
    pub last_name: Option<String>,
    /// `None`: the customer's dialog with the bot; `Some((chat_id, title))`: a group chat.
    pub group: Option<(i64, String)>,
    pub text: Option<String>,
    /// An image's bytes (served as `image/jpeg`).
    pub image: Option<Vec<u8>>,
    /// A file's bytes and name.
    pub file: Option<(Vec<u8>, String)>,
    /// The `mid` this message replies to.
    pub reply_to: Option<String>,
}

impl CustomerMessage {
    /// A plain text in the customer's dialog with the bot.
    pub fn text(user_id: i64, first_name: &str, text: &str) -> Self {
        CustomerMessage {
            user_id,
            first_name: first_name.to_owned(),
            text: Some(text.to_owned()),
            ..CustomerMessage::default()
        }
    }
}

/// What an injected failure does to the next API call of a token.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Answer with this HTTP status and body `{"code":code,"message":message}`.
    Status {
        status: u16,
        code: String,
        message: String,
    },
    /// 429, with `Retry-After` when given.
    TooManyRequests { retry_after: Option<u64> },
    /// Never answer, so the client's own timeout fires.
    Hang,
}

impl Failure {
    /// 503 Service Unavailable.
    pub fn server_error() -> Self {
        Failure::Status {
            status: 503,
            code: "service.unavailable".into(),
            message: "Service temporarily unavailable".into(),
        }
    }
}

/// A message the bot sent, as the fake recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub chat_id: i64,
    pub mid: String,
    pub text: String,
    /// The `mid` of `link.type == "reply"`.
    pub reply_to: Option<String>,
    /// The uploaded files it carried (`attachments`), in order.
    pub attachments: Vec<SentFile>,
}

/// The bot's webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub url: String,
    pub secret: Option<String>,
    pub update_types: Option<Vec<String>>,
}

/// One webhook POST the fake made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub update_type: String,
    /// HTTP status of the answer; `None` when the connection failed.
    pub status: Option<u16>,
}

/// Handle to a running fake. Clones share the server; it stops when the last handle drops or on
/// [`FakeMax::shutdown`].
#[derive(Clone)]
pub struct FakeMax {
    shared: Arc<Shared>,
    guard: Arc<StopGuard>,
}

/// The bots behind the fake's lock; uploaded files sit behind a second lock (the `extra`), since
/// a file is stored while a bot's lock is held.
type Shared = server::Shared<HashMap<String, Bot>, Files>;

/// Uploaded files by id: bytes and MIME type.
type Files = Mutex<HashMap<String, (Vec<u8>, String)>>;

impl Shared {
    fn store_file(&self, bytes: Vec<u8>, mime: &str) -> String {
        let id = random_string(URL_SAFE, 24);
        self.extra
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), (bytes, mime.to_owned()));
        format!("{}/files/{id}", self.base_url)
    }
}

struct Chat {
    chat_type: &'static str,
    /// The customer of a dialog.
    user: Option<Value>,
}

struct Bot {
    user_id: i64,
    name: String,
    username: String,
    revoked: bool,
    next_seq: i64,
    queue: VecDeque<(i64, Value)>,
    notify: Arc<Notify>,
    subscription: Option<Subscription>,
    /// Bumped on every subscribe/unsubscribe: a delivery task of an older one stops.
    subscription_seq: u64,
    deliveries: Vec<Delivery>,
    /// Dialog chat id per customer.
    dialogs: HashMap<i64, i64>,
    chats: BTreeMap<i64, Chat>,
    messages: HashMap<String, Value>,
    stopped_by: HashSet<i64>,
    sent: Vec<SentMessage>,
    failures: VecDeque<Failure>,
    /// Sends still to come whose answer is lost after the message went (`lose_answer_next`).
    lose_answers: usize,
    next_seq_mid: i64,
    uploads: upload::Uploads,
}

impl Bot {
    fn user_json(&self) -> Value {
        json!({"user_id": self.user_id, "first_name": self.name, "username": self.username,
               "is_bot": true, "last_activity_time": unix_millis()})
    }

    fn enqueue(&mut self, update: Value) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back((seq, update));
        self.notify.notify_waiters();
    }

    fn new_mid(&mut self) -> (String, i64) {
        self.next_seq_mid += 1;
        let mid = format!("mid.{:032x}", rand::thread_rng().gen::<u128>());
        (mid, self.next_seq_mid)
    }

    fn dialog(&mut self, user: &Value, user_id: i64) -> i64 {
        let chat_id = *self
            .dialogs
            .entry(user_id)
            .or_insert_with(|| rand::thread_rng().gen_range(100_000_000..900_000_000));
        self.chats.insert(
            chat_id,
            Chat {
                chat_type: "dialog",
                user: Some(user.clone()),
            },
        );
        chat_id
    }
}

impl FakeMax {
    /// Starts the fake on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<FakeMax> {
        let spec = server::Spec::new(HashMap::new(), "fake Max server stopped")
            .with_extra(Files::default());
        let (shared, guard) = server::start(spec, |shared| {
            Router::new()
                .route("/me", get(me))
                .route("/updates", get(updates))
                .route(
                    "/subscriptions",
                    get(list_subscriptions).post(subscribe).delete(unsubscribe),
                )
                .route("/messages", get(list_messages).post(send_message))
                .route("/files/{id}", get(file))
                .route("/uploads", axum::routing::post(upload::new_upload))
                .route(
                    "/upload/{id}",
                    axum::routing::post(upload::receive).layer(
                        axum::extract::DefaultBodyLimit::max(upload::MAX_UPLOAD_BODY),
                    ),
                )
                .with_state(shared)
        })
        .await?;
        Ok(FakeMax { shared, guard })
    }

    /// Stops the server now (hanging requests and webhook deliveries end too).
    pub fn shutdown(&self) {
        self.guard.stop();
    }

    /// `http://127.0.0.1:PORT`, the fake's stand-in for `https://platform-api2.max.ru`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Registers a bot and returns its token.
    pub fn add_bot(&self, name: &str, username: &str) -> String {
        let token = random_string(URL_SAFE, 44);
        let mut rng = rand::thread_rng();
        let bot = Bot {
            user_id: rng.gen_range(100_000_000..900_000_000),
            name: name.to_owned(),
            username: username.to_owned(),
            revoked: false,
            next_seq: rng.gen_range(1_000_000..9_000_000),
            queue: VecDeque::new(),
            notify: Arc::new(Notify::new()),
            subscription: None,
            subscription_seq: 0,
            deliveries: Vec::new(),
            dialogs: HashMap::new(),
            chats: BTreeMap::new(),
            messages: HashMap::new(),
            stopped_by: HashSet::new(),
            sent: Vec::new(),
            failures: VecDeque::new(),
            lose_answers: 0,
            next_seq_mid: rng.gen_range(1_000_000..9_000_000),
            uploads: upload::Uploads::default(),
        };
        self.shared.lock().insert(token.clone(), bot);
        token
    }

    fn with_bot<T>(&self, token: &str, f: impl FnOnce(&mut Bot) -> T) -> T {
        let mut bots = self.shared.lock();
        let bot = bots
            .get_mut(token)
            .expect("the token was returned by add_bot on this fake");
        f(bot)
    }

    /// The bot's dialogue with user `user_id`, once they have written.
    pub fn dialog_of(&self, token: &str, user_id: i64) -> Option<i64> {
        self.with_bot(token, |bot| bot.dialogs.get(&user_id).copied())
    }

    /// The bot's user id (what `GET /me` answers).
    pub fn bot_user_id(&self, token: &str) -> i64 {
        self.with_bot(token, |bot| bot.user_id)
    }

    /// A customer writes: a `message_created` update is queued. Returns the message's `mid`.
    pub fn customer_writes(&self, token: &str, m: CustomerMessage) -> String {
        let image = m.image.map(|b| self.shared.store_file(b, "image/jpeg"));
        let file = m.file.map(|(b, name)| {
            let size = b.len();
            (
                self.shared.store_file(b, "application/octet-stream"),
                name,
                size,
            )
        });
        self.with_bot(token, |bot| {
            let mut user = json!({"user_id": m.user_id, "first_name": m.first_name,
                                  "is_bot": false, "last_activity_time": unix_millis()});
            if let Some(last) = &m.last_name {
                user["last_name"] = json!(last);
            }
            let recipient = match &m.group {
                Some((chat_id, _)) => {
                    bot.chats.insert(
                        *chat_id,
                        Chat {
                            chat_type: "chat",
                            user: None,
                        },
                    );
                    json!({"chat_id": chat_id, "chat_type": "chat"})
                }
                None => {
                    let chat_id = bot.dialog(&user, m.user_id);
                    json!({"chat_id": chat_id, "chat_type": "dialog", "user_id": bot.user_id})
                }
            };
            let mut attachments = Vec::new();
            if let Some(url) = image {
                attachments.push(json!({"type": "image", "payload": {
                    "photo_id": rand::thread_rng().gen_range(1..i64::MAX),
                    "token": random_string(URL_SAFE, 16), "url": url}}));
            }
            if let Some((url, name, size)) = file {
                attachments.push(json!({"type": "file", "payload": {"url": url, "token": random_string(URL_SAFE, 16)},
                                        "filename": name, "size": size}));
            }
            let (mid, seq) = bot.new_mid();
            let link = m
                .reply_to
                .as_ref()
                .and_then(|r| bot.messages.get(r))
                .map(|r| json!({"type": "reply", "message": r["body"].clone()}));
            let message = json!({
                "sender": user,
                "recipient": recipient,
                "timestamp": unix_millis(),
                "body": {"mid": mid, "seq": seq, "text": m.text.unwrap_or_default(), "attachments": attachments},
                "link": link,
            });
            bot.messages.insert(mid.clone(), message.clone());
            bot.enqueue(json!({"update_type": "message_created", "timestamp": unix_millis(),
                               "user_locale": "ru", "message": message}));
            mid
        })
    }

    /// The customer edits an earlier message: its text changes and `message_edited` is queued.
    /// Panics on an unknown `mid`.
    pub fn customer_edits(&self, token: &str, mid: &str, text: &str) {
        self.with_bot(token, |bot| {
            let message = bot
                .messages
                .get_mut(mid)
                .expect("customer_edits: a mid customer_writes returned");
            message["body"]["text"] = json!(text);
            let message = message.clone();
            bot.enqueue(
                json!({"update_type": "message_edited", "timestamp": unix_millis(),
                               "user_locale": "ru", "message": message}),
            );
        });
    }

    /// The customer stops (blocks) the bot: `bot_stopped` is queued and sends into their dialog
    /// answer 403 until [`FakeMax::bot_started`].
    pub fn bot_stopped(&self, token: &str, user_id: i64, first_name: &str) {
        self.with_bot(token, |bot| {
            let user = json!({"user_id": user_id, "first_name": first_name, "is_bot": false});
            let chat_id = bot.dialog(&user, user_id);
            bot.stopped_by.insert(user_id);
            bot.enqueue(
                json!({"update_type": "bot_stopped", "timestamp": unix_millis(),
                               "chat_id": chat_id, "user": user}),
            );
        });
    }

    /// The customer (re)starts the bot, optionally through a deep link with `payload`.
    pub fn bot_started(&self, token: &str, user_id: i64, first_name: &str, payload: Option<&str>) {
        self.with_bot(token, |bot| {
            let user = json!({"user_id": user_id, "first_name": first_name, "is_bot": false});
            let chat_id = bot.dialog(&user, user_id);
            bot.stopped_by.remove(&user_id);
            let mut update = json!({"update_type": "bot_started", "timestamp": unix_millis(),
                                    "chat_id": chat_id, "user": user});
            if let Some(payload) = payload {
                update["payload"] = json!(payload);
            }
            bot.enqueue(update);
        });
    }

    /// Queues any update as given (types the control API has no helper for).
    pub fn push_update(&self, token: &str, update: Value) {
        self.with_bot(token, |bot| bot.enqueue(update));
    }

    /// Revokes the token: every later call answers 401 `verify.token`.
    pub fn revoke(&self, token: &str) {
        self.with_bot(token, |bot| {
            bot.revoked = true;
            bot.notify.notify_waiters();
        });
    }

    /// The next `count` API calls of this token fail with `f`.
    pub fn fail_next(&self, token: &str, f: Failure, count: usize) {
        self.with_bot(token, |bot| {
            bot.failures.extend(std::iter::repeat_n(f, count));
        });
    }

    /// The next `count` messages the bot sends are sent, but their answer is lost: a 504 from
    /// the front after the message went, as when the connection breaks or times out once Max
    /// has taken it. A retry that sends again makes a second message.
    pub fn lose_answer_next(&self, token: &str, count: usize) {
        self.with_bot(token, |bot| bot.lose_answers += count);
    }

    /// The next `count` messages with an attachment answer `attachment.not.ready` (§3.4), as a
    /// fresh upload Max is still processing does.
    pub fn attachment_not_ready_next(&self, token: &str, count: usize) {
        self.with_bot(token, |bot| bot.uploads.not_ready += count);
    }

    /// Everything the bot sent, in order.
    pub fn sent(&self, token: &str) -> Vec<SentMessage> {
        self.with_bot(token, |bot| bot.sent.clone())
    }

    /// The current webhook subscription.
    pub fn subscription(&self, token: &str) -> Option<Subscription> {
        self.with_bot(token, |bot| bot.subscription.clone())
    }

    /// Webhook POSTs made so far, in order (retries included).
    pub fn deliveries(&self, token: &str) -> Vec<Delivery> {
        self.with_bot(token, |bot| bot.deliveries.clone())
    }

    /// Updates not yet committed (by a marker or a 200 webhook answer).
    pub fn pending_updates(&self, token: &str) -> usize {
        self.with_bot(token, |bot| bot.queue.len())
    }
}

// ---------------------------------------------------------------------------------------------
// API surface

fn error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

fn unauthorized() -> Response {
    error(401, "verify.token", "Invalid access_token")
}

/// Authenticates the call and applies an injected failure; `Ok(token)` lets it through.
async fn gate(shared: &Shared, headers: &HeaderMap) -> Result<String, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let failure = {
        let mut bots = shared.lock();
        match bots.get_mut(&token) {
            Some(bot) if !bot.revoked => bot.failures.pop_front(),
            _ => return Err(unauthorized()),
        }
    };
    match failure {
        None => Ok(token),
        Some(Failure::Status {
            status,
            code,
            message,
        }) => Err(error(status, &code, &message)),
        Some(Failure::TooManyRequests { retry_after }) => {
            let mut response = error(429, "too.many.requests", "Too many requests");
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, secs.into());
            }
            Err(response)
        }
        Some(Failure::Hang) => {
            shared.hang().await;
            Err(error(503, "service.unavailable", "hung"))
        }
    }
}

macro_rules! gate {
    ($shared:expr, $headers:expr) => {
        match gate(&$shared, &$headers).await {
            Ok(token) => token,
            Err(response) => return response,
        }
    };
}

async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = gate!(shared, headers);
    let bots = shared.lock();
    let Some(bot) = bots.get(&token) else {
        return unauthorized();
    };
    let mut me = bot.user_json();
    me["name"] = json!(bot.name);
    me["description"] = json!("Fake Max bot");
    axum::Json(me).into_response()
}

async fn updates(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let token = gate!(shared, headers);
    let int = |k: &str| q.get(k).and_then(|v| v.trim().parse::<i64>().ok());
    let limit = int("limit").unwrap_or(100).clamp(1, 1000) as usize;
    let timeout = (int("timeout").unwrap_or(30).max(0) as u64).min(MAX_POLL_SECS);
    let marker = int("marker");
    let types: Option<Vec<String>> = q
        .get("types")
        .map(|t| t.split(',').map(|s| s.trim().to_owned()).collect());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let notify = {
        let mut bots = shared.lock();
        let Some(bot) = bots.get_mut(&token) else {
            return unauthorized();
        };
        if bot.subscription.is_some() {
            return error(
                405,
                "method.not.allowed",
                "Long polling is not available while a webhook subscription is active",
            );
        }
        if let Some(marker) = marker {
            while bot.queue.front().is_some_and(|(seq, _)| *seq < marker) {
                bot.queue.pop_front();
            }
        }
        bot.notify.clone()
    };
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let bots = shared.lock();
            let Some(bot) = bots.get(&token).filter(|b| !b.revoked) else {
                return unauthorized();
            };
            let wanted = |u: &Value| {
                types.as_ref().is_none_or(|t| {
                    t.iter()
                        .any(|k| Some(k.as_str()) == u["update_type"].as_str())
                })
            };
            let expired = tokio::time::Instant::now() >= deadline;
            if bot.queue.iter().any(|(_, u)| wanted(u)) || expired {
                let mut out = Vec::new();
                let mut next = bot.queue.front().map_or(bot.next_seq, |(seq, _)| *seq);
                for (seq, update) in &bot.queue {
                    if out.len() == limit {
                        break;
                    }
                    next = seq + 1;
                    if wanted(update) {
                        out.push(update.clone());
                    }
                }
                return axum::Json(json!({"updates": out, "marker": next})).into_response();
            }
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline) => {}
            () = shared.stopped() => return error(503, "service.unavailable", "stopping"),
        }
    }
}

async fn list_subscriptions(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = gate!(shared, headers);
    let bots = shared.lock();
    let Some(bot) = bots.get(&token) else {
        return unauthorized();
    };
    let list: Vec<Value> = bot
        .subscription
        .iter()
        .map(|s| json!({"url": s.url, "time": unix_millis(), "update_types": s.update_types, "version": "0.0.30"}))
        .collect();
    axum::Json(json!({"subscriptions": list})).into_response()
}

async fn subscribe(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let token = gate!(shared, headers);
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "proto.payload", "Invalid JSON");
    };
    let Some(url) = body["url"].as_str().filter(|u| u.starts_with("http")) else {
        return axum::Json(json!({"success": false, "message": "url is required"})).into_response();
    };
    let secret = body["secret"].as_str().map(str::to_owned);
    if let Some(s) = &secret {
        let allowed = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !allowed || !(5..=256).contains(&s.len()) {
            return axum::Json(json!({"success": false, "message": "invalid secret"}))
                .into_response();
        }
    }
    let update_types = body["update_types"].as_array().map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    });
    let seq = {
        let mut bots = shared.lock();
        let Some(bot) = bots.get_mut(&token) else {
            return unauthorized();
        };
        bot.subscription = Some(Subscription {
            url: url.to_owned(),
            secret,
            update_types,
        });
        bot.subscription_seq += 1;
        bot.notify.notify_waiters();
        bot.subscription_seq
    };
    tokio::spawn(deliver(shared.clone(), token, seq));
    axum::Json(json!({"success": true})).into_response()
}

async fn unsubscribe(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let token = gate!(shared, headers);
    let mut bots = shared.lock();
    let Some(bot) = bots.get_mut(&token) else {
        return unauthorized();
    };
    let url = q.get("url").map(String::as_str).unwrap_or("");
    if bot.subscription.as_ref().is_some_and(|s| s.url == url) {
        bot.subscription = None;
        bot.subscription_seq += 1;
        bot.notify.notify_waiters();
    }
    axum::Json(json!({"success": true})).into_response()
}

/// Delivers queued updates to the subscription `seq`, one at a time and in order; only a 200
/// answer takes an update off the queue, anything else is retried with backoff (§3.3).
async fn deliver(shared: Arc<Shared>, token: String, seq: u64) {
    let mut backoff = Backoff::new(DELIVERY_BACKOFF_START, DELIVERY_BACKOFF_CAP);
    loop {
        let notify = {
            let bots = shared.lock();
            match bots.get(&token) {
                Some(bot) => bot.notify.clone(),
                None => return,
            }
        };
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = {
            let mut bots = shared.lock();
            let Some(bot) = bots.get_mut(&token) else {
                return;
            };
            if bot.subscription_seq != seq || bot.revoked {
                return;
            }
            let Some(sub) = bot.subscription.clone() else {
                return;
            };
            // Updates of types the subscription does not want are committed unseen.
            while let Some((_, u)) = bot.queue.front() {
                let wanted = sub.update_types.as_ref().is_none_or(|t| {
                    t.is_empty()
                        || t.iter()
                            .any(|k| Some(k.as_str()) == u["update_type"].as_str())
                });
                if wanted {
                    break;
                }
                bot.queue.pop_front();
            }
            bot.queue.front().map(|(id, u)| (*id, u.clone(), sub))
        };
        let Some((id, update, sub)) = next else {
            tokio::select! {
                () = &mut notified => continue,
                () = shared.stopped() => return,
            }
        };
        let mut request = shared.http.post(&sub.url).json(&update);
        if let Some(secret) = &sub.secret {
            request = request.header("X-Max-Bot-Api-Secret", secret);
        }
        let status = tokio::select! {
            r = request.send() => r.ok().map(|r| r.status().as_u16()),
            () = shared.stopped() => return,
        };
        let delivered = status == Some(200);
        {
            let mut bots = shared.lock();
            let Some(bot) = bots.get_mut(&token) else {
                return;
            };
            bot.deliveries.push(Delivery {
                update_type: update["update_type"].as_str().unwrap_or("").to_owned(),
                status,
            });
            if delivered && bot.queue.front().is_some_and(|(f, _)| *f == id) {
                bot.queue.pop_front();
            }
        }
        if delivered {
            backoff.reset();
        } else if !shared.sleep(backoff.step()).await {
            return;
        }
    }
}

async fn send_message(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let token = gate!(shared, headers);
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "proto.payload", "Invalid JSON");
    };
    let text = body["text"].as_str().unwrap_or("").to_owned();
    if text.is_empty() && body["attachments"].as_array().is_none_or(Vec::is_empty) {
        return error(400, "proto.payload", "text: must not be empty");
    }
    if text.chars().count() > MAX_TEXT {
        return error(
            400,
            "proto.payload",
            "text: size must be between 0 and 4000",
        );
    }
    let mut bots = shared.lock();
    let Some(bot) = bots.get_mut(&token) else {
        return unauthorized();
    };
    let param = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
    let chat_id = match (param("chat_id"), param("user_id")) {
        (Some(chat_id), _) => chat_id,
        (None, Some(user_id)) => match bot.dialogs.get(&user_id) {
            Some(chat_id) => *chat_id,
            None => return error(404, "chat.not.found", "Chat not found"),
        },
        (None, None) => return error(400, "proto.payload", "chat_id or user_id is required"),
    };
    let Some(chat) = bot.chats.get(&chat_id) else {
        return error(404, "chat.not.found", &format!("Chat {chat_id} not found"));
    };
    let customer = chat.user.as_ref().and_then(|u| u["user_id"].as_i64());
    if customer.is_some_and(|c| bot.stopped_by.contains(&c)) {
        return error(403, "chat.denied", "error.dialog.suspended");
    }
    let chat_type = chat.chat_type;
    let attachments = match upload::attached(bot, &body) {
        Ok(files) => files,
        Err(response) => return *response,
    };
    let (mid, seq) = bot.new_mid();
    let reply_to = (body["link"]["type"] == "reply")
        .then(|| body["link"]["mid"].as_str().map(str::to_owned))
        .flatten();
    let message = json!({
        "sender": bot.user_json(),
        "recipient": {"chat_id": chat_id, "chat_type": chat_type, "user_id": customer},
        "timestamp": unix_millis(),
        "body": {"mid": mid, "seq": seq, "text": text, "attachments": body["attachments"]
            .as_array().cloned().unwrap_or_default()},
        "link": reply_to.as_ref().map(|r| json!({"type": "reply", "message": {"mid": r}})),
    });
    bot.messages.insert(mid.clone(), message.clone());
    bot.sent.push(SentMessage {
        chat_id,
        mid,
        text,
        reply_to,
        attachments,
    });
    if bot.lose_answers > 0 {
        bot.lose_answers -= 1;
        return error(504, "gateway.timeout", "Gateway Time-out");
    }
    axum::Json(json!({"message": message})).into_response()
}

/// `GET /messages?chat_id=&count=` (§3.2): the chat's messages, newest first, at most `count`
/// (1–100, default 50). `message_ids`, `from` and `to` are not modelled.
async fn list_messages(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let token = gate!(shared, headers);
    let Some(chat_id) = q.get("chat_id").and_then(|v| v.parse::<i64>().ok()) else {
        return error(400, "proto.payload", "chat_id is required");
    };
    let count = match q.get("count").map(|c| c.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return error(400, "proto.payload", "count: must be between 1 and 100"),
    };
    let bots = shared.lock();
    let Some(bot) = bots.get(&token) else {
        return unauthorized();
    };
    if !bot.chats.contains_key(&chat_id) {
        return error(404, "chat.not.found", &format!("Chat {chat_id} not found"));
    }
    let mut messages: Vec<&Value> = bot
        .messages
        .values()
        .filter(|m| m["recipient"]["chat_id"].as_i64() == Some(chat_id))
        .collect();
    messages.sort_by_key(|m| std::cmp::Reverse(m["body"]["seq"].as_i64()));
    messages.truncate(count);
    axum::Json(json!({ "messages": messages })).into_response()
}

async fn file(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let files = shared.extra.lock().unwrap_or_else(PoisonError::into_inner);
    match files.get(&id) {
        Some((bytes, mime)) => {
            ([(header::CONTENT_TYPE, mime.clone())], bytes.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
