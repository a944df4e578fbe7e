//! Fake Telegram for personal accounts (MTProto cannot run here): a stateful loopback server
//! speaking the small JSON protocol of `chatter-channels`' `FakeGateway` — `POST /{method}` with
//! a JSON body, refusals as `{"error":"<RPC error name>"}`. It keeps the applications
//! (api_id → api_hash) registered at my.telegram.org, accounts by phone with their login codes,
//! 2FA passwords (and hints), sessions, the people who write to them, each account's update log
//! (positions are `pts`), what the account sent, and scripted trouble: any RPC error on the
//! next call of a method (`FLOOD_WAIT_X`, `PEER_FLOOD` …), expired codes, a session revoked
//! from the phone, a ban, an update gap that needs the difference.

use crate::server::{self, random_string, unix_secs, StopGuard};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const DIGITS: &[u8] = b"0123456789";
const LONG_POLL_CAP_SECS: u64 = 30;

/// What the account sent (from Chatter): a text or a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TgpSent {
    pub id: i64,
    pub peer: i64,
    pub text: String,
    /// A file's name, when a file was sent.
    pub file_name: Option<String>,
    pub reply_to: Option<i64>,
}

#[derive(Default)]
struct Account {
    user_id: i64,
    first_name: String,
    username: Option<String>,
    password: Option<(String, Option<String>)>,
    sessions: HashSet<String>,
    /// Each session's position when it signed in (updates from "now" start there).
    session_start: HashMap<String, usize>,
    /// The update log; a message's `pts` is its index + 1.
    log: Vec<Value>,
    next_id: i64,
    people: HashMap<i64, Value>,
    sent: Vec<TgpSent>,
    by_random_id: HashMap<i64, i64>,
    read: HashMap<i64, i64>,
    /// (method, RPC error) to answer the next call of that method with.
    trouble: Vec<(String, String)>,
    gap_next: bool,
    banned: bool,
    notify: Arc<Notify>,
    logged_out: usize,
}

#[derive(Default)]
struct World {
    apps: HashMap<i64, String>,
    accounts: HashMap<String, Account>,
    /// phone_code_hash → (phone, code, expired).
    codes: HashMap<String, (String, String, bool)>,
    /// The last code sent to each phone (what the person reads in their app).
    last_code: HashMap<String, String>,
    /// Phones whose codes are always this one (the demo prints it).
    fixed_code: HashMap<String, String>,
    password_tokens: HashMap<String, String>,
    sessions: HashMap<String, String>,
    media: HashMap<String, (Vec<u8>, String, String)>,
    next_user: i64,
}

type Shared = server::Shared<World>;

/// A handle to the running fake; it stops when the last clone drops.
#[derive(Clone)]
pub struct FakeTelegramPersonal {
    shared: Arc<Shared>,
    _guard: Arc<StopGuard>,
}

struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn rpc(name: &str) -> Refusal {
    let status = if name.starts_with("FLOOD_WAIT_") {
        StatusCode::from_u16(420).unwrap_or(StatusCode::TOO_MANY_REQUESTS)
    } else if name == "AUTH_KEY_UNREGISTERED" || name == "USER_DEACTIVATED_BAN" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    Refusal(status, name.to_owned())
}

fn s<'a>(b: &'a Value, k: &str) -> &'a str {
    b[k].as_str().unwrap_or("")
}

impl World {
    /// The scripted error of `method` for `phone`, taken once.
    fn trouble(&mut self, phone: &str, method: &str) -> Result<(), Refusal> {
        let Some(acc) = self.accounts.get_mut(phone) else {
            return Ok(());
        };
        match acc.trouble.iter().position(|(m, _)| m == method) {
            Some(i) => Err(rpc(&acc.trouble.remove(i).1)),
            None => Ok(()),
        }
    }

    /// The account of a session call, after its checks.
    fn session(&mut self, body: &Value, method: &str) -> Result<String, Refusal> {
        let phone = self
            .sessions
            .get(s(body, "session"))
            .cloned()
            .ok_or_else(|| rpc("AUTH_KEY_UNREGISTERED"))?;
        let acc = self
            .accounts
            .get(&phone)
            .ok_or_else(|| rpc("AUTH_KEY_UNREGISTERED"))?;
        if acc.banned {
            return Err(rpc("USER_DEACTIVATED_BAN"));
        }
        if !acc.sessions.contains(s(body, "session")) {
            return Err(rpc("AUTH_KEY_UNREGISTERED"));
        }
        self.trouble(&phone, method)?;
        Ok(phone)
    }

