//! The kind contract (issue 10 item 6): one scenario, run against every messenger kind as it is
//! connected today, each through its fake. A table of kinds (`Kind`), each row an adapter that
//! connects a source through the UI, builds signed, forged and malformed hook deliveries, has a
//! customer write at the fake and blocks them there; `contract` runs the same steps for each.
//! A new kind gets the scenario by adding a row (and the compiler lists every match to extend);
//! `every_registered_kind_has_a_contract_row` fails until a kind added to `chatter-channels`'
//! `KINDS` registry has its row here.
//!
//! Telegram, VK, Max and Avito are polled by default; each also has a webhook mode today, and
//! the contract starts them in it, so every kind takes hooks and no row skips steps 1–2. A
//! forged hook gets 401 and a malformed one 400 from every kind today. Every kind that sends
//! files gets a picture from the reply box to its customer (step 5b).

use crate::api::create_key;
use crate::api_source::{company_with_api_source, message_body, now_secs, post_signed};
use crate::avito::company_with_avito;
use crate::max::company_with_max_bot;
use crate::messages::{company_with_bot, count};
use crate::sms::{company_with_sms, setup_value};
use crate::telegram::{conversation_with, message_block, reply, thread_shows, within};
use crate::vk::company_with_community;
use crate::whatsapp::{company_with_whatsapp, sign as wa_sign};
use chatter_fakes::{VkCustomerMessage, VkGroup, WaNumber};
use chatter_testkit::{Session, TestApp};
use reqwest::multipart::{Form, Part};
use std::time::Duration;

/// The messenger kinds the contract covers: every kind connectable today.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Telegram,
    Vk,
    Max,
    Avito,
    WhatsApp,
    Sms,
    Api,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Telegram,
        Kind::Vk,
        Kind::Max,
        Kind::Avito,
        Kind::WhatsApp,
        Kind::Sms,
        Kind::Api,
    ];

    /// The registry's name of the kind (its hooks' path segment).
    fn slug(self) -> &'static str {
        match self {
            Kind::Telegram => "telegram",
            Kind::Vk => "vk",
            Kind::Max => "max",
            Kind::Avito => "avito",
            Kind::WhatsApp => "whatsapp",
            Kind::Sms => "sms",
            Kind::Api => "api",
        }
    }
}

/// The rows and the registry name the same kinds: a kind registered without a row here (or a
/// row for a kind no longer registered) fails. Kinds connected by a login in steps (Telegram
/// personal accounts) take no hooks, so steps 1–2 cannot apply; `telegram_personal.rs` runs
/// the rest of the scenario (stored once through a gap, replies in order through FLOOD_WAIT)
/// against their fake.
#[test]
fn every_registered_kind_has_a_contract_row() {
    let mut registered: Vec<&str> = chatter_channels::kind::KINDS
        .iter()
        .filter(|k| k.login().is_none())
        .map(|k| k.slug())
        .collect();
    let mut rows: Vec<&str> = Kind::ALL.iter().map(|k| k.slug()).collect();
    registered.sort_unstable();
    rows.sort_unstable();
    assert_eq!(registered, rows);
}

/// What a row needs to talk to its source and its fake after connecting.
enum Creds {
    Telegram {
        token: String,
        secret: String,
    },
    Vk {
        group: VkGroup,
        secret: String,
    },
    Max {
        token: String,
        secret: String,
    },
    Avito {
        client_id: String,
        user_id: i64,
        path_token: String,
    },
    WhatsApp {
        number: WaNumber,
    },
    Sms {
        key: String,
        inbound: String,
    },
    Api {
        secret: String,
    },
}

