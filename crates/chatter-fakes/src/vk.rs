//! Fake VK API for community bots: a stateful HTTP server on loopback that speaks
//! `docs/providers/channels.md` §2 — method calls at `/method/<name>`, a Bots Long Poll server
//! with `ts`/`failed` semantics, Callback API servers that get confirmed and receive events
//! (retried until they answer `ok`), `messages.send` deduplicated by `random_id` and carrying
//! uploaded photos and documents (`upload`), and photo and document URLs that serve bytes. A control API lets tests act as customers, expire long-poll
//! sessions, revoke tokens and inject failures.

mod upload;

pub use upload::VkSentFile;

use crate::server::{self, random_hex, random_string, unix_secs, Backoff, StopGuard, URL_SAFE};
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const API_VERSION: &str = "5.199";
const MAX_BODY: usize = 16 * 1024 * 1024;
/// `messages.send` text limit as VK documents it (§2.4).
const MAX_TEXT: usize = 9000;
const CHAT_PEER_OFFSET: i64 = 2_000_000_000;
/// VK keeps up to 10 callback servers per community (§2.2).
const MAX_CALLBACK_SERVERS: usize = 10;
/// Long-poll events kept for polls that fall behind; older ones are "lost" (`failed: 1`).
const HISTORY_LIMIT: usize = 1000;
const MAX_WAIT_SECS: u64 = 90;
const CALLBACK_BACKOFF_START: Duration = Duration::from_millis(50);
const CALLBACK_BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Event types a community can subscribe to; long poll has them all on until
/// `groups.setLongPollSettings` says otherwise.
const EVENT_TYPES: &[&str] = &[
    "message_new",
    "message_reply",
    "message_edit",
    "message_allow",
    "message_deny",
    "message_typing_state",
    "message_event",
];

/// A community and its first token, from [`FakeVk::create_group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VkGroup {
    pub id: i64,
    pub token: String,
}

/// A message a simulated customer writes to the community. Build with [`VkCustomerMessage::text`]
/// and struct update syntax for media and group chats.
#[derive(Debug, Clone, Default)]
pub struct VkCustomerMessage {
    pub user_id: i64,
    /// `None`: the private dialog (peer = user id). `Some(n)`: group conversation `n`
    /// (peer `2000000000 + n`), which the community is a member of from then on.
    pub chat: Option<i64>,
    pub text: String,
    /// JPEG bytes: a `photo` attachment with three sizes, all served by the fake.
    pub photo: Option<Vec<u8>>,
    /// Bytes and title (with extension, e.g. `invoice.pdf`): a `doc` attachment.
    pub doc: Option<(Vec<u8>, String)>,
    /// `conversation_message_id` of a message in the same peer this one replies to.
    pub reply_to: Option<i64>,
}

impl VkCustomerMessage {
    /// A plain text in the customer's private dialog with the community.
    pub fn text(user_id: i64, text: &str) -> Self {
        Self {
            user_id,
            text: text.to_owned(),
            ..Self::default()
        }
    }
}

/// What an injected failure does to a call.
#[derive(Debug, Clone)]
pub enum VkFailure {
    /// Answer HTTP 200 with `{"error":{"error_code":code,"error_msg":message,..}}`.
    Error { code: i64, message: String },
    /// Answer with this HTTP status and an HTML body (a proxy or VK's front failing).
    Http(u16),
    /// Say nothing for this long (the client's timeout should fire first), then answer normally.
    Hang(Duration),
}

impl VkFailure {
    /// Error 6, "Too many requests per second".
    pub fn too_many_requests() -> Self {
        Self::error(6, "Too many requests per second")
    }

    /// Error 10, "Internal server error".
    pub fn internal() -> Self {
        Self::error(10, "Internal server error")
    }

    /// Any VK error code with its message.
    pub fn error(code: i64, message: &str) -> Self {
        Self::Error {
            code,
            message: message.to_owned(),
        }
    }
}

/// A message the community sent with `messages.send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VkSentMessage {
    pub peer_id: i64,
    pub message_id: i64,
    pub conversation_message_id: i64,
    pub text: String,
    pub random_id: i64,
    /// `conversation_message_id` of the message it replies to (by `reply_to` or `forward`).
    pub reply_to: Option<i64>,
    /// Unix seconds.
    pub date: i64,
    /// The uploaded photos and documents it carried (`attachment`), in order.
    pub attachments: Vec<VkSentFile>,
}

/// A callback server as `groups.addCallbackServer` / `groups.setCallbackSettings` left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VkCallbackServer {
    pub id: i64,
    pub url: String,
    pub title: String,
    pub secret_key: Option<String>,
    pub api_version: Option<String>,
    /// Event types switched on; empty until `groups.setCallbackSettings`.
    pub event_types: Vec<String>,
    /// It answered a `confirmation` request with the community's code; only then events flow.
    pub confirmed: bool,
}

/// One event's delivery to one callback server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VkDelivery {
    pub server_id: i64,
    pub event_id: String,
    pub event_type: String,
    pub attempts: u32,
    /// HTTP status of the last attempt; `None` when the connection failed.
    pub last_status: Option<u16>,
    /// The server answered 200 with `ok`.
    pub delivered: bool,
}

/// Handle to a running fake. Clones share the server; it stops when the last handle drops or on
/// [`FakeVk::shutdown`].
#[derive(Clone)]
pub struct FakeVk {
    shared: Arc<Shared>,
    guard: Arc<StopGuard>,
}

/// The fake's world behind its one lock, with what every fake shares (see [`server::Shared`]).
type Shared = server::Shared<World>;

#[derive(Default)]
struct World {
    /// token → (group id, revoked)
    tokens: HashMap<String, (i64, bool)>,
    groups: BTreeMap<i64, Group>,
    /// Path under `/files/` → (bytes, MIME type).
    files: HashMap<String, (Vec<u8>, String)>,
    next_file: u64,
    /// Upload URLs handed out for messages, by their id.
    uploads: HashMap<String, upload::Slot>,
    /// Photos and documents saved from uploads, by attachment name (`photo-1_2`).
    saved: HashMap<String, upload::Saved>,
    /// VK users' names (`set_user_name`), by id; any other id is a deleted account.
    users: HashMap<i64, (String, String)>,
}

