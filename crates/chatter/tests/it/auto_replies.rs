//! Auto-replies (issue 14, items 2, 3 and 6) on the manual clock: each trigger on a Telegram
//! customer with its once-per-period limit, the thread's system line and the automatic badge;
//! the greeting on every kind's fake; bad rules refused field by field with nothing stored; the
//! "no answer" timer cancelled by a manager's answer from Chatter and from amoCRM, firing once
//! otherwise, surviving a restart and firing once with two nodes; the loop guard against a bot
//! that answers every auto-reply; WhatsApp's closed window skipped with its reason; the dry run.

use crate::api::{api, create_key};
use crate::api_source::{company_with_api_source, message_body, now_secs, post_signed};
use crate::crm_sync::connected;
use crate::messages::{company_with_bot, count, eventually};
use crate::telegram::conversation_with;
use chatter_core::jobs::worker::{self, Registry, WorkerConfig};
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Session, TestApp};
use serde_json::{json, Value};

/// Monday 7 December 2026, 10:00 in Moscow (07:00 UTC).
pub(crate) const MONDAY_10_MSK: i64 = 1_796_626_800_000;
pub(crate) const MINUTE: i64 = 60_000;

async fn send(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let r = app
        .client()
        .request(method, app.at(path))
        .header("authorization", format!("Bearer {key}"))
        .json(body)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Creates a rule through the API; returns its id.
pub(crate) async fn rule(app: &TestApp, key: &str, body: Value) -> String {
    let (status, out) = send(
        app,
        key,
        reqwest::Method::POST,
        "/api/v1/auto-replies",
        &body,
    )
    .await;
    assert_eq!(status, 201, "{out}");
    out["id"].as_str().expect("id").to_string()
}

pub(crate) fn reply(name: &str, trigger: Value, text: &str) -> Value {
    json!({"name": name, "trigger": trigger, "actions": [{"type": "reply", "text": text}]})
}

/// Mon–Fri 09:00–18:00 in Moscow.
pub(crate) async fn office_hours(app: &TestApp, key: &str) {
    let day = json!([{"from": "09:00", "to": "18:00"}]);
    let hours = json!({"zone": "Europe/Moscow",
        "week": {"mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": [], "sun": []}, "days": []});
    let (status, body) = send(
        app,
        key,
        reqwest::Method::PUT,
        "/api/v1/working-hours",
        &hours,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Waits until `n` auto-reply checks have run.
async fn checked(app: &TestApp, n: i64) {
    eventually(&format!("{n} auto-reply checks ran"), || async {
        count(
            app,
            "SELECT count(*) FROM jobs WHERE kind = 'auto_reply_check' AND status = 'done'",
        )
        .await
            >= n
    })
    .await;
}

async fn timers_done(app: &TestApp, n: i64) {
    eventually(&format!("{n} no-answer timers ran"), || async {
        count(
            app,
            "SELECT count(*) FROM jobs WHERE kind = 'auto_reply_no_answer' AND status = 'done'",
        )
        .await
            >= n
    })
    .await;
}

fn times_sent(app: &TestApp, token: &str, text: &str) -> usize {
    app.telegram
        .sent(token)
        .iter()
        .filter(|m| m.text.as_deref() == Some(text))
        .count()
}

const GREETING: &str = "Здравствуйте! Менеджер ответит в течение 15 минут.";
/// With a variable, as a reply template has: the customer gets their name in its place.
const CLOSED: &str = "{client_name|Клиент}, мы работаем с 9 до 18 по Москве и ответим утром.";
const CLOSED_SENT: &str = "Иван, мы работаем с 9 до 18 по Москве и ответим утром.";
const DELIVERY: &str = "Доставка 300 ₽, бесплатно от 3000 ₽.";

#[tokio::test]
async fn each_trigger_fires_on_a_telegram_customer_once_per_period() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    clock.set(MONDAY_10_MSK);
    let (s, token, _) = company_with_bot(&app).await;
    let key = create_key(&s, "auto").await;
    office_hours(&app, &key).await;
    rule(
        &app,
        &key,
        reply("Нерабочее время", json!({"type": "out_of_hours"}), CLOSED),
    )
    .await;
    let mut kw = reply("Доставка", json!({"type": "keywords"}), DELIVERY);
    kw["conditions"] = json!({"keywords": ["доставка"], "exclude": ["самовывоз"]});
    rule(&app, &key, kw).await;
    rule(
        &app,
        &key,
        reply("Приветствие", json!({"type": "first_message"}), GREETING),
    )
    .await;
    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    let writes = |text: &str| {
        app.telegram
            .customer_writes(&token, CustomerMessage::text(5001, "Иван", text));
    };

    // Monday 10:00, open: a new customer is greeted.
    writes("Добрый день");
    eventually("the greeting", || async {
        times_sent(&app, &token, GREETING) == 1
    })
    .await;
    // A keyword in any form; once an hour.
    writes("Сколько стоит доставку в Химки?");
    eventually("the keyword reply", || async {
        times_sent(&app, &token, DELIVERY) == 1
    })
    .await;
    clock.advance(10 * MINUTE);
    writes("А доставка завтра возможна?");
    writes("Или самовывоз");
    checked(&app, 4).await;
    assert_eq!(times_sent(&app, &token, DELIVERY), 1, "once an hour");
    assert_eq!(
        times_sent(&app, &token, GREETING),
        1,
        "the greeting once ever"
    );

    // Monday 20:00, closed: out of hours, once a day.
    clock.set(MONDAY_10_MSK + 10 * 60 * MINUTE);
    writes("Вы ещё работаете?");
    eventually("the out-of-hours reply", || async {
        times_sent(&app, &token, CLOSED_SENT) == 1
    })
    .await;
    clock.advance(30 * MINUTE);
    writes("Алло");
    checked(&app, 6).await;
    assert_eq!(times_sent(&app, &token, CLOSED_SENT), 1, "once a day");

    // The thread says what fired, and the replies carry the automatic badge.
    let conv = conversation_with(&s, "Алло").await;
    let thread = s.html(&format!("/app/inbox/{conv}")).await;
    for line in [
        "Автоответ «Приветствие» отправлен",
        "Автоответ «Доставка» отправлен",
        "Автоответ «Нерабочее время» отправлен",
    ] {
        assert!(thread.contains(line), "{line}: {thread}");
    }
    assert_eq!(
        thread.matches("class=\"auto-badge\"").count(),
        3,
        "{thread}"
    );
    assert!(
        thread.contains("«Приветствие» <span class=\"auto-badge\">автоответ</span>"),
        "the author says automatic: {thread}"
    );
    s.get("/lang/en").await;
    let thread = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(
        thread.contains("Auto-reply “Нерабочее время” sent"),
        "{thread}"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'auto_reply.create'"
        )
        .await,
        3
    );
    app.stop().await;
}

async fn dashboard(app: &TestApp, key: &str) -> Value {
    let (status, d) = send(
        app,
        key,
        reqwest::Method::GET,
        "/api/v1/dashboard",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{d}");
    d
}

/// A greeting answers nobody's question: the conversation stays unread and waiting on the
/// dashboard, and the first response is the manager's answer, not the greeting.
#[tokio::test]
async fn an_auto_reply_is_no_answer_the_customer_still_waits_for_a_person() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    clock.set(MONDAY_10_MSK);
    let (s, token, _) = company_with_bot(&app).await;
    let key = create_key(&s, "auto").await;
    rule(
        &app,
        &key,
        reply("Приветствие", json!({"type": "first_message"}), GREETING),
    )
    .await;
    app.telegram
        .customer_writes(&token, CustomerMessage::text(5002, "Пётр", "Нужен счёт"));
    eventually("the greeting", || async {
        times_sent(&app, &token, GREETING) == 1
    })
    .await;
    let conv = conversation_with(&s, "Пётр").await;
    let d = dashboard(&app, &key).await;
    assert_eq!(d["waiting"], 1, "the greeting ended no wait: {d}");
    assert_eq!(d["first_response"]["answered"], 0, "{d}");
    let (_, list) = send(
        &app,
        &key,
        reqwest::Method::GET,
        "/api/v1/conversations",
        &Value::Null,
    )
    .await;
    assert_eq!(list[0]["id"], conv.as_str(), "{list}");
    assert_eq!(
        list[0]["unread"], 1,
        "still unread for the managers: {list}"
    );

    // Three minutes later a manager answers: that is the first response.
    clock.advance(3 * MINUTE);
    let (status, out) = send(
        &app,
        &key,
        reqwest::Method::POST,
        &format!("/api/v1/conversations/{conv}/messages"),
        &json!({"text": "Пётр, счёт пришлю через час."}),
    )
    .await;
    assert_eq!(status, 201, "{out}");
    let d = dashboard(&app, &key).await;
    assert_eq!(d["waiting"], 0, "{d}");
    assert_eq!(d["first_response"]["answered"], 1, "{d}");
    assert_eq!(d["first_response"]["median_ms"], 3 * MINUTE, "{d}");

    // Repairing the facts from the messages alone gives the same.
    chatter_store::figures::backfill(&app.core.db)
        .await
        .expect("backfill");
    let d2 = dashboard(&app, &key).await;
    assert_eq!(d2["first_response"], d["first_response"]);
    assert_eq!(d2["waiting"], 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_rules_are_refused_field_by_field_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let (s, _, _) = company_with_bot(&app).await;
    let key = create_key(&s, "auto").await;
    let ok = reply("Правило", json!({"type": "first_message"}), "Здравствуйте");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = ok.clone();
        f(&mut b);
        b
    };
    let nobody = "00000000-0000-7000-8000-000000000000";
    for (body, field, code) in [
        (
            with(&|b| b["actions"] = json!([])),
            "actions",
            "auto_action_required",
        ),
        (
            with(&|b| b["trigger"] = json!({"type": "no_answer", "minutes": 0})),
            "delay",
            "auto_delay_range",
        ),
        (
            with(&|b| b["trigger"] = json!({"type": "no_answer", "minutes": 10081})),
            "delay",
            "auto_delay_range",
        ),
        (
            with(&|b| b["trigger"] = json!({"type": "keywords"})),
            "keywords",
            "auto_keywords_required",
        ),
        (
            with(&|b| b["conditions"] = json!({"regex": "(цена"})),
            "regex",
            "auto_regex",
        ),
        (
            with(&|b| b["sources"] = json!([nobody])),
            "sources",
            "auto_source_unknown",
        ),
        (
            with(&|b| b["actions"] = json!([{"type": "assign", "users": [nobody]}])),
            "assign",
            "auto_user_unknown",
        ),
        (
            with(&|b| b["actions"] = json!([{"type": "add_labels", "labels": [nobody]}])),
            "labels",
            "label_unknown",
        ),
        (
            with(&|b| b["name"] = json!("  ")),
            "name",
            "auto_name_required",
        ),
        (
            with(&|b| b["name"] = json!("Ночь\u{202e}")),
            "name",
            "bidi_chars",
        ),
        (
            with(&|b| b["conditions"] = json!({"keywords": ["ц".repeat(101)]})),
            "keywords",
            "too_long",
        ),
        (
            with(&|b| b["actions"] = json!([{"type": "reply", "text": "Привет\u{1b}[31m"}])),
            "reply",
            "control_chars",
        ),
        (
            with(&|b| {
                b["actions"] = json!([{"type": "reply", "text": "Здравствуйте, {client_name"}])
            }),
            "reply",
            "template_unclosed",
        ),
        (
            with(&|b| b["actions"] = json!([{"type": "reply", "text": "Здравствуйте, {имя}"}])),
            "reply",
            "template_unknown_var",
        ),
    ] {
        let (status, out) = send(
            &app,
            &key,
            reqwest::Method::POST,
            "/api/v1/auto-replies",
            &body,
        )
        .await;
        assert_eq!(status, 422, "{field}: {out}");
        let fields = out["error"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            fields
                .iter()
                .any(|f| f["field"] == field && f["code"] == code),
            "{field}/{code}: {out}"
        );
    }
    // The form says it in Russian, by the field, and keeps what was typed.
    let r = s
        .post_from(
            "/app/automation/replies/new",
            "/app/automation/replies",
            &[
                ("name", "Нет ответа"),
                ("trigger", "no_answer"),
                ("delay", "0"),
                ("reply", "Скоро ответим"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("page");
    assert!(
        page.contains("data-field=\"delay\">Укажите задержку от 1 минуты до 7 дней"),
        "{page}"
    );
    assert!(page.contains("Скоро ответим"), "{page}");
    let r = s
        .post_from(
            "/app/automation/replies/new",
            "/app/automation/replies",
            &[("name", "Пусто"), ("trigger", "first_message")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("page");
    assert!(
        page.contains("data-field=\"actions\">Правилу нужно действие"),
        "{page}"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM auto_replies").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action LIKE 'auto_reply.%'"
        )
        .await,
        0
    );
    app.stop().await;
}

const BUSY: &str = "Все менеджеры заняты, ответим в течение часа.";

#[tokio::test]
async fn the_no_answer_timer_is_cancelled_by_an_answer_from_amocrm_or_chatter_and_fires_once() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    clock.set(MONDAY_10_MSK);
    let (s, token, _, account) = connected(&app).await;
    let key = create_key(&s, "auto").await;
    rule(
        &app,
        &key,
        reply(
            "Нет ответа",
            json!({"type": "no_answer", "minutes": 5}),
            BUSY,
        ),
    )
    .await;
    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    let writes = |text: &str| {
        app.telegram
            .customer_writes(&token, CustomerMessage::text(5001, "Иван", text));
    };

    // A manager answers inside amoCRM within the five minutes: nothing fires.
    writes("Есть ли размер M?");
    checked(&app, 1).await;
    eventually("the chat is in amoCRM", || async {
        !app.amo.chats(account).is_empty()
    })
    .await;
    let chat = app.amo.chats(account)[0]["id"]
        .as_str()
        .expect("chat")
        .to_string();
    let status = app
        .amo
        .manager_replies(account, &chat, "Есть, отправим сегодня")
        .await
        .expect("hook");
    assert_eq!(status, 200);
    eventually("the answer is stored", || async {
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'out'",
        )
        .await
            == 1
    })
    .await;
    clock.advance(6 * MINUTE);
    timers_done(&app, 1).await;
    assert_eq!(
        times_sent(&app, &token, BUSY),
        0,
        "answered from amoCRM: no auto-reply"
    );

    // A manager answers in Chatter: nothing fires either.
    writes("А цвет синий есть?");
    checked(&app, 2).await;
    let conv = conversation_with(&s, "цвет синий").await;
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/reply"),
            &[("text", "Есть")],
        )
        .await;
    assert_eq!(r.status(), 303);
    clock.advance(6 * MINUTE);
    timers_done(&app, 2).await;
    assert_eq!(
        times_sent(&app, &token, BUSY),
        0,
        "answered in Chatter: no auto-reply"
    );

    // Nobody answers: it fires once, five minutes after the message, and only once.
    writes("Ау?");
    checked(&app, 3).await;
    clock.advance(4 * MINUTE);
    assert_eq!(times_sent(&app, &token, BUSY), 0, "not before its time");
    clock.advance(2 * MINUTE);
    eventually("the no-answer reply", || async {
        times_sent(&app, &token, BUSY) == 1
    })
    .await;
    clock.advance(60 * MINUTE);
    writes("Ау-у?");
    checked(&app, 4).await;
    clock.advance(6 * MINUTE);
    eventually("the second unanswered message gets its reply", || async {
        times_sent(&app, &token, BUSY) == 2
    })
    .await;
    // amoCRM's chat shows the automatic message under the automatic author.
    eventually("amoCRM sees it as automatic", || async {
        app.amo.chat_messages(account).iter().any(|m| {
            m["message"]["text"] == BUSY
                && m["sender"]["name"]
                    .as_str()
                    .is_some_and(|n| n.contains("Автоответ"))
        })
    })
    .await;
    app.stop().await;
}

/// "No answer in 15 working minutes": a message on Friday at 17:55 in Moscow is answered
/// automatically on Monday at 09:10 (five minutes on Friday, ten on Monday), not at night or
/// over the weekend; the dry run names the same time.
#[tokio::test]
async fn the_working_hours_only_timer_counts_working_minutes() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    let friday_1755 = MONDAY_10_MSK + (4 * 24 * 60 + 7 * 60 + 55) * MINUTE;
    let monday_0910 = MONDAY_10_MSK + (7 * 24 * 60 - 50) * MINUTE;
    clock.set(friday_1755);
    let (s, token, _) = company_with_bot(&app).await;
    let key = create_key(&s, "auto").await;
    office_hours(&app, &key).await;
    let id = rule(
        &app,
        &key,
        reply(
            "Нет ответа 15 рабочих минут",
            json!({"type": "no_answer", "minutes": 15, "working_hours_only": true}),
            BUSY,
        ),
    )
    .await;
    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5003, "Анна", "Сколько стоит?"),
    );
    checked(&app, 1).await;
    let due: i64 = count(
        &app,
        "SELECT run_at FROM jobs WHERE kind = 'auto_reply_no_answer'",
    )
    .await;
    assert_eq!(due, monday_0910, "due on Monday 09:10 Moscow time");
    // Friday evening, the weekend, Monday 09:09: nothing.
    for at in [
        friday_1755 + 20 * MINUTE,
        friday_1755 + 30 * 60 * MINUTE,
        monday_0910 - MINUTE,
    ] {
        clock.set(at);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(times_sent(&app, &token, BUSY), 0, "not yet at {at}");
    }
    clock.set(monday_0910);
    eventually("the no-answer reply on Monday", || async {
        times_sent(&app, &token, BUSY) == 1
    })
    .await;
    let fired: i64 = count(
        &app,
        "SELECT created_at FROM auto_reply_firings WHERE outcome = 'fired'",
    )
    .await;
    assert_eq!(fired, monday_0910);

    // The dry run of the same rule finds the same answer at the same time.
    clock.set(monday_0910 + 60 * MINUTE);
    let (status, run) = send(
        &app,
        &key,
        reqwest::Method::POST,
        &format!("/api/v1/auto-replies/{id}/dry-run"),
        &json!({"days": 7}),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["hits"].as_array().map(Vec::len), Some(1), "{run}");
    assert!(
        run["hits"][0]["at"]
            .as_str()
            .is_some_and(|at| at.starts_with("2026-12-14T06:10:00")),
        "the dry run's time is Monday 09:10 in Moscow: {run}"
    );
    app.stop().await;
}

