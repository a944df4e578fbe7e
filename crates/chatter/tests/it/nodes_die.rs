//! Two `chatter serve` nodes on one PostgreSQL database under steady load of every sort at
//! once: signed API-source webhooks, customers of a Telegram bot read by long polling, managers'
//! replies sent to Telegram, and amoCRM connected. One node is SIGKILLed while it polls the bot,
//! sends a reply Telegram leaves unanswered and drains the company's CRM outbox (its amoCRM
//! request hanging); the other takes all three over, the poller and the drain within their
//! lease plus a margin (read from the database's lease rows and the amoCRM fake's request log). Then both nodes restart one after another (SIGTERM, start). Throughout:
//! every acknowledged webhook and every polled customer message is stored once, every reply is
//! sent (a send in flight on the killed node at most once more, as docs/ARCHITECTURE.md says
//! and nothing repeated over a graceful stop), and amoCRM has one deal per conversation.
//! PostgreSQL only; on SQLite-only runs the test says it was skipped.

use crate::nodes::{postgres_db, MASTER_KEY};
use crate::nodes_faults::{api_source, eventually, signed_up_owner, Load, CHATS};
use crate::server_process::Server;
use chatter_fakes::{AccountId, CustomerMessage, Failure, FakeAmo, FakeTelegram};
use chatter_testkit::{csrf_of, Session};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lease of a poller and of a company's CRM drain (`LEASE_TTL_MS` in
/// `sources/runtime.rs` and `crm/sync/mod.rs`).
const LEASE_MS: i64 = 60_000;
/// What a takeover may take beyond the lease: the survivor looks for free poller leases every
/// second and retries a busy CRM drain every second after a job poll of half a second; the
/// rest is slack for a loaded machine (measured: 0.2–1 s for the poller, 0.7–2.5 s for the
/// CRM drain). A takeover that waited for a second lease would take 60 s more.
const MARGIN_MS: i64 = 10_000;
const CLIENT_ID: &str = "chatter-nodes-integration";
const CLIENT_SECRET: &str = "nodes-client-secret-0123456789";
/// Telegram customers, each with a name of their own (their deals are named after them).
const TG_CUSTOMERS: i64 = 6;
const TG_USER: i64 = 700_000;

/// An API-source message from a customer whose name is their chat's, so that deals differ.
fn api_body(id: &str, chat: &str, text: &str) -> String {
    serde_json::json!({
        "message_id": id,
        "chat_id": chat,
        "sender": {"id": chat, "name": format!("Покупатель {chat}")},
        "text": text,
    })
    .to_string()
}

fn tg_name(k: i64) -> String {
    format!("Телеграм-{k}")
}

/// A background task repeating `step(n)` every `pace` until stopped.
struct Steady {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Steady {
    fn start<F, Fut>(pace: Duration, mut step: F) -> Steady
    where
        F: FnMut(usize) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut n = 0;
            while !s.load(Ordering::SeqCst) {
                step(n).await;
                n += 1;
                tokio::time::sleep(pace).await;
            }
        });
        Steady { stop, task }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("steady task");
    }
}

struct Cluster {
    nodes: Vec<Server>,
    telegram: Arc<FakeTelegram>,
    amo: FakeAmo,
    account: AccountId,
    token: String,
    session: Session,
}

impl Cluster {
    async fn count(&self, sql: &str) -> i64 {
        self.nodes[0].count(sql).await
    }

    async fn strings(&self, sql: &str) -> Vec<String> {
        self.nodes[0].strings(sql).await
    }

    /// The database's clock in Unix ms (leases run on it).
    async fn db_now(&self) -> i64 {
        self.count("SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint")
            .await
    }

    /// (holder, expires_at) of the lease `name`, if held.
    async fn lease(&self, name: &str) -> Option<(String, i64)> {
        let holder = self
            .strings(&format!("SELECT holder FROM leases WHERE name = '{name}'"))
            .await
            .pop()?;
        let expires = self
            .count(&format!(
                "SELECT coalesce(max(expires_at), 0) FROM leases WHERE name = '{name}'"
            ))
            .await;
        Some((holder, expires))
    }
}

