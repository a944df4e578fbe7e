//! `chatter demo`: the product with every outside party faked inside this process — a mail
//! catcher, a Telegram Bot API holding the demo company's bot, and simulated customers who
//! write to that bot over time (and sometimes answer a manager's reply), so a newcomer sees
//! messages arrive live and replies reach the "customer's phone" with no real messenger. VK,
//! Max and Avito are faked too, each with one connected source and one customer writing a
//! short dialogue.

use crate::config::Config;
use anyhow::{bail, Context};
use chatter_core::mailer::{SmtpConfig, SmtpMailer};
use chatter_core::sources::{self, NewSource, SourceSecret, SourceSettings};
use chatter_core::{Actor, Core, Mailer, ReqMeta};
use chatter_domain::SourceKind;
use chatter_fakes::phone_page::{
    AvitoLine, MaxLine, PhoneLine, Phones, SmsLine, VkLine, WhatsAppLine,
};
use chatter_fakes::{
    CustomerMessage, FakeAmo, FakeAvito, FakeMax, FakeTelegram, FakeVk, GroupChat, SmtpCapture,
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel, TransactionTrait};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const EMAIL: &str = "demo@chatter.local";
pub const PASSWORD: &str = "demo-password";
const BOT_NAME: &str = "Демо-бот";
const BOT_USERNAME: &str = "chatter_demo_bot";

/// The fake servers the demo runs in this process.
pub struct Fakes {
    pub smtp: SmtpCapture,
    pub telegram: FakeTelegram,
    pub vk: FakeVk,
    pub max: FakeMax,
    pub avito: FakeAvito,
    pub whatsapp: chatter_fakes::FakeWhatsApp,
    pub sms: chatter_fakes::FakeSms,
    /// The company's website: receives the API source's outgoing webhooks (managers' answers
    /// to its visitors) and shows them on its page.
    pub website: chatter_fakes::website::FakeWebsite,
    /// amoCRM with the demo account «Рога и Копыта CRM», its Chats API channel, and a page
    /// (`/ui/demo`) listing its deals where you answer customers as a manager.
    pub amo: FakeAmo,
}

const AMO_CLIENT_ID: &str = "chatter-demo";
const AMO_CLIENT_SECRET: &str = "demo-client-secret-not-for-production";
const AMO_CHANNEL_ID: &str = "5c5b3e0e-0d1f-4a52-9a10-6a1d7c0de001";
const AMO_CHANNEL_SECRET: &str = "0d3a5f7c9e1b2d4f6a8c0e2a4c6e8a0b2d4f6a8c";

impl Fakes {
    pub async fn start() -> anyhow::Result<Fakes> {
        Ok(Fakes {
            smtp: SmtpCapture::start()
                .await
                .context("cannot start the demo mail catcher")?,
            telegram: FakeTelegram::start()
                .await
                .context("cannot start the demo Telegram")?,
            vk: FakeVk::start().await.context("cannot start the demo VK")?,
            max: FakeMax::start()
                .await
                .context("cannot start the demo Max")?,
            avito: FakeAvito::start()
                .await
                .context("cannot start the demo Avito")?,
            whatsapp: chatter_fakes::FakeWhatsApp::start()
                .await
                .context("cannot start the demo WhatsApp")?,
            sms: chatter_fakes::FakeSms::start()
                .await
                .context("cannot start the demo SMS gateway")?,
            website: chatter_fakes::website::FakeWebsite::start()
                .await
                .context("cannot start the demo website")?,
            amo: {
                let amo = FakeAmo::start()
                    .await
                    .context("cannot start the demo amoCRM")?;
                amo.create_account("demo", "Рога и Копыта CRM");
                amo
            },
        })
    }

    /// Points the configuration at the fakes: SQLite in the data directory (the demo never
    /// touches a real database or messenger), the fake Bot API, and long polling.
    pub fn configure(&self, cfg: &mut Config, public_url: &str) {
        cfg.database_url = None;
        cfg.smtp = None;
        cfg.telegram.api_base = self.telegram.base_url();
        cfg.telegram.webhook_base = None;
        cfg.telegram.poll_timeout_secs = 5;
        cfg.public_webhook_base = None;
        cfg.vk.api_base = self.vk.base_url();
        cfg.max.api_base = self.max.base_url();
        cfg.max.extra_ca_pem = None;
        cfg.avito.api_base = self.avito.base_url();
        cfg.avito.poll_interval_secs = 3;
        cfg.whatsapp.api_base = self.whatsapp.base_url();
        cfg.sms.api_base = self.sms.base_url();
        // The demo's customer systems (the website's webhook receiver) live on loopback.
        cfg.allow_private_targets = true;
        // amoCRM: an integration registered at the fake, with a Chats API channel whose
        // managers' answers come back to this server.
        let redirect = format!("{public_url}/crm/amocrm/callback");
        self.amo
            .register_integration(AMO_CLIENT_ID, AMO_CLIENT_SECRET, &redirect);
        self.amo.register_chat_channel(
            AMO_CHANNEL_ID,
            AMO_CHANNEL_SECRET,
            Some(&format!("{public_url}/hooks/amojo/:scope_id")),
        );
        let base = self.amo.base_url();
        cfg.amocrm = Some(chatter_core::crm::AmoConfig {
            client_id: AMO_CLIENT_ID.into(),
            client_secret: chatter_core::Secret::new(AMO_CLIENT_SECRET),
            redirect_uri: Some(redirect),
            consent_url: Some(format!("{base}/oauth")),
            account_base: Some(base.clone()),
            chats: Some(chatter_core::crm::ChatsConfig {
                channel_id: AMO_CHANNEL_ID.into(),
                secret: chatter_core::Secret::new(AMO_CHANNEL_SECRET),
                base_url: Some(base),
                title: Some("Chatter demo".into()),
            }),
        });
    }

