//! Internal notes (issue 11, "Then" item 3): written in the thread and through the API, with
//! `@mentions` that notify the mentioned teammate; a note of only spaces is refused and stores
//! nothing; a note never reaches the customer — not by the send job, not by the API source's
//! outgoing webhooks, not into amoCRM's chat — and reaches amoCRM as one note on the deal,
//! through a 5xx.

use crate::api::create_key;
use crate::api_source::{company_with_api_source, message_body, now_secs, post_signed};
use crate::crm_sync::connected;
use crate::messages::{company_with_bot, count, eventually, location, PW};
use crate::team::{join_new, user_id};
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Session, TestApp};
use serde_json::{json, Value};

/// The first conversation's id as the inbox lists it.
pub(crate) async fn first_conversation(s: &Session) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let inbox = s.html("/app/inbox").await;
        if let Some(id) = inbox
            .split("<li id=\"conv-")
            .nth(1)
            .and_then(|x| x.split('"').next())
        {
            return id.to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no conversation in the inbox"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn api_get(app: &TestApp, key: &str, path: &str) -> (u16, Value) {
    let r = app
        .client()
        .get(app.at(path))
        .bearer_auth(key)
        .send()
        .await
        .expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn api_post(app: &TestApp, key: &str, path: &str, body: Value) -> (u16, Value) {
    let r = app
        .client()
        .post(app.at(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn notes_through_the_api_mention_teammates_refuse_blank_text_and_stay_in_their_company() {
    let app = TestApp::new().await;
    let (anna, token, _) = company_with_bot(&app).await;
    let boris = join_new(&app, &anna, "boris@example.ru", "Борис", "manager").await;
    let boris_id = user_id(&app, "boris@example.ru").await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5001, "Иван", "Нужна доставка в Казань"),
    );
    let conv = first_conversation(&anna).await;
    let key = create_key(&anna, "CRM-робот").await;
    let notes = format!("/api/v1/conversations/{conv}/notes");

    // Only spaces: a clear refusal naming the field, nothing stored, nobody notified.
    let (status, body) = api_post(&app, &key, &notes, json!({"text": "   \n  "})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "text", "{body}");
    assert_eq!(body["fields"][0]["code"], "note_empty", "{body}");
    assert_eq!(count(&app, "SELECT count(*) FROM notes").await, 0);

    // A mention by name in the text and one of a stranger's id: only the teammate counts.
    let stranger = uuid::Uuid::now_v7();
    let (status, note) = api_post(
        &app,
        &key,
        &notes,
        json!({"text": "@Борис перезвони после обеда", "mentions": [stranger]}),
    )
    .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(note["mentions"], json!([boris_id]), "{note}");
    assert_eq!(note["author_id"], Value::Null);
    // Written for a member: the author is that member.
    let anna_id = user_id(&app, "anna@example.ru").await;
    let (status, second) = api_post(
        &app,
        &key,
        &notes,
        json!({"text": "Клиент постоянный", "author_id": anna_id}),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["author_name"], "Анна");
    // The author may not be someone outside the company.
    let (status, body) = api_post(
        &app,
        &key,
        &notes,
        json!({"text": "Чужой автор", "author_id": stranger}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "author_id", "{body}");

    // Listed oldest first, as a bare list and in pages.
    let (status, all) = api_get(&app, &key, &notes).await;
    assert_eq!(status, 200);
    let texts: Vec<&str> = all
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|n| n["text"].as_str())
        .collect();
    assert_eq!(texts, ["@Борис перезвони после обеда", "Клиент постоянный"]);
    let (_, page1) = api_get(&app, &key, &format!("{notes}?cursor=&limit=1")).await;
    assert_eq!(page1["items"].as_array().map(Vec::len), Some(1));
    let next = page1["next_cursor"].as_str().expect("a next page");
    let (_, page2) = api_get(&app, &key, &format!("{notes}?cursor={next}&limit=1")).await;
    assert_eq!(page2["items"][0]["text"], "Клиент постоянный");
    assert_eq!(page2["next_cursor"], Value::Null);

    // The thread shows the notes to the team, marked as notes.
    let thread = boris.html(&format!("/app/inbox/{conv}")).await;
    assert!(thread.contains("class=\"msg note\""), "{thread}");
    assert!(thread.contains("перезвони после обеда"));

    // The customer got none of it.
    assert!(
        app.telegram.sent(&token).iter().all(|m| !m
            .text
            .as_deref()
            .unwrap_or("")
            .contains("перезвони")),
        "a note never goes to the customer"
    );

    // Another company's key: the conversation does not exist for it.
    let other = Session::sign_up(&app, "Лютик", "Вера", "vera@lutik.test", PW).await;
    let other_key = create_key(&other, "робот").await;
    let (status, _) = api_get(&app, &other_key, &notes).await;
    assert_eq!(status, 404);
    let (status, _) = api_post(&app, &other_key, &notes, json!({"text": "чужая заметка"})).await;
    assert_eq!(status, 404);
    assert_eq!(count(&app, "SELECT count(*) FROM notes").await, 2);
}

#[tokio::test]
async fn a_blank_note_in_the_inbox_is_shown_again_with_the_reason_and_stores_nothing() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    app.telegram
        .customer_writes(&token, CustomerMessage::text(5002, "Ольга", "Здравствуйте"));
    let conv = first_conversation(&s).await;
    let page = format!("/app/inbox/{conv}");
    let r = s
        .post_from(&page, &format!("{page}/notes"), &[("text", "    ")])
        .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.expect("body");
    assert!(html.contains("id=\"note-refused\""), "{html}");
    assert!(html.contains("Заметка пустая"), "{html}");
    assert!(
        !html.contains("id=\"note-pane\" class=\"note-pane\" hidden"),
        "the note tab stays open"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM notes").await, 0);
    let r = s
        .post_from(
            &page,
            &format!("{page}/notes"),
            &[("text", "Проверить оплату")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), format!("{page}?mode=note"));
    assert!(s.html(&page).await.contains("Проверить оплату"));
}

#[tokio::test]
async fn a_note_reaches_amocrm_once_as_a_note_on_the_deal_through_a_5xx_and_never_its_chat() {
    let app = TestApp::new().await;
    let (s, token, _, account) = connected(&app).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5003, "Пётр", "Сколько стоит монтаж?"),
    );
    eventually("the deal is in amoCRM", || async {
        !app.amo.leads(account).is_empty()
    })
    .await;
    let deal = app.amo.leads(account)[0]["id"].as_i64().expect("deal id");
    let conv = first_conversation(&s).await;
    app.amo.fail_next("/api/v4/leads/notes", 502, 1);
    let page = format!("/app/inbox/{conv}");
    let r = s
        .post_from(
            &page,
            &format!("{page}/notes"),
            &[("text", "Монтаж считаем после замера")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let ours = |n: &Value| {
        n["params"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Монтаж считаем после замера"))
    };
    eventually("the note is on the deal", || async {
        app.amo.notes(account).iter().any(ours)
    })
    .await;
    eventually("nothing left in the CRM outbox", || async {
        count(&app, "SELECT count(*) FROM crm_outbox").await == 0
    })
    .await;
    let notes: Vec<Value> = app.amo.notes(account).into_iter().filter(ours).collect();
    assert_eq!(
        notes.len(),
        1,
        "retried after the 502, stored once: {notes:?}"
    );
    assert_eq!(notes[0]["entity_id"].as_i64(), Some(deal));
    assert_eq!(notes[0]["note_type"], "common");
    assert_eq!(
        notes[0]["params"]["text"], "📝 Анна: Монтаж считаем после замера",
        "prefixed with its author's name"
    );
    let refused = app
        .amo
        .account_requests(account)
        .iter()
        .filter(|r| r.line == "POST /api/v4/leads/notes")
        .count();
    assert!(refused >= 2, "the 502 was answered and the note sent again");
    // amoCRM's chat (the customer's side there) never saw it, nor did the customer.
    assert!(
        !app.amo
            .chat_messages(account)
            .iter()
            .any(|m| m.to_string().contains("Монтаж считаем")),
        "a note is not a chat message"
    );
    assert!(app.telegram.sent(&token).iter().all(|m| !m
        .text
        .as_deref()
        .unwrap_or("")
        .contains("Монтаж")));
}

#[tokio::test]
async fn a_note_is_never_an_outgoing_webhook_of_the_api_source() {
    let app = TestApp::new().await;
    let (s, id, secret) = company_with_api_source(&app).await;
    let site = chatter_fakes::website::FakeWebsite::start()
        .await
        .expect("the website starts");
    site.set_secret(&secret);
    let page = format!("/app/api-sources/{id}");
    let r = s
        .post_from(
            &page,
            &format!("{page}/webhook"),
            &[("webhook_url", &site.webhook_url())],
        )
        .await;
    assert_eq!(r.status(), 303);
    let http = reqwest::Client::new();
    let body = message_body("m-1", "client-3", "Есть доставка?");
    let r = post_signed(&http, &app, &id, &secret, now_secs(&app), &body, None).await;
    assert_eq!(r.status(), 200);
    let stored: Value = r.json().await.expect("JSON");
    let conv = stored["conversation_id"].as_str().expect("id").to_string();
    let thread = format!("/app/inbox/{conv}");
    let r = s
        .post_from(
            &thread,
            &format!("{thread}/notes"),
            &[("text", "Секрет: скидка только постоянным")],
        )
        .await;
    assert_eq!(r.status(), 303);
    // A reply after the note: once the site has it, every event before it was dispatched.
    let r = s
        .post_from(
            &thread,
            &format!("{thread}/reply"),
            &[("text", "Да, доставляем")],
        )
        .await;
    assert_eq!(r.status(), 303);
    eventually("the reply reaches the site", || async {
        site.received()
            .iter()
            .any(|g| g.text() == Some("Да, доставляем"))
    })
    .await;
    assert!(
        site.received()
            .iter()
            .all(|g| !g.body.to_string().contains("Секрет")),
        "no webhook carries the note: {:?}",
        site.received()
    );
}