/// Starts node A alone, signs up, connects the bot (polling), amoCRM and an API source.
async fn start(test: &str) -> Option<(Cluster, String, String, String)> {
    let db = postgres_db(test).await?;
    let telegram = FakeTelegram::start().await.expect("Telegram fake starts");
    let amo = FakeAmo::start().await.expect("amoCRM fake starts");
    let (tg, amo_base) = (telegram.base_url(), amo.base_url());
    let mut redirect = String::new();
    let mut env = |url: &str| {
        if redirect.is_empty() {
            redirect = format!("{url}/crm/amocrm/callback");
        }
        vec![
            ("CHATTER_MASTER_KEY", MASTER_KEY.to_string()),
            ("CHATTER_ALLOW_PRIVATE_TARGETS", "true".to_string()),
            ("CHATTER_TELEGRAM__API_BASE", tg.clone()),
            ("CHATTER_TELEGRAM__POLL_TIMEOUT_SECS", "2".to_string()),
            ("CHATTER_AMOCRM__CLIENT_ID", CLIENT_ID.to_string()),
            ("CHATTER_AMOCRM__CLIENT_SECRET", CLIENT_SECRET.to_string()),
            ("CHATTER_AMOCRM__REDIRECT_URI", redirect.clone()),
            ("CHATTER_AMOCRM__CONSENT_URL", format!("{amo_base}/oauth")),
            ("CHATTER_AMOCRM__ACCOUNT_BASE", amo_base.clone()),
        ]
    };
    let a = Server::sharing(&db, "a", &mut env);
    let b = Server::sharing(&db, "b", &mut env);
    amo.register_integration(CLIENT_ID, CLIENT_SECRET, &redirect);
    let mut nodes = vec![a, b];
    nodes[0].spawn().await;
    let session = signed_up_owner(nodes[0].url()).await;
    let token = telegram.create_bot("horns_bot", "Рога и Копыта");
    let r = session
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[("kind", "1"), ("token", &token), ("name", "")],
        )
        .await;
    assert_eq!(r.status(), 303, "the bot is connected");
    let tg_source = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.rsplit('/').next())
        .expect("the new source in the redirect")
        .to_string();
    let account = amo.create_account("horns", "Рога и Копыта CRM");
    let r = session.post_from("/app/crm", "/app/crm/connect", &[]).await;
    assert_eq!(r.status(), 303);
    let consent = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let state = consent
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .expect("state in the consent URL")
        .to_string();
    let back = amo.approve(account, CLIENT_ID, &state);
    let r = session.get(back.trim_start_matches(&nodes[0].url())).await;
    assert_eq!(r.status(), 303, "amoCRM connected");
    let (source, secret) = api_source(&session).await;
    Some((
        Cluster {
            nodes,
            telegram: Arc::new(telegram),
            amo,
            account,
            token,
            session,
        },
        tg_source,
        source,
        secret,
    ))
}

/// The texts of the replies the managers wrote (each stored: 201).
type Replies = Arc<Mutex<Vec<String>>>;

