//! Nothing lost, nothing doubled, with the real `chatter` binary: SIGKILL during a burst of
//! 5,000 webhook updates, SIGKILL while 200 replies are being sent, and forged or malformed
//! webhooks. Telegram is the fake, in the test process; the database is a fresh SQLite data
//! directory (or a fresh PostgreSQL database when `TEST_DATABASE_URL` is set).

use crate::server_process::Server;
use chatter_fakes::{CustomerMessage, FakeTelegram};
use chatter_testkit::{csrf_of, Session, TestDb};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PW: &str = "correct horse battery";

/// The program with the Telegram fake it talks to.
struct Node {
    server: Server,
    telegram: FakeTelegram,
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
        let telegram = FakeTelegram::start().await.expect("Telegram fake starts");
        let api = telegram.base_url();
        // Telegram is given a public https address; the fake delivers it to the node, as a
        // TLS-terminating proxy would.
        let public = "https://chatter.example.test";
        let server = Server::new(db, |url| {
            telegram.route(public, url);
            vec![
                ("CHATTER_TELEGRAM__API_BASE", api),
                ("CHATTER_TELEGRAM__WEBHOOK_BASE", public.to_string()),
            ]
        });
        let mut node = Node { server, telegram };
        node.spawn().await;
        node
    }

    /// Signs up over HTTP and connects a bot through the Sources form; returns the session,
    /// the token, the source id and the webhook secret Telegram was given.
    async fn company_with_bot(&self) -> (Session, String, String, String) {
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
        let token = self.telegram.create_bot("horns_bot", "Рога и Копыта");
        let r = s
            .post_from(
                "/app/sources/new",
                "/app/sources",
                &[("kind", "1"), ("token", &token), ("name", "")],
            )
            .await;
        assert_eq!(r.status(), 303, "the bot is connected");
        let source_id = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.rsplit('/').next())
            .expect("the new source in the redirect")
            .to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let secret = loop {
            if let Some(secret) = self.telegram.webhook(&token).and_then(|w| w.secret_token) {
                break secret;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the webhook was never set:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        (s, token, source_id, secret)
    }
}

const UPDATES: usize = 5_000;
const CUSTOMERS: usize = 100;
const TASKS: usize = 16;

/// Update `i` as Telegram would send it: customer `i % 100` writes message `i + 1`.
fn update(i: usize) -> serde_json::Value {
    let user = 900_000 + (i % CUSTOMERS) as i64;
    serde_json::json!({"update_id": 500_000_000 + i as i64, "message": {
        "message_id": i as i64 + 1, "date": 1767225600,
        "from": {"id": user, "is_bot": false, "first_name": format!("Клиент {}", i % CUSTOMERS)},
        "chat": {"id": user, "type": "private", "first_name": format!("Клиент {}", i % CUSTOMERS)},
        "text": format!("Сообщение номер {i}")}})
}

fn external_id(i: usize) -> String {
    format!("{}:{}", 900_000 + i % CUSTOMERS, i + 1)
}

