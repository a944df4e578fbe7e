//! Notifications (issue 11, "Then" item 5): a new conversation tells everyone who sees it, an
//! assignment the assignee, a mention the mentioned; the bell counts them live and leads to the
//! conversation, also at phone width; the API lists and marks them; the daily digest mails the
//! unanswered conversations to those who opted in, once a day, and to nobody else.

use crate::api::create_key;
use crate::browser_inbox::{Window, WAIT};
use crate::messages::{company_with_bot, count, eventually, PW};
use crate::notes::first_conversation;
use crate::team::{join_new, user_id};
use chatter_core::jobs::{BackgroundJob, JobOptions};
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Browser, Session, TestApp};
use fantoccini::Locator;
use serde_json::{json, Value};
use std::time::Duration;

async fn api(app: &TestApp, key: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let req = match body {
        Some(b) => app.client().post(app.at(path)).json(&b),
        None => app.client().get(app.at(path)),
    };
    let r = req.bearer_auth(key).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn kinds(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["kind"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn bell_count(html: &str) -> String {
    html.split("id=\"bell-count\"")
        .nth(1)
        .and_then(|x| x.split('>').nth(1))
        .and_then(|x| x.split('<').next())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn new_conversations_assignments_and_mentions_notify_the_right_people_and_are_read_by_api() {
    let app = TestApp::new().await;
    let (anna, token, _) = company_with_bot(&app).await;
    let boris = join_new(&app, &anna, "boris@example.ru", "Борис", "manager").await;
    let boris_id = user_id(&app, "boris@example.ru").await;
    let anna_id = user_id(&app, "anna@example.ru").await;
    app.telegram
        .customer_writes(&token, CustomerMessage::text(5001, "Иван", "Добрый день"));
    let conv = first_conversation(&anna).await;
    let key = create_key(&anna, "интеграция").await;
    // Anna gives it to Boris, then mentions him in a note.
    let page = format!("/app/inbox/{conv}");
    let r = anna
        .post_from(
            &page,
            &format!("{page}/assign"),
            &[("assignee", &boris_id.to_string())],
        )
        .await;
    assert_eq!(r.status(), 303);
    let r = anna
        .post_from(
            &page,
            &format!("{page}/notes"),
            &[("text", "@Борис клиент ждёт звонка")],
        )
        .await;
    assert_eq!(r.status(), 303);

    let mine = format!("/api/v1/notifications?user_id={boris_id}");
    let (status, list) = api(&app, &key, &mine, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        kinds(&list),
        ["mention", "assigned", "new_conversation"],
        "newest first: {list}"
    );
    assert!(list
        .as_array()
        .expect("list")
        .iter()
        .all(|n| n["read"] == false));
    assert_eq!(list[0]["actor_name"], "Анна");
    assert_eq!(list[0]["conversation_id"], conv.as_str());
    assert_eq!(list[0]["conversation_title"], "Иван");
    // Anna assigned and wrote herself: only the new conversation is hers.
    let (_, hers) = api(
        &app,
        &key,
        &format!("/api/v1/notifications?user_id={anna_id}"),
        None,
    )
    .await;
    assert_eq!(kinds(&hers), ["new_conversation"]);

    // Pages.
    let (_, p1) = api(&app, &key, &format!("{mine}&cursor=&limit=2"), None).await;
    assert_eq!(kinds(&p1["items"]), ["mention", "assigned"]);
    let next = p1["next_cursor"].as_str().expect("more");
    let (_, p2) = api(&app, &key, &format!("{mine}&cursor={next}&limit=2"), None).await;
    assert_eq!(kinds(&p2["items"]), ["new_conversation"]);
    assert_eq!(p2["next_cursor"], Value::Null);

    // The bell on Boris's pages counts them; the title too.
    let dash = boris.html("/app").await;
    assert_eq!(bell_count(&dash), "3", "{dash}");
    assert!(dash.contains("<title>(3) "), "{dash}");

    // Browser notifications are off until the person turns them on; the chime is served.
    assert!(dash.contains("data-browser=\"\""), "off by default");
    let r = boris
        .post_from(
            "/app/profile",
            "/app/profile/notifications",
            &[("browser", "1")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(boris.html("/app").await.contains("data-browser=\"1\""));
    let wav = app
        .client()
        .get(app.at("/static/notify.wav"))
        .send()
        .await
        .expect("GET the chime");
    assert_eq!(wav.headers()["content-type"], "audio/wav");
    assert!(wav.bytes().await.expect("bytes").starts_with(b"RIFF"));

    // Bad input: names the field, changes nothing.
    let (status, body) = api(
        &app,
        &key,
        "/api/v1/notifications/read",
        Some(json!({"user_id": boris_id})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "ids");
    let (status, _) = api(&app, &key, "/api/v1/notifications", None).await;
    assert_eq!(status, 400, "the member is required");
    let other = Session::sign_up(&app, "Лютик", "Вера", "vera@lutik.test", PW).await;
    let vera_id = user_id(&app, "vera@lutik.test").await;
    let (status, body) = api(
        &app,
        &key,
        &format!("/api/v1/notifications?user_id={vera_id}"),
        None,
    )
    .await;
    assert_eq!(status, 422, "another company's member: {body}");
    assert_eq!(body["fields"][0]["field"], "user_id");
    let other_key = create_key(&other, "чужой").await;
    let (_, theirs) = api(
        &app,
        &other_key,
        &format!("/api/v1/notifications?user_id={vera_id}"),
        None,
    )
    .await;
    assert_eq!(
        theirs,
        json!([]),
        "nothing of the other company's conversations"
    );

    // Marked read: one by id, then all.
    let first = list[0]["id"].as_str().expect("id");
    let (status, r) = api(
        &app,
        &key,
        "/api/v1/notifications/read",
        Some(json!({"user_id": boris_id, "ids": [first]})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!({"marked": 1, "unread": 2}));
    let (_, r) = api(
        &app,
        &key,
        "/api/v1/notifications/read",
        Some(json!({"user_id": boris_id, "all": true})),
    )
    .await;
    assert_eq!(r, json!({"marked": 2, "unread": 0}));
    assert_eq!(bell_count(&boris.html("/app").await), "0");

    // Opening a conversation reads its notifications.
    assert_eq!(
        bell_count(&anna.html("/app").await),
        "0",
        "Anna opened the first one"
    );
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5002, "Ольга", "Есть размер M?"),
    );
    eventually("Anna hears of the new conversation", || async {
        bell_count(&anna.html("/app").await) == "1"
    })
    .await;
    let (_, hers) = api(
        &app,
        &key,
        &format!("/api/v1/notifications?user_id={anna_id}"),
        None,
    )
    .await;
    let olga = hers[0]["conversation_id"].as_str().expect("id").to_string();
    assert_eq!(hers[0]["conversation_title"], "Ольга");
    anna.html(&format!("/app/inbox/{olga}")).await;
    assert_eq!(bell_count(&anna.html("/app").await), "0");
}

#[tokio::test]
async fn the_digest_mails_the_unanswered_once_a_day_to_those_who_asked_only() {
    let app = TestApp::new().await;
    let (anna, token, _) = company_with_bot(&app).await;
    let boris = join_new(&app, &anna, "boris@example.ru", "Борис", "manager").await;
    let r = anna
        .post_from(
            "/app/profile",
            "/app/profile/notifications",
            &[("digest", "1")],
        )
        .await;
    assert_eq!(r.status(), 303);
    // Boris saves with both boxes unticked: off.
    let r = boris
        .post_from("/app/profile", "/app/profile/notifications", &[])
        .await;
    assert_eq!(r.status(), 303);
    assert!(anna
        .html("/app/profile")
        .await
        .contains("id=\"notify-digest\" checked"));
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5001, "Иван", "Где мой заказ?"),
    );
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5002, "Ольга", "Есть размер M?"),
    );
    eventually("two conversations", || async {
        count(&app, "SELECT count(*) FROM conversations").await == 2
    })
    .await;
    // Olga is answered: she is not waiting.
    let inbox = anna.html("/app/inbox").await;
    let olga = inbox
        .split("<li id=\"conv-")
        .skip(1)
        .find(|x| x.contains("Ольга"))
        .and_then(|x| x.split('"').next())
        .expect("Olga's row")
        .to_string();
    let r = anna
        .post_from(
            &format!("/app/inbox/{olga}"),
            &format!("/app/inbox/{olga}/reply"),
            &[("text", "Да, есть")],
        )
        .await;
    assert_eq!(r.status(), 303);

    chatter_core::digest::DailyDigest {}
        .enqueue(&app.core.db, JobOptions::at(app.core.now()))
        .await
        .expect("queue the digest");
    app.core.jobs_notify.notify_waiters();
    let is_digest = |m: &chatter_fakes::smtp::CapturedMail, to: &str| {
        m.to.iter().any(|t| t == to) && m.body.contains("/app/inbox/")
    };
    eventually("the digest reaches Anna", || async {
        app.smtp
            .messages()
            .iter()
            .any(|m| is_digest(m, "anna@example.ru"))
    })
    .await;
    let mail = app
        .smtp
        .messages()
        .into_iter()
        .find(|m| is_digest(m, "anna@example.ru"))
        .expect("the digest");
    assert!(mail.body.contains("Иван"), "{}", mail.body);
    assert!(mail.body.contains("Где мой заказ?"), "{}", mail.body);
    assert!(
        !mail.body.contains("Ольга"),
        "an answered one is not listed: {}",
        mail.body
    );
    assert!(mail.subject.contains("1"), "{}", mail.subject);
    // Once a day: a second run sends nothing more.
    assert_eq!(
        chatter_core::digest::send_due(&app.core)
            .await
            .expect("second run"),
        0
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let digests = |to: &str| {
        app.smtp
            .messages()
            .iter()
            .filter(|m| is_digest(m, to))
            .count()
    };
    assert_eq!(digests("anna@example.ru"), 1);
    assert_eq!(digests("boris@example.ru"), 0, "Boris did not ask for it");
}

/// Anna mentions Boris in a note; Boris, in his own browser on another page, sees the bell's
/// count rise without a reload, opens the bell and lands on the conversation with the note.
/// Both windows are phone-sized: the note tab and the bell work at 360 px.
#[tokio::test]
async fn a_mention_rings_the_teammates_bell_live_and_leads_to_the_note_at_phone_width() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let token = app.telegram.create_bot("romashka_bot", "Ромашка");
    let anna = Window::open(&app.url, "notes-anna", 360, 800).await;
    anna.sign_up_with_bot(&token).await;
    let (anna_http, _) = Session::sign_in(&app, "anna@romashka.test", "ромашка-пароль-42").await;
    join_new(&app, &anna_http, "boris@romashka.test", "Борис", "manager").await;
    app.telegram
        .customer_writes(&token, CustomerMessage::text(6001, "Мария", "Хочу букет"));
    let conv = first_conversation(&anna_http).await;

    let boris = Window::open(&app.url, "notes-boris", 360, 800).await;
    boris.goto("/sign-in").await;
    boris.fill("input[name=email]", "boris@romashka.test").await;
    boris.fill("input[name=password]", PW).await;
    boris.click("#sign-in-submit").await;
    boris.wait_path(|p| p == "/app").await;
    let before: u32 = boris
        .texts("#bell-count")
        .await
        .first()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    boris.mark_page().await;

    anna.goto(&format!("/app/inbox/{conv}")).await;
    anna.click("#tab-note").await;
    anna.fill("#note-text", "@Бор").await;
    anna.click("#mention-list button.mention[data-name=\"Борис\"]")
        .await;
    anna.browser
        .client()
        .find(Locator::Css("#note-text"))
        .await
        .expect("the note box")
        .send_keys("позвони Марии до обеда")
        .await
        .expect("type");
    let typed = anna
        .browser
        .client()
        .execute("return document.getElementById('note-text').value;", vec![])
        .await
        .expect("read the box");
    assert_eq!(typed, json!("@Борис позвони Марии до обеда"));
    anna.click("#note-send").await;
    anna.wait_text_in(".msg.note", "позвони Марии до обеда")
        .await;
    anna.wait_text_in(".msg.note .note-label", "видит только команда")
        .await;
    anna.assert_no_sideways_scroll("the thread with a note")
        .await;
    anna.shot("01-note-written").await;

    // Boris's bell rings where he is, without a reload.
    let want = (before + 1).to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = boris.texts("#bell-count").await;
        if now.first().map(|t| t.trim()) == Some(want.as_str()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bell shows {now:?}, not {want}\n{}",
            boris.where_am_i().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    boris.assert_same_page("the mention").await;
    let title = boris
        .browser
        .client()
        .execute("return document.title;", vec![])
        .await
        .expect("title");
    assert!(
        title
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("({want}) "))),
        "{title}"
    );
    boris.click("#bell").await;
    boris.wait_text_in("#panel-list li", "упоминает вас").await;
    boris.assert_no_sideways_scroll("the bell's panel").await;
    boris.shot("02-bell-open").await;
    boris.click("#panel-list li[data-kind=mention] a").await;
    boris.wait_path(|p| p == format!("/app/inbox/{conv}")).await;
    boris
        .wait_text_in(".msg.note", "позвони Марии до обеда")
        .await;
    boris.shot("03-the-note").await;
    assert!(
        app.telegram.sent(&token).iter().all(|m| !m
            .text
            .as_deref()
            .unwrap_or("")
            .contains("позвони")),
        "the customer's chat never shows the note"
    );
    boris.close().await;
    anna.close().await;
}

/// Stubs the browser's Notification API and `Audio`, recording what the page asks of them, and
/// makes the tab count as in the background (the notification and chime are for hidden tabs).
const STUB_NOTIFY: &str = "window.__notified = []; window.__chimes = [];
function N(title, opts) { window.__notified.push({title: title, body: (opts && opts.body) || ''}); }
N.permission = 'granted';
N.requestPermission = function () { return Promise.resolve('granted'); };
window.Notification = N;
window.Audio = function (src) { this.src = src; this.play = function () { window.__chimes.push(src); return Promise.resolve(); }; };
Object.defineProperty(document, 'visibilityState', {configurable: true, get: function () { return window.__visible ? 'visible' : 'hidden'; }});
return true;";

/// A manager with browser notifications on has the inbox open in a background tab: a new
/// customer writes, and without a reload the page calls the Notification API with the
/// customer's words, plays the chime and shows the bell's count and the notice in its panel.
/// With the tab in front, the next new customer rings the bell only.
#[tokio::test]
async fn a_new_customer_pops_a_browser_notification_and_a_chime_in_the_inbox() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let token = app.telegram.create_bot("romashka_bot", "Ромашка");
    let anna = Window::open(&app.url, "notify-anna", 1280, 900).await;
    anna.sign_up_with_bot(&token).await;
    let (anna_http, _) = Session::sign_in(&app, "anna@romashka.test", "ромашка-пароль-42").await;
    let r = anna_http
        .post_from(
            "/app/profile",
            "/app/profile/notifications",
            &[("browser", "1")],
        )
        .await;
    assert_eq!(r.status(), 303);

    anna.goto("/app/inbox").await;
    let page = anna.where_am_i().await;
    assert!(page.contains("/app/inbox"), "{page}");
    let client = anna.browser.client();
    let stubbed = client
        .execute(STUB_NOTIFY, vec![])
        .await
        .expect("stub the Notification API");
    assert_eq!(stubbed, json!(true));
    anna.mark_page().await;

    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(7001, "Вера", "Есть ли доставка сегодня?"),
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    let notified = loop {
        let n = client
            .execute("return window.__notified;", vec![])
            .await
            .expect("read the stub");
        if n.as_array().is_some_and(|a| !a.is_empty()) {
            break n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no browser notification\n{}",
            anna.where_am_i().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    anna.assert_same_page("the new customer").await;
    let first = &notified[0];
    let body = first["body"].as_str().unwrap_or_default();
    assert!(body.contains("Вера"), "the customer is named: {notified}");
    assert!(
        !first["title"].as_str().unwrap_or_default().is_empty(),
        "{notified}"
    );
    let chimes = client
        .execute("return window.__chimes;", vec![])
        .await
        .expect("read the chimes");
    assert_eq!(
        chimes,
        json!(["/static/notify.wav"]),
        "the chime played once"
    );
    // The notice on the page: the bell counts it and its panel lists it.
    let count: Vec<String> = anna.texts("#bell-count").await;
    assert_eq!(count.first().map(|c| c.trim()), Some("1"), "{count:?}");
    anna.click("#bell").await;
    anna.wait_text_in("#panel-list li", "Вера").await;
    anna.shot("01-notified").await;

    // In front, a new customer rings the bell but pops nothing and plays nothing.
    client
        .execute("window.__visible = true; return true;", vec![])
        .await
        .expect("bring the tab to the front");
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(7002, "Глеб", "Сколько стоит букет?"),
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = anna.texts("#bell-count").await;
        if now.first().map(|t| t.trim()) == Some("2") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bell shows {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n = client
        .execute(
            "return [window.__notified.length, window.__chimes.length];",
            vec![],
        )
        .await
        .expect("read the stub");
    assert_eq!(n, json!([1, 1]), "nothing popped with the tab in front");
}
