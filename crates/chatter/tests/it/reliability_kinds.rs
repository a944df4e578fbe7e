//! Nothing lost, nothing doubled, for the webhook kinds other than Telegram, with the real
//! `chatter` binary: a burst of signed webhooks for one source (API source, WhatsApp, VK
//! Callback API, SMS, Max, Avito), SIGKILL after a few hundred acknowledgements, a restart on the same data
//! directory and database, and everything not acknowledged sent again. Every message answered
//! 2xx before the kill must already be stored, and afterwards each message is stored exactly
//! once. The fakes run in the test process; the database is a fresh SQLite data directory (or a
//! fresh PostgreSQL database when `TEST_DATABASE_URL` is set).

use crate::server_process::Server;
use chatter_fakes::{FakeAvito, FakeMax, FakeSms, FakeVk, FakeWhatsApp};
use chatter_testkit::{Session, TestDb};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PW: &str = "correct horse battery";
const BURST: usize = 1_500;
const CUSTOMERS: usize = 50;
const TASKS: usize = 12;
const KILL_AFTER: usize = 300;
const SHOP_NUMBER: &str = "74950001122";

/// The program in webhook mode with the VK, WhatsApp, SMS, Max and Avito fakes.
struct Node {
    server: Server,
    vk: FakeVk,
    whatsapp: FakeWhatsApp,
    sms: FakeSms,
    max: FakeMax,
    avito: FakeAvito,
}

impl std::ops::Deref for Node {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

impl Node {
    async fn start() -> Node {
        let db = TestDb::new().await;
        let vk = FakeVk::start().await.expect("VK fake");
        let whatsapp = FakeWhatsApp::start().await.expect("WhatsApp fake");
        let sms = FakeSms::start().await.expect("SMS fake");
        let max = FakeMax::start().await.expect("Max fake");
        let avito = FakeAvito::start().await.expect("Avito fake");
        let server = Server::new(db, |url| {
            vec![
                ("CHATTER_PUBLIC_WEBHOOK_BASE", url.to_string()),
                // No Telegram bots here, but a plain-http general base would be given to them:
                // Telegram gets a base of its own that it accepts.
                (
                    "CHATTER_TELEGRAM__WEBHOOK_BASE",
                    "https://chatter.example.test".to_string(),
                ),
                ("CHATTER_VK__API_BASE", vk.base_url()),
                ("CHATTER_WHATSAPP__API_BASE", whatsapp.base_url()),
                ("CHATTER_SMS__API_BASE", sms.base_url()),
                ("CHATTER_MAX__API_BASE", max.base_url()),
                ("CHATTER_AVITO__API_BASE", avito.base_url()),
            ]
        });
        let mut node = Node {
            server,
            vk,
            whatsapp,
            sms,
            max,
            avito,
        };
        node.spawn().await;
        node
    }

    async fn sign_up(&self) -> Session {
        let s = Session {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: self.url(),
        };
        let r = s
            .post_from(
                "/sign-up",
                "/sign-up",
                &[
                    ("company_name", "Рога и Копыта"),
                    ("name", "Анна"),
                    ("email", "anna@example.ru"),
                    ("password", PW),
                ],
            )
            .await;
        assert_eq!(r.status(), 303, "signed up");
        s
    }

    async fn wait_for(&self, what: &str, mut ok: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !ok().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a redirect")
        .to_string()
}

/// The value a source page shows under `key` (`<code data-setup="key">value</code>`).
fn setup_value(page: &str, key: &str) -> String {
    let marker = format!("data-setup=\"{key}\">");
    let start = page
        .find(&marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("the page shows {key}: {page}"));
    page[start..]
        .split('<')
        .next()
        .unwrap_or_default()
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
}

/// The value of `attr` in the tag that contains `marker`.
fn attr_after<'a>(html: &'a str, marker: &str, attr: &str) -> &'a str {
    let i = html.find(marker).expect("marker in page");
    let tag_start = html[..i].rfind('<').unwrap_or(0);
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>').expect("tag end")];
    let a = format!("{attr}=\"");
    let v = &tag[tag.find(&a).expect("attribute") + a.len()..];
    &v[..v.find('"').expect("closing quote")]
}