    /// Mail goes to the catcher.
    pub fn mailer(&self) -> anyhow::Result<Arc<dyn Mailer>> {
        let mailer = SmtpMailer::new(&SmtpConfig {
            host: "127.0.0.1".into(),
            port: self.smtp.port(),
            username: None,
            password: None,
            from: "Chatter demo <demo@chatter.local>".into(),
            tls: "none".into(),
        })
        .map_err(anyhow::Error::msg)?;
        Ok(Arc::new(mailer))
    }
}

/// A running demo: the seeded sign-in, and the simulated customers until [`Demo::stop`].
pub struct Demo {
    pub api_key: String,
    pub phone_url: String,
    pub crm_url: String,
    pub smtp_port: u16,
    pub website_url: String,
    mail_page: chatter_fakes::mail_page::MailPage,
    phones_page: chatter_fakes::phone_page::PhonePage,
    stop: watch::Sender<bool>,
    customers: JoinHandle<()>,
    others: JoinHandle<()>,
}

impl Demo {
    /// Seeds the demo company (idempotent for a reused data directory), connects the demo bot
    /// and lets the simulated customers start writing.
    pub async fn start(core: &Core, fakes: &Fakes) -> anyhow::Result<Demo> {
        let actor = seed_company(core).await?;
        forget_previous_run(core, &actor).await?;
        let token = connect_bot(core, &actor, &fakes.telegram).await?;
        let api_key = {
            let txn = core.db.begin().await?;
            let (key, _) = chatter_core::accounts::api_keys::insert(
                &txn,
                actor.company_id,
                None,
                "demo",
                core.now(),
            )
            .await?;
            txn.commit().await?;
            key
        };
        let (stop, stopped) = watch::channel(false);
        let phone_url = format!("{}/phone", fakes.telegram.base_url());
        let others = connect_others(core, &actor, fakes, &phone_url).await?;
        let phones_page = chatter_fakes::phone_page::PhonePage::start(others.phones.clone())
            .await
            .context("cannot start the demo's customers' phones page")?;
        let customers = tokio::spawn(simulate(fakes.telegram.clone(), token, stopped.clone()));
        let others = tokio::spawn(simulate_others(others, stopped));
        Ok(Demo {
            api_key,
            phone_url,
            crm_url: format!("{}/ui/demo", fakes.amo.base_url()),
            smtp_port: fakes.smtp.port(),
            website_url: fakes.website.base_url(),
            mail_page: chatter_fakes::mail_page::MailPage::start(fakes.smtp.reader())
                .await
                .context("cannot start the demo's mail page")?,
            phones_page,
            stop,
            customers,
            others,
        })
    }

    /// What a newcomer (or a script) needs, after the "listening" line.
    pub fn print(&self) {
        println!("Demo sign-in: {EMAIL} / {PASSWORD}");
        println!("API key: {}", self.api_key);
        println!("Customer's phone: {}", self.phone_url);
        println!(
            "Customers' phones of every messenger (VK, Max, Avito, WhatsApp, SMS; write as them): {}",
            self.phones_page.url()
        );
        println!(
            "amoCRM (fake): {} (connect it in Chatter: CRM → «Подключить amoCRM» → «Разрешить»)",
            self.crm_url
        );
        println!(
            "Company website (simulated; shows the answers sent to its visitors): {}",
            self.website_url
        );
        println!(
            "Mail sent by the demo is caught on 127.0.0.1:{} and shown at {}",
            self.smtp_port,
            self.mail_page.url()
        );
    }

    /// The customers stop writing.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.customers.await;
        let _ = self.others.await;
    }
}