fn node(
    app: &TestApp,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let cfg = WorkerConfig {
        concurrency: 4,
        lease_ms: 30_000,
        poll_ms: 20,
        ..Default::default()
    };
    let task = tokio::spawn(worker::run(app.core.clone(), Registry::standard(), cfg, rx));
    (stop, task)
}

#[tokio::test]
async fn a_pending_timer_survives_a_restart_and_two_nodes_fire_it_once() {
    // No workers of its own: each "node" below is a worker runtime over the same database.
    let app = TestApp::builder()
        .with_manual_clock()
        .without_workers()
        .start()
        .await;
    let clock = app.clock.clone().expect("manual clock");
    clock.set(MONDAY_10_MSK);
    let (s, id, secret) = company_with_api_source(&app).await;
    let key = create_key(&s, "auto").await;
    rule(
        &app,
        &key,
        reply(
            "Нет ответа",
            json!({"type": "no_answer", "minutes": 5}),
            BUSY,
        ),
    )
    .await;
    let http = reqwest::Client::new();
    let body = message_body("m-1", "client-1", "Когда доставка?");
    let r = post_signed(&http, &app, &id, &secret, now_secs(&app), &body, None).await;
    assert_eq!(r.status(), 200);

    // The first node looks at the message and sets the timer, then stops (a restart).
    let (stop, task) = node(&app);
    eventually("the timer is set", || async {
        count(
            &app,
            "SELECT count(*) FROM jobs WHERE kind = 'auto_reply_no_answer' AND status = 'queued'",
        )
        .await
            == 1
    })
    .await;
    stop.send(true).expect("stop");
    task.await.expect("node stops");
    assert_eq!(
        count(&app, "SELECT count(*) FROM auto_reply_firings").await,
        0
    );

    // After the delay two nodes start: exactly one firing, one automatic message.
    clock.advance(6 * MINUTE);
    let (a, b) = (node(&app), node(&app));
    eventually("the timer ran", || async {
        count(
            &app,
            "SELECT count(*) FROM jobs WHERE kind = 'auto_reply_no_answer' AND status = 'done'",
        )
        .await
            == 1
    })
    .await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM auto_reply_firings WHERE outcome = 'fired'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages WHERE direction = 'out' AND sender_name LIKE '%Автоответ%'").await,
        1
    );
    for (stop, task) in [a, b] {
        stop.send(true).expect("stop");
        task.await.expect("node stops");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_loop_guard_stops_a_bot_that_answers_every_auto_reply() {
    // The other side is another system's bot talking through the API source: it answers every
    // message with a new one, as a second Chatter company's auto-replies would.
    let app = TestApp::new().await;
    let (s, id, secret) = company_with_api_source(&app).await;
    let key = create_key(&s, "auto").await;
    let mut r = reply(
        "Эхо",
        json!({"type": "keywords"}),
        "Спасибо, заявка принята",
    );
    r["conditions"] = json!({"keywords": ["заявка"]});
    r["once_per_minutes"] = json!(0);
    rule(&app, &key, r).await;
    let http = reqwest::Client::new();
    for i in 1..=6 {
        let body = message_body(&format!("bot-{i}"), "bot", "Ваша заявка принята, спасибо");
        let r = post_signed(&http, &app, &id, &secret, now_secs(&app), &body, None).await;
        assert_eq!(r.status(), 200);
        checked(&app, i).await;
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM auto_reply_firings WHERE outcome = 'fired'"
        )
        .await,
        3
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM auto_reply_firings WHERE outcome = 'skipped' AND reason = 'loop_guard'").await,
        3
    );
    let conv = conversation_with(&s, "заявка").await;
    let thread = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(
        thread.contains("не отправлен: защита от зацикливания"),
        "{thread}"
    );
    app.stop().await;
}