/// Which hook delivery to make.
enum Delivery {
    /// Right shape, wrong signature or secret.
    Forged,
    /// Properly authenticated, but the body is not what the kind accepts.
    Malformed,
    /// A correctly authenticated customer message with this text (always the same delivery id,
    /// so sending it again is a replay).
    Message(&'static str),
}

/// A connected source of one kind.
struct Row {
    s: Session,
    source_id: String,
    creds: Creds,
}

// Customer ids at the fakes: one who writes through the fake (steps 5–6), another whose
// message is a hand-made hook delivery (steps 1–4), so the two never share a dedup key.
const TG_USER: i64 = 6_901;
const VK_USER: i64 = 612_690_001;
const MAX_USER: i64 = 7_690_001;
const AVITO_BUYER: i64 = 48_690_001;
const WA_CUSTOMER: &str = "79160000001";
const WA_HOOK_CUSTOMER: &str = "79160000002";
const SMS_CUSTOMER: &str = "+7 (926) 690-00-01";
const SHOP_NUMBER: &str = "74950001122";

impl Kind {
    /// The product started as this kind is connected in its own tests: the bot kinds through
    /// webhooks (so hooks are accepted), the callback-only kinds as they are.
    async fn start(self) -> TestApp {
        match self {
            Kind::Telegram | Kind::Vk | Kind::Max | Kind::Avito => {
                TestApp::builder().with_webhooks().start().await
            }
            Kind::WhatsApp | Kind::Sms | Kind::Api => TestApp::new().await,
        }
    }

    /// The kind's text limit, in characters; `None` where there is none (the API source hands
    /// the whole text to the company's own system).
    fn text_limit(self) -> Option<usize> {
        match self {
            Kind::Telegram => Some(chatter_channels::telegram::MAX_TEXT),
            Kind::Vk => Some(chatter_channels::vk::MAX_TEXT),
            Kind::Max => Some(chatter_channels::max::MAX_TEXT),
            Kind::Avito => Some(chatter_channels::avito::MAX_TEXT),
            Kind::WhatsApp => Some(chatter_channels::whatsapp::MAX_TEXT),
            Kind::Sms => Some(chatter_channels::sms::MAX_TEXT),
            Kind::Api => None,
        }
    }
}

impl Row {
    /// Connects a source of `kind` through the UI against its fake and waits until its hook is
    /// set up, using the kind's own test helper.
    async fn connect(kind: Kind, app: &TestApp) -> Row {
        let (s, source_id, creds) = match kind {
            Kind::Telegram => {
                let (s, token, id) = company_with_bot(app).await;
                within(20, "Telegram: the webhook is set", || async {
                    app.telegram.webhook(&token).is_some()
                })
                .await;
                let secret = app
                    .telegram
                    .webhook(&token)
                    .and_then(|w| w.secret_token)
                    .expect("Telegram: a secret token");
                (s, id, Creds::Telegram { token, secret })
            }
            Kind::Vk => {
                let (s, group, id) = company_with_community(app).await;
                within(20, "VK: the callback server is confirmed", || async {
                    app.vk
                        .callback_servers(group.id)
                        .first()
                        .is_some_and(|c| c.confirmed)
                })
                .await;
                let secret = app.vk.callback_servers(group.id).remove(0).secret_key;
                let secret = secret.expect("VK: a secret");
                (s, id, Creds::Vk { group, secret })
            }
            Kind::Max => {
                let (s, token, id) = company_with_max_bot(app).await;
                within(20, "Max: the bot is subscribed", || async {
                    app.max.subscription(&token).is_some()
                })
                .await;
                let secret = app
                    .max
                    .subscription(&token)
                    .and_then(|sub| sub.secret)
                    .expect("Max: a secret");
                (s, id, Creds::Max { token, secret })
            }
            Kind::Avito => {
                let (s, creds, id) = company_with_avito(app).await;
                within(20, "Avito: the webhook is subscribed", || async {
                    !app.avito.webhooks(&creds.client_id).is_empty()
                })
                .await;
                let hook = app.avito.webhooks(&creds.client_id).remove(0);
                let prefix = format!("{}/hooks/avito/{id}/", app.url);
                assert!(hook.starts_with(&prefix), "Avito: hook URL {hook}");
                let path_token = hook[prefix.len()..].to_string();
                let creds = Creds::Avito {
                    client_id: creds.client_id,
                    user_id: creds.user_id,
                    path_token,
                };
                (s, id, creds)
            }
            Kind::WhatsApp => {
                let (s, number, id) = company_with_whatsapp(app).await;
                (s, id, Creds::WhatsApp { number })
            }
            Kind::Sms => {
                let (s, key, id) = company_with_sms(app).await;
                let page = s.html(&format!("/app/sources/{id}")).await;
                let inbound = setup_value(&page, "sources.sms_inbound_url");
                (s, id, Creds::Sms { key, inbound })
            }
            Kind::Api => {
                let (s, id, secret) = company_with_api_source(app).await;
                (s, id, Creds::Api { secret })
            }
        };
        Row {
            s,
            source_id,
            creds,
        }
    }

