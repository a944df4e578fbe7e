//! Fake amoCRM: one loopback server playing every amoCRM host as `docs/providers/amocrm.md` §1–§4
//! describes — the OAuth consent page and token endpoint (`www.amocrm.ru`, `{subdomain}.amocrm.ru`),
//! the REST API v4 of each account (chosen by the access token, since every account shares the
//! one base URL) and the Chats API (`amojo.amocrm.ru`). State is real: tokens rotate, entities are
//! stored and searchable, a per-account limiter answers 429, amojo checks signatures both ways.
//!
//! A control API lets tests approve consent, inject failures, revoke tokens, move the clock and
//! play a manager answering in a chat; `/ui/{subdomain}` shows the same for a person (`chatter demo`).

mod amojo;
mod oauth;
mod rest;
mod ui;

use crate::server::{self, unix_secs, StopGuard};
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request body the fake reads.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// amoCRM's documented limit: 7 requests per second per integration and account (§2.2).
const DEFAULT_RATE_LIMIT: u32 = 7;
const CODE_TTL: i64 = 20 * 60;
const ACCESS_TTL: i64 = 86_400;
const REFRESH_TTL: i64 = 90 * 86_400;
/// amoCRM's system statuses, the same ids in every pipeline (§3.2).
pub const STATUS_WON: i64 = 142;
/// See [`STATUS_WON`].
pub const STATUS_LOST: i64 = 143;

/// An amoCRM account (`account_id` of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub i64);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One request the fake received, for asserting rates and call sequences.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub at: Instant,
    /// `"GET /api/v4/leads"` (path without the query).
    pub line: String,
    /// The account the access token belongs to (REST calls with a valid token only).
    pub account: Option<AccountId>,
    pub status: u16,
}

/// A file a manager sends from amoCRM's chat (see [`FakeAmo::manager_sends_file`]).
#[derive(Debug, Clone, Copy)]
pub struct ManagerFile<'a> {
    /// `picture`, `file`, `voice`, `video` or `audio`.
    pub kind: &'a str,
    pub caption: &'a str,
    pub file_name: &'a str,
    pub mime: &'a str,
    pub bytes: &'a [u8],
}

/// Handle to a running fake. Clones share the server; it stops when the last handle drops or on
/// [`FakeAmo::shutdown`].
#[derive(Clone)]
pub struct FakeAmo {
    shared: Arc<Shared>,
    guard: Arc<StopGuard>,
}

/// The fake's world behind its one lock, with what every fake shares (see [`server::Shared`]).
pub(crate) type Shared = server::Shared<AmoState>;

/// Who a code or token was issued to.
#[derive(Clone)]
struct Grant {
    account: i64,
    client_id: String,
    user_id: i64,
    /// Unix seconds on the fake's clock.
    expires_at: i64,
}

struct Integration {
    secret: String,
    redirect_uri: String,
    /// Where "integration disabled" hooks go (§1.7), when set.
    disabled_hook_url: Option<String>,
}

struct Channel {
    secret: String,
    webhook_url: Option<String>,
    /// scope_id → account id.
    connections: BTreeMap<String, i64>,
}

struct Injected {
    prefix: String,
    status: u16,
    remaining: usize,
    /// The request is carried out first and only its answer is lost (see
    /// [`FakeAmo::lose_answer_next`]).
    after_work: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(crate) enum Kind {
    Leads,
    Contacts,
    Companies,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        match s {
            "leads" => Some(Kind::Leads),
            "contacts" => Some(Kind::Contacts),
            "companies" => Some(Kind::Companies),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Leads => "leads",
            Kind::Contacts => "contacts",
            Kind::Companies => "companies",
        }
    }

    const ALL: [Kind; 3] = [Kind::Leads, Kind::Contacts, Kind::Companies];
}

/// A symmetric link between two entities (§3.7).
#[derive(Clone, PartialEq, Eq)]
struct Link {
    a: (Kind, i64),
    b: (Kind, i64),
    main: bool,
}

impl Link {
    /// The other end when `from` is one end.
    fn other(&self, from: (Kind, i64)) -> Option<(Kind, i64)> {
        if self.a == from {
            Some(self.b)
        } else if self.b == from {
            Some(self.a)
        } else {
            None
        }
    }
}

/// A chat inside amojo: one per (scope, conversation).
struct Chat {
    id: String,
    scope_id: String,
    /// The integration's own chat id.
    conversation_id: Option<String>,
    /// The client as amojo keeps them: `{id, client_id, name, avatar, phone, email}`.
    user: Value,
    source_external_id: Option<String>,
    messages: Vec<Value>,
}

