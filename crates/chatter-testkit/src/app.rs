//! `TestApp`: the whole product on a random loopback port, over a fresh `TestDb`, with the
//! SMTP capture fake as its mail server, the Telegram, VK, Max, Avito, WhatsApp, SMS gateway and
//! amoCRM fakes as the outside world, and its job workers running.

use crate::db::TestDb;
use chatter_core::jobs::worker::{Registry, WorkerConfig};
use chatter_core::jobs::BackgroundJob;
use chatter_core::mailer::{SmtpConfig, SmtpMailer};
use chatter_core::{Clock, Core, CoreConfig, ManualClock, Secret, Secrets, SystemClock};
use chatter_fakes::{
    FakeAmo, FakeAvito, FakeMax, FakeSms, FakeTelegram, FakeTelegramPersonal, FakeVk, FakeWhatsApp,
    SmtpCapture,
};
use chatter_web::server::{self, Server};
use chatter_web::WebConfig;
use std::sync::Arc;

pub struct TestApp {
    pub db: TestDb,
    pub core: Core,
    pub url: String,
    pub smtp: SmtpCapture,
    /// The Telegram Bot API the product talks to.
    pub telegram: FakeTelegram,
    /// The public https address bots' webhooks are set on (`telegram.webhook_base`), as
    /// Telegram requires; the fake delivers it to `url`, as a TLS-terminating proxy would.
    pub telegram_hook_base: String,
    /// The VK API (community bots).
    pub vk: FakeVk,
    /// The Max Bot API.
    pub max: FakeMax,
    /// Telegram for personal accounts (the gateway's JSON protocol).
    pub tgp: FakeTelegramPersonal,
    /// The Avito API.
    pub avito: FakeAvito,
    /// The WhatsApp Cloud API (Graph API).
    pub whatsapp: FakeWhatsApp,
    /// The SMS gateway (Sipout-shaped).
    pub sms: FakeSms,
    /// SMSC.ru, SMS.ru and SMS Aero on one loopback server.
    pub sms_gateways: chatter_fakes::FakeSmsGateways,
    /// amoCRM, with the integration `TestApp::AMO_CLIENT_ID` registered.
    pub amo: FakeAmo,
    /// Set when built `with_manual_clock`.
    pub clock: Option<Arc<ManualClock>>,
    /// Whether the server runs its job workers (mail goes out only then, or by `sign_up_link`).
    workers: bool,
    server: Option<Server>,
}

#[derive(Default)]
pub struct TestAppBuilder {
    manual_clock: bool,
    telegram_login: Option<(String, String)>,
    workers: bool,
    telegram_webhooks: bool,
    webhooks: bool,
    amo_chats: bool,
    deny_private_targets: bool,
    trust_proxy: bool,
}

impl TestAppBuilder {
    /// Bots get a webhook pointing at this app instead of being long-polled.
    /// No Chats API channel: conversations reach amoCRM as notes.
    pub fn without_amo_chats(mut self) -> Self {
        self.amo_chats = false;
        self
    }
    pub fn with_telegram_webhooks(mut self) -> Self {
        self.telegram_webhooks = true;
        self
    }
    /// Every source (VK, Max, Avito and Telegram) gets a webhook pointing at this app
    /// (`public_webhook_base`) instead of being polled.
    pub fn with_webhooks(mut self) -> Self {
        self.webhooks = true;
        self
    }
    /// Time stands still until the test moves it (`app.clock`).
    pub fn with_manual_clock(mut self) -> Self {
        self.manual_clock = true;
        self
    }
    /// Sign in with Telegram through this platform bot.
    pub fn with_telegram_login(mut self, token: &str, username: &str) -> Self {
        self.telegram_login = Some((token.into(), username.into()));
        self
    }
    /// URLs people type may reach internet addresses only, as in production (by default the
    /// app allows private targets: the fakes and receivers live on loopback).
    pub fn deny_private_targets(mut self) -> Self {
        self.deny_private_targets = true;
        self
    }

    /// Behind a reverse proxy: `trust_proxy` on, loopback (the test client) a trusted proxy.
    pub fn with_trust_proxy(mut self) -> Self {
        self.trust_proxy = true;
        self
    }
    /// No job workers (tests that run jobs by hand).
    pub fn without_workers(mut self) -> Self {
        self.workers = false;
        self
    }

