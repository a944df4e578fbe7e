//! A WhatsApp Business number through the whole product: added with its phone number id, WABA
//! id, token and app secret (wrong ones refused, nothing stored); Meta's subscription handshake
//! with the verify token the source's page shows; signed notifications (forged → 401, malformed
//! → 400, replays stored once); answers as text and media links that survive an outage in order;
//! delivery statuses shown on our messages; customer media fetched; and the 24-hour window:
//! free text refused with the reason, an approved template sent instead.

use crate::messages::{count, location, PW};
use crate::telegram::{conversation_with, reply, thread_shows, within};
use chatter_fakes::{WaCustomerContent, WaFailure, WaNumber};
use chatter_testkit::{Session, TestApp};
use hmac::{Hmac, Mac};
use sea_orm::ConnectionTrait;
use sha2::Sha256;

const CUSTOMER: &str = "79161234567";

/// Signs up a company, connects a fresh number through the form and points the number's
/// webhook at the callback URL and verify token the source's page shows (as a person pastes
/// them into Meta's dashboard). Returns the session, the number and the source id.
pub(crate) async fn company_with_whatsapp(app: &TestApp) -> (Session, WaNumber, String) {
    let s = Session::sign_up(app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let number = app.whatsapp.add_number("+7 495 000-11-22", "Рога и Копыта");
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[
                ("kind", "7"),
                ("wa_phone_number_id", &number.phone_number_id),
                ("wa_waba_id", &number.waba_id),
                ("wa_access_token", &number.access_token),
                ("wa_app_secret", &number.app_secret),
                ("name", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let path = location(&r);
    let id = path.rsplit('/').next().expect("id").to_string();
    let page = s.html(&path).await;
    let url = setup_value(&page, "sources.wa_callback_url");
    let verify = setup_value(&page, "sources.wa_verify_token");
    assert_eq!(url, app.at(&format!("/hooks/whatsapp/{id}")));
    assert!(verify.len() >= 24, "an unguessable verify token: {verify}");
    assert!(
        !page.contains(&number.access_token) && !page.contains(&number.app_secret),
        "secrets are never shown"
    );
    app.whatsapp
        .subscribe(&number.phone_number_id, &url, &verify)
        .await
        .expect("Meta's handshake passes");
    within(20, "the source is connected", || async {
        count(
            app,
            "SELECT count(*) FROM sources WHERE status = 'connected'",
        )
        .await
            == 1
    })
    .await;
    (s, number, id)
}

/// The value the source page shows under `key` (`<code data-setup="key">value</code>`).
fn setup_value(page: &str, key: &str) -> String {
    let marker = format!("data-setup=\"{key}\">");
    let start = page
        .find(&marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| {
            panic!("the page shows {key}: {page}");
        });
    page[start..]
        .split('<')
        .next()
        .unwrap_or_default()
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
}

pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn sent_texts(app: &TestApp, number: &WaNumber) -> Vec<String> {
    app.whatsapp
        .sent(&number.phone_number_id)
        .into_iter()
        .filter_map(|m| m.text)
        .collect()
}

#[tokio::test]
async fn wrong_whatsapp_credentials_are_refused_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let n = app.whatsapp.add_number("+7 495 000-11-22", "Рога и Копыта");
    let wrong_token = format!("EAAG{}", "x".repeat(60));
    let before = count(&app, "SELECT count(*) FROM sources").await;
    for (number, token, field) in [
        (
            n.phone_number_id.as_str(),
            wrong_token.as_str(),
            "wa_access_token",
        ),
        (
            "+7 495 000-11-22",
            n.access_token.as_str(),
            "wa_phone_number_id",
        ),
        (n.phone_number_id.as_str(), "short", "wa_access_token"),
    ] {
        let r = s
            .post_from(
                "/app/sources/new",
                "/app/sources",
                &[
                    ("kind", "7"),
                    ("wa_phone_number_id", number),
                    ("wa_waba_id", &n.waba_id),
                    ("wa_access_token", token),
                    ("wa_app_secret", &n.app_secret),
                ],
            )
            .await;
        assert_eq!(r.status(), 422, "refused: {number} / {token}");
        let page = r.text().await.expect("body");
        assert!(
            page.contains(&format!("data-field=\"{field}\"")),
            "{field} is marked: {page}"
        );
        assert!(!page.contains(token), "the token is not echoed");
        assert!(
            !page.contains(&n.app_secret),
            "the app secret is not echoed"
        );
    }
    assert_eq!(count(&app, "SELECT count(*) FROM sources").await, before);
}

#[tokio::test]
async fn a_whatsapp_customer_is_answered_and_sees_statuses_through_an_outage() {
    let app = TestApp::new().await;
    let (s, number, source_id) = company_with_whatsapp(&app).await;
    let pnid = number.phone_number_id.clone();
    app.whatsapp
        .customer_writes(&pnid, CUSTOMER, "Ирина", "Здравствуйте! Заказ 1042 готов?");
    let conv = conversation_with(&s, "Заказ 1042 готов?").await;
    thread_shows(&s, &conv, "Ирина").await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM contacts WHERE phone = '+79161234567'"
        )
        .await,
        1,
        "the customer's number is kept"
    );

    reply(&s, &conv, "Да, можно забирать").await;
    within(20, "WhatsApp got the answer", || async {
        sent_texts(&app, &number) == ["Да, можно забирать"]
    })
    .await;
    // The fake's customer receives and reads it: sent → delivered → read reach the message.
    thread_shows(&s, &conv, "data-status=\"read\"").await;

    // An outage: the replies go out afterwards, in the order they were written.
    app.whatsapp.fail_next(&pnid, WaFailure::server_error(), 2);
    app.whatsapp.fail_next(&pnid, WaFailure::rate_limited(), 1);
    for t in ["Первый", "Второй", "Третий"] {
        reply(&s, &conv, t).await;
    }
    within(60, "all replies arrive", || async {
        sent_texts(&app, &number).len() >= 4
    })
    .await;
    assert_eq!(
        sent_texts(&app, &number),
        ["Да, можно забирать", "Первый", "Второй", "Третий"]
    );
    within(20, "each shows read", || async {
        s.html(&format!("/app/inbox/{conv}"))
            .await
            .matches("data-status=\"read\"")
            .count()
            == 4
    })
    .await;

    // A medium by link, with its caption.
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/media"),
            &[
                ("media_url", "https://cdn.example.ru/photos/order-1042.jpg"),
                ("caption", "Вот ваш заказ"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    within(20, "the image went out by link", || async {
        app.whatsapp.sent(&pnid).iter().any(|m| {
            m.kind == "image"
                && m.media.as_deref() == Some("https://cdn.example.ru/photos/order-1042.jpg")
                && m.caption.as_deref() == Some("Вот ваш заказ")
        })
    })
    .await;
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/media"),
            &[("media_url", "ftp://example.ru/x.jpg")],
        )
        .await;
    assert_eq!(r.status(), 422, "not an https link");

    // The customer's photo is fetched into our storage.
    app.whatsapp.customer_sends(
        &pnid,
        CUSTOMER,
        "Ирина",
        WaCustomerContent::Image {
            bytes: b"\x89PNG fake photo".to_vec(),
            mime: "image/png".into(),
            caption: Some("Вот чек".into()),
        },
    );
    let page = thread_shows(&s, &conv, "Вот чек").await;
    let _ = page;
    let page = thread_shows(&s, &conv, "/app/files/").await;
    let file = page
        .split("href=\"/app/files/")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a file link");
    let body = s.get(&format!("/app/files/{file}")).await;
    assert_eq!(body.status(), 200);
    assert_eq!(
        body.bytes().await.expect("bytes").as_ref(),
        b"\x89PNG fake photo"
    );

    // Forged, malformed and replayed notifications.
    let http = reqwest::Client::new();
    let hook = app.at(&format!("/hooks/whatsapp/{source_id}"));
    let r = http
        .get(format!(
            "{hook}?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=123"
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403, "a wrong verify token");
    let payload =
        serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": number.waba_id,
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "74950001122", "phone_number_id": pnid},
            "contacts": [{"profile": {"name": "Ирина"}, "wa_id": CUSTOMER}],
            "messages": [{"from": CUSTOMER, "id": "wamid.replayed-1", "timestamp": "1767225600",
                "type": "text", "text": {"body": "Повтор"}}]}}]}]})
        .to_string();
    let before = count(&app, "SELECT count(*) FROM messages").await;
    let r = http
        .post(&hook)
        .header(
            "x-hub-signature-256",
            sign("not-the-app-secret", payload.as_bytes()),
        )
        .body(payload.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401, "a forged signature");
    let r = http
        .post(&hook)
        .body(payload.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401, "no signature");
    let r = http
        .post(&hook)
        .header(
            "x-hub-signature-256",
            sign(&number.app_secret, b"{not json"),
        )
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400, "malformed");
    assert_eq!(count(&app, "SELECT count(*) FROM messages").await, before);
    for _ in 0..3 {
        let r = http
            .post(&hook)
            .header(
                "x-hub-signature-256",
                sign(&number.app_secret, payload.as_bytes()),
            )
            .body(payload.clone())
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages").await,
        before + 1,
        "a replayed notification is stored once"
    );
    // Every notification the fake sent was acknowledged (none left retrying).
    assert!(app.whatsapp.deliveries(&pnid).iter().all(|d| d.delivered));
}

