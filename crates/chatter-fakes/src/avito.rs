//! Fake Avito API: a stateful HTTP server on loopback that speaks the OAuth and Messenger API as
//! `docs/providers/channels.md` §4 describes. Per account it keeps API credentials and the access
//! tokens issued for them (which expire), chats about items with their messages, webhook
//! subscriptions with v3 deliveries, pictures uploaded and sent (`upload`), the messages the
//! account sent and a per-minute rate limiter; a control API lets tests act as buyers and
//! inject failures.
//!
//! Clients call `{base_url}/token`, `/core/v1/accounts/self` and `/messenger/…` with
//! `Authorization: Bearer <token>`, as against `https://api.avito.ru`. Images buyers send are
//! served without credentials at `{base_url}/files/{id}`.

mod upload;

pub use upload::SentImage;

use crate::server::{self, random_string, unix_secs, StopGuard, ALPHANUMERIC};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const MAX_TEXT: usize = 1000;
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);
const RATE_WINDOW: Duration = Duration::from_secs(60);
const DELIVERY_ATTEMPTS: u32 = 5;
const DELIVERY_BACKOFF: Duration = Duration::from_millis(50);

/// The API credentials of an account made with [`FakeAvito::add_account`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: String,
    /// The account number (`user_id` in messenger paths).
    pub user_id: i64,
}

/// A message a simulated buyer writes about an item. Build one with [`BuyerMessage::text`].
#[derive(Debug, Clone, Default)]
pub struct BuyerMessage {
    pub buyer_id: i64,
    pub buyer_name: String,
    pub item_id: i64,
    pub item_title: String,
    pub text: Option<String>,
    /// An image's bytes: the message is of type `image` (the text is then ignored).
    pub image: Option<Vec<u8>>,
}

impl BuyerMessage {
    /// A text from `buyer_id` about `item_id`.
    pub fn text(buyer_id: i64, buyer_name: &str, item_id: i64, text: &str) -> Self {
        BuyerMessage {
            buyer_id,
            buyer_name: buyer_name.to_owned(),
            item_id,
            item_title: format!("Item {item_id}"),
            text: Some(text.to_owned()),
            image: None,
        }
    }
}

/// What an injected failure does to the next messenger call of an account.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Answer this status with `{"error":{"code":status,"message":message}}`.
    Status { status: u16, message: String },
    /// Never answer, so the client's own timeout fires.
    Hang,
}

/// A message the account sent, as the fake recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub chat_id: String,
    pub id: String,
    /// Empty for a picture.
    pub text: String,
    /// The uploaded picture an `image` message carried.
    pub image: Option<SentImage>,
}

/// One webhook POST the fake made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub url: String,
    pub message_id: String,
    /// HTTP status of the answer; `None` when the connection failed.
    pub status: Option<u16>,
}

/// Handle to a running fake. Clones share the server; it stops when the last handle drops or on
/// [`FakeAvito::shutdown`].
#[derive(Clone)]
pub struct FakeAvito {
    shared: Arc<Shared>,
    guard: Arc<StopGuard>,
}

struct World {
    /// By client id.
    accounts: HashMap<String, Account>,
    /// Access token → (client id, expiry).
    tokens: HashMap<String, (String, Instant)>,
    files: HashMap<String, Vec<u8>>,
}

/// The fake's world behind its one lock, with what every fake shares (see [`server::Shared`]).
type Shared = server::Shared<World>;

struct Chat {
    id: String,
    created: i64,
    updated: i64,
    item_id: i64,
    item_title: String,
    buyer: (i64, String),
    /// Oldest first.
    messages: Vec<Value>,
}