/// The demo user and company, created on the first run; the owner acting in it.
/// A demo started again on the same data directory: the fake amoCRM starts empty, so the
/// connection to the previous run's one is ended (connect again from the CRM page; otherwise
/// every sync would fail against tokens no server knows), and the previous run's API key is
/// revoked, so each run has exactly one.
async fn forget_previous_run(core: &Core, actor: &Actor) -> anyhow::Result<()> {
    if let Some((i, _)) = chatter_core::crm::get(core, actor).await? {
        if i.status != chatter_core::crm::integration::DISCONNECTED {
            chatter_core::crm::disconnect(core, actor).await?;
        }
    }
    for k in chatter_core::accounts::api_keys::list(core, actor).await? {
        if k.name == "demo" && k.revoked_at.is_none() {
            chatter_core::accounts::api_keys::revoke(core, actor, k.id).await?;
        }
    }
    Ok(())
}

async fn seed_company(core: &Core) -> anyhow::Result<Actor> {
    let meta = ReqMeta {
        ip: "127.0.0.1".into(),
        user_agent: "chatter demo".into(),
    };
    let user_id = match chatter_core::accounts::find_user_by_email(&core.db, EMAIL).await? {
        Some(u) => u.id,
        None => {
            let (_, user_id, _) = chatter_core::accounts::sign_up(
                core,
                &chatter_core::accounts::SignUp {
                    company_name: "Демо: Рога и Копыта".into(),
                    name: "Анна Демо".into(),
                    email: EMAIL.into(),
                    password: PASSWORD.into(),
                },
                &meta,
            )
            .await?;
            user_id
        }
    };
    let Some((company, role)) = chatter_core::accounts::companies_of(&core.db, user_id)
        .await?
        .into_iter()
        .next()
    else {
        bail!("the demo user has no company")
    };
    Ok(Actor {
        user_id: Some(user_id),
        company_id: company.id,
        role,
        label: EMAIL.into(),
        meta,
    })
}

/// Creates the demo bot in the fake and connects it as the company's source. The fake forgets
/// its bots when the process ends, so on a reused data directory the existing source is
/// pointed at this run's bot instead of adding a second one; conversations carry on because
/// the simulated customers keep their Telegram ids.
async fn connect_bot(core: &Core, actor: &Actor, fake: &FakeTelegram) -> anyhow::Result<String> {
    let token = fake.create_bot(BOT_USERNAME, BOT_NAME);
    let existing = sources::list(core, actor).await?.into_iter().find(|s| {
        s.kind == SourceKind::TelegramBot.id()
            && sources::settings_of(s).bot_username.as_deref() == Some(BOT_USERNAME)
    });
    let Some(source) = existing else {
        sources::add_telegram_bot(core, actor, BOT_NAME, &token).await?;
        return Ok(token);
    };
    let bot_id = token
        .split_once(':')
        .map(|(id, _)| id.to_owned())
        .unwrap_or_default();
    let secret = SourceSecret {
        token: token.clone(),
        webhook_secret: sources::secret_of(core, &source)?.webhook_secret,
        ..SourceSecret::default()
    };
    let settings = SourceSettings {
        bot_id,
        ..sources::settings_of(&source)
    };
    let id = source.id;
    let mut am = source.into_active_model();
    am.secret = Set(Some(core.secrets.encrypt(&serde_json::to_string(&secret)?)));
    am.settings = Set(serde_json::to_string(&settings)?);
    // The new bot's update ids start afresh: an old offset would skip them.
    am.cursor = Set(None);
    am.update(&core.db).await?;
    restore_chats(core, id, fake, &token).await?;
    // Sets it up again (deleteWebhook, then long polling), as turning a source on does.
    sources::set_enabled(core, actor, id, true).await?;
    Ok(token)
}

