//! A Telegram personal account (kind 2) through the whole product, against the fake gateway:
//! connected on the Sources pages in steps (api pair and phone, code, 2FA password with its
//! hint) and through `/api/v1/sources/telegram-personal/login`; wrong values are field errors
//! that connect nothing; the same account in a second company is refused; a customer's private
//! message reaches the inbox (groups do not), the manager's reply goes out through the account,
//! in order through FLOOD_WAIT; what the person writes from the phone is mirrored; an update
//! gap loses and repeats nothing; PEER_FLOOD stops sending with the reason; a session ended
//! from the phone marks the source with the fix. The login also runs in headless Chromium at
//! desktop and phone widths.

use crate::api::create_key;
use crate::messages::{count, location, PW};
use crate::telegram::{conversation_with, reply, thread_shows, within};
use chatter_testkit::{Session, TestApp};
use serde_json::{json, Value};

const API_ID: i64 = 2_040_608;
const API_HASH: &str = "a3f1c2d4e5b6a7980f1e2d3c4b5a6978";
const LOGIN: &str = "/app/sources/new/login/telegram-personal";

/// Registers the company's application pair and an account with `phone` (no 2FA password).
fn account(app: &TestApp, phone: &str, name: &str, username: &str) {
    app.tgp.register_app(API_ID, API_HASH);
    app.tgp.add_account(phone, name, Some(username), None);
}

/// Posts the login page's current step.
async fn step(s: &Session, fields: &[(&str, &str)]) -> reqwest::Response {
    s.post_from(LOGIN, LOGIN, fields).await
}

/// The first step with the pair and `typed_phone`.
async fn first_step(s: &Session, typed_phone: &str) -> reqwest::Response {
    step(
        s,
        &[
            ("tgp_api_id", &API_ID.to_string()),
            ("tgp_api_hash", API_HASH),
            ("tgp_phone", typed_phone),
        ],
    )
    .await
}

/// Connects the account `phone` (typed as `typed`) on the pages; returns the source's path.
pub(crate) async fn connect(app: &TestApp, s: &Session, phone: &str, typed: &str) -> String {
    let r = first_step(s, typed).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let code = app.tgp.last_code(phone).expect("a code was sent");
    let r = step(s, &[("tgp_code", &code)]).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    location(&r)
}

fn field_error<'a>(page: &'a str, field: &str) -> Option<&'a str> {
    let marker = format!("data-field=\"{field}\">");
    let at = page.find(&marker)? + marker.len();
    page[at..].split('<').next()
}