struct Account {
    user_id: i64,
    name: String,
    client_secret: String,
    revoked: bool,
    token_lifetime: Duration,
    tokens_issued: usize,
    chats: BTreeMap<String, Chat>,
    sent: Vec<SentMessage>,
    webhooks: Vec<String>,
    hooks: Option<mpsc::UnboundedSender<Value>>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    failures: VecDeque<Failure>,
    /// Sends still to come whose answer is lost after the message went (`lose_answer_next`).
    lose_answers: usize,
    rate_limit: Option<u32>,
    window: (Instant, u32),
    /// Pictures uploaded with `uploadImages`, by image id.
    images: HashMap<String, SentImage>,
}

impl Account {
    /// Whether this send's answer is to be lost (`FakeAvito::lose_answer_next`).
    fn answer_lost(&mut self) -> bool {
        let lost = self.lose_answers > 0;
        self.lose_answers = self.lose_answers.saturating_sub(1);
        lost
    }

    /// Stores a message in its chat and queues its webhook delivery.
    fn add_message(&mut self, chat_id: &str, author_id: i64, kind: &str, content: Value) -> Value {
        let created = unix_secs();
        let id = format!("{:032x}", rand::thread_rng().gen::<u128>());
        let direction = if author_id == self.user_id {
            "out"
        } else {
            "in"
        };
        let Some(chat) = self.chats.get_mut(chat_id) else {
            return Value::Null;
        };
        chat.updated = created;
        let message = json!({"id": id, "author_id": author_id, "created": created,
                             "direction": direction, "is_read": false, "type": kind,
                             "content": content});
        chat.messages.push(message.clone());
        let hook = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "version": "v3.0.0",
            "timestamp": created,
            "payload": {"type": "message", "value": {
                "id": id, "chat_id": chat_id, "user_id": self.user_id, "author_id": author_id,
                "created": created,
                "published_at": chrono::DateTime::from_timestamp(created, 0)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                "type": kind, "chat_type": "u2i", "item_id": chat.item_id,
                "content": content, "read": null}},
        });
        if let Some(hooks) = &self.hooks {
            let _ = hooks.send(hook);
        }
        message
    }

    fn chat_json(&self, chat: &Chat) -> Value {
        json!({
            "id": chat.id, "created": chat.created, "updated": chat.updated,
            "context": {"type": "item", "value": {"id": chat.item_id, "title": chat.item_title,
                "price_string": "1 000 ₽", "status_id": 0,
                "url": format!("https://www.avito.ru/items/{}", chat.item_id),
                "user_id": self.user_id, "images": {}}},
            "last_message": chat.messages.last(),
            "users": [
                {"id": self.user_id, "name": self.name,
                 "public_user_profile": {"user_id": self.user_id, "item_id": chat.item_id, "url": "", "avatar": {}}},
                {"id": chat.buyer.0, "name": chat.buyer.1,
                 "public_user_profile": {"user_id": chat.buyer.0, "item_id": chat.item_id, "url": "", "avatar": {}}},
            ],
        })
    }
}

