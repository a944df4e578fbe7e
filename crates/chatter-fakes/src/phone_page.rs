//! The demo's "customer's phone" for every messenger: one page listing the simulated customers
//! of VK, Max, Avito, WhatsApp and SMS (and links to the Telegram bot's own phone and to the
//! website of the API source), and per customer the dialogue as they see it — what they wrote
//! and what the business answered — with a box to write as them. What a customer writes goes
//! through the fake provider exactly as the demo's script does, so Chatter receives it the way
//! it would receive a real customer's message.

use crate::avito::{BuyerMessage, FakeAvito};
use crate::max::{CustomerMessage as MaxMessage, FakeMax};
use crate::server::{escape_html, unix_millis, PageServer};
use crate::sms::FakeSms;
use crate::vk::{FakeVk, VkCustomerMessage};
use crate::whatsapp::FakeWhatsApp;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

/// One simulated customer of one messenger, as the phone page drives them.
pub trait PhoneLine: Send + Sync {
    /// The messenger, as a person names it («ВКонтакте»).
    fn messenger(&self) -> &'static str;
    /// The customer's name.
    fn customer(&self) -> String;
    /// The customer writes `text` (through the fake provider).
    fn write(&self, text: &str);
    /// What the business sent this customer so far, oldest first: (provider's id, text).
    fn replies(&self) -> Vec<(String, String)>;
}

/// A line of a dialogue: when it was seen (ms), whether the customer wrote it, its text.
type Said = (i64, bool, String);

struct Customer {
    line: Box<dyn PhoneLine>,
    said: Mutex<Vec<Said>>,
    /// Replies already placed in `said`, by the provider's id.
    seen: Mutex<HashSet<String>>,
}

impl Customer {
    /// The dialogue, replies placed when first seen (the page refreshes every two seconds).
    fn dialogue(&self) -> Vec<Said> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut said = self.said.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, text) in self.line.replies() {
            if seen.insert(id) {
                said.push((unix_millis(), false, text));
            }
        }
        said.clone()
    }
}

/// The customers the page shows; the demo's script writes through it too, so its lines appear
/// in the dialogues.
#[derive(Clone, Default)]
pub struct Phones {
    customers: Arc<Vec<Customer>>,
    links: Arc<Vec<(String, String)>>,
}

impl Phones {
    /// `links`: other phones to list first (title, URL), e.g. the Telegram bot's.
    pub fn new(lines: Vec<Box<dyn PhoneLine>>, links: Vec<(String, String)>) -> Phones {
        let customers = lines
            .into_iter()
            .map(|line| Customer {
                line,
                said: Mutex::new(Vec::new()),
                seen: Mutex::new(HashSet::new()),
            })
            .collect();
        Phones {
            customers: Arc::new(customers),
            links: Arc::new(links),
        }
    }

    /// Customer `i` writes `text`: sent through the provider and kept in the dialogue. Blank
    /// text is ignored. Returns whether there is such a customer.
    pub fn write(&self, i: usize, text: &str) -> bool {
        let Some(c) = self.customers.get(i) else {
            return false;
        };
        let text = text.trim();
        if text.is_empty() {
            return true;
        }
        // Replies sent before this line are placed before it.
        c.dialogue();
        c.line.write(text);
        c.said.lock().unwrap_or_else(PoisonError::into_inner).push((
            unix_millis(),
            true,
            text.to_owned(),
        ));
        true
    }

    /// The first customer of `messenger`, if any.
    pub fn index_of(&self, messenger: &str) -> Option<usize> {
        self.customers
            .iter()
            .position(|c| c.line.messenger() == messenger)
    }
}

/// The running page. Dropping it stops the server.
pub struct PhonePage {
    server: PageServer,
}

impl PhonePage {
    /// Listens on `127.0.0.1:0`.
    pub async fn start(phones: Phones) -> std::io::Result<PhonePage> {
        let app = Router::new()
            .route("/", get(index))
            .route("/c/{i}", get(dialogue).post(write))
            .with_state(phones);
        let server = PageServer::start(app, "the customers' phone page stopped").await?;
        Ok(PhonePage { server })
    }

    pub fn url(&self) -> String {
        format!("{}/", self.server.base_url)
    }
}

