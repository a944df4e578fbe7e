//! The customer card and the contacts API (issue 11, "Then" 2 and 10) against the Telegram,
//! VK and amoCRM fakes: a person's card with identities, conversations and the amoCRM deal; a
//! change of name, phone and e-mail reaching the amoCRM contact through a 5xx; two people
//! writing from two messengers merged into one, whose later messages land on that person with
//! one amoCRM contact; and bad input (a person merged with themselves, another company's
//! contact, a wrong phone or e-mail) refused with nothing changed.

use crate::api::create_key;
use crate::crm_sync::connected;
use crate::messages::{count, eventually, location, PW};
use chatter_fakes::{CustomerMessage, VkCustomerMessage, VkGroup};
use chatter_testkit::{Session, TestApp};
use serde_json::{json, Value};

/// Connects a VK community to the signed-in company of `s`; returns it and the source id.
async fn add_community(app: &TestApp, s: &Session) -> (VkGroup, String) {
    let group = app.vk.create_group("Рога и Копыта ВК", "horns_vk");
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[
                ("kind", "3"),
                ("vk_token", &group.token),
                ("vk_group_id", &format!("club{}", group.id)),
                ("name", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let source = location(&r).rsplit('/').next().expect("id").to_string();
    // VK's long poll starts from the events after it connects, as the real one does.
    eventually("the community is polled", || async {
        app.vk.calls(group.id).iter().any(|c| c == "a_check")
    })
    .await;
    (group, source)
}

async fn call(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.client().request(method, app.at(path)).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, key: &str, path: &str) -> Value {
    let (status, body) = call(app, key, reqwest::Method::GET, path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// The contact id of the (only) conversation on `source`.
async fn contact_in(app: &TestApp, key: &str, source: &str) -> String {
    let convs = get(app, key, "/api/v1/conversations?status=all").await;
    convs
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["source_id"].as_str() == Some(source))
        .and_then(|c| c["contact"]["id"].as_str())
        .unwrap_or_else(|| panic!("a conversation on {source}: {convs}"))
        .to_string()
}

/// Every contact row as text, to compare before and after a refusal.
async fn contact_rows(app: &TestApp) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let rows = app
        .db
        .db
        .query_all(Statement::from_string(
            app.db.db.get_database_backend(),
            "SELECT id, merged_into, name, phone, email, edited_at FROM contacts ORDER BY id",
        ))
        .await
        .expect("contacts");
    rows.iter()
        .map(|r| {
            format!(
                "{:?} {:?} {:?} {:?} {:?} {:?}",
                r.try_get_by_index::<uuid::Uuid>(0).expect("id"),
                r.try_get_by_index::<Option<uuid::Uuid>>(1)
                    .expect("merged_into"),
                r.try_get_by_index::<String>(2).expect("name"),
                r.try_get_by_index::<Option<String>>(3).expect("phone"),
                r.try_get_by_index::<Option<String>>(4).expect("email"),
                r.try_get_by_index::<Option<i64>>(5).expect("edited_at"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn field_codes(body: &Value) -> Vec<String> {
    body["error"]["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|x| x["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_change_reaches_the_amocrm_contact_through_a_5xx_once_and_the_messenger_does_not_undo_it()
{
    let app = TestApp::new().await;
    let (s, token, source, account) = connected(&app).await;
    app.telegram
        .customer_writes(&token, CustomerMessage::text(5101, "Оля", "Здравствуйте"));
    eventually("the customer is an amoCRM contact", || async {
        app.amo.contacts(account).len() == 1
            && count(&app, "SELECT count(*) FROM crm_outbox").await == 0
    })
    .await;
    let key = create_key(&s, "card").await;
    let id = contact_in(&app, &key, &source).await;

    // Bad input: each field named, nothing changed, nothing queued.
    let before = contact_rows(&app).await;
    let (status, body) = call(
        &app,
        &key,
        reqwest::Method::PATCH,
        &format!("/api/v1/contacts/{id}"),
        Some(json!({"name": "  ", "phone": "12", "email": "не почта"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let mut fields = field_codes(&body);
    fields.sort();
    assert_eq!(fields, vec!["email", "name", "phone"], "{body}");
    assert_eq!(contact_rows(&app).await, before);
    assert_eq!(count(&app, "SELECT count(*) FROM crm_outbox").await, 0);
    // The same through the card's form: the page again, the message by the field.
    let page = format!("/app/contacts/{id}");
    let r = s
        .post_from(
            &page,
            &page,
            &[("name", "Ольга"), ("phone", "12"), ("email", "")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.expect("body");
    assert!(html.contains("data-field=\"phone\""), "{html}");
    assert!(
        html.contains("value=\"12\""),
        "what was typed is kept: {html}"
    );
    assert_eq!(contact_rows(&app).await, before);

    // amoCRM answers 502 first: the change is retried and applied once.
    app.amo.fail_next("/api/v4/contacts", 502, 1);
    let (status, body) = call(
        &app,
        &key,
        reqwest::Method::PATCH,
        &format!("/api/v1/contacts/{id}"),
        Some(json!({"name": "Ольга Смирнова", "phone": "8 (999) 123-45-67", "email": "Olga@Example.ru"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "Ольга Смирнова");
    assert_eq!(body["phone"], "+79991234567");
    assert_eq!(body["email"], "olga@example.ru");
    eventually(
        "amoCRM's contact has the new name, phone and e-mail",
        || async {
            let c = &app.amo.contacts(account)[0];
            let text = c.to_string();
            c["name"] == "Ольга Смирнова"
                && text.contains("+79991234567")
                && text.contains("olga@example.ru")
        },
    )
    .await;
    let patches = app
        .amo
        .requests()
        .iter()
        .filter(|(_, line)| line.starts_with("PATCH /api/v4/contacts/"))
        .count();
    assert_eq!(patches, 2, "refused once, then applied");
    let contact = app.amo.contacts(account)[0].to_string();
    assert_eq!(
        contact.matches("+79991234567").count(),
        1,
        "the phone once, not twice: {contact}"
    );
    assert_eq!(app.amo.contacts(account).len(), 1, "no new amoCRM contact");
    eventually("nothing left in the CRM outbox", || async {
        count(&app, "SELECT count(*) FROM crm_outbox").await == 0
    })
    .await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'contact.update'"
        )
        .await,
        1
    );

    // The customer writes again under their messenger name: the name the team set stays.
    app.telegram
        .customer_writes(&token, CustomerMessage::text(5101, "Оля", "Вы тут?"));
    eventually("the message is stored", || async {
        count(&app, "SELECT count(*) FROM messages WHERE text = 'Вы тут?'").await == 1
    })
    .await;
    let card = get(&app, &key, &format!("/api/v1/contacts/{id}")).await;
    assert_eq!(card["name"], "Ольга Смирнова", "{card}");
    app.stop().await;
}

#[tokio::test]
async fn two_messengers_of_one_customer_merge_into_one_person_with_one_amocrm_contact() {
    let app = TestApp::new().await;
    let (s, token, tg_source, account) = connected(&app).await;
    let (group, vk_source) = add_community(&app, &s).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5201, "Пётр", "Добрый день, нужен счёт"),
    );
    eventually("the Telegram customer is in amoCRM", || async {
        app.amo.contacts(account).len() == 1
    })
    .await;
    app.vk.customer_writes(
        group.id,
        VkCustomerMessage::text(612_000_201, "Это снова я, из ВК"),
    );
    eventually("both customers are in amoCRM, everything sent", || async {
        app.amo.contacts(account).len() == 2
            && app.amo.leads(account).len() == 2
            && count(&app, "SELECT count(*) FROM crm_outbox").await == 0
    })
    .await;
    let key = create_key(&s, "card").await;
    let tg = contact_in(&app, &key, &tg_source).await;
    let vk = contact_in(&app, &key, &vk_source).await;

    // The card through the API: identity, conversation, amoCRM contact and deal.
    let card = get(&app, &key, &format!("/api/v1/contacts/{tg}")).await;
    assert_eq!(
        card["identities"].as_array().map(Vec::len),
        Some(1),
        "{card}"
    );
    assert_eq!(card["identities"][0]["kind"], "telegram_bot", "{card}");
    assert_eq!(card["conversations"].as_array().map(Vec::len), Some(1));
    let deal = &card["conversations"][0]["deal"];
    assert!(deal["deal_id"].is_i64(), "{card}");
    assert!(
        deal["pipeline"].is_string() && deal["stage"].is_string(),
        "{card}"
    );
    let kept_remote = card["crm"]["contact_id"].as_i64().expect("amoCRM contact");
    // The list, with search by name.
    let list = get(&app, &key, "/api/v1/contacts?cursor=&limit=1").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert!(list["next_cursor"].is_string(), "{list}");
    let found = get(&app, &key, "/api/v1/contacts?q=%D0%BF%D1%91%D1%82%D1%80").await;
    assert_eq!(
        found.as_array().map(Vec::len),
        Some(1),
        "«пётр» finds «Пётр»: {found}"
    );

    // Bad input changes nothing: the same person, another company's contact, not a UUID.
    let other = Session::sign_up(&app, "Чужая фирма", "Борис", "boris@example.ru", PW).await;
    let other_bot = app.telegram.create_bot("other_bot", "Чужая фирма");
    let r = other
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[("kind", "1"), ("token", &other_bot), ("name", "")],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", location(&r));
    let foreign_source = location(&r).rsplit('/').next().expect("id").to_string();
    app.telegram
        .customer_writes(&other_bot, CustomerMessage::text(5299, "Чужой", "Привет"));
    let other_key = create_key(&other, "other").await;
    eventually("the other company's customer is stored", || async {
        count(&app, "SELECT count(*) FROM contacts").await == 3
    })
    .await;
    let foreign = contact_in(&app, &other_key, &foreign_source).await;
    let before = contact_rows(&app).await;
    let audits = count(&app, "SELECT count(*) FROM audit_log").await;
    let merge = |id: &str| format!("/api/v1/contacts/{id}/merge");
    let (status, body) = call(
        &app,
        &key,
        reqwest::Method::POST,
        &merge(&tg),
        Some(json!({"other_id": tg})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(field_codes(&body), vec!["other_id"]);
    for (id, other_id) in [(&tg, &foreign), (&foreign, &tg)] {
        let (status, body) = call(
            &app,
            &key,
            reqwest::Method::POST,
            &merge(id),
            Some(json!({"other_id": other_id})),
        )
        .await;
        assert_eq!(status, 404, "{body}");
    }
    let (status, _) = call(
        &app,
        &key,
        reqwest::Method::GET,
        &format!("/api/v1/contacts/{foreign}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "another company's contact is not there");
    let (status, body) = call(
        &app,
        &key,
        reqwest::Method::POST,
        &merge(&tg),
        Some(json!({"other_id": "не UUID"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(contact_rows(&app).await, before);
    assert_eq!(count(&app, "SELECT count(*) FROM audit_log").await, audits);

    // The merge: the one who wrote first is kept, with both identities and conversations.
    let (status, merged) = call(
        &app,
        &key,
        reqwest::Method::POST,
        &merge(&vk),
        Some(json!({"other_id": tg})),
    )
    .await;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(
        merged["id"].as_str(),
        Some(tg.as_str()),
        "the older is kept"
    );
    let kinds: Vec<&str> = merged["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .filter_map(|i| i["kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["telegram_bot", "vk_bot"], "{merged}");
    assert_eq!(merged["conversations"].as_array().map(Vec::len), Some(2));
    assert_eq!(merged["crm"]["contact_id"].as_i64(), Some(kept_remote));
    // Either id opens the same person; the list has one entry for them.
    let by_vk = get(&app, &key, &format!("/api/v1/contacts/{vk}")).await;
    assert_eq!(by_vk["id"].as_str(), Some(tg.as_str()));
    let list = get(&app, &key, "/api/v1/contacts").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'contact.merge'"
        )
        .await,
        1
    );
    // The VK conversation's deal is linked to the kept amoCRM contact.
    eventually("every deal of the person is on one amoCRM contact", || async {
        count(
            &app,
            &format!("SELECT count(*) FROM crm_conversations WHERE remote_contact_id = {kept_remote}"),
        )
        .await
            == 2
            && count(&app, "SELECT count(*) FROM crm_outbox").await == 0
    })
    .await;
    let vk_deal = merged["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .find(|c| c["source_id"].as_str() == Some(vk_source.as_str()))
        .and_then(|c| c["deal"]["deal_id"].as_i64())
        .expect("the VK conversation's deal");
    let vk_lead = app
        .amo
        .leads(account)
        .into_iter()
        .find(|l| l["id"].as_i64() == Some(vk_deal))
        .expect("the VK deal in amoCRM");
    let linked: Vec<i64> = vk_lead["_embedded"]["contacts"]
        .as_array()
        .map(|c| c.iter().filter_map(|x| x["id"].as_i64()).collect())
        .unwrap_or_default();
    assert!(
        linked.contains(&kept_remote),
        "the VK deal lists the kept contact: {vk_lead}"
    );

    // Later messages from either messenger land on the person; still one amoCRM contact in use
    // and no new one made.
    app.vk.customer_writes(
        group.id,
        VkCustomerMessage::text(612_000_201, "Пишу снова из ВК"),
    );
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5201, "Пётр", "И из Телеграма тоже"),
    );
    eventually("both messages are on the person's card", || async {
        let card = get(&app, &key, &format!("/api/v1/contacts/{tg}")).await;
        let texts: Vec<String> = card["conversations"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|x| x["last_text"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        texts.contains(&"Пишу снова из ВК".to_string())
            && texts.contains(&"И из Телеграма тоже".to_string())
    })
    .await;
    eventually("the new messages are in amoCRM", || async {
        count(&app, "SELECT count(*) FROM crm_outbox").await == 0
    })
    .await;
    assert_eq!(app.amo.contacts(account).len(), 2, "no new amoCRM contact");
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) FROM crm_contacts WHERE remote_id <> {kept_remote}"),
        )
        .await,
        0,
        "both identities map to the kept amoCRM contact"
    );
    app.stop().await;
}