/// Tells the fresh fake how far each customer's chat had got, so its message ids carry on
/// after the stored ones (the same ids again would be taken for replays and dropped).
async fn restore_chats(
    core: &Core,
    source_id: uuid::Uuid,
    fake: &FakeTelegram,
    token: &str,
) -> anyhow::Result<()> {
    use chatter_store::entity::{conversation, message};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    for customer in [&OLGA, &DMITRY, &ELENA, &SERGEY, &ALEXEY, &IRINA] {
        let chat_id = customer.chat_id().to_string();
        let Some(conv) = conversation::Entity::find()
            .filter(conversation::Column::SourceId.eq(source_id))
            .filter(conversation::Column::ExternalChatId.eq(chat_id.as_str()))
            .one(&core.db)
            .await?
        else {
            continue;
        };
        let last = message::Entity::find()
            .filter(message::Column::ConversationId.eq(conv.id))
            .all(&core.db)
            .await?
            .into_iter()
            .flat_map(|m| {
                let parts: Vec<String> = serde_json::from_str(&m.sent_parts).unwrap_or_default();
                parts.into_iter().chain(m.external_id)
            })
            .filter_map(|external| {
                let (chat, id) = external.rsplit_once(':')?;
                (chat == chat_id).then(|| id.parse::<i64>().ok()).flatten()
            })
            .max()
            .unwrap_or(0);
        fake.restore_chat(token, &customer.says(""), last);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Simulated customers

/// Someone who writes to the demo bot.
struct Customer {
    user_id: i64,
    first_name: &'static str,
    last_name: Option<&'static str>,
    username: Option<&'static str>,
    /// Where they write: their private chat unless a group is given.
    group: Option<(i64, &'static str)>,
}

const OLGA: Customer = Customer {
    user_id: 5_120_334_781,
    first_name: "Ольга",
    last_name: Some("Смирнова"),
    username: Some("olga_smirnova"),
    group: None,
};
const DMITRY: Customer = Customer {
    user_id: 5_240_118_902,
    first_name: "Дмитрий",
    last_name: Some("Кузнецов"),
    username: Some("dkuznetsov"),
    group: None,
};
const ELENA: Customer = Customer {
    user_id: 5_377_902_615,
    first_name: "Елена",
    last_name: Some("Васильева"),
    username: None,
    group: None,
};
const WHOLESALE: (i64, &str) = (-4_087_215_530, "Оптовики");
const SERGEY: Customer = Customer {
    user_id: 5_411_563_077,
    first_name: "Сергей",
    last_name: Some("Петров"),
    username: Some("petrov_opt"),
    group: Some(WHOLESALE),
};
const MARINA: Customer = Customer {
    user_id: 5_498_230_164,
    first_name: "Марина",
    last_name: Some("Ковалёва"),
    username: Some("marina_kov"),
    group: Some(WHOLESALE),
};
const ALEXEY: Customer = Customer {
    user_id: 5_602_447_310,
    first_name: "Алексей",
    last_name: None,
    username: Some("alexey_m"),
    group: None,
};
const IRINA: Customer = Customer {
    user_id: 5_713_880_245,
    first_name: "Ирина",
    last_name: Some("Морозова"),
    username: Some("irina_moroz"),
    group: None,
};

impl Customer {
    fn chat_id(&self) -> i64 {
        self.group.map_or(self.user_id, |(id, _)| id)
    }

    fn says(&self, text: &str) -> CustomerMessage {
        CustomerMessage {
            last_name: self.last_name.map(str::to_owned),
            username: self.username.map(str::to_owned),
            chat: self.group.map(|(id, title)| GroupChat {
                id,
                title: title.to_owned(),
            }),
            ..CustomerMessage::text(self.user_id, self.first_name, text)
        }
    }

    fn sends_photo(&self, caption: &str) -> CustomerMessage {
        CustomerMessage {
            text: None,
            caption: Some(caption.to_owned()),
            photo: Some(kettle_png()),
            ..self.says("")
        }
    }

    fn sends_document(&self, name: &str, body: &str, caption: &str) -> CustomerMessage {
        CustomerMessage {
            text: None,
            caption: Some(caption.to_owned()),
            document: Some((
                body.as_bytes().to_vec(),
                name.to_owned(),
                "text/plain".into(),
            )),
            ..self.says("")
        }
    }

    fn shares_contact(&self, phone: &str) -> CustomerMessage {
        CustomerMessage {
            text: None,
            contact: Some((phone.to_owned(), self.first_name.to_owned())),
            ..self.says("")
        }
    }

    fn shares_location(&self, latitude: f64, longitude: f64) -> CustomerMessage {
        CustomerMessage {
            text: None,
            location: Some((latitude, longitude)),
            ..self.says("")
        }
    }
}

/// The opening dialogues: seconds to wait, then the message. Busy at first, then slower.
fn script() -> Vec<(u64, CustomerMessage)> {
    vec![
        (1, OLGA.says("Здравствуйте! Сколько стоит кофемолка «Бодрое утро»?")),
        (3, DMITRY.sends_photo("Добрый день! Вот такой чайник у вас есть в наличии?")),
        (3, OLGA.says("И сколько будет стоить доставка до Казани?")),
        (4, SERGEY.says("Коллеги, добрый день! Интересует опт от 50 штук. Какие у вас скидки?")),
        (4, ELENA.says("Здравствуйте, хочу заказать набор посуды, но удобнее обсудить по телефону")),
        (3, ELENA.shares_contact("+7 916 123-45-67")),
        (5, DMITRY.says("Нужен белый, на 1,7 литра")),
        (6, MARINA.says("И пришлите, пожалуйста, актуальный прайс")),
        (8, IRINA.says("Добрый вечер! Доставляете вот сюда?")),
        (2, IRINA.shares_location(55.751_244, 37.618_423)),
        (10, ALEXEY.says("Спасибо, заказ получил, всё отлично! 👍")),
        (
            12,
            SERGEY.sends_document(
                "заявка.txt",
                "Заявка ООО «Опт-Снаб»\nКофемолка «Бодрое утро» — 50 шт.\nЧайник белый 1,7 л — 30 шт.\nДоставка: Подольск, склад № 3\n",
                "Вот наша заявка",
            ),
        ),
        (15, IRINA.says("Когда ближайшая доставка? Мне нужно до пятницы")),
        (20, OLGA.says("А можно оплатить картой при получении?")),
        (30, MARINA.says("Сергей, я добавила в заявку ещё 20 чайников")),
        (45, ELENA.says("Перезвоните, пожалуйста, после 18:00")),
        (
            90,
            ALEXEY.says("Снова я 🙂 Хочу заказать ещё две такие же кофемолки — родителям в подарок"),
        ),
    ]
}

/// After the opening dialogues, customers come back now and then, for as long as the demo runs.
fn later() -> Vec<CustomerMessage> {
    vec![
        OLGA.says("Подскажите, мой заказ уже отправили?"),
        DMITRY.says("Добрый день! Белые чайники так и не появились?"),
        IRINA.says("Курьер не может найти подъезд, подскажите ему, пожалуйста: второй со двора"),
        SERGEY.says("Когда ждать счёт на оплату?"),
        ELENA.says("Вы мне так и не перезвонили 😔"),
        ALEXEY.says("А гарантия на кофемолку сколько?"),
        MARINA.says("Подтвердите, пожалуйста, отгрузку на четверг"),
    ]
}

/// What a customer may answer to a manager's reply, by chat.
fn follow_ups() -> HashMap<i64, Vec<CustomerMessage>> {
    HashMap::from([
        (
            OLGA.chat_id(),
            vec![
                OLGA.says("Спасибо! Тогда оформляю заказ"),
                OLGA.says("Отлично, буду ждать 😊"),
            ],
        ),
        (
            DMITRY.chat_id(),
            vec![
                DMITRY.says("Понял, спасибо! Тогда беру"),
                DMITRY.says("Хорошо, жду 👍"),
            ],
        ),
        (
            ELENA.chat_id(),
            vec![
                ELENA.says("Да, жду звонка"),
                ELENA.says("Спасибо за помощь!"),
            ],
        ),
        (
            WHOLESALE.0,
            vec![
                MARINA.says("Спасибо, получили. Сергей, посмотри условия"),
                SERGEY.says("Условия подходят, готовы оплатить"),
            ],
        ),
        (
            ALEXEY.chat_id(),
            vec![
                ALEXEY.says("Супер, тогда жду счёт"),
                ALEXEY.says("Спасибо!"),
            ],
        ),
        (
            IRINA.chat_id(),
            vec![
                IRINA.says("Отлично, подходит!"),
                IRINA.says("Хорошо, спасибо"),
            ],
        ),
    ])
}

/// How long a customer takes to answer a manager.
const FOLLOW_UP_DELAY: Duration = Duration::from_secs(4);
/// How often the customers look at their phones for the manager's replies.
const LOOK: Duration = Duration::from_secs(1);

/// Runs the customers until `stopped`: the opening script, then an occasional returning
/// customer; each chat answers every other reply the bot sends into it.
async fn simulate(fake: FakeTelegram, token: String, mut stopped: watch::Receiver<bool>) {
    let mut script = script().into_iter();
    let mut later = later().into_iter().cycle();
    let mut follow_ups = follow_ups();
    let mut replies_seen = 0usize;
    let mut replies_per_chat: HashMap<i64, usize> = HashMap::new();
    let mut answers: Vec<(tokio::time::Instant, CustomerMessage)> = Vec::new();
    let mut next = match script.next() {
        Some((wait, m)) => (tokio::time::Instant::now() + Duration::from_secs(wait), m),
        None => return,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LOOK) => {}
            _ = stopped.changed() => {}
        }
        if *stopped.borrow() {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= next.0 {
            fake.customer_writes(&token, next.1);
            next = match script.next() {
                Some((wait, m)) => (now + Duration::from_secs(wait), m),
                None => match later.next() {
                    Some(m) => (now + Duration::from_secs(120), m),
                    None => return,
                },
            };
        }
        let sent = fake.sent(&token);
        for reply in sent.iter().skip(replies_seen) {
            let n = replies_per_chat.entry(reply.chat_id).or_default();
            *n += 1;
            // Sometimes: the first reply in a chat gets an answer, then every other one.
            if *n % 2 == 1 {
                if let Some(list) = follow_ups.get_mut(&reply.chat_id) {
                    if !list.is_empty() {
                        answers.push((now + FOLLOW_UP_DELAY, list.remove(0)));
                    }
                }
            }
        }
        replies_seen = sent.len();
        let (due, waiting): (Vec<_>, Vec<_>) = answers.drain(..).partition(|(at, _)| *at <= now);
        answers = waiting;
        for (_, m) in due {
            fake.customer_writes(&token, m);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// VK, Max, Avito, WhatsApp and SMS: one source and one customer each

/// The demo's accounts in the VK, Max, Avito, WhatsApp and SMS fakes.
struct Others {
    whatsapp: chatter_fakes::FakeWhatsApp,
    wa_number: String,
    /// The WhatsApp callback URL and verify token (set "by hand" once the server listens).
    wa_hook: Option<(String, String)>,
    sms: chatter_fakes::FakeSms,
    sms_key: String,
    /// The SMS status and inbound callback URLs.
    sms_hooks: Option<(String, String)>,
    /// The API source «Сайт»: its inbound URL and signing secret, and the core whose HTTP
    /// client posts as the company's website would.
    api: (String, String),
    core: Core,
    /// The VK, Max, Avito, WhatsApp and SMS customers; the script writes through them, and so
    /// can a person on the phones page.
    phones: Phones,
}

/// The callback settings the WhatsApp and SMS sources' pages show, as a person would paste them.
fn manual_hooks(
    core: &Core,
    all: &[chatter_store::entity::source::Model],
    kind: SourceKind,
) -> Option<(String, String)> {
    use chatter_core::sources::connectors::{hook_url, public_hook_base, sms_hook_urls};
    let s = all.iter().find(|s| s.kind == kind.id())?;
    let token = sources::secret_of(core, s).ok()?.webhook_secret?;
    let base = public_hook_base(&core.config, s.kind);
    Some(match kind {
        SourceKind::Whatsapp => (hook_url(base, "whatsapp", s.id), token),
        _ => sms_hook_urls(base, s.id, &token),
    })
}

/// Creates the community, the bot and the account in the fakes and connects each as a source
/// (a reused data directory keeps its sources and gets this run's credentials).
async fn connect_others(
    core: &Core,
    actor: &Actor,
    fakes: &Fakes,
    telegram_phone: &str,
) -> anyhow::Result<Others> {
    let group = fakes
        .vk
        .create_group("Рога и Копыта ВКонтакте", "horns_demo");
    let max_token = fakes.max.add_bot("Рога и Копыта в Max", "horns_demo_bot");
    let avito = fakes.avito.add_account("Рога и Копыта на Авито");
    let wa = fakes
        .whatsapp
        .add_number("+7 495 000-11-22", "Рога и Копыта");
    fakes.whatsapp.add_template(
        &wa.phone_number_id,
        "order_ready",
        "ru",
        "UTILITY",
        "APPROVED",
        "Здравствуйте, {{1}}! Ваш заказ {{2}} готов к выдаче.",
    );
    let sms_key = fakes
        .sms
        .add_account("ООО Рога и Копыта", "7701234567", 500.0);
    let wanted = [
        (
            "ВКонтакте: Рога и Копыта",
            NewSource::VkBot {
                token: group.token.clone(),
                group_id: group.id.to_string(),
            },
        ),
        (
            "Max: Рога и Копыта",
            NewSource::MaxBot {
                token: max_token.clone(),
            },
        ),
        (
            "Авито: Рога и Копыта",
            NewSource::Avito {
                client_id: avito.client_id.clone(),
                client_secret: avito.client_secret.clone(),
            },
        ),
        (
            "WhatsApp: Рога и Копыта",
            NewSource::WhatsApp {
                phone_number_id: wa.phone_number_id.clone(),
                waba_id: wa.waba_id.clone(),
                access_token: wa.access_token.clone(),
                app_secret: wa.app_secret.clone(),
            },
        ),
        (
            "SMS: Рога и Копыта",
            NewSource::Sms {
                api_key: sms_key.clone(),
                sender: "Roga".into(),
            },
        ),
    ];
    let existing = sources::list(core, actor).await?;
    for (name, new) in wanted {
        match existing.iter().find(|s| s.kind == new.kind().id()) {
            Some(s) => sources::replace_credentials(core, actor, s.id, new).await?,
            None => {
                sources::add_source(core, actor, name, new).await?;
            }
        }
    }
    let all = sources::list(core, actor).await?;
    // A fresh fake numbers VK messages from 1 again: a new customer id per run keeps them
    // from being taken for replays of a reused data directory's messages.
    let vk_user = 600_000_000 + i64::from(rand_u16());
    let lines: Vec<Box<dyn PhoneLine>> = vec![
        Box::new(VkLine {
            vk: fakes.vk.clone(),
            group_id: group.id,
            user_id: vk_user,
            name: "Анна".into(),
        }),
        Box::new(MaxLine {
            max: fakes.max.clone(),
            token: max_token.clone(),
            user_id: 7_301_224,
            first_name: "Павел".into(),
            last_name: Some("Орлов".into()),
        }),
        Box::new(AvitoLine {
            avito: fakes.avito.clone(),
            client_id: avito.client_id.clone(),
            buyer_id: 48_112_907,
            name: "Николай".into(),
            item_id: 3_402_118_775,
            item_title: "Диван угловой «Комфорт»".into(),
            chat: Default::default(),
        }),
        Box::new(WhatsAppLine {
            whatsapp: fakes.whatsapp.clone(),
            phone_number_id: wa.phone_number_id.clone(),
            wa_id: "79161234567".into(),
            name: "Ирина".into(),
        }),
        Box::new(SmsLine {
            sms: fakes.sms.clone(),
            key: sms_key.clone(),
            phone: "+7 926 555-44-33".into(),
            to: "74950001122".into(),
            name: "Ольга".into(),
        }),
    ];
    let phones = Phones::new(
        lines,
        vec![(
            "Telegram — чаты с ботом @chatter_demo_bot".into(),
            telegram_phone.to_owned(),
        )],
    );
    Ok(Others {
        phones,
        whatsapp: fakes.whatsapp.clone(),
        wa_number: wa.phone_number_id,
        wa_hook: manual_hooks(core, &all, SourceKind::Whatsapp),
        sms: fakes.sms.clone(),
        sms_key,
        sms_hooks: manual_hooks(core, &all, SourceKind::SipoutSms),
        api: connect_website(core, actor, &all, &fakes.website).await?,
        core: core.clone(),
    })
}

/// The API source «Сайт» (a reused data directory keeps it and gets a fresh secret, since a
/// secret is shown only once); its inbound URL and signing secret. Its outgoing webhook points
/// at the demo website, so managers' answers to the site's visitors are delivered there.
async fn connect_website(
    core: &Core,
    actor: &Actor,
    all: &[chatter_store::entity::source::Model],
    site: &chatter_fakes::website::FakeWebsite,
) -> anyhow::Result<(String, String)> {
    let existing = all.iter().find(|s| s.kind == SourceKind::Api.id());
    let (id, secret) = match existing {
        Some(s) => (
            s.id,
            chatter_core::sources::api::rotate_secret(core, actor, s.id).await?,
        ),
        None => chatter_core::sources::api::create(core, actor, "Сайт").await?,
    };
    site.set_secret(&secret);
    chatter_core::sources::api::set_webhook_url(core, actor, id, &site.webhook_url()).await?;
    Ok((chatter_core::sources::api::inbound_url(core, id), secret))
}

/// Where a line of the short dialogues is written.
enum Line {
    Api(&'static str),
    Vk(&'static str),
    Max(&'static str),
    Avito(&'static str),
    WhatsApp(&'static str),
    Sms(&'static str),
}

/// Seconds after the start, and what is written.
const OTHER_SCRIPT: [(u64, Line); 13] = [
    (
        10,
        Line::Api("Заявка с сайта: нужен угловой диван, пришлите варианты до 60 000 ₽"),
    ),
    (40, Line::Api("Ещё вопрос: доставка в Подольск бесплатная?")),
    (
        12,
        Line::Vk("Здравствуйте! Увидела ваш пост про чайники. Есть белый?"),
    ),
    (
        15,
        Line::WhatsApp("Добрый вечер! Заказ 1042 уже можно забрать?"),
    ),
    (
        20,
        Line::Max("Добрый день. Можно заказать доставку на завтра?"),
    ),
    (
        24,
        Line::Sms("Здравствуйте, это Ольга. Перезвоните, пожалуйста, по поводу заказа."),
    ),
    (28, Line::Avito("Здравствуйте, диван ещё продаётся?")),
    (45, Line::Vk("И сколько стоит доставка по Москве?")),
    (55, Line::Max("Адрес: Тверская, 7. После 18:00 удобно.")),
    (62, Line::WhatsApp("Спасибо! Заберу завтра после обеда.")),
    (70, Line::Avito("Торг уместен? Могу забрать сам в субботу.")),
    (80, Line::Sms("Удобно после 17:00.")),
    (90, Line::Vk("Спасибо, жду ответа!")),
];

/// Runs the VK, Max, Avito, WhatsApp and SMS customers' lines until `stopped`.
async fn simulate_others(o: Others, mut stopped: watch::Receiver<bool>) {
    let started = tokio::time::Instant::now();
    // The callbacks are "pasted" at the providers once this server listens.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Some((url, verify)) = &o.wa_hook {
        if let Err(e) = o.whatsapp.subscribe(&o.wa_number, url, verify).await {
            tracing::warn!(error = %e, "the demo WhatsApp could not reach this server");
        }
    }
    if let Some((status, inbound)) = &o.sms_hooks {
        o.sms.set_callbacks(&o.sms_key, Some(status), Some(inbound));
    }
    let run = rand_u16();
    for (at, line) in OTHER_SCRIPT {
        tokio::select! {
            _ = tokio::time::sleep_until(started + Duration::from_secs(at)) => {}
            _ = stopped.changed() => return,
        }
        if *stopped.borrow() {
            return;
        }
        let (messenger, text) = match line {
            Line::Api(text) => {
                post_from_website(&o, run, text).await;
                continue;
            }
            Line::Vk(text) => ("ВКонтакте", text),
            Line::Max(text) => ("Max", text),
            Line::Avito(text) => ("Авито", text),
            Line::WhatsApp(text) => ("WhatsApp", text),
            Line::Sms(text) => ("SMS", text),
        };
        if let Some(i) = o.phones.index_of(messenger) {
            o.phones.write(i, text);
        }
    }
}

/// A little randomness without another dependency on the binary.
fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos % 60_000) as u16
}

// ---------------------------------------------------------------------------------------------
// The product photo: a small PNG drawn here, so the demo needs no image files.

const PHOTO_W: usize = 240;
const PHOTO_H: usize = 180;

/// A white kettle on a soft background.
fn kettle_png() -> Vec<u8> {
    let mut raw = Vec::with_capacity((PHOTO_W * 3 + 1) * PHOTO_H);
    for y in 0..PHOTO_H {
        raw.push(0); // filter: none
        for x in 0..PHOTO_W {
            raw.extend_from_slice(&kettle_pixel(x as f64, y as f64));
        }
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(PHOTO_W as u32).to_be_bytes());
    ihdr.extend_from_slice(&(PHOTO_H as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    png_chunk(&mut png, b"IEND", &[]);
    png
}

fn kettle_pixel(x: f64, y: f64) -> [u8; 3] {
    let inside = |cx: f64, cy: f64, rx: f64, ry: f64| {
        let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
        dx * dx + dy * dy
    };
    let body = inside(120.0, 105.0, 58.0, 48.0);
    let lid = inside(120.0, 58.0, 24.0, 8.0);
    let knob = inside(120.0, 48.0, 7.0, 5.0);
    let handle = inside(180.0, 100.0, 22.0, 30.0);
    let shadow = inside(120.0, 158.0, 70.0, 9.0);
    let spout = x > 40.0 && x < 72.0 && (y - (110.0 - (72.0 - x) * 0.9)).abs() < 7.0;
    if knob <= 1.0 || (0.96..=1.0).contains(&body) || (0.85..=1.0).contains(&lid) {
        return [70, 72, 84];
    }
    if lid < 0.85 {
        return [215, 218, 226];
    }
    if body < 0.96 {
        // Light from the upper left.
        let shade = 250.0 - 40.0 * ((x - 95.0) / 90.0 + (y - 80.0) / 90.0).clamp(0.0, 1.0);
        let s = shade as u8;
        return [s, s, s.saturating_add(3)];
    }
    if spout {
        return [188, 192, 204];
    }
    if (0.62..=1.0).contains(&handle) && x > 170.0 {
        return [70, 72, 84];
    }
    if shadow <= 1.0 {
        return [170, 180, 190];
    }
    let t = y / PHOTO_H as f64;
    [
        (205.0 + 30.0 * t) as u8,
        (225.0 + 10.0 * t) as u8,
        (240.0 - 20.0 * t) as u8,
    ]
}

fn png_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of uncompressed ("stored") deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                0xedb8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// What the company's website does with a visitor's request: a signed POST to the API source.
async fn post_from_website(o: &Others, run: u16, text: &str) {
    let (url, secret) = &o.api;
    let body = serde_json::json!({
        "message_id": format!("site-{run}-{}", text.len()),
        "chat_id": format!("site-visitor-{run}"),
        "sender": {"id": format!("visitor-{run}"), "name": "Светлана (с сайта)", "email": "svetlana@example.ru"},
        "text": text,
        "utm": {"source": "yandex", "medium": "cpc", "campaign": "divany"},
    })
    .to_string();
    let ts = o.core.now() / 1000;
    let r = o
        .core
        .http
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Chatter-Timestamp", ts.to_string())
        .header(
            "X-Chatter-Signature",
            chatter_core::sources::api::sign(secret, ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "the demo website could not reach this server");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_png_reference_value() {
        // The CRC of an empty IEND chunk, as every PNG file ends with it.
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
    }

    #[test]
    fn the_photo_is_a_png_of_the_stated_size() {
        let png = kettle_png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(
            u32::from_be_bytes([png[16], png[17], png[18], png[19]]),
            240
        );
        assert_eq!(
            u32::from_be_bytes([png[20], png[21], png[22], png[23]]),
            180
        );
        assert!(png.ends_with(&[0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]));
    }

    #[test]
    fn every_chat_that_is_written_to_can_follow_up() {
        let chats = follow_ups();
        for (_, m) in script() {
            let chat = m.chat.as_ref().map_or(m.user_id, |g| g.id);
            assert!(chats.contains_key(&chat), "no follow-ups for chat {chat}");
        }
    }
}
