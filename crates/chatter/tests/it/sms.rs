//! SMS through a Sipout gateway account, through the whole product: added by its API key
//! (checked with the balance call; wrong ones refused, nothing stored), callbacks at URLs whose
//! path token is the only proof (a wrong token → 401, nothing stored), incoming SMS as
//! conversations with the sender's normalised number, answers that survive an outage in order,
//! delivery reports shown on our messages (failed with the gateway's reason), replays stored
//! once, and the reply box's part count.

use crate::messages::{count, location, PW};
use crate::telegram::{conversation_with, reply, thread_shows, within};
use chatter_fakes::SmsFailure;
use chatter_testkit::{Session, TestApp};

const SHOP_NUMBER: &str = "74950001122";

/// Signs up a company, connects a fresh gateway account through the form and pastes the
/// callback URLs the source's page shows into the gateway. Returns the session, the key and
/// the source id.
pub(crate) async fn company_with_sms(app: &TestApp) -> (Session, String, String) {
    let s = Session::sign_up(app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let key = app
        .sms
        .add_account("ООО Рога и Копыта", "7701234567", 500.0);
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[
                ("kind", "8"),
                ("sms_api_key", &key),
                ("sms_sender", "Romashka"),
                ("name", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let path = location(&r);
    let id = path.rsplit('/').next().expect("id").to_string();
    let page = s.html(&path).await;
    assert!(!page.contains(&key), "the API key is never shown");
    let status = setup_value(&page, "sources.sms_status_url");
    let inbound = setup_value(&page, "sources.sms_inbound_url");
    let prefix = app.at(&format!("/hooks/sms/{id}/"));
    assert!(
        status.starts_with(&prefix) && status.ends_with("/status"),
        "{status}"
    );
    assert!(
        inbound.starts_with(&prefix) && inbound.ends_with("/inbound"),
        "{inbound}"
    );
    app.sms.set_callbacks(&key, Some(&status), Some(&inbound));
    within(20, "the source is connected", || async {
        count(
            app,
            "SELECT count(*) FROM sources WHERE status = 'connected'",
        )
        .await
            == 1
    })
    .await;
    (s, key, id)
}

pub(crate) fn setup_value(page: &str, key: &str) -> String {
    let marker = format!("data-setup=\"{key}\">");
    let start = page
        .find(&marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("the page shows {key}: {page}"));
    page[start..]
        .split('<')
        .next()
        .unwrap_or_default()
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
}

fn sent_texts(app: &TestApp, key: &str) -> Vec<String> {
    app.sms.sent(key).into_iter().map(|m| m.text).collect()
}

#[tokio::test]
async fn wrong_sms_credentials_are_refused_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let key = app
        .sms
        .add_account("ООО Рога и Копыта", "7701234567", 500.0);
    let revoked = app.sms.add_account("Старый кабинет", "7700000000", 10.0);
    app.sms.revoke(&revoked);
    let before = count(&app, "SELECT count(*) FROM sources").await;
    for (k, sender, field) in [
        ("wrong-key-0123456789", "", "sms_api_key"),
        (revoked.as_str(), "", "sms_api_key"),
        ("", "", "sms_api_key"),
        (key.as_str(), "Очень длинное имя", "sms_sender"),
    ] {
        let r = s
            .post_from(
                "/app/sources/new",
                "/app/sources",
                &[("kind", "8"), ("sms_api_key", k), ("sms_sender", sender)],
            )
            .await;
        assert_eq!(r.status(), 422, "refused: {k} / {sender}");
        let page = r.text().await.expect("body");
        assert!(
            page.contains(&format!("data-field=\"{field}\"")),
            "{field} is marked: {page}"
        );
        assert!(k.is_empty() || !page.contains(k), "the key is not echoed");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM sources").await, before);
}

#[tokio::test]
async fn an_sms_customer_is_answered_with_delivery_reports_through_an_outage() {
    let app = TestApp::new().await;
    let (s, key, source_id) = company_with_sms(&app).await;
    app.sms.customer_sends(
        &key,
        "+7 (926) 555-44-33",
        SHOP_NUMBER,
        "Здравствуйте, перезвоните по заказу",
    );
    let conv = conversation_with(&s, "перезвоните по заказу").await;
    let page = thread_shows(&s, &conv, "+79265554433").await;
    assert!(
        page.contains("id=\"sms-parts\""),
        "the reply box counts SMS parts: {page}"
    );
    assert!(page.contains("0 SMS · латиница · 0/160"), "{page}");
    assert!(
        page.contains("data-ucs2=\"кириллица\""),
        "the live counter has its labels"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM contacts WHERE phone = '+79265554433'"
        )
        .await,
        1,
        "the sender's number is normalised"
    );

    reply(&s, &conv, "Добрый день! Перезвоним в течение часа.").await;
    within(20, "the gateway got the answer", || async {
        sent_texts(&app, &key) == ["Добрый день! Перезвоним в течение часа."]
    })
    .await;
    let sent = app.sms.sent(&key).remove(0);
    assert_eq!(sent.to, "79265554433");
    assert_eq!(sent.sender.as_deref(), Some("Romashka"));
    thread_shows(&s, &conv, "data-status=\"delivered\"").await;

    // An outage: the answers go out afterwards, in order.
    app.sms.fail_next(&key, SmsFailure::server_error(), 2);
    app.sms.fail_next(&key, SmsFailure::rate_limited(), 1);
    for t in ["Первый", "Второй", "Третий"] {
        reply(&s, &conv, t).await;
    }
    within(60, "all answers go out", || async {
        sent_texts(&app, &key).len() >= 4
    })
    .await;
    assert_eq!(sent_texts(&app, &key)[1..], ["Первый", "Второй", "Третий"]);
    // The reports wait behind the outage's retries (in order, each until accepted), so under a
    // loaded machine they take longer than the first one did.
    within(60, "all show delivered", || async {
        s.html(&format!("/app/inbox/{conv}"))
            .await
            .matches("data-status=\"delivered\"")
            .count()
            == 4
    })
    .await;

    // A number that cannot be reached: the report fails the message with the gateway's reason.
    app.sms.set_failing_number(&key, "79035550000");
    app.sms
        .customer_sends(&key, "89035550000", SHOP_NUMBER, "Жду звонка");
    let other = conversation_with(&s, "Жду звонка").await;
    reply(&s, &other, "Звоним").await;
    let page = thread_shows(&s, &other, "data-status=\"failed\"").await;
    assert!(page.contains("Абонент недоступен"), "{page}");

    // Forged, malformed and replayed callbacks.
    let http = reqwest::Client::new();
    let before = count(&app, "SELECT count(*) FROM messages").await;
    let fields = [
        ("id", "replayed-77"),
        ("from", "79265554433"),
        ("to", SHOP_NUMBER),
        ("text", "Повтор"),
        ("time", "1767225600"),
    ];
    let forged = app.at(&format!(
        "/hooks/sms/{source_id}/{}/inbound",
        "0".repeat(43)
    ));
    let r = http.post(&forged).form(&fields).send().await.expect("post");
    assert_eq!(r.status(), 401);
    let forged_status = app.at(&format!("/hooks/sms/{source_id}/{}/status", "0".repeat(43)));
    let r = http
        .post(&forged_status)
        .form(&[("id", "1"), ("status", "delivered")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    let page = s.html(&format!("/app/sources/{source_id}")).await;
    let inbound = setup_value(&page, "sources.sms_inbound_url");
    let r = http
        .post(&inbound)
        .form(&[("text", "без отправителя")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400, "malformed");
    assert_eq!(count(&app, "SELECT count(*) FROM messages").await, before);
    for _ in 0..3 {
        let r = http
            .post(&inbound)
            .form(&fields)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.expect("body"), "ok", "the gateway's ack");
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages").await,
        before + 1,
        "a replayed SMS is stored once"
    );
    assert!(app.sms.callbacks(&key).iter().all(|c| c.delivered));
}
