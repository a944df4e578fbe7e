//! Fake Telegram Bot API: a stateful HTTP server on loopback that speaks the Bot API as
//! `docs/providers/channels.md` §1 describes, keeps per-token state (bots, chats, an update queue
//! with offset semantics, webhooks with retried delivery, sent messages, files) and offers a
//! control API so tests and `chatter demo` can act as customers and inject failures.
//!
//! Clients call `{base_url}/bot{token}/{method}` and download `{base_url}/file/bot{token}/{path}`,
//! exactly as against `https://api.telegram.org`. A tiny "customer's phone" page at `/phone`
//! shows each chat and lets a person write as the customer.

use crate::server::{self, escape_html, random_string, unix_secs, Backoff, StopGuard, URL_SAFE};
use axum::body::{to_bytes, Body};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use rand::Rng;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Largest request body the fake reads (Telegram's upload limit is 50 MB).
const MAX_BODY: usize = 60 * 1024 * 1024;
const MAX_TEXT: usize = 4096;
const MAX_CAPTION: usize = 1024;
const WEBHOOK_BACKOFF_START: Duration = Duration::from_millis(50);
const WEBHOOK_BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Methods the fake knows, so `calls()` reports the canonical spelling whatever case was used.
const METHODS: &[&str] = &[
    "getMe",
    "getUpdates",
    "setWebhook",
    "deleteWebhook",
    "getWebhookInfo",
    "sendMessage",
    "sendPhoto",
    "sendDocument",
    "getFile",
    "answerCallbackQuery",
    "sendChatAction",
];

/// A message a simulated customer writes to a bot. Build one with [`CustomerMessage::text`] and
/// struct update syntax for media: `CustomerMessage { photo: Some(bytes), ..CustomerMessage::text(..) }`.
#[derive(Debug, Clone, Default)]
pub struct CustomerMessage {
    pub user_id: i64,
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
    /// `None`: the private chat with the customer (chat id = user id).
    pub chat: Option<GroupChat>,
    pub text: Option<String>,
    pub photo: Option<Vec<u8>>,
    /// Bytes, file name, MIME type.
    pub document: Option<(Vec<u8>, String, String)>,
    pub voice: Option<Vec<u8>>,
    /// Phone number, first name.
    pub contact: Option<(String, String)>,
    /// Latitude, longitude.
    pub location: Option<(f64, f64)>,
    pub reply_to_message_id: Option<i64>,
    pub caption: Option<String>,
}

impl CustomerMessage {
    /// A plain text message in the customer's private chat with the bot.
    pub fn text(user_id: i64, first_name: &str, text: &str) -> Self {
        Self {
            user_id,
            first_name: first_name.to_owned(),
            text: Some(text.to_owned()),
            ..Self::default()
        }
    }
}

/// A basic group the customer writes from.
#[derive(Debug, Clone)]
pub struct GroupChat {
    /// Negative, as Telegram's group ids are.
    pub id: i64,
    pub title: String,
}

/// What an injected failure does to a call.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Answer `{"ok":false,"error_code":code,"description":..}` with that HTTP status.
    Status {
        code: u16,
        description: String,
        retry_after: Option<u64>,
    },
    /// Never answer, so the client's own timeout fires.
    Hang,
}

impl Failure {
    /// 429 flood control with `parameters.retry_after`.
    pub fn too_many_requests(retry_after: u64) -> Self {
        Self::Status {
            code: 429,
            description: format!("Too Many Requests: retry after {retry_after}"),
            retry_after: Some(retry_after),
        }
    }

    /// 502 Bad Gateway, Telegram's usual transient failure.
    pub fn server_error() -> Self {
        Self::Status {
            code: 502,
            description: "Bad Gateway".to_owned(),
            retry_after: None,
        }
    }

    /// 403: the customer blocked the bot.
    pub fn forbidden_blocked() -> Self {
        Self::Status {
            code: 403,
            description: "Forbidden: bot was blocked by the user".to_owned(),
            retry_after: None,
        }
    }
}

/// A message the bot sent (sendMessage, sendPhoto, sendDocument), as the customer received it.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub chat_id: i64,
    pub message_id: i64,
    /// `text`, `photo` or `document`.
    pub kind: String,
    /// The text after parse-mode markup was applied.
    pub text: Option<String>,
    pub caption: Option<String>,
    pub reply_to_message_id: Option<i64>,
    /// Unix seconds.
    pub date: i64,
    /// The file uploaded with sendPhoto or sendDocument, as the customer received it.
    pub file: Option<SentFile>,
}

/// A file the bot uploaded (multipart), as the fake kept it.
#[derive(Debug, Clone, PartialEq)]
pub struct SentFile {
    /// The name of the uploaded part.
    pub name: String,
    /// The part's `Content-Type`.
    pub mime: String,
    pub size: usize,
    pub bytes: Vec<u8>,
}

/// The webhook a bot set with setWebhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    pub secret_token: Option<String>,
    pub max_connections: u32,
    pub allowed_updates: Option<Vec<String>>,
}

/// One update's webhook delivery history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub update_id: i64,
    /// POSTs made so far.
    pub attempts: u32,
    /// HTTP status of the last attempt; `None` when the connection failed.
    pub last_status: Option<u16>,
    /// Telegram's wording of the last failure, e.g. "Wrong response from the webhook: 500 Internal Server Error".
    pub last_error: Option<String>,
    /// A 2xx confirmed it and the update left the queue.
    pub delivered: bool,
}

/// Handle to a running fake. Clones share the server; it stops when the last handle drops or on
/// [`FakeTelegram::shutdown`].
#[derive(Clone)]
pub struct FakeTelegram {
    shared: Arc<Shared>,
    guard: Arc<StopGuard>,
}

/// The fake's world behind its one lock, with what every fake shares (see [`server::Shared`]).
type Shared = server::Shared<BTreeMap<String, Bot>, Routes>;

/// Ports Telegram delivers webhooks to (Bot API `setWebhook`).
pub const WEBHOOK_PORTS: [u16; 4] = [443, 80, 88, 8443];

/// Where the fake's "internet" leads: a public `https://host[:port]` origin to the loopback
/// address that answers for it, as a TLS-terminating proxy in front of Chatter would. The fake
/// checks a webhook URL as Telegram does (https, an allowed port, a host it can resolve) and
/// then delivers through this table.
#[derive(Default)]
pub struct Routes(std::sync::Mutex<BTreeMap<String, String>>);