struct Peer {
    next_cmid: i64,
    messages: BTreeMap<i64, Value>,
    /// The community may write here: the customer wrote or allowed messages (private dialogs).
    allowed: bool,
}

struct CallbackState {
    info: VkCallbackServer,
    queue: VecDeque<Value>,
    notify: Arc<Notify>,
}

struct Group {
    id: i64,
    name: String,
    screen_name: String,
    lp_enabled: bool,
    lp_events: Vec<String>,
    lp_key: String,
    /// Keys no longer valid → the `failed` code a poll with them gets (2 or 3).
    retired_keys: HashMap<String, i64>,
    /// Number of the last event; `ts` as VK hands it out.
    ts: u64,
    /// Events numbered above this one were kept; a poll from below gets `failed: 1`.
    history_floor: u64,
    history: VecDeque<(u64, Value)>,
    lp_notify: Arc<Notify>,
    confirmation_code: String,
    servers: Vec<CallbackState>,
    next_server_id: i64,
    deliveries: Vec<VkDelivery>,
    peers: BTreeMap<i64, Peer>,
    /// Community-local message id → (peer, cmid).
    message_ids: HashMap<i64, (i64, i64)>,
    next_message_id: i64,
    random_ids: HashMap<(i64, i64), i64>,
    sent: Vec<VkSentMessage>,
    failures: Vec<(String, VkFailure, usize)>,
    /// Methods whose next answers are lost after the call took effect, with how many.
    lose_answers: Vec<(String, usize)>,
    calls: Vec<String>,
}

impl Group {
    fn new(id: i64, name: &str, screen_name: &str) -> Self {
        let ts = rand::thread_rng().gen_range(1000..100_000);
        Group {
            id,
            name: name.to_owned(),
            screen_name: screen_name.to_owned(),
            lp_enabled: true,
            lp_events: EVENT_TYPES.iter().map(|s| (*s).to_owned()).collect(),
            lp_key: random_hex(40),
            retired_keys: HashMap::new(),
            ts,
            history_floor: ts,
            history: VecDeque::new(),
            lp_notify: Arc::new(Notify::new()),
            confirmation_code: random_hex(8),
            servers: Vec::new(),
            next_server_id: 1,
            deliveries: Vec::new(),
            peers: BTreeMap::new(),
            message_ids: HashMap::new(),
            next_message_id: 1,
            random_ids: HashMap::new(),
            sent: Vec::new(),
            failures: Vec::new(),
            lose_answers: Vec::new(),
            calls: Vec::new(),
        }
    }

    /// Publishes an event to long poll and to every callback server subscribed to its type.
    fn emit(&mut self, kind: &str, object: Value) {
        let event = json!({"type": kind, "event_id": random_hex(40), "v": API_VERSION,
                           "object": object, "group_id": self.id});
        if self.lp_enabled && self.lp_events.iter().any(|t| t == kind) {
            self.ts += 1;
            self.history.push_back((self.ts, event.clone()));
            while self.history.len() > HISTORY_LIMIT {
                if let Some((n, _)) = self.history.pop_front() {
                    self.history_floor = n;
                }
            }
            self.lp_notify.notify_waiters();
        }
        for server in &mut self.servers {
            if server.info.event_types.iter().any(|t| t == kind) {
                let mut event = event.clone();
                if let Some(secret) = &server.info.secret_key {
                    event["secret"] = json!(secret);
                }
                server.queue.push_back(event);
                server.notify.notify_waiters();
            }
        }
    }

    fn peer(&mut self, peer_id: i64) -> &mut Peer {
        self.peers.entry(peer_id).or_insert_with(|| Peer {
            next_cmid: 1,
            messages: BTreeMap::new(),
            allowed: false,
        })
    }

    fn customer_message(&mut self, m: VkCustomerMessage, files: &mut FileStore<'_>) -> i64 {
        let peer_id = m.chat.map_or(m.user_id, |n| CHAT_PEER_OFFSET + n);
        let mut attachments = Vec::new();
        if let Some(bytes) = m.photo {
            let photo_id = files.next_id();
            let sizes: Vec<Value> = [("s", 75, 56), ("x", 604, 453), ("z", 1280, 960)]
                .into_iter()
                .map(|(kind, width, height)| {
                    let url = files.store(
                        format!("photo{}_{photo_id}_{kind}.jpg", m.user_id),
                        bytes.clone(),
                        "image/jpeg",
                    );
                    json!({"type": kind, "url": url, "width": width, "height": height})
                })
                .collect();
            attachments.push(
                json!({"type": "photo", "photo": {"id": photo_id, "owner_id": m.user_id,
                "access_key": random_hex(18), "date": unix_secs(), "sizes": sizes}}),
            );
        }
        if let Some((bytes, title)) = m.doc {
            let doc_id = files.next_id();
            let ext = title.rsplit_once('.').map_or("", |(_, e)| e).to_owned();
            let size = bytes.len();
            let url = files.store(format!("doc{}_{doc_id}", m.user_id), bytes, mime_for(&ext));
            let url = format!("{url}?hash={}&dl={}", random_hex(18), random_hex(10));
            attachments.push(
                json!({"type": "doc", "doc": {"id": doc_id, "owner_id": m.user_id,
                "title": title, "size": size, "ext": ext, "url": url}}),
            );
        }
        let id = if m.chat.is_some() {
            0
        } else {
            let id = self.next_message_id;
            self.next_message_id += 1;
            id
        };
        let peer = self.peer(peer_id);
        if m.chat.is_none() {
            peer.allowed = true;
        }
        let cmid = peer.next_cmid;
        peer.next_cmid += 1;
        let mut msg = json!({"date": unix_secs(), "from_id": m.user_id, "id": id, "out": 0,
            "peer_id": peer_id, "text": m.text, "conversation_message_id": cmid,
            "attachments": attachments, "fwd_messages": [], "important": false, "is_hidden": false});
        if let Some(replied) = m.reply_to.and_then(|c| peer.messages.get(&c)) {
            msg["reply_message"] = replied.clone();
        }
        peer.messages.insert(cmid, msg.clone());
        if id != 0 {
            self.message_ids.insert(id, (peer_id, cmid));
        }
        let client_info = json!({"button_actions": ["text", "vkpay", "open_app", "location",
            "open_link", "callback"], "keyboard": true, "inline_keyboard": true,
            "carousel": true, "lang_id": 0});
        self.emit(
            "message_new",
            json!({"message": msg, "client_info": client_info}),
        );
        cmid
    }
}