struct Account {
    id: i64,
    subdomain: String,
    name: String,
    amojo_id: String,
    users: Vec<Value>,
    pipelines: Vec<Value>,
    custom_fields: BTreeMap<Kind, Vec<Value>>,
    entities: BTreeMap<Kind, BTreeMap<i64, Value>>,
    tags: BTreeMap<Kind, Vec<Value>>,
    links: Vec<Link>,
    notes: Vec<Value>,
    tasks: Vec<Value>,
    chat_links: Vec<Value>,
    chats: Vec<Chat>,
    webhooks: Vec<Value>,
    sources: Vec<Value>,
    /// Requests admitted in the last second, for the limiter.
    window: VecDeque<Instant>,
    throttled: usize,
}

impl Account {
    fn admin_id(&self) -> i64 {
        self.users
            .first()
            .and_then(|u| u["id"].as_i64())
            .unwrap_or_default()
    }

    fn main_pipeline(&self) -> Option<&Value> {
        self.pipelines
            .iter()
            .find(|p| p["is_main"] == json!(true))
            .or_else(|| self.pipelines.first())
    }

    fn pipeline(&self, id: i64) -> Option<&Value> {
        self.pipelines.iter().find(|p| p["id"].as_i64() == Some(id))
    }

    fn user(&self, id: i64) -> Option<&Value> {
        self.users.iter().find(|u| u["id"].as_i64() == Some(id))
    }

    fn entity(&self, kind: Kind, id: i64) -> Option<&Value> {
        self.entities.get(&kind).and_then(|m| m.get(&id))
    }

    fn linked(&self, from: (Kind, i64), to: Kind) -> Vec<(i64, bool)> {
        self.links
            .iter()
            .filter_map(|l| l.other(from).map(|o| (o, l.main)))
            .filter(|(o, _)| o.0 == to)
            .map(|(o, main)| (o.1, main))
            .collect()
    }

    fn link(&mut self, a: (Kind, i64), b: (Kind, i64), main: bool) {
        // A lead has at most one company (§3.7): linking another replaces it.
        let lead_company = match (a.0, b.0) {
            (Kind::Leads, Kind::Companies) => Some(a),
            (Kind::Companies, Kind::Leads) => Some(b),
            _ => None,
        };
        if let Some(lead) = lead_company {
            self.links
                .retain(|l| l.other(lead).is_none_or(|o| o.0 != Kind::Companies));
        }
        if let Some(existing) = self.links.iter_mut().find(|l| l.other(a) == Some(b)) {
            existing.main = main;
            return;
        }
        self.links.push(Link { a, b, main });
    }

    /// The unsorted status of a pipeline (type 1).
    fn unsorted_status(&self, pipeline: i64) -> Option<i64> {
        let p = self.pipeline(pipeline)?;
        p["_embedded"]["statuses"]
            .as_array()?
            .iter()
            .find(|s| s["type"] == json!(1))
            .and_then(|s| s["id"].as_i64())
    }

    /// The first regular stage, where a lead without a status goes (§3.2).
    fn first_stage(&self, pipeline: i64) -> Option<i64> {
        let p = self.pipeline(pipeline)?;
        p["_embedded"]["statuses"]
            .as_array()?
            .iter()
            .find(|s| s["type"] == json!(0) && !is_closed_status(s["id"].as_i64()))
            .and_then(|s| s["id"].as_i64())
    }

    fn has_status(&self, pipeline: i64, status: i64) -> bool {
        self.pipeline(pipeline).is_some_and(|p| {
            p["_embedded"]["statuses"]
                .as_array()
                .is_some_and(|ss| ss.iter().any(|s| s["id"].as_i64() == Some(status)))
        })
    }

    fn user_name(&self, id: i64) -> String {
        self.user(id)
            .and_then(|u| u["name"].as_str())
            .unwrap_or("—")
            .to_owned()
    }
}

fn is_closed_status(status: Option<i64>) -> bool {
    matches!(status, Some(STATUS_WON | STATUS_LOST))
}

