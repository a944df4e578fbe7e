//! The amoCRM path's remaining gaps (issue 15, items 3, 6, 12) against the amoCRM and
//! messenger fakes: a `leads/complex` call whose answer is lost is retried without doubling a
//! deal; a failure a messenger reports after the send reaches amoCRM's chat; the deal's
//! responsible and the conversation's assignee stay one person.

use crate::crm_sync::connected;
use crate::messages::{count, eventually};
use chatter_fakes::CustomerMessage;
use serde_json::Value;
use std::collections::HashSet;

/// The conversation a deal's marker names (`"<conversation id> <call token>"`).
fn marked_conversation(lead: &Value, field: i64) -> Option<String> {
    lead["custom_fields_values"]
        .as_array()?
        .iter()
        .find(|f| f["field_id"].as_i64() == Some(field))?["values"][0]["value"]
        .as_str()?
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

#[tokio::test]
async fn a_batch_whose_answer_was_lost_is_retried_without_doubling_a_deal() {
    let app = chatter_testkit::TestApp::new().await;
    let (s, token, _source, account) = connected(&app).await;
    // The company keeps Chatter's marker in a deal field of its own.
    let field = app
        .amo
        .add_custom_field(account, "leads", "Chatter ID", "text", &[]);
    let r = s.post_from("/app/crm", "/app/crm/sync", &[]).await;
    assert_eq!(r.status(), 303);
    let r = s
        .post_from(
            "/app/crm/settings",
            "/app/crm/settings",
            &[("f_marker", field.to_string().as_str())],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    // amoCRM makes the deals of the first batch, and its answer never arrives.
    app.amo.lose_answer_next("/api/v4/leads/complex", 1);
    let customers = 6;
    for i in 0..customers {
        app.telegram.customer_writes(
            &token,
            CustomerMessage::text(8100 + i, &format!("Покупатель {i}"), "Нужна консультация"),
        );
    }
    eventually("every conversation has its deal", || async {
        count(
            &app,
            "SELECT count(*) FROM crm_conversations WHERE deal_id IS NOT NULL",
        )
        .await
            == customers
    })
    .await;
    eventually("nothing left behind in the outbox", || async {
        count(&app, "SELECT count(*) FROM crm_outbox").await == 0
    })
    .await;
    let requests = app.amo.account_requests(account);
    assert!(
        requests
            .iter()
            .any(|r| r.line == "POST /api/v4/leads/complex" && r.status == 504),
        "the answer was lost"
    );
    assert!(
        requests.iter().any(|r| r.line == "GET /api/v4/leads"),
        "the retry looked for the deals first"
    );
    let leads = app.amo.leads(account);
    assert_eq!(leads.len() as i64, customers, "one deal per conversation");
    let marked: HashSet<String> = leads
        .iter()
        .filter_map(|l| marked_conversation(l, field))
        .collect();
    assert_eq!(
        marked.len() as i64,
        customers,
        "each deal names its own conversation"
    );
    // Each conversation's recorded deal is the one amoCRM made in the lost call or after it.
    let ids: HashSet<i64> = leads.iter().filter_map(|l| l["id"].as_i64()).collect();
    let recorded = count(
        &app,
        &format!(
            "SELECT count(DISTINCT deal_id) FROM crm_conversations WHERE deal_id IN ({})",
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        ),
    )
    .await;
    assert_eq!(recorded, customers);
    assert_eq!(
        count(&app, "SELECT count(*) FROM crm_deal_attempts").await,
        0,
        "no call left unanswered"
    );
}

#[tokio::test]
async fn a_whatsapp_failure_reported_after_the_send_reaches_amocrm() {
    let app = chatter_testkit::TestApp::new().await;
    let (s, number, _source) = crate::whatsapp::company_with_whatsapp(&app).await;
    let account = app.amo.create_account("horns", "Рога и Копыта CRM");
    let callback = crate::crm::consent(&app, &s, account).await;
    assert_eq!(s.get(&callback).await.status(), 303);
    let pnid = number.phone_number_id.clone();
    let customer = "79161230001";
    app.whatsapp
        .customer_writes(&pnid, customer, "Ирина", "Когда будет готов заказ?");
    eventually("the customer's message is in amoCRM's chat", || async {
        !app.amo.chats(account).is_empty() && !app.amo.chat_messages(account).is_empty()
    })
    .await;
    let chat = app.amo.chats(account)[0]["id"]
        .as_str()
        .expect("chat id")
        .to_owned();
    // WhatsApp closed the window; Meta accepts the free text and reports the failure later.
    app.whatsapp.close_window(&pnid, customer);
    assert_eq!(
        app.amo
            .manager_replies(account, &chat, "Завтра к обеду")
            .await
            .expect("hook"),
        200
    );
    eventually("the inbox shows the late failure", || async {
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'failed'",
        )
        .await
            == 1
    })
    .await;
    eventually("amoCRM shows the failure next to the answer", || async {
        app.amo.chat_messages(account).iter().any(|m| {
            m["message"]["text"] == "Завтра к обеду"
                && m["delivery_status"] == -1
                && m["error"].as_str().is_some_and(|e| !e.is_empty())
        })
    })
    .await;
    eventually("nothing left behind in the outbox", || async {
        count(&app, "SELECT count(*) FROM crm_outbox").await == 0
    })
    .await;
}

/// The id a query returns.
async fn id(app: &chatter_testkit::TestApp, sql: &str) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    app.db
        .db
        .query_one(Statement::from_string(
            app.db.db.get_database_backend(),
            sql.to_string(),
        ))
        .await
        .expect("query")
        .expect("a row")
        .try_get_by_index::<uuid::Uuid>(0)
        .expect("an id")
        .to_string()
}