    fn signed_in(&mut self, phone: &str) -> Value {
        let session = random_string(crate::server::URL_SAFE, 48);
        self.sessions.insert(session.clone(), phone.to_owned());
        let acc = self.accounts.entry(phone.to_owned()).or_default();
        acc.sessions.insert(session.clone());
        acc.session_start.insert(session.clone(), acc.log.len());
        json!({"session": session, "me": me(acc, phone)})
    }
}

fn me(acc: &Account, phone: &str) -> Value {
    json!({"id": acc.user_id, "first_name": acc.first_name, "username": acc.username, "phone": phone})
}

impl Account {
    fn push(&mut self, mut m: Value) -> i64 {
        self.next_id += 1;
        let id = self.next_id;
        m["id"] = json!(id);
        self.log.push(m);
        self.notify.notify_waiters();
        id
    }

    /// The log after `pts` as `session` sees it: what that session sent itself is left out
    /// (an MTProto client knows its own sends by their `random_id`).
    fn since(&self, pts: usize, session: &str) -> Vec<Value> {
        self.log
            .get(pts..)
            .unwrap_or_default()
            .iter()
            .filter(|m| m["sent_by"].as_str() != Some(session))
            .map(|m| {
                let mut m = m.clone();
                if let Some(o) = m.as_object_mut() {
                    o.remove("sent_by");
                }
                m
            })
            .collect()
    }
}

