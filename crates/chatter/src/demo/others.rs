//! The demo's VK, Max, Avito, WhatsApp and SMS sources and the API source «Сайт»: one source and
//! one customer each, connected at the fakes, and the short dialogues they write (through the
//! phones page, so a person sees them there too).

use super::{rand_u16, Fakes};
use chatter_core::sources::{self, NewSource};
use chatter_core::{Actor, Core};
use chatter_domain::SourceKind;
use chatter_fakes::phone_page::{
    AvitoLine, MaxLine, PhoneLine, Phones, SmsLine, VkLine, WhatsAppLine,
};
use std::time::Duration;
use tokio::sync::watch;

/// The demo's accounts in the VK, Max, Avito, WhatsApp and SMS fakes.
pub(super) struct Others {
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
    pub(super) phones: Phones,
}

/// The callback settings the WhatsApp and SMS sources' pages show, as a person would paste them.
fn manual_hooks(
    core: &Core,
    all: &[chatter_store::entity::source::Model],
    kind: SourceKind,
) -> Option<(String, String)> {
    let s = all.iter().find(|s| s.kind == kind)?;
    let token = sources::secret_of(core, s).ok()?.webhook_secret?;
    let base = chatter_core::connectors::public_hook_base(&core.config, s.kind);
    let shown = chatter_channels::kind_of(kind)?.manual_setup(base, s.id.0, Some(&token));
    let mut values = shown.into_iter().map(|(_, v)| v);
    Some((values.next()?, values.next()?))
}

/// Creates the community, the bot and the account in the fakes and connects each as a source
/// (a reused data directory keeps its sources and gets this run's credentials).
pub(super) async fn connect_others(
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
            NewSource::new(
                SourceKind::VkBot,
                [
                    ("vk_token", group.token.clone()),
                    ("vk_group_id", group.id.to_string()),
                ],
            ),
        ),
        (
            "Max: Рога и Копыта",
            NewSource::new(SourceKind::MaxBot, [("max_token", max_token.clone())]),
        ),
        (
            "Авито: Рога и Копыта",
            NewSource::new(
                SourceKind::Avito,
                [
                    ("avito_client_id", avito.client_id.clone()),
                    ("avito_client_secret", avito.client_secret.clone()),
                ],
            ),
        ),
        (
            "WhatsApp: Рога и Копыта",
            NewSource::new(
                SourceKind::Whatsapp,
                [
                    ("wa_phone_number_id", wa.phone_number_id.clone()),
                    ("wa_waba_id", wa.waba_id.clone()),
                    ("wa_access_token", wa.access_token.clone()),
                    ("wa_app_secret", wa.app_secret.clone()),
                ],
            ),
        ),
        (
            "SMS: Рога и Копыта",
            NewSource::new(
                SourceKind::SipoutSms,
                [
                    ("sms_api_key", sms_key.clone()),
                    ("sms_sender", "Roga".into()),
                ],
            ),
        ),
    ];
    let existing = sources::list(core, actor).await?;
    for (name, new) in wanted {
        match existing.iter().find(|s| s.kind == new.kind()) {
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
    let existing = all.iter().find(|s| s.kind == SourceKind::Api);
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
pub(super) async fn simulate_others(o: Others, mut stopped: watch::Receiver<bool>) {
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