    pub async fn start(self) -> TestApp {
        let db = TestDb::new().await;
        let smtp = SmtpCapture::start().await.expect("SMTP capture starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let url = format!("http://{addr}");
        let telegram = FakeTelegram::start().await.expect("Telegram fake starts");
        let mut cfg = CoreConfig::new(&url, db.data_dir().to_path_buf());
        cfg.kinds.telegram.api_base = telegram.base_url();
        cfg.kinds.telegram.poll_timeout_secs = 2;
        let telegram_hook_base = TestApp::TELEGRAM_HOOK_BASE.to_string();
        telegram.route(&telegram_hook_base, &url);
        if self.telegram_webhooks || self.webhooks {
            cfg.kinds.telegram.webhook_base = Some(telegram_hook_base.clone());
        }
        if self.webhooks {
            cfg.kinds.webhook_base = Some(url.clone());
        }
        let vk = FakeVk::start().await.expect("VK fake starts");
        let max = FakeMax::start().await.expect("Max fake starts");
        let avito = FakeAvito::start().await.expect("Avito fake starts");
        cfg.kinds.vk.api_base = vk.base_url();
        cfg.kinds.max.api_base = max.base_url();
        let tgp = FakeTelegramPersonal::start()
            .await
            .expect("Telegram personal fake starts");
        cfg.kinds.telegram_personal.gateway_url = Some(tgp.base_url());
        cfg.kinds.avito.api_base = avito.base_url();
        let whatsapp = FakeWhatsApp::start().await.expect("WhatsApp fake starts");
        let sms = FakeSms::start().await.expect("SMS fake starts");
        cfg.kinds.whatsapp.api_base = whatsapp.base_url();
        cfg.kinds.sms.api_base = sms.base_url();
        let sms_gateways = chatter_fakes::FakeSmsGateways::start()
            .await
            .expect("SMS gateway fakes start");
        cfg.kinds.sms.smsc_base = sms_gateways.smsc_base_url();
        cfg.kinds.sms.smsru_base = sms_gateways.smsru_base_url();
        cfg.kinds.sms.smsaero_base = sms_gateways.smsaero_base_url();
        cfg.kinds.poll_timeout_secs = 2;
        cfg.kinds.avito.poll_interval_secs = 1;
        cfg.allow_private_targets = !self.deny_private_targets;
        let amo = FakeAmo::start().await.expect("amoCRM fake starts");
        let redirect = format!("{url}/crm/amocrm/callback");
        amo.register_integration(
            TestApp::AMO_CLIENT_ID,
            TestApp::AMO_CLIENT_SECRET,
            &redirect,
        );
        cfg.amocrm = Some(chatter_core::crm::AmoConfig {
            client_id: TestApp::AMO_CLIENT_ID.into(),
            client_secret: Secret::new(TestApp::AMO_CLIENT_SECRET),
            redirect_uri: Some(redirect),
            consent_url: Some(format!("{}/oauth", amo.base_url())),
            account_base: Some(amo.base_url()),
            chats: self.amo_chats.then(|| {
                amo.register_chat_channel(
                    TestApp::AMO_CHANNEL_ID,
                    TestApp::AMO_CHANNEL_SECRET,
                    Some(&format!("{url}/hooks/amojo/:scope_id")),
                );
                chatter_core::crm::ChatsConfig {
                    channel_id: TestApp::AMO_CHANNEL_ID.into(),
                    secret: Secret::new(TestApp::AMO_CHANNEL_SECRET),
                    base_url: Some(amo.base_url()),
                    title: None,
                }
            }),
        });
        if let Some((token, username)) = &self.telegram_login {
            cfg.telegram_login_bot_token = Some(Secret::new(token.clone()));
            cfg.telegram_login_bot_username = Some(username.clone());
        }
        let (secrets, _) = Secrets::load_or_create(None, db.data_dir()).expect("master key");
        let mailer = SmtpMailer::new(&SmtpConfig {
            host: "127.0.0.1".into(),
            port: smtp.port(),
            username: None,
            password: None,
            from: "Chatter <noreply@chatter.test>".into(),
            tls: "none".into(),
        })
        .expect("smtp mailer");
        let manual = self
            .manual_clock
            .then(|| Arc::new(ManualClock::new(1_767_225_600_000)));
        let clock: Arc<dyn Clock> = match &manual {
            Some(c) => c.clone(),
            None => Arc::new(SystemClock),
        };
        // As `chatter serve` does: on SQLite, pages read through read-only connections.
        let read = chatter_store::connect_read(&db.url, 2)
            .await
            .expect("open the test database's read-only connections");
        let core =
            Core::new(db.db.clone(), clock, secrets, Arc::new(mailer), cfg).with_read_pool(read);
        let web = WebConfig {
            database_url: db.url.clone(),
            trust_proxy: self.trust_proxy,
            ..WebConfig::default()
        };
        let workers = self.workers.then(|| {
            (
                Registry::standard(),
                WorkerConfig {
                    concurrency: 4,
                    lease_ms: 30_000,
                    poll_ms: 50,
                    ..Default::default()
                },
            )
        });
        let server = server::start(core.clone(), web, Some(listener), workers).await;
        TestApp {
            db,
            core,
            url,
            smtp,
            telegram,
            telegram_hook_base,
            vk,
            max,
            tgp,
            avito,
            whatsapp,
            sms,
            sms_gateways,
            amo,
            clock: manual,
            workers: self.workers,
            server: Some(server),
        }
    }
}

impl TestApp {
    /// The public webhook base Telegram is given in webhook mode (https on port 443).
    pub const TELEGRAM_HOOK_BASE: &'static str = "https://chatter.example.test";
    pub const AMO_CLIENT_ID: &'static str = "chatter-test-integration";
    pub const AMO_CLIENT_SECRET: &'static str = "test-client-secret-0123456789";
    pub const AMO_CHANNEL_ID: &'static str = "f90ba33d-c9d9-44da-b76c-c349b0ecbe41";
    pub const AMO_CHANNEL_SECRET: &'static str = "5a44c5dff55f3c15a4cce8d7c4cc27e207c7e189";

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            workers: true,
            amo_chats: true,
            ..TestAppBuilder::default()
        }
    }

    pub async fn new() -> TestApp {
        Self::builder().start().await
    }

    /// A client with its own cookie jar: one "browser session".
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client")
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The path of the sign-up confirmation link mailed to `email` (claimed from the SMTP
    /// capture). Without workers, the due mail jobs are run here first and any other due job
    /// is handed back untouched.
    pub async fn sign_up_link(&self, email: &str) -> String {
        if !self.workers {
            let registry = chatter_core::jobs::worker::Registry::standard();
            for _ in 0..3 {
                let now = self.core.now();
                let claimed = chatter_store::jobs::claim(&self.core.db, now, 30_000, 100)
                    .await
                    .expect("claim due jobs");
                for job in claimed {
                    if job.kind == chatter_core::accounts::signup::SignUpMail::NAME
                        || job.kind == chatter_core::mailer::SendEmail::NAME
                    {
                        chatter_core::jobs::worker::execute(&self.core, &registry, job, 30_000)
                            .await;
                    } else {
                        chatter_store::jobs::release(&self.core.db, job.id, &job.locked_by, now)
                            .await
                            .expect("hand a job back");
                    }
                }
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mail = self
                .smtp
                .wait_for(email, left)
                .await
                .unwrap_or_else(|| panic!("no sign-up confirmation mail to {email}"));
            if let Some(link) = mail
                .links()
                .into_iter()
                .find(|l| l.contains("/sign-up/confirm/"))
            {
                return link.trim_start_matches(&self.url).to_string();
            }
        }
    }

    /// Stops the server and its workers gracefully.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// The `_csrf` value of the first form in a page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"_csrf\" value=\"";
    html.find(marker)
        .map(|i| {
            let rest = &html[i + marker.len()..];
            rest[..rest.find('"').unwrap_or(0)].to_string()
        })
        .unwrap_or_default()
}

/// A signed-in person, driving the product over HTTP as a browser would.
pub struct Session {
    pub http: reqwest::Client,
    pub base: String,
}

impl Session {
    pub fn new(app: &TestApp) -> Self {
        Self {
            http: app.client(),
            base: app.url.clone(),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }

    pub async fn html(&self, path: &str) -> String {
        self.get(path).await.text().await.expect("body")
    }

    /// Posts a form from `page` (whose CSRF token is used) to `path`.
    pub async fn post_from(
        &self,
        page: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let csrf = csrf_of(&self.html(page).await);
        self.post_with(path, &csrf, fields).await
    }

    pub async fn post_with(
        &self,
        path: &str,
        csrf: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form: Vec<(&str, &str)> = vec![("_csrf", csrf)];
        form.extend_from_slice(fields);
        self.http
            .post(format!("{}{path}", self.base))
            .form(&form)
            .send()
            .await
            .expect("POST")
    }

    /// Signs up a company with its owner; the session is signed in afterwards.
    pub async fn sign_up(
        app: &TestApp,
        company: &str,
        name: &str,
        email: &str,
        password: &str,
    ) -> Session {
        let s = Session::new(app);
        let r = s
            .post_from(
                "/sign-up",
                "/sign-up",
                &[
                    ("company_name", company),
                    ("name", name),
                    ("email", email),
                    ("password", password),
                ],
            )
            .await;
        match r.status().as_u16() {
            // The first account of an empty instance is created at once.
            303 => {}
            // Any later one waits for the link mailed to the address.
            200 => {
                let path = app.sign_up_link(email).await;
                let r = s.post_from(&path, &path, &[]).await;
                assert_eq!(r.status(), 303, "the confirmed sign-up should open the app");
            }
            other => panic!("sign-up answered {other}"),
        }
        s
    }

    /// Signs in with email and password.
    pub async fn sign_in(
        app: &TestApp,
        email: &str,
        password: &str,
    ) -> (Session, reqwest::Response) {
        let s = Session::new(app);
        let r = s
            .post_from(
                "/sign-in",
                "/sign-in",
                &[("email", email), ("password", password)],
            )
            .await;
        (s, r)
    }
}