#[tokio::test]
async fn outside_the_24_hour_window_free_text_is_refused_and_a_template_goes() {
    let app = TestApp::new().await;
    let (s, number, _) = company_with_whatsapp(&app).await;
    let pnid = number.phone_number_id.clone();
    app.whatsapp.add_template(
        &pnid,
        "order_ready",
        "ru",
        "UTILITY",
        "APPROVED",
        "Здравствуйте, {{1}}! Заказ {{2}} готов к выдаче.",
    );
    app.whatsapp
        .add_template(&pnid, "promo", "ru", "MARKETING", "REJECTED", "Скидки!");
    app.whatsapp
        .customer_writes(&pnid, CUSTOMER, "Ирина", "Когда будет готов заказ?");
    let conv = conversation_with(&s, "Когда будет готов заказ?").await;

    // WhatsApp closed the window before we knew: the free text fails with the reason.
    app.whatsapp.close_window(&pnid, CUSTOMER);
    reply(&s, &conv, "Завтра к обеду").await;
    let page = thread_shows(&s, &conv, "data-status=\"failed\"").await;
    assert!(
        page.contains("больше 24 часов"),
        "the failure explains the window: {page}"
    );

    // A day later by our clock too: the inbox explains and offers the approved template only.
    let day = 25 * 3600 * 1000;
    app.db
        .db
        .execute_unprepared(&format!(
            "UPDATE messages SET sent_at = sent_at - {day} WHERE direction = 'in'"
        ))
        .await
        .expect("age the customer's message");
    let page = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(page.contains("id=\"wa-window-closed\""), "{page}");
    assert!(
        page.contains("Клиент писал больше 24 часов назад"),
        "{page}"
    );
    assert!(page.contains("data-template=\"order_ready\""), "{page}");
    assert!(
        !page.contains("data-template=\"promo\""),
        "rejected templates are not offered"
    );
    assert!(!page.contains("id=\"reply-form\""), "no free-text box");

    let out_before = count(
        &app,
        "SELECT count(*) FROM messages WHERE direction = 'out'",
    )
    .await;
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/reply"),
            &[("text", "Всё ещё ждёте?")],
        )
        .await;
    assert_eq!(r.status(), 422, "free text is refused before sending");
    let body = r.text().await.expect("body");
    assert!(body.contains("id=\"reply-refused\""), "{body}");
    assert!(body.contains("Отправьте одобренный шаблон"), "{body}");
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/template"),
            &[("name", "order_ready"), ("language", "ru"), ("p1", "Ирина")],
        )
        .await;
    assert_eq!(r.status(), 422, "every parameter is needed");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'out'"
        )
        .await,
        out_before,
        "nothing refused is stored"
    );

    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/template"),
            &[
                ("name", "order_ready"),
                ("language", "ru"),
                ("p1", "Ирина"),
                ("p2", "1042"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    within(20, "the template went out", || async {
        app.whatsapp.sent(&pnid).iter().any(|m| {
            m.kind == "template"
                && m.template.as_deref() == Some("order_ready")
                && m.template_params == ["Ирина", "1042"]
        })
    })
    .await;
    let page = thread_shows(&s, &conv, "Здравствуйте, Ирина! Заказ 1042 готов к выдаче.").await;
    assert!(page.contains("order_ready"), "marked as a template: {page}");
    thread_shows(&s, &conv, "data-status=\"read\"").await;
}
