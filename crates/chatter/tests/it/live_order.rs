//! Live events in commit order (issue 15, item 1). Event ids are taken before commit, so on
//! PostgreSQL a transaction that commits late brings an event with a smaller id than ones
//! already streamed. The live stream's reader (`events::Reader`, the code `/app/events` runs)
//! must deliver every committed event exactly once and nothing rolled back, however late the
//! commit. On SQLite one writer commits at a time, so ids are in commit order and the same test
//! passes without held transactions (holding one would only stop every other writer).

use chatter_core::events::{self, EventHub, Pending, Reader};
use chatter_domain::CompanyId;
use chatter_testkit::TestDb;
use sea_orm::{ConnectionTrait, TransactionTrait};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: u64 = 8;
const TOTAL: u64 = 100_000;
/// Longer than the 2 s the old stream waited for a missing id before passing it.
const HOLD: Duration = Duration::from_millis(2_500);

type Key = (u64, u64, u64);

#[derive(Default)]
struct Log {
    committed: HashMap<Key, Instant>,
    rolled_back: HashSet<Key>,
}

fn key_of(payload: &str) -> Key {
    let v: serde_json::Value = serde_json::from_str(payload).expect("json payload");
    let n = |k: &str| v[k].as_u64().expect("number");
    (n("w"), n("t"), n("i"))
}