impl FakeAvito {
    /// Starts the fake on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<FakeAvito> {
        let spec = server::Spec {
            http_timeout: Duration::from_secs(2),
            ..server::Spec::new(
                World {
                    accounts: HashMap::new(),
                    tokens: HashMap::new(),
                    files: HashMap::new(),
                },
                "fake Avito server stopped",
            )
        };
        let (shared, guard) = server::start(spec, |shared| {
            Router::new()
                .route("/token", post(token))
                .route("/token/", post(token))
                .route("/core/v1/accounts/self", get(account_self))
                .route("/messenger/v2/accounts/{uid}/chats", get(list_chats))
                .route("/messenger/v2/accounts/{uid}/chats/{chat}", get(get_chat))
                .route(
                    "/messenger/v3/accounts/{uid}/chats/{chat}/messages/",
                    get(list_messages),
                )
                .route(
                    "/messenger/v1/accounts/{uid}/chats/{chat}/messages",
                    post(send_message),
                )
                .route(
                    "/messenger/v1/accounts/{uid}/chats/{chat}/messages/image",
                    post(upload::send_image),
                )
                .route(
                    "/messenger/v1/accounts/{uid}/uploadImages",
                    post(upload::upload_images).layer(axum::extract::DefaultBodyLimit::max(
                        upload::MAX_UPLOAD_BODY,
                    )),
                )
                .route("/messenger/v3/webhook", post(subscribe))
                .route("/messenger/v1/webhook/unsubscribe", post(unsubscribe))
                .route("/messenger/v1/subscriptions", post(subscriptions))
                .route("/files/{id}", get(file))
                .with_state(shared)
        })
        .await?;
        Ok(FakeAvito { shared, guard })
    }

    /// Stops the server now (hanging requests and webhook deliveries end too).
    pub fn shutdown(&self) {
        self.guard.stop();
    }

    /// `http://127.0.0.1:PORT`, the fake's stand-in for `https://api.avito.ru`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Registers an account with API credentials; tokens live 24 h unless
    /// [`FakeAvito::set_token_lifetime`] says otherwise.
    pub fn add_account(&self, name: &str) -> Credentials {
        let mut rng = rand::thread_rng();
        let creds = Credentials {
            client_id: random_string(ALPHANUMERIC, 20),
            client_secret: random_string(ALPHANUMERIC, 40),
            user_id: rng.gen_range(10_000_000..99_999_999),
        };
        self.shared.lock().accounts.insert(
            creds.client_id.clone(),
            Account {
                user_id: creds.user_id,
                name: name.to_owned(),
                client_secret: creds.client_secret.clone(),
                revoked: false,
                token_lifetime: DEFAULT_TOKEN_LIFETIME,
                tokens_issued: 0,
                chats: BTreeMap::new(),
                sent: Vec::new(),
                webhooks: Vec::new(),
                hooks: None,
                deliveries: Arc::new(Mutex::new(Vec::new())),
                failures: VecDeque::new(),
                lose_answers: 0,
                rate_limit: None,
                window: (Instant::now(), 0),
                images: HashMap::new(),
            },
        );
        creds
    }

    fn with_account<T>(&self, client_id: &str, f: impl FnOnce(&mut Account) -> T) -> T {
        let mut state = self.shared.lock();
        let account = state
            .accounts
            .get_mut(client_id)
            .expect("the client id was returned by add_account on this fake");
        f(account)
    }

    /// A buyer writes about an item (in their chat about it, created on first contact).
    /// Returns (chat id, message id).
    pub fn customer_writes(&self, client_id: &str, m: BuyerMessage) -> (String, String) {
        let image = m.image.map(|bytes| {
            let id = random_string(ALPHANUMERIC, 24);
            self.shared.lock().files.insert(id.clone(), bytes);
            format!("{}/files/{id}", self.shared.base_url)
        });
        self.with_account(client_id, |account| {
            let existing = account
                .chats
                .values()
                .find(|c| c.buyer.0 == m.buyer_id && c.item_id == m.item_id)
                .map(|c| c.id.clone());
            let chat_id = existing.unwrap_or_else(|| {
                let id = format!("u2i-{}", random_string(ALPHANUMERIC, 22));
                account.chats.insert(
                    id.clone(),
                    Chat {
                        id: id.clone(),
                        created: unix_secs(),
                        updated: unix_secs(),
                        item_id: m.item_id,
                        item_title: m.item_title.clone(),
                        buyer: (m.buyer_id, m.buyer_name.clone()),
                        messages: Vec::new(),
                    },
                );
                id
            });
            let (kind, content) = match image {
                Some(url) => (
                    "image",
                    json!({"image": {"sizes": {"140x105": url, "640x480": url, "1280x960": url}}}),
                ),
                None => ("text", json!({"text": m.text.unwrap_or_default()})),
            };
            let message = account.add_message(&chat_id, m.buyer_id, kind, content);
            let id = message["id"].as_str().unwrap_or_default().to_owned();
            (chat_id, id)
        })
    }

    /// Tokens issued from now on live `lifetime` (`expires_in` is its whole seconds, at least 1).
    pub fn set_token_lifetime(&self, client_id: &str, lifetime: Duration) {
        self.with_account(client_id, |a| a.token_lifetime = lifetime);
    }

    /// Invalidates every token issued so far, as if Avito revoked them early: the next call
    /// with one answers 401.
    pub fn expire_tokens(&self, client_id: &str) {
        let mut state = self.shared.lock();
        state.tokens.retain(|_, (owner, _)| owner != client_id);
    }

    /// Revokes the credentials: `/token` answers 401 and issued tokens stop working.
    pub fn revoke(&self, client_id: &str) {
        self.with_account(client_id, |a| a.revoked = true);
        self.expire_tokens(client_id);
    }

    /// How many tokens `/token` issued for these credentials.
    pub fn tokens_issued(&self, client_id: &str) -> usize {
        self.with_account(client_id, |a| a.tokens_issued)
    }

    /// Allows `per_minute` messenger calls per minute (`None`: unlimited); the next one answers
    /// 429 with `X-RateLimit-Limit` / `X-RateLimit-Remaining`.
    pub fn set_rate_limit(&self, client_id: &str, per_minute: Option<u32>) {
        self.with_account(client_id, |a| {
            a.rate_limit = per_minute;
            a.window = (Instant::now(), 0);
        });
    }

    /// The next `count` messenger calls of the account fail with `f` (`/token` is not affected).
    pub fn fail_next(&self, client_id: &str, f: Failure, count: usize) {
        self.with_account(client_id, |a| {
            a.failures.extend(std::iter::repeat_n(f, count));
        });
    }

    /// The next `count` messages the account sends (text or picture) are sent, but their
    /// answer is lost: a 504 from the front after the message went, as when the connection
    /// breaks or times out once Avito has taken it. Avito has no idempotency key (§4.4): a
    /// retry that sends again makes a second message.
    pub fn lose_answer_next(&self, client_id: &str, count: usize) {
        self.with_account(client_id, |a| a.lose_answers += count);
    }

    /// Everything the account sent, in order.
    pub fn sent(&self, client_id: &str) -> Vec<SentMessage> {
        self.with_account(client_id, |a| a.sent.clone())
    }

    /// The webhook URLs subscribed.
    pub fn webhooks(&self, client_id: &str) -> Vec<String> {
        self.with_account(client_id, |a| a.webhooks.clone())
    }

    /// Webhook POSTs made so far, in order (retries included).
    pub fn deliveries(&self, client_id: &str) -> Vec<Delivery> {
        self.with_account(client_id, |a| {
            a.deliveries
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }
}

// ---------------------------------------------------------------------------------------------
// API surface

fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        code,
        axum::Json(json!({"error": {"code": status, "message": message}})),
    )
        .into_response()
}