/// Files of the whole fake, served at `/files/<name>`.
struct FileStore<'a> {
    base_url: &'a str,
    files: &'a mut HashMap<String, (Vec<u8>, String)>,
    next: &'a mut u64,
}

impl FileStore<'_> {
    fn next_id(&mut self) -> u64 {
        *self.next += 1;
        456_239_000 + *self.next
    }

    fn store(&mut self, name: String, bytes: Vec<u8>, mime: &str) -> String {
        let url = format!("{}/files/{name}", self.base_url);
        self.files.insert(name, (bytes, mime.to_owned()));
        url
    }
}

impl FakeVk {
    /// Starts the fake on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<FakeVk> {
        let spec = server::Spec::new(World::default(), "fake VK server stopped");
        let (shared, guard) = server::start(spec, |shared| {
            Router::new().fallback(route).with_state(shared)
        })
        .await?;
        Ok(FakeVk { shared, guard })
    }

    /// Stops the server now (hanging requests, polls and callback deliveries end too).
    pub fn shutdown(&self) {
        self.guard.stop();
    }

    /// `http://127.0.0.1:PORT`, the fake's stand-in for `https://api.vk.com`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Registers a community with Long Poll enabled and one token (`vk1.a.` + 80 chars).
    pub fn create_group(&self, name: &str, screen_name: &str) -> VkGroup {
        let mut world = self.shared.lock();
        let id = loop {
            let id = rand::thread_rng().gen_range(100_000_000..240_000_000);
            if !world.groups.contains_key(&id) {
                break id;
            }
        };
        world.groups.insert(id, Group::new(id, name, screen_name));
        let token = new_token();
        world.tokens.insert(token.clone(), (id, false));
        VkGroup { id, token }
    }

    /// Another token of the same community.
    pub fn add_token(&self, group_id: i64) -> String {
        let mut world = self.shared.lock();
        assert!(
            world.groups.contains_key(&group_id),
            "add_token: unknown group"
        );
        let token = new_token();
        world.tokens.insert(token.clone(), (group_id, false));
        token
    }

    /// Revokes a token: every later call with it answers error 5.
    pub fn revoke(&self, token: &str) {
        let mut world = self.shared.lock();
        let entry = world
            .tokens
            .get_mut(token)
            .expect("revoke: the token was made by this fake");
        entry.1 = true;
    }

    fn with_group<T>(&self, group_id: i64, f: impl FnOnce(&mut Group) -> T) -> T {
        let mut world = self.shared.lock();
        let group = world
            .groups
            .get_mut(&group_id)
            .expect("the group was made by create_group on this fake");
        f(group)
    }

    /// A customer writes (a `message_new` event); returns its `conversation_message_id`.
    pub fn customer_writes(&self, group_id: i64, m: VkCustomerMessage) -> i64 {
        let base_url = self.shared.base_url.clone();
        let mut guard = self.shared.lock();
        let world = &mut *guard;
        let group = world
            .groups
            .get_mut(&group_id)
            .expect("customer_writes: the group was made by create_group");
        let mut files = FileStore {
            base_url: &base_url,
            files: &mut world.files,
            next: &mut world.next_file,
        };
        group.customer_message(m, &mut files)
    }

    /// Gives VK user `user_id` a name, as `users.get` answers it from then on.
    pub fn set_user_name(&self, user_id: i64, first_name: &str, last_name: &str) {
        self.shared
            .lock()
            .users
            .insert(user_id, (first_name.to_owned(), last_name.to_owned()));
    }

    /// The customer edits their message `cmid` in `peer_id` (a `message_edit` event).
    pub fn customer_edits(&self, group_id: i64, peer_id: i64, cmid: i64, text: &str) {
        self.with_group(group_id, |group| {
            let msg = group
                .peers
                .get_mut(&peer_id)
                .and_then(|p| p.messages.get_mut(&cmid))
                .expect("customer_edits: the customer wrote this message");
            msg["text"] = json!(text);
            msg["update_time"] = json!(unix_secs());
            let edited = msg.clone();
            group.emit("message_edit", edited);
        });
    }

    /// The customer forbids messages from the community (`message_deny`); sends to them fail
    /// with error 901 until they allow or write again.
    pub fn customer_denies(&self, group_id: i64, user_id: i64) {
        self.with_group(group_id, |group| {
            group.peer(user_id).allowed = false;
            group.emit("message_deny", json!({"user_id": user_id}));
        });
    }

    /// The customer allows messages from the community (`message_allow`).
    pub fn customer_allows(&self, group_id: i64, user_id: i64) {
        self.with_group(group_id, |group| {
            group.peer(user_id).allowed = true;
            group.emit(
                "message_allow",
                json!({"user_id": user_id, "key": random_hex(6)}),
            );
        });
    }

    /// Everything the community sent, in order (deduplicated sends appear once).
    pub fn sent(&self, group_id: i64) -> Vec<VkSentMessage> {
        self.with_group(group_id, |group| group.sent.clone())
    }

    /// The next `count` calls of `method` (`messages.send`, `groups.getById`, …, `a_check` for
    /// long polls, `"*"` for any) fail with `f` before any normal handling.
    pub fn fail_next(&self, group_id: i64, method: &str, f: VkFailure, count: usize) {
        if count == 0 {
            return;
        }
        self.with_group(group_id, |group| {
            group.failures.push((method.to_owned(), f, count));
        });
    }

    /// The next `count` calls of `method` take effect, but their answer is lost: a 504 from
    /// the front after the call went through, as when the connection breaks or times out once
    /// VK has taken it. A `messages.send` retried with the same `random_id` then sends nothing
    /// new (§2.4).
    pub fn lose_answer_next(&self, group_id: i64, method: &str, count: usize) {
        if count == 0 {
            return;
        }
        self.with_group(group_id, |group| {
            group.lose_answers.push((method.to_owned(), count));
        });
    }

    /// Methods called for this community (and `a_check` for polls), in order, failed ones too.
    pub fn calls(&self, group_id: i64) -> Vec<String> {
        self.with_group(group_id, |group| group.calls.clone())
    }

    /// The long-poll key expires: polls with it get `failed: 2` (a new key keeps `ts` valid).
    pub fn expire_long_poll_key(&self, group_id: i64) {
        self.with_group(group_id, |group| {
            let old = std::mem::replace(&mut group.lp_key, random_hex(40));
            group.retired_keys.insert(old, 2);
            group.lp_notify.notify_waiters();
        });
    }

    /// The long-poll session is lost: polls with the old key get `failed: 3`, and the old `ts`
    /// means nothing any more (the numbering jumps and the history is gone).
    pub fn lose_long_poll_session(&self, group_id: i64) {
        self.with_group(group_id, |group| {
            let old = std::mem::replace(&mut group.lp_key, random_hex(40));
            group.retired_keys.insert(old, 3);
            group.ts += 1_000_000;
            group.history.clear();
            group.history_floor = group.ts;
            group.lp_notify.notify_waiters();
        });
    }

    /// The long-poll history is dropped: a poll from an older `ts` gets `failed: 1` with the
    /// `ts` to continue from.
    pub fn lose_long_poll_history(&self, group_id: i64) {
        self.with_group(group_id, |group| {
            group.history.clear();
            group.history_floor = group.ts;
            group.lp_notify.notify_waiters();
        });
    }

    /// The `ts` a fresh `groups.getLongPollServer` would hand out.
    pub fn long_poll_ts(&self, group_id: i64) -> u64 {
        self.with_group(group_id, |group| group.ts)
    }

    /// The community's current callback confirmation code.
    pub fn confirmation_code(&self, group_id: i64) -> String {
        self.with_group(group_id, |group| group.confirmation_code.clone())
    }

    /// The community's callback servers.
    pub fn callback_servers(&self, group_id: i64) -> Vec<VkCallbackServer> {
        self.with_group(group_id, |group| {
            group.servers.iter().map(|s| s.info.clone()).collect()
        })
    }

    /// Callback deliveries so far, in the order they were first attempted.
    pub fn deliveries(&self, group_id: i64) -> Vec<VkDelivery> {
        self.with_group(group_id, |group| group.deliveries.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP surface

async fn route(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if let Some(name) = path.strip_prefix("/files/") {
        return serve_file(&shared, name);
    }
    if let Some(rest) = path.strip_prefix("/upload/") {
        return upload::receive(&shared, rest, request).await;
    }
    if let Some(rest) = path.strip_prefix("/whp/") {
        let group_id = rest.parse().unwrap_or(0);
        let params = match read_params(request).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        return long_poll(&shared, group_id, &params).await;
    }
    let Some(method) = path.strip_prefix("/method/") else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let method = method.to_owned();
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let params = match read_params(request).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let token = params
        .text("access_token")
        .map(str::to_owned)
        .or(bearer.clone());
    let result = call_method(&shared, &method, bearer, &params).await;
    if result.is_ok() && answer_lost(&shared, token.as_deref(), &method) {
        let page = "<html><body><h1>504 Gateway Time-out</h1></body></html>";
        return (
            StatusCode::GATEWAY_TIMEOUT,
            [(header::CONTENT_TYPE, "text/html")],
            page,
        )
            .into_response();
    }
    match result {
        Ok(value) => axum::Json(json!({ "response": value })).into_response(),
        Err(Reply::Error(code, message)) => error_response(code, &message, &method, &params),
        Err(Reply::Raw(response)) => *response,
    }
}

/// Whether the answer of this successful call is to be lost (`FakeVk::lose_answer_next`).
fn answer_lost(shared: &Shared, token: Option<&str>, method: &str) -> bool {
    let mut world = shared.lock();
    let Some((group_id, _)) = token.and_then(|t| world.tokens.get(t).copied()) else {
        return false;
    };
    let Some(group) = world.groups.get_mut(&group_id) else {
        return false;
    };
    let Some(i) = group.lose_answers.iter().position(|(m, _)| m == method) else {
        return false;
    };
    group.lose_answers[i].1 -= 1;
    if group.lose_answers[i].1 == 0 {
        group.lose_answers.remove(i);
    }
    true
}

enum Reply {
    Error(i64, String),
    /// Boxed: a whole response would make every `Result<_, Reply>` large.
    Raw(Box<Response>),
}

fn error_response(code: i64, message: &str, method: &str, params: &Params) -> Response {
    let mut request_params = vec![json!({"key": "method", "value": method})];
    for (k, v) in &params.0 {
        if k != "access_token" {
            request_params.push(json!({"key": k, "value": v}));
        }
    }
    axum::Json(json!({"error": {"error_code": code, "error_msg": message,
                                "request_params": request_params}}))
    .into_response()
}

#[derive(Default)]
struct Params(BTreeMap<String, String>);

impl Params {
    fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn int(&self, key: &str) -> Result<Option<i64>, Reply> {
        match self.text(key).map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| invalid(key)),
        }
    }

    fn flag(&self, key: &str) -> Option<bool> {
        self.text(key).map(|v| v.trim() == "1")
    }
}

