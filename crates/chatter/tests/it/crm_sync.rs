//! Conversations into amoCRM (issue 4, items 3, 5, 6, 7) against the amoCRM and Telegram fakes:
//! a customer writes → a contact and a deal appear, routed by rules, with the chat linked; a
//! manager answers inside amoCRM → the customer receives it and amoCRM hears it was delivered;
//! bursts go out in `leads/complex` batches under 7 rps; 5xx, 429 and revoked tokens lose and
//! duplicate nothing.

use crate::crm::consent;
use crate::messages::{company_with_bot, count, eventually, location, PW};
use chatter_fakes::{AccountId, CustomerMessage};
use chatter_testkit::{Session, TestApp};
use serde_json::Value;

/// A company with a bot and amoCRM connected; returns the session, bot token, source id and the
/// fake's account.
pub(crate) async fn connected(app: &TestApp) -> (Session, String, String, AccountId) {
    let (s, token, source) = company_with_bot(app).await;
    let account = app.amo.create_account("horns", "Рога и Копыта CRM");
    let callback = consent(app, &s, account).await;
    let r = s.get(&callback).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(location(&r), "/app/crm?ok=crm_connected");
    (s, token, source, account)
}

fn tags(lead: &Value) -> Vec<String> {
    lead["_embedded"]["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|x| x["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn leads_eventually(app: &TestApp, account: AccountId, n: usize) -> Vec<Value> {
    eventually(&format!("{n} deals in amoCRM"), || async {
        app.amo.leads(account).len() >= n
    })
    .await;
    app.amo.leads(account)
}

#[tokio::test]
async fn a_customer_becomes_a_contact_and_a_deal_and_the_manager_answers_from_amocrm() {
    let app = TestApp::new().await;
    let (s, token, _source, account) = connected(&app).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5001, "Иван", "Здравствуйте, сколько стоит доставка?"),
    );
    let leads = leads_eventually(&app, account, 1).await;
    let lead = &leads[0];
    assert_eq!(lead["name"], "Telegram: Иван", "{lead}");
    let t = tags(lead);
    assert!(t.contains(&"telegram_bot".to_string()), "{t:?}");
    assert!(t.contains(&"@horns_bot".to_string()), "{t:?}");
    assert_eq!(app.amo.contacts(account).len(), 1);
    // The message is in amoCRM's chat, the chat is on the contact's card.
    eventually("the message is in amoCRM's chat", || async {
        app.amo
            .chat_messages(account)
            .iter()
            .any(|m| m["message"]["text"] == "Здравствуйте, сколько стоит доставка?")
    })
    .await;
    let chats = app.amo.chats(account);
    assert_eq!(chats.len(), 1);
    let contact_id = app.amo.contacts(account)[0]["id"].clone();
    eventually("the chat is linked to the contact", || async {
        app.amo.chats(account)[0]["contact_id"] == contact_id
    })
    .await;
    // Every mapping is stored.
    assert_eq!(count(&app, "SELECT count(*) FROM crm_contacts").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM crm_conversations WHERE deal_id IS NOT NULL AND chat_ref IS NOT NULL"
        )
        .await,
        1
    );
    // Recorded just after amoCRM accepts the message.
    eventually("the chat message is mapped", || async {
        count(
            &app,
            "SELECT count(*) FROM crm_messages WHERE kind = 'chat'",
        )
        .await
            == 1
    })
    .await;

    // A manager answers inside amoCRM: the customer gets it, amoCRM hears it was delivered.
    let chat_id = chats[0]["id"].as_str().expect("chat id").to_string();
    let status = app
        .amo
        .manager_replies(account, &chat_id, "Доставка 300 ₽, завтра привезём")
        .await
        .expect("hook delivered");
    assert_eq!(status, 200);
    eventually("the customer gets the manager's answer", || async {
        app.telegram
            .sent(&token)
            .iter()
            .any(|m| m.text.as_deref() == Some("Доставка 300 ₽, завтра привезём"))
    })
    .await;
    eventually("amoCRM hears the answer was delivered", || async {
        app.amo
            .chat_messages(account)
            .iter()
            .any(|m| m["direction"] == "outgoing" && m["delivery_status"] == 1)
    })
    .await;
    // The answer shows in Chatter's inbox too, and is not mirrored back into amoCRM.
    let conv = s.html("/app/inbox").await;
    assert!(conv.contains("Доставка 300"), "{conv}");
    assert_eq!(
        app.amo
            .chat_messages(account)
            .iter()
            .filter(|m| m["direction"] == "outgoing")
            .count(),
        1
    );

    // The customer writes again: same deal, one more chat message.
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5001, "Иван", "Спасибо, беру!"),
    );
    eventually("the second message is in the chat", || async {
        app.amo
            .chat_messages(account)
            .iter()
            .any(|m| m["message"]["text"] == "Спасибо, беру!")
    })
    .await;
    assert_eq!(app.amo.leads(account).len(), 1);
    assert_eq!(app.amo.contacts(account).len(), 1);
}

