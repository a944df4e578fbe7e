//! Scheduled replies (issue 14, item 5), on a manual clock and the database the run uses: a
//! reply scheduled through the API reaches the Telegram customer once at its time and not
//! before, a cancelled one never; «when working hours start» on a Saturday goes out on Monday
//! at 09:00 in the hours' zone; two more job runtimes over the same database (nodes) still
//! send once, and a send raced by a cancel is one or the other; WhatsApp's window closing
//! meanwhile fails visibly with the reason; bad input is refused naming the field, through the
//! API and the reply box, with nothing stored.

use crate::api::create_key;
use crate::messages::{company_with_bot, count, eventually, location};
use crate::notes::first_conversation;
use chatter_core::jobs::worker::{self, Registry, WorkerConfig};
use chatter_core::jobs::BackgroundJob;
use chatter_core::scheduled::SendScheduled;
use chatter_fakes::CustomerMessage;
use chatter_store::entity::{conversation, scheduled_reply};
use chatter_testkit::{Session, TestApp};
use sea_orm::EntityTrait;
use serde_json::{json, Value};
use uuid::Uuid;

/// Monday 7 December 2026, 10:00 in Moscow (07:00 UTC).
const MONDAY_10_MSK: i64 = 1_796_626_800_000;

/// (days after Monday 7 December 2026, hour, minute) in Moscow (UTC+3), as Unix ms.
fn msk((day, hour, minute): (i64, i64, i64)) -> i64 {
    MONDAY_10_MSK + ((day * 24 + hour - 10) * 60 + minute) * 60_000
}

async fn call(
    app: &TestApp,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = match method {
        "POST" => app.client().post(app.at(path)),
        "PUT" => app.client().put(app.at(path)),
        "DELETE" => app.client().delete(app.at(path)),
        _ => app.client().get(app.at(path)),
    }
    .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The texts the bot sent.
fn sent(app: &TestApp, token: &str) -> Vec<String> {
    app.telegram
        .sent(token)
        .into_iter()
        .filter_map(|m| m.text)
        .collect()
}

/// A normal reply sent at once, waited for until the customer has it: every job due before it
/// has been claimed by then.
async fn barrier(app: &TestApp, s: &Session, token: &str, conv: &str, text: &str) {
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/reply"),
            &[("text", text)],
        )
        .await;
    assert_eq!(r.status(), 303);
    eventually(text, || async {
        sent(app, token).iter().any(|t| t == text)
    })
    .await;
}

/// A company with a Telegram bot, a customer's conversation and an API key, at `at`.
async fn setup(app: &TestApp, at: i64) -> (Session, String, String, String) {
    app.clock.as_ref().expect("manual clock").set(at);
    let (s, token, _) = company_with_bot(app).await;
    app.telegram
        .customer_writes(&token, CustomerMessage::text(7001, "Иван", "Когда счёт?"));
    let conv = first_conversation(&s).await;
    let key = create_key(&s, "Планировщик").await;
    (s, token, conv, key)
}

fn weekdays_9_to_18() -> Value {
    let day = json!([{"from": "09:00", "to": "18:00"}]);
    json!({"zone": "Europe/Moscow", "week": {"mon": day, "tue": day, "wed": day, "thu": day,
        "fri": day, "sat": [], "sun": []}, "days": []})
}