fn invalid(what: &str) -> Reply {
    Reply::Error(
        100,
        format!("One of the parameters specified was missing or invalid: {what} is invalid"),
    )
}

fn missing(what: &str) -> Reply {
    Reply::Error(
        100,
        format!("One of the parameters specified was missing or invalid: {what} is undefined"),
    )
}

/// Query string plus a form body. JSON bodies are not read: VK does not accept them (§2.1).
async fn read_params(request: Request) -> Result<Params, Response> {
    let mut params = Params::default();
    let mut add = |bytes: &[u8]| {
        for (k, v) in url::form_urlencoded::parse(bytes) {
            params.0.insert(k.into_owned(), v.into_owned());
        }
    };
    if let Some(query) = request.uri().query() {
        add(query.as_bytes());
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "Too Large").into_response())?;
    if is_form {
        add(&body);
    }
    Ok(params)
}

/// Looks up the token, logs the call and applies an injected failure; returns the group id.
async fn admit(
    shared: &Shared,
    method: &str,
    token: Option<&str>,
    group_for_poll: Option<i64>,
) -> Result<i64, Reply> {
    let failure = {
        let mut world = shared.lock();
        let group_id = match (token, group_for_poll) {
            (_, Some(id)) => id,
            (None, None) => {
                return Err(Reply::Error(
                    5,
                    "User authorization failed: no access_token passed.".into(),
                ))
            }
            (Some(token), None) => match world.tokens.get(token).copied() {
                Some((id, false)) => id,
                Some((id, true)) => {
                    if let Some(group) = world.groups.get_mut(&id) {
                        group.calls.push(method.to_owned());
                    }
                    return Err(Reply::Error(
                        5,
                        "User authorization failed: invalid access_token (4).".into(),
                    ));
                }
                None => {
                    return Err(Reply::Error(
                        5,
                        "User authorization failed: invalid access_token (4).".into(),
                    ))
                }
            },
        };
        let Some(group) = world.groups.get_mut(&group_id) else {
            return Err(Reply::Raw(Box::new(
                (StatusCode::NOT_FOUND, "Not Found").into_response(),
            )));
        };
        group.calls.push(method.to_owned());
        let hit = group
            .failures
            .iter()
            .position(|(m, _, _)| m == "*" || m == method);
        let failure = hit.map(|i| {
            let failure = group.failures[i].1.clone();
            group.failures[i].2 -= 1;
            if group.failures[i].2 == 0 {
                group.failures.remove(i);
            }
            failure
        });
        (group_id, failure)
    };
    match failure {
        (_, Some(VkFailure::Error { code, message })) => Err(Reply::Error(code, message)),
        (_, Some(VkFailure::Http(status))) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let page = format!("<html><body><h1>{status}</h1></body></html>");
            Err(Reply::Raw(Box::new(
                (status, [(header::CONTENT_TYPE, "text/html")], page).into_response(),
            )))
        }
        (id, Some(VkFailure::Hang(duration))) => {
            tokio::select! {
                () = tokio::time::sleep(duration) => Ok(id),
                () = shared.stopped() => Err(Reply::Raw(Box::new(StatusCode::SERVICE_UNAVAILABLE.into_response()))),
            }
        }
        (id, None) => Ok(id),
    }
}