async fn writer(
    db: sea_orm::DatabaseConnection,
    hub: Arc<EventHub>,
    company: CompanyId,
    w: u64,
    hold: bool,
    log: Arc<Mutex<Log>>,
) {
    let backend = db.get_database_backend();
    let mut emitted = 0;
    let mut t = 0;
    while emitted < TOTAL / WRITERS {
        t += 1;
        let size = (1 + (t * 7 + w) % 40).min(TOTAL / WRITERS - emitted);
        let keys: Vec<Key> = (0..size).map(|i| (w, t, i)).collect();
        let txn = db.begin().await.expect("begin");
        let mut pending = Pending::default();
        if size == 1 {
            events::emit(
                &txn,
                &mut pending,
                company,
                "test",
                serde_json::json!({"w": w, "t": t, "i": 0}),
                0,
            )
            .await
            .expect("emit");
        } else {
            let payloads = keys
                .iter()
                .map(|k| serde_json::json!({"w": k.0, "t": k.1, "i": k.2}))
                .collect();
            events::emit_many(&txn, &mut pending, company, "test", payloads, 0)
                .await
                .expect("emit many");
        }
        // A few transactions stay open while the others go on; some are abandoned.
        if hold && t % 150 == 10 {
            tokio::time::sleep(HOLD).await;
        }
        if t % 13 == 5 {
            txn.rollback().await.expect("rollback");
            log.lock().expect("log").rolled_back.extend(keys);
        } else {
            txn.commit().await.expect("commit");
            let now = Instant::now();
            pending.flush(&hub, backend);
            let mut l = log.lock().expect("log");
            for k in keys {
                l.committed.insert(k, now);
            }
        }
        emitted += size;
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_live_stream_delivers_every_committed_event_once_in_commit_order() {
    let db = TestDb::new().await;
    let pg = db.is_postgres();
    if !pg {
        eprintln!(
            "SQLite: one writer commits at a time, so ids are in commit order; the test runs \
             without held transactions (holding one would only stop the other writers)"
        );
    }
    let hub = Arc::new(EventHub::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let listener = tokio::spawn(events::listen_postgres(db.db.clone(), hub.clone(), stop_rx));
    let company = CompanyId(uuid::Uuid::now_v7());
    let start = events::newest(&db.db, company.0).await.expect("newest");
    let mut reader = Reader::new(&hub, company, start);
    // Give the listener a moment to LISTEN before anything commits (a missed wake-up would
    // only delay the stream to the next one, never lose an event).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let log = Arc::new(Mutex::new(Log::default()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                db.db.clone(),
                hub.clone(),
                company,
                w,
                pg && w < 4,
                log.clone(),
            ))
        })
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let done = done.clone();
        let writers = writers;
        tokio::spawn(async move {
            for w in writers {
                w.await.expect("writer");
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }

    let mut seen: HashMap<Key, u32> = HashMap::new();
    let mut delays: Vec<Duration> = Vec::new();
    let mut last = reader.position();
    let mut reads = 0u64;
    let mut quiet_since: Option<Instant> = None;
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst);
        if finished {
            let expected = log.lock().expect("log").committed.len();
            let got = seen.len();
            if got >= expected {
                break;
            }
            // A bound for liveness only: with every writer finished, the stream must catch up.
            let q = *quiet_since.get_or_insert_with(Instant::now);
            assert!(
                q.elapsed() < Duration::from_secs(60),
                "the stream stopped at {got} of {expected} committed events"
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), reader.changed()).await;
        let batch = reader.read(&db.db).await.expect("read the log");
        reads += 1;
        let now = Instant::now();
        let l = log.lock().expect("log");
        for (pos, e) in batch {
            assert!(pos > last, "positions only grow: {pos} after {last}");
            last = pos;
            let k = key_of(&e.payload);
            *seen.entry(k).or_default() += 1;
            if let Some(at) = l.committed.get(&k) {
                delays.push(now.saturating_duration_since(*at));
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = listener.await;
    let l = log.lock().expect("log");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let ghosts: Vec<_> = seen
        .keys()
        .filter(|k| l.rolled_back.contains(k))
        .take(5)
        .collect();
    assert!(
        ghosts.is_empty(),
        "rolled-back events delivered: {ghosts:?}"
    );
    let missed: Vec<_> = l
        .committed
        .keys()
        .filter(|k| !seen.contains_key(k))
        .take(5)
        .collect();
    assert!(
        missed.is_empty(),
        "{} committed events never delivered, e.g. {missed:?}",
        l.committed.keys().filter(|k| !seen.contains_key(k)).count()
    );
    assert_eq!(
        (l.committed.len() + l.rolled_back.len()) as u64,
        TOTAL,
        "every event was either committed or rolled back"
    );
    assert!(
        !l.rolled_back.is_empty(),
        "some transactions were rolled back"
    );
    delays.sort();
    eprintln!(
        "live stream ({}): {} committed, {} rolled back, {} reads; delay after commit p50 {:?}, p99 {:?}, max {:?}",
        if pg { "postgres" } else { "sqlite" },
        l.committed.len(),
        l.rolled_back.len(),
        reads,
        pct(&delays, 0.5),
        pct(&delays, 0.99),
        delays.last().copied().unwrap_or_default(),
    );
}

/// A notification can be lost (a node killed between its commit and its NOTIFY, a listener
/// reconnecting): the event is in the log, and an idle stream reads it anyway after its idle
/// recheck (`Reader::IDLE_RECHECK`, shortened here), even when the caller cancels its wait
/// more often than that (the SSE endpoint does, every 2 s, to check the session).
#[tokio::test]
async fn an_event_whose_notification_was_lost_still_reaches_the_stream() {
    let db = TestDb::new().await;
    let hub = Arc::new(EventHub::default());
    let company = CompanyId(uuid::Uuid::now_v7());
    let start = events::newest(&db.db, company.0).await.expect("newest");
    let mut reader = Reader::new(&hub, company, start).idle_recheck(Duration::from_millis(600));
    reader.changed().await.expect("hub");
    assert!(reader.read(&db.db).await.expect("read").is_empty());

    let txn = db.db.begin().await.expect("begin");
    let mut pending = Pending::default();
    events::emit(
        &txn,
        &mut pending,
        company,
        "test",
        serde_json::json!({"lost": true}),
        0,
    )
    .await
    .expect("emit");
    txn.commit().await.expect("commit");
    // Nobody is told: no `pending.flush`, no NOTIFY.
    drop(pending);

    let woken = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            // Cancelled every 200 ms, as the SSE loop's other branches do.
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(200), reader.changed()).await
            {
                r.expect("hub");
                let evs = reader.read(&db.db).await.expect("read");
                if !evs.is_empty() {
                    return evs;
                }
            }
        }
    })
    .await
    .expect("the event was read without a notification");
    assert_eq!(woken.len(), 1);
    assert_eq!(woken[0].1.kind, "test");
}
