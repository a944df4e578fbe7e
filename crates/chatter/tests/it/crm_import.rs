//! Connecting amoCRM sends what is already there (issue 15, item 11): the customers who wrote
//! before amoCRM was connected get their deals and their whole history in amoCRM's chat on
//! request, for a chosen period, with the progress shown; closed conversations, older ones and
//! those amoCRM already has are not sent; a second request sends nothing twice.

use crate::crm::consent;
use crate::messages::{company_with_bot, count, eventually, location};
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Session, TestApp};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{json, Value};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Moves a conversation's last message `days` days back, as if its customer wrote then.
async fn written_days_ago(app: &TestApp, conversation: &str, days: i64) {
    let id: uuid::Uuid = conversation.parse().expect("a conversation id");
    let backend = app.db.db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Postgres => {
            "UPDATE conversations SET last_message_at = last_message_at - $1 WHERE id = $2"
        }
        _ => "UPDATE conversations SET last_message_at = last_message_at - ? WHERE id = ?",
    };
    let r = app
        .db
        .db
        .execute(Statement::from_sql_and_values(
            backend,
            sql,
            [(days * DAY_MS).into(), id.into()],
        ))
        .await
        .expect("update");
    assert_eq!(r.rows_affected(), 1);
}

/// The inbox row of the conversation whose preview holds `text`.
async fn conversation_with(s: &Session, text: &str) -> String {
    let inbox = s.html("/app/inbox?status=all").await;
    inbox
        .split("<li id=\"conv-")
        .skip(1)
        .find(|row| row.contains(text))
        .and_then(|row| row.split('"').next())
        .unwrap_or_else(|| panic!("a conversation with «{text}» in {inbox}"))
        .to_string()
}