async fn call_method(
    shared: &Arc<Shared>,
    method: &str,
    bearer: Option<String>,
    params: &Params,
) -> Result<Value, Reply> {
    let token = params.text("access_token").map(str::to_owned).or(bearer);
    let group_id = admit(shared, method, token.as_deref(), None).await?;
    if params.text("v").is_none_or(str::is_empty) {
        return Err(Reply::Error(8, "Invalid request: v is required".into()));
    }
    let own_group = |params: &Params| -> Result<(), Reply> {
        match params.int("group_id")? {
            Some(id) if id != group_id => Err(Reply::Error(15, "Access denied".into())),
            _ => Ok(()),
        }
    };
    if let Some(answer) = upload::method(shared, group_id, method, params) {
        return answer;
    }
    match method {
        "groups.getById" => get_by_id(shared, group_id, params),
        "users.get" => users_get(shared, params),
        "groups.getLongPollServer" => {
            own_group(params)?;
            get_long_poll_server(shared, group_id)
        }
        "groups.setLongPollSettings" => {
            own_group(params)?;
            set_long_poll_settings(shared, group_id, params)
        }
        "groups.getCallbackConfirmationCode" => {
            own_group(params)?;
            let world = shared.lock();
            let group = world
                .groups
                .get(&group_id)
                .ok_or_else(|| missing("group_id"))?;
            Ok(json!({"code": group.confirmation_code}))
        }
        "groups.addCallbackServer" => {
            own_group(params)?;
            add_callback_server(shared, group_id, params)
        }
        "groups.setCallbackSettings" => {
            own_group(params)?;
            set_callback_settings(shared, group_id, params)
        }
        "groups.getCallbackServers" => {
            own_group(params)?;
            let world = shared.lock();
            let group = world
                .groups
                .get(&group_id)
                .ok_or_else(|| missing("group_id"))?;
            let items: Vec<Value> = group
                .servers
                .iter()
                .map(|s| {
                    json!({"id": s.info.id, "title": s.info.title, "url": s.info.url,
                           "secret_key": s.info.secret_key.clone().unwrap_or_default(),
                           "status": if s.info.confirmed { "ok" } else { "unconfigured" }})
                })
                .collect();
            Ok(json!({"count": items.len(), "items": items}))
        }
        "groups.deleteCallbackServer" => {
            own_group(params)?;
            let server_id = params
                .int("server_id")?
                .ok_or_else(|| missing("server_id"))?;
            let mut world = shared.lock();
            let group = world
                .groups
                .get_mut(&group_id)
                .ok_or_else(|| missing("group_id"))?;
            let before = group.servers.len();
            group.servers.retain(|s| s.info.id != server_id);
            if group.servers.len() == before {
                return Err(invalid("server_id"));
            }
            Ok(json!(1))
        }
        "messages.send" => send_message(shared, group_id, params),
        "messages.getConversations" => {
            own_group(params)?;
            get_conversations(shared, group_id, params)
        }
        "messages.getHistory" => {
            own_group(params)?;
            get_history(shared, group_id, params)
        }
        _ => Err(Reply::Error(3, "Unknown method passed".into())),
    }
}

fn group_json(group: &Group) -> Value {
    json!({"id": group.id, "name": group.name, "screen_name": group.screen_name,
           "is_closed": 0, "type": "group",
           "photo_50": "https://vk.com/images/community_50.png"})
}

/// `count` (1..=200, default 20) and `offset` of a list call.
fn page(params: &Params) -> Result<(usize, usize), Reply> {
    let count = match params.int("count")? {
        None => 20,
        Some(n) if (1..=200).contains(&n) => usize::try_from(n).unwrap_or(20),
        Some(_) => return Err(invalid("count")),
    };
    let offset =
        usize::try_from(params.int("offset")?.unwrap_or(0)).map_err(|_| invalid("offset"))?;
    Ok((count, offset))
}