impl Routes {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct Update {
    id: i64,
    kind: &'static str,
    payload: Value,
}

impl Update {
    fn to_json(&self) -> Value {
        let mut update = Map::new();
        update.insert("update_id".into(), json!(self.id));
        update.insert(self.kind.into(), self.payload.clone());
        Value::Object(update)
    }
}

struct Chat {
    json: Value,
    /// The last customer who wrote here (the User object), so the phone page can write as them.
    customer: Option<Value>,
    /// Every message of the chat by id; ids are one sequence for both sides.
    messages: BTreeMap<i64, Value>,
    next_message_id: i64,
    blocked: bool,
}

struct StoredFile {
    file_id: String,
    unique_id: String,
    path: String,
    bytes: Vec<u8>,
    mime: String,
}

struct Bot {
    id: i64,
    username: String,
    first_name: String,
    revoked: bool,
    next_update_id: i64,
    queue: VecDeque<Update>,
    notify: Arc<Notify>,
    /// Bumped by every getUpdates: a waiting poller whose number is stale got "terminated".
    poll_seq: u64,
    allowed_updates: Option<Vec<String>>,
    webhook: Option<WebhookConfig>,
    /// Bumped by every setWebhook/deleteWebhook: delivery tasks of an older webhook stop.
    webhook_seq: u64,
    in_flight: HashSet<i64>,
    last_error: Option<(i64, String)>,
    deliveries: BTreeMap<i64, Delivery>,
    chats: BTreeMap<i64, Chat>,
    sent: Vec<SentMessage>,
    failures: Vec<(String, Failure, usize)>,
    calls: Vec<String>,
    files: HashMap<String, Arc<StoredFile>>,
    paths: HashMap<String, Arc<StoredFile>>,
    next_file: u64,
}

impl Bot {
    fn user_json(&self) -> Value {
        json!({"id": self.id, "is_bot": true, "first_name": self.first_name, "username": self.username})
    }

    fn enqueue(&mut self, kind: &'static str, payload: Value) {
        let allowed = match &self.allowed_updates {
            Some(list) if !list.is_empty() => list.iter().any(|k| k == kind),
            _ => !matches!(
                kind,
                "chat_member" | "message_reaction" | "message_reaction_count"
            ),
        };
        if !allowed {
            return;
        }
        let id = self.next_update_id;
        self.next_update_id += 1;
        self.queue.push_back(Update { id, kind, payload });
        self.notify.notify_waiters();
    }

    fn store_file(
        &mut self,
        bytes: Vec<u8>,
        folder: &str,
        ext: &str,
        mime: &str,
    ) -> Arc<StoredFile> {
        self.next_file += 1;
        let file = Arc::new(StoredFile {
            file_id: format!(
                "BQACAgIAAxkBAAM{}{}",
                self.next_file,
                random_string(URL_SAFE, 24)
            ),
            unique_id: format!("AgAD{}", random_string(URL_SAFE, 10)),
            path: format!("{folder}/file_{}.{ext}", self.next_file),
            bytes,
            mime: mime.to_owned(),
        });
        self.files.insert(file.file_id.clone(), file.clone());
        self.paths.insert(file.path.clone(), file.clone());
        file
    }

    fn photo_sizes(&mut self, bytes: Vec<u8>) -> Value {
        // The fake does not resize: both sizes hold the same bytes, as a thumbnail and the full image.
        let small = self.store_file(bytes.clone(), "photos", "jpg", "image/jpeg");
        let full = self.store_file(bytes, "photos", "jpg", "image/jpeg");
        json!([
            {"file_id": small.file_id, "file_unique_id": small.unique_id, "file_size": small.bytes.len(), "width": 90, "height": 90},
            {"file_id": full.file_id, "file_unique_id": full.unique_id, "file_size": full.bytes.len(), "width": 1280, "height": 960},
        ])
    }

    fn document_json(file: &StoredFile, name: &str) -> Value {
        json!({"file_id": file.file_id, "file_unique_id": file.unique_id, "file_size": file.bytes.len(),
               "file_name": name, "mime_type": file.mime})
    }

    fn customer_message(&mut self, m: CustomerMessage) -> i64 {
        let user = user_json(
            m.user_id,
            &m.first_name,
            m.last_name.as_deref(),
            m.username.as_deref(),
        );
        let (chat_id, chat_json) = match &m.chat {
            Some(group) => (
                group.id,
                json!({"id": group.id, "type": "group", "title": group.title}),
            ),
            None => (m.user_id, private_chat_json(&user)),
        };
        let mut msg = Map::new();
        msg.insert("from".into(), user.clone());
        msg.insert("chat".into(), chat_json.clone());
        msg.insert("date".into(), json!(unix_secs()));
        // Telegram never sends an empty text or caption: a photo built from
        // `CustomerMessage::text(.., "")` carries neither.
        if let Some(text) = m.text.filter(|t| !t.is_empty()) {
            msg.insert("text".into(), json!(text));
        }
        if let Some(caption) = m.caption.filter(|c| !c.is_empty()) {
            msg.insert("caption".into(), json!(caption));
        }
        if let Some(bytes) = m.photo {
            msg.insert("photo".into(), self.photo_sizes(bytes));
        }
        if let Some((bytes, name, mime)) = m.document {
            let ext = name
                .rsplit_once('.')
                .map_or("bin", |(_, ext)| ext)
                .to_owned();
            let file = self.store_file(bytes, "documents", &ext, &mime);
            msg.insert("document".into(), Self::document_json(&file, &name));
        }
        if let Some(bytes) = m.voice {
            let duration = (bytes.len() / 4000).max(1);
            let file = self.store_file(bytes, "voice", "oga", "audio/ogg");
            msg.insert(
                "voice".into(),
                json!({"file_id": file.file_id, "file_unique_id": file.unique_id, "file_size": file.bytes.len(),
                       "duration": duration, "mime_type": "audio/ogg"}),
            );
        }
        if let Some((phone, first_name)) = m.contact {
            msg.insert(
                "contact".into(),
                json!({"phone_number": phone, "first_name": first_name, "user_id": m.user_id}),
            );
        }
        if let Some((latitude, longitude)) = m.location {
            msg.insert(
                "location".into(),
                json!({"latitude": latitude, "longitude": longitude}),
            );
        }
        let chat = self.chats.entry(chat_id).or_insert_with(|| Chat {
            json: chat_json.clone(),
            customer: None,
            messages: BTreeMap::new(),
            next_message_id: 1,
            blocked: false,
        });
        chat.json = chat_json;
        chat.customer = Some(user);
        let message_id = chat.next_message_id;
        chat.next_message_id += 1;
        msg.insert("message_id".into(), json!(message_id));
        if let Some(replied) = m.reply_to_message_id.and_then(|id| chat.messages.get(&id)) {
            msg.insert("reply_to_message".into(), without_reply(replied));
        }
        let msg = Value::Object(msg);
        chat.messages.insert(message_id, msg.clone());
        self.enqueue("message", msg);
        message_id
    }