#[tokio::test]
async fn a_scheduled_reply_goes_once_at_its_time_and_a_cancelled_one_never() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    let (s, token, conv, key) = setup(&app, MONDAY_10_MSK).await;
    let path = format!("/api/v1/conversations/{conv}/scheduled");

    let (st, due) = call(
        &app,
        &key,
        "POST",
        &path,
        Some(json!({"text": "Счёт готов, отправили на почту", "send_at": "2026-12-07T12:00"})),
    )
    .await;
    assert_eq!(st, 201, "{due}");
    assert_eq!(due["send_at"], msk((0, 12, 0)), "read in Moscow: {due}");
    assert_eq!(due["send_at_local"], "2026-12-07T12:00:00+03:00");
    assert_eq!(due["zone"], "Europe/Moscow");
    assert_eq!(due["status"], "pending");
    let (st, dropped) = call(
        &app,
        &key,
        "POST",
        &path,
        Some(json!({"text": "Этот не нужен", "send_at": "2026-12-07T11:00:00+03:00"})),
    )
    .await;
    assert_eq!(st, 201, "{dropped}");

    // Both listed, on the conversation (with who and when) and for the company.
    let page = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(page.contains("id=\"scheduled-list\""), "{page}");
    assert!(page.contains("Счёт готов, отправили на почту"), "{page}");
    assert!(page.contains("07.12.2026 12:00"), "{page}");
    assert!(
        page.contains("Время по часовому поясу Europe/Moscow"),
        "{page}"
    );
    let (st, all) = call(&app, &key, "GET", "/api/v1/scheduled?cursor=&limit=1", None).await;
    assert_eq!(st, 200, "{all}");
    assert_eq!(all["items"][0]["id"], dropped["id"], "soonest first: {all}");
    let next = all["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, rest) = call(
        &app,
        &key,
        "GET",
        &format!("/api/v1/scheduled?cursor={next}&limit=1"),
        None,
    )
    .await;
    assert_eq!(rest["items"][0]["id"], due["id"], "{rest}");
    assert_eq!(rest["next_cursor"], Value::Null);

    // Cancelled: never sent, and cancelling twice is a conflict.
    let gone = format!("/api/v1/scheduled/{}", dropped["id"].as_str().expect("id"));
    let (st, c) = call(&app, &key, "DELETE", &gone, None).await;
    assert_eq!((st, c["status"].as_str()), (200, Some("cancelled")), "{c}");
    let (st, _) = call(&app, &key, "DELETE", &gone, None).await;
    assert_eq!(st, 409);

    // 11:59: past the cancelled one's time, before the other's: nothing of theirs goes.
    clock.set(msk((0, 11, 59)));
    barrier(&app, &s, &token, &conv, "Минутку").await;
    assert_eq!(sent(&app, &token), ["Минутку"]);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM scheduled_replies WHERE status = 'pending'"
        )
        .await,
        1
    );

    // 12:00: it goes once, as a normal reply authored by Anna.
    clock.set(msk((0, 12, 0)));
    eventually("the scheduled reply arrives", || async {
        sent(&app, &token)
            .iter()
            .any(|t| t == "Счёт готов, отправили на почту")
    })
    .await;
    barrier(&app, &s, &token, &conv, "Что-нибудь ещё?").await;
    assert_eq!(
        sent(&app, &token),
        [
            "Минутку",
            "Счёт готов, отправили на почту",
            "Что-нибудь ещё?"
        ],
        "each once, the cancelled one never"
    );
    let (_, listed) = call(&app, &key, "GET", &path, None).await;
    assert_eq!(listed, json!([]), "nothing left to send");
    // Authored by whoever scheduled it (here the API key).
    let author = due["author_name"].as_str().expect("author");
    assert!(author.contains("Планировщик"), "{due}");
    assert_eq!(
        count(&app, &format!("SELECT count(*) FROM messages WHERE direction = 'out' AND sender_name = '{author}' \
                     AND text = 'Счёт готов, отправили на почту' AND status = 'sent'")).await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM scheduled_replies WHERE status = 'sent' AND message_id IS NOT NULL").await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action LIKE 'scheduled.%'"
        )
        .await,
        3
    );
}