/// `messages.getConversations {count, offset}` (dev.vk.com/method/messages.getConversations):
/// `{count, items: [{conversation: {peer: {id, type, local_id}}, last_message}]}`, the
/// conversations with the newest last message first.
fn get_conversations(shared: &Shared, group_id: i64, params: &Params) -> Result<Value, Reply> {
    let (count, offset) = page(params)?;
    let world = shared.lock();
    let group = world
        .groups
        .get(&group_id)
        .ok_or_else(|| missing("group_id"))?;
    let mut items: Vec<(i64, i64, Value)> = group
        .peers
        .iter()
        .filter_map(|(peer_id, peer)| {
            let last = peer.messages.values().next_back()?;
            let kind = if *peer_id >= CHAT_PEER_OFFSET {
                "chat"
            } else {
                "user"
            };
            let local = if *peer_id >= CHAT_PEER_OFFSET {
                peer_id - CHAT_PEER_OFFSET
            } else {
                *peer_id
            };
            Some((
                last["date"].as_i64().unwrap_or(0),
                *peer_id,
                json!({"conversation": {"peer": {"id": peer_id, "type": kind, "local_id": local}},
                       "last_message": last}),
            ))
        })
        .collect();
    items.sort_by_key(|b| std::cmp::Reverse((b.0, b.1)));
    let total = items.len();
    let items: Vec<Value> = items
        .into_iter()
        .skip(offset)
        .take(count)
        .map(|(_, _, v)| v)
        .collect();
    Ok(json!({"count": total, "items": items}))
}

/// `messages.getHistory {peer_id, count, offset}` (dev.vk.com/method/messages.getHistory):
/// `{count, items}`, the newest message first.
fn get_history(shared: &Shared, group_id: i64, params: &Params) -> Result<Value, Reply> {
    let (count, offset) = page(params)?;
    let peer_id = params.int("peer_id")?.ok_or_else(|| missing("peer_id"))?;
    let world = shared.lock();
    let group = world
        .groups
        .get(&group_id)
        .ok_or_else(|| missing("group_id"))?;
    let Some(peer) = group.peers.get(&peer_id) else {
        return Ok(json!({"count": 0, "items": []}));
    };
    let items: Vec<Value> = peer
        .messages
        .values()
        .rev()
        .skip(offset)
        .take(count)
        .cloned()
        .collect();
    Ok(json!({"count": peer.messages.len(), "items": items}))
}

/// `users.get {user_ids}` (dev.vk.com/method/users.get): up to 1000 comma-separated ids (or
/// screen names `id<N>`), answered in the order asked with `id`, `first_name`, `last_name`,
/// `can_access_closed`, `is_closed`. A user the fake was not told of is a deleted account:
/// `first_name: "DELETED"`, `deactivated: "deleted"`, as VK answers for one. Not a number:
/// error 113 "Invalid user id".
fn users_get(shared: &Shared, params: &Params) -> Result<Value, Reply> {
    let asked = params
        .text("user_ids")
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| missing("user_ids"))?;
    let ids: Vec<&str> = asked.split(',').map(str::trim).collect();
    if ids.len() > 1000 {
        return Err(Reply::Error(
            100,
            "One of the parameters specified was missing or invalid: too many user_ids".into(),
        ));
    }
    let world = shared.lock();
    let mut users = Vec::new();
    for id in ids {
        let id: i64 = id
            .strip_prefix("id")
            .unwrap_or(id)
            .parse()
            .ok()
            .filter(|n: &i64| *n > 0)
            .ok_or_else(|| Reply::Error(113, "Invalid user id".into()))?;
        users.push(match world.users.get(&id) {
            Some((first, last)) => json!({"id": id, "first_name": first, "last_name": last,
                                          "can_access_closed": true, "is_closed": false}),
            None => json!({"id": id, "first_name": "DELETED", "last_name": "",
                           "deactivated": "deleted"}),
        });
    }
    Ok(Value::Array(users))
}

