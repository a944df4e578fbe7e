//! Pages and live streams that only read do not queue behind writes (both databases). On
//! SQLite the writer is one connection; while a long write transaction holds it, the dashboard,
//! the inbox, a conversation, search and the live stream still answer through the read pool
//! (`chatter_store::connect_read`). With the writer's connection alone they would wait for the
//! transaction to end — here, for ever: the test holds it until every page has answered.

use crate::messages::{company_with_bot, eventually};
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Session, TestApp};
use sea_orm::{ConnectionTrait, TransactionTrait};
use std::time::Duration;

/// Long enough for any page on a busy machine; a page stuck behind the held transaction never
/// answers, so this bounds only a failure, it measures nothing.
const STUCK: Duration = Duration::from_secs(60);

async fn page_while_held(s: &Session, path: &str) -> String {
    let r = tokio::time::timeout(STUCK, s.get(path))
        .await
        .unwrap_or_else(|_| panic!("{path} did not answer while a write transaction was held"));
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.expect("body")
}

#[tokio::test]
async fn pages_and_the_live_stream_answer_while_a_long_write_transaction_is_held() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(7001, "Ольга", "Сколько стоит доставка в Казань?"),
    );
    eventually("the message is stored", || async {
        s.html("/app/inbox").await.contains("Ольга")
    })
    .await;
    let inbox = s.html("/app/inbox").await;
    let conv = inbox
        .split("/app/inbox/")
        .filter_map(|rest| rest.get(..36))
        .find(|id| uuid::Uuid::parse_str(id).is_ok())
        .expect("a conversation link")
        .to_string();
    // Opened once, so it has nothing unread: opening it again only reads.
    s.html(&format!("/app/inbox/{conv}")).await;

    // A write transaction that holds the writer (on SQLite its one connection and the
    // database's write lock) until every page below has answered.
    let txn = app.core.db.begin().await.expect("begin");
    txn.execute_unprepared("UPDATE companies SET name = name")
        .await
        .expect("take the write lock");

    let dashboard = page_while_held(&s, "/app").await;
    assert!(dashboard.contains("<html"), "{dashboard}");
    let inbox = page_while_held(&s, "/app/inbox").await;
    assert!(inbox.contains("Ольга"), "the inbox lists the conversation");
    let thread = page_while_held(&s, &format!("/app/inbox/{conv}")).await;
    assert!(
        thread.contains("Казань"),
        "the conversation shows the message"
    );
    let found = page_while_held(
        &s,
        "/app/inbox?q=%D0%B4%D0%BE%D1%81%D1%82%D0%B0%D0%B2%D0%BA%D0%B0",
    )
    .await;
    assert!(found.contains("Казань"), "search finds «доставка»: {found}");

    // The live stream: its first bytes (the backlog after Last-Event-ID 0) come while held.
    let mut stream = tokio::time::timeout(STUCK, async {
        s.http
            .get(app.at("/app/events"))
            .header("last-event-id", "0")
            .send()
            .await
            .expect("open the stream")
    })
    .await
    .expect("/app/events did not answer while a write transaction was held");
    assert_eq!(stream.status(), 200);
    let first = tokio::time::timeout(STUCK, stream.chunk())
        .await
        .expect("the stream sent nothing while a write transaction was held")
        .expect("read the stream")
        .expect("a first chunk");
    assert!(!first.is_empty());
    drop(stream);

    txn.rollback().await.expect("rollback");
}