    /// Records a message the bot sends into a chat it knows; returns the Message object.
    fn bot_message(
        &mut self,
        chat_id: i64,
        reply_to: Option<i64>,
        kind: &str,
        fields: Map<String, Value>,
    ) -> Value {
        let from = self.user_json();
        let Some(chat) = self.chats.get_mut(&chat_id) else {
            return Value::Null;
        };
        let message_id = chat.next_message_id;
        chat.next_message_id += 1;
        let date = unix_secs();
        let mut msg = fields;
        msg.insert("message_id".into(), json!(message_id));
        msg.insert("from".into(), from);
        msg.insert("chat".into(), chat.json.clone());
        msg.insert("date".into(), json!(date));
        if let Some(replied) = reply_to.and_then(|id| chat.messages.get(&id)) {
            msg.insert("reply_to_message".into(), without_reply(replied));
        }
        let msg = Value::Object(msg);
        chat.messages.insert(message_id, msg.clone());
        self.sent.push(SentMessage {
            chat_id,
            message_id,
            kind: kind.to_owned(),
            text: msg["text"].as_str().map(str::to_owned),
            caption: msg["caption"].as_str().map(str::to_owned),
            reply_to_message_id: msg["reply_to_message"]["message_id"].as_i64(),
            date,
            file: None,
        });
        msg
    }
}

impl FakeTelegram {
    /// Starts the fake on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<FakeTelegram> {
        let spec = server::Spec::new(BTreeMap::new(), "fake Telegram server stopped")
            .with_extra(Routes::default());
        let (shared, guard) = server::start(spec, |shared| {
            Router::new()
                .route("/phone", get(phone_index))
                .route(
                    "/phone/{token}/{chat_id}",
                    get(phone_chat).post(phone_write),
                )
                .fallback(api)
                .with_state(shared)
        })
        .await?;
        Ok(FakeTelegram { shared, guard })
    }

    /// Stops the server now (hanging requests and webhook deliveries end too).
    pub fn shutdown(&self) {
        self.guard.stop();
    }

    /// `http://127.0.0.1:PORT`, the fake's stand-in for `https://api.telegram.org`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Makes the public origin `https://host[:port]` lead to `local` (e.g. `http://127.0.0.1:PORT`):
    /// webhooks set on a URL under that origin are delivered there, the rest of the path kept.
    pub fn route(&self, public_origin: &str, local: &str) {
        let origin = origin_of(public_origin).unwrap_or_else(|| public_origin.to_owned());
        self.shared
            .extra
            .lock()
            .insert(origin, local.trim_end_matches('/').to_owned());
    }

    /// Registers a bot and returns its token `<bot_id>:<35 chars>`.
    pub fn create_bot(&self, username: &str, first_name: &str) -> String {
        let mut bots = self.shared.lock();
        let (id, token, first_update) = {
            let mut rng = rand::thread_rng();
            let id: i64 = rng.gen_range(1_000_000_000..8_000_000_000);
            let first_update: i64 = rng.gen_range(10_000_000..900_000_000);
            (
                id,
                format!("{id}:{}", random_string(URL_SAFE, 35)),
                first_update,
            )
        };
        bots.insert(
            token.clone(),
            Bot {
                id,
                username: username.to_owned(),
                first_name: first_name.to_owned(),
                revoked: false,
                next_update_id: first_update,
                queue: VecDeque::new(),
                notify: Arc::new(Notify::new()),
                poll_seq: 0,
                allowed_updates: None,
                webhook: None,
                webhook_seq: 0,
                in_flight: HashSet::new(),
                last_error: None,
                deliveries: BTreeMap::new(),
                chats: BTreeMap::new(),
                sent: Vec::new(),
                failures: Vec::new(),
                calls: Vec::new(),
                files: HashMap::new(),
                paths: HashMap::new(),
                next_file: 0,
            },
        );
        token
    }

    fn with_bot<T>(&self, token: &str, f: impl FnOnce(&mut Bot) -> T) -> T {
        let mut bots = self.shared.lock();
        let bot = bots
            .get_mut(token)
            .expect("the token was returned by create_bot on this fake");
        f(bot)
    }

    /// A customer writes to the bot: the message is queued as a `message` update. Returns its
    /// message_id. Panics on a token this fake did not create.
    pub fn customer_writes(&self, token: &str, m: CustomerMessage) -> i64 {
        self.with_bot(token, |bot| bot.customer_message(m))
    }

    /// Makes the chat of `m`'s customer (their private chat, or `m.chat`) known with message
    /// ids continuing after `last_message_id`, as if the earlier messages had been exchanged
    /// before this fake started; nothing is queued. `chatter demo` on a reused data directory
    /// needs it: the product already stored those ids, so restarting at 1 would look like
    /// replays.
    pub fn restore_chat(&self, token: &str, m: &CustomerMessage, last_message_id: i64) {
        self.with_bot(token, |bot| {
            let user = user_json(
                m.user_id,
                &m.first_name,
                m.last_name.as_deref(),
                m.username.as_deref(),
            );
            let (chat_id, chat_json) = match &m.chat {
                Some(group) => (
                    group.id,
                    json!({"id": group.id, "type": "group", "title": group.title}),
                ),
                None => (m.user_id, private_chat_json(&user)),
            };
            let chat = bot.chats.entry(chat_id).or_insert_with(|| Chat {
                json: chat_json,
                customer: Some(user),
                messages: BTreeMap::new(),
                next_message_id: 1,
                blocked: false,
            });
            chat.next_message_id = chat.next_message_id.max(last_message_id + 1);
        });
    }

    /// The customer edits an earlier message: its text (or caption) changes and an
    /// `edited_message` update is queued. Panics on an unknown chat or message.
    pub fn customer_edits(&self, token: &str, chat_id: i64, message_id: i64, text: &str) {
        self.with_bot(token, |bot| {
            let chat = bot
                .chats
                .get_mut(&chat_id)
                .expect("customer_edits: the customer wrote in this chat before");
            let msg = chat
                .messages
                .get_mut(&message_id)
                .expect("customer_edits: the customer sent this message");
            let field = if msg.get("text").is_some() {
                "text"
            } else {
                "caption"
            };
            msg[field] = json!(text);
            msg["edit_date"] = json!(unix_secs());
            let edited = msg.clone();
            bot.enqueue("edited_message", edited);
        });
    }

    /// The customer blocks (`true`) or restarts (`false`) the bot in their private chat: a
    /// `my_chat_member` update with new status `kicked` or `member`.
    pub fn customer_blocks(&self, token: &str, user_id: i64, blocked: bool) {
        self.with_bot(token, |bot| {
            let bot_user = bot.user_json();
            let chat = bot.chats.entry(user_id).or_insert_with(|| {
                let user = user_json(user_id, "Пользователь", None, None);
                Chat {
                    json: private_chat_json(&user),
                    customer: Some(user),
                    messages: BTreeMap::new(),
                    next_message_id: 1,
                    blocked: false,
                }
            });
            chat.blocked = blocked;
            let from = chat
                .customer
                .clone()
                .unwrap_or_else(|| user_json(user_id, "Пользователь", None, None));
            let kicked = json!({"status": "kicked", "user": bot_user, "until_date": 0});
            let member = json!({"status": "member", "user": bot_user});
            let (old, new) = if blocked {
                (member, kicked)
            } else {
                (kicked, member)
            };
            let payload = json!({"chat": chat.json, "from": from, "date": unix_secs(),
                                 "old_chat_member": old, "new_chat_member": new});
            bot.enqueue("my_chat_member", payload);
        });
    }

    /// Everything the bot sent, in order.
    pub fn sent(&self, token: &str) -> Vec<SentMessage> {
        self.with_bot(token, |bot| bot.sent.clone())
    }