fn head(title: &str, refresh: bool) -> String {
    format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{}\
         <title>{}</title><style>body{{font-family:sans-serif;max-width:40em;margin:1em auto;padding:0 1em}}\
         .messages{{list-style:none;padding:0}}.messages li{{margin:.4em 0;padding:.4em .6em;border-radius:.5em}}\
         .customer{{background:#eef}}.business{{background:#efe;margin-left:3em}}\
         form{{display:flex;flex-wrap:wrap;gap:.5em}}form label{{flex-basis:100%}}input{{flex:1;min-width:0;font-size:1em;padding:.4em}}</style></head><body>",
        if refresh {
            "<meta http-equiv=\"refresh\" content=\"2\">"
        } else {
            ""
        },
        escape_html(title)
    )
}

async fn index(State(p): State<Phones>) -> Html<String> {
    let mut html = head("Телефоны клиентов", false);
    html.push_str("<h1>Телефоны клиентов</h1><ul>");
    for (title, url) in p.links.iter() {
        let _ = write!(
            html,
            "<li><a href=\"{}\">{}</a></li>",
            escape_html(url),
            escape_html(title)
        );
    }
    for (i, c) in p.customers.iter().enumerate() {
        let n = c.dialogue().len();
        let _ = write!(
            html,
            "<li><a href=\"/c/{i}\">{} — {}</a> — сообщений: {n}</li>",
            escape_html(c.line.messenger()),
            escape_html(&c.line.customer())
        );
    }
    html.push_str("</ul></body></html>");
    Html(html)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<p>Такого клиента нет. <a href=\"/\">Все телефоны</a></p>".to_owned()),
    )
        .into_response()
}

async fn dialogue(State(p): State<Phones>, Path(i): Path<usize>) -> Response {
    let Some(c) = p.customers.get(i) else {
        return not_found();
    };
    let title = format!("{} — {}", c.line.messenger(), c.line.customer());
    let mut html = head(&title, true);
    let _ = write!(
        html,
        "<p><a href=\"/\">← Все телефоны</a></p><h1>{}</h1><ul class=\"messages\">",
        escape_html(&title)
    );
    let said = c.dialogue();
    if said.is_empty() {
        html.push_str("<li>Сообщений пока нет.</li>");
    }
    for (_, customer, text) in said {
        let _ = write!(
            html,
            "<li class=\"{}\"><b>{}</b>: {}</li>",
            if customer { "customer" } else { "business" },
            if customer {
                "Клиент"
            } else {
                "Компания"
            },
            escape_html(&text)
        );
    }
    let _ = write!(
        html,
        "</ul><form method=\"post\" action=\"/c/{i}\"><label for=\"text\">Написать как клиент</label>\
         <input id=\"text\" name=\"text\" autofocus required maxlength=\"1000\">\
         <button type=\"submit\">Отправить</button></form></body></html>"
    );
    Html(html).into_response()
}

async fn write(
    State(p): State<Phones>,
    Path(i): Path<usize>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let text = form.get("text").map(String::as_str).unwrap_or("");
    if !p.write(i, text) {
        return not_found();
    }
    Redirect::to(&format!("/c/{i}")).into_response()
}

/// A VK community's customer.
pub struct VkLine {
    pub vk: FakeVk,
    pub group_id: i64,
    pub user_id: i64,
    pub name: String,
}

impl PhoneLine for VkLine {
    fn messenger(&self) -> &'static str {
        "ВКонтакте"
    }
    fn customer(&self) -> String {
        self.name.clone()
    }
    fn write(&self, text: &str) {
        self.vk
            .customer_writes(self.group_id, VkCustomerMessage::text(self.user_id, text));
    }
    fn replies(&self) -> Vec<(String, String)> {
        self.vk
            .sent(self.group_id)
            .into_iter()
            .filter(|m| m.peer_id == self.user_id)
            .map(|m| (m.message_id.to_string(), m.text))
            .collect()
    }
}

/// A Max bot's customer (in a dialogue with the bot).
pub struct MaxLine {
    pub max: FakeMax,
    pub token: String,
    pub user_id: i64,
    pub first_name: String,
    pub last_name: Option<String>,
}