    /// Posts one hook delivery the way the kind's provider does; returns the answer.
    async fn deliver(
        &self,
        app: &TestApp,
        http: &reqwest::Client,
        d: Delivery,
    ) -> reqwest::Response {
        let id = &self.source_id;
        let post = |url: String| http.post(url);
        let req = match (&self.creds, d) {
            (Creds::Telegram { secret, .. }, d) => {
                let (secret, body) = match d {
                    Delivery::Forged => ("forged-secret", telegram_update("x")),
                    Delivery::Malformed => (secret.as_str(), "{not json".to_string()),
                    Delivery::Message(t) => (secret.as_str(), telegram_update(t)),
                };
                post(app.at(&format!("/hooks/telegram/{id}")))
                    .header("X-Telegram-Bot-Api-Secret-Token", secret)
                    .header("content-type", "application/json")
                    .body(body)
            }
            (Creds::Vk { group, secret }, d) => {
                let body = match d {
                    Delivery::Forged => vk_event(group.id, "forged", "x"),
                    Delivery::Malformed => "{not json".to_string(),
                    Delivery::Message(t) => vk_event(group.id, secret, t),
                };
                post(app.at(&format!("/hooks/vk/{id}")))
                    .header("content-type", "application/json")
                    .body(body)
            }
            (Creds::Max { secret, .. }, d) => {
                let (secret, body) = match d {
                    Delivery::Forged => ("forged-secret", max_update("x")),
                    Delivery::Malformed => (secret.as_str(), "{not json".to_string()),
                    Delivery::Message(t) => (secret.as_str(), max_update(t)),
                };
                post(app.at(&format!("/hooks/max/{id}")))
                    .header("X-Max-Bot-Api-Secret", secret)
                    .header("content-type", "application/json")
                    .body(body)
            }
            (
                Creds::Avito {
                    path_token,
                    user_id,
                    ..
                },
                d,
            ) => {
                let forged = "0".repeat(64);
                let user_id = *user_id;
                let (token, body) = match d {
                    Delivery::Forged => (forged.as_str(), avito_payload(user_id, "x")),
                    Delivery::Malformed => (path_token.as_str(), "{not json".to_string()),
                    Delivery::Message(t) => (path_token.as_str(), avito_payload(user_id, t)),
                };
                post(app.at(&format!("/hooks/avito/{id}/{token}")))
                    .header("content-type", "application/json")
                    .body(body)
            }
            (Creds::WhatsApp { number }, d) => {
                let (key, body) = match d {
                    Delivery::Forged => ("not-the-app-secret", wa_payload(number, "x")),
                    Delivery::Malformed => (number.app_secret.as_str(), "{not json".to_string()),
                    Delivery::Message(t) => (number.app_secret.as_str(), wa_payload(number, t)),
                };
                post(app.at(&format!("/hooks/whatsapp/{id}")))
                    .header("x-hub-signature-256", wa_sign(key, body.as_bytes()))
                    .body(body)
            }
            (Creds::Sms { inbound, .. }, d) => {
                let fields = |text: &'static str| {
                    vec![
                        ("id", "contract-1"),
                        ("from", "79265550002"),
                        ("to", SHOP_NUMBER),
                        ("text", text),
                        ("time", "1767225600"),
                    ]
                };
                match d {
                    Delivery::Forged => {
                        let forged = format!("/hooks/sms/{id}/{}/inbound", "0".repeat(43));
                        post(app.at(&forged)).form(&fields("x"))
                    }
                    Delivery::Malformed => {
                        post(inbound.clone()).form(&[("text", "без отправителя")])
                    }
                    Delivery::Message(t) => post(inbound.clone()).form(&fields(t)),
                }
            }
            (Creds::Api { secret }, d) => {
                let ts = now_secs(app);
                let (secret, body) = match d {
                    Delivery::Forged => (
                        "whsec_not_the_secret",
                        message_body("contract-1", "c-1", "x"),
                    ),
                    Delivery::Malformed => (secret.as_str(), "{oops".to_string()),
                    Delivery::Message(t) => (secret.as_str(), message_body("contract-1", "c-1", t)),
                };
                return post_signed(http, app, id, secret, ts, &body, None).await;
            }
        };
        req.send().await.expect("the hook answers")
    }