    /// The next `count` calls of `method` (case-insensitive, `"*"` = any) fail with `f` before
    /// any normal handling.
    pub fn fail_next(&self, token: &str, method: &str, f: Failure, count: usize) {
        if count == 0 {
            return;
        }
        self.with_bot(token, |bot| {
            bot.failures.push((method.to_ascii_lowercase(), f, count));
        });
    }

    /// Revokes the token: every later call answers 401 Unauthorized.
    pub fn revoke(&self, token: &str) {
        self.with_bot(token, |bot| {
            bot.revoked = true;
            bot.notify.notify_waiters();
        });
    }

    /// The webhook currently set, if any.
    pub fn webhook(&self, token: &str) -> Option<WebhookConfig> {
        self.with_bot(token, |bot| bot.webhook.clone())
    }

    /// Updates not yet confirmed (by a getUpdates offset or a 2xx webhook answer).
    pub fn pending_updates(&self, token: &str) -> usize {
        self.with_bot(token, |bot| bot.queue.len())
    }

    /// The webhook delivery log, by update_id.
    pub fn deliveries(&self, token: &str) -> Vec<Delivery> {
        self.with_bot(token, |bot| bot.deliveries.values().cloned().collect())
    }

    /// Bot API methods called with this token, in order (canonical spelling), including calls
    /// that failed (injected failures, 401 after [`FakeTelegram::revoke`]).
    pub fn calls(&self, token: &str) -> Vec<String> {
        self.with_bot(token, |bot| bot.calls.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Bot API surface

struct ApiError {
    code: u16,
    description: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    fn bad_request(what: &str) -> Self {
        Self::new(400, format!("Bad Request: {what}"))
    }

    fn not_found() -> Self {
        Self::new(404, "Not Found")
    }

    fn unauthorized() -> Self {
        Self::new(401, "Unauthorized")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body =
            json!({"ok": false, "error_code": self.code, "description": self.description});
        if let Some(retry_after) = self.retry_after {
            body["parameters"] = json!({"retry_after": retry_after});
        }
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::BAD_REQUEST);
        (status, axum::Json(body)).into_response()
    }
}

type ApiResult = Result<Value, ApiError>;

enum Param {
    Text(String),
    File {
        bytes: Vec<u8>,
        name: String,
        mime: String,
    },
}

#[derive(Default)]
struct Params(HashMap<String, Param>);

impl Params {
    fn text(&self, key: &str) -> Option<&str> {
        match self.0.get(key) {
            Some(Param::Text(s)) => Some(s),
            _ => None,
        }
    }

    fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.text(key) {
            None | Some("") => Ok(None),
            Some(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(&format!("invalid {key} specified"))),
        }
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.text(key), Some("true" | "True" | "1"))
    }

    fn json(&self, key: &str) -> Option<Value> {
        let text = self.text(key)?;
        serde_json::from_str(text).ok()
    }

    fn string_list(&self, key: &str) -> Option<Vec<String>> {
        let list = self.json(key)?;
        Some(
            list.as_array()?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        )
    }

    fn insert_form(&mut self, bytes: &[u8]) {
        for (k, v) in url::form_urlencoded::parse(bytes) {
            self.0.insert(k.into_owned(), Param::Text(v.into_owned()));
        }
    }
}

async fn api(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/file/bot") {
        return download(&shared, rest).into_response();
    }
    let Some((token, method)) = path
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
    else {
        return ApiError::not_found().into_response();
    };
    if !well_formed_token(token) || method.is_empty() || method.contains('/') {
        return ApiError::not_found().into_response();
    }
    let token = token.to_owned();
    let method = METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .map_or_else(|| method.to_owned(), |m| (*m).to_owned());

    let failure = {
        let mut bots = shared.lock();
        let Some(bot) = bots.get_mut(&token) else {
            return ApiError::unauthorized().into_response();
        };
        bot.calls.push(method.clone());
        if bot.revoked {
            return ApiError::unauthorized().into_response();
        }
        let lower = method.to_ascii_lowercase();
        let hit = bot
            .failures
            .iter()
            .position(|(m, _, _)| m == "*" || *m == lower);
        hit.map(|i| {
            let failure = bot.failures[i].1.clone();
            bot.failures[i].2 -= 1;
            if bot.failures[i].2 == 0 {
                bot.failures.remove(i);
            }
            failure
        })
    };
    match failure {
        Some(Failure::Hang) => {
            shared.hang().await;
            return ApiError::new(502, "Bad Gateway").into_response();
        }
        Some(Failure::Status {
            code,
            description,
            retry_after,
        }) => {
            return ApiError {
                code,
                description,
                retry_after,
            }
            .into_response()
        }
        None => {}
    }

    let params = match read_params(request).await {
        Ok(params) => params,
        Err(e) => return e.into_response(),
    };
    let result = match method.as_str() {
        "getMe" => get_me(&shared, &token),
        "getUpdates" => get_updates(&shared, &token, &params).await,
        "setWebhook" => set_webhook(&shared, &token, &params),
        "deleteWebhook" => delete_webhook(&shared, &token, &params),
        "getWebhookInfo" => webhook_info(&shared, &token),
        "sendMessage" => send_message(&shared, &token, &params),
        "sendPhoto" => send_file(&shared, &token, &params, "photo").await,
        "sendDocument" => send_file(&shared, &token, &params, "document").await,
        "getFile" => get_file(&shared, &token, &params),
        "answerCallbackQuery" | "sendChatAction" => Ok(json!(true)),
        _ => Err(ApiError::not_found()),
    };
    match result {
        Ok(value) => axum::Json(json!({"ok": true, "result": value})).into_response(),
        Err(e) => e.into_response(),
    }
}