#[tokio::test]
async fn outside_whatsapps_window_the_reply_is_skipped_with_its_reason() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    // WhatsApp's fake stamps messages with the real time: the product's clock starts there.
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    clock.set(real);
    let (s, number, _) = crate::whatsapp::company_with_whatsapp(&app).await;
    let key = create_key(&s, "auto").await;
    let day = 24 * 60;
    rule(
        &app,
        &key,
        reply(
            "Через сутки",
            json!({"type": "no_answer", "minutes": day + 60}),
            BUSY,
        ),
    )
    .await;
    app.whatsapp.customer_writes(
        &number.phone_number_id,
        "79161234567",
        "Ирина",
        "Заказ 1042 готов?",
    );
    checked(&app, 1).await;
    clock.advance((day + 61) * MINUTE);
    timers_done(&app, 1).await;
    assert!(
        app.whatsapp.sent(&number.phone_number_id).is_empty(),
        "nothing sent"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM auto_reply_firings WHERE outcome = 'skipped' AND reason = 'reply_window_closed'").await,
        1
    );
    let conv = conversation_with(&s, "Заказ 1042").await;
    let thread = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(
        thread.contains("окно WhatsApp в 24 часа закрыто"),
        "{thread}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_dry_run_shows_what_a_rule_would_have_answered_and_sends_nothing() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    clock.set(MONDAY_10_MSK);
    let (s, token, _) = company_with_bot(&app).await;
    let key = create_key(&s, "auto").await;
    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    for (user, text) in [
        (1, "Сколько стоит доставка?"),
        (2, "Привет"),
        (3, "Доставку в Химки делаете?"),
    ] {
        app.telegram
            .customer_writes(&token, CustomerMessage::text(7000 + user, "Клиент", text));
        clock.advance(MINUTE);
    }
    eventually("three messages stored", || async {
        count(&app, "SELECT count(*) FROM messages WHERE direction = 'in'").await == 3
    })
    .await;
    let mut body = reply("Доставка", json!({"type": "keywords"}), DELIVERY);
    body["conditions"] = json!({"keywords": ["доставка"]});
    let (status, out) = send(
        &app,
        &key,
        reqwest::Method::POST,
        "/api/v1/auto-replies/dry-run",
        &json!({"days": 7, "rule": body}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["hits"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(out["hits"][0]["reply"], DELIVERY);
    assert_eq!(out["per_day"]["2026-12-07"], 2, "{out}");
    let (status, out) = send(
        &app,
        &key,
        reqwest::Method::POST,
        "/api/v1/auto-replies/dry-run",
        &json!({"days": 91, "rule": body}),
    )
    .await;
    assert_eq!(status, 422, "{out}");
    // A saved rule, turned off, from the page: the same answer, nothing sent or recorded.
    body["enabled"] = json!(false);
    let id = rule(&app, &key, body).await;
    let (status, out) = send(
        &app,
        &key,
        reqwest::Method::POST,
        &format!("/api/v1/auto-replies/{id}/dry-run"),
        &json!({"days": 1}),
    )
    .await;
    assert_eq!(
        (status, out["hits"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{out}"
    );
    let page = format!("/app/automation/replies/{id}");
    let r = s
        .post_from(
            &page,
            &page,
            &[
                ("name", "Доставка"),
                ("trigger", "keywords"),
                ("keywords", "доставка"),
                ("reply", DELIVERY),
                ("days", "7"),
                ("dry_run", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("page");
    assert!(
        html.contains("id=\"auto-dry-summary\">Сработало бы: 2"),
        "{html}"
    );
    assert!(html.contains("Доставку в Химки"), "{html}");
    assert_eq!(
        count(&app, "SELECT count(*) FROM auto_reply_firings").await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'out'"
        )
        .await,
        0
    );
    let api_list = api(&app, "/api/v1/auto-replies", Some(&key)).await;
    let list: Value = api_list.json().await.expect("json");
    assert_eq!(list[0]["enabled"], false);
    app.stop().await;
}

/// Checks the company's greeting reached the customer of one kind.
pub(crate) async fn greeting_rule(s: &Session, app: &TestApp) {
    let key = create_key(s, "auto").await;
    rule(
        app,
        &key,
        reply("Приветствие", json!({"type": "first_message"}), GREETING),
    )
    .await;
}

pub(crate) const KIND_GREETING: &str = GREETING;

#[tokio::test]
async fn a_rule_made_on_the_page_moves_the_amocrm_deal_and_labels_the_conversation() {
    let app = TestApp::new().await;
    let (s, token, _, account) = connected(&app).await;
    let r = s
        .post_from(
            "/app/settings/labels",
            "/app/settings/labels",
            &[("name", "Новый"), ("color", "green")],
        )
        .await;
    assert!(
        r.status().is_redirection() || r.status() == 200,
        "{}",
        r.status()
    );
    let page = s.html("/app/automation/replies/new").await;
    let option = |after: &str| -> String {
        let at = page
            .find(after)
            .unwrap_or_else(|| panic!("{after}: {page}"));
        let v = &page[at + after.len()..];
        v[..v.find('"').expect("quote")].to_string()
    };
    // The second stage of the pipeline (the first one is where new deals land).
    let stages: Vec<String> = page
        .split("<option value=\"")
        .skip(1)
        .map(|o| o[..o.find('"').expect("quote")].to_string())
        .filter(|v| v.contains(':'))
        .collect();
    let stage = stages
        .get(1)
        .cloned()
        .unwrap_or_else(|| panic!("stages: {page}"));
    let label = option("name=\"labels\" value=\"");
    let r = s
        .post_from(
            "/app/automation/replies/new",
            "/app/automation/replies",
            &[
                ("name", "Новый клиент"),
                ("enabled", "1"),
                ("trigger", "first_message"),
                ("reply", GREETING),
                ("stage", &stage),
                ("labels", &label),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    app.telegram
        .customer_writes(&token, CustomerMessage::text(5001, "Иван", "Добрый вечер"));
    let status: i64 = stage
        .split(':')
        .nth(1)
        .and_then(|x| x.parse().ok())
        .expect("stage id");
    eventually("the deal is moved", || async {
        app.amo
            .leads(account)
            .first()
            .is_some_and(|l| l["status_id"] == status)
    })
    .await;
    eventually("the greeting", || async {
        times_sent(&app, &token, GREETING) == 1
    })
    .await;
    // The list previews the greeting now: the row is found by the customer's name.
    let conv = conversation_with(&s, "Иван").await;
    let thread = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(thread.contains("сделка переведена на этап"), "{thread}");
    assert!(thread.contains("добавлены метки"), "{thread}");
    assert_eq!(
        count(&app, "SELECT count(*) FROM conversation_labels").await,
        1
    );
    app.stop().await;
}