fn texts_in_chats(app: &TestApp, account: chatter_fakes::AccountId) -> Vec<String> {
    app.amo
        .chat_messages(account)
        .iter()
        .filter_map(|m| m["message"]["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn conversations_from_before_amocrm_are_sent_with_their_history_on_request() {
    let app = TestApp::new().await;
    let (s, token, _source) = company_with_bot(&app).await;
    let say = |id: i64, name: &str, text: &str| {
        app.telegram
            .customer_writes(&token, CustomerMessage::text(id, name, text));
    };
    say(6001, "Ирина", "Здравствуйте, есть доставка в Тверь?");
    say(6002, "Олег", "Сколько стоит монтаж?");
    say(6003, "Пётр", "Уже не нужно, спасибо");
    say(6004, "Давний клиент", "Писал в прошлом месяце");
    eventually("four conversations in the inbox", || async {
        count(&app, "SELECT count(*) FROM conversations").await == 4
    })
    .await;
    // A manager answered Ирина before amoCRM existed; Пётр's conversation was closed.
    let irina = conversation_with(&s, "Тверь").await;
    let r = s
        .post_from(
            &format!("/app/inbox/{irina}"),
            &format!("/app/inbox/{irina}/reply"),
            &[("text", "Да, доставим за два дня")],
        )
        .await;
    assert_eq!(r.status(), 303);
    eventually("the answer reached the customer", || async {
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'out' AND status IN ('sent', 'delivered', 'read')",
        )
        .await
            == 1
    })
    .await;
    say(6001, "Ирина", "Отлично, тогда оформляю");
    eventually("Ирина's second message", || async {
        count(&app, "SELECT count(*) FROM messages").await == 6
    })
    .await;
    let petr = conversation_with(&s, "Уже не нужно").await;
    let r = s
        .post_from(
            &format!("/app/inbox/{petr}"),
            &format!("/app/inbox/{petr}/close"),
            &[],
        )
        .await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM conversations WHERE status = 'closed'"
        )
        .await,
        1
    );
    // The old customer wrote 20 days ago.
    let old = conversation_with(&s, "прошлом месяце").await;
    written_days_ago(&app, &old, 20).await;

    // amoCRM connected: nothing is sent by itself, and the page offers the two open
    // conversations of the last 14 days with their four messages.
    let account = app.amo.create_account("horns", "Рога и Копыта CRM");
    let callback = consent(&app, &s, account).await;
    let r = s.get(&callback).await;
    assert_eq!(location(&r), "/app/crm?ok=crm_connected");
    let page = s.html("/app/crm?ok=crm_connected").await;
    let offer = &page[page.find("id=\"crm-import\"").expect("the offer")..];
    assert!(offer.contains("name=\"days\" value=\"14\""), "{offer}");
    assert!(
        offer.contains("id=\"crm-import-conversations\">2<"),
        "{offer}"
    );
    assert!(offer.contains("id=\"crm-import-messages\">4<"), "{offer}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(app.amo.leads(account).is_empty());

    // Bad periods are refused with the field named; nothing is queued.
    for bad in ["0", "91", "две недели", ""] {
        let r = s
            .post_from("/app/crm", "/app/crm/import", &[("days", bad)])
            .await;
        assert_eq!(r.status(), 422, "days={bad}");
        let body = r.text().await.expect("body");
        assert!(body.contains("от 1 до 90"), "days={bad}: {body}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM crm_imports").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM crm_outbox").await, 0);

    let r = s
        .post_from("/app/crm", "/app/crm/import", &[("days", "14")])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/app/crm?ok=crm_import_started#crm-import");
    eventually("two deals in amoCRM", || async {
        app.amo.leads(account).len() == 2
    })
    .await;
    eventually(
        "the whole history is in amoCRM's chats, in order",
        || async {
            let t = texts_in_chats(&app, account);
            let at = |x: &str| t.iter().position(|m| m == x);
            matches!(
                (
                    at("Здравствуйте, есть доставка в Тверь?"),
                    at("Да, доставим за два дня"),
                    at("Отлично, тогда оформляю"),
                    at("Сколько стоит монтаж?"),
                ),
                (Some(a), Some(b), Some(c), Some(_)) if a < b && b < c
            )
        },
    )
    .await;
    let t = texts_in_chats(&app, account);
    assert!(!t.iter().any(|m| m == "Уже не нужно, спасибо"), "{t:?}");
    assert!(!t.iter().any(|m| m == "Писал в прошлом месяце"), "{t:?}");
    let answer = app
        .amo
        .chat_messages(account)
        .into_iter()
        .find(|m| m["message"]["text"] == "Да, доставим за два дня")
        .expect("the manager's answer");
    assert_eq!(answer["direction"], "outgoing", "{answer}");
    eventually("the page shows the import done", || async {
        let page = s.html("/app/crm").await;
        page.contains("id=\"crm-import-percent\">100%")
    })
    .await;
    let page = s.html("/app/crm").await;
    assert!(
        page.contains("id=\"crm-import-sent\">4<"),
        "{}",
        &page[page.find("crm-import").unwrap_or(0)..]
    );

    // The API: the older customer is found with a longer period and sent; a second request
    // finds nothing and says so.
    let key = crate::api::create_key(&s, "import").await;
    let api = app.client();
    let get = |path: &str| {
        api.get(app.at(path))
            .header("authorization", format!("Bearer {key}"))
            .send()
    };
    let r = get("/api/v1/crm/import?days=30").await.expect("GET");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["preview"]["conversations"], 1, "{v}");
    assert_eq!(v["preview"]["messages"], 1, "{v}");
    assert_eq!(v["latest"]["sent"], 4, "{v}");
    assert_eq!(v["latest"]["pending"], 0, "{v}");
    let post = |body: Value| {
        api.post(app.at("/api/v1/crm/import"))
            .header("authorization", format!("Bearer {key}"))
            .json(&body)
            .send()
    };
    let r = post(json!({ "days": 365 })).await.expect("POST");
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["fields"][0]["field"], "days", "{v}");
    assert_eq!(v["fields"][0]["code"], "crm.import.days_range", "{v}");
    let r = post(json!({ "days": 30 })).await.expect("POST");
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["conversations"], 1, "{v}");
    assert_eq!(v["messages"], 1, "{v}");
    eventually("the third deal", || async {
        app.amo.leads(account).len() == 3
    })
    .await;
    let r = post(json!({ "days": 30 })).await.expect("POST");
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["fields"][0]["code"], "crm.import.nothing", "{v}");

    // A customer of an imported conversation writes again: the same deal.
    say(6002, "Олег", "И ещё вопрос про гарантию");
    eventually("the new message is in the chat", || async {
        texts_in_chats(&app, account)
            .iter()
            .any(|m| m == "И ещё вопрос про гарантию")
    })
    .await;
    assert_eq!(app.amo.leads(account).len(), 3);
    assert_eq!(count(&app, "SELECT count(*) FROM crm_imports").await, 2);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'crm.import'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn without_amocrm_there_is_nothing_to_import() {
    let app = TestApp::new().await;
    let (s, _token, _source) = company_with_bot(&app).await;
    let key = crate::api::create_key(&s, "import").await;
    let r = app
        .client()
        .post(app.at("/api/v1/crm/import"))
        .header("authorization", format!("Bearer {key}"))
        .json(&json!({ "days": 14 }))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 404);
    let r = s
        .post_from("/app/crm", "/app/crm/import", &[("days", "14")])
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(count(&app, "SELECT count(*) FROM crm_imports").await, 0);
}