fn well_formed_token(token: &str) -> bool {
    token.split_once(':').is_some_and(|(id, secret)| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && !secret.is_empty()
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// Gathers parameters from the query string and a JSON, form or multipart body.
async fn read_params(request: Request) -> Result<Params, ApiError> {
    let mut params = Params::default();
    if let Some(query) = request.uri().query() {
        params.insert_form(query.as_bytes());
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|_| ApiError::new(413, "Request Entity Too Large"))?;
    if body.is_empty() {
        return Ok(params);
    }
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => {
            let value: Value = serde_json::from_slice(&body)
                .map_err(|_| ApiError::bad_request("can't parse JSON object"))?;
            let Value::Object(map) = value else {
                return Err(ApiError::bad_request("can't parse JSON object"));
            };
            for (k, v) in map {
                let text = match v {
                    Value::Null => continue,
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                params.0.insert(k, Param::Text(text));
            }
        }
        "multipart/form-data" => {
            let boundary = content_type
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("boundary="))
                .next()
                .map(|b| b.trim_matches('"').to_owned())
                .ok_or_else(|| ApiError::bad_request("can't parse multipart/form-data"))?;
            let parts = parse_multipart(&body, &boundary)
                .ok_or_else(|| ApiError::bad_request("can't parse multipart/form-data"))?;
            for (name, param) in parts {
                params.0.insert(name, param);
            }
        }
        _ => params.insert_form(&body),
    }
    Ok(params)
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<(String, Param)>> {
    let delimiter = format!("--{boundary}").into_bytes();
    let next_delimiter = [b"\r\n".as_slice(), &delimiter].concat();
    let mut parts = Vec::new();
    let mut pos = find(body, &delimiter, 0)? + delimiter.len();
    loop {
        let rest = body.get(pos..)?;
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        if rest.starts_with(b"\r\n") {
            pos += 2;
        }
        let end = find(body, &next_delimiter, pos)?;
        let part = &body[pos..end];
        let split = find(part, b"\r\n\r\n", 0)?;
        let head = std::str::from_utf8(&part[..split]).ok()?;
        let content = &part[split + 4..];
        let mut name = None;
        let mut file_name = None;
        let mut mime = "application/octet-stream".to_owned();
        for line in head.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                for attr in value.split(';').map(str::trim) {
                    if let Some(v) = attr.strip_prefix("name=") {
                        name = Some(v.trim_matches('"').to_owned());
                    } else if let Some(v) = attr.strip_prefix("filename=") {
                        file_name = Some(v.trim_matches('"').to_owned());
                    }
                }
            } else if key.trim().eq_ignore_ascii_case("content-type") {
                mime = value.trim().to_owned();
            }
        }
        if let Some(name) = name {
            let param = match file_name {
                Some(file_name) => Param::File {
                    bytes: content.to_vec(),
                    name: file_name,
                    mime,
                },
                None => Param::Text(String::from_utf8_lossy(content).into_owned()),
            };
            parts.push((name, param));
        }
        pos = end + next_delimiter.len();
    }
}

fn get_me(shared: &Shared, token: &str) -> ApiResult {
    let bots = shared.lock();
    let bot = bots.get(token).ok_or_else(ApiError::unauthorized)?;
    let mut me = bot.user_json();
    me["can_join_groups"] = json!(true);
    me["can_read_all_group_messages"] = json!(false);
    me["supports_inline_queries"] = json!(false);
    me["can_connect_to_business"] = json!(false);
    me["has_main_web_app"] = json!(false);
    Ok(me)
}

const WEBHOOK_CONFLICT: &str = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
const POLL_CONFLICT: &str =
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";

async fn get_updates(shared: &Shared, token: &str, params: &Params) -> ApiResult {
    let offset = params.int("offset")?;
    let limit = params.int("limit")?.unwrap_or(100).clamp(1, 100) as usize;
    let timeout = params.int("timeout")?.unwrap_or(0).max(0) as u64;
    let allowed = params.string_list("allowed_updates");
    let (seq, notify) = {
        let mut bots = shared.lock();
        let bot = bots.get_mut(token).ok_or_else(ApiError::unauthorized)?;
        if bot.webhook.is_some() {
            return Err(ApiError::new(409, WEBHOOK_CONFLICT));
        }
        if allowed.is_some() {
            bot.allowed_updates = allowed;
        }
        match offset {
            Some(offset) if offset < 0 => {
                let keep = usize::try_from(-offset).unwrap_or(usize::MAX);
                let drop = bot.queue.len().saturating_sub(keep);
                bot.queue.drain(..drop);
            }
            Some(offset) => {
                while bot.queue.front().is_some_and(|u| u.id < offset) {
                    bot.queue.pop_front();
                }
            }
            None => {}
        }
        bot.poll_seq += 1;
        // Wakes a poller already waiting, which then answers 409 "terminated by other getUpdates".
        bot.notify.notify_waiters();
        (bot.poll_seq, bot.notify.clone())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let bots = shared.lock();
            let bot = bots
                .get(token)
                .filter(|bot| !bot.revoked)
                .ok_or_else(ApiError::unauthorized)?;
            if bot.poll_seq != seq {
                return Err(ApiError::new(409, POLL_CONFLICT));
            }
            if bot.webhook.is_some() {
                return Err(ApiError::new(409, WEBHOOK_CONFLICT));
            }
            if !bot.queue.is_empty() || tokio::time::Instant::now() >= deadline {
                let updates: Vec<Value> =
                    bot.queue.iter().take(limit).map(Update::to_json).collect();
                return Ok(Value::Array(updates));
            }
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline) => {}
            () = shared.stopped() => return Ok(json!([])),
        }
    }
}

fn set_webhook(shared: &Arc<Shared>, token: &str, params: &Params) -> ApiResult {
    let url = params.text("url").unwrap_or("").trim().to_owned();
    if url.is_empty() {
        return delete_webhook(shared, token, params);
    }
    check_webhook_url(shared, &url)?;
    let secret_token = params.text("secret_token").filter(|s| !s.is_empty());
    if let Some(secret) = secret_token {
        let allowed = secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !allowed || secret.len() > 256 {
            return Err(ApiError::bad_request(
                "secret token contains unallowed characters",
            ));
        }
    }
    let max_connections = params.int("max_connections")?.unwrap_or(40).clamp(1, 100) as u32;
    let allowed_updates = params.string_list("allowed_updates");
    let seq = {
        let mut bots = shared.lock();
        let bot = bots.get_mut(token).ok_or_else(ApiError::unauthorized)?;
        if params.flag("drop_pending_updates") {
            bot.queue.clear();
        }
        if allowed_updates.is_some() {
            bot.allowed_updates = allowed_updates.clone();
        }
        bot.webhook = Some(WebhookConfig {
            url,
            secret_token: secret_token.map(str::to_owned),
            max_connections,
            allowed_updates: bot.allowed_updates.clone(),
        });
        bot.webhook_seq += 1;
        bot.in_flight.clear();
        bot.notify.notify_waiters();
        bot.webhook_seq
    };
    tokio::spawn(dispatch(
        shared.clone(),
        token.to_owned(),
        seq,
        max_connections as usize,
    ));
    Ok(json!(true))
}

fn delete_webhook(shared: &Shared, token: &str, params: &Params) -> ApiResult {
    let mut bots = shared.lock();
    let bot = bots.get_mut(token).ok_or_else(ApiError::unauthorized)?;
    if params.flag("drop_pending_updates") {
        bot.queue.clear();
    }
    bot.webhook = None;
    bot.webhook_seq += 1;
    bot.in_flight.clear();
    bot.notify.notify_waiters();
    Ok(json!(true))
}

fn webhook_info(shared: &Shared, token: &str) -> ApiResult {
    let bots = shared.lock();
    let bot = bots.get(token).ok_or_else(ApiError::unauthorized)?;
    let mut info = json!({
        "url": bot.webhook.as_ref().map_or("", |w| w.url.as_str()),
        "has_custom_certificate": false,
        "pending_update_count": bot.queue.len(),
    });
    if let Some((date, message)) = &bot.last_error {
        info["last_error_date"] = json!(date);
        info["last_error_message"] = json!(message);
    }
    if let Some(webhook) = &bot.webhook {
        info["max_connections"] = json!(webhook.max_connections);
        if let Some(allowed) = &webhook.allowed_updates {
            info["allowed_updates"] = json!(allowed);
        }
    }
    Ok(info)
}