async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return error(400, "unsupported grant_type");
    }
    let client_id = form.get("client_id").cloned().unwrap_or_default();
    let secret = form.get("client_secret").cloned().unwrap_or_default();
    let mut state = shared.lock();
    let lifetime = match state.accounts.get_mut(&client_id) {
        Some(a) if !a.revoked && a.client_secret == secret => {
            a.tokens_issued += 1;
            a.token_lifetime
        }
        _ => return error(401, "invalid client_id or client_secret"),
    };
    let access = random_string(ALPHANUMERIC, 43);
    state
        .tokens
        .insert(access.clone(), (client_id, Instant::now() + lifetime));
    axum::Json(
        json!({"access_token": access, "expires_in": lifetime.as_secs().max(1),
                      "token_type": "Bearer"}),
    )
    .into_response()
}

/// Authenticates a messenger call, applies the rate limit and an injected failure, and checks
/// the path's account number; `Ok(client_id)` lets it through.
async fn gate(shared: &Shared, headers: &HeaderMap, uid: Option<&str>) -> Result<String, Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let failure = {
        let mut state = shared.lock();
        let client_id = match state.tokens.get(bearer) {
            Some((client_id, expiry)) if Instant::now() < *expiry => client_id.clone(),
            _ => return Err(error(401, "invalid access token")),
        };
        let Some(account) = state.accounts.get_mut(&client_id) else {
            return Err(error(401, "invalid access token"));
        };
        if let Some(limit) = account.rate_limit {
            if account.window.0.elapsed() >= RATE_WINDOW {
                account.window = (Instant::now(), 0);
            }
            let used = account.window.1;
            if used >= limit {
                let mut response = error(429, "Too Many Requests");
                let h = response.headers_mut();
                h.insert("X-RateLimit-Limit", HeaderValue::from(limit));
                h.insert("X-RateLimit-Remaining", HeaderValue::from(0));
                return Err(response);
            }
            account.window.1 += 1;
        }
        if uid.is_some_and(|uid| uid != account.user_id.to_string()) {
            return Err(error(403, "access denied to this account"));
        }
        match account.failures.pop_front() {
            None => return Ok(client_id),
            Some(f) => f,
        }
    };
    match failure {
        Failure::Status { status, message } => Err(error(status, &message)),
        Failure::Hang => {
            shared.hang().await;
            Err(error(503, "hung"))
        }
    }
}

