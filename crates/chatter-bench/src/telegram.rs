//! Telegram pieces the benchmarks share: a server in webhook mode against the in-process fake
//! with one bot added through the Sources form, and realistic private-chat updates.

use crate::server::{self, Common, Server};
use anyhow::{bail, Context as _};
use chatter_fakes::telegram::FakeTelegram;
use reqwest::header::HeaderValue;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A signed-in company on a server in webhook mode with one bot source.
pub struct WebhookSetup {
    /// The fake stops when dropped, so the setup keeps it for the whole run.
    pub _fake: FakeTelegram,
    pub server: Server,
    pub cookie: HeaderValue,
    /// `{base}/hooks/telegram/{source_id}`.
    pub hook_url: String,
    /// The `secret_token` the server gave setWebhook.
    pub secret: String,
}

/// The public webhook base the server gives Telegram.
const PUBLIC: &str = "https://chatter.example.test";

/// Starts the fake and `chatter serve` in webhook mode, signs up, adds a bot through the
/// Sources form and waits until the server has set the bot's webhook on the fake.
pub async fn webhook_setup(common: &Common) -> anyhow::Result<WebhookSetup> {
    webhook_setup_with(common, |_| Vec::new()).await
}

/// [`webhook_setup`] with more environment for the server, made from its port.
pub async fn webhook_setup_with(
    common: &Common,
    extra_env: impl FnOnce(u16) -> Vec<(&'static str, String)>,
) -> anyhow::Result<WebhookSetup> {
    let binary = common.binary()?;
    let fake = FakeTelegram::start()
        .await
        .context("start the fake Telegram")?;
    let port = server::free_port()?;
    let mut env = vec![
        ("CHATTER_TELEGRAM__API_BASE", fake.base_url()),
        ("CHATTER_TELEGRAM__WEBHOOK_BASE", PUBLIC.to_string()),
    ];
    // Telegram is given an https address; the fake delivers it to the server's port, as a
    // TLS-terminating proxy would.
    fake.route(PUBLIC, &format!("http://127.0.0.1:{port}"));
    env.extend(extra_env(port));
    let server = Server::start(&binary, common.database_url.as_deref(), port, &env).await?;
    eprintln!(
        "chatter serve (pid {}, {}) ready in {:.2} s",
        server.pid,
        server.database,
        server.startup.as_secs_f64()
    );
    let cookie = server::sign_up(&server.base).await?;
    let csrf = server::session_csrf(&server.base, &cookie).await?;
    let token = fake.create_bot("bench_shop_bot", "Магазин");
    let source_id = server::add_bot(
        &server::form_client()?,
        &server.base,
        &cookie,
        &csrf,
        &token,
        "Магазин",
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let webhook = loop {
        if let Some(w) = fake.webhook(&token) {
            break w;
        }
        if Instant::now() > deadline {
            bail!("the server set no webhook for the bot within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let public_url = format!("{PUBLIC}/hooks/telegram/{source_id}");
    if webhook.url != public_url {
        bail!(
            "the webhook points at {}, expected {public_url}",
            webhook.url
        );
    }
    // Updates are posted straight to the server, as the proxy would pass them on.
    let hook_url = format!("{}/hooks/telegram/{source_id}", server.base);
    let secret = webhook
        .secret_token
        .context("the webhook was set without a secret_token")?;
    Ok(WebhookSetup {
        _fake: fake,
        server,
        cookie,
        hook_url,
        secret,
    })
}

const FIRST_NAMES: &[&str] = &[
    "Анна",
    "Иван",
    "Мария",
    "Дмитрий",
    "Елена",
    "Сергей",
    "Ольга",
    "Алексей",
    "Наталья",
    "Павел",
    "Татьяна",
    "Михаил",
    "Светлана",
    "Андрей",
    "Юлия",
    "Николай",
];
const LAST_NAMES: &[&str] = &[
    "Иванова",
    "Петров",
    "Смирнова",
    "Кузнецов",
    "Попова",
    "Соколов",
    "Лебедева",
    "Козлов",
];
const TEXTS: &[&str] = &[
    "Здравствуйте! Подскажите, когда будет доставка?",
    "Добрый день, хочу уточнить статус заказа",
    "Можно оплатить картой при получении?",
    "Спасибо, всё получила, очень довольна!",
    "А есть этот товар в другом цвете?",
    "Курьер не пришёл, что делать?",
    "Пришлите, пожалуйста, счёт на оплату",
    "Во сколько вы сегодня работаете?",
];

/// Telegram user id of customer `n` (private chat id = user id).
pub fn customer_id(n: u64) -> i64 {
    700_000_000 + n as i64
}

/// A private-chat text `message` update from customer `customer`, as Telegram would send it.
/// `seq` makes update_id and message_id unique; `text` is appended after a typical phrase.
pub fn text_update(seq: u64, customer: u64, tag: &str) -> Value {
    let user_id = customer_id(customer);
    let first = FIRST_NAMES[(customer as usize) % FIRST_NAMES.len()];
    let last = LAST_NAMES[(customer as usize / FIRST_NAMES.len()) % LAST_NAMES.len()];
    let text = format!("{} {tag}", TEXTS[(seq as usize) % TEXTS.len()]);
    let date = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let from = json!({
        "id": user_id,
        "is_bot": false,
        "first_name": first,
        "last_name": last,
        "username": format!("customer{customer}"),
        "language_code": "ru",
    });
    json!({
        "update_id": 100_000_000 + seq,
        "message": {
            "message_id": 1 + seq,
            "from": from,
            "chat": {
                "id": user_id,
                "first_name": first,
                "last_name": last,
                "username": format!("customer{customer}"),
                "type": "private",
            },
            "date": date,
            "text": text,
        }
    })
}