pub(crate) struct AmoState {
    /// Seconds added to the wall clock (see [`FakeAmo::advance_clock`]).
    offset: i64,
    next_id: i64,
    accounts: BTreeMap<i64, Account>,
    integrations: HashMap<String, Integration>,
    channels: HashMap<String, Channel>,
    codes: HashMap<String, Grant>,
    access_tokens: HashMap<String, Grant>,
    refresh_tokens: HashMap<String, Grant>,
    failures: Vec<Injected>,
    /// Path prefixes whose next requests hang unanswered, before any work, with how many.
    hangs: Vec<(String, usize)>,
    /// Requests left hanging so far.
    hanging: usize,
    requests: Vec<RecordedRequest>,
    rate_limit: u32,
    /// Files managers sent (`FakeAmo::manager_sends_file`), served at `/attachments/{id}/{name}`
    /// as amojo serves a chat's files: id → (type, bytes).
    files: HashMap<String, (String, Vec<u8>)>,
    /// Media URLs of accepted chat messages, to download as amoCRM does: (account, amojo
    /// message id, URL).
    to_fetch: Vec<(i64, String, String)>,
}

impl AmoState {
    fn now(&self) -> i64 {
        unix_secs() + self.offset
    }

    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn account_mut(&mut self, id: AccountId) -> Option<&mut Account> {
        self.accounts.get_mut(&id.0)
    }

    fn account_by_amojo(&self, amojo_id: &str) -> Option<i64> {
        self.accounts
            .values()
            .find(|a| a.amojo_id == amojo_id)
            .map(|a| a.id)
    }

    /// Takes one injected failure whose prefix matches `path` (answered instead of the work).
    fn take_failure(&mut self, path: &str) -> Option<u16> {
        self.take_injected(path, false)
    }

    /// Takes one injected "done, but the answer is lost" whose prefix matches `path`.
    fn take_lost_answer(&mut self, path: &str) -> Option<u16> {
        self.take_injected(path, true)
    }

    fn take_injected(&mut self, path: &str, after_work: bool) -> Option<u16> {
        let found = self.failures.iter_mut().find(|f| {
            f.remaining > 0 && f.after_work == after_work && path.starts_with(&f.prefix)
        })?;
        found.remaining -= 1;
        let status = found.status;
        self.failures.retain(|f| f.remaining > 0);
        Some(status)
    }
}

