//! Two `chatter serve` nodes on one PostgreSQL database under steady signed webhook load (an
//! API source: signed messages in, signed deliveries out to the integrator's receiver here):
//! one node SIGKILLed while it delivers, and every database connection cut under both. Nothing
//! acknowledged is lost or stored twice, the killed node's running deliveries are taken over
//! within the lease, and every reply reaches the integrator, repeated only under its delivery
//! id. PostgreSQL only; on SQLite-only runs each test says it was skipped.

use crate::api_source::{attr_after, message_body, sign};
use crate::nodes::{node, postgres_db};
use crate::server_process::Server;
use chatter_testkit::{csrf_of, Session};
use sea_orm::ConnectionTrait as _;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The lease the nodes run with (`Server` sets `CHATTER_WORKER__LEASE_SECS=5`).
const LEASE: Duration = Duration::from_secs(5);
/// Customers writing in; one conversation each.
pub(crate) const CHATS: usize = 10;
/// Replies whose first delivery the receiver holds, so that they run when a node dies.
const HELD: usize = 4;
/// Concurrent posters of the webhook load, each pausing this long between messages.
const POSTERS: usize = 4;
const PACE: Duration = Duration::from_millis(100);
/// Text that makes the receiver hold a reply's first delivery.
const HOLD: &str = "HOLD";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    delivery: String,
    kind: String,
    message: String,
    status: String,
    text: String,
    body: String,
    signature_ok: bool,
    acknowledged: bool,
}

/// The integrator's webhook receiver: records every request and answers 204, except that it
/// holds the first request of each `HOLD` reply until its delivery is released (a request
/// whose sender died is never released, so it stays unacknowledged).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    secret: Arc<Mutex<String>>,
    held: Arc<AtomicUsize>,
    /// Held deliveries that may now be answered.
    release: watch::Sender<HashSet<String>>,
}

impl Receiver {
    async fn start() -> Receiver {
        use axum::http::{HeaderMap, StatusCode};
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let secret: Arc<Mutex<String>> = Arc::default();
        let held = Arc::new(AtomicUsize::new(0));
        let (release, _) = watch::channel(HashSet::new());
        let (g, sec, h, rel) = (got.clone(), secret.clone(), held.clone(), release.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (g, sec, h, mut rel) = (g.clone(), sec.clone(), h.clone(), rel.subscribe());
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let json: Value = serde_json::from_str(&body).unwrap_or_default();
                    let field = |v: &Value| v.as_str().unwrap_or_default().to_string();
                    let ts: i64 = header("x-chatter-timestamp").parse().unwrap_or_default();
                    let signature_ok = header("x-chatter-signature")
                        == sign(&sec.lock().expect("lock"), ts, &body);
                    let got = Got {
                        delivery: header("x-chatter-delivery"),
                        kind: field(&json["type"]),
                        message: field(&json["data"]["message"]["id"]),
                        status: field(&json["data"]["message"]["status"]),
                        text: field(&json["data"]["message"]["text"]),
                        body: body.clone(),
                        signature_ok,
                        acknowledged: false,
                    };
                    let (i, hold) = {
                        let mut g = g.lock().expect("lock");
                        let first = !g.iter().any(|x| x.delivery == got.delivery);
                        let hold =
                            first && got.kind == "message.created" && got.text.starts_with(HOLD);
                        g.push(got);
                        (g.len() - 1, hold)
                    };
                    if hold {
                        h.fetch_add(1, Ordering::SeqCst);
                        let d = header("x-chatter-delivery");
                        let _ = rel.wait_for(|released| released.contains(&d)).await;
                    }
                    g.lock().expect("lock")[i].acknowledged = true;
                    StatusCode::NO_CONTENT
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
        Receiver {
            url,
            got,
            secret,
            held,
            release,
        }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }
}

/// Two nodes on one fresh database with a company whose API source delivers to `rx`.
struct Installation {
    nodes: Vec<Server>,
    session: Session,
    csrf: String,
    source: String,
    secret: String,
    /// Conversation id by chat (`client-{k}`).
    convs: Vec<String>,
}

impl Installation {
    async fn start(test: &str, rx: &Receiver) -> Option<Installation> {
        let db = postgres_db(test).await?;
        let env = [("CHATTER_ALLOW_PRIVATE_TARGETS", "true".to_string())];
        let mut nodes = vec![node(&db, "a", &env), node(&db, "b", &env)];
        for n in &mut nodes {
            n.start();
        }
        for n in &mut nodes {
            n.wait_for("/readyz", 120).await;
        }
        let session = signed_up_owner(nodes[0].url()).await;
        let (source, secret) = api_source(&session).await;
        *rx.secret.lock().expect("lock") = secret.clone();
        let page = format!("/app/api-sources/{source}");
        let r = session
            .post_from(
                &page,
                &format!("{page}/webhook"),
                &[("webhook_url", &rx.url)],
            )
            .await;
        assert_eq!(r.status(), 303, "the webhook URL is set");
        let mut inst = Installation {
            nodes,
            session,
            csrf: String::new(),
            source,
            secret,
            convs: Vec::new(),
        };
        let http = reqwest::Client::new();
        for k in 0..CHATS {
            let body = message_body(
                &format!("hello-{k}"),
                &format!("client-{k}"),
                "Здравствуйте",
            );
            let r = inst.post(&http, &inst.nodes[k % 2].url(), &body).await;
            assert_eq!(r.status(), 200);
            let stored: Value = r.json().await.expect("JSON");
            let conv = stored["conversation_id"].as_str().expect("conversation");
            inst.convs.push(conv.to_string());
        }
        inst.csrf = csrf_of(&inst.session.html("/app/inbox").await);
        Some(inst)
    }