fn hmac_hex(secret: &str, data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// The text of message `i`: unique, so the stored rows can be matched to what was sent.
fn text(i: usize) -> String {
    format!("Сообщение номер {i}")
}

/// How one source kind's webhook is posted.
#[derive(Clone)]
enum Hook {
    Api {
        secret: String,
    },
    WhatsApp {
        app_secret: String,
        pnid: String,
        waba: String,
    },
    Vk {
        secret: String,
        group_id: i64,
    },
    Sms,
    Max {
        secret: String,
    },
    Avito {
        user_id: i64,
    },
}

impl Hook {
    /// Message `i` as the provider (or the company's system) would post it, signed.
    fn request(&self, http: &reqwest::Client, url: &str, i: usize) -> reqwest::RequestBuilder {
        let k = i % CUSTOMERS;
        match self {
            Hook::Api { secret } => {
                let body = serde_json::json!({"message_id": format!("m-{i}"),
                    "chat_id": format!("c-{k}"),
                    "sender": {"id": format!("c-{k}"), "name": format!("Клиент {k}")},
                    "text": text(i)})
                .to_string();
                let ts = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock")
                    .as_secs();
                let sig = hmac_hex(secret, format!("{ts}.{body}").as_bytes());
                http.post(url)
                    .header("content-type", "application/json")
                    .header("x-chatter-timestamp", ts.to_string())
                    .header("x-chatter-signature", format!("sha256={sig}"))
                    .body(body)
            }
            Hook::WhatsApp {
                app_secret,
                pnid,
                waba,
            } => {
                let wa_id = format!("7916{:07}", k);
                let body = serde_json::json!({"object": "whatsapp_business_account",
                    "entry": [{"id": waba, "changes": [{"field": "messages", "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": SHOP_NUMBER, "phone_number_id": pnid},
                        "contacts": [{"profile": {"name": format!("Клиент {k}")}, "wa_id": wa_id}],
                        "messages": [{"from": wa_id, "id": format!("wamid.rk-{i}"),
                            "timestamp": "1767225600", "type": "text",
                            "text": {"body": text(i)}}]}}]}]})
                .to_string();
                let sig = hmac_hex(app_secret, body.as_bytes());
                http.post(url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", format!("sha256={sig}"))
                    .body(body)
            }
            Hook::Vk { secret, group_id } => {
                let user = 612_100_000 + k as i64;
                http.post(url)
                    .json(&serde_json::json!({"type": "message_new",
                    "event_id": format!("ev{i}"), "v": "5.199", "group_id": group_id,
                    "secret": secret, "object": {"message": {"date": 1767225600,
                        "from_id": user, "id": 10_000 + i, "out": 0, "peer_id": user,
                        "text": text(i), "conversation_message_id": i + 1,
                        "attachments": [], "fwd_messages": []}, "client_info": {}}}))
            }
            Hook::Max { secret } => {
                let user = 7_400_000 + k as i64;
                http.post(url).header("X-Max-Bot-Api-Secret", secret).json(
                    &serde_json::json!({"update_type": "message_created",
                        "timestamp": 1767225600123i64,
                        "message": {"sender": {"user_id": user,
                            "first_name": format!("Клиент {k}"), "is_bot": false},
                        "recipient": {"chat_id": user, "chat_type": "dialog"},
                        "timestamp": 1767225600000i64,
                        "body": {"mid": format!("mid.rk.{i}"), "seq": i, "text": text(i),
                            "attachments": []}}}),
                )
            }
            Hook::Avito { user_id } => http.post(url).json(&serde_json::json!({
                "id": format!("hook-{i}"), "version": "v3.0.0", "timestamp": 1767225600,
                "payload": {"type": "message", "value": {"id": format!("rk-{i}"),
                    "chat_id": format!("u2i-rk-{k}"), "user_id": user_id,
                    "author_id": 141_000_000 + k as i64, "created": 1767225600,
                    "type": "text", "chat_type": "u2i", "content": {"text": text(i)}}}})),
            Hook::Sms => http.post(url).form(&[
                ("id", format!("rk-{i}")),
                ("from", format!("7926{:07}", k)),
                ("to", SHOP_NUMBER.to_string()),
                ("text", text(i)),
                ("time", "1767225600".to_string()),
            ]),
        }
    }
}

