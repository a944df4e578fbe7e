//! The API source (kind 6): a company creates one in the UI, its system posts signed messages
//! (replays, forged or stale signatures and malformed bodies store nothing extra), and receives
//! signed outgoing webhooks — retried until acknowledged, logged, replayable from the UI — for
//! incoming messages, managers' answers and conversation changes.

use crate::messages::{count, eventually, location, PW};
use async_trait::async_trait;
use chatter_core::inbox::send::SendMessage;
use chatter_core::jobs::worker::{self, JobError, JobHandler, Registry, WorkerConfig};
use chatter_core::jobs::BackgroundJob;
use chatter_core::sources::api as api_source;
use chatter_core::Core;
use chatter_store::entity::message;
use chatter_store::jobs::Claimed;
use chatter_testkit::{Session, TestApp};
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) fn attr_after<'a>(html: &'a str, marker: &str, attr: &str) -> &'a str {
    let i = html.find(marker).expect("marker in page");
    let tag_start = html[..i].rfind('<').unwrap_or(0);
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>').expect("tag end")];
    let a = format!("{attr}=\"");
    let v = &tag[tag.find(&a).expect("attribute") + a.len()..];
    &v[..v.find('"').expect("closing quote")]
}

/// An API source created through the UI: the session, the source id and the secret shown once.
pub(crate) async fn company_with_api_source(app: &TestApp) -> (Session, String, String) {
    let s = Session::sign_up(app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
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
    let action = attr_after(&page, "id=\"rotate-secret\"", "class");
    assert_eq!(action, "danger");
    let id = page
        .split("/app/api-sources/")
        .nth(1)
        .and_then(|x| x.split('/').next())
        .expect("source id in page")
        .to_string();
    let shown = s.html(&format!("/app/api-sources/{id}")).await;
    assert!(
        shown.contains(&format!("{}/hooks/api/{id}", app.url)),
        "inbound URL shown"
    );
    assert!(!shown.contains(&secret), "the secret is shown once");
    (s, id, secret)
}

pub(crate) fn sign(secret: &str, ts: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    m.update(format!("{ts}.{body}").as_bytes());
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

pub(crate) fn now_secs(app: &TestApp) -> i64 {
    app.core.now() / 1000
}

/// Posts `body` to the source's inbound URL, signed with `secret` at `ts`.
pub(crate) async fn post_signed(
    http: &reqwest::Client,
    app: &TestApp,
    id: &str,
    secret: &str,
    ts: i64,
    body: &str,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = http
        .post(app.at(&format!("/hooks/api/{id}")))
        .header("content-type", "application/json")
        .header("x-chatter-timestamp", ts.to_string())
        .header("x-chatter-signature", sign(secret, ts, body))
        .body(body.to_string());
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    req.send().await.expect("POST")
}

pub(crate) fn message_body(message_id: &str, chat: &str, text: &str) -> String {
    json!({
        "message_id": message_id,
        "chat_id": chat,
        "sender": {"id": chat, "name": "Иван Петров", "phone": "+79990001122", "email": "ivan@example.ru"},
        "text": text,
        "utm": {"source": "yandex", "medium": "cpc", "campaign": "spring"},
    })
    .to_string()
}

#[tokio::test]
async fn a_signed_message_reaches_the_inbox_and_a_replay_stores_nothing_new() {
    let app = TestApp::new().await;
    let (s, id, secret) = company_with_api_source(&app).await;
    let http = reqwest::Client::new();
    let body = message_body("42", "client-7", "Здравствуйте! Есть доставка в Казань?");
    let r = post_signed(
        &http,
        &app,
        &id,
        &secret,
        now_secs(&app),
        &body,
        Some("k-42"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.expect("JSON");
    assert!(
        first["message_id"].is_string() && first["conversation_id"].is_string(),
        "{first}"
    );

    // The same call again (a retry after a lost answer), and with only the message id.
    let again = post_signed(
        &http,
        &app,
        &id,
        &secret,
        now_secs(&app),
        &body,
        Some("k-42"),
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.expect("JSON"), first);
    let by_id = post_signed(&http, &app, &id, &secret, now_secs(&app), &body, None).await;
    assert_eq!(by_id.json::<Value>().await.expect("JSON"), first);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 1);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM api_inbound WHERE utm_source = 'yandex' AND utm_campaign = 'spring' AND sender_email = 'ivan@example.ru'").await,
        1,
        "UTM tags and email kept for the CRM"
    );

    let inbox = s.html("/app/inbox").await;
    assert!(inbox.contains("Есть доставка в Казань?"), "{inbox}");
    let conv = first["conversation_id"].as_str().expect("id");
    assert!(s
        .html(&format!("/app/inbox/{conv}"))
        .await
        .contains("Иван Петров"));

    // The REST API sees the same conversation.
    let r = s
        .post_from(
            "/app/settings",
            "/app/settings/api-keys",
            &[("name", "crm")],
        )
        .await;
    let page = r.text().await.expect("body");
    let key = attr_after(&page, "id=\"new-api-key\"", "value").to_string();
    let list: Value = http
        .get(app.at("/api/v1/conversations"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let c = &list.as_array().expect("array")[0];
    assert_eq!(c["id"], first["conversation_id"]);
    assert_eq!(c["source_id"].as_str(), Some(id.as_str()));
    assert_eq!(c["contact"]["external_id"], "client-7");
    assert_eq!(c["contact"]["phone"], "+79990001122");
    app.stop().await;
}

#[tokio::test]
async fn forged_stale_and_malformed_calls_are_refused_and_store_nothing() {
    let app = TestApp::new().await;
    let (_s, id, secret) = company_with_api_source(&app).await;
    let http = reqwest::Client::new();
    let body = message_body("1", "c-1", "Привет");
    let ts = now_secs(&app);

    let forged = post_signed(&http, &app, &id, "whsec_not_the_secret", ts, &body, None).await;
    assert_eq!(forged.status(), 401);
    assert!(forged
        .text()
        .await
        .expect("body")
        .contains("\"code\":\"unauthorized\""));
    let stale = post_signed(&http, &app, &id, &secret, ts - 301, &body, None).await;
    assert_eq!(stale.status(), 401);
    assert!(stale.text().await.expect("body").contains("5 minutes"));
    // The far ends of the number range are refused too, not an overflow that drops the
    // connection (schemathesis sent i64::MIN).
    for far in [i64::MIN, i64::MAX] {
        let r = post_signed(&http, &app, &id, &secret, far, &body, None).await;
        assert_eq!(r.status(), 401, "{far}");
    }
    // Signed for another body.
    let r = http
        .post(app.at(&format!("/hooks/api/{id}")))
        .header("x-chatter-timestamp", ts.to_string())
        .header("x-chatter-signature", sign(&secret, ts, &body))
        .body(message_body("1", "c-1", "Подменённый текст"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 401);
    let unsigned = http
        .post(app.at(&format!("/hooks/api/{id}")))
        .body(body.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(unsigned.status(), 401);

    for (bad, field) in [
        ("{oops".to_string(), "body"),
        ("[1, 2]".to_string(), "body"),
        (json!({"chat_id": "c", "sender": {"id": "c", "name": "И"}, "text": "т"}).to_string(), "message_id"),
        (json!({"message_id": "m", "chat_id": "c", "sender": {"name": "И"}, "text": "т"}).to_string(), "sender.id"),
        (json!({"message_id": "m", "chat_id": "c", "sender": {"id": "c", "name": "И"}, "text": 5}).to_string(), "text"),
        (json!({"message_id": "m", "chat_id": "c", "sender": {"id": "c", "name": "И"}, "text": "т", "utm": "x"}).to_string(), "utm"),
    ] {
        let r = post_signed(&http, &app, &id, &secret, ts, &bad, None).await;
        assert_eq!(r.status(), 400, "{bad}");
        let e: Value = r.json().await.expect("JSON error");
        assert_eq!(e["error"]["code"], "malformed");
        assert!(
            e["error"]["message"].as_str().is_some_and(|m| m.contains(field)),
            "{bad}: {e}"
        );
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM contacts").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM api_inbound").await, 0);
    app.stop().await;
}

/// A webhook as the receiver got it.
#[derive(Clone, Debug)]
pub(crate) struct Got {
    body: String,
    pub(crate) json: Value,
    signature_ok: bool,
    acknowledged: bool,
}

/// A customer's webhook receiver: fails the first `fail_first` calls with 500, checks every
/// signature with the source's secret.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Got>>>,
    pub(crate) secret: Arc<Mutex<String>>,
}

impl Receiver {
    pub(crate) async fn start(fail_first: usize) -> Receiver {
        use axum::http::{HeaderMap, StatusCode};
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let secret: Arc<Mutex<String>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (g, sec) = (got.clone(), secret.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (g, sec, calls) = (g.clone(), sec.clone(), calls.clone());
                async move {
                    let ts: i64 = headers
                        .get("x-chatter-timestamp")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_default();
                    let sig = headers
                        .get("x-chatter-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let expected = sign(&sec.lock().expect("lock"), ts, &body);
                    let ok = calls.fetch_add(1, Ordering::SeqCst) >= fail_first;
                    g.lock().expect("lock").push(Got {
                        json: serde_json::from_str(&body).unwrap_or_default(),
                        body,
                        signature_ok: sig == expected,
                        acknowledged: ok,
                    });
                    if ok {
                        StatusCode::NO_CONTENT
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", l.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Receiver { url, got, secret }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }

    pub(crate) fn of_type(&self, kind: &str) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.json["type"] == kind)
            .collect()
    }
}

/// The `send_message` job as the lead wires it for API sources: `deliver_reply`.
struct WiredSend;

#[async_trait]
impl JobHandler for WiredSend {
    async fn run(&self, core: &Core, job: &Claimed) -> Result<(), JobError> {
        let v: Value = serde_json::from_str(&job.payload).expect("payload");
        let id: uuid::Uuid = v["message_id"].as_str().expect("id").parse().expect("uuid");
        let m = message::Entity::find_by_id(id)
            .one(&core.db)
            .await
            .expect("lookup")
            .expect("message");
        if m.status != "pending" {
            return Ok(());
        }
        api_source::deliver_reply(core, &m).await
    }
}

#[tokio::test]
async fn outgoing_webhooks_are_signed_retried_until_acknowledged_logged_and_replayable() {
    let app = TestApp::builder().without_workers().start().await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let registry = Registry::standard().with(SendMessage::NAME, WiredSend);
    let workers = tokio::spawn(worker::run(
        app.core.clone(),
        registry,
        WorkerConfig {
            concurrency: 4,
            lease_ms: 30_000,
            poll_ms: 50,
            ..Default::default()
        },
        stop_rx,
    ));
    let (s, id, secret) = company_with_api_source(&app).await;
    let rx = Receiver::start(3).await;
    *rx.secret.lock().expect("lock") = secret.clone();
    let page = format!("/app/api-sources/{id}");
    let r = s
        .post_from(
            &page,
            &format!("{page}/webhook"),
            &[("webhook_url", "not a url")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = s
        .post_from(
            &page,
            &format!("{page}/webhook"),
            &[("webhook_url", &rx.url)],
        )
        .await;
    assert_eq!(r.status(), 303);

    let http = reqwest::Client::new();
    let body = message_body("m-1", "client-9", "Хочу заказать");
    let r = post_signed(&http, &app, &id, &secret, now_secs(&app), &body, None).await;
    assert_eq!(r.status(), 200);
    let stored: Value = r.json().await.expect("JSON");
    let conv = stored["conversation_id"].as_str().expect("id").to_string();

    // Three 500s, then acknowledged: one delivery, four attempts, all signed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while !rx.of_type("message.created").iter().any(|g| g.acknowledged) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never delivered: {:?}",
            rx.got()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created = rx.of_type("message.created");
    assert_eq!(created.len(), 4, "{created:?}");
    assert!(
        created.iter().all(|g| g.signature_ok),
        "signed with the source's secret"
    );
    assert!(
        created.iter().all(|g| g.body == created[0].body),
        "the same event each time"
    );
    let ev = &created[0].json;
    assert_eq!(ev["data"]["message"]["id"], stored["message_id"]);
    assert_eq!(ev["data"]["message"]["direction"], "in");
    assert_eq!(ev["data"]["message"]["text"], "Хочу заказать");
    assert_eq!(ev["data"]["chat_id"], "client-9");
    let delivery = ev["id"].as_str().expect("id").to_string();
    eventually("the log shows the delivery", || async {
        let log = s.html(&page).await;
        log.contains(&format!(
            "id=\"delivery-{delivery}\" data-status=\"delivered\" data-attempts=\"4\""
        ))
    })
    .await;

    // The manager answers in the inbox: the customer's system gets it, the inbox shows it sent.
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/reply"),
            &[("text", "Оформим за 5 минут")],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", location(&r));
    eventually("the answer reaches the customer's system", || async {
        rx.of_type("message.created").iter().any(|g| {
            g.acknowledged
                && g.signature_ok
                && g.json["data"]["message"]["direction"] == "out"
                && g.json["data"]["message"]["text"] == "Оформим за 5 минут"
                && g.json["data"]["chat_id"] == "client-9"
        })
    })
    .await;
    eventually("the answer shows as sent", || async {
        s.html(&format!("/app/inbox/{conv}"))
            .await
            .contains("data-status=\"sent\"")
    })
    .await;
    let out: Vec<Got> = rx
        .of_type("message.created")
        .into_iter()
        .filter(|g| g.json["data"]["message"]["direction"] == "out")
        .collect();
    assert_eq!(out.len(), 1, "the answer is delivered once: {out:?}");

    // Closing the conversation is reported.
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/close"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    eventually("the close is reported", || async {
        rx.of_type("conversation.status_changed")
            .iter()
            .any(|g| g.json["data"]["status"] == "closed" && g.signature_ok)
    })
    .await;

    // Replay from the log sends the same event again.
    let before = rx
        .got()
        .iter()
        .filter(|g| g.json["id"] == delivery.as_str())
        .count();
    let r = s
        .post_from(&page, &format!("{page}/deliveries/{delivery}/replay"), &[])
        .await;
    assert_eq!(r.status(), 303);
    eventually("the replay arrives", || async {
        rx.got()
            .iter()
            .filter(|g| g.json["id"] == delivery.as_str())
            .count()
            == before + 1
    })
    .await;
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM audit_log WHERE action IN ('source.create', 'source.webhook_url', 'source.webhook_replay')").await,
        3
    );
    let _ = stop.send(true);
    let _ = workers.await;
    app.stop().await;
}

#[tokio::test]
async fn rotating_the_secret_retires_the_old_one() {
    let app = TestApp::new().await;
    let (s, id, old) = company_with_api_source(&app).await;
    let page = format!("/app/api-sources/{id}");
    let r = s.post_from(&page, &format!("{page}/rotate"), &[]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("body");
    let new = attr_after(&html, "id=\"api-secret\"", "value").to_string();
    assert_ne!(new, old);
    let http = reqwest::Client::new();
    let body = message_body("r-1", "c-r", "Проверка");
    let r = post_signed(&http, &app, &id, &old, now_secs(&app), &body, None).await;
    assert_eq!(r.status(), 401);
    let r = post_signed(&http, &app, &id, &new, now_secs(&app), &body, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'source.rotate_secret'"
        )
        .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_burst_from_eight_clients_is_stored_exactly_once() {
    let app = TestApp::new().await;
    let (_s, id, secret) = company_with_api_source(&app).await;
    let app = Arc::new(app);
    // Meanwhile a reader (as the CRM sync is) never sees a message without its UTM tags: the
    // side row commits with the message.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = {
        let app = app.clone();
        tokio::spawn(async move {
            let (mut looks, mut orphans) = (0, 0);
            while !*stopped.borrow() {
                orphans += count(
                    &app,
                    "SELECT COUNT(*) FROM messages m WHERE NOT EXISTS \
                     (SELECT 1 FROM api_inbound a WHERE a.message_id = m.id)",
                )
                .await;
                looks += 1;
                tokio::task::yield_now().await;
            }
            (looks, orphans)
        })
    };
    let mut tasks = Vec::new();
    for client in 0..8 {
        let (app, id, secret) = (app.clone(), id.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut answers = Vec::new();
            // Each client sends its 25 messages, then repeats its neighbour's 25 (a retry storm).
            for round in 0..2 {
                let owner = (client + round) % 8;
                for i in 0..25 {
                    let n = owner * 25 + i;
                    let body = message_body(
                        &format!("b-{n}"),
                        &format!("chat-{}", n % 20),
                        &format!("Сообщение {n}"),
                    );
                    let r =
                        post_signed(&http, &app, &id, &secret, now_secs(&app), &body, None).await;
                    assert_eq!(r.status(), 200, "message {n}");
                    let v: Value = r.json().await.expect("JSON");
                    answers.push((n, v["message_id"].as_str().expect("id").to_string()));
                }
            }
            answers
        }));
    }
    let mut by_n: std::collections::HashMap<usize, String> = Default::default();
    for t in tasks {
        for (n, m) in t.await.expect("client") {
            let prev = by_n.insert(n, m.clone());
            assert!(
                prev.is_none_or(|p| p == m),
                "message {n} answered with two ids"
            );
        }
    }
    stop.send(true).expect("stop the reader");
    let (looks, orphans) = watcher.await.expect("reader");
    assert!(looks > 0);
    assert_eq!(
        orphans, 0,
        "messages seen without their UTM row in {looks} looks"
    );
    assert_eq!(by_n.len(), 200);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 200);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM conversations").await, 20);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM api_inbound").await, 200);
    match Arc::try_unwrap(app) {
        Ok(app) => app.stop().await,
        Err(_) => panic!("clients still hold the app"),
    }
}

/// Replies that were already sent when the dispatcher first looked at them (another node's send
/// job got there first) still produce exactly one `message.status_changed` to `sent` each.
#[tokio::test]
async fn every_reply_reports_sent_exactly_once_even_when_sent_before_the_dispatcher_looked() {
    let app = TestApp::builder().without_workers().start().await;
    let (s, id, secret) = company_with_api_source(&app).await;
    let rx = Receiver::start(0).await;
    *rx.secret.lock().expect("lock") = secret.clone();
    let page = format!("/app/api-sources/{id}");
    let r = s
        .post_from(
            &page,
            &format!("{page}/webhook"),
            &[("webhook_url", &rx.url)],
        )
        .await;
    assert_eq!(r.status(), 303);
    let http = reqwest::Client::new();
    let body = message_body("m-1", "client-5", "Есть в наличии?");
    let r = post_signed(&http, &app, &id, &secret, now_secs(&app), &body, None).await;
    assert_eq!(r.status(), 200);
    let stored: Value = r.json().await.expect("JSON");
    let conv = stored["conversation_id"].as_str().expect("id").to_string();
    for i in 0..5 {
        let r = s
            .post_from(
                &format!("/app/inbox/{conv}"),
                &format!("/app/inbox/{conv}/reply"),
                &[("text", &format!("Ответ {i}"))],
            )
            .await;
        assert_eq!(r.status(), 303);
    }
    // Another node delivered them while this one's dispatcher was behind.
    app.core
        .db
        .execute_unprepared("UPDATE messages SET status = 'sent' WHERE direction = 'out'")
        .await
        .expect("mark sent");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let registry = Registry::standard().with(SendMessage::NAME, WiredSend);
    let workers = tokio::spawn(worker::run(
        app.core.clone(),
        registry,
        WorkerConfig {
            concurrency: 4,
            lease_ms: 30_000,
            poll_ms: 50,
            ..Default::default()
        },
        stop_rx,
    ));
    eventually("every reply's status is reported", || async {
        rx.of_type("message.status_changed")
            .iter()
            .filter(|g| g.acknowledged)
            .count()
            >= 5
    })
    .await;
    // Later events about the same messages add nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let changed = rx.of_type("message.status_changed");
    let mut ids: Vec<String> = changed
        .iter()
        .map(|g| {
            assert_eq!(g.json["data"]["message"]["status"], "sent");
            g.json["data"]["message"]["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "one per reply: {changed:?}");
    assert_eq!(changed.len(), 5, "exactly once each: {changed:?}");
    let _ = stop.send(true);
    let _ = workers.await;
    app.stop().await;
}
