//! The message path with a Telegram bot: connect a bot by token, customers write (polling and
//! webhook), the inbox shows it, a manager answers, the customer receives it — and replays,
//! forged secrets, malformed bodies and provider failures lose and duplicate nothing.

use chatter_fakes::CustomerMessage;
use chatter_testkit::{Session, TestApp};
use std::time::Duration;

pub const PW: &str = "correct horse battery";

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Polls `f` until it is true or 15 s pass.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let row = app
        .db
        .db
        .query_one(Statement::from_string(
            app.db.db.get_database_backend(),
            sql.to_string(),
        ))
        .await
        .expect("count")
        .expect("row");
    row.try_get_by_index::<i64>(0).expect("n")
}

/// Signs up, connects a bot through the Sources form; returns the session, the token and the source id.
pub async fn company_with_bot(app: &TestApp) -> (Session, String, String) {
    company_named(app, "Рога и Копыта", "anna@example.ru", "horns_bot").await
}

/// [`company_with_bot`] for a company, owner's email and bot of the caller's choice.
pub async fn company_named(
    app: &TestApp,
    name: &str,
    email: &str,
    bot: &str,
) -> (Session, String, String) {
    let s = Session::sign_up(app, name, "Анна", email, PW).await;
    let token = app.telegram.create_bot(bot, name);
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[("kind", "1"), ("token", &token), ("name", "")],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let source_path = location(&r);
    let source_id = source_path.rsplit('/').next().expect("id").to_string();
    let page = s.html(&source_path).await;
    assert!(
        page.contains(&format!("@{bot}")),
        "bot username shown: {page}"
    );
    (s, token, source_id)
}

#[tokio::test]
async fn a_customer_writes_the_manager_answers_the_customer_gets_it() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5001, "Иван", "Здравствуйте! Сколько стоит доставка?"),
    );
    eventually("the message reaches the inbox", || async {
        s.html("/app/inbox")
            .await
            .contains("Сколько стоит доставка?")
    })
    .await;
    let inbox = s.html("/app/inbox").await;
    let conv = inbox
        .split("<li id=\"conv-")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .expect("a conversation row")
        .to_string();
    let thread = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(thread.contains("Иван"));
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/reply"),
            &[("text", "Доставка бесплатная от 3000 ₽")],
        )
        .await;
    assert_eq!(r.status(), 303);
    eventually("the customer receives the answer", || async {
        app.telegram.sent(&token).iter().any(|m| {
            m.chat_id == 5001 && m.text.as_deref() == Some("Доставка бесплатная от 3000 ₽")
        })
    })
    .await;
    eventually("the reply shows as sent", || async {
        s.html(&format!("/app/inbox/{conv}"))
            .await
            .contains("data-status=\"sent\"")
    })
    .await;
    // Sources page shows the health.
    let sources = s.html("/app/sources").await;
    assert!(sources.contains("Подключён"), "{sources}");
}

#[tokio::test]
async fn webhook_mode_checks_the_secret_and_stores_each_update_once() {
    let app = TestApp::builder().with_telegram_webhooks().start().await;
    let (s, token, source_id) = company_with_bot(&app).await;
    eventually("the webhook is set", || async {
        app.telegram.webhook(&token).is_some()
    })
    .await;
    let hook = app.telegram.webhook(&token).expect("webhook");
    assert_eq!(
        hook.url,
        format!("{}/hooks/telegram/{source_id}", app.telegram_hook_base)
    );
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(7001, "Мария", "Есть ли самовывоз?"),
    );
    eventually("delivered through the webhook", || async {
        s.html("/app/inbox").await.contains("Есть ли самовывоз?")
    })
    .await;

    let http = reqwest::Client::new();
    let url = app.at(&format!("/hooks/telegram/{source_id}"));
    let update = serde_json::json!({"update_id": 990001, "message": {"message_id": 77, "date": 1767225600,
        "from": {"id": 7002, "is_bot": false, "first_name": "Олег"}, "chat": {"id": 7002, "type": "private", "first_name": "Олег"}, "text": "Повтор"}});
    let before = count(&app, "SELECT count(*) FROM messages").await;
    // Forged secret: refused, nothing stored.
    let r = http
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", "forged")
        .json(&update)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    let r = http.post(&url).json(&update).send().await.expect("post");
    assert_eq!(r.status(), 401);
    assert_eq!(count(&app, "SELECT count(*) FROM messages").await, before);
    // Malformed JSON: 400, nothing stored.
    let r = http
        .post(&url)
        .header(
            "X-Telegram-Bot-Api-Secret-Token",
            &hook.secret_token.clone().unwrap_or_default(),
        )
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(count(&app, "SELECT count(*) FROM messages").await, before);
    // The same update three times: one message, one contact.
    for _ in 0..3 {
        let r = http
            .post(&url)
            .header(
                "X-Telegram-Bot-Api-Secret-Token",
                &hook.secret_token.clone().unwrap_or_default(),
            )
            .json(&update)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages").await,
        before + 1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM contacts WHERE external_id = '7002'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_reply_quotes_the_customers_message_in_telegram() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    let first = app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5101, "Пётр", "Есть синий цвет?"),
    );
    eventually("stored", || async {
        s.html("/app/inbox").await.contains("Есть синий цвет?")
    })
    .await;
    let inbox = s.html("/app/inbox").await;
    let conv = inbox
        .split("<li id=\"conv-")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .expect("row")
        .to_string();
    let thread = s.html(&format!("/app/inbox/{conv}")).await;
    let mid = thread
        .split("id=\"msg-")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .expect("message")
        .to_string();
    let page = format!("/app/inbox/{conv}?reply_to={mid}");
    let html = s.html(&page).await;
    assert!(html.contains("id=\"reply-quote\""), "the quote is shown");
    let r = s
        .post_from(
            &page,
            &format!("/app/inbox/{conv}/reply"),
            &[("text", "Да, есть"), ("reply_to", &mid)],
        )
        .await;
    assert_eq!(r.status(), 303);
    eventually("sent as a reply", || async {
        app.telegram
            .sent(&token)
            .iter()
            .any(|m| m.text.as_deref() == Some("Да, есть") && m.reply_to_message_id == Some(first))
    })
    .await;
}