    /// The customer writes `text` through the fake (which delivers it as the kind does);
    /// `false` for the API source, which has no fake: the company's system posts itself.
    fn customer_writes(&self, app: &TestApp, text: &str) -> bool {
        match &self.creds {
            Creds::Telegram { token, .. } => {
                app.telegram.customer_writes(
                    token,
                    chatter_fakes::CustomerMessage::text(TG_USER, "Кирилл", text),
                );
            }
            Creds::Vk { group, .. } => {
                app.vk
                    .customer_writes(group.id, VkCustomerMessage::text(VK_USER, text));
            }
            Creds::Max { token, .. } => {
                app.max.customer_writes(
                    token,
                    chatter_fakes::max::CustomerMessage::text(MAX_USER, "Павел", text),
                );
            }
            Creds::Avito { client_id, .. } => {
                app.avito.customer_writes(
                    client_id,
                    chatter_fakes::avito::BuyerMessage::text(
                        AVITO_BUYER,
                        "Николай",
                        3_402_118_775,
                        text,
                    ),
                );
            }
            Creds::WhatsApp { number } => {
                app.whatsapp
                    .customer_writes(&number.phone_number_id, WA_CUSTOMER, "Ирина", text);
            }
            Creds::Sms { key, .. } => {
                app.sms.customer_sends(key, SMS_CUSTOMER, SHOP_NUMBER, text);
            }
            Creds::Api { .. } => return false,
        }
        true
    }

    /// The texts the fake received from us, in order.
    fn sent(&self, app: &TestApp) -> Vec<String> {
        match &self.creds {
            Creds::Telegram { token, .. } => app
                .telegram
                .sent(token)
                .into_iter()
                .map(|m| m.text.unwrap_or_default())
                .collect(),
            Creds::Vk { group, .. } => app.vk.sent(group.id).into_iter().map(|m| m.text).collect(),
            Creds::Max { token, .. } => app.max.sent(token).into_iter().map(|m| m.text).collect(),
            Creds::Avito { client_id, .. } => app
                .avito
                .sent(client_id)
                .into_iter()
                .map(|m| m.text)
                .collect(),
            Creds::WhatsApp { number } => app
                .whatsapp
                .sent(&number.phone_number_id)
                .into_iter()
                .filter_map(|m| m.text)
                .collect(),
            Creds::Sms { key, .. } => app.sms.sent(key).into_iter().map(|m| m.text).collect(),
            Creds::Api { .. } => Vec::new(),
        }
    }

    /// The bytes of every file the fake received from us, in order; `None` for the API source,
    /// whose files its company's system downloads (`reply_files`).
    fn sent_files(&self, app: &TestApp) -> Option<Vec<Vec<u8>>> {
        Some(match &self.creds {
            Creds::Telegram { token, .. } => app
                .telegram
                .sent(token)
                .into_iter()
                .filter_map(|m| m.file.map(|f| f.bytes))
                .collect(),
            Creds::Vk { group, .. } => app
                .vk
                .sent(group.id)
                .into_iter()
                .flat_map(|m| m.attachments.into_iter().map(|a| a.bytes))
                .collect(),
            Creds::Max { token, .. } => app
                .max
                .sent(token)
                .into_iter()
                .flat_map(|m| m.attachments.into_iter().map(|a| a.bytes))
                .collect(),
            Creds::Avito { client_id, .. } => app
                .avito
                .sent(client_id)
                .into_iter()
                .filter_map(|m| m.image.map(|i| i.bytes))
                .collect(),
            Creds::WhatsApp { number } => app
                .whatsapp
                .sent(&number.phone_number_id)
                .into_iter()
                .filter_map(|m| app.whatsapp.media(m.media.as_deref()?))
                .map(|m| m.bytes)
                .collect(),
            Creds::Sms { .. } => Vec::new(),
            Creds::Api { .. } => return None,
        })
    }