#[tokio::test]
async fn the_amojo_hook_refuses_a_bad_signature_and_a_malformed_body() {
    let app = TestApp::new().await;
    let (_s, token, _source, account) = connected(&app).await;
    app.telegram
        .customer_writes(&token, CustomerMessage::text(5002, "Олег", "Добрый день"));
    leads_eventually(&app, account, 1).await;
    let scope = format!("{}_{}", TestApp::AMO_CHANNEL_ID, app.amo.amojo_id(account));
    let http = reqwest::Client::new();
    let body = serde_json::json!({"account_id": app.amo.amojo_id(account), "time": 1,
        "message": {"conversation": {"id": "x"}, "message": {"id": "m1", "type": "text", "text": "подделка"}}})
    .to_string();
    let r = http
        .post(format!("{}/hooks/amojo/{scope}", app.url))
        .header("X-Signature", "0000000000000000000000000000000000000000")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    // Correctly signed, but not a hook.
    let junk = b"{not json".to_vec();
    let sig = chatter_crm::amocrm::chats::hmac_sha1_hex(TestApp::AMO_CHANNEL_SECRET, &junk);
    let r = http
        .post(format!("{}/hooks/amojo/{scope}", app.url))
        .header("X-Signature", sig)
        .body(junk)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'out'"
        )
        .await,
        0
    );
    assert!(app.telegram.sent(&token).is_empty());
}

#[tokio::test]
async fn two_messages_of_a_new_customer_at_once_make_one_contact_and_one_deal() {
    let app = TestApp::new().await;
    let (_s, token, _source, account) = connected(&app).await;
    for text in ["Алло", "Есть кто?", "Хочу заказать"] {
        app.telegram
            .customer_writes(&token, CustomerMessage::text(5003, "Мария", text));
    }
    eventually("three messages in the chat", || async {
        app.amo.chat_messages(account).len() >= 3
    })
    .await;
    assert_eq!(app.amo.leads(account).len(), 1);
    assert_eq!(app.amo.contacts(account).len(), 1);
    // In the order the customer wrote them.
    let texts: Vec<String> = app
        .amo
        .chat_messages(account)
        .iter()
        .filter_map(|m| m["message"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(texts, vec!["Алло", "Есть кто?", "Хочу заказать"]);
}

#[tokio::test]
async fn a_burst_goes_out_in_batches_under_the_limit_through_5xx_and_429_without_duplicates() {
    let app = TestApp::new().await;
    let (_s, token, _source, account) = connected(&app).await;
    app.amo.fail_next("/api/v4/leads/complex", 502, 2);
    app.amo.fail_next("/api/v4/leads/complex", 429, 1);
    for i in 0..120 {
        app.telegram.customer_writes(
            &token,
            CustomerMessage::text(7000 + i, &format!("Клиент {i}"), "Нужна консультация"),
        );
    }
    leads_eventually(&app, account, 120).await;
    eventually("every message is in the chats", || async {
        app.amo.chat_messages(account).len() >= 120
    })
    .await;
    let leads = app.amo.leads(account);
    assert_eq!(leads.len(), 120, "no duplicates");
    let mut names: Vec<String> = leads
        .iter()
        .filter_map(|l| l["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 120, "one deal per customer");
    assert_eq!(app.amo.throttled(account), 0, "never over 7 requests/s");
    let complex = app
        .amo
        .account_requests(account)
        .iter()
        .filter(|r| r.line == "POST /api/v4/leads/complex")
        .count();
    // 120 deals at ≤ 50 a call is 3 calls (more when the burst arrives in pieces), plus the
    // 3 refused ones — far from one call per deal.
    assert!(complex <= 12, "{complex} leads/complex calls");
    eventually("nothing left behind in the outbox", || async {
        count(&app, "SELECT count(*) FROM crm_outbox").await == 0
    })
    .await;
}

#[tokio::test]
async fn a_revoked_token_holds_the_work_until_amocrm_is_connected_again() {
    let app = TestApp::new().await;
    let (s, token, _source, account) = connected(&app).await;
    app.amo.revoke_tokens(account);
    app.telegram
        .customer_writes(&token, CustomerMessage::text(5004, "Пётр", "Нужен счёт"));
    eventually("the integration is marked revoked", || async {
        count(
            &app,
            "SELECT count(*) FROM crm_integrations WHERE status = 'token_invalid'",
        )
        .await
            == 1
    })
    .await;
    assert!(app.amo.leads(account).is_empty());
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM crm_outbox WHERE status = 'pending'"
        )
        .await,
        1,
        "held, not dropped"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM jobs WHERE status = 'dead'").await,
        0
    );
    // Reconnect: the held message drains.
    let callback = consent(&app, &s, account).await;
    assert_eq!(s.get(&callback).await.status(), 303);
    let leads = leads_eventually(&app, account, 1).await;
    assert_eq!(leads.len(), 1);
}

#[tokio::test]
async fn without_a_chats_channel_messages_and_answers_become_notes() {
    let app = TestApp::builder().without_amo_chats().start().await;
    let (s, token, _source, account) = connected(&app).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5005, "Анна", "Есть размер M?"),
    );
    let leads = leads_eventually(&app, account, 1).await;
    let deal = leads[0]["id"].clone();
    eventually("the message is a note on the deal", || async {
        app.amo.notes(account).iter().any(|n| {
            n["entity_id"] == deal
                && n["params"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Есть размер M?"))
        })
    })
    .await;
    // An answer from Chatter's inbox is noted too.
    use sea_orm::EntityTrait;
    let conv = chatter_store::entity::conversation::Entity::find()
        .one(&app.db.db)
        .await
        .expect("query")
        .expect("a conversation")
        .id;
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/reply"),
            &[("text", "Да, есть")],
        )
        .await;
    assert!(r.status().is_redirection() || r.status().is_success());
    eventually("the answer is a note", || async {
        app.amo.notes(account).iter().any(|n| {
            n["params"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("Да, есть"))
        })
    })
    .await;
    assert!(app.amo.chat_messages(account).is_empty());
    let _ = PW;
}