#[tokio::test]
async fn two_nodes_one_sigkilled_then_both_restarted_under_polling_webhook_and_crm_load() {
    let test = "two_nodes_one_sigkilled_then_both_restarted";
    let Some((mut c, tg_source, source, secret)) = start(test).await else {
        return;
    };
    let poll_lease = format!("telegram-poll:{tg_source}");
    let company = c.strings("SELECT id::text FROM companies").await.remove(0);
    let crm_lease = format!("crm:{company}");
    // A alone: it takes the bot's poller lease.
    eventually(30, "node A polls the bot", || async {
        c.lease(&poll_lease).await.is_some()
    })
    .await;
    let a_id = c.lease(&poll_lease).await.expect("poller lease").0;
    // Every customer starts a conversation; each gets a deal.
    let written: Arc<Mutex<Vec<String>>> = Arc::default();
    for k in 0..TG_CUSTOMERS {
        let id = c.telegram.customer_writes(
            &c.token,
            CustomerMessage::text(TG_USER + k, &tg_name(k), "Здравствуйте"),
        );
        written
            .lock()
            .expect("lock")
            .push(format!("{}:{id}", TG_USER + k));
    }
    let http = reqwest::Client::new();
    for k in 0..CHATS {
        let body = api_body(&format!("hello-{k}"), &format!("client-{k}"), "Добрый день");
        let r = crate::nodes_faults::post_signed(&http, &c.nodes[0].url(), &source, &secret, &body)
            .await
            .expect("POST");
        assert_eq!(r.status(), 200);
    }
    let conversations = TG_CUSTOMERS + CHATS as i64;
    eventually(60, "a deal for every conversation", || async {
        c.amo.leads(c.account).len() as i64 >= conversations
    })
    .await;
    let tg_convs = c
        .strings(&format!(
            "SELECT id::text FROM conversations WHERE source_id = '{tg_source}' ORDER BY id"
        ))
        .await;
    assert_eq!(tg_convs.len() as i64, TG_CUSTOMERS);

    // The load starts on A alone (what is posted to B, not started yet, goes to A).
    let urls: Vec<String> = c.nodes.iter().map(Server::url).collect();
    let load = Load::over(urls.clone(), &source, &secret, api_body);
    let alive = load.alive.clone();
    let customers = {
        let (telegram, token, w) = (c.telegram.clone(), c.token.clone(), written.clone());
        Steady::start(Duration::from_millis(150), move |n| {
            let (telegram, token, w) = (telegram.clone(), token.clone(), w.clone());
            async move {
                let k = (n as i64) % (TG_CUSTOMERS + 1);
                let id = telegram.customer_writes(
                    &token,
                    CustomerMessage::text(TG_USER + k, &tg_name(k), &format!("Вопрос {n}")),
                );
                w.lock()
                    .expect("lock")
                    .push(format!("{}:{id}", TG_USER + k));
            }
        })
    };
    let replies: Replies = Arc::default();
    let csrf = csrf_of(&c.session.html("/app/inbox").await);
    let replier = {
        let (http, alive, replies, convs) = (
            c.session.http.clone(),
            alive.clone(),
            replies.clone(),
            tg_convs.clone(),
        );
        Steady::start(Duration::from_millis(100), move |n| {
            let (http, alive, replies, convs, csrf) = (
                http.clone(),
                alive.clone(),
                replies.clone(),
                convs.clone(),
                csrf.clone(),
            );
            async move {
                let text = format!("Ответ менеджера {n}");
                for attempt in 0.. {
                    let base = {
                        let alive = alive.lock().expect("lock");
                        alive[(n + attempt) % alive.len()].clone()
                    };
                    let r = http
                        .post(format!("{base}/app/inbox/{}/reply", convs[n % convs.len()]))
                        .header("accept", "application/json")
                        .form(&[("_csrf", csrf.as_str()), ("text", text.as_str())])
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == 201) {
                        replies.lock().expect("lock").push(text);
                        return;
                    }
                    assert!(attempt < 100, "reply {n} never stored");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    };
    load.wait_for_acks(30, 60).await;
    eventually(30, "replies are being sent", || async {
        c.telegram.sent(&c.token).len() >= 10
    })
    .await;

    // A send of A's in flight at the kill: Telegram never answers it.
    let a_pid = c.nodes[0].pid().expect("A runs");
    let stuck_on_a = format!(
        "SELECT count(*) FROM jobs j JOIN messages m ON j.payload LIKE '%' || m.id::text || '%' \
         WHERE j.status = 'running' AND j.kind = 'send_message' AND j.locked_by LIKE '%:{a_pid}/%' \
         AND m.status = 'pending' \
         AND m.created_at < (extract(epoch from clock_timestamp()) * 1000)::bigint - 1000"
    );
    for attempt in 0.. {
        assert!(attempt < 10, "no send of A's ever hung");
        c.telegram
            .fail_next(&c.token, "sendMessage", Failure::Hang, 1);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if c.count(&stuck_on_a).await > 0 {
            break;
        }
    }

    // A's CRM drain is stuck in an amoCRM request when a new customer writes.
    c.amo.hang_next("/api/v4/", 1);
    let id = c.telegram.customer_writes(
        &c.token,
        CustomerMessage::text(
            TG_USER + TG_CUSTOMERS,
            &tg_name(TG_CUSTOMERS),
            "Я новенький",
        ),
    );
    written
        .lock()
        .expect("lock")
        .push(format!("{}:{id}", TG_USER + TG_CUSTOMERS));
    eventually(30, "node A's CRM drain hangs in amoCRM", || async {
        c.amo.hanging() == 1
            && c.lease(&crm_lease)
                .await
                .is_some_and(|(h, _)| h.starts_with(&a_id))
    })
    .await;

    // B joins and takes its share.
    c.nodes[1].spawn().await;
    let n = load.acked();
    load.wait_for_acks(n + 30, 60).await;

    // SIGKILL A while it polls the bot, sends a reply and its CRM drain waits on amoCRM.
    c.nodes[0].kill9();
    alive.lock().expect("lock").retain(|u| *u != urls[0]);
    let killed_at = c.db_now().await;
    let killed = Instant::now();
    let requests_at_kill = c.amo.requests().len();
    let (poll_holder, poll_expires) = c.lease(&poll_lease).await.expect("A polled");
    assert_eq!(poll_holder, a_id, "A held the poller lease");
    let (crm_holder, crm_expires) = c.lease(&crm_lease).await.expect("A drains");
    assert!(crm_holder.starts_with(&a_id), "A held the CRM lease");
    // The sends A had in flight: the only replies that may go out twice.
    let in_flight: HashSet<String> = c
        .strings(&format!(
            "SELECT m.text FROM jobs j JOIN messages m ON j.payload LIKE '%' || m.id::text || '%' \
             WHERE j.status = 'running' AND j.kind = 'send_message' AND j.locked_by LIKE '%:{a_pid}/%'"
        ))
        .await
        .into_iter()
        .collect();
    assert!(!in_flight.is_empty(), "A had a send in flight");
    // The poller: B's lease, as first seen, runs LEASE_MS from its acquisition; A's ran
    // LEASE_MS from A's last renewal (both on the database's clock).
    let first_seen: Mutex<Option<i64>> = Mutex::new(None);
    eventually(
        ((LEASE_MS + MARGIN_MS) / 1000 + 30) as u64,
        "B polls the bot",
        || async {
            let lease = c.lease(&poll_lease).await;
            match lease {
                Some((h, e)) if h != a_id => {
                    *first_seen.lock().expect("lock") = Some(e);
                    true
                }
                _ => false,
            }
        },
    )
    .await;
    let poll_new = first_seen.lock().expect("lock").unwrap_or_default();
    let poll_after_renewal = poll_new - poll_expires;
    let poll_after_kill = poll_new - LEASE_MS - killed_at;
    // The CRM drain: nothing reaches amoCRM from A's hung drain, so the first request after
    // the kill is B's drain, once A's lease has ended.
    eventually(
        ((LEASE_MS + MARGIN_MS) / 1000 + 30) as u64,
        "B drains the CRM outbox",
        || async { c.amo.requests().len() > requests_at_kill },
    )
    .await;
    let first_request = c.amo.requests()[requests_at_kill].0;
    let crm_after_kill = first_request.saturating_duration_since(killed).as_millis() as i64;
    let crm_after_renewal = crm_after_kill + killed_at - (crm_expires - LEASE_MS);
    println!(
        "nodes_die: SIGKILL: poller taken over {poll_after_kill} ms after the kill \
         ({poll_after_renewal} ms after A's last renewal), CRM drain {crm_after_kill} ms after the \
         kill ({crm_after_renewal} ms after A's last renewal); lease {LEASE_MS} ms; \
         {} sends in flight on A",
        in_flight.len(),
    );
    for (what, after_renewal) in [
        ("poller", poll_after_renewal),
        ("CRM drain", crm_after_renewal),
    ] {
        assert!(
            after_renewal <= LEASE_MS + MARGIN_MS,
            "the {what} was taken over {after_renewal} ms after A's last renewal (lease {LEASE_MS} ms)"
        );
    }
    assert!(
        poll_after_renewal >= LEASE_MS,
        "B polled while A's lease ran"
    );

    // Rolling restart: A back, then each node stopped gracefully and started again.
    c.nodes[0].spawn().await;
    alive.lock().expect("lock").push(urls[0].clone());
    for i in [0, 1] {
        let n = load.acked();
        load.wait_for_acks(n + 20, 60).await;
        let holder = c.lease(&poll_lease).await.map(|(h, _)| h);
        alive.lock().expect("lock").retain(|u| *u != urls[i]);
        c.nodes[i].terminate(60).await;
        let stopped_at = c.db_now().await;
        // A live node acquires or renews the lease after the stop: the other node, or the one
        // that kept it (a node renews at every long poll).
        eventually(
            ((LEASE_MS + MARGIN_MS) / 1000 + 30) as u64,
            "a live node polls the bot",
            || async {
                c.lease(&poll_lease)
                    .await
                    .is_some_and(|(_, e)| e >= stopped_at + LEASE_MS)
            },
        )
        .await;
        let (h, expires) = c.lease(&poll_lease).await.expect("polled");
        let took = expires - LEASE_MS - stopped_at;
        println!(
            "nodes_die: SIGTERM of node {i}: the bot polled by {} {took} ms after it stopped",
            if Some(&h) == holder.as_ref() {
                "the node that kept polling"
            } else {
                "the other node"
            }
        );
        assert!(
            took <= LEASE_MS + MARGIN_MS,
            "poller taken over after {took} ms"
        );
        c.nodes[i].spawn().await;
        alive.lock().expect("lock").push(urls[i].clone());
    }
    let n = load.acked();
    load.wait_for_acks(n + 20, 60).await;

    // Everything stops; then every check.
    customers.stop().await;
    replier.stop().await;
    let acked = load.stop().await;
    let stored: Vec<String> = c
        .strings("SELECT external_id FROM messages WHERE direction = 'in'")
        .await;
    let mut times: HashMap<&str, usize> = HashMap::new();
    for id in &stored {
        *times.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !times.contains_key(id.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let written = written.lock().expect("lock").clone();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let stored: HashSet<String> = c
            .strings("SELECT external_id FROM messages WHERE direction = 'in'")
            .await
            .into_iter()
            .collect();
        let missing: Vec<&String> = written.iter().filter(|id| !stored.contains(*id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "customer messages never stored: {missing:?}; the bot's lease: {:?}; {} updates \
             pending at Telegram; calls: {:?}",
            c.lease(&poll_lease).await,
            c.telegram.pending_updates(&c.token),
            c.telegram
                .calls(&c.token)
                .iter()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let replies = replies.lock().expect("lock").clone();
    let deadline = Instant::now() + Duration::from_secs(90);
    while c
        .count("SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'")
        .await
        != replies.len() as i64
    {
        if Instant::now() >= deadline {
            let unsent = c
                .strings(
                    "SELECT m.text || ' [' || m.status || '] job: ' || coalesce(j.status || ' ' \
                     || j.attempts || ' ' || coalesce(j.locked_by, '') || ' ' \
                     || coalesce(j.last_error, ''), 'none') FROM messages m \
                     LEFT JOIN jobs j ON j.payload LIKE '%' || m.id::text || '%' \
                     WHERE m.direction = 'out' AND m.status <> 'sent'",
                )
                .await;
            panic!("replies never sent: {unsent:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        c.count("SELECT count(*) FROM messages WHERE direction = 'out'")
            .await,
        replies.len() as i64
    );
    let mut sends: HashMap<String, usize> = HashMap::new();
    for m in c.telegram.sent(&c.token) {
        *sends.entry(m.text.unwrap_or_default()).or_default() += 1;
    }
    let missing: Vec<_> = replies.iter().filter(|t| !sends.contains_key(*t)).collect();
    assert!(
        missing.is_empty(),
        "stored as sent but not at Telegram: {missing:?}"
    );
    let repeated: Vec<(&String, &usize)> = sends.iter().filter(|(_, n)| **n > 1).collect();
    for (text, n) in &repeated {
        assert!(
            **n == 2 && in_flight.contains(*text),
            "{text:?} sent {n} times; only a send in flight on the killed node may repeat, once \
             (in flight: {in_flight:?})"
        );
    }
    // amoCRM: one deal per conversation, each named after its customer.
    let conversations = c.count("SELECT count(*) FROM conversations").await;
    eventually(120, "every conversation has its deal", || async {
        c.count("SELECT count(*) FROM crm_conversations WHERE deal_id IS NOT NULL")
            .await
            == conversations
    })
    .await;
    let leads = c.amo.leads(c.account);
    let names: Vec<String> = (0..=TG_CUSTOMERS)
        .map(tg_name)
        .chain((0..CHATS).map(|k| format!("Покупатель client-{k}")))
        .collect();
    for name in &names {
        let n = leads
            .iter()
            .filter(|l| {
                l["name"]
                    .as_str()
                    .is_some_and(|x| x.ends_with(name.as_str()))
            })
            .count();
        assert_eq!(n, 1, "deals of {name}: {leads:?}");
    }
    assert_eq!(
        leads.len() as i64,
        conversations,
        "one deal per conversation"
    );
    println!(
        "nodes_die: {} webhooks acknowledged, {} customer messages polled, {} replies sent \
         ({} twice), {} deals for {conversations} conversations",
        acked.len(),
        written.len(),
        replies.len(),
        repeated.len(),
        leads.len()
    );
}