impl FakeAmo {
    /// Starts the fake on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<FakeAmo> {
        let first_id = rand::thread_rng().gen_range(1_000_000..2_000_000);
        let spec = server::Spec::new(
            AmoState {
                offset: 0,
                next_id: first_id,
                accounts: BTreeMap::new(),
                integrations: HashMap::new(),
                channels: HashMap::new(),
                codes: HashMap::new(),
                access_tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                failures: Vec::new(),
                hangs: Vec::new(),
                hanging: 0,
                requests: Vec::new(),
                rate_limit: DEFAULT_RATE_LIMIT,
                files: HashMap::new(),
                to_fetch: Vec::new(),
            },
            "fake amoCRM server stopped",
        );
        let (shared, guard) = server::start(spec, |shared| {
            Router::new()
                .route(
                    "/oauth",
                    get(oauth::consent_page).post(oauth::consent_submit),
                )
                .route("/ui", get(ui::index))
                .route("/ui/{subdomain}", get(ui::account_page))
                .route("/ui/{subdomain}/chats/{chat_id}/reply", post(ui::reply))
                .fallback(dispatch)
                .with_state(shared)
        })
        .await?;
        Ok(FakeAmo { shared, guard })
    }

    /// Stops the server now.
    pub fn shutdown(&self) {
        self.guard.stop();
    }

    /// `http://127.0.0.1:PORT`: REST at `{base}/api/v4/…`, OAuth at `{base}/oauth2/access_token`,
    /// consent at `{base}/oauth`, amojo at `{base}/v2/origin/custom/…`, demo page at `{base}/ui`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Creates an account with the default pipeline «Воронка» (Неразобранное, four stages, 142
    /// won, 143 lost), an admin and a manager, and the predefined PHONE/EMAIL contact fields plus a
    /// text field on leads and companies.
    pub fn create_account(&self, subdomain: &str, name: &str) -> AccountId {
        let mut st = self.shared.lock();
        let id = 31_000_000 + st.accounts.len() as i64 + 1;
        let amojo_id = uuid::Uuid::new_v4().to_string();
        let users = vec![
            user_json(
                &mut st,
                id,
                "Администратор",
                &format!("admin@{subdomain}.example"),
                true,
            ),
            user_json(
                &mut st,
                id,
                "Менеджер",
                &format!("manager@{subdomain}.example"),
                false,
            ),
        ];
        let mut account = Account {
            id,
            subdomain: subdomain.to_owned(),
            name: name.to_owned(),
            amojo_id,
            users,
            pipelines: Vec::new(),
            custom_fields: BTreeMap::new(),
            entities: Kind::ALL.iter().map(|k| (*k, BTreeMap::new())).collect(),
            tags: Kind::ALL.iter().map(|k| (*k, Vec::new())).collect(),
            links: Vec::new(),
            notes: Vec::new(),
            tasks: Vec::new(),
            chat_links: Vec::new(),
            chats: Vec::new(),
            webhooks: Vec::new(),
            sources: Vec::new(),
            window: VecDeque::new(),
            throttled: 0,
        };
        let pipeline = pipeline_json(
            &mut st,
            id,
            "Воронка",
            true,
            &[
                "Первичный контакт",
                "Переговоры",
                "Принимают решение",
                "Согласование договора",
            ],
        );
        account.pipelines.push(pipeline);
        let phone_enums = enums(&mut st, &["WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"]);
        let email_enums = enums(&mut st, &["WORK", "PRIV", "OTHER"]);
        let mut contact_fields = vec![
            field_json(
                &mut st,
                id,
                "contacts",
                "Телефон",
                Some("PHONE"),
                "multitext",
            ),
            field_json(&mut st, id, "contacts", "Email", Some("EMAIL"), "multitext"),
            field_json(
                &mut st,
                id,
                "contacts",
                "Должность",
                Some("POSITION"),
                "text",
            ),
        ];
        contact_fields[0]["enums"] = phone_enums.clone();
        contact_fields[1]["enums"] = email_enums.clone();
        let mut company_fields = vec![
            field_json(
                &mut st,
                id,
                "companies",
                "Телефон",
                Some("PHONE"),
                "multitext",
            ),
            field_json(
                &mut st,
                id,
                "companies",
                "Email",
                Some("EMAIL"),
                "multitext",
            ),
            field_json(&mut st, id, "companies", "Web", Some("WEB"), "url"),
        ];
        company_fields[0]["enums"] = phone_enums;
        company_fields[1]["enums"] = email_enums;
        let lead_fields = vec![field_json(&mut st, id, "leads", "Источник", None, "text")];
        account.custom_fields.insert(Kind::Contacts, contact_fields);
        account
            .custom_fields
            .insert(Kind::Companies, company_fields);
        account.custom_fields.insert(Kind::Leads, lead_fields);
        st.accounts.insert(id, account);
        AccountId(id)
    }

    /// Adds a pipeline (not main) with Неразобранное, the given stages, 142 and 143; returns its
    /// id. Its statuses are in [`FakeAmo::pipelines`].
    pub fn add_pipeline(&self, account: AccountId, name: &str, stages: &[&str]) -> i64 {
        let mut st = self.shared.lock();
        let pipeline = pipeline_json(&mut st, account.0, name, false, stages);
        let id = pipeline["id"].as_i64().unwrap_or_default();
        if let Some(acc) = st.account_mut(account) {
            let sort = acc.pipelines.len() as i64 + 1;
            let mut pipeline = pipeline;
            pipeline["sort"] = json!(sort);
            acc.pipelines.push(pipeline);
        }
        id
    }

    /// Adds an active, non-admin user; returns the user id.
    pub fn add_user(&self, account: AccountId, name: &str, email: &str) -> i64 {
        let mut st = self.shared.lock();
        let user = user_json(&mut st, account.0, name, email, false);
        let id = user["id"].as_i64().unwrap_or_default();
        if let Some(acc) = st.account_mut(account) {
            acc.users.push(user);
        }
        id
    }

    /// Adds a custom field (`entity`: leads, contacts, companies; `field_type` e.g. `text`,
    /// `select` with `enum_values`); returns the field id.
    pub fn add_custom_field(
        &self,
        account: AccountId,
        entity: &str,
        name: &str,
        field_type: &str,
        enum_values: &[&str],
    ) -> i64 {
        let mut st = self.shared.lock();
        let Some(kind) = Kind::parse(entity) else {
            return 0;
        };
        let mut field = field_json(&mut st, account.0, entity, name, None, field_type);
        if !enum_values.is_empty() {
            field["enums"] = enums(&mut st, enum_values);
        }
        let id = field["id"].as_i64().unwrap_or_default();
        if let Some(acc) = st.account_mut(account) {
            acc.custom_fields.entry(kind).or_default().push(field);
        }
        id
    }

    /// The account's numeric id in amojo terms (`GET /api/v4/account?with=amojo_id`).
    pub fn amojo_id(&self, account: AccountId) -> String {
        let st = self.shared.lock();
        st.accounts
            .get(&account.0)
            .map(|a| a.amojo_id.clone())
            .unwrap_or_default()
    }

    /// Users as `GET /api/v4/users?with=amojo_id` returns them; the first is the admin.
    pub fn users(&self, account: AccountId) -> Vec<Value> {
        let st = self.shared.lock();
        st.accounts
            .get(&account.0)
            .map(|a| a.users.clone())
            .unwrap_or_default()
    }

    /// Pipelines with their statuses, as `GET /api/v4/leads/pipelines` embeds them.
    pub fn pipelines(&self, account: AccountId) -> Vec<Value> {
        let st = self.shared.lock();
        st.accounts
            .get(&account.0)
            .map(|a| a.pipelines.clone())
            .unwrap_or_default()
    }

    /// Registers an OAuth integration (its Redirect URI must then be matched exactly).
    pub fn register_integration(&self, client_id: &str, client_secret: &str, redirect_uri: &str) {
        self.shared.lock().integrations.insert(
            client_id.to_owned(),
            Integration {
                secret: client_secret.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                disabled_hook_url: None,
            },
        );
    }

    /// Registers a Chats API channel (§4.1). `webhook_url` may contain the `:scope_id` marker.
    pub fn register_chat_channel(&self, channel_id: &str, secret: &str, webhook_url: Option<&str>) {
        self.shared.lock().channels.insert(
            channel_id.to_owned(),
            Channel {
                secret: secret.to_owned(),
                webhook_url: webhook_url.map(str::to_owned),
                connections: BTreeMap::new(),
            },
        );
    }

    /// What an admin clicking «Разрешить» on the consent page does: issues a 20-minute,
    /// single-use code and returns the redirect URL
    /// `{redirect_uri}?code=…&state=…&referer={subdomain}.amocrm.ru&platform=1&client_id=…`.
    /// Empty when the integration or account is unknown.
    pub fn approve(&self, account: AccountId, client_id: &str, state: &str) -> String {
        let mut st = self.shared.lock();
        oauth::approve(&mut st, account.0, None, client_id, state).unwrap_or_default()
    }

    /// [`FakeAmo::approve`] by another user of the account (from [`FakeAmo::add_user`]): the
    /// token is theirs, so `/api/v4/account` names them as `current_user_id`. Empty when the
    /// user is not in the account.
    pub fn approve_as(
        &self,
        account: AccountId,
        user_id: i64,
        client_id: &str,
        state: &str,
    ) -> String {
        let mut st = self.shared.lock();
        oauth::approve(&mut st, account.0, Some(user_id), client_id, state).unwrap_or_default()
    }

    /// Sets the integration's "disabled hook" URL (§1.7), as its settings in amoCRM do.
    pub fn set_disabled_hook_url(&self, client_id: &str, url: &str) {
        if let Some(i) = self.shared.lock().integrations.get_mut(client_id) {
            i.disabled_hook_url = Some(url.to_owned());
        }
    }

    /// An admin switches the integration off in the account: its tokens stop working (as
    /// [`FakeAmo::revoke_tokens`]) and amoCRM calls the disabled-hook URL with
    /// `account_id`, `client_uuid` and `signature = hex(HMAC-SHA256(client_secret,
    /// "{client_uuid}|{account_id}"))`. Returns the receiver's HTTP status.
    pub async fn disable_integration(
        &self,
        account: AccountId,
        client_id: &str,
    ) -> Result<u16, String> {
        let (url, secret) = {
            let st = self.shared.lock();
            let i = st
                .integrations
                .get(client_id)
                .ok_or_else(|| format!("no integration {client_id}"))?;
            let url = i
                .disabled_hook_url
                .clone()
                .ok_or_else(|| format!("integration {client_id} has no disabled-hook URL"))?;
            (url, i.secret.clone())
        };
        self.revoke_tokens(account);
        let signature = oauth::disabled_hook_signature(&secret, client_id, account.0);
        let mut url = url::Url::parse(&url).map_err(|e| format!("bad hook URL: {e}"))?;
        url.query_pairs_mut()
            .append_pair("account_id", &account.0.to_string())
            .append_pair("client_uuid", client_id)
            .append_pair("signature", &signature);
        let response = self
            .shared
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("hook delivery failed: {e}"))?;
        Ok(response.status().as_u16())
    }

    /// Stored contacts as `GET /api/v4/contacts/{id}?with=leads` returns them.
    pub fn contacts(&self, account: AccountId) -> Vec<Value> {
        self.entities(account, Kind::Contacts)
    }

    /// Stored companies as the API returns them.
    pub fn companies(&self, account: AccountId) -> Vec<Value> {
        self.entities(account, Kind::Companies)
    }

    /// Stored leads as `GET /api/v4/leads/{id}?with=contacts` returns them.
    pub fn leads(&self, account: AccountId) -> Vec<Value> {
        self.entities(account, Kind::Leads)
    }

    fn entities(&self, account: AccountId, kind: Kind) -> Vec<Value> {
        let st = self.shared.lock();
        let Some(acc) = st.accounts.get(&account.0) else {
            return Vec::new();
        };
        acc.entities
            .get(&kind)
            .map(|m| {
                m.values()
                    .map(|e| rest::render(acc, &self.shared.base_url, kind, e, true))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A person in amoCRM makes `user_id` responsible for a deal (the card's "responsible"
    /// picker): the deal's `updated_at` moves to now, as any edit moves it. Returns whether the
    /// deal exists.
    pub fn set_lead_responsible(&self, account: AccountId, lead_id: i64, user_id: i64) -> bool {
        let mut st = self.shared.lock();
        let now = st.now();
        let Some(lead) = st
            .accounts
            .get_mut(&account.0)
            .and_then(|a| a.entities.get_mut(&Kind::Leads))
            .and_then(|m| m.get_mut(&lead_id))
        else {
            return false;
        };
        lead["responsible_user_id"] = json!(user_id);
        // A later second than any earlier change, so "newest first" sees it first.
        let before = lead["updated_at"].as_i64().unwrap_or_default();
        lead["updated_at"] = json!(now.max(before + 1));
        true
    }

    /// Stored notes (every entity type), oldest first.
    pub fn notes(&self, account: AccountId) -> Vec<Value> {
        let st = self.shared.lock();
        st.accounts
            .get(&account.0)
            .map(|a| a.notes.clone())
            .unwrap_or_default()
    }

    /// Stored tasks, oldest first.
    pub fn tasks(&self, account: AccountId) -> Vec<Value> {
        let st = self.shared.lock();
        st.accounts
            .get(&account.0)
            .map(|a| a.tasks.clone())
            .unwrap_or_default()
    }

    /// Every chat message of the account, both directions, in order: `{id, msgid, chat_id,
    /// conversation_id, scope_id, direction, sender, receiver, message, timestamp, silent,
    /// delivery_status, error_code, error}`.
    pub fn chat_messages(&self, account: AccountId) -> Vec<Value> {
        let st = self.shared.lock();
        st.accounts
            .get(&account.0)
            .map(|a| a.chats.iter().flat_map(|c| c.messages.clone()).collect())
            .unwrap_or_default()
    }

    /// The account's chats: `{id, scope_id, conversation_id, user, source, contact_id}`.
    pub fn chats(&self, account: AccountId) -> Vec<Value> {
        let st = self.shared.lock();
        st.accounts
            .get(&account.0)
            .map(|a| a.chats.iter().map(|c| amojo::chat_json(a, c)).collect())
            .unwrap_or_default()
    }

    /// A manager answers `text` in a chat (`chat_id`: the amojo chat id or the integration's
    /// `conversation_id`): stores the outgoing message and POSTs the v2 webhook (§4.6), signed
    /// with the channel secret, to the channel's webhook URL. Returns the receiver's HTTP status.
    pub async fn manager_replies(
        &self,
        account: AccountId,
        chat_id: &str,
        text: &str,
    ) -> Result<u16, String> {
        amojo::manager_replies(&self.shared, account.0, chat_id, text).await
    }

    /// A manager sends a file in a chat (`kind`: `picture`, `file`, `voice`, `video` or
    /// `audio`, with `caption`): amojo keeps it at `{base}/attachments/{id}/{file_name}` and the
    /// v2 hook (§4.6) carries that URL in `message.media`, with `file_name` and `file_size`.
    /// Returns the receiver's HTTP status.
    pub async fn manager_sends_file(
        &self,
        account: AccountId,
        chat_id: &str,
        file: ManagerFile<'_>,
    ) -> Result<u16, String> {
        amojo::manager_sends_file(&self.shared, account.0, chat_id, file).await
    }

    /// The next `count` requests whose path starts with `path_prefix` answer `status` with
    /// amoCRM's error body for it (problem+json on REST and OAuth, amojo's error object on the
    /// Chats API, nginx's HTML page for 403 on REST).
    pub fn fail_next(&self, path_prefix: &str, status: u16, count: usize) {
        self.shared.lock().failures.push(Injected {
            prefix: path_prefix.to_owned(),
            status,
            remaining: count,
            after_work: false,
        });
    }

    /// The next `count` REST requests whose path starts with `path_prefix` are carried out in
    /// full (deals created, say), and then answered 504 Gateway Timeout, as amoCRM's front
    /// answers when its back end finished after the front stopped waiting: the client cannot
    /// tell whether anything happened.
    pub fn lose_answer_next(&self, path_prefix: &str, count: usize) {
        self.shared.lock().failures.push(Injected {
            prefix: path_prefix.to_owned(),
            status: 504,
            remaining: count,
            after_work: true,
        });
    }

    /// The next `count` requests whose path starts with `path_prefix` are recorded and never
    /// answered, and nothing of them is carried out: amoCRM stuck, so the client's request is
    /// in flight until the client gives up or dies.
    pub fn hang_next(&self, path_prefix: &str, count: usize) {
        if count > 0 {
            self.shared
                .lock()
                .hangs
                .push((path_prefix.to_owned(), count));
        }
    }

    /// How many requests have been left hanging so far (see [`FakeAmo::hang_next`]).
    pub fn hanging(&self) -> usize {
        self.shared.lock().hanging
    }

    /// Disables the integration in the account: every access and refresh token issued for it
    /// stops working (API → 401, refresh → 400), as when an admin switches it off (§1.4).
    pub fn revoke_tokens(&self, account: AccountId) {
        let mut st = self.shared.lock();
        st.access_tokens.retain(|_, g| g.account != account.0);
        st.refresh_tokens.retain(|_, g| g.account != account.0);
        st.codes.retain(|_, g| g.account != account.0);
        // Disabling the integration also disconnects its chat channels (§4.3).
        for channel in st.channels.values_mut() {
            channel.connections.retain(|_, acc| *acc != account.0);
        }
    }

    /// Moves the fake's clock forward: codes, access and refresh tokens expire by it and new
    /// timestamps use it. amojo's 15-minute `Date` window stays on the real clock, since clients
    /// sign with theirs.
    pub fn advance_clock(&self, by: Duration) {
        let mut st = self.shared.lock();
        st.offset += i64::try_from(by.as_secs()).unwrap_or(i64::MAX / 2);
    }

    /// Every request received: when and `"METHOD /path"`.
    pub fn requests(&self) -> Vec<(Instant, String)> {
        let st = self.shared.lock();
        st.requests.iter().map(|r| (r.at, r.line.clone())).collect()
    }

    /// REST requests made with one account's tokens (also those answered 429), with statuses.
    pub fn account_requests(&self, account: AccountId) -> Vec<RecordedRequest> {
        let st = self.shared.lock();
        st.requests
            .iter()
            .filter(|r| r.account == Some(account))
            .cloned()
            .collect()
    }

    /// How many requests of the account the limiter refused with 429.
    pub fn throttled(&self, account: AccountId) -> usize {
        let st = self.shared.lock();
        st.accounts.get(&account.0).map_or(0, |a| a.throttled)
    }

    /// Requests per rolling second admitted per account (default 7); more answer 429.
    pub fn set_rate_limit(&self, per_second: u32) {
        self.shared.lock().rate_limit = per_second;
    }
}

// ---------------------------------------------------------------------------------------------

/// Everything that is not a page: REST, token endpoint and amojo, each with its own error shapes.
async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return problem(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let line = format!("{} {}", parts.method, path);
    let at = Instant::now();
    let hang = {
        let mut st = shared.lock();
        let found = st
            .hangs
            .iter_mut()
            .find(|(prefix, n)| *n > 0 && path.starts_with(prefix.as_str()));
        let hang = found.map(|(_, n)| *n -= 1).is_some();
        st.hangs.retain(|(_, n)| *n > 0);
        if hang {
            st.hanging += 1;
        }
        hang
    };
    if hang {
        return std::future::pending().await;
    }
    let (response, account) = if path.starts_with("/api/v4/") || path.starts_with("/api/v2/") {
        rest::handle(
            &shared,
            &parts.method,
            &path,
            &query,
            &parts.headers,
            &body,
            at,
        )
    } else if path.starts_with("/v2/origin/custom/") {
        (
            amojo::handle(&shared, &parts.method, &path, &query, &parts.headers, &body),
            None,
        )
    } else if path.starts_with("/oauth2/") {
        (
            oauth::handle(&shared, &parts.method, &path, &parts.headers, &body),
            None,
        )
    } else if let Some(rest) = path.strip_prefix("/attachments/") {
        (amojo::serve_file(&shared, &parts.method, rest), None)
    } else {
        (problem(StatusCode::NOT_FOUND, "Route not found"), None)
    };
    shared.lock().requests.push(RecordedRequest {
        at,
        line,
        account: account.map(AccountId),
        status: response.status().as_u16(),
    });
    // amoCRM downloads a message's file from the integration's URL (no cookies, no session)
    // and keeps it; the fake does so before answering, and records what it got.
    amojo::fetch_media(&shared).await;
    response
}

/// amoCRM's error body (§2.1): `application/problem+json`.
fn problem(status: StatusCode, detail: &str) -> Response {
    problem_with(status, detail, None)
}

fn problem_with(status: StatusCode, detail: &str, validation: Option<Value>) -> Response {
    let mut body = json!({
        "title": status.canonical_reason().unwrap_or("Error"),
        "type": format!("https://httpstatus.es/{}", status.as_u16()),
        "status": status.as_u16(),
        "detail": detail,
    });
    if let Some(errors) = validation {
        body["validation-errors"] = errors;
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn hal(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/hal+json")],
        body.to_string(),
    )
        .into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Parses a JSON or form-encoded body into a JSON object.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Option<Value> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if form {
        let map: serde_json::Map<String, Value> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        Some(Value::Object(map))
    } else {
        serde_json::from_slice(body).ok()
    }
}

fn is_method(method: &Method, name: &str) -> bool {
    method.as_str().eq_ignore_ascii_case(name)
}

fn user_json(st: &mut AmoState, account: i64, name: &str, email: &str, admin: bool) -> Value {
    let id = 5_500_000 + st.id() % 1_000_000;
    let all = json!({"view":"A","edit":"A","add":"A","delete":"A","export":"A"});
    json!({
        "id": id, "name": name, "email": email, "lang": "ru",
        "amojo_id": uuid::Uuid::new_v4().to_string(),
        "uuid": uuid::Uuid::new_v4().to_string(),
        "rights": {
            "leads": all, "contacts": all, "companies": all,
            "tasks": {"edit":"A","delete":"A"},
            "mail_access": false, "catalog_access": false, "status_rights": [],
            "is_admin": admin, "is_free": false, "is_active": true,
            "group_id": null, "role_id": null,
        },
        "account_id": account,
    })
}

fn pipeline_json(
    st: &mut AmoState,
    account: i64,
    name: &str,
    main: bool,
    stages: &[&str],
) -> Value {
    let pipeline_id = st.id();
    let status = |id: i64, name: &str, sort: i64, editable: bool, kind: i64, color: &str| {
        json!({"id": id, "name": name, "sort": sort, "is_editable": editable, "pipeline_id": pipeline_id,
               "color": color, "type": kind, "account_id": account})
    };
    let mut statuses = vec![status(st.id(), "Неразобранное", 10, false, 1, "#c1c1c1")];
    for (i, stage) in stages.iter().enumerate() {
        statuses.push(status(
            st.id(),
            stage,
            20 + 10 * i as i64,
            true,
            0,
            "#99ccff",
        ));
    }
    statuses.push(status(
        STATUS_WON,
        "Успешно реализовано",
        10_000,
        false,
        0,
        "#CCFF66",
    ));
    statuses.push(status(
        STATUS_LOST,
        "Закрыто и не реализовано",
        11_000,
        false,
        0,
        "#D5D8DB",
    ));
    json!({"id": pipeline_id, "name": name, "sort": 1, "is_main": main, "is_unsorted_on": true,
           "is_archive": false, "account_id": account, "_embedded": {"statuses": statuses}})
}

fn field_json(
    st: &mut AmoState,
    account: i64,
    entity: &str,
    name: &str,
    code: Option<&str>,
    field_type: &str,
) -> Value {
    json!({"id": st.id(), "name": name, "code": code, "sort": 500, "type": field_type,
           "entity_type": entity, "is_predefined": code.is_some(), "is_deletable": code.is_none(),
           "is_api_only": false, "group_id": null, "required_statuses": null, "enums": null,
           "account_id": account})
}

fn enums(st: &mut AmoState, values: &[&str]) -> Value {
    Value::Array(
        values
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"id": st.id(), "value": v, "sort": 2 * (i + 1)}))
            .collect(),
    )
}
