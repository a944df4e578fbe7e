//! A Max bot through the whole product: added by its token (wrong ones are refused and change
//! nothing), customers read by long polling or through a webhook subscription with a secret,
//! answers sent once and in order through a Max outage, and forged or replayed deliveries
//! storing nothing new.

use crate::messages::{count, location, PW};
use crate::telegram::{conversation_with, reply, thread_shows, within};
use chatter_fakes::max::{CustomerMessage, Failure};
use chatter_testkit::{Session, TestApp};

/// Signs up a company and connects a fresh Max bot; returns the session, the token and the
/// source id.
pub(crate) async fn company_with_max_bot(app: &TestApp) -> (Session, String, String) {
    let s = Session::sign_up(app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let token = app.max.add_bot("Рога и Копыта", "horns_max_bot");
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[("kind", "4"), ("max_token", &token), ("name", "")],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let path = location(&r);
    let id = path.rsplit('/').next().expect("id").to_string();
    let page = s.html(&path).await;
    assert!(page.contains("@horns_max_bot"), "bot shown: {page}");
    (s, token, id)
}

fn sent_texts(app: &TestApp, token: &str) -> Vec<String> {
    app.max.sent(token).into_iter().map(|m| m.text).collect()
}

#[tokio::test]
async fn wrong_max_tokens_are_refused_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let before = count(&app, "SELECT count(*) FROM sources").await;
    let unknown = "f9LHodD0cOL".repeat(4);
    for token in ["short", "с пробелом внутри токена", unknown.as_str()] {
        let r = s
            .post_from(
                "/app/sources/new",
                "/app/sources",
                &[("kind", "4"), ("max_token", token)],
            )
            .await;
        assert_eq!(r.status(), 422, "refused: {token}");
        let page = r.text().await.expect("body");
        assert!(
            page.contains("data-field=\"max_token\"") && page.contains("aria-invalid=\"true\""),
            "the token field is marked for {token}: {page}"
        );
    }
    assert_eq!(count(&app, "SELECT count(*) FROM sources").await, before);
}

#[tokio::test]
async fn a_max_customer_is_long_polled_and_answers_survive_an_outage_in_order() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_max_bot(&app).await;
    app.max.customer_writes(
        &token,
        CustomerMessage {
            last_name: Some("Орлов".into()),
            ..CustomerMessage::text(7_301_224, "Павел", "Можно доставку на завтра?")
        },
    );
    let conv = conversation_with(&s, "Можно доставку на завтра?").await;
    let page = thread_shows(&s, &conv, "Можно доставку на завтра?").await;
    assert!(
        page.contains("Павел Орлов"),
        "the customer is named: {page}"
    );
    within(10, "the marker is stored", || async {
        count(
            &app,
            "SELECT count(*) FROM sources WHERE cursor IS NOT NULL",
        )
        .await
            == 1
    })
    .await;

    app.max.fail_next(&token, Failure::server_error(), 2);
    app.max.fail_next(
        &token,
        Failure::TooManyRequests {
            retry_after: Some(1),
        },
        1,
    );
    for t in ["Да", "Привезём к 18:00", "Оплата при получении"] {
        reply(&s, &conv, t).await;
    }
    within(40, "all replies arrive", || async {
        sent_texts(&app, &token).len() >= 3
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        sent_texts(&app, &token),
        ["Да", "Привезём к 18:00", "Оплата при получении"]
    );
    within(20, "all three show as sent", || async {
        s.html(&format!("/app/inbox/{conv}"))
            .await
            .matches("data-status=\"sent\"")
            .count()
            == 3
    })
    .await;
    // The poller came through the outage too.
    app.max.customer_writes(
        &token,
        CustomerMessage::text(7_301_224, "Павел", "Спасибо!"),
    );
    thread_shows(&s, &conv, "Спасибо!").await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages WHERE direction = 'in'").await,
        2
    );
}

#[tokio::test]
async fn max_webhooks_check_the_secret_and_store_each_update_once() {
    let app = TestApp::builder().with_webhooks().start().await;
    let (s, token, source_id) = company_with_max_bot(&app).await;
    within(20, "the bot is subscribed", || async {
        app.max.subscription(&token).is_some()
    })
    .await;
    let sub = app.max.subscription(&token).expect("subscription");
    assert_eq!(sub.url, format!("{}/hooks/max/{source_id}", app.url));
    let secret = sub.secret.clone().expect("a secret");
    app.max.customer_writes(
        &token,
        CustomerMessage::text(7_400_001, "Вера", "Пишу через вебхук"),
    );
    let conv = conversation_with(&s, "Пишу через вебхук").await;
    reply(&s, &conv, "Видим!").await;
    within(20, "Max got the answer", || async {
        sent_texts(&app, &token) == ["Видим!"]
    })
    .await;

    let http = reqwest::Client::new();
    let url = app.at(&format!("/hooks/max/{source_id}"));
    let update = serde_json::json!({"update_type": "message_created", "timestamp": 1767225600123i64,
        "message": {"sender": {"user_id": 7400002, "first_name": "Олег", "is_bot": false},
            "recipient": {"chat_id": 7400002, "chat_type": "dialog"},
            "timestamp": 1767225600000i64,
            "body": {"mid": "mid.replayed.1", "seq": 1, "text": "Повтор", "attachments": []}}});
    let before = count(&app, "SELECT count(*) FROM messages").await;
    let r = http
        .post(&url)
        .header("X-Max-Bot-Api-Secret", "forged-secret")
        .json(&update)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    let r = http.post(&url).json(&update).send().await.expect("post");
    assert_eq!(r.status(), 401);
    let r = http
        .post(&url)
        .header("X-Max-Bot-Api-Secret", &secret)
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(count(&app, "SELECT count(*) FROM messages").await, before);
    for _ in 0..3 {
        let r = http
            .post(&url)
            .header("X-Max-Bot-Api-Secret", &secret)
            .json(&update)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages").await,
        before + 1,
        "a replayed update is stored once"
    );
}