#[tokio::test]
async fn when_hours_start_on_a_saturday_it_goes_out_on_monday_at_nine_in_the_zone() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    let saturday_noon = msk((-2, 12, 0));
    let (s, token, conv, key) = setup(&app, saturday_noon).await;
    let path = format!("/api/v1/conversations/{conv}/scheduled");

    // No hours yet: the box says so, and «when hours start» is refused naming `when`.
    let page = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(page.contains("Рабочие часы не заданы"), "{page}");
    assert!(!page.contains("id=\"schedule-hours\""), "{page}");
    let (st, b) = call(
        &app,
        &key,
        "POST",
        &path,
        Some(json!({"text": "Ответим", "when": "hours_open"})),
    )
    .await;
    assert_eq!(
        (
            st,
            b["fields"][0]["field"].as_str(),
            b["fields"][0]["code"].as_str()
        ),
        (422, Some("when"), Some("scheduled_no_hours")),
        "{b}"
    );

    let (st, b) = call(
        &app,
        &key,
        "PUT",
        "/api/v1/working-hours",
        Some(weekdays_9_to_18()),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let page = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(
        page.contains("Рабочее время начнётся 07.12.2026 09:00"),
        "{page}"
    );
    assert!(page.contains("id=\"schedule-hours\""), "{page}");

    // From the reply box without a script: the button's own form action.
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/scheduled"),
            &[
                ("text", "Доброе утро! Счёт во вложении."),
                ("when", "hours_open"),
                ("send_at", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), format!("/app/inbox/{conv}"));
    let (_, listed) = call(&app, &key, "GET", &path, None).await;
    assert_eq!(
        listed[0]["send_at"],
        msk((0, 9, 0)),
        "Monday 09:00 Moscow, stored: {listed}"
    );
    assert_eq!(listed[0]["mode"], "hours_open");
    assert_eq!(listed[0]["author_name"], "Анна");
    let page = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(
        page.contains("07.12.2026 09:00</time> (начало рабочего времени)"),
        "{page}"
    );

    clock.set(msk((0, 8, 59)));
    barrier(&app, &s, &token, &conv, "Мы на связи с понедельника").await;
    assert_eq!(sent(&app, &token), ["Мы на связи с понедельника"]);
    clock.set(msk((0, 9, 0)));
    eventually("Monday 09:00 it goes", || async {
        sent(&app, &token)
            .iter()
            .any(|t| t == "Доброе утро! Счёт во вложении.")
    })
    .await;

    // Open now: said so, and «when hours start» is refused with the advice to send now.
    let page = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(page.contains("Сейчас рабочее время"), "{page}");
    let (st, b) = call(
        &app,
        &key,
        "POST",
        &path,
        Some(json!({"text": "Ещё", "when": "hours_open"})),
    )
    .await;
    assert_eq!(
        (st, b["fields"][0]["code"].as_str()),
        (422, Some("scheduled_open_now")),
        "{b}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_scheduled() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let (s, _, conv, key) = setup(&app, MONDAY_10_MSK).await;
    let path = format!("/api/v1/conversations/{conv}/scheduled");
    let long = "я".repeat(20_001);
    for (body, field, code) in [
        (
            json!({"text": "Поздно", "send_at": "2026-12-07T09:59"}),
            "send_at",
            "scheduled_past",
        ),
        (
            json!({"text": "Рано", "send_at": "2027-12-08T10:00"}),
            "send_at",
            "scheduled_too_far",
        ),
        (
            json!({"text": "Когда?", "send_at": "завтра"}),
            "send_at",
            "scheduled_time",
        ),
        (
            json!({"text": "   ", "send_at": "2026-12-07T12:00"}),
            "text",
            "required",
        ),
        (
            json!({"text": long, "send_at": "2026-12-07T12:00"}),
            "text",
            "too_long",
        ),
        (
            json!({"text": "Без времени"}),
            "send_at",
            "scheduled_send_at_or_when",
        ),
        (
            json!({"text": "Как-нибудь", "when": "someday"}),
            "when",
            "scheduled_when",
        ),
    ] {
        let (st, b) = call(&app, &key, "POST", &path, Some(body.clone())).await;
        assert_eq!(st, 422, "{body}: {b}");
        assert_eq!(b["fields"][0]["field"], field, "{b}");
        assert_eq!(b["fields"][0]["code"], code, "{b}");
    }
    let (st, _) = call(
        &app,
        &key,
        "POST",
        &format!("/api/v1/conversations/{}/scheduled", Uuid::now_v7()),
        Some(json!({"text": "Чужой", "send_at": "2026-12-07T12:00"})),
    )
    .await;
    assert_eq!(st, 404);

    // The reply box: the reason in Russian at the box, the draft kept, nothing stored.
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/scheduled"),
            &[
                ("text", "Перезвоню"),
                ("when", "at"),
                ("send_at", "2026-12-07T09:00"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.expect("body");
    assert!(html.contains("id=\"reply-refused\""), "{html}");
    assert!(
        html.contains("Это время уже прошло. Выберите время в будущем."),
        "{html}"
    );
    assert!(
        html.contains(">Перезвоню</textarea>"),
        "the draft is kept: {html}"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM scheduled_replies").await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM jobs WHERE kind = 'send_scheduled'"
        )
        .await,
        0
    );
}

/// Job runtimes over the app's database, as other nodes run them.
fn nodes(
    app: &TestApp,
    n: usize,
) -> (
    tokio::sync::watch::Sender<bool>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let tasks = (0..n)
        .map(|_| {
            let cfg = WorkerConfig {
                concurrency: 4,
                lease_ms: 30_000,
                poll_ms: 20,
                ..Default::default()
            };
            tokio::spawn(worker::run(
                app.core.clone(),
                Registry::standard(),
                cfg,
                rx.clone(),
            ))
        })
        .collect();
    (stop, tasks)
}

#[tokio::test]
async fn three_nodes_send_once_and_a_send_raced_by_a_cancel_is_one_or_the_other() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    let (s, token, conv, key) = setup(&app, MONDAY_10_MSK).await;
    let path = format!("/api/v1/conversations/{conv}/scheduled");
    let (stop, tasks) = nodes(&app, 2);
    let (st, b) = call(
        &app,
        &key,
        "POST",
        &path,
        Some(json!({"text": "Один раз", "send_at": "2026-12-07T10:30"})),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    clock.set(msk((0, 10, 30)));
    eventually("sent", || async {
        sent(&app, &token).iter().any(|t| t == "Один раз")
    })
    .await;
    barrier(&app, &s, &token, &conv, "Проверка").await;
    assert_eq!(
        sent(&app, &token),
        ["Один раз", "Проверка"],
        "once across three nodes"
    );
    let _ = stop.send(true);
    for t in tasks {
        t.await.expect("node stops");
    }

    // The job run twice at once (a lost lease), and a cancel racing the run: never both.
    let meta = |id: Uuid| chatter_store::jobs::Claimed {
        id: Uuid::now_v7(),
        company_id: None,
        kind: SendScheduled::NAME.into(),
        payload: json!({"scheduled_id": id}).to_string(),
        attempts: 1,
        max_attempts: 10,
        locked_by: "test/x".into(),
        prev_locked_by: None,
    };
    let owner = chatter_core::Actor {
        user_id: None,
        company_id: conversation::Entity::find()
            .one(&app.db.db)
            .await
            .expect("read")
            .expect("the conversation")
            .company_id,
        role: chatter_domain::Role::Owner,
        label: "test".into(),
        meta: Default::default(),
    };
    for round in 0..6 {
        let text = format!("Гонка {round}");
        let (st, b) = call(
            &app,
            &key,
            "POST",
            &path,
            Some(json!({"text": text, "send_at": "2026-12-07T11:00"})),
        )
        .await;
        assert_eq!(st, 201, "{b}");
        let id: Uuid = b["id"].as_str().expect("id").parse().expect("uuid");
        let job = SendScheduled { scheduled_id: id };
        let (m1, m2) = (meta(id), meta(id));
        let (a, b2, c) = tokio::join!(job.run(&app.core, &m1), job.run(&app.core, &m2), async {
            if round % 2 == 0 {
                Some(chatter_core::scheduled::cancel(&app.core, &owner, id).await)
            } else {
                None
            }
        });
        a.expect("runs");
        b2.expect("runs");
        let stored = count(
            &app,
            &format!("SELECT count(*) FROM messages WHERE text = '{text}'"),
        )
        .await;
        let status = scheduled_reply::Entity::find_by_id(id)
            .one(&app.db.db)
            .await
            .expect("read")
            .expect("the row")
            .status;
        match c {
            Some(Ok(_)) => assert_eq!((stored, status.as_str()), (0, "cancelled"), "round {round}"),
            Some(Err(_)) | None => {
                assert_eq!((stored, status.as_str()), (1, "sent"), "round {round}")
            }
        }
    }
    let _ = s;
}

#[tokio::test]
async fn a_whatsapp_reply_whose_window_closed_meanwhile_fails_with_the_reason() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    clock.set(now);
    let (s, number, _) = crate::whatsapp::company_with_whatsapp(&app).await;
    app.whatsapp
        .customer_writes(&number.phone_number_id, "79161234567", "Ирина", "Жду счёт");
    let conv = first_conversation(&s).await;
    let key = create_key(&s, "Планировщик").await;
    // As a person types it, in Moscow (no working hours are set).
    let at = chatter_core::scheduled::local_text(
        chatter_core::scheduled::DEFAULT_ZONE,
        now + 25 * 3600 * 1000,
    );
    let (st, b) = call(
        &app,
        &key,
        "POST",
        &format!("/api/v1/conversations/{conv}/scheduled"),
        Some(json!({"text": "Счёт завтра", "send_at": at})),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    clock.set(now + 25 * 3600 * 1000);
    eventually("it fails", || async {
        count(
            &app,
            "SELECT count(*) FROM scheduled_replies WHERE status = 'failed'",
        )
        .await
            == 1
    })
    .await;
    let (_, listed) = call(
        &app,
        &key,
        "GET",
        &format!("/api/v1/conversations/{conv}/scheduled"),
        None,
    )
    .await;
    assert_eq!(listed[0]["error"], "wa_window_closed", "{listed}");
    let page = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(
        page.contains("Не отправлен: С последнего сообщения клиента прошло больше 24 часов"),
        "{page}"
    );
    assert!(
        app.whatsapp
            .sent(&number.phone_number_id)
            .iter()
            .all(|m| m.text.as_deref() != Some("Счёт завтра")),
        "nothing reached WhatsApp"
    );
    // Dismissed from the conversation.
    let id = listed[0]["id"].as_str().expect("id");
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/scheduled/{id}/cancel"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(!s
        .html(&format!("/app/inbox/{conv}"))
        .await
        .contains("Счёт завтра"));
}

/// At 360 px, from the reply box: «send later» with a time, the reply listed above the box
/// (and one scheduled meanwhile by a colleague through the API appears without a reload), then
/// «cancel»: nothing goes, and nothing scrolls sideways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_and_cancelling_from_the_reply_box_at_360_px() {
    use crate::browser_inbox::Window;
    if !chatter_testkit::Browser::available_or_skip() {
        return;
    }
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    clock.set(MONDAY_10_MSK);
    let token = app.telegram.create_bot("romashka_shop_bot", "Ромашка");
    let w = Window::open(&app.url, "phone360-scheduled", 360, 740).await;
    w.sign_up_with_bot(&token).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(7002, "Мария", "Пришлите счёт"),
    );
    w.goto("/app/inbox").await;
    w.wait_text_in("li.conv", "Пришлите счёт").await;
    w.click("li.conv a").await;
    w.wait_path(|p| p.starts_with("/app/inbox/") && p.len() > "/app/inbox/".len())
        .await;
    let conv = w
        .browser
        .client()
        .current_url()
        .await
        .expect("url")
        .path()
        .rsplit('/')
        .next()
        .expect("id")
        .to_owned();

    w.fill("#reply-text", "Счёт пришлём в полдень").await;
    w.click("#send-later-toggle").await;
    w.browser
        .client()
        .execute(
            "document.getElementById('send-at').value = '2026-12-07T12:00'; return true;",
            vec![],
        )
        .await
        .expect("pick the time");
    w.shot("01-send-later").await;
    w.assert_no_sideways_scroll("the reply box with «send later»")
        .await;
    w.click("#schedule-at").await;
    w.wait_text_in("#scheduled-list", "Счёт пришлём в полдень")
        .await;
    w.wait_text_in("#scheduled-list", "07.12.2026 12:00").await;
    // In sight with the reply box, without scrolling (the box sticks to the screen's bottom).
    let in_sight = w
        .browser
        .client()
        .execute(
            "var r = document.querySelector('#scheduled-list li').getBoundingClientRect(); \
             return r.top >= 0 && r.bottom <= window.innerHeight;",
            vec![],
        )
        .await
        .expect("where the list is");
    assert_eq!(
        in_sight,
        serde_json::Value::Bool(true),
        "the scheduled reply is out of sight: {}",
        w.where_am_i().await
    );
    w.shot("02-scheduled").await;
    w.assert_no_sideways_scroll("the scheduled list").await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM scheduled_replies WHERE status = 'pending'"
        )
        .await,
        1
    );

    // A colleague schedules one through the API: it shows up here by itself.
    w.mark_page().await;
    let (s, _) = Session::sign_in(&app, "anna@romashka.test", "ромашка-пароль-42").await;
    let key = create_key(&s, "Коллега").await;
    let (st, b) = call(
        &app,
        &key,
        "POST",
        &format!("/api/v1/conversations/{conv}/scheduled"),
        Some(json!({"text": "И напомним вечером", "send_at": "2026-12-07T18:00"})),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    w.wait_text_in("#scheduled-list", "И напомним вечером")
        .await;
    w.assert_same_page("a colleague's scheduled reply").await;

    // Cancel the first (the confirmation answered yes).
    // The reply box stays at the bottom of a phone's screen: the list is scrolled to the top,
    // as a person scrolls up to it.
    w.browser
        .client()
        .execute(
            "window.confirm = function () { return true; }; \
             document.querySelector('#scheduled-list li').scrollIntoView({block: 'start'}); window.scrollBy(0, -90); \
             return true;",
            vec![],
        )
        .await
        .expect("answer the confirmation, scroll to the list");
    w.click("#scheduled-list li:first-child .scheduled-cancel")
        .await;
    let deadline = tokio::time::Instant::now() + crate::browser_inbox::WAIT;
    while w
        .texts("#scheduled-list li")
        .await
        .iter()
        .any(|t| t.contains("Счёт пришлём в полдень"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            w.where_am_i().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    w.shot("03-cancelled").await;
    w.assert_no_sideways_scroll("after cancelling").await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM scheduled_replies WHERE status = 'cancelled'"
        )
        .await,
        1
    );
    clock.set(msk((0, 12, 0)));
    barrier_api(&app, &key, &token, &conv, "Проверка").await;
    assert!(
        !sent(&app, &token).iter().any(|t| t.contains("полдень")),
        "cancelled: never sent"
    );
    w.close().await;
}

/// [`barrier`] through the API.
async fn barrier_api(app: &TestApp, key: &str, token: &str, conv: &str, text: &str) {
    let (st, b) = call(
        app,
        key,
        "POST",
        &format!("/api/v1/conversations/{conv}/messages"),
        Some(json!({"text": text})),
    )
    .await;
    assert!(st == 201 || st == 200, "{b}");
    eventually(text, || async {
        sent(app, token).iter().any(|t| t == text)
    })
    .await;
}