/// Delivers a webhook's updates in update_id order, at most `max` at a time, until the webhook
/// is changed or removed.
async fn dispatch(shared: Arc<Shared>, token: String, seq: u64, max: usize) {
    let permits = Arc::new(Semaphore::new(max));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = shared.stopped() => return,
        };
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
            let current = bot.webhook_seq == seq && !bot.revoked;
            let Some(webhook) = bot.webhook.clone().filter(|_| current) else {
                return;
            };
            let found = bot
                .queue
                .iter()
                .find(|u| !bot.in_flight.contains(&u.id))
                .map(|u| (u.id, u.to_json()));
            if let Some((id, _)) = &found {
                bot.in_flight.insert(*id);
            }
            found.map(|(id, body)| (id, body, webhook))
        };
        match next {
            Some((id, body, webhook)) => {
                tokio::spawn(deliver(
                    shared.clone(),
                    token.clone(),
                    seq,
                    id,
                    body,
                    webhook,
                    permit,
                ));
            }
            None => {
                drop(permit);
                tokio::select! {
                    () = &mut notified => {}
                    () = shared.stopped() => return,
                }
            }
        }
    }
}

/// `scheme://host:port` of a URL, the port always written (the key of `Routes`).
fn origin_of(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    Some(format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str()?,
        u.port_or_known_default()?
    ))
}

/// What Telegram answers to a webhook URL it will not call (texts as the Bot API gives them).
fn check_webhook_url(shared: &Shared, url: &str) -> Result<(), ApiError> {
    let Ok(u) = reqwest::Url::parse(url) else {
        return Err(ApiError::bad_request(
            "bad webhook: invalid webhook URL specified",
        ));
    };
    if u.scheme() != "https" {
        return Err(ApiError::bad_request(
            "bad webhook: An HTTPS URL must be provided for webhook",
        ));
    }
    let port = u.port_or_known_default().unwrap_or(443);
    if !WEBHOOK_PORTS.contains(&port) {
        return Err(ApiError::bad_request(
            "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
        ));
    }
    let known = origin_of(url).is_some_and(|o| shared.extra.lock().contains_key(&o));
    if !known {
        return Err(ApiError::bad_request(
            "bad webhook: Failed to resolve host: Name or service not known",
        ));
    }
    Ok(())
}

/// The loopback URL a public webhook URL leads to (`Routes`); the URL itself if none.
fn routed(shared: &Shared, url: &str) -> String {
    let Some(origin) = origin_of(url) else {
        return url.to_owned();
    };
    let routes = shared.extra.lock();
    let Some(local) = routes.get(&origin) else {
        return url.to_owned();
    };
    let rest = reqwest::Url::parse(url)
        .map(|u| {
            let q = u.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!("{}{q}", u.path())
        })
        .unwrap_or_default();
    format!("{local}{rest}")
}

/// POSTs one update until a 2xx, retrying with backoff while the same webhook stays set.
async fn deliver(
    shared: Arc<Shared>,
    token: String,
    seq: u64,
    id: i64,
    body: Value,
    webhook: WebhookConfig,
    _permit: OwnedSemaphorePermit,
) {
    let mut backoff = Backoff::new(WEBHOOK_BACKOFF_START, WEBHOOK_BACKOFF_CAP);
    loop {
        let mut request = shared.http.post(routed(&shared, &webhook.url)).json(&body);
        if let Some(secret) = &webhook.secret_token {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        let (status, error) = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let error = (!status.is_success()).then(|| {
                    format!(
                        "Wrong response from the webhook: {} {}",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    )
                });
                (Some(status.as_u16()), error)
            }
            Err(e) if e.is_timeout() => (None, Some("Read timeout expired".to_owned())),
            Err(e) if e.is_connect() => (None, Some("Connection refused".to_owned())),
            Err(_) => (None, Some("Failed to deliver the update".to_owned())),
        };
        {
            let mut bots = shared.lock();
            let Some(bot) = bots.get_mut(&token) else {
                return;
            };
            let delivery = bot.deliveries.entry(id).or_insert(Delivery {
                update_id: id,
                attempts: 0,
                last_status: None,
                last_error: None,
                delivered: false,
            });
            delivery.attempts += 1;
            delivery.last_status = status;
            match error {
                None => {
                    delivery.delivered = true;
                    delivery.last_error = None;
                    if let Some(pos) = bot.queue.iter().position(|u| u.id == id) {
                        bot.queue.remove(pos);
                    }
                    if bot.webhook_seq == seq {
                        bot.in_flight.remove(&id);
                    }
                    return;
                }
                Some(message) => {
                    delivery.last_error = Some(message.clone());
                    bot.last_error = Some((unix_secs(), message));
                }
            }
            if bot.webhook_seq != seq || bot.revoked {
                return;
            }
        }
        if !shared.sleep(backoff.step()).await {
            return;
        }
        let still_set = shared
            .lock()
            .get(&token)
            .is_some_and(|bot| bot.webhook_seq == seq);
        if !still_set {
            return;
        }
    }
}

fn chat_id_param(params: &Params) -> Result<i64, ApiError> {
    match params.text("chat_id") {
        None | Some("") => Err(ApiError::bad_request("chat_id is empty")),
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| ApiError::bad_request("chat not found")),
    }
}

/// The message to reply to, from `reply_parameters` (object or JSON string) or the legacy
/// `reply_to_message_id`; checked against the chat's messages.
fn reply_target(bot: &Bot, chat_id: i64, params: &Params) -> Result<Option<i64>, ApiError> {
    let (id, allow_missing) = match params.json("reply_parameters") {
        Some(reply) => (
            reply["message_id"].as_i64(),
            reply["allow_sending_without_reply"]
                .as_bool()
                .unwrap_or(false),
        ),
        None => (
            params.int("reply_to_message_id")?,
            params.flag("allow_sending_without_reply"),
        ),
    };
    let Some(id) = id else {
        return Ok(None);
    };
    let exists = bot
        .chats
        .get(&chat_id)
        .is_some_and(|chat| chat.messages.contains_key(&id));
    match (exists, allow_missing) {
        (true, _) => Ok(Some(id)),
        (false, true) => Ok(None),
        (false, false) => Err(ApiError::bad_request("message to be replied not found")),
    }
}

fn check_chat(bot: &Bot, chat_id: i64) -> Result<(), ApiError> {
    match bot.chats.get(&chat_id) {
        None => Err(ApiError::bad_request("chat not found")),
        Some(chat) if chat.blocked => {
            Err(ApiError::new(403, "Forbidden: bot was blocked by the user"))
        }
        Some(_) => Ok(()),
    }
}