#[tokio::test]
async fn an_account_with_a_2fa_password_connects_on_the_pages_and_wrong_values_connect_nothing() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    app.tgp.register_app(API_ID, API_HASH);
    app.tgp.add_account(
        "+79991112233",
        "Анна",
        Some("anna_sells"),
        Some(("кот-Барсик-2019", "имя кота и год")),
    );
    let chooser = s.html("/app/sources/new").await;
    assert!(
        chooser.contains(LOGIN) && chooser.contains("Личный Telegram"),
        "the chooser offers personal accounts: {chooser}"
    );
    let page = s.html(LOGIN).await;
    assert!(
        page.contains("my.telegram.org"),
        "the how-to is shown: {page}"
    );

    // Values that cannot be right: each field says what is wrong, nothing is kept.
    let r = step(
        &s,
        &[
            ("tgp_api_id", "abc"),
            ("tgp_api_hash", "short"),
            ("tgp_phone", "позвоните мне"),
        ],
    )
    .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("body");
    for field in ["tgp_api_id", "tgp_api_hash", "tgp_phone"] {
        assert!(
            field_error(&page, field).is_some(),
            "{field} is marked: {page}"
        );
    }
    // A pair Telegram does not know.
    let r = step(
        &s,
        &[
            ("tgp_api_id", "1111111"),
            ("tgp_api_hash", API_HASH),
            ("tgp_phone", "+7 999 111-22-33"),
        ],
    )
    .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("body");
    assert!(
        field_error(&page, "tgp_api_id").is_some_and(|e| e.contains("не принял")),
        "{page}"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM source_logins").await, 0);

    // The phone in a Russian local form is read as E.164; the code step follows.
    let r = first_step(&s, "8 (999) 111-22-33").await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let page = s.html(LOGIN).await;
    assert!(page.contains("data-step=\"code\""), "{page}");
    // What the next step needs is kept encrypted.
    assert_eq!(count(&app, "SELECT count(*) FROM source_logins").await, 1);
    let plain = format!(
        "SELECT count(*) FROM source_logins WHERE state LIKE '%{API_HASH}%' OR state LIKE '%79991112233%'"
    );
    assert_eq!(
        count(&app, &plain).await,
        0,
        "the login's state is encrypted"
    );

    let r = step(&s, &[("tgp_code", "00000")]).await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("body");
    assert!(
        field_error(&page, "tgp_code").is_some_and(|e| e.contains("Код не подошёл")),
        "{page}"
    );
    let code = app.tgp.last_code("+79991112233").expect("code sent");
    let r = step(&s, &[("tgp_code", &code)]).await;
    assert_eq!(r.status(), 303);
    let page = s.html(LOGIN).await;
    assert!(
        page.contains("data-step=\"password\"") && page.contains("имя кота и год"),
        "the password step shows the hint: {page}"
    );
    let r = step(&s, &[("tgp_password", "кот-Мурзик")]).await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("body");
    assert!(field_error(&page, "tgp_password").is_some(), "{page}");
    assert_eq!(count(&app, "SELECT count(*) FROM sources").await, 0);

    let r = step(&s, &[("tgp_password", "кот-Барсик-2019")]).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let source = location(&r);
    assert!(source.starts_with("/app/sources/"), "{source}");
    let page = s.html(&source).await;
    assert!(page.contains("anna_sells"), "the account is named: {page}");
    assert_eq!(count(&app, "SELECT count(*) FROM source_logins").await, 0);
    let stored = format!("SELECT count(*) FROM sources WHERE secret LIKE '%{API_HASH}%'");
    assert_eq!(count(&app, &stored).await, 0, "credentials are encrypted");
    within(10, "the source is connected", || async {
        count(
            &app,
            "SELECT count(*) FROM sources WHERE status = 'connected'",
        )
        .await
            == 1
    })
    .await;
}

#[tokio::test]
async fn an_expired_code_asks_to_start_again_and_the_same_account_elsewhere_is_refused() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    account(&app, "+79990001122", "Анна", "anna_tg");
    let r = first_step(&s, "+79990001122").await;
    assert_eq!(r.status(), 303);
    let code = app.tgp.last_code("+79990001122").expect("code sent");
    app.tgp.expire_codes("+79990001122");
    let r = step(&s, &[("tgp_code", &code)]).await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("body");
    assert!(
        field_error(&page, "tgp_code").is_some_and(|e| e.contains("Срок действия кода истёк")),
        "{page}"
    );
    let r = s.post_from(LOGIN, &format!("{LOGIN}/restart"), &[]).await;
    assert_eq!(r.status(), 303);
    assert!(s.html(LOGIN).await.contains("data-step=\"start\""));
    connect(&app, &s, "+79990001122", "+7 999 000 11 22").await;

    // Another company, the same account: refused with the reason, nothing half-connected.
    let other = Session::sign_up(&app, "Другая", "Борис", "boris@example.ru", PW).await;
    let r = first_step(&other, "+79990001122").await;
    assert_eq!(r.status(), 303);
    let code = app.tgp.last_code("+79990001122").expect("code sent");
    let r = step(&other, &[("tgp_code", &code)]).await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("body");
    assert!(
        field_error(&page, "tgp_phone").is_some_and(|e| e.contains("другой компании")),
        "{page}"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM sources").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM source_logins").await, 0);
}