async fn call(
    State(st): State<Arc<Shared>>,
    Path(method): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, Refusal> {
    if method == "updates.get" {
        return updates(st, body).await;
    }
    let mut w = st.lock();
    let answer = match method.as_str() {
        "auth.sendCode" => {
            let phone = s(&body, "phone").to_owned();
            let known = body["api_id"]
                .as_i64()
                .and_then(|id| w.apps.get(&id))
                .is_some_and(|h| h == s(&body, "api_hash"));
            if !known {
                return Err(rpc("API_ID_INVALID"));
            }
            if !w.accounts.contains_key(&phone) {
                return Err(rpc("PHONE_NUMBER_INVALID"));
            }
            w.trouble(&phone, &method)?;
            let code = w
                .fixed_code
                .get(&phone)
                .cloned()
                .unwrap_or_else(|| random_string(DIGITS, 5));
            let hash = random_string(crate::server::URL_SAFE, 18);
            w.codes
                .insert(hash.clone(), (phone.clone(), code.clone(), false));
            w.last_code.insert(phone, code);
            json!({"phone_code_hash": hash})
        }
        "auth.signIn" => {
            let (phone, code, expired) = w
                .codes
                .get(s(&body, "phone_code_hash"))
                .cloned()
                .ok_or_else(|| rpc("PHONE_CODE_EXPIRED"))?;
            w.trouble(&phone, &method)?;
            if expired {
                return Err(rpc("PHONE_CODE_EXPIRED"));
            }
            if code != s(&body, "code") {
                return Err(rpc("PHONE_CODE_INVALID"));
            }
            w.codes.remove(s(&body, "phone_code_hash"));
            let acc = w
                .accounts
                .get(&phone)
                .ok_or_else(|| rpc("PHONE_NUMBER_INVALID"))?;
            if acc.banned {
                return Err(rpc("PHONE_NUMBER_BANNED"));
            }
            match acc.password.clone() {
                Some((_, hint)) => {
                    let token = random_string(crate::server::URL_SAFE, 24);
                    w.password_tokens.insert(token.clone(), phone);
                    json!({"password_needed": true, "hint": hint, "password_token": token})
                }
                None => w.signed_in(&phone),
            }
        }
        "auth.checkPassword" => {
            let phone = w
                .password_tokens
                .get(s(&body, "password_token"))
                .cloned()
                .ok_or_else(|| rpc("PASSWORD_HASH_INVALID"))?;
            w.trouble(&phone, &method)?;
            let right = w
                .accounts
                .get(&phone)
                .and_then(|a| a.password.as_ref())
                .is_some_and(|(p, _)| p == s(&body, "password"));
            if !right {
                return Err(rpc("PASSWORD_HASH_INVALID"));
            }
            w.password_tokens.remove(s(&body, "password_token"));
            w.signed_in(&phone)
        }
        "auth.logOut" => {
            let phone = w.session(&body, &method)?;
            let session = s(&body, "session").to_owned();
            w.sessions.remove(&session);
            if let Some(acc) = w.accounts.get_mut(&phone) {
                acc.sessions.remove(&session);
                acc.logged_out += 1;
            }
            json!({})
        }
        "users.getMe" => {
            let phone = w.session(&body, &method)?;
            let acc = &w.accounts[&phone];
            me(acc, &phone)
        }
        "messages.getDialogs" => {
            let phone = w.session(&body, &method)?;
            let acc = &w.accounts[&phone];
            let mut peers: Vec<i64> = Vec::new();
            for m in acc.log.iter().rev() {
                let p = m["peer"]["id"].as_i64().unwrap_or(0);
                if !peers.contains(&p) {
                    peers.push(p);
                }
            }
            let dialogs: Vec<Value> = peers
                .iter()
                .map(|p| {
                    let title = acc
                        .people
                        .get(p)
                        .map_or(json!(""), |u| u["first_name"].clone());
                    json!({"peer": {"id": p, "kind": "user"}, "title": title})
                })
                .collect();
            json!(dialogs)
        }
        "messages.getHistory" => {
            let phone = w.session(&body, &method)?;
            let peer = body["peer"].as_i64().unwrap_or(0);
            let min = body["min_id"].as_i64().unwrap_or(0);
            let acc = &w.accounts[&phone];
            let list: Vec<&Value> = acc
                .log
                .iter()
                .filter(|m| {
                    m["peer"]["id"].as_i64() == Some(peer) && m["id"].as_i64().unwrap_or(0) > min
                })
                .collect();
            json!(list)
        }
        "messages.sendMessage" | "messages.sendMedia" => {
            let phone = w.session(&body, &method)?;
            let peer = body["peer"].as_i64().unwrap_or(0);
            let random_id = body["random_id"].as_i64().unwrap_or(0);
            let file = if method == "messages.sendMedia" {
                let bytes =
                    hex::decode(s(&body, "bytes_hex")).map_err(|_| rpc("FILE_PARTS_INVALID"))?;
                let r = random_string(crate::server::URL_SAFE, 20);
                w.media.insert(
                    r.clone(),
                    (
                        bytes,
                        s(&body, "mime_type").to_owned(),
                        s(&body, "file_name").to_owned(),
                    ),
                );
                Some((s(&body, "file_name").to_owned(), r))
            } else {
                None
            };
            let acc = w
                .accounts
                .get_mut(&phone)
                .ok_or_else(|| rpc("AUTH_KEY_UNREGISTERED"))?;
            if let Some(id) = acc.by_random_id.get(&random_id) {
                return Ok(Json(json!({"id": id})).into_response());
            }
            if !acc.people.contains_key(&peer) {
                return Err(rpc("PEER_ID_INVALID"));
            }
            let text = if file.is_some() {
                s(&body, "caption").to_owned()
            } else {
                s(&body, "text").to_owned()
            };
            let reply_to = body["reply_to"].as_i64();
            let id = acc.push(json!({
                "sent_by": s(&body, "session"),
                "peer": {"id": peer, "kind": "user"}, "out": true, "text": text,
                "date": unix_secs(), "reply_to": reply_to,
                "media": file.as_ref().map(|(n, r)| json!({"kind": "document", "media_ref": r, "file_name": n})),
            }));
            acc.by_random_id.insert(random_id, id);
            acc.sent.push(TgpSent {
                id,
                peer,
                text,
                file_name: file.map(|(n, _)| n),
                reply_to,
            });
            json!({"id": id})
        }
        "messages.readHistory" => {
            let phone = w.session(&body, &method)?;
            let acc = w
                .accounts
                .get_mut(&phone)
                .ok_or_else(|| rpc("AUTH_KEY_UNREGISTERED"))?;
            acc.read.insert(
                body["peer"].as_i64().unwrap_or(0),
                body["max_id"].as_i64().unwrap_or(0),
            );
            json!({})
        }
        "upload.getFile" => {
            w.session(&body, &method)?;
            let (bytes, mime, name) = w
                .media
                .get(s(&body, "media_ref"))
                .cloned()
                .ok_or_else(|| rpc("FILE_REFERENCE_EXPIRED"))?;
            return Ok((
                [
                    (header::CONTENT_TYPE, mime),
                    (header::HeaderName::from_static("x-file-name"), name),
                ],
                bytes,
            )
                .into_response());
        }
        "updates.getDifference" => {
            let phone = w.session(&body, &method)?;
            let acc = &w.accounts[&phone];
            let pts = position(acc, &body);
            json!({"messages": acc.since(pts, s(&body, "session")), "state": acc.log.len().to_string()})
        }
        _ => return Err(Refusal(StatusCode::NOT_FOUND, "METHOD_INVALID".into())),
    };
    Ok(Json(answer).into_response())
}

/// The position a call asks from: its `state`, else where its session signed in.
fn position(acc: &Account, body: &Value) -> usize {
    match body["state"].as_str().and_then(|p| p.parse().ok()) {
        Some(p) => p,
        None => acc
            .session_start
            .get(s(body, "session"))
            .copied()
            .unwrap_or(acc.log.len()),
    }
}

/// `updates.get`: what is new since the position, waiting up to `wait` seconds for something;
/// a scripted gap answers `{"gap":true}` once.
async fn updates(st: Arc<Shared>, body: Value) -> Result<Response, Refusal> {
    let wait = Duration::from_secs(body["wait"].as_u64().unwrap_or(0).min(LONG_POLL_CAP_SECS));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let notify = {
            let mut w = st.lock();
            let phone = w.session(&body, "updates.get")?;
            let acc = w
                .accounts
                .get_mut(&phone)
                .ok_or_else(|| rpc("AUTH_KEY_UNREGISTERED"))?;
            let pts = position(acc, &body);
            if acc.gap_next && pts < acc.log.len() {
                acc.gap_next = false;
                return Ok(Json(json!({"gap": true})).into_response());
            }
            let new = acc.since(pts, s(&body, "session"));
            if !new.is_empty() || tokio::time::Instant::now() >= deadline {
                let state = acc.log.len().max(pts).to_string();
                return Ok(Json(json!({"messages": new, "state": state})).into_response());
            }
            acc.notify.clone()
        };
        let notified = notify.notified();
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep_until(deadline) => {}
            () = st.stopped() => return Err(Refusal(StatusCode::SERVICE_UNAVAILABLE, "STOPPED".into())),
        }
    }
}

