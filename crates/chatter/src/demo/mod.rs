//! `chatter demo`: the product with every outside party faked inside this process — a mail
//! catcher, a Telegram Bot API holding the demo company's bot, and simulated customers who
//! write to that bot over time (and sometimes answer a manager's reply), so a newcomer sees
//! messages arrive live and replies reach the "customer's phone" with no real messenger. VK,
//! Max and Avito are faked too, each with one connected source and one customer writing a
//! short dialogue; so is Telegram for personal accounts, with one account connected.

mod auto_replies;
mod others;
mod personal;
mod photo;
mod templates;

use others::{connect_others, simulate_others};
use photo::kettle_png;

use crate::config::Config;
use anyhow::{bail, Context};
use chatter_core::mailer::{SmtpConfig, SmtpMailer};
use chatter_core::sources::{self, NewSource, SourceSecret, SourceSettings};
use chatter_core::{Actor, Core, Mailer, ReqMeta};
use chatter_domain::SourceKind;
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
    /// SMSC.ru, SMS.ru and SMS Aero, so choosing them on the SMS form never reaches a real
    /// gateway.
    pub sms_gateways: chatter_fakes::FakeSmsGateways,
    /// The company's website: receives the API source's outgoing webhooks (managers' answers
    /// to its visitors) and shows them on its page.
    pub website: chatter_fakes::website::FakeWebsite,
    /// Telegram for personal accounts (the gateway's JSON protocol), with the demo's accounts.
    pub tgp: chatter_fakes::FakeTelegramPersonal,
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
            sms_gateways: chatter_fakes::FakeSmsGateways::start()
                .await
                .context("cannot start the demo SMS gateways")?,
            tgp: chatter_fakes::FakeTelegramPersonal::start()
                .await
                .context("cannot start the demo Telegram for personal accounts")?,
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
        cfg.sms.smsc_base = self.sms_gateways.smsc_base_url();
        cfg.sms.smsru_base = self.sms_gateways.smsru_base_url();
        cfg.sms.smsaero_base = self.sms_gateways.smsaero_base_url();
        cfg.telegram_personal.gateway_url = Some(self.tgp.base_url());
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
        seed_hours(core, &actor).await?;
        auto_replies::seed_auto_replies(core, &actor).await?;
        templates::seed_templates(core, &actor).await?;
        let token = connect_bot(core, &actor, &fakes.telegram).await?;
        let api_key = {
            let txn = core.db.begin().await?;
            let (key, _) = chatter_core::accounts::api_keys::insert(
                &txn,
                actor.company_id.uuid(),
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
        personal::connect_personal(core, &actor, fakes).await?;
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
        println!("{}", personal::how_to_connect());
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

/// The company's working hours on the first run: weekdays 09:00–18:00 in Moscow with a lunch
/// break (Automation → Working hours); a reused data directory keeps what was set there.
async fn seed_hours(core: &Core, actor: &Actor) -> anyhow::Result<()> {
    use chatter_core::automation::hours;
    use chatter_domain::hours::{Hours, HoursForm};
    if hours::get(core, actor, None).await?.hours.is_some() {
        return Ok(());
    }
    let day = "09:00–13:00, 14:00–18:00";
    let week = Hours::from_form(&HoursForm {
        zone: "Europe/Moscow",
        week: [day, day, day, day, day, "", ""],
        days: "2026-12-31 09:00–15:00\n2027-01-01\n2027-01-02",
    })
    .map_err(|e| anyhow::anyhow!("the demo's working hours: {e:?}"))?;
    hours::save(core, actor, None, week).await?;
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
        user_id: Some(user_id.into()),
        company_id: company.id.into(),
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
        s.kind == SourceKind::TelegramBot
            && sources::settings_of(s).bot_username.as_deref() == Some(BOT_USERNAME)
    });
    let Some(source) = existing else {
        let bot = NewSource::new(SourceKind::TelegramBot, [("token", token.as_str())]);
        sources::add_source(core, actor, BOT_NAME, bot).await?;
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
    source_id: chatter_domain::SourceId,
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

/// A little randomness without another dependency on the binary.
fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos % 60_000) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chat_that_is_written_to_can_follow_up() {
        let chats = follow_ups();
        for (_, m) in script() {
            let chat = m.chat.as_ref().map_or(m.user_id, |g| g.id);
            assert!(chats.contains_key(&chat), "no follow-ups for chat {chat}");
        }
    }
}
