//! An Avito account through the whole product: added by its client id and secret (wrong ones
//! are refused and change nothing), buyers read by polling or through the v3 webhook whose
//! URL carries an unguessable token, answers sent once and in order through an Avito outage,
//! and forged or replayed deliveries storing nothing new.

use crate::messages::{count, location, PW};
use crate::telegram::{conversation_with, reply, thread_shows, within};
use chatter_fakes::avito::{BuyerMessage, Credentials, Failure};
use chatter_testkit::{Session, TestApp};

/// Signs up a company and connects a fresh Avito account; returns the session, the
/// credentials and the source id.
pub(crate) async fn company_with_avito(app: &TestApp) -> (Session, Credentials, String) {
    let s = Session::sign_up(app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let creds = app.avito.add_account("Рога и Копыта");
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
    let path = location(&r);
    let id = path.rsplit('/').next().expect("id").to_string();
    (s, creds, id)
}

fn sent_texts(app: &TestApp, client_id: &str) -> Vec<String> {
    app.avito
        .sent(client_id)
        .into_iter()
        .map(|m| m.text)
        .collect()
}

fn sofa(text: &str) -> BuyerMessage {
    BuyerMessage {
        item_title: "Диван угловой".into(),
        ..BuyerMessage::text(48_112_907, "Николай", 3_402_118_775, text)
    }
}

#[tokio::test]
async fn wrong_avito_credentials_are_refused_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let creds = app.avito.add_account("Рога и Копыта");
    let before = count(&app, "SELECT count(*) FROM sources").await;
    for (id, secret, field) in [
        (
            creds.client_id.as_str(),
            "wrong-secret",
            "avito_client_secret",
        ),
        ("", creds.client_secret.as_str(), "avito_client_id"),
        (creds.client_id.as_str(), "", "avito_client_secret"),
    ] {
        let r = s
            .post_from(
                "/app/sources/new",
                "/app/sources",
                &[
                    ("kind", "5"),
                    ("avito_client_id", id),
                    ("avito_client_secret", secret),
                ],
            )
            .await;
        assert_eq!(r.status(), 422, "refused: {id} / {secret}");
        let page = r.text().await.expect("body");
        assert!(
            page.contains(&format!("data-field=\"{field}\"")),
            "{field} is marked: {page}"
        );
        assert!(
            secret.is_empty() || !page.contains(secret),
            "the secret is not echoed"
        );
    }
    assert_eq!(count(&app, "SELECT count(*) FROM sources").await, before);
}

#[tokio::test]
async fn an_avito_buyer_is_polled_and_answers_survive_an_outage_in_order() {
    let app = TestApp::new().await;
    let (s, creds, _) = company_with_avito(&app).await;
    app.avito
        .customer_writes(&creds.client_id, sofa("Здравствуйте, диван ещё продаётся?"));
    let conv = conversation_with(&s, "диван ещё продаётся?").await;
    let page = thread_shows(&s, &conv, "диван ещё продаётся?").await;
    assert!(
        page.contains("Диван угловой"),
        "the chat is titled by the item: {page}"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM contacts WHERE name = 'Николай'").await,
        1,
        "the buyer is named"
    );
    within(10, "the poll cursor is stored", || async {
        count(
            &app,
            "SELECT count(*) FROM sources WHERE cursor IS NOT NULL",
        )
        .await
            == 1
    })
    .await;

    app.avito.fail_next(
        &creds.client_id,
        Failure::Status {
            status: 503,
            message: "Service Unavailable".into(),
        },
        3,
    );
    for t in [
        "Да, продаётся",
        "Можно посмотреть в субботу",
        "Адрес пришлю",
    ] {
        reply(&s, &conv, t).await;
    }
    within(60, "all replies arrive", || async {
        sent_texts(&app, &creds.client_id).len() >= 3
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        sent_texts(&app, &creds.client_id),
        [
            "Да, продаётся",
            "Можно посмотреть в субботу",
            "Адрес пришлю"
        ]
    );
    within(20, "all three show as sent", || async {
        s.html(&format!("/app/inbox/{conv}"))
            .await
            .matches("data-status=\"sent\"")
            .count()
            == 3
    })
    .await;
    // Our own answers are not read back as the buyer's; a new message comes once.
    app.avito
        .customer_writes(&creds.client_id, sofa("Договорились"));
    thread_shows(&s, &conv, "Договорились").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages WHERE direction = 'in'").await,
        2
    );
}

#[tokio::test]
async fn avito_webhooks_need_the_path_token_and_store_each_message_once() {
    let app = TestApp::builder().with_webhooks().start().await;
    let (s, creds, source_id) = company_with_avito(&app).await;
    within(20, "the webhook is subscribed", || async {
        !app.avito.webhooks(&creds.client_id).is_empty()
    })
    .await;
    let hook = app.avito.webhooks(&creds.client_id).remove(0);
    let prefix = format!("{}/hooks/avito/{source_id}/", app.url);
    assert!(hook.starts_with(&prefix), "{hook}");
    let token = hook[prefix.len()..].to_string();
    assert!(token.len() >= 32, "an unguessable token");
    app.avito
        .customer_writes(&creds.client_id, sofa("Пишу через вебхук"));
    let conv = conversation_with(&s, "Пишу через вебхук").await;
    // The delivery names no buyer: the name comes from the chat (`users[]`).
    assert_eq!(
        count(&app, "SELECT count(*) FROM contacts WHERE name = 'Николай'").await,
        1,
        "the buyer is named from the chat"
    );
    reply(&s, &conv, "Ответ покупателю").await;
    within(20, "Avito got the answer", || async {
        sent_texts(&app, &creds.client_id) == ["Ответ покупателю"]
    })
    .await;

    let http = reqwest::Client::new();
    let payload = serde_json::json!({"id": "hook-1", "version": "v3.0.0", "timestamp": 1767225600,
        "payload": {"type": "message", "value": {"id": "replayed-1", "chat_id": "u2i-replayed",
            "user_id": creds.user_id, "author_id": 141906442, "created": 1767225600,
            "type": "text", "chat_type": "u2i", "content": {"text": "Повтор"}}}});
    let before = count(&app, "SELECT count(*) FROM messages").await;
    let forged = app.at(&format!("/hooks/avito/{source_id}/{}", "0".repeat(64)));
    let r = http
        .post(&forged)
        .json(&payload)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    let url = app.at(&format!("/hooks/avito/{source_id}/{token}"));
    let r = http
        .post(&url)
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(count(&app, "SELECT count(*) FROM messages").await, before);
    for _ in 0..3 {
        let r = http.post(&url).json(&payload).send().await.expect("post");
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages").await,
        before + 1,
        "a replayed delivery is stored once"
    );
}