/// Posts updates `todo` from `TASKS` concurrent tasks until each got a 200 or `stop` is set;
/// marks the acknowledged ones in `acked`.
async fn post_updates(
    url: String,
    secret: String,
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
        let (http, url, secret, todo, next) = (
            http.clone(),
            url.clone(),
            secret.clone(),
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
                    let r = http
                        .post(&url)
                        .header("X-Telegram-Bot-Api-Secret-Token", &secret)
                        .json(&update(i))
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == 200) {
                        acked.lock().expect("acked")[i] = true;
                        acks.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    assert!(
                        !retry || attempt < 20,
                        "update {i} never acknowledged after the restart"
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

#[tokio::test]
async fn sigkill_during_a_burst_of_5000_updates_loses_and_doubles_nothing() {
    let mut node = Node::start().await;
    let (_s, _token, source_id, secret) = node.company_with_bot().await;
    let url = format!("{}/hooks/telegram/{source_id}", node.url());
    let acked = Arc::new(Mutex::new(vec![false; UPDATES]));
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let burst = tokio::spawn(post_updates(
        url.clone(),
        secret.clone(),
        (0..UPDATES).collect(),
        acked.clone(),
        acks.clone(),
        stop.clone(),
        false,
    ));
    while acks.load(Ordering::SeqCst) < 1_500 && !burst.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    node.kill9();
    stop.store(true, Ordering::SeqCst);
    burst.await.expect("burst");
    let before: Vec<bool> = acked.lock().expect("acked").clone();
    let acked_before = before.iter().filter(|a| **a).count();
    assert!(
        (1_500..UPDATES).contains(&acked_before),
        "killed mid-burst: {acked_before} acknowledged"
    );

    // What the database holds right after the crash: every acknowledged update, and possibly
    // some that were committed but whose answer never left the dead process.
    let stored: HashSet<String> = node
        .strings("SELECT external_id FROM messages")
        .await
        .into_iter()
        .collect();
    let lost: Vec<usize> = (0..UPDATES)
        .filter(|i| before[*i] && !stored.contains(&external_id(*i)))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let committed_unacked = (0..UPDATES)
        .filter(|i| !before[*i] && stored.contains(&external_id(*i)))
        .count();

    // Restart; Telegram sends again everything it got no 200 for.
    node.spawn().await;
    let rest: Vec<usize> = (0..UPDATES).filter(|i| !before[*i]).collect();
    post_updates(
        url,
        secret,
        rest,
        acked.clone(),
        acks.clone(),
        Arc::new(AtomicBool::new(false)),
        true,
    )
    .await;
    assert!(acked.lock().expect("acked").iter().all(|a| *a));
    println!(
        "reliability: {acked_before} of {UPDATES} acknowledged before SIGKILL; \
         {committed_unacked} committed but unacknowledged (re-sent, deduplicated)"
    );
    assert_eq!(
        node.count("SELECT count(*) FROM messages").await,
        UPDATES as i64,
        "each update stored exactly once"
    );
    assert_eq!(
        node.count("SELECT count(DISTINCT external_id) FROM messages")
            .await,
        UPDATES as i64
    );
    assert_eq!(
        node.count("SELECT count(*) FROM contacts").await,
        CUSTOMERS as i64
    );
    assert_eq!(
        node.count("SELECT count(*) FROM conversations").await,
        CUSTOMERS as i64
    );
    let stored: HashSet<String> = node
        .strings("SELECT external_id FROM messages")
        .await
        .into_iter()
        .collect();
    assert!((0..UPDATES).all(|i| stored.contains(&external_id(i))));
}

const CONVERSATIONS: usize = 20;
const REPLIES_EACH: usize = 10;

#[tokio::test]
async fn replies_survive_a_sigkill_in_order_and_only_a_send_in_flight_can_repeat() {
    let mut node = Node::start().await;
    let (s, token, _, _) = node.company_with_bot().await;
    for k in 0..CONVERSATIONS {
        node.telegram.customer_writes(
            &token,
            CustomerMessage::text(
                800_000 + k as i64,
                &format!("Клиент-{k:02}"),
                "Здравствуйте",
            ),
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while node.count("SELECT count(*) FROM conversations").await < CONVERSATIONS as i64 {
        assert!(tokio::time::Instant::now() < deadline, "{}", node.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Conversation ids by customer, from the inbox list.
    let inbox = s.html("/app/inbox").await;
    let mut convs: HashMap<usize, String> = HashMap::new();
    for row in inbox.split("<li id=\"conv-").skip(1) {
        let id = row.split('"').next().unwrap_or("").to_string();
        let who = row
            .split("<span class=\"who\">Клиент-")
            .nth(1)
            .and_then(|x| x.split('<').next())
            .and_then(|x| x.parse::<usize>().ok())
            .expect("a customer's row");
        convs.insert(who, id);
    }
    assert_eq!(convs.len(), CONVERSATIONS);
    let csrf = csrf_of(&inbox);
    let text = |k: usize, r: usize| format!("Ответ {r} клиенту {k:02}");

    // Each conversation's replies are written one after another; conversations in parallel.
    let mut writers = Vec::new();
    for (k, conv) in convs.clone() {
        let (http, base, csrf) = (s.http.clone(), s.base.clone(), csrf.clone());
        writers.push(tokio::spawn(async move {
            for r in 0..REPLIES_EACH {
                let resp = http
                    .post(format!("{base}/app/inbox/{conv}/reply"))
                    .header("accept", "application/json")
                    .form(&[("_csrf", csrf.as_str()), ("text", &text(k, r))])
                    .send()
                    .await
                    .expect("POST reply");
                assert_eq!(resp.status(), 201, "reply stored");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let total = CONVERSATIONS * REPLIES_EACH;
    // Kill while sending is under way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while node.telegram.sent(&token).len() < total / 5 {
        assert!(tokio::time::Instant::now() < deadline, "{}", node.log());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    node.kill9();
    let before = node.telegram.sent(&token);
    let sent_before = before.len();

    node.spawn().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let sent = node.telegram.sent(&token);
        let distinct: HashSet<String> = sent.iter().filter_map(|m| m.text.clone()).collect();
        if distinct.len() >= total {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {total} replies arrived:\n{}",
            distinct.len(),
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let a stray repeat show up before judging.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = node.telegram.sent(&token);
    let duplicates = sent.len() - total;
    println!(
        "reliability: {sent_before} of {total} replies sent before SIGKILL; \
         {duplicates} sent twice across the crash"
    );
    // Telegram has no idempotency key: a send whose answer arrived but whose "sent" was not yet
    // committed when the process died is sent again after the restart (at-least-once). Only
    // those can repeat: at most one per job in flight (the worker runs 8), each the last reply
    // its conversation got before the crash, repeated right after itself.
    assert!(
        duplicates <= 8,
        "{duplicates} repeats: more than the sends in flight"
    );
    for k in 0..CONVERSATIONS {
        let chat = 800_000 + k as i64;
        let got: Vec<String> = sent
            .iter()
            .filter(|m| m.chat_id == chat)
            .filter_map(|m| m.text.clone())
            .collect();
        let mut once = got.clone();
        once.dedup();
        let want: Vec<String> = (0..REPLIES_EACH).map(|r| text(k, r)).collect();
        assert_eq!(once, want, "customer {k} got every reply, in order");
        if got.len() > want.len() {
            let last_before = before
                .iter()
                .filter(|m| m.chat_id == chat)
                .filter_map(|m| m.text.clone())
                .next_back();
            let repeated: Vec<&String> = got
                .windows(2)
                .filter(|w| w[0] == w[1])
                .map(|w| &w[0])
                .collect();
            assert_eq!(
                repeated,
                [last_before.as_ref().expect("a send before the crash")],
                "customer {k}: only the send in flight at the crash repeats, once"
            );
        }
    }
    assert_eq!(
        node.count("SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'")
            .await,
        total as i64
    );
}

#[tokio::test]
async fn forged_and_malformed_webhooks_are_refused_and_store_nothing() {
    let node = Node::start().await;
    let (_s, _token, source_id, secret) = node.company_with_bot().await;
    let http = reqwest::Client::new();
    let url = format!("{}/hooks/telegram/{source_id}", node.url());
    let before = node.count("SELECT count(*) FROM messages").await;
    for forged in [Some("forged"), Some(""), None] {
        let mut req = http.post(&url).json(&update(1));
        if let Some(h) = forged {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", h);
        }
        let r = req.send().await.expect("post");
        assert_eq!(r.status(), 401, "secret {forged:?}");
    }
    for body in ["{not json", "", "[]", "{\"message\": {}}"] {
        let r = http
            .post(&url)
            .header("X-Telegram-Bot-Api-Secret-Token", &secret)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 400, "body {body:?}");
    }
    assert_eq!(node.count("SELECT count(*) FROM messages").await, before);
    assert_eq!(node.count("SELECT count(*) FROM contacts").await, 0);
    // The real secret is accepted: the refusals above were about the request, not the route.
    let r = http
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", &secret)
        .json(&update(1))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(
        node.count("SELECT count(*) FROM messages").await,
        before + 1
    );
}

/// `ms` (Unix) as RFC 3339 in UTC, e.g. `2026-12-07T10:00:03Z`.
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A reply scheduled a few seconds ahead, the process SIGKILLed before its time and started
/// again: it goes out once (one outgoing message, one send to Telegram).
#[tokio::test]
async fn a_scheduled_reply_pending_over_a_sigkill_is_sent_once_after_the_restart() {
    let mut node = Node::start().await;
    let (s, token, _, _) = node.company_with_bot().await;
    node.telegram.customer_writes(
        &token,
        CustomerMessage::text(900_001, "Ольга", "Жду ответа"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while node.count("SELECT count(*) FROM conversations").await < 1 {
        assert!(tokio::time::Instant::now() < deadline, "{}", node.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let inbox = s.html("/app/inbox").await;
    let conv = inbox
        .split("<li id=\"conv-")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .expect("the conversation")
        .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/scheduled"),
            &[
                ("text", "Ответ по расписанию"),
                ("when", "at"),
                ("send_at", &rfc3339(now + 3_000)),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "scheduled");
    node.kill9();
    assert!(
        !node
            .telegram
            .sent(&token)
            .iter()
            .any(|m| m.text.as_deref() == Some("Ответ по расписанию")),
        "not before its time"
    );
    node.spawn().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while node
        .count(
            "SELECT count(*) FROM messages WHERE text = 'Ответ по расписанию' AND status = 'sent'",
        )
        .await
        < 1
    {
        assert!(tokio::time::Instant::now() < deadline, "{}", node.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = node
        .telegram
        .sent(&token)
        .iter()
        .filter(|m| m.text.as_deref() == Some("Ответ по расписанию"))
        .count();
    assert_eq!(sent, 1, "sent once");
    assert_eq!(
        node.count("SELECT count(*) FROM messages WHERE text = 'Ответ по расписанию'")
            .await,
        1
    );
    assert_eq!(
        node.count("SELECT count(*) FROM scheduled_replies WHERE status = 'sent'")
            .await,
        1
    );
}