macro_rules! gate {
    ($shared:expr, $headers:expr, $uid:expr) => {
        match gate(&$shared, &$headers, $uid).await {
            Ok(client_id) => client_id,
            Err(response) => return response,
        }
    };
}

async fn account_self(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let client_id = gate!(shared, headers, None);
    let state = shared.lock();
    let Some(a) = state.accounts.get(&client_id) else {
        return error(401, "invalid access token");
    };
    axum::Json(
        json!({"id": a.user_id, "name": a.name, "email": "seller@example.com",
                      "phone": "79990000000",
                      "profile_url": format!("https://www.avito.ru/user/{}", a.user_id)}),
    )
    .into_response()
}

async fn list_chats(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let client_id = gate!(shared, headers, Some(&uid));
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let offset = q
        .get("offset")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if offset > 1000 {
        return error(400, "offset must be between 0 and 1000");
    }
    let state = shared.lock();
    let Some(a) = state.accounts.get(&client_id) else {
        return error(401, "invalid access token");
    };
    let mut chats: Vec<&Chat> = a.chats.values().collect();
    chats.sort_by_key(|c| std::cmp::Reverse(c.updated));
    let page: Vec<Value> = chats
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|c| a.chat_json(c))
        .collect();
    axum::Json(json!({"chats": page})).into_response()
}

async fn get_chat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((uid, chat_id)): Path<(String, String)>,
) -> Response {
    let client_id = gate!(shared, headers, Some(&uid));
    let state = shared.lock();
    let Some(a) = state.accounts.get(&client_id) else {
        return error(401, "invalid access token");
    };
    match a.chats.get(&chat_id) {
        Some(chat) => axum::Json(a.chat_json(chat)).into_response(),
        None => error(404, "chat not found"),
    }
}