    /// Blocks the fake-side customer (the one of `customer_writes`) at the fake, where the kind
    /// has a "customer blocked" state today; `false` where it has none.
    fn block_customer(&self, app: &TestApp) -> bool {
        match &self.creds {
            Creds::Telegram { token, .. } => app.telegram.customer_blocks(token, TG_USER, true),
            Creds::Vk { group, .. } => app.vk.customer_denies(group.id, VK_USER),
            Creds::Max { token, .. } => app.max.bot_stopped(token, MAX_USER, "Павел"),
            // Avito has no blocked-buyer answer in its API (nor in the fake); SMS has none
            // (the gateway reports an unreachable number per message, which is a failed
            // delivery, not a blocked conversation); WhatsApp's 131026 covers "blocked" and
            // "not on WhatsApp" alike, so the connector does not treat it as blocked; the API
            // source has no provider to block anyone.
            Creds::Avito { .. }
            | Creds::WhatsApp { .. }
            | Creds::Sms { .. }
            | Creds::Api { .. } => return false,
        }
        true
    }
}

fn telegram_update(text: &str) -> String {
    serde_json::json!({"update_id": 990_001, "message": {"message_id": 1, "date": 1767225600,
        "from": {"id": 6902, "is_bot": false, "first_name": "Гость"},
        "chat": {"id": 6902, "type": "private", "first_name": "Гость"}, "text": text}})
    .to_string()
}

fn vk_event(group_id: i64, secret: &str, text: &str) -> String {
    serde_json::json!({"type": "message_new", "event_id": "c0ffee01", "v": "5.199",
        "group_id": group_id, "secret": secret,
        "object": {"message": {"date": 1767225600, "from_id": 612690002, "id": 900,
            "out": 0, "peer_id": 612690002, "text": text, "conversation_message_id": 41,
            "attachments": [], "fwd_messages": []}, "client_info": {}}})
    .to_string()
}

fn max_update(text: &str) -> String {
    serde_json::json!({"update_type": "message_created", "timestamp": 1767225600123i64,
        "message": {"sender": {"user_id": 7690002, "first_name": "Олег", "is_bot": false},
            "recipient": {"chat_id": 7690002, "chat_type": "dialog"},
            "timestamp": 1767225600000i64,
            "body": {"mid": "mid.contract.1", "seq": 1, "text": text, "attachments": []}}})
    .to_string()
}

fn avito_payload(user_id: i64, text: &str) -> String {
    serde_json::json!({"id": "hook-contract-1", "version": "v3.0.0", "timestamp": 1767225600,
        "payload": {"type": "message", "value": {"id": "contract-1", "chat_id": "u2i-contract",
            "user_id": user_id, "author_id": 48690002, "created": 1767225600,
            "type": "text", "chat_type": "u2i", "content": {"text": text}}}})
    .to_string()
}

fn wa_payload(number: &WaNumber, text: &str) -> String {
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": number.waba_id,
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": SHOP_NUMBER,
                "phone_number_id": number.phone_number_id},
            "contacts": [{"profile": {"name": "Олег"}, "wa_id": WA_HOOK_CUSTOMER}],
            "messages": [{"from": WA_HOOK_CUSTOMER, "id": "wamid.contract-1",
                "timestamp": "1767225600", "type": "text", "text": {"body": text}}]}}]}]})
    .to_string()
}

/// A text of `chars` characters made of numbered sentences, so parts out of order show.
fn long_text(chars: usize) -> String {
    let mut text = String::new();
    let mut i = 0;
    while text.chars().count() < chars {
        i += 1;
        text.push_str(&format!("Пункт {i} договора. "));
    }
    text.chars()
        .take(chars)
        .collect::<String>()
        .trim()
        .to_string()
}

/// A real 1×1 PNG, raster by its bytes, so every kind that sends files sends it as a picture.
fn contract_png() -> Vec<u8> {
    let mut b =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    b.extend_from_slice(b"\0\0\0\rIDATx\xdac\x64`\xf8_\x0f\0\x02\x87\x01\x80\xebG\xba\x92");
    b.extend_from_slice(b"\0\0\0\0IEND\xaeB`\x82contract");
    b
}

async fn messages(app: &TestApp) -> i64 {
    count(app, "SELECT count(*) FROM messages").await
}