#[tokio::test]
async fn a_customer_writes_the_manager_answers_through_the_account_in_order_through_flood_wait() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let phone = "+79995554433";
    account(&app, phone, "Анна", "anna_shop");
    connect(&app, &s, phone, phone).await;
    within(10, "the runner is connected", || async {
        count(
            &app,
            "SELECT count(*) FROM sources WHERE status = 'connected'",
        )
        .await
            == 1
    })
    .await;

    // A group message is no conversation; the customer's private message is.
    app.tgp
        .group_message(phone, -100_500, "Всем привет из чата соседей");
    app.tgp.customer_writes(
        phone,
        880_001,
        "Ольга",
        "Здравствуйте, диван ещё продаётся?",
    );
    let conv = conversation_with(&s, "диван ещё продаётся").await;
    let page = thread_shows(&s, &conv, "Здравствуйте, диван ещё продаётся?").await;
    assert!(page.contains("Ольга"), "the customer is named: {page}");
    assert!(
        !s.html("/app/inbox").await.contains("чата соседей"),
        "groups are not conversations of a personal account"
    );

    // A gap in Telegram's updates: the difference brings both, each stored once.
    app.tgp.gap_next(phone);
    app.tgp
        .customer_writes(phone, 880_001, "Ольга", "Первый вопрос");
    app.tgp
        .customer_writes(phone, 880_001, "Ольга", "Второй вопрос");
    thread_shows(&s, &conv, "Второй вопрос").await;
    thread_shows(&s, &conv, "Первый вопрос").await;
    for text in ["Первый вопрос", "Второй вопрос"] {
        let sql = format!("SELECT count(*) FROM messages WHERE text = '{text}'");
        assert_eq!(count(&app, &sql).await, 1, "{text} stored once");
    }

    // Telegram asks to wait on the first reply: both replies still go, in order.
    app.tgp
        .fail_next(phone, "messages.sendMessage", "FLOOD_WAIT_1");
    reply(&s, &conv, "Да, продаётся").await;
    reply(&s, &conv, "Доставка завтра").await;
    within(30, "both replies sent by the account", || async {
        app.tgp.sent(phone).len() >= 2
    })
    .await;
    let sent = app.tgp.sent(phone);
    let texts: Vec<&str> = sent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["Да, продаётся", "Доставка завтра"]);
    assert!(sent.iter().all(|m| m.peer == 880_001), "{sent:?}");

    // What the person writes from their phone is mirrored as outgoing; what Chatter sent
    // through the account is not stored a second time.
    app.tgp
        .person_writes_from_phone(phone, 880_001, "Позвоню вам вечером");
    let page = thread_shows(&s, &conv, "Позвоню вам вечером").await;
    assert!(
        page.contains("Ольга"),
        "the customer keeps her name: {page}"
    );
    let out =
        "SELECT count(*) FROM messages WHERE direction = 'out' AND text = 'Позвоню вам вечером'";
    assert_eq!(count(&app, out).await, 1);
    for text in ["Да, продаётся", "Доставка завтра"] {
        let sql = format!("SELECT count(*) FROM messages WHERE text = '{text}'");
        assert_eq!(count(&app, &sql).await, 1, "{text} stored once");
    }
}

#[tokio::test]
async fn the_runner_stopped_and_started_again_loses_and_repeats_nothing() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let phone = "+79994443322";
    account(&app, phone, "Анна", "anna_tg");
    let source = connect(&app, &s, phone, phone).await;
    app.tgp
        .customer_writes(phone, 880_003, "Денис", "Сообщение до остановки");
    let conv = conversation_with(&s, "Сообщение до остановки").await;
    let r = s
        .post_from(&source, &format!("{source}/disable"), &[])
        .await;
    assert_eq!(r.status(), 303);
    within(20, "the runner let go of its lease", || async {
        count(
            &app,
            "SELECT count(*) FROM leases WHERE name LIKE 'telegram-personal-poll:%'",
        )
        .await
            == 0
    })
    .await;
    app.tgp
        .customer_writes(phone, 880_003, "Денис", "Пока вас не было");
    app.tgp
        .customer_writes(phone, 880_003, "Денис", "И ещё одно");
    let r = s.post_from(&source, &format!("{source}/enable"), &[]).await;
    assert_eq!(r.status(), 303);
    thread_shows(&s, &conv, "И ещё одно").await;
    thread_shows(&s, &conv, "Пока вас не было").await;
    for text in ["Сообщение до остановки", "Пока вас не было", "И ещё одно"]
    {
        let sql = format!("SELECT count(*) FROM messages WHERE text = '{text}'");
        assert_eq!(count(&app, &sql).await, 1, "{text} stored once");
    }
}