async fn list_messages(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((uid, chat_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let client_id = gate!(shared, headers, Some(&uid));
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let offset = q
        .get("offset")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let state = shared.lock();
    let Some(a) = state.accounts.get(&client_id) else {
        return error(401, "invalid access token");
    };
    let Some(chat) = a.chats.get(&chat_id) else {
        return error(404, "chat not found");
    };
    // Newest first, a top-level array.
    let page: Vec<Value> = chat
        .messages
        .iter()
        .rev()
        .skip(offset)
        .take(limit)
        .cloned()
        .collect();
    axum::Json(Value::Array(page)).into_response()
}

async fn send_message(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((uid, chat_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let client_id = gate!(shared, headers, Some(&uid));
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "invalid JSON");
    };
    let text = body["message"]["text"].as_str().unwrap_or("").to_owned();
    if body["type"] != "text" || text.trim().is_empty() {
        return error(400, "message.text is required");
    }
    if text.chars().count() > MAX_TEXT {
        return error(400, "message.text is longer than 1000 characters");
    }
    let mut state = shared.lock();
    let Some(a) = state.accounts.get_mut(&client_id) else {
        return error(401, "invalid access token");
    };
    if !a.chats.contains_key(&chat_id) {
        return error(404, "chat not found");
    }
    let uid = a.user_id;
    let message = a.add_message(&chat_id, uid, "text", json!({"text": text}));
    let id = message["id"].as_str().unwrap_or_default().to_owned();
    a.sent.push(SentMessage {
        chat_id,
        id: id.clone(),
        text: text.clone(),
        image: None,
    });
    if a.answer_lost() {
        return error(504, "Gateway Time-out");
    }
    axum::Json(
        json!({"id": id, "created": message["created"], "direction": "out",
                      "type": "text", "content": {"text": text}}),
    )
    .into_response()
}

fn hook_url(body: &Bytes) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    body["url"]
        .as_str()
        .filter(|u| u.starts_with("http"))
        .map(str::to_owned)
}

async fn subscribe(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let client_id = gate!(shared, headers, None);
    let Some(url) = hook_url(&body) else {
        return error(400, "url is required");
    };
    let mut state = shared.lock();
    let Some(a) = state.accounts.get_mut(&client_id) else {
        return error(401, "invalid access token");
    };
    if !a.webhooks.contains(&url) {
        a.webhooks.push(url);
    }
    if a.hooks.is_none() {
        let (tx, rx) = mpsc::unbounded_channel();
        a.hooks = Some(tx);
        tokio::spawn(deliver(shared.clone(), client_id, rx));
    }
    axum::Json(json!({"ok": true})).into_response()
}

async fn unsubscribe(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client_id = gate!(shared, headers, None);
    let Some(url) = hook_url(&body) else {
        return error(400, "url is required");
    };
    let mut state = shared.lock();
    let Some(a) = state.accounts.get_mut(&client_id) else {
        return error(401, "invalid access token");
    };
    a.webhooks.retain(|u| *u != url);
    axum::Json(json!({"ok": true})).into_response()
}

async fn subscriptions(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let client_id = gate!(shared, headers, None);
    let state = shared.lock();
    let Some(a) = state.accounts.get(&client_id) else {
        return error(401, "invalid access token");
    };
    let list: Vec<Value> = a
        .webhooks
        .iter()
        .map(|u| json!({"url": u, "version": "3"}))
        .collect();
    axum::Json(json!({"subscriptions": list})).into_response()
}

/// POSTs each payload, in order, to every URL subscribed at the time; a non-200 answer is
/// retried a few times with backoff (Avito's own retry policy is unpublished).
async fn deliver(shared: Arc<Shared>, client_id: String, mut rx: mpsc::UnboundedReceiver<Value>) {
    loop {
        let hook = tokio::select! {
            hook = rx.recv() => match hook {
                Some(hook) => hook,
                None => return,
            },
            () = shared.stopped() => return,
        };
        let (urls, log) = {
            let state = shared.lock();
            match state.accounts.get(&client_id) {
                Some(a) => (a.webhooks.clone(), a.deliveries.clone()),
                None => return,
            }
        };
        let message_id = hook["payload"]["value"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for url in urls {
            for attempt in 1..=DELIVERY_ATTEMPTS {
                let status = tokio::select! {
                    r = shared.http.post(&url).json(&hook).send() => r.ok().map(|r| r.status().as_u16()),
                    () = shared.stopped() => return,
                };
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Delivery {
                        url: url.clone(),
                        message_id: message_id.clone(),
                        status,
                    });
                if status == Some(200) || attempt == DELIVERY_ATTEMPTS {
                    break;
                }
                if !shared.sleep(DELIVERY_BACKOFF * attempt).await {
                    return;
                }
            }
        }
    }
}

async fn file(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let state = shared.lock();
    match state.files.get(&id) {
        Some(bytes) => ([(header::CONTENT_TYPE, "image/jpeg")], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