fn get_by_id(shared: &Shared, group_id: i64, params: &Params) -> Result<Value, Reply> {
    let world = shared.lock();
    let asked = params
        .text("group_ids")
        .or(params.text("group_id"))
        .filter(|s| !s.trim().is_empty());
    let groups: Vec<Value> = match asked {
        None => world
            .groups
            .get(&group_id)
            .map(group_json)
            .into_iter()
            .collect(),
        Some(list) => list
            .split(',')
            .map(|id| {
                let id = id.trim();
                world
                    .groups
                    .values()
                    .find(|g| g.id.to_string() == id || g.screen_name == id)
                    .map(group_json)
                    .ok_or_else(|| invalid("group_ids"))
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(json!({"groups": groups, "profiles": []}))
}

fn get_long_poll_server(shared: &Shared, group_id: i64) -> Result<Value, Reply> {
    let world = shared.lock();
    let group = world
        .groups
        .get(&group_id)
        .ok_or_else(|| missing("group_id"))?;
    if !group.lp_enabled {
        return Err(Reply::Error(
            100,
            "One of the parameters specified was missing or invalid: Long Poll is disabled".into(),
        ));
    }
    Ok(
        json!({"key": group.lp_key, "server": format!("{}/whp/{group_id}", shared.base_url),
              "ts": group.ts.to_string()}),
    )
}

fn event_flags(params: &Params, current: &[String]) -> Vec<String> {
    EVENT_TYPES
        .iter()
        .filter(|t| {
            params
                .flag(t)
                .unwrap_or_else(|| current.iter().any(|c| c == *t))
        })
        .map(|t| (*t).to_owned())
        .collect()
}

fn set_long_poll_settings(shared: &Shared, group_id: i64, params: &Params) -> Result<Value, Reply> {
    let mut world = shared.lock();
    let group = world
        .groups
        .get_mut(&group_id)
        .ok_or_else(|| missing("group_id"))?;
    if let Some(enabled) = params.flag("enabled") {
        group.lp_enabled = enabled;
    }
    group.lp_events = event_flags(params, &group.lp_events);
    Ok(json!(1))
}

fn add_callback_server(
    shared: &Arc<Shared>,
    group_id: i64,
    params: &Params,
) -> Result<Value, Reply> {
    let url = params.text("url").map(str::trim).unwrap_or("");
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(invalid("url"));
    }
    let title = params.text("title").unwrap_or("").trim();
    if title.is_empty() || title.chars().count() > 14 {
        return Err(invalid("title"));
    }
    let (id, notify) = {
        let mut world = shared.lock();
        let group = world
            .groups
            .get_mut(&group_id)
            .ok_or_else(|| missing("group_id"))?;
        if group.servers.len() >= MAX_CALLBACK_SERVERS {
            return Err(Reply::Error(
                100,
                "One of the parameters specified was missing or invalid: too many servers".into(),
            ));
        }
        let id = group.next_server_id;
        group.next_server_id += 1;
        // The code changes when servers are added (§2.2).
        group.confirmation_code = random_hex(8);
        let notify = Arc::new(Notify::new());
        group.servers.push(CallbackState {
            info: VkCallbackServer {
                id,
                url: url.to_owned(),
                title: title.to_owned(),
                secret_key: params
                    .text("secret_key")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
                api_version: None,
                event_types: Vec::new(),
                confirmed: false,
            },
            queue: VecDeque::new(),
            notify: notify.clone(),
        });
        (id, notify)
    };
    tokio::spawn(dispatch(shared.clone(), group_id, id, notify));
    Ok(json!({ "server_id": id }))
}

fn set_callback_settings(shared: &Shared, group_id: i64, params: &Params) -> Result<Value, Reply> {
    let server_id = params
        .int("server_id")?
        .ok_or_else(|| missing("server_id"))?;
    let mut world = shared.lock();
    let group = world
        .groups
        .get_mut(&group_id)
        .ok_or_else(|| missing("group_id"))?;
    let server = group
        .servers
        .iter_mut()
        .find(|s| s.info.id == server_id)
        .ok_or_else(|| invalid("server_id"))?;
    if let Some(v) = params.text("api_version") {
        server.info.api_version = Some(v.to_owned());
    }
    server.info.event_types = event_flags(params, &server.info.event_types);
    Ok(json!(1))
}

fn send_message(shared: &Shared, group_id: i64, params: &Params) -> Result<Value, Reply> {
    let peer_id = match params.int("peer_id")? {
        Some(p) => p,
        None => params.int("user_id")?.ok_or_else(|| {
            Reply::Error(
                100,
                "One of the parameters specified was missing or invalid: you should specify \
                 peer_id, user_id, domain, chat_id or user_ids param"
                    .into(),
            )
        })?,
    };
    let random_id = params.int("random_id")?.ok_or_else(|| {
        Reply::Error(
            100,
            "One of the parameters specified was missing or invalid: random_id is a required \
             parameter"
                .into(),
        )
    })?;
    let text = params.text("message").unwrap_or("").to_owned();
    if text.trim().is_empty() && params.text("attachment").is_none_or(str::is_empty) {
        return Err(Reply::Error(
            100,
            "One of the parameters specified was missing or invalid: message is empty or invalid"
                .into(),
        ));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(Reply::Error(914, "Message is too long".into()));
    }
    let mut world = shared.lock();
    let attached = upload::attachments(&world, params.text("attachment").unwrap_or(""))?;
    let group = world
        .groups
        .get_mut(&group_id)
        .ok_or_else(|| missing("group_id"))?;
    if random_id != 0 {
        if let Some(id) = group.random_ids.get(&(peer_id, random_id)) {
            return Ok(json!(id));
        }
    }
    match group.peers.get(&peer_id) {
        Some(peer) if peer.allowed || peer_id >= CHAT_PEER_OFFSET => {}
        _ if peer_id >= CHAT_PEER_OFFSET => {
            return Err(Reply::Error(
                917,
                "You don't have access to this chat".into(),
            ))
        }
        _ => {
            return Err(Reply::Error(
                901,
                "Can't send messages for users without permission".into(),
            ))
        }
    }
    let reply_cmid = match (params.int("reply_to")?, params.text("forward")) {
        (Some(id), _) => match group.message_ids.get(&id) {
            Some((peer, cmid)) if *peer == peer_id => Some(*cmid),
            _ => return Err(invalid("reply_to")),
        },
        (None, Some(forward)) if !forward.is_empty() => {
            let f: Value = serde_json::from_str(forward).map_err(|_| invalid("forward"))?;
            let cmid = f["conversation_message_ids"][0].as_i64();
            let peer = f["peer_id"].as_i64();
            match (peer, cmid) {
                (Some(p), Some(c))
                    if f["is_reply"].as_bool() == Some(true)
                        && group
                            .peers
                            .get(&p)
                            .is_some_and(|peer| peer.messages.contains_key(&c)) =>
                {
                    Some(c)
                }
                _ => return Err(invalid("forward")),
            }
        }
        _ => None,
    };
    let message_id = group.next_message_id;
    group.next_message_id += 1;
    let from_id = -group.id;
    let date = unix_secs();
    let peer = group.peer(peer_id);
    let cmid = peer.next_cmid;
    peer.next_cmid += 1;
    let mut msg = json!({"date": date, "from_id": from_id, "id": message_id, "out": 1,
        "peer_id": peer_id, "text": text, "conversation_message_id": cmid,
        "attachments": attached.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>(),
        "fwd_messages": [], "important": false, "is_hidden": false, "random_id": random_id});
    if let Some(replied) = reply_cmid.and_then(|c| peer.messages.get(&c)) {
        msg["reply_message"] = replied.clone();
    }
    peer.messages.insert(cmid, msg.clone());
    group.message_ids.insert(message_id, (peer_id, cmid));
    if random_id != 0 {
        group.random_ids.insert((peer_id, random_id), message_id);
    }
    group.sent.push(VkSentMessage {
        peer_id,
        message_id,
        conversation_message_id: cmid,
        text,
        random_id,
        reply_to: reply_cmid,
        date,
        attachments: attached.into_iter().map(|(_, f)| f).collect(),
    });
    group.emit("message_reply", msg);
    Ok(json!(message_id))
}

/// `GET /whp/<group_id>?act=a_check&key=..&ts=..&wait=..` (§2.3).
async fn long_poll(shared: &Shared, group_id: i64, params: &Params) -> Response {
    let failed = |code: i64, ts: Option<u64>| {
        let mut body = json!({ "failed": code });
        if let Some(ts) = ts {
            body["ts"] = json!(ts);
        }
        axum::Json(body).into_response()
    };
    match admit(shared, "a_check", None, Some(group_id)).await {
        Ok(_) => {}
        Err(Reply::Raw(r)) => return *r,
        Err(Reply::Error(code, message)) => {
            return axum::Json(json!({"error": {"error_code": code, "error_msg": message}}))
                .into_response()
        }
    }
    if params.text("act") != Some("a_check") {
        return (StatusCode::BAD_REQUEST, "act=a_check expected").into_response();
    }
    let key = params.text("key").unwrap_or("").to_owned();
    let wait = params
        .text("wait")
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or(0)
        .min(MAX_WAIT_SECS);
    let ts: Option<u64> = params.text("ts").and_then(|t| t.parse().ok());
    let notify = {
        let world = shared.lock();
        let Some(group) = world.groups.get(&group_id) else {
            return failed(2, None);
        };
        group.lp_notify.clone()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let world = shared.lock();
            let Some(group) = world.groups.get(&group_id) else {
                return failed(2, None);
            };
            if key != group.lp_key {
                return failed(group.retired_keys.get(&key).copied().unwrap_or(2), None);
            }
            let Some(ts) = ts.filter(|ts| *ts <= group.ts) else {
                return failed(1, Some(group.ts));
            };
            if ts < group.history_floor {
                return failed(1, Some(group.history_floor));
            }
            let updates: Vec<&(u64, Value)> = group
                .history
                .iter()
                .filter(|(n, _)| *n > ts)
                .take(100)
                .collect();
            if !updates.is_empty() || tokio::time::Instant::now() >= deadline {
                let next = updates.last().map_or(ts, |(n, _)| *n);
                let events: Vec<Value> = updates.into_iter().map(|(_, e)| e.clone()).collect();
                return axum::Json(json!({"ts": next.to_string(), "updates": events}))
                    .into_response();
            }
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline) => {}
            () = shared.stopped() => return failed(2, None),
        }
    }
}