#[tokio::test]
async fn peer_flood_stops_sending_with_the_reason_shown() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let phone = "+79996667788";
    account(&app, phone, "Анна", "anna_tg");
    connect(&app, &s, phone, phone).await;
    app.tgp
        .customer_writes(phone, 880_002, "Павел", "Сколько стоит?");
    let conv = conversation_with(&s, "Сколько стоит?").await;
    app.tgp
        .fail_next(phone, "messages.sendMessage", "PEER_FLOOD");
    reply(&s, &conv, "Три тысячи").await;
    within(20, "the reply failed with the reason", || async {
        s.html(&format!("/app/inbox/{conv}"))
            .await
            .contains("PEER_FLOOD")
    })
    .await;
    // The next reply is not even tried at Telegram: sends stop for a day.
    reply(&s, &conv, "Скидка десять процентов").await;
    within(20, "the second reply failed too", || async {
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'failed'",
        )
        .await
            == 2
    })
    .await;
    assert!(app.tgp.sent(phone).is_empty(), "{:?}", app.tgp.sent(phone));
}

#[tokio::test]
async fn a_session_ended_from_the_phone_marks_the_source_with_the_fix() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let phone = "+79993332211";
    account(&app, phone, "Анна", "anna_tg");
    let source = connect(&app, &s, phone, phone).await;
    within(10, "the runner is connected", || async {
        count(
            &app,
            "SELECT count(*) FROM sources WHERE status = 'connected'",
        )
        .await
            == 1
    })
    .await;
    app.tgp.revoke_sessions(phone);
    within(20, "the source is marked", || async {
        count(
            &app,
            "SELECT count(*) FROM sources WHERE status = 'token_revoked'",
        )
        .await
            == 1
    })
    .await;
    let page = s.html(&source).await;
    assert!(
        page.contains("AUTH_KEY_UNREGISTERED") && page.contains("Подключите аккаунт заново"),
        "the reason and the fix are shown: {page}"
    );
}

async fn api_step(app: &TestApp, key: &str, fields: Value) -> (u16, Value) {
    let r = app
        .client()
        .post(app.at("/api/v1/sources/telegram-personal/login"))
        .header("authorization", format!("Bearer {key}"))
        .json(&json!({ "fields": fields }))
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON"))
}