impl FakeTelegramPersonal {
    /// Starts the fake on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<FakeTelegramPersonal> {
        let world = World {
            next_user: 500_000_000,
            ..World::default()
        };
        let spec = server::Spec::new(world, "fake Telegram (personal accounts) stopped");
        let (shared, guard) = server::start(spec, |shared| {
            Router::new()
                .route("/{method}", post(call))
                .layer(axum::extract::DefaultBodyLimit::max(128 * 1024 * 1024))
                .with_state(shared)
        })
        .await?;
        Ok(FakeTelegramPersonal {
            shared,
            _guard: guard,
        })
    }

    /// Where `FakeGateway` reaches it (`[telegram_personal] gateway_url`).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Registers an application at "my.telegram.org".
    pub fn register_app(&self, api_id: i64, api_hash: &str) {
        self.shared.lock().apps.insert(api_id, api_hash.to_owned());
    }

    /// Adds an account with phone `phone` (E.164), optionally with a 2FA password and its
    /// hint; returns its Telegram user id.
    pub fn add_account(
        &self,
        phone: &str,
        first_name: &str,
        username: Option<&str>,
        password: Option<(&str, &str)>,
    ) -> i64 {
        let mut w = self.shared.lock();
        w.next_user += 1;
        let user_id = w.next_user;
        w.accounts.insert(
            phone.to_owned(),
            Account {
                user_id,
                first_name: first_name.to_owned(),
                username: username.map(str::to_owned),
                password: password
                    .map(|(p, h)| (p.to_owned(), Some(h.to_owned()).filter(|h| !h.is_empty()))),
                next_id: 1000,
                ..Account::default()
            },
        );
        user_id
    }

    /// The last login code sent to `phone`, as the person reads it in their Telegram app.
    pub fn last_code(&self, phone: &str) -> Option<String> {
        self.shared.lock().last_code.get(phone).cloned()
    }

    /// Every code sent to `phone` from now on is `code` (the demo prints it).
    pub fn set_code(&self, phone: &str, code: &str) {
        self.shared
            .lock()
            .fixed_code
            .insert(phone.to_owned(), code.to_owned());
    }

    /// Makes every code sent so far to `phone` expire.
    pub fn expire_codes(&self, phone: &str) {
        for (p, _, expired) in self.shared.lock().codes.values_mut() {
            if p == phone {
                *expired = true;
            }
        }
    }

    /// A person writes to the account `phone`; returns the message's id.
    pub fn customer_writes(&self, phone: &str, user_id: i64, first_name: &str, text: &str) -> i64 {
        self.customer_message(phone, user_id, first_name, "user", json!({"text": text}))
    }

    /// A person sends a photo (`bytes`, JPEG) with an optional caption; returns its id.
    pub fn customer_sends_photo(
        &self,
        phone: &str,
        user_id: i64,
        first_name: &str,
        bytes: &[u8],
        caption: &str,
    ) -> i64 {
        let r = random_string(crate::server::URL_SAFE, 20);
        self.shared.lock().media.insert(
            r.clone(),
            (bytes.to_vec(), "image/jpeg".into(), "photo.jpg".into()),
        );
        self.customer_message(
            phone,
            user_id,
            first_name,
            "user",
            json!({"text": caption, "media": {"kind": "photo", "media_ref": r, "mime_type": "image/jpeg", "size": bytes.len()}}),
        )
    }

    /// A message in a group the account is in (not a conversation for this kind).
    pub fn group_message(&self, phone: &str, group_id: i64, text: &str) -> i64 {
        self.customer_message(phone, group_id, "Group", "group", json!({"text": text}))
    }

    fn customer_message(
        &self,
        phone: &str,
        user_id: i64,
        first_name: &str,
        kind: &str,
        mut m: Value,
    ) -> i64 {
        let mut w = self.shared.lock();
        let Some(acc) = w.accounts.get_mut(phone) else {
            return 0;
        };
        let user = json!({"id": user_id, "first_name": first_name});
        acc.people.insert(user_id, user.clone());
        m["peer"] = json!({"id": user_id, "kind": kind});
        m["from"] = user;
        m["date"] = json!(unix_secs());
        acc.push(m)
    }

    /// The account's person writes to `user_id` from their phone; returns the message's id.
    pub fn person_writes_from_phone(&self, phone: &str, user_id: i64, text: &str) -> i64 {
        let mut w = self.shared.lock();
        let Some(acc) = w.accounts.get_mut(phone) else {
            return 0;
        };
        acc.push(json!({"peer": {"id": user_id, "kind": "user"}, "out": true, "text": text, "date": unix_secs()}))
    }

    /// What the account `phone` sent from Chatter, in order.
    pub fn sent(&self, phone: &str) -> Vec<TgpSent> {
        self.shared
            .lock()
            .accounts
            .get(phone)
            .map(|a| a.sent.clone())
            .unwrap_or_default()
    }

    /// The next call of `method` (`messages.sendMessage`, `auth.signIn` …) for `phone` is
    /// refused with RPC error `error` (`FLOOD_WAIT_3`, `PEER_FLOOD` …); calls queue in order.
    pub fn fail_next(&self, phone: &str, method: &str, error: &str) {
        if let Some(acc) = self.shared.lock().accounts.get_mut(phone) {
            acc.trouble.push((method.to_owned(), error.to_owned()));
        }
    }

    /// The person ends every session from their phone (Settings → Devices): later calls get
    /// `AUTH_KEY_UNREGISTERED`.
    pub fn revoke_sessions(&self, phone: &str) {
        let mut w = self.shared.lock();
        let gone: Vec<String> = w
            .accounts
            .get_mut(phone)
            .map(|a| a.sessions.drain().collect())
            .unwrap_or_default();
        for s in gone {
            w.sessions.remove(&s);
        }
    }

    /// Telegram bans the account: every call gets `USER_DEACTIVATED_BAN`.
    pub fn ban(&self, phone: &str) {
        if let Some(acc) = self.shared.lock().accounts.get_mut(phone) {
            acc.banned = true;
        }
    }

    /// The next `updates.get` that has something new answers with a gap instead.
    pub fn gap_next(&self, phone: &str) {
        if let Some(acc) = self.shared.lock().accounts.get_mut(phone) {
            acc.gap_next = true;
        }
    }

    /// How many live sessions `phone` has (0 after a log out or a revocation).
    pub fn sessions(&self, phone: &str) -> usize {
        self.shared
            .lock()
            .accounts
            .get(phone)
            .map_or(0, |a| a.sessions.len())
    }
}
