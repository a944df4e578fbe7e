//! SMS through SMSC.ru, SMS.ru and SMS Aero, through the whole product: the gateway chosen on
//! the SMS source's form (and through `POST /api/v1/sources`), wrong credentials refused with
//! the gateway's own words and nothing stored, the secret never shown, and each gateway's
//! delivery reports at the source's callback URL acknowledged its way. SMSC.ru passes incoming
//! SMS on (at the same handler URL), so with it a customer writes, a manager answers, and the
//! reports reach the inbox; SMS.ru and SMS Aero publish no incoming SMS.

use crate::api::create_key;
use crate::messages::{count, location, PW};
use crate::sms::setup_value;
use crate::telegram::{conversation_with, reply, thread_shows, within};
use chatter_fakes::{Gateway, GatewayAccount, GwStatus};
use chatter_testkit::{Session, TestApp};
use serde_json::json;

const SHOP_NUMBER: &str = "74950001122";

async fn add_form(s: &Session, fields: &[(&str, &str)]) -> reqwest::Response {
    let mut all = vec![("kind", "8"), ("name", "")];
    all.extend_from_slice(fields);
    s.post_from("/app/sources/new", "/app/sources", &all).await
}

/// Connects `a` through the form; returns the source id and its delivery-report URL.
async fn connect(app: &TestApp, s: &Session, a: &GatewayAccount, slug: &str) -> (String, String) {
    let r = add_form(
        s,
        &[
            ("sms_gateway", slug),
            ("sms_login", &a.login),
            ("sms_api_key", &a.secret),
            ("sms_sender", "Romashka"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let path = location(&r);
    let id = path.rsplit('/').next().expect("id").to_string();
    let page = s.html(&path).await;
    assert!(!page.contains(&a.secret), "the secret is never shown");
    let status = setup_value(&page, "sources.sms_status_url");
    assert!(
        status.starts_with(&app.at(&format!("/hooks/sms/{id}/"))) && status.ends_with("/status"),
        "{status}"
    );
    within(20, "the source is connected", || async {
        count(
            app,
            &format!(
                "SELECT count(*) FROM sources WHERE status = 'connected' \
                 AND settings LIKE '%\"{slug}@%'"
            ),
        )
        .await
            == 1
    })
    .await;
    (id, status)
}

#[tokio::test]
async fn smsc_customers_are_answered_and_delivery_reports_reach_the_inbox() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let fake = &app.sms_gateways;
    let a = fake.add_account(Gateway::Smsc, "rogakopyta", 300.0);

    // Wrong password, missing login: refused on the right field, in the user's language.
    let before = count(&app, "SELECT count(*) FROM sources").await;
    for (login, secret, field, words) in [
        (
            "rogakopyta",
            "not-the-password",
            "sms_api_key",
            "SMSC.ru не принял",
        ),
        ("", a.secret.as_str(), "sms_login", "логин SMSC.ru"),
    ] {
        let r = add_form(
            &s,
            &[
                ("sms_gateway", "smsc"),
                ("sms_login", login),
                ("sms_api_key", secret),
            ],
        )
        .await;
        assert_eq!(r.status(), 422);
        let page = r.text().await.expect("body");
        assert!(page.contains(&format!("data-field=\"{field}\"")), "{page}");
        assert!(page.contains(words), "{words}: {page}");
        assert!(!page.contains(&a.secret), "the password is not echoed");
        assert!(
            page.contains("<option value=\"smsc\" selected>"),
            "the choice stays"
        );
    }
    assert_eq!(count(&app, "SELECT count(*) FROM sources").await, before);

    let (_, status_url) = connect(&app, &s, &a, "smsc").await;
    // SMSC has one handler URL, set in the cabinet: reports and incoming SMS both go there.
    fake.set_callback_url(&a, &status_url);

    fake.customer_sends(
        &a,
        "+7 (926) 555-44-33",
        SHOP_NUMBER,
        "Есть ли доставка в Тверь?",
    );
    let conv = conversation_with(&s, "доставка в Тверь").await;
    thread_shows(&s, &conv, "+79265554433").await;

    reply(&s, &conv, "Да, доставим за два дня.").await;
    within(20, "SMSC got the answer", || async {
        fake.sent(&a)
            .iter()
            .any(|m| m.text == "Да, доставим за два дня.")
    })
    .await;
    let sent = fake.sent(&a).remove(0);
    assert_eq!(
        (sent.to.as_str(), sent.sender.as_deref()),
        ("79265554433", Some("Romashka"))
    );
    thread_shows(&s, &conv, "data-status=\"delivered\"").await;
    within(20, "the reports were acknowledged", || async {
        fake.sent(&a)[0].status == GwStatus::Delivered
    })
    .await;

    // A number that cannot be reached: failed, with the gateway's reason.
    fake.set_failing_number(&a, "79035550000");
    fake.customer_sends(&a, "89035550000", SHOP_NUMBER, "Перезвоните");
    let other = conversation_with(&s, "Перезвоните").await;
    reply(&s, &other, "Звоним").await;
    let page = thread_shows(&s, &other, "data-status=\"failed\"").await;
    assert!(page.contains("cannot be delivered"), "{page}");

    // A report at a forged URL is refused and stores nothing.
    let forged = status_url.replace(
        status_url.rsplit('/').nth(1).expect("token"),
        &"0".repeat(43),
    );
    let r = app
        .client()
        .post(&forged)
        .form(&[("phone", "79265554433"), ("mes", "подделка")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn smsru_and_smsaero_are_connected_by_form_and_api_and_their_reports_acknowledged() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let fake = &app.sms_gateways;
    let ru = fake.add_account(Gateway::SmsRu, "", 100.0);
    let aero = fake.add_account(Gateway::SmsAero, "shop@example.ru", 100.0);

    // SMS.ru: a wrong api_id is refused in SMS.ru's words.
    let r = add_form(
        &s,
        &[
            ("sms_gateway", "smsru"),
            ("sms_api_key", "0000AAAA-1111-2222-3333-444455556666"),
        ],
    )
    .await;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("Неправильный api_id"));
    let (ru_id, ru_status) = connect(&app, &s, &ru, "smsru").await;

    // A delivery report in SMS.ru's format at its URL: acknowledged with `100`, and a report of
    // a message we never sent changes nothing.
    let block = "sms_status\n000005-424242\n103\n1767225600";
    let r = app
        .client()
        .post(&ru_status)
        .form(&[("data[]", block)])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "100");
    // SMS.ru posts no incoming SMS: its source has no such URL.
    let inbound = ru_status.replace("/status", "/inbound");
    let r = app
        .client()
        .post(&inbound)
        .form(&[("from", "79265554433"), ("text", "x")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404);

    // SMS Aero through the API: a bad e-mail and a wrong key are 422s naming the field.
    let owner_key = create_key(&s, "sms").await;
    let post = |fields: serde_json::Value| {
        let app = &app;
        let owner_key = owner_key.clone();
        async move {
            let r = app
                .client()
                .post(app.at("/api/v1/sources"))
                .header("authorization", format!("Bearer {owner_key}"))
                .json(&json!({"kind": "sipout_sms", "fields": fields}))
                .send()
                .await
                .expect("POST");
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.expect("JSON"))
        }
    };
    let (status, body) = post(
        json!({"sms_gateway": "smsaero", "sms_login": "not-an-email",
                                     "sms_api_key": aero.secret}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["fields"][0]["field"], "sms_login", "{body}");
    let (status, body) = post(json!({"sms_gateway": "smsaero", "sms_login": aero.login,
                                     "sms_api_key": "x".repeat(32)}))
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["fields"][0]["field"], "sms_api_key", "{body}");
    assert!(!body.to_string().contains(&aero.secret));
    let (status, body) = post(json!({"sms_gateway": "nope", "sms_api_key": "k".repeat(20)})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["fields"][0]["field"], "sms_gateway", "{body}");
    let (status, body) = post(json!({"sms_gateway": "smsaero", "sms_login": aero.login,
                                     "sms_api_key": aero.secret, "sms_sender": "Romashka"}))
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(!body.to_string().contains(&aero.secret), "redacted: {body}");
    let aero_id = body["id"].as_str().expect("id").to_owned();
    assert_ne!(aero_id, ru_id);
    within(
        20,
        "SMS Aero is connected with its report URL learnt",
        || async {
            count(
                &app,
                &format!(
                    "SELECT count(*) FROM sources WHERE status = 'connected' \
                 AND settings LIKE '%\"smsaero@%' \
                 AND settings LIKE '%/hooks/sms/{aero_id}/%/status%'"
                ),
            )
            .await
                == 1
        },
    )
    .await;
    let secrets = count(
        &app,
        &format!(
            "SELECT count(*) FROM sources WHERE secret LIKE '%{}%' OR settings LIKE '%{}%'",
            aero.secret, aero.secret
        ),
    )
    .await;
    assert_eq!(secrets, 0, "the key is stored encrypted");
    let _ = (ru, aero);
}