    /// Posts a signed message to the node at `base`.
    async fn post(&self, http: &reqwest::Client, base: &str, body: &str) -> reqwest::Response {
        post_signed(http, base, &self.source, &self.secret, body)
            .await
            .expect("POST")
    }

    /// A manager's reply in chat `k`, posted to the node at `base`.
    async fn reply(&self, base: &str, k: usize, text: &str) {
        let r = self
            .session
            .http
            .post(format!("{base}/app/inbox/{}/reply", self.convs[k]))
            .header("accept", "application/json")
            .form(&[("_csrf", self.csrf.as_str()), ("text", text)])
            .send()
            .await
            .expect("POST reply");
        assert_eq!(r.status(), 201, "reply stored");
    }

    async fn count(&self, sql: &str) -> i64 {
        self.nodes[0].count(sql).await
    }
}

/// Adds an API source named «Сайт» through the UI; returns its id and signing secret.
pub(crate) async fn api_source(session: &Session) -> (String, String) {
    let r = session
        .post_from(
            "/app/sources/new/api",
            "/app/api-sources",
            &[("name", "Сайт")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.expect("body");
    let secret = attr_after(&page, "id=\"api-secret\"", "value").to_string();
    let source = page
        .split("/app/api-sources/")
        .nth(1)
        .and_then(|x| x.split('/').next())
        .expect("source id in page")
        .to_string();
    (source, secret)
}

pub(crate) async fn post_signed(
    http: &reqwest::Client,
    base: &str,
    source: &str,
    secret: &str,
    body: &str,
) -> reqwest::Result<reqwest::Response> {
    let ts = unix_secs();
    http.post(format!("{base}/hooks/api/{source}"))
        .header("content-type", "application/json")
        .header("x-chatter-timestamp", ts.to_string())
        .header("x-chatter-signature", sign(secret, ts, body))
        .body(body.to_string())
        .send()
        .await
}

pub(crate) fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Steady signed webhook load over the nodes still in `alive`: each message is posted until a
/// node answers 200 (to the next node after a failure, as a balancer would), then counted as
/// acknowledged.
pub(crate) struct Load {
    acked: Arc<Mutex<HashSet<String>>>,
    /// The nodes posted to; a test takes a node out before stopping it.
    pub(crate) alive: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(inst: &Installation) -> Load {
        let urls = inst.nodes.iter().map(Server::url).collect();
        Load::over(urls, &inst.source, &inst.secret, message_body)
    }

    /// `POSTERS` posters of signed messages to the API source `source` over the nodes at
    /// `urls` (the messages' bodies made by `body(id, chat, text)`), chats `client-0…` in turn.
    pub(crate) fn over(
        urls: Vec<String>,
        source: &str,
        secret: &str,
        body: fn(&str, &str, &str) -> String,
    ) -> Load {
        let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
        let alive = Arc::new(Mutex::new(urls));
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicUsize::new(0));
        let tasks = (0..POSTERS)
            .map(|_| {
                let (acked, alive, stop, next) =
                    (acked.clone(), alive.clone(), stop.clone(), next.clone());
                let (source, secret) = (source.to_string(), secret.to_string());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .expect("client");
                    while !stop.load(Ordering::SeqCst) {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        let id = format!("load-{n}");
                        let chat = format!("client-{}", n % CHATS);
                        let body = body(&id, &chat, &format!("Сообщение {n}"));
                        for attempt in 0.. {
                            let base = {
                                let alive = alive.lock().expect("lock");
                                alive[(n + attempt) % alive.len()].clone()
                            };
                            let r = post_signed(&http, &base, &source, &secret, &body).await;
                            if r.is_ok_and(|r| r.status() == 200) {
                                acked.lock().expect("lock").insert(id);
                                break;
                            }
                            assert!(attempt < 100, "message {id} never acknowledged");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        tokio::time::sleep(PACE).await;
                    }
                })
            })
            .collect();
        Load {
            acked,
            alive,
            stop,
            tasks,
        }
    }

    pub(crate) fn acked(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    pub(crate) async fn wait_for_acks(&self, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.acked() < n {
            assert!(
                Instant::now() < deadline,
                "only {} acknowledged",
                self.acked()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops posting; every message under way is still posted until acknowledged.
    pub(crate) async fn stop(self) -> HashSet<String> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("poster");
        }
        Arc::try_unwrap(self.acked)
            .map(|m| m.into_inner().expect("lock"))
            .unwrap_or_default()
    }
}

pub(crate) async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What every such run must end with: each acknowledged message stored exactly once, every
/// reply sent and delivered, each delivery's repeats carrying the same id and body.
async fn assert_nothing_lost_or_doubled(
    inst: &Installation,
    rx: &Receiver,
    acked: &HashSet<String>,
    replies: i64,
) {
    let stored = inst.nodes[0]
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
    assert_eq!(
        inst.count("SELECT count(*) FROM messages WHERE direction = 'out'")
            .await,
        replies
    );
    eventually(90, "every reply sent", || async {
        inst.count("SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'")
            .await
            == replies
    })
    .await;
    let reply_ids: HashSet<String> = inst.nodes[0]
        .strings("SELECT id::text FROM messages WHERE direction = 'out'")
        .await
        .into_iter()
        .collect();
    eventually(
        60,
        "the integrator has every reply and every message",
        || async {
            let got = rx.got();
            let delivered: HashSet<&str> = got
                .iter()
                .filter(|g| g.acknowledged && g.kind == "message.created")
                .map(|g| g.message.as_str())
                .collect();
            delivered.len() as i64 == stored.len() as i64 + replies
                && reply_ids.iter().all(|id| delivered.contains(id.as_str()))
        },
    )
    .await;
    let got = rx.got();
    assert!(
        got.iter().all(|g| g.signature_ok),
        "every delivery is signed"
    );
    // A delivery repeats only as itself: the same id, the same body; one id per event.
    let mut body_of: HashMap<&str, &str> = HashMap::new();
    let mut id_of: HashMap<(&str, &str, &str), HashSet<&str>> = HashMap::new();
    for g in &got {
        let first = body_of.entry(&g.delivery).or_insert(&g.body);
        assert_eq!(
            *first, g.body,
            "delivery {} repeated with another body",
            g.delivery
        );
        if g.kind.starts_with("message.") {
            id_of
                .entry((&g.kind, &g.message, &g.status))
                .or_default()
                .insert(&g.delivery);
        }
    }
    let split: Vec<_> = id_of.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        split.is_empty(),
        "one event under several delivery ids: {split:?}"
    );
    println!(
        "nodes: {} messages acknowledged, {} stored (each once), {replies} replies sent; \
         {} deliveries, {} repeated requests (same id and body)",
        acked.len(),
        stored.len(),
        body_of.len(),
        got.len() - body_of.len()
    );
}

#[tokio::test]
async fn two_nodes_under_webhook_load_one_sigkilled_lose_nothing_and_deliver_every_reply() {
    let rx = Receiver::start().await;
    let Some(mut inst) =
        Installation::start("two_nodes_under_webhook_load_one_sigkilled", &rx).await
    else {
        return;
    };
    let load = Load::start(&inst);
    load.wait_for_acks(20, 30).await;
    let (a, b) = (inst.nodes[0].url(), inst.nodes[1].url());
    let mut replies = 0;
    for k in 0..HELD {
        inst.reply(if k % 2 == 0 { &a } else { &b }, k, &format!("{HOLD} {k}"))
            .await;
        replies += 1;
    }
    for k in HELD..CHATS {
        inst.reply(&a, k, &format!("Ответ {k}")).await;
        inst.reply(&b, k, &format!("Ещё ответ {k}")).await;
        replies += 2;
    }
    eventually(30, "every held reply is being delivered", || async {
        rx.held.load(Ordering::SeqCst) == HELD
    })
    .await;
    // Which node runs each held delivery.
    let held: Vec<String> = rx
        .got()
        .iter()
        .filter(|g| g.text.starts_with(HOLD))
        .map(|g| g.delivery.clone())
        .collect();
    let mut by_pid: HashMap<u32, Vec<String>> = HashMap::new();
    for d in &held {
        let token = inst.nodes[0]
            .strings(&format!(
                "SELECT locked_by FROM jobs WHERE status = 'running' AND payload LIKE '%{d}%'"
            ))
            .await
            .pop()
            .expect("the held delivery's job is running");
        let pid = token
            .split('/')
            .next()
            .and_then(|node| node.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid in the claim {token}"));
        by_pid.entry(pid).or_default().push(d.clone());
    }
    let (victim, victims) = inst
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| Some((i, by_pid.get(&n.pid()?)?.clone())))
        .max_by_key(|(_, ds)| ds.len())
        .expect("a node runs the held deliveries");
    let survivor = 1 - victim;

    inst.nodes[victim].kill9();
    let killed = Instant::now();
    load.alive
        .lock()
        .expect("lock")
        .retain(|u| *u != inst.nodes[victim].url());
    // The survivor's own held deliveries may finish now; the victim's connections are gone.
    rx.release.send_modify(|released| {
        released.extend(held.iter().filter(|d| !victims.contains(d)).cloned())
    });
    eventually(
        30,
        "the killed node's held deliveries taken over",
        || async {
            let got = rx.got();
            victims
                .iter()
                .all(|d| got.iter().any(|g| g.delivery == *d && g.acknowledged))
        },
    )
    .await;
    let took = killed.elapsed();
    println!(
        "nodes: {} running deliveries of the SIGKILLed node delivered by the other {:.2} s later (lease {} s)",
        victims.len(),
        took.as_secs_f64(),
        LEASE.as_secs()
    );
    assert!(
        took < LEASE + Duration::from_secs(3),
        "taken over only after {took:?}"
    );
    let got = rx.got();
    for d in &victims {
        let tries: Vec<&Got> = got.iter().filter(|g| g.delivery == *d).collect();
        assert!(
            tries.len() >= 2 && !tries[0].acknowledged,
            "delivery {d}: the killed node's attempt, then the survivor's: {tries:?}"
        );
    }
    let metrics = reqwest::get(format!("{}/metrics", inst.nodes[survivor].url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let taken: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("chatter_jobs_taken_over_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the takeover counter");
    assert!(
        taken >= victims.len(),
        "counted {taken} takeovers:\n{metrics}"
    );

    // Work goes on: replies through the survivor, the load for a while longer.
    let survivor_url = inst.nodes[survivor].url();
    for k in HELD..CHATS {
        inst.reply(&survivor_url, k, &format!("После сбоя {k}"))
            .await;
        replies += 1;
    }
    let n = load.acked();
    load.wait_for_acks(n + 20, 30).await;
    let acked = load.stop().await;
    assert_nothing_lost_or_doubled(&inst, &rx, &acked, replies).await;
}

#[tokio::test]
async fn nodes_survive_every_database_connection_being_cut_under_webhook_load() {
    let rx = Receiver::start().await;
    let Some(mut inst) = Installation::start("nodes_survive_database_connections_cut", &rx).await
    else {
        return;
    };
    let load = Load::start(&inst);
    load.wait_for_acks(20, 30).await;
    let cut = || async {
        let admin = chatter_store::connect(&inst.nodes[0].db.url)
            .await
            .expect("connect");
        let n = admin
            .query_all(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            ))
            .await
            .expect("terminate the other connections")
            .len();
        let _ = admin.close().await;
        n
    };
    let mut killed = 0;
    for _ in 0..3 {
        killed += cut().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("nodes: {killed} database connections terminated in 3 cuts");
    assert!(killed > 0, "the nodes had connections to cut");
    // Both nodes answer again and keep taking the load.
    let n = load.acked();
    load.wait_for_acks(n + 40, 30).await;
    let (mut replies, mut acked_here) = (0, Vec::new());
    for (i, node) in inst.nodes.iter().enumerate() {
        let url = node.url();
        eventually(30, "the node is ready again", || {
            let ready = format!("{url}/readyz");
            async move { reqwest::get(ready).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        // Each node itself stores a message again (the load alone could fall back on the
        // other), and its reply's delivery needs its worker back on the database too.
        let id = format!("after-cut-{i}");
        let body = message_body(&id, &format!("client-{i}"), "Снова здесь");
        let r = inst.post(&reqwest::Client::new(), &url, &body).await;
        assert_eq!(r.status(), 200, "node {i} stores a message after the cuts");
        inst.reply(&url, i, &format!("После обрыва {i}")).await;
        replies += 1;
        acked_here.push(id);
    }
    let mut acked = load.stop().await;
    acked.extend(acked_here);
    for (i, node) in inst.nodes.iter_mut().enumerate() {
        assert!(node.exited().is_none(), "node {i} exited:\n{}", node.log());
    }
    assert_nothing_lost_or_doubled(&inst, &rx, &acked, replies).await;
}

/// The owner of a new company «Рога и Копыта», signed up through the node at `base`.
pub(crate) async fn signed_up_owner(base: String) -> Session {
    let session = Session {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        base,
    };
    let r = session
        .post_from(
            "/sign-up",
            "/sign-up",
            &[
                ("company_name", "Рога и Копыта"),
                ("name", "Анна"),
                ("email", "anna@example.ru"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "signed up");
    session
}