#[tokio::test]
async fn a_routing_rule_places_the_deal_and_is_recorded_on_the_conversation() {
    let app = TestApp::new().await;
    let (_s, token, source, account) = connected(&app).await;
    let wholesale = app
        .amo
        .add_pipeline(account, "Опт", &["Новая заявка", "Счёт"]);
    let users = app.amo.users(account);
    let manager = users[1]["id"].as_i64().expect("user id");
    let rules = serde_json::json!([{
        "id": "r1", "name": "Оптовики", "enabled": true,
        "conditions": {"keywords": ["оптом"], "sources": [source]},
        "actions": {"pipeline_id": wholesale, "responsible": {"user": manager}, "tags": ["опт"]}
    }]);
    {
        use sea_orm::{ConnectionTrait, EntityTrait};
        let company = chatter_store::entity::source::Entity::find()
            .one(&app.db.db)
            .await
            .expect("query")
            .expect("a source")
            .company_id;
        app.db
            .db
            .execute(chatter_store::stmt(
                app.db.db.get_database_backend(),
                "INSERT INTO routing_rules (company_id, rules, updated_at) VALUES ($1, $2, 0)",
                vec![company.into(), rules.to_string().into()],
            ))
            .await
            .expect("rules stored");
    }
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5006, "Опт", "Хочу купить оптом 100 штук"),
    );
    app.telegram
        .customer_writes(&token, CustomerMessage::text(5007, "Розница", "Одну штуку"));
    let leads = leads_eventually(&app, account, 2).await;
    let opt = leads
        .iter()
        .find(|l| l["name"] == "Telegram: Опт")
        .expect("wholesale deal");
    assert_eq!(opt["pipeline_id"], wholesale);
    assert_eq!(opt["responsible_user_id"], manager);
    assert!(tags(opt).contains(&"опт".to_string()));
    let retail = leads
        .iter()
        .find(|l| l["name"] == "Telegram: Розница")
        .expect("retail deal");
    assert_ne!(retail["pipeline_id"], wholesale);
    // The mapping is committed just after amoCRM answers.
    eventually("the rule is recorded on the conversation", || async {
        count(
            &app,
            "SELECT count(*) FROM crm_conversations WHERE rule_name = 'Оптовики'",
        )
        .await
            == 1
    })
    .await;
}

#[tokio::test]
async fn whoever_answers_first_in_amocrm_becomes_responsible_and_bad_settings_are_refused() {
    let app = TestApp::new().await;
    let (s, token, _source, account) = connected(&app).await;
    // A stage from no pipeline is refused and nothing is stored.
    let r = s
        .post_from(
            "/app/crm/settings",
            "/app/crm/settings",
            &[("status_id", "999999"), ("responsible", "")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .unwrap_or_default()
        .contains("data-field=\"status_id\""));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM crm_settings WHERE scope = 'default'"
        )
        .await,
        0
    );
    let r = s
        .post_from(
            "/app/crm/settings",
            "/app/crm/settings",
            &[("responsible", "first"), ("tags", "первый ответ")],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5008, "Вера", "Кто мне ответит?"),
    );
    let leads = leads_eventually(&app, account, 1).await;
    assert!(tags(&leads[0]).contains(&"первый ответ".to_string()));
    eventually("the chat exists", || async {
        !app.amo.chats(account).is_empty()
    })
    .await;
    let chat = app.amo.chats(account)[0]["id"]
        .as_str()
        .expect("chat")
        .to_string();
    // The fake answers as its second user («Менеджер»).
    let manager = app.amo.users(account)[1]["id"].clone();
    assert_eq!(
        app.amo
            .manager_replies(account, &chat, "Я отвечу, Вера")
            .await
            .expect("hook"),
        200
    );
    eventually("the manager who answered is responsible", || async {
        app.amo.leads(account)[0]["responsible_user_id"] == manager
    })
    .await;
}