/// Applies `parse_mode` the way a reader sees the result: HTML tags stripped and entities
/// decoded; MarkdownV2 escapes removed, with Telegram's error for reserved characters left bare.
fn apply_parse_mode(text: &str, mode: Option<&str>) -> Result<String, ApiError> {
    match mode.map(str::to_ascii_lowercase).as_deref() {
        Some("html") => {
            let mut out = String::with_capacity(text.len());
            let mut in_tag = false;
            for c in text.chars() {
                match c {
                    '<' if !in_tag => in_tag = true,
                    '>' if in_tag => in_tag = false,
                    _ if !in_tag => out.push(c),
                    _ => {}
                }
            }
            if in_tag {
                return Err(ApiError::bad_request(
                    "can't parse entities: Unclosed start tag",
                ));
            }
            Ok(out
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&"))
        }
        Some("markdownv2") => {
            let mut out = String::with_capacity(text.len());
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '#' | '+' | '-' | '=' | '{' | '}' | '.' | '!' => {
                        return Err(ApiError::bad_request(&format!(
                            "can't parse entities: Character '{c}' is reserved and must be escaped with the preceding '\\'"
                        )))
                    }
                    _ => out.push(c),
                }
            }
            Ok(out)
        }
        _ => Ok(text.to_owned()),
    }
}

fn send_message(shared: &Shared, token: &str, params: &Params) -> ApiResult {
    let chat_id = chat_id_param(params)?;
    let raw = params.text("text").unwrap_or("");
    let text = apply_parse_mode(raw, params.text("parse_mode"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("message text is empty"));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(ApiError::bad_request("message is too long"));
    }
    let mut bots = shared.lock();
    let bot = bots.get_mut(token).ok_or_else(ApiError::unauthorized)?;
    check_chat(bot, chat_id)?;
    let reply_to = reply_target(bot, chat_id, params)?;
    let mut fields = Map::new();
    fields.insert("text".into(), json!(text));
    Ok(bot.bot_message(chat_id, reply_to, "text", fields))
}

enum Input {
    Upload {
        bytes: Vec<u8>,
        name: String,
        mime: String,
    },
    Existing(String),
}

async fn send_file(shared: &Shared, token: &str, params: &Params, field: &str) -> ApiResult {
    let chat_id = chat_id_param(params)?;
    let input = match params.0.get(field) {
        None => {
            return Err(ApiError::bad_request(&format!(
                "there is no {field} in the request"
            )))
        }
        Some(Param::File { bytes, name, mime }) => Input::Upload {
            bytes: bytes.clone(),
            name: name.clone(),
            mime: mime.clone(),
        },
        Some(Param::Text(value)) => {
            if let Some(part) = value.strip_prefix("attach://") {
                match params.0.get(part) {
                    Some(Param::File { bytes, name, mime }) => Input::Upload {
                        bytes: bytes.clone(),
                        name: name.clone(),
                        mime: mime.clone(),
                    },
                    _ => {
                        return Err(ApiError::bad_request(&format!(
                            "invalid file attachment {part}"
                        )))
                    }
                }
            } else if value.starts_with("http://") || value.starts_with("https://") {
                fetch_url(shared, value).await?
            } else {
                Input::Existing(value.clone())
            }
        }
    };
    let caption = match params.text("caption") {
        Some(c) => Some(apply_parse_mode(c, params.text("parse_mode"))?),
        None => None,
    };
    if caption
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CAPTION)
    {
        return Err(ApiError::bad_request("message caption is too long"));
    }
    let mut bots = shared.lock();
    let bot = bots.get_mut(token).ok_or_else(ApiError::unauthorized)?;
    check_chat(bot, chat_id)?;
    let reply_to = reply_target(bot, chat_id, params)?;
    let (bytes, name, mime) = match input {
        Input::Upload { bytes, name, mime } => (bytes, name, mime),
        Input::Existing(file_id) => {
            let file = bot
                .files
                .get(&file_id)
                .ok_or_else(|| ApiError::bad_request("wrong file identifier/HTTP URL specified"))?;
            let name = file.path.rsplit('/').next().unwrap_or("file").to_owned();
            (file.bytes.clone(), name, file.mime.clone())
        }
    };
    // Bot API §1.7: an uploaded photo up to 10 MB, any other file up to 50 MB.
    if field == "photo" && bytes.len() > 10 * 1024 * 1024 {
        return Err(ApiError::bad_request("file is too big"));
    }
    if bytes.len() > 50 * 1024 * 1024 {
        return Err(ApiError::new(413, "Request Entity Too Large"));
    }
    let kept = SentFile {
        name: name.clone(),
        mime: mime.clone(),
        size: bytes.len(),
        bytes: bytes.clone(),
    };
    let mut fields = Map::new();
    if field == "photo" {
        fields.insert("photo".into(), bot.photo_sizes(bytes));
    } else {
        let ext = name.rsplit_once('.').map_or("bin", |(_, e)| e).to_owned();
        let file = bot.store_file(bytes, "documents", &ext, &mime);
        fields.insert("document".into(), Bot::document_json(&file, &name));
    }
    if let Some(caption) = caption.filter(|c| !c.is_empty()) {
        fields.insert("caption".into(), json!(caption));
    }
    let msg = bot.bot_message(chat_id, reply_to, field, fields);
    if let Some(last) = bot.sent.last_mut() {
        last.file = Some(kept);
    }
    Ok(msg)
}

async fn fetch_url(shared: &Shared, url: &str) -> Result<Input, ApiError> {
    let failed = || ApiError::bad_request("failed to get HTTP URL content");
    let response = shared.http.get(url).send().await.map_err(|_| failed())?;
    if !response.status().is_success() {
        return Err(failed());
    }
    let mime = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let name = url
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("file")
        .to_owned();
    let bytes = response.bytes().await.map_err(|_| failed())?.to_vec();
    Ok(Input::Upload { bytes, name, mime })
}

fn get_file(shared: &Shared, token: &str, params: &Params) -> ApiResult {
    let file_id = params
        .text("file_id")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::bad_request("file_id is empty"))?;
    let bots = shared.lock();
    let bot = bots.get(token).ok_or_else(ApiError::unauthorized)?;
    let file = bot
        .files
        .get(file_id)
        .ok_or_else(|| ApiError::bad_request("invalid file_id"))?;
    Ok(
        json!({"file_id": file.file_id, "file_unique_id": file.unique_id,
              "file_size": file.bytes.len(), "file_path": file.path}),
    )
}