/// Posts messages `todo` from `TASKS` concurrent tasks until each got a 2xx (retrying when
/// `retry`) or `stop` is set; marks the acknowledged ones in `acked`.
async fn post_all(
    hook: Hook,
    url: String,
    todo: Vec<usize>,
    acked: Arc<Mutex<Vec<bool>>>,
    acks: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    retry: bool,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let todo = Arc::new(todo);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (http, url, hook, todo, next) = (
            http.clone(),
            url.clone(),
            hook.clone(),
            todo.clone(),
            next.clone(),
        );
        let (acked, acks, stop) = (acked.clone(), acks.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Some(&i) = todo.get(next.fetch_add(1, Ordering::SeqCst)) else {
                    return;
                };
                for attempt in 0.. {
                    let r = hook.request(&http, &url, i).send().await;
                    if r.is_ok_and(|r| r.status().is_success()) {
                        acked.lock().expect("acked")[i] = true;
                        acks.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    assert!(
                        !retry || attempt < 20,
                        "message {i} never acknowledged after the restart"
                    );
                    if !retry {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("poster task");
    }
}

/// The burst, the SIGKILL, the restart and the replays, with the checks.
async fn burst_kill_replay(node: &mut Node, kind: &str, hook: Hook, url: String) {
    let acked = Arc::new(Mutex::new(vec![false; BURST]));
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let burst = tokio::spawn(post_all(
        hook.clone(),
        url.clone(),
        (0..BURST).collect(),
        acked.clone(),
        acks.clone(),
        stop.clone(),
        false,
    ));
    while acks.load(Ordering::SeqCst) < KILL_AFTER && !burst.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    node.kill9();
    stop.store(true, Ordering::SeqCst);
    burst.await.expect("burst");
    let before: Vec<bool> = acked.lock().expect("acked").clone();
    let acked_before = before.iter().filter(|a| **a).count();
    assert!(
        (KILL_AFTER..BURST).contains(&acked_before),
        "{kind}: killed mid-burst: {acked_before} acknowledged:\n{}",
        node.log()
    );

    // The node has this one source, so every inbound row is one of the burst's.
    let inbound = "FROM messages WHERE direction = 'in'";
    // Right after the crash: every acknowledged message is there.
    let stored: HashSet<String> = node
        .strings(&format!("SELECT text {inbound}"))
        .await
        .into_iter()
        .collect();
    let lost: Vec<usize> = (0..BURST)
        .filter(|i| before[*i] && !stored.contains(&text(*i)))
        .collect();
    assert!(lost.is_empty(), "{kind}: acknowledged but lost: {lost:?}");
    let committed_unacked = (0..BURST)
        .filter(|i| !before[*i] && stored.contains(&text(*i)))
        .count();

    // Restart; the sender posts again everything that got no 2xx, and replays a few that did.
    node.spawn().await;
    let rest: Vec<usize> = (0..BURST).filter(|i| !before[*i] || i % 10 == 0).collect();
    post_all(
        hook,
        url,
        rest,
        acked.clone(),
        acks.clone(),
        Arc::new(AtomicBool::new(false)),
        true,
    )
    .await;
    assert!(acked.lock().expect("acked").iter().all(|a| *a));
    println!(
        "reliability {kind}: {acked_before} of {BURST} acknowledged before SIGKILL; \
         {committed_unacked} committed but unacknowledged (re-sent, deduplicated)"
    );
    assert_eq!(
        node.count(&format!("SELECT count(*) {inbound}")).await,
        BURST as i64,
        "{kind}: each message stored exactly once"
    );
    assert_eq!(
        node.count(&format!("SELECT count(DISTINCT external_id) {inbound}"))
            .await,
        BURST as i64,
        "{kind}: distinct external ids"
    );
    let stored: HashSet<String> = node
        .strings(&format!("SELECT text {inbound}"))
        .await
        .into_iter()
        .collect();
    assert!(
        (0..BURST).all(|i| stored.contains(&text(i))),
        "{kind}: every message stored"
    );
    assert_eq!(
        node.count(&format!("SELECT count(DISTINCT conversation_id) {inbound}"))
            .await,
        CUSTOMERS as i64,
        "{kind}: one conversation per customer"
    );
}

#[tokio::test]
async fn api_source_sigkill_mid_burst_loses_and_doubles_nothing() {
    let mut node = Node::start().await;
    let s = node.sign_up().await;
    let r = s
        .post_from(
            "/app/sources/new/api",
            "/app/api-sources",
            &[("name", "Сайт")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.expect("body");
    let secret = attr_after(&page, "id=\"api-secret\"", "value").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = page
        .split("/app/api-sources/")
        .nth(1)
        .and_then(|x| x.split('/').next())
        .expect("source id in page")
        .to_string();
    let url = format!("{}/hooks/api/{id}", node.url());
    burst_kill_replay(&mut node, "api", Hook::Api { secret }, url).await;
    // The side row (UTM tags, email) is written after the message's commit: a crash between the
    // two leaves it to the replay, which must fill it in.
    assert_eq!(
        node.count("SELECT count(*) FROM api_inbound").await,
        BURST as i64,
        "every message has its api_inbound row"
    );
}

#[tokio::test]
async fn whatsapp_sigkill_mid_burst_loses_and_doubles_nothing() {
    let mut node = Node::start().await;
    let s = node.sign_up().await;
    let number = node
        .whatsapp
        .add_number("+7 495 000-11-22", "Рога и Копыта");
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[
                ("kind", "7"),
                ("wa_phone_number_id", &number.phone_number_id),
                ("wa_waba_id", &number.waba_id),
                ("wa_access_token", &number.access_token),
                ("wa_app_secret", &number.app_secret),
                ("name", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let path = location(&r);
    let id = path.rsplit('/').next().expect("id").to_string();
    let page = s.html(&path).await;
    let url = setup_value(&page, "sources.wa_callback_url");
    let verify = setup_value(&page, "sources.wa_verify_token");
    assert_eq!(url, format!("{}/hooks/whatsapp/{id}", node.url()));
    node.whatsapp
        .subscribe(&number.phone_number_id, &url, &verify)
        .await
        .expect("Meta's handshake passes");
    node.wait_for("the source is connected", async || {
        node.count("SELECT count(*) FROM sources WHERE status = 'connected'")
            .await
            == 1
    })
    .await;
    let hook = Hook::WhatsApp {
        app_secret: number.app_secret.clone(),
        pnid: number.phone_number_id.clone(),
        waba: number.waba_id.clone(),
    };
    burst_kill_replay(&mut node, "whatsapp", hook, url).await;
}

#[tokio::test]
async fn vk_callback_sigkill_mid_burst_loses_and_doubles_nothing() {
    let mut node = Node::start().await;
    let s = node.sign_up().await;
    let group = node.vk.create_group("Рога и Копыта", "horns");
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[
                ("kind", "3"),
                ("vk_token", &group.token),
                ("vk_group_id", &format!("club{}", group.id)),
                ("name", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let id = location(&r).rsplit('/').next().expect("id").to_string();
    node.wait_for("the callback server is confirmed", async || {
        node.vk
            .callback_servers(group.id)
            .first()
            .is_some_and(|c| c.confirmed && !c.event_types.is_empty())
    })
    .await;
    let server = node.vk.callback_servers(group.id).remove(0);
    let url = format!("{}/hooks/vk/{id}", node.url());
    assert_eq!(server.url, url);
    let hook = Hook::Vk {
        secret: server.secret_key.clone().expect("a secret"),
        group_id: group.id,
    };
    burst_kill_replay(&mut node, "vk", hook, url).await;
}

#[tokio::test]
async fn sms_sigkill_mid_burst_loses_and_doubles_nothing() {
    let mut node = Node::start().await;
    let s = node.sign_up().await;
    let key = node
        .sms
        .add_account("ООО Рога и Копыта", "7701234567", 500.0);
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[
                ("kind", "8"),
                ("sms_api_key", &key),
                ("sms_sender", "Romashka"),
                ("name", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let path = location(&r);
    let id = path.rsplit('/').next().expect("id").to_string();
    let page = s.html(&path).await;
    let status = setup_value(&page, "sources.sms_status_url");
    let inbound = setup_value(&page, "sources.sms_inbound_url");
    assert!(inbound.starts_with(&format!("{}/hooks/sms/{id}/", node.url())));
    node.sms.set_callbacks(&key, Some(&status), Some(&inbound));
    node.wait_for("the source is connected", async || {
        node.count("SELECT count(*) FROM sources WHERE status = 'connected'")
            .await
            == 1
    })
    .await;
    burst_kill_replay(&mut node, "sms", Hook::Sms, inbound).await;
}

#[tokio::test]
async fn max_sigkill_mid_burst_loses_and_doubles_nothing() {
    let mut node = Node::start().await;
    let s = node.sign_up().await;
    let token = node.max.add_bot("Рога и Копыта", "horns_max_bot");
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[("kind", "4"), ("max_token", &token), ("name", "")],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let id = location(&r).rsplit('/').next().expect("id").to_string();
    node.wait_for("the bot is subscribed", async || {
        node.max.subscription(&token).is_some()
    })
    .await;
    let sub = node.max.subscription(&token).expect("subscription");
    let url = format!("{}/hooks/max/{id}", node.url());
    assert_eq!(sub.url, url);
    let hook = Hook::Max {
        secret: sub.secret.clone().expect("a secret"),
    };
    burst_kill_replay(&mut node, "max", hook, url).await;
}

#[tokio::test]
async fn avito_sigkill_mid_burst_loses_and_doubles_nothing() {
    let mut node = Node::start().await;
    let s = node.sign_up().await;
    let creds = node.avito.add_account("Рога и Копыта");
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[
                ("kind", "5"),
                ("avito_client_id", &creds.client_id),
                ("avito_client_secret", &creds.client_secret),
                ("name", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let id = location(&r).rsplit('/').next().expect("id").to_string();
    node.wait_for("the webhook is subscribed", async || {
        !node.avito.webhooks(&creds.client_id).is_empty()
    })
    .await;
    let url = node.avito.webhooks(&creds.client_id).remove(0);
    assert!(url.starts_with(&format!("{}/hooks/avito/{id}/", node.url())));
    let hook = Hook::Avito {
        user_id: creds.user_id,
    };
    burst_kill_replay(&mut node, "avito", hook, url).await;
}