impl PhoneLine for MaxLine {
    fn messenger(&self) -> &'static str {
        "Max"
    }
    fn customer(&self) -> String {
        match &self.last_name {
            Some(l) => format!("{} {l}", self.first_name),
            None => self.first_name.clone(),
        }
    }
    fn write(&self, text: &str) {
        self.max.customer_writes(
            &self.token,
            MaxMessage {
                last_name: self.last_name.clone(),
                ..MaxMessage::text(self.user_id, &self.first_name, text)
            },
        );
    }
    fn replies(&self) -> Vec<(String, String)> {
        let Some(chat) = self.max.dialog_of(&self.token, self.user_id) else {
            return Vec::new();
        };
        self.max
            .sent(&self.token)
            .into_iter()
            .filter(|m| m.chat_id == chat)
            .map(|m| (m.mid, m.text))
            .collect()
    }
}

/// An Avito buyer asking about one item.
pub struct AvitoLine {
    pub avito: FakeAvito,
    pub client_id: String,
    pub buyer_id: i64,
    pub name: String,
    pub item_id: i64,
    pub item_title: String,
    /// The buyer's chat about the item, known once they have written.
    pub chat: Mutex<Option<String>>,
}

impl PhoneLine for AvitoLine {
    fn messenger(&self) -> &'static str {
        "Авито"
    }
    fn customer(&self) -> String {
        format!("{} (объявление: {})", self.name, self.item_title)
    }
    fn write(&self, text: &str) {
        let mut m = BuyerMessage::text(self.buyer_id, &self.name, self.item_id, text);
        m.item_title = self.item_title.clone();
        let (chat, _) = self.avito.customer_writes(&self.client_id, m);
        *self.chat.lock().unwrap_or_else(PoisonError::into_inner) = Some(chat);
    }
    fn replies(&self) -> Vec<(String, String)> {
        let Some(chat) = self
            .chat
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return Vec::new();
        };
        self.avito
            .sent(&self.client_id)
            .into_iter()
            .filter(|m| m.chat_id == chat)
            .map(|m| (m.id, m.text))
            .collect()
    }
}

/// A WhatsApp customer of one business number.
pub struct WhatsAppLine {
    pub whatsapp: FakeWhatsApp,
    pub phone_number_id: String,
    /// The customer's WhatsApp id (their number, digits only).
    pub wa_id: String,
    pub name: String,
}

impl PhoneLine for WhatsAppLine {
    fn messenger(&self) -> &'static str {
        "WhatsApp"
    }
    fn customer(&self) -> String {
        self.name.clone()
    }
    fn write(&self, text: &str) {
        self.whatsapp
            .customer_writes(&self.phone_number_id, &self.wa_id, &self.name, text);
    }
    fn replies(&self) -> Vec<(String, String)> {
        self.whatsapp
            .sent(&self.phone_number_id)
            .into_iter()
            .filter(|m| m.to == self.wa_id)
            .map(|m| {
                let text = match (&m.text, &m.template) {
                    (Some(t), _) => t.clone(),
                    (None, Some(name)) => {
                        format!("[шаблон {name}] {}", m.template_params.join(", "))
                    }
                    (None, None) => m
                        .caption
                        .clone()
                        .or(m.filename.clone())
                        .unwrap_or_else(|| format!("[{}]", m.kind)),
                };
                (m.id, text)
            })
            .collect()
    }
}

/// An SMS customer of one gateway account.
pub struct SmsLine {
    pub sms: FakeSms,
    pub key: String,
    /// The customer's number as they write it; compared by digits.
    pub phone: String,
    /// The business's number the customer writes to.
    pub to: String,
    pub name: String,
}

impl PhoneLine for SmsLine {
    fn messenger(&self) -> &'static str {
        "SMS"
    }
    fn customer(&self) -> String {
        format!("{} ({})", self.name, self.phone)
    }
    fn write(&self, text: &str) {
        self.sms
            .customer_sends(&self.key, &self.phone, &self.to, text);
    }
    fn replies(&self) -> Vec<(String, String)> {
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        let phone = digits(&self.phone);
        self.sms
            .sent(&self.key)
            .into_iter()
            .filter(|m| digits(&m.to) == phone)
            .map(|m| (m.id, m.text))
            .collect()
    }
}