/// `GET /file/bot{token}/{file_path}`.
fn download(shared: &Shared, rest: &str) -> Response {
    let Some((token, path)) = rest.split_once('/') else {
        return ApiError::not_found().into_response();
    };
    let bots = shared.lock();
    let Some(file) = bots
        .get(token)
        .filter(|bot| !bot.revoked)
        .and_then(|bot| bot.paths.get(path))
    else {
        return ApiError::not_found().into_response();
    };
    (
        [(header::CONTENT_TYPE, file.mime.clone())],
        Body::from(file.bytes.clone()),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// The customer's phone: a tiny HTML view of every chat, for the demo.

async fn phone_index(State(shared): State<Arc<Shared>>) -> Html<String> {
    let bots = shared.lock();
    let mut html = page_head("Телефон клиента", false);
    html.push_str("<h1>Телефон клиента</h1>");
    if bots.is_empty() {
        html.push_str("<p>Ботов пока нет.</p>");
    }
    for (token, bot) in bots.iter() {
        let _ = write!(
            html,
            "<h2>{} (@{})</h2><ul>",
            escape_html(&bot.first_name),
            escape_html(&bot.username)
        );
        if bot.chats.is_empty() {
            html.push_str("<li>Чатов пока нет.</li>");
        }
        for (id, chat) in &bot.chats {
            let _ = write!(
                html,
                "<li><a href=\"/phone/{}/{id}\">{}</a> — сообщений: {}</li>",
                escape_html(token),
                escape_html(&chat_title(chat)),
                chat.messages.len()
            );
        }
        html.push_str("</ul>");
    }
    html.push_str("</body></html>");
    Html(html)
}

async fn phone_chat(
    State(shared): State<Arc<Shared>>,
    Path((token, chat_id)): Path<(String, i64)>,
) -> Response {
    let bots = shared.lock();
    let Some(chat) = bots.get(&token).and_then(|bot| bot.chats.get(&chat_id)) else {
        return (
            StatusCode::NOT_FOUND,
            Html("<p>Чат не найден.</p>".to_owned()),
        )
            .into_response();
    };
    let mut html = page_head(&chat_title(chat), true);
    let _ = write!(
        html,
        "<p><a href=\"/phone\">← Все чаты</a></p><h1>{}</h1>",
        escape_html(&chat_title(chat))
    );
    if chat.blocked {
        html.push_str("<p><em>Клиент заблокировал бота.</em></p>");
    }
    html.push_str("<ul class=\"messages\">");
    for msg in chat.messages.values() {
        let from_bot = msg["from"]["is_bot"].as_bool().unwrap_or(false);
        let who = if from_bot {
            "Бот".to_owned()
        } else {
            msg["from"]["first_name"]
                .as_str()
                .unwrap_or("Клиент")
                .to_owned()
        };
        let _ = write!(
            html,
            "<li class=\"{}\"><b>{}</b> <small>{}</small>: {}</li>",
            if from_bot { "bot" } else { "customer" },
            escape_html(&who),
            clock(msg["date"].as_i64().unwrap_or(0)),
            escape_html(&describe(msg))
        );
    }
    html.push_str("</ul>");
    if chat.customer.is_some() {
        let _ = write!(
            html,
            "<form method=\"post\" action=\"/phone/{}/{chat_id}\"><label>Сообщение <input name=\"text\" autofocus></label> <button type=\"submit\">Отправить</button></form>",
            escape_html(&token)
        );
    }
    html.push_str("</body></html>");
    Html(html).into_response()
}

async fn phone_write(
    State(shared): State<Arc<Shared>>,
    Path((token, chat_id)): Path<(String, i64)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let text = form.get("text").map(|t| t.trim()).unwrap_or("");
    let mut bots = shared.lock();
    let Some(bot) = bots.get_mut(&token) else {
        return (
            StatusCode::NOT_FOUND,
            Html("<p>Бот не найден.</p>".to_owned()),
        )
            .into_response();
    };
    let Some(chat) = bot.chats.get(&chat_id) else {
        return (
            StatusCode::NOT_FOUND,
            Html("<p>Чат не найден.</p>".to_owned()),
        )
            .into_response();
    };
    let Some(customer) = chat.customer.clone() else {
        return (
            StatusCode::NOT_FOUND,
            Html("<p>Клиент не найден.</p>".to_owned()),
        )
            .into_response();
    };
    if !text.is_empty() {
        let group = (chat.json["type"] == "group").then(|| GroupChat {
            id: chat_id,
            title: chat.json["title"].as_str().unwrap_or("").to_owned(),
        });
        let text_of = |key: &str| customer[key].as_str().map(str::to_owned);
        bot.customer_message(CustomerMessage {
            user_id: customer["id"].as_i64().unwrap_or(chat_id),
            first_name: text_of("first_name").unwrap_or_default(),
            last_name: text_of("last_name"),
            username: text_of("username"),
            chat: group,
            text: Some(text.to_owned()),
            ..CustomerMessage::default()
        });
    }
    Redirect::to(&format!("/phone/{token}/{chat_id}")).into_response()
}

fn page_head(title: &str, refresh: bool) -> String {
    format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{}\
         <title>{}</title><style>body{{font-family:sans-serif;max-width:40em;margin:1em auto;padding:0 1em}}\
         .messages{{list-style:none;padding:0}}.messages li{{margin:.4em 0;padding:.4em .6em;border-radius:.5em}}\
         .customer{{background:#eef}}.bot{{background:#efe;margin-left:3em}}</style></head><body>",
        if refresh {
            "<meta http-equiv=\"refresh\" content=\"2\">"
        } else {
            ""
        },
        escape_html(title)
    )
}

fn chat_title(chat: &Chat) -> String {
    if let Some(title) = chat.json["title"].as_str() {
        return title.to_owned();
    }
    let first = chat.json["first_name"].as_str().unwrap_or("");
    match chat.json["last_name"].as_str() {
        Some(last) => format!("{first} {last}"),
        None => first.to_owned(),
    }
}

/// One line for the phone page: the text, or what kind of message it is.
fn describe(msg: &Value) -> String {
    let mut parts = Vec::new();
    if msg.get("photo").is_some() {
        parts.push("[фото]".to_owned());
    }
    if let Some(name) = msg["document"]["file_name"].as_str() {
        parts.push(format!("[файл {name}]"));
    }
    if msg.get("voice").is_some() {
        parts.push("[голосовое сообщение]".to_owned());
    }
    if let Some(phone) = msg["contact"]["phone_number"].as_str() {
        parts.push(format!("[контакт {phone}]"));
    }
    if msg.get("location").is_some() {
        parts.push("[место на карте]".to_owned());
    }
    for key in ["text", "caption"] {
        if let Some(text) = msg[key].as_str() {
            parts.push(text.to_owned());
        }
    }
    if msg.get("edit_date").is_some() {
        parts.push("(изменено)".to_owned());
    }
    parts.join(" ")
}

fn clock(unix: i64) -> String {
    let day = unix.rem_euclid(86_400);
    format!("{:02}:{:02} UTC", day / 3600, day % 3600 / 60)
}

// ---------------------------------------------------------------------------------------------

fn user_json(id: i64, first_name: &str, last_name: Option<&str>, username: Option<&str>) -> Value {
    let mut user =
        json!({"id": id, "is_bot": false, "first_name": first_name, "language_code": "ru"});
    if let Some(last) = last_name {
        user["last_name"] = json!(last);
    }
    if let Some(username) = username {
        user["username"] = json!(username);
    }
    user
}

fn private_chat_json(user: &Value) -> Value {
    let mut chat = json!({"id": user["id"], "type": "private", "first_name": user["first_name"]});
    for key in ["last_name", "username"] {
        if let Some(v) = user.get(key) {
            chat[key] = v.clone();
        }
    }
    chat
}

/// A message as embedded in `reply_to_message`: Telegram does not nest replies further.
fn without_reply(msg: &Value) -> Value {
    let mut msg = msg.clone();
    if let Some(map) = msg.as_object_mut() {
        map.remove("reply_to_message");
    }
    msg
}