/// Connected, with the owner (anna@example.ru) known to amoCRM under the same e-mail and the
/// setting saved through the form; returns the session, bot token, account and Anna's amoCRM id.
async fn one_responsible(
    app: &chatter_testkit::TestApp,
    lead: &str,
) -> (
    chatter_testkit::Session,
    String,
    chatter_fakes::AccountId,
    i64,
) {
    let (s, token, _source, account) = connected(app).await;
    let anna = app.amo.add_user(account, "Анна", "anna@example.ru");
    let r = s.post_from("/app/crm", "/app/crm/sync", &[]).await;
    assert_eq!(r.status(), 303);
    // Something that is no choice is refused with the field named, and nothing changes.
    let r = s
        .post_from(
            "/app/crm/settings",
            "/app/crm/responsible",
            &[("lead", "both")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .unwrap_or_default()
        .contains("data-field=\"lead\""));
    let r = s
        .post_from(
            "/app/crm/settings",
            "/app/crm/responsible",
            &[("lead", lead)],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let page = s.html("/app/crm/settings").await;
    assert!(
        page.contains(&format!("<option value=\"{lead}\" selected>")),
        "the page shows the choice"
    );
    (s, token, account, anna)
}

#[tokio::test]
async fn an_assignment_in_chatter_makes_the_same_person_responsible_in_amocrm() {
    let app = chatter_testkit::TestApp::new().await;
    let (s, token, account, anna) = one_responsible(&app, "chatter").await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(8200, "Олег", "Хочу оформить заказ"),
    );
    eventually("the deal exists", || async {
        count(
            &app,
            "SELECT count(*) FROM crm_conversations WHERE deal_id IS NOT NULL",
        )
        .await
            == 1
    })
    .await;
    assert_ne!(
        app.amo.leads(account)[0]["responsible_user_id"],
        anna,
        "amoCRM's default first"
    );
    let conv = id(&app, "SELECT id FROM conversations").await;
    let me = id(&app, "SELECT id FROM users WHERE email = 'anna@example.ru'").await;
    let path = format!("/app/inbox/{conv}");
    let r = s
        .post_from(&path, &format!("{path}/assign"), &[("assignee", &me)])
        .await;
    assert_eq!(r.status(), 303);
    eventually("Anna is responsible for the deal in amoCRM", || async {
        app.amo.leads(account)[0]["responsible_user_id"] == anna
    })
    .await;
    eventually("nothing left behind in the outbox", || async {
        count(&app, "SELECT count(*) FROM crm_outbox").await == 0
    })
    .await;
}

#[tokio::test]
async fn a_new_responsible_in_amocrm_becomes_the_assignee_in_chatter() {
    let app = chatter_testkit::TestApp::new().await;
    let (s, token, account, anna) = one_responsible(&app, "amocrm").await;
    // The API says the same, and refuses what is not a choice.
    let key = crate::api::create_key(&s, "CRM").await;
    let http = reqwest::Client::new();
    let got: Value = http
        .get(app.at("/api/v1/crm/responsible-sync"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(got["lead"], "amocrm");
    let r = http
        .put(app.at("/api/v1/crm/responsible-sync"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"lead": "both"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), 422);
    let r = http
        .put(app.at("/api/v1/crm/responsible-sync"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"lead": "amocrm"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), 200);

    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(8300, "Пётр", "Нужен счёт на оплату"),
    );
    eventually("the deal exists", || async {
        count(
            &app,
            "SELECT count(*) FROM crm_conversations WHERE deal_id IS NOT NULL",
        )
        .await
            == 1
    })
    .await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM conversations WHERE assignee_id IS NOT NULL"
        )
        .await,
        0,
        "amoCRM's default responsible is nobody here"
    );
    let lead = app.amo.leads(account)[0]["id"].as_i64().expect("lead id");
    // A manager in amoCRM hands the deal to Anna; "Sync now" looks at once.
    assert!(app.amo.set_lead_responsible(account, lead, anna));
    let r = s.post_from("/app/crm", "/app/crm/sync", &[]).await;
    assert_eq!(r.status(), 303);
    eventually("Anna is the conversation's assignee", || async {
        count(
            &app,
            "SELECT count(*) FROM conversations c JOIN users u ON u.id = c.assignee_id \
             WHERE u.email = 'anna@example.ru'",
        )
        .await
            == 1
    })
    .await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'conversation.assign' AND actor = 'amoCRM'"
        )
        .await,
        1
    );
    // Nothing went back to amoCRM for it.
    assert_eq!(app.amo.leads(account)[0]["responsible_user_id"], anna);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM crm_outbox WHERE kind = 'responsible'"
        )
        .await,
        0
    );
}