/// The one scenario every kind passes.
async fn contract(kind: Kind) {
    let app = kind.start().await;
    let row = Row::connect(kind, &app).await;
    let http = reqwest::Client::new();
    let before = messages(&app).await;

    // 1. A forged hook is refused and stores nothing.
    let r = row.deliver(&app, &http, Delivery::Forged).await;
    assert_eq!(
        r.status(),
        401,
        "{kind:?}, step 1: a forged hook is refused"
    );
    assert_eq!(
        messages(&app).await,
        before,
        "{kind:?}, step 1: a forged hook stores nothing"
    );

    // 2. A malformed body is refused and stores nothing.
    let r = row.deliver(&app, &http, Delivery::Malformed).await;
    assert_eq!(
        r.status(),
        400,
        "{kind:?}, step 2: a malformed body is refused"
    );
    assert_eq!(
        messages(&app).await,
        before,
        "{kind:?}, step 2: a malformed body stores nothing"
    );

    // 3. A customer message is stored once, in a new conversation.
    const FIRST: &str = "Контракт: первое сообщение";
    let r = row.deliver(&app, &http, Delivery::Message(FIRST)).await;
    assert_eq!(r.status(), 200, "{kind:?}, step 3: the message is accepted");
    assert_eq!(
        messages(&app).await,
        before + 1,
        "{kind:?}, step 3: the message is stored once"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM conversations").await,
        1,
        "{kind:?}, step 3: a conversation is made"
    );
    let hook_conv = conversation_with(&row.s, FIRST).await;

    // 4. The same delivery replayed stores nothing new.
    for _ in 0..2 {
        let r = row.deliver(&app, &http, Delivery::Message(FIRST)).await;
        assert_eq!(
            r.status(),
            200,
            "{kind:?}, step 4: a replay is acknowledged"
        );
    }
    assert_eq!(
        messages(&app).await,
        before + 1,
        "{kind:?}, step 4: a replay is not stored twice"
    );

    // 5. A reply longer than the kind's text limit goes out in parts, in order. It is answered
    // to a customer who wrote through the fake, as a real one would (the fake knows their chat).
    let conv = if row.customer_writes(&app, "Контракт: пришлите условия") {
        conversation_with(&row.s, "Контракт: пришлите условия").await
    } else {
        hook_conv
    };
    match kind.text_limit() {
        Some(limit) => {
            let text = long_text(limit + limit / 2);
            reply(&row.s, &conv, &text).await;
            within(
                40,
                &format!("{kind:?}, step 5: both parts arrive"),
                || async { row.sent(&app).len() >= 2 },
            )
            .await;
            // Let any stray duplicate show up before judging.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let parts = row.sent(&app);
            assert_eq!(parts.len(), 2, "{kind:?}, step 5: two parts: {parts:?}");
            assert!(
                parts.iter().all(|p| p.chars().count() <= limit),
                "{kind:?}, step 5: every part within {limit} characters"
            );
            assert_eq!(
                parts.concat(),
                text,
                "{kind:?}, step 5: in order, nothing lost"
            );
        }
        None => {
            // The API source has no limit and no fake: the whole reply is one message, handed
            // to the company's system in one outgoing webhook.
            let text = long_text(10_000);
            reply(&row.s, &conv, &text).await;
            assert_eq!(
                count(
                    &app,
                    &format!(
                        "SELECT count(*) FROM messages WHERE direction = 'out' AND length(text) = {}",
                        text.chars().count()
                    )
                )
                .await,
                1,
                "{kind:?}, step 5: the long reply is one whole message"
            );
        }
    }

    // 5b. A picture from the reply box reaches the customer byte for byte where the kind sends
    // files; where it cannot (SMS), it is refused and nothing is stored.
    let picture = contract_png();
    let key = create_key(&row.s, "contract").await;
    let part = Part::bytes(picture.clone())
        .file_name("contract.png")
        .mime_str("image/png")
        .expect("a MIME type");
    let stored = messages(&app).await;
    let r = app
        .client()
        .post(app.at(&format!("/api/v1/conversations/{conv}/attachments")))
        .bearer_auth(&key)
        .multipart(Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    let files = chatter_channels::kind_by_slug(kind.slug()).and_then(|k| k.files());
    match files {
        Some(_) => {
            assert_eq!(r.status(), 201, "{kind:?}, step 5b: the picture is taken");
            if row.sent_files(&app).is_some() {
                within(
                    40,
                    &format!("{kind:?}, step 5b: the customer gets the picture"),
                    || async { row.sent_files(&app).unwrap_or_default().contains(&picture) },
                )
                .await;
            }
        }
        None => {
            assert_eq!(
                r.status(),
                422,
                "{kind:?}, step 5b: the kind takes no files"
            );
            assert_eq!(
                messages(&app).await,
                stored,
                "{kind:?}, step 5b: nothing is stored"
            );
        }
    }

    // 6. A customer who blocked us: the reply fails for good and the conversation is marked.
    if row.block_customer(&app) {
        const AFTER: &str = "Контракт: ответ после блокировки";
        let sent_before = row.sent(&app).len();
        reply(&row.s, &conv, AFTER).await;
        let page = thread_shows(&row.s, &conv, "data-status=\"failed\"").await;
        let block = message_block(&page, AFTER)
            .unwrap_or_else(|| panic!("{kind:?}, step 6: the reply is shown: {page}"));
        assert!(
            block.contains("data-status=\"failed\""),
            "{kind:?}, step 6: the reply failed: {block}"
        );
        thread_shows(&row.s, &conv, "id=\"blocked-notice\"").await;
        assert_eq!(
            count(
                &app,
                // Only the fake-side customer's conversation can be blocked (ids are stored as
                // bytes on SQLite, so the row is not picked by the id the page shows).
                "SELECT count(*) FROM conversations WHERE blocked = TRUE"
            )
            .await,
            1,
            "{kind:?}, step 6: the conversation is marked blocked"
        );
        assert_eq!(
            row.sent(&app).len(),
            sent_before,
            "{kind:?}, step 6: nothing reached the blocked customer"
        );
    }
}

#[tokio::test]
async fn telegram_keeps_the_kind_contract() {
    contract(Kind::Telegram).await;
}

#[tokio::test]
async fn vk_keeps_the_kind_contract() {
    contract(Kind::Vk).await;
}

#[tokio::test]
async fn max_keeps_the_kind_contract() {
    contract(Kind::Max).await;
}

#[tokio::test]
async fn avito_keeps_the_kind_contract() {
    contract(Kind::Avito).await;
}

#[tokio::test]
async fn whatsapp_keeps_the_kind_contract() {
    contract(Kind::WhatsApp).await;
}

#[tokio::test]
async fn sms_keeps_the_kind_contract() {
    contract(Kind::Sms).await;
}

#[tokio::test]
async fn api_source_keeps_the_kind_contract() {
    contract(Kind::Api).await;
}

/// Auto-replies (issue 14): a new customer of every kind is greeted through the kind's fake
/// (the API source, which has no fake, gets the greeting as its outgoing message).
async fn greeting(kind: Kind) {
    let app = kind.start().await;
    let row = Row::connect(kind, &app).await;
    crate::auto_replies::greeting_rule(&row.s, &app).await;
    let greeting = crate::auto_replies::KIND_GREETING;
    if row.customer_writes(&app, "Здравствуйте, вы работаете?") {
        within(40, &format!("{kind:?}: the greeting arrives"), || async {
            row.sent(&app).iter().any(|t| t == greeting)
        })
        .await;
    } else {
        let r = row
            .deliver(
                &app,
                &reqwest::Client::new(),
                Delivery::Message("Здравствуйте"),
            )
            .await;
        assert_eq!(r.status(), 200, "{kind:?}: the message is accepted");
        within(40, &format!("{kind:?}: the greeting is sent"), || async {
            count(
                &app,
                "SELECT count(*) FROM messages WHERE direction = 'out' AND sender_name LIKE '%Автоответ%'",
            )
            .await
                == 1
        })
        .await;
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM auto_reply_firings WHERE outcome = 'fired'"
        )
        .await,
        1,
        "{kind:?}: one greeting"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_kind_greets_a_new_customer() {
    for kind in Kind::ALL {
        greeting(kind).await;
    }
}

/// Every trigger on one kind, on the manual clock: a new customer is greeted, a keyword is
/// answered, a message after hours gets the out-of-hours reply, and an unanswered one the
/// "no answer in 5 minutes" reply — each delivered through the kind's fake (the API source,
/// which has none, is checked in the database).
async fn every_trigger(kind: Kind) {
    use crate::auto_replies::{office_hours, reply, rule, MINUTE, MONDAY_10_MSK};
    use serde_json::json;
    let app = match kind {
        Kind::Telegram | Kind::Vk | Kind::Max | Kind::Avito => {
            TestApp::builder()
                .with_webhooks()
                .with_manual_clock()
                .start()
                .await
        }
        Kind::WhatsApp | Kind::Sms | Kind::Api => {
            TestApp::builder().with_manual_clock().start().await
        }
    };
    let clock = app.clock.clone().expect("manual clock");
    clock.set(MONDAY_10_MSK);
    let row = Row::connect(kind, &app).await;
    let key = create_key(&row.s, "triggers").await;
    office_hours(&app, &key).await;
    const GREET: &str = "Здравствуйте! Менеджер скоро ответит.";
    const KEYWORD: &str = "Доставка по городу — 300 ₽.";
    const CLOSED: &str = "Мы работаем с 9 до 18, ответим утром.";
    const LATE: &str = "Извините за ожидание, уже зовём менеджера.";
    rule(
        &app,
        &key,
        reply("Приветствие", json!({"type": "first_message"}), GREET),
    )
    .await;
    let mut kw = reply("Доставка", json!({"type": "keywords"}), KEYWORD);
    kw["conditions"] = json!({"keywords": ["доставка"]});
    rule(&app, &key, kw).await;
    rule(
        &app,
        &key,
        reply("Нерабочее время", json!({"type": "out_of_hours"}), CLOSED),
    )
    .await;
    let http = reqwest::Client::new();
    let mut n = 0;
    let mut writes = |text: &'static str| {
        n += 1;
        let (row, app, http, n) = (&row, &app, &http, n);
        async move {
            if !row.customer_writes(app, text) {
                let body = message_body(&format!("trigger-{n}"), "c-1", text);
                let r = post_signed(
                    http,
                    app,
                    &row.source_id,
                    match &row.creds {
                        Creds::Api { secret } => secret,
                        _ => unreachable!("only the API source has no fake"),
                    },
                    now_secs(app),
                    &body,
                    None,
                )
                .await;
                assert_eq!(r.status(), 200, "{kind:?}: message {n} accepted");
            }
        }
    };
    let arrived = |text: &'static str| {
        let (row, app) = (&row, &app);
        async move {
            if let Creds::Api { .. } = &row.creds {
                let sql = format!(
                    "SELECT count(*) FROM messages WHERE direction = 'out' AND text = '{text}'"
                );
                return count(app, &sql).await == 1;
            }
            row.sent(app).iter().filter(|t| t.as_str() == text).count() == 1
        }
    };
    let checks = |n: i64| {
        let app = &app;
        async move {
            within(40, &format!("{kind:?}: {n} auto-reply checks"), || async {
                count(
                    app,
                    "SELECT count(*) FROM jobs WHERE kind = 'auto_reply_check' AND status = 'done'",
                )
                .await
                    >= n
            })
            .await;
        }
    };

    // Monday 10:00, open: greeted, then a keyword answered.
    writes("Добрый день").await;
    within(40, &format!("{kind:?}: the greeting"), || arrived(GREET)).await;
    writes("Сколько стоит доставка?").await;
    within(40, &format!("{kind:?}: the keyword reply"), || {
        arrived(KEYWORD)
    })
    .await;
    // Monday 20:00, closed: the out-of-hours reply.
    clock.set(MONDAY_10_MSK + 10 * 60 * MINUTE);
    writes("Вы ещё работаете?").await;
    within(40, &format!("{kind:?}: the out-of-hours reply"), || {
        arrived(CLOSED)
    })
    .await;
    // Then "no answer in 5 minutes" (always): set after the rest, so only the next message
    // starts its timer; nothing before its time, the reply after it.
    rule(
        &app,
        &key,
        reply(
            "Нет ответа",
            json!({"type": "no_answer", "minutes": 5}),
            LATE,
        ),
    )
    .await;
    writes("Ау?").await;
    checks(4).await;
    clock.advance(4 * MINUTE);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!arrived(LATE).await, "{kind:?}: not before its time");
    clock.advance(2 * MINUTE);
    within(40, &format!("{kind:?}: the no-answer reply"), || {
        arrived(LATE)
    })
    .await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM auto_reply_firings WHERE outcome = 'fired'"
        )
        .await,
        4,
        "{kind:?}: four firings, one per trigger"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_kind_answers_every_trigger() {
    for kind in Kind::ALL {
        every_trigger(kind).await;
    }
}
