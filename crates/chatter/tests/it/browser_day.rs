//! A manager's working day in one browser session (back/forward cache on, as people have it):
//! 60 conversations opened, answered and left at desktop width, then 20 more at 360 px, while
//! customers keep writing all the time. Every action must finish (a stall fails the test after
//! `STALL`); how long each took is printed — the slowest, the median and actions per minute go
//! in the issue note, never into an assert, since machines are noisy. The node's own gauge of
//! open live streams shows the tab never holds more than two (the page's and, for a moment, the
//! one it is leaving).

use crate::browser_inbox::Window;
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Browser, TestApp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An action that takes this long counts as a stall and fails the test.
const STALL: Duration = Duration::from_secs(10);
const DESKTOP: usize = 60;
const PHONE: usize = 20;

pub(crate) async fn until<F, Fut>(w: &Window, what: &str, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + STALL;
    while !ok().await {
        if Instant::now() >= deadline {
            w.shot(&format!(
                "stalled-{}",
                what.replace([' ', '/', '?', '&', '='], "-")
            ))
            .await;
            panic!("stalled: {what}\n{}", w.where_am_i().await);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

pub(crate) async fn js(w: &Window, script: &str) -> serde_json::Value {
    w.browser
        .client()
        .execute(script, vec![])
        .await
        .unwrap_or(serde_json::Value::Null)
}

/// Live streams open on the node now (its `/metrics` gauge).
async fn live_streams(app: &TestApp) -> i64 {
    let text = reqwest::get(app.at("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("chatter_live_streams "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the live streams gauge")
}

/// Opens the conversation `href` from the list, answers it with Enter and waits for "sent".
/// Returns how long opening and answering took.
async fn work_one(w: &Window, href: &str, n: usize) -> (Duration, Duration) {
    let started = Instant::now();
    // Clicked in the page: with customers writing all the time the list reorders live, and a
    // pointer click at where the row was a moment ago can land on its neighbour.
    let click =
        format!("document.querySelector('li.conv a[href=\"{href}\"]').click(); return true;");
    assert_eq!(
        js(w, &click).await,
        serde_json::Value::Bool(true),
        "row {n} is listed"
    );
    let shown = format!(
        "return document.readyState === 'complete' && location.pathname === '{href}' && !!document.getElementById('reply-text');"
    );
    until(w, &format!("open {n}"), || async {
        js(w, &shown).await == serde_json::Value::Bool(true)
    })
    .await;
    let opened = started.elapsed();
    // Its own row (when the list is on the page) shows no unread badge.
    let badge = format!(
        "var r = document.getElementById('conv-{}'); return r ? !!r.querySelector('.badge') : false;",
        href.rsplit('/').next().unwrap_or_default()
    );
    assert_eq!(
        js(w, &badge).await,
        serde_json::Value::Bool(false),
        "conversation {n} is read"
    );
    let text = format!("Ответ №{n}: да, есть в наличии");
    let started = Instant::now();
    let reply = w
        .browser
        .client()
        .find(fantoccini::Locator::Css("#reply-text"))
        .await
        .expect("the reply box");
    reply.send_keys(&text).await.expect("type");
    reply.send_keys("\n").await.expect("Enter");
    let sent = format!(
        "return Array.from(document.querySelectorAll('.msg.out[data-status=sent] .text')).some(function (e) {{ return e.textContent.indexOf('{text}') >= 0; }});"
    );
    until(w, &format!("answer {n}"), || async {
        js(w, &sent).await == serde_json::Value::Bool(true)
    })
    .await;
    (opened, started.elapsed())
}

fn summary(label: &str, times: &mut [Duration]) -> String {
    times.sort();
    let max = times.last().copied().unwrap_or_default();
    let p50 = times.get(times.len() / 2).copied().unwrap_or_default();
    let over = times
        .iter()
        .filter(|t| **t > Duration::from_secs(2))
        .count();
    format!(
        "{label}: {} actions, median {:.2} s, slowest {:.2} s, over 2 s: {over}",
        times.len(),
        p50.as_secs_f64(),
        max.as_secs_f64()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_day_of_eighty_conversations_in_one_browser_session() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let token = app.telegram.create_bot("romashka_shop_bot", "Ромашка");
    let w = Window::open(&app.url, "day", 1280, 800).await;
    w.sign_up_with_bot(&token).await;

    let total = DESKTOP + PHONE;
    let id = |i: usize| 7_000 + i as i64;
    for i in 0..total {
        app.telegram.customer_writes(
            &token,
            CustomerMessage::text(
                id(i),
                &format!("Покупатель {i}"),
                "Здравствуйте, есть в наличии?",
            ),
        );
    }
    // Customers keep writing all day long, to conversations open and not.
    let stop = Arc::new(AtomicBool::new(false));
    let chatter = {
        let (tg, token, stop) = (app.telegram.clone(), token.clone(), stop.clone());
        tokio::spawn(async move {
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                tg.customer_writes(
                    &token,
                    CustomerMessage::text(
                        id((k * 7) % total),
                        &format!("Покупатель {}", (k * 7) % total),
                        &format!("И ещё вопрос {k}"),
                    ),
                );
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            k
        })
    };
    // Setup, not an action: the first messages of all customers arrive (slow when the
    // machine is busy), then the list is read once.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        w.goto("/app/inbox").await;
        let shown = js(&w, "return document.querySelectorAll('li.conv').length;").await;
        if shown.as_u64().unwrap_or(0) >= total as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {shown} conversations arrived"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let links = js(
        &w,
        "return Array.from(document.querySelectorAll('li.conv a')).map(function (a) { return a.getAttribute('href'); });",
    )
    .await;
    let links: Vec<String> = links
        .as_array()
        .expect("the conversation links")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert!(links.len() >= total, "{}", links.len());

    let day = Instant::now();
    let (mut opens, mut answers) = (Vec::new(), Vec::new());
    let mut most_streams = 0;
    for (n, href) in links.iter().take(DESKTOP).enumerate() {
        let (o, a) = work_one(&w, href, n).await;
        opens.push(o);
        answers.push(a);
        most_streams = most_streams.max(live_streams(&app).await);
    }
    w.shot("desktop-done").await;
    w.assert_no_sideways_scroll("the thread at desktop width")
        .await;

    // The same session on a phone-sized window: leave each conversation for the list.
    w.browser
        .client()
        .set_window_size(360, 800)
        .await
        .expect("resize to 360 px");
    for (k, href) in links.iter().skip(DESKTOP).take(PHONE).enumerate() {
        let n = DESKTOP + k;
        let started = Instant::now();
        w.goto("/app/inbox").await;
        until(&w, &format!("list before {n}"), || async {
            js(&w, "return document.readyState === 'complete' && !!document.getElementById('conv-list');").await
                == serde_json::Value::Bool(true)
        })
        .await;
        opens.push(started.elapsed());
        let (o, a) = work_one(&w, href, n).await;
        opens.push(o);
        answers.push(a);
        most_streams = most_streams.max(live_streams(&app).await);
    }
    w.shot("phone-done").await;
    w.assert_no_sideways_scroll("the thread at 360 px").await;
    // On the phone the reply box is wide enough to type in and within reach on the screen.
    let reach = js(
        &w,
        "var r = document.getElementById('reply-text').getBoundingClientRect(); return [Math.round(r.width), Math.round(r.bottom), window.innerHeight];",
    )
    .await;
    let (width, bottom, height) = (
        reach[0].as_i64().unwrap_or(0),
        reach[1].as_i64().unwrap_or(i64::MAX),
        reach[2].as_i64().unwrap_or(0),
    );
    assert!(
        width * 2 >= 360,
        "the reply box is {width} px wide, under half the screen"
    );
    assert!(
        bottom <= height,
        "the reply box ends at {bottom} of {height} px"
    );
    // The current section is visible in the sideways menu.
    w.goto("/app/team").await;
    let shown = js(
        &w,
        "var a = document.querySelector('nav.side a.on'); var r = a.getBoundingClientRect(); return r.left >= 0 && r.right <= window.innerWidth;",
    )
    .await;
    assert_eq!(
        shown,
        serde_json::Value::Bool(true),
        "the current menu item is on screen"
    );
    let minutes = day.elapsed().as_secs_f64() / 60.0;
    stop.store(true, Ordering::Relaxed);
    let written = chatter.await.expect("the customers' task");

    let actions = opens.len() + answers.len();
    println!(
        "working day: {actions} actions in {:.1} min ({:.0} per minute) while customers wrote {written} more messages; most live streams open at once: {most_streams}",
        minutes,
        actions as f64 / minutes
    );
    println!("{}", summary("open", &mut opens));
    println!("{}", summary("answer until sent", &mut answers));
    assert!(
        most_streams <= 2,
        "one tab held {most_streams} live streams"
    );
    let delivered = app
        .telegram
        .sent(&token)
        .into_iter()
        .filter(|m| m.text.as_deref().is_some_and(|t| t.starts_with("Ответ №")))
        .count();
    assert_eq!(delivered, total, "every answer reached its customer");
    w.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_filters_apply_at_once() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let w = Window::open(&app.url, "filters", 1280, 800).await;
    w.goto("/sign-up").await;
    w.fill("input[name=company_name]", "Ромашка").await;
    w.fill("input[name=name]", "Анна Петрова").await;
    w.fill("input[name=email]", "anna@romashka.test").await;
    w.fill("input[name=password]", "ромашка-пароль-42").await;
    w.click("#sign-up-submit").await;
    w.wait_path(|p| p == "/app").await;
    w.goto("/app/inbox").await;
    assert_eq!(
        js(&w, "var b = document.querySelector('form.filters .apply'); return !!b && b.offsetParent === null;").await,
        serde_json::Value::Bool(true),
        "with the script, the «Показать» button is not needed"
    );
    let query = || async {
        w.browser
            .client()
            .current_url()
            .await
            .map(|u| u.query().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    js(
        &w,
        "var s = document.querySelector('select[name=status]'); s.value = 'closed'; s.dispatchEvent(new Event('change')); return true;",
    )
    .await;
    until(&w, "the status filter applies", || async {
        query().await.contains("status=closed")
    })
    .await;
    let closed = js(
        &w,
        "return document.querySelector('select[name=status] option:checked').textContent;",
    )
    .await;
    assert_eq!(closed, serde_json::Value::String("Закрытые".into()));
    w.fill("form.filters input[name=q]", "доставка").await;
    until(&w, "the search applies after a pause in typing", || async {
        query().await.contains("q=")
    })
    .await;
    assert!(
        query().await.contains("status=closed"),
        "the other choices stay"
    );
    w.close().await;
}

/// A colleague assigns and closes the conversation someone has open: the open page's header
/// follows without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_conversations_header_follows_what_colleagues_do() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let token = app.telegram.create_bot("romashka_shop_bot", "Ромашка");
    let w = Window::open(&app.url, "header", 1280, 800).await;
    w.sign_up_with_bot(&token).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(8001, "Ольга", "Здравствуйте!"),
    );
    w.goto("/app/inbox").await;
    w.wait_text_in("li.conv", "Здравствуйте!").await;
    w.click("li.conv a").await;
    w.wait_path(|p| p.starts_with("/app/inbox/") && p.len() > "/app/inbox/".len())
        .await;
    w.mark_page().await;
    let path = w
        .browser
        .client()
        .current_url()
        .await
        .expect("url")
        .path()
        .to_owned();
    let me = js(
        &w,
        "var o = Array.from(document.querySelectorAll('.thread-actions select[name=assignee] option')).find(function (o) { return o.value; }); return o ? o.value : null;",
    )
    .await;
    let me = me.as_str().expect("a member to assign").to_owned();

    // The colleague (here the same person in another session) assigns and closes it.
    let (other, r) =
        chatter_testkit::Session::sign_in(&app, "anna@romashka.test", "ромашка-пароль-42").await;
    assert_eq!(r.status(), 303);
    let r = other
        .post_from(&path, &format!("{path}/assign"), &[("assignee", &me)])
        .await;
    assert_eq!(r.status(), 303);
    let assigned = format!(
        "return document.querySelector('.thread-actions select[name=assignee]').value === '{me}';"
    );
    until(&w, "the assignee shows", || async {
        js(&w, &assigned).await == serde_json::Value::Bool(true)
    })
    .await;
    let r = other.post_from(&path, &format!("{path}/close"), &[]).await;
    assert_eq!(r.status(), 303);
    until(&w, "the conversation shows closed", || async {
        js(&w, "return document.getElementById('close-form').hidden && !document.getElementById('reopen-form').hidden;").await
            == serde_json::Value::Bool(true)
    })
    .await;
    w.assert_same_page("the header's updates").await;
    w.close().await;
}

/// Keys in the inbox: j / k move through the list, r goes to the reply box (Esc leaves it),
/// ? shows the keys, e closes the conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_works_from_the_keyboard() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let token = app.telegram.create_bot("romashka_shop_bot", "Ромашка");
    let w = Window::open(&app.url, "keys", 1280, 800).await;
    w.sign_up_with_bot(&token).await;
    for i in 0..3 {
        app.telegram.customer_writes(
            &token,
            CustomerMessage::text(8100 + i, &format!("Покупатель {i}"), "Есть в наличии?"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        w.goto("/app/inbox").await;
        if js(&w, "return document.querySelectorAll('li.conv').length;").await
            == serde_json::json!(3)
        {
            break;
        }
        assert!(Instant::now() < deadline, "three conversations");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let rows: Vec<String> = js(
        &w,
        "return Array.from(document.querySelectorAll('li.conv a')).map(function (a) { return a.getAttribute('href'); });",
    )
    .await
    .as_array()
    .expect("rows")
    .iter()
    .filter_map(|v| v.as_str().map(str::to_owned))
    .collect();
    let press = |key: &'static str| {
        let w = &w;
        async move {
            js(
                w,
                &format!("document.dispatchEvent(new KeyboardEvent('keydown', {{ key: '{key}', bubbles: true }})); return true;"),
            )
            .await;
        }
    };
    let at = |path: String| {
        let w = &w;
        async move {
            until(w, &format!("at {path}"), || async {
                js(
                    w,
                    "return document.readyState === 'complete' ? location.pathname : '';",
                )
                .await
                    == serde_json::Value::String(path.clone())
            })
            .await;
        }
    };
    assert_eq!(
        js(&w, "return document.title;")
            .await
            .as_str()
            .map(|t| t.starts_with("(3) ")),
        Some(true),
        "three unread messages in the tab's title"
    );
    // Where a key should lead: the row after (or before) the open one in the list as shown.
    let neighbour = |step: i32| {
        let w = &w;
        async move {
            js(
                w,
                &format!(
                    "var a = Array.from(document.querySelectorAll('li.conv a')); \
                     var at = a.findIndex(function (x) {{ return x.parentNode.classList.contains('on'); }}); \
                     var n = at < 0 ? 0 : Math.min(a.length - 1, Math.max(0, at + ({step}))); \
                     return a[n].getAttribute('href');"
                ),
            )
            .await
            .as_str()
            .map(str::to_owned)
            .expect("a row to go to")
        }
    };
    assert_eq!(rows.len(), 3);
    let first = neighbour(1).await;
    press("j").await;
    at(first).await;
    assert_eq!(
        js(&w, "return document.title;")
            .await
            .as_str()
            .map(|t| t.starts_with("(2) ")),
        Some(true),
        "the open one is read"
    );
    let second = neighbour(1).await;
    press("j").await;
    at(second.clone()).await;
    let back = neighbour(-1).await;
    assert_ne!(back, second);
    press("k").await;
    at(back).await;
    press("r").await;
    assert_eq!(
        js(
            &w,
            "return document.activeElement && document.activeElement.id;"
        )
        .await,
        serde_json::json!("reply-text")
    );
    js(&w, "var t = document.activeElement; t.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true })); return true;").await;
    assert_ne!(
        js(
            &w,
            "return document.activeElement && document.activeElement.id;"
        )
        .await,
        serde_json::json!("reply-text"),
        "Esc leaves the reply box"
    );
    press("?").await;
    assert_eq!(
        js(&w, "return document.getElementById('keys-help').open;").await,
        serde_json::json!(true)
    );
    w.click("#keys-close").await;
    press("e").await;
    until(&w, "closed by the key", || async {
        js(&w, "var f = document.getElementById('reopen-form'); return !!f && !f.hidden && document.readyState === 'complete';").await
            == serde_json::json!(true)
    })
    .await;
    w.close().await;
}