#[tokio::test]
async fn an_account_connects_through_the_api_in_the_same_steps() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.test", PW).await;
    let key = create_key(&owner, "tgp").await;
    app.tgp.register_app(API_ID, API_HASH);
    app.tgp
        .add_account("+79997776655", "Анна", None, Some(("секрет", "")));
    let (status, body) = api_step(&app, &key, json!({"tgp_api_id": "12x"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["fields"][0]["field"], "tgp_api_id", "{body}");
    let (status, body) = api_step(
        &app,
        &key,
        json!({"tgp_api_id": API_ID.to_string(), "tgp_api_hash": API_HASH, "tgp_phone": "+7 999 777-66-55"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["step"].as_str(), body["fields"][0].as_str()),
        (Some("code"), Some("tgp_code"))
    );
    let (status, body) = api_step(&app, &key, json!({"tgp_code": "12345x"})).await;
    assert_eq!(
        (status, body["error"]["fields"][0]["code"].as_str()),
        (422, Some("tgp_code_format")),
        "{body}"
    );
    let code = app.tgp.last_code("+79997776655").expect("code sent");
    let (status, body) = api_step(&app, &key, json!({"tgp_code": code})).await;
    assert_eq!(
        (status, body["step"].as_str()),
        (200, Some("password")),
        "{body}"
    );
    let (status, body) = api_step(&app, &key, json!({"tgp_password": "не тот"})).await;
    assert_eq!(
        (status, body["error"]["fields"][0]["code"].as_str()),
        (422, Some("tgp_password_invalid")),
        "{body}"
    );
    let (status, body) = api_step(&app, &key, json!({"tgp_password": "секрет"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["source"]["kind"], "telegram_private", "{body}");
    assert_eq!(count(&app, "SELECT count(*) FROM sources").await, 1);
}

/// The login in headless Chromium at `width`×`height`: chooser, pair and phone, code, 2FA
/// password with its hint, the connected account's page; no page scrolls sideways.
async fn login_in_a_browser(size: &str, width: u32, height: u32) {
    use chatter_testkit::Browser;
    use std::time::Duration;
    if !Browser::available_or_skip() {
        return;
    }
    let wait = Duration::from_secs(20);
    let app = TestApp::new().await;
    app.tgp.register_app(API_ID, API_HASH);
    app.tgp.add_account(
        "+79991230000",
        "Вера",
        Some("vera_shop"),
        Some(("пароль-Веры", "девичья фамилия")),
    );
    let b = Browser::start(width, height).await.expect("browser starts");
    let at = |path: &str| format!("{}{path}", app.url);
    let shot = |step: &str| format!("tgp-{size}-{step}");
    b.goto(&at("/sign-up")).await.expect("sign-up page");
    b.fill("input[name=company_name]", "Лавка Веры")
        .await
        .expect("fill");
    b.fill("input[name=name]", "Вера").await.expect("fill");
    b.fill("input[name=email]", "vera@lavka.test")
        .await
        .expect("fill");
    b.fill("input[name=password]", PW).await.expect("fill");
    b.click("#sign-up-submit").await.expect("sign up");
    b.wait_path(|p| p == "/app", wait).await.expect("dashboard");
    b.goto(&at("/app/sources/new")).await.expect("chooser");
    b.click("#choose-2").await.expect("«Личный Telegram»");
    b.wait_path(|p| p == LOGIN, wait)
        .await
        .expect("the login page");
    b.fill("#field-tgp_api_id", &API_ID.to_string())
        .await
        .expect("fill");
    b.fill("#field-tgp_api_hash", API_HASH).await.expect("fill");
    b.fill("#field-tgp_phone", "+7 (999) 123-00-00")
        .await
        .expect("fill");
    b.screenshot(&shot("1-start")).await.expect("shot");
    let (scroll, inner) = b.widths().await.expect("widths");
    assert!(
        scroll <= inner,
        "the login page scrolls sideways: {scroll} > {inner}"
    );
    b.click("#login-submit").await.expect("send the code");
    b.wait_for("[data-step=code]", wait)
        .await
        .expect("the code step");
    let code = app.tgp.last_code("+79991230000").expect("code sent");
    b.fill("#field-tgp_code", &code).await.expect("fill");
    b.click("#login-submit").await.expect("code");
    b.wait_for("[data-step=password]", wait)
        .await
        .expect("the password step");
    let hint = b.text("#login-hint").await.expect("hint");
    assert!(hint.contains("девичья фамилия"), "{hint}");
    b.screenshot(&shot("2-password")).await.expect("shot");
    b.fill("#field-tgp_password", "пароль-Веры")
        .await
        .expect("fill");
    b.click("#login-submit").await.expect("password");
    b.wait_path(
        |p| p.starts_with("/app/sources/") && !p.contains("/new"),
        wait,
    )
    .await
    .expect("the source's page");
    let page = b.page_source().await.expect("page");
    assert!(page.contains("vera_shop"), "{page}");
    b.screenshot(&shot("3-connected")).await.expect("shot");
    let (scroll, inner) = b.widths().await.expect("widths");
    assert!(
        scroll <= inner,
        "the source's page scrolls sideways: {scroll} > {inner}"
    );
    b.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_works_in_a_browser_at_desktop_width() {
    login_in_a_browser("desktop", 1280, 800).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_works_in_a_browser_at_phone_width() {
    login_in_a_browser("phone", 390, 844).await;
}