fn serve_file(shared: &Shared, name: &str) -> Response {
    let world = shared.lock();
    match world.files.get(name) {
        Some((bytes, mime)) => (
            [(header::CONTENT_TYPE, mime.clone())],
            Body::from(bytes.clone()),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Callback delivery

/// Confirms callback server `server_id` and then delivers its events in order, one at a time,
/// each until the server answers 200 `ok`, for as long as the server exists.
async fn dispatch(shared: Arc<Shared>, group_id: i64, server_id: i64, notify: Arc<Notify>) {
    let mut backoff = Backoff::new(CALLBACK_BACKOFF_START, CALLBACK_BACKOFF_CAP);
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // What to do next: confirm, deliver the queue's head, or wait.
        let next = {
            let world = shared.lock();
            let Some(server) = world
                .groups
                .get(&group_id)
                .and_then(|g| g.servers.iter().find(|s| s.info.id == server_id))
            else {
                return;
            };
            let code = world
                .groups
                .get(&group_id)
                .map(|g| g.confirmation_code.clone())
                .unwrap_or_default();
            if !server.info.confirmed {
                Some((
                    server.info.url.clone(),
                    json!({"type": "confirmation", "group_id": group_id}),
                    Some(code),
                ))
            } else {
                server
                    .queue
                    .front()
                    .map(|e| (server.info.url.clone(), e.clone(), None))
            }
        };
        let Some((url, body, confirmation)) = next else {
            tokio::select! {
                () = &mut notified => continue,
                () = shared.stopped() => return,
            }
        };
        let event_id = body["event_id"].as_str().unwrap_or("").to_owned();
        let attempt = if confirmation.is_none() {
            record_attempt(&shared, group_id, server_id, &body)
        } else {
            1
        };
        let mut request = shared.http.post(&url).json(&body);
        if attempt > 1 {
            request = request.header("X-Retry-Counter", (attempt - 1).to_string());
        }
        let (status, answer) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (Some(status), response.text().await.unwrap_or_default())
            }
            Err(_) => (None, String::new()),
        };
        let success = status == Some(200)
            && match &confirmation {
                Some(code) => answer == *code,
                None => answer == "ok",
            };
        {
            let mut world = shared.lock();
            let Some(group) = world.groups.get_mut(&group_id) else {
                return;
            };
            if confirmation.is_none() {
                if let Some(d) = group
                    .deliveries
                    .iter_mut()
                    .find(|d| d.server_id == server_id && d.event_id == event_id)
                {
                    d.last_status = status;
                    d.delivered = success;
                }
            }
            let Some(server) = group.servers.iter_mut().find(|s| s.info.id == server_id) else {
                return;
            };
            if success {
                match confirmation {
                    Some(_) => server.info.confirmed = true,
                    None => {
                        server.queue.pop_front();
                    }
                }
            }
        }
        if success {
            backoff.reset();
            continue;
        }
        if !shared.sleep(backoff.step()).await {
            return;
        }
    }
}

/// Counts one more attempt of `event` to `server_id`; returns the attempt's number.
fn record_attempt(shared: &Shared, group_id: i64, server_id: i64, event: &Value) -> u32 {
    let mut world = shared.lock();
    let Some(group) = world.groups.get_mut(&group_id) else {
        return 1;
    };
    let event_id = event["event_id"].as_str().unwrap_or("");
    match group
        .deliveries
        .iter_mut()
        .find(|d| d.server_id == server_id && d.event_id == event_id)
    {
        Some(d) => {
            d.attempts += 1;
            d.attempts
        }
        None => {
            group.deliveries.push(VkDelivery {
                server_id,
                event_id: event_id.to_owned(),
                event_type: event["type"].as_str().unwrap_or("").to_owned(),
                attempts: 1,
                last_status: None,
                delivered: false,
            });
            1
        }
    }
}

fn mime_for(ext: &str) -> &'static str {
    match ext.to_ascii_lowercase().as_str() {
        "pdf" => "application/pdf",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "txt" => "text/plain",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

fn new_token() -> String {
    format!("vk1.a.{}", random_string(URL_SAFE, 80))
}
