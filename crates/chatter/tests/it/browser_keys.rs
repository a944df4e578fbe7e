//! Labels, bulk actions and keys in a real browser: a label made in Settings, put on two
//! conversations from their headers, the list filtered by it, both selected and closed at
//! once — at desktop width and at 360 px, where the same bar must be usable; and the inbox
//! worked from the keyboard, where keys typed into the reply box stay text.

use crate::browser_day::{js, until};
use crate::browser_inbox::Window;
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Browser, TestApp};
use fantoccini::key::Key;
use fantoccini::Locator;
use serde_json::{json, Value};

/// Three customers write to the bot; waits until the inbox lists all three.
async fn three_conversations(app: &TestApp, w: &Window, token: &str) {
    for (i, name) in ["Ольга", "Пётр", "Мария"].into_iter().enumerate() {
        app.telegram.customer_writes(
            token,
            CustomerMessage::text(8200 + i as i64, name, &format!("{name}: есть в наличии?")),
        );
    }
    until(w, "three conversations", || async {
        w.goto("/app/inbox").await;
        js(
            w,
            "return document.querySelectorAll('#conv-list li.conv').length;",
        )
        .await
            == json!(3)
    })
    .await;
}

/// A real key press on the page (not in a field).
async fn key(w: &Window, k: &str) {
    let body = w
        .browser
        .client()
        .find(Locator::Css("body"))
        .await
        .expect("the page");
    body.send_keys(k).await.expect("a key");
}

async fn path_of(w: &Window) -> String {
    w.browser
        .client()
        .current_url()
        .await
        .map(|u| u.path().to_owned())
        .unwrap_or_default()
}

async fn label_and_bulk_close(width: u32, height: u32, name: &str) {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let token = app.telegram.create_bot("romashka_shop_bot", "Ромашка");
    let w = Window::open(&app.url, name, width, height).await;
    w.sign_up_with_bot(&token).await;
    three_conversations(&app, &w, &token).await;

    // A label, made in Settings → Labels.
    w.goto("/app/settings").await;
    w.click("#open-labels").await;
    w.wait_path(|p| p == "/app/settings/labels").await;
    w.fill("#label-create input[name=name]", "VIP").await;
    js(
        &w,
        "document.querySelector('#label-create select[name=color]').value = 'purple'; return true;",
    )
    .await;
    w.click("#label-create-submit").await;
    w.wait_text_in("#label-list .label-purple", "VIP").await;
    w.assert_no_sideways_scroll("the labels page").await;

    // On two conversations, from their headers.
    w.goto("/app/inbox").await;
    let rows: Vec<String> = js(
        &w,
        "return Array.from(document.querySelectorAll('#conv-list li.conv a')).map(function (a) { return a.getAttribute('href'); });",
    )
    .await
    .as_array()
    .expect("rows")
    .iter()
    .filter_map(|v| v.as_str().map(str::to_owned))
    .collect();
    assert_eq!(rows.len(), 3);
    for href in &rows[..2] {
        w.goto(href).await;
        w.click("#label-add-submit").await;
        w.wait_text_in("#thread-labels .label-purple", "VIP").await;
        assert_eq!(&path_of(&w).await, href, "back at the conversation");
    }

    // A colleague labels the third one and takes it off again: the open list follows live.
    w.goto("/app/inbox").await;
    w.mark_page().await;
    let label = js(
        &w,
        "return document.getElementById('label-filter').options[1].value;",
    )
    .await;
    let label = label.as_str().expect("the label's id").to_owned();
    let (other, r) =
        chatter_testkit::Session::sign_in(&app, "anna@romashka.test", "ромашка-пароль-42").await;
    assert_eq!(r.status(), 303);
    let third = &rows[2];
    let row = format!("#conv-{}", third.rsplit('/').next().unwrap_or_default());
    let r = other
        .post_from(
            third,
            &format!("{third}/labels"),
            &[("label", &label), ("on", "1")],
        )
        .await;
    assert_eq!(r.status(), 303);
    w.wait_text_in(&format!("{row} .label-purple"), "VIP").await;
    let r = other
        .post_from(
            third,
            &format!("{third}/labels"),
            &[("label", &label), ("on", "0")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let gone = format!(
        "return !!document.querySelector('{row}') && !document.querySelector('{row} .label');"
    );
    until(&w, "the label leaves the row", || async {
        js(&w, &gone).await == json!(true)
    })
    .await;
    w.assert_same_page("labels changed by a colleague").await;

    // The list filtered by the label: at once, kept in the URL.
    js(
        &w,
        "var s = document.getElementById('label-filter'); s.value = s.options[1].value; s.dispatchEvent(new Event('change')); return true;",
    )
    .await;
    until(&w, "the label filter applies", || async {
        let url = w.browser.client().current_url().await.map(|u| u.to_string()).unwrap_or_default();
        url.contains("label=")
            && js(&w, "return document.readyState === 'complete' && document.querySelectorAll('#conv-list li.conv').length;").await
                == json!(2)
    })
    .await;
    let labelled: Vec<Value> = js(
        &w,
        "return Array.from(document.querySelectorAll('#conv-list li.conv a')).map(function (a) { return a.getAttribute('href'); });",
    )
    .await
    .as_array()
    .cloned()
    .unwrap_or_default();
    let mut want: Vec<Value> = rows[..2].iter().map(|r| json!(r)).collect();
    let mut got = labelled.clone();
    want.sort_by_key(|v| v.to_string());
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, want, "only the labelled two");

    // j opens the first of this list and keeps its filter: the list beside it is the same.
    let filtered_url = w
        .browser
        .client()
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_default();
    key(&w, "j").await;
    let first = labelled[0].as_str().expect("href").to_owned();
    until(&w, "j opens the first labelled one", || async {
        js(
            &w,
            "return document.readyState === 'complete' ? location.pathname + location.search : '';",
        )
        .await
        .as_str()
        .is_some_and(|p| p.starts_with(&first) && p.contains("label="))
    })
    .await;
    w.goto(&filtered_url[app.url.len()..]).await;

    // Nothing ticked: the bar's actions wait; «select all» ticks both and shows them.
    let shown =
        "var b = document.getElementById('bulk-close'); return !!b && b.offsetParent !== null;";
    assert_eq!(js(&w, shown).await, json!(false));
    w.click("#pick-all").await;
    assert_eq!(
        js(
            &w,
            "return document.querySelectorAll('#conv-list input.pick:checked').length;"
        )
        .await,
        json!(2)
    );
    assert_eq!(js(&w, shown).await, json!(true));
    assert_eq!(
        js(&w, "var r = document.getElementById('bulk-close').getBoundingClientRect(); return r.right <= window.innerWidth && r.left >= 0 && r.width > 0;").await,
        json!(true),
        "the close button is on screen"
    );
    w.assert_no_sideways_scroll("the inbox with the bulk bar")
        .await;
    w.shot("bulk-bar").await;
    w.click("#bulk-close").await;
    w.wait_text_in("#bulk-result", "Закрыто: 2").await;
    // Still filtered by the label, and both are closed: the open list is empty.
    let url = w
        .browser
        .client()
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_default();
    assert!(url.contains("label="), "{url}");
    assert_eq!(
        js(
            &w,
            "return document.querySelectorAll('#conv-list li.conv').length;"
        )
        .await,
        json!(0)
    );
    w.goto("/app/inbox").await;
    assert_eq!(
        js(
            &w,
            "return document.querySelectorAll('#conv-list li.conv').length;"
        )
        .await,
        json!(1),
        "the unlabelled one is still open"
    );
    w.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_filters_the_list_and_the_selection_closes_at_once_at_desktop_width() {
    label_and_bulk_close(1280, 800, "labels-desktop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_filters_the_list_and_the_selection_closes_at_once_at_360_px() {
    label_and_bulk_close(360, 740, "labels-phone").await;
}

/// `j` `j` `k` move the open conversation through the list as shown, `r` goes to the reply
/// box, where the same letters are only text, `?` shows the keys, `e` closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_move_through_the_list_and_stay_text_in_the_reply_box() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let token = app.telegram.create_bot("romashka_shop_bot", "Ромашка");
    let w = Window::open(&app.url, "keys-typing", 1280, 800).await;
    w.sign_up_with_bot(&token).await;
    three_conversations(&app, &w, &token).await;
    let rows: Vec<String> = js(
        &w,
        "return Array.from(document.querySelectorAll('#conv-list li.conv a')).map(function (a) { return a.getAttribute('href'); });",
    )
    .await
    .as_array()
    .expect("rows")
    .iter()
    .filter_map(|v| v.as_str().map(str::to_owned))
    .collect();
    let at = |want: String| {
        let w = &w;
        async move {
            until(w, &format!("at {want}"), || async {
                js(
                    w,
                    "return document.readyState === 'complete' ? location.pathname : '';",
                )
                .await
                    == json!(want)
            })
            .await;
        }
    };
    // The first j opens the first row, the next one the row below it, k the one above.
    key(&w, "j").await;
    at(rows[0].clone()).await;
    key(&w, "j").await;
    at(rows[1].clone()).await;
    key(&w, "k").await;
    at(rows[0].clone()).await;

    // r: the reply box; letters typed there are text, the page stays.
    key(&w, "r").await;
    assert_eq!(
        js(
            &w,
            "return document.activeElement && document.activeElement.id;"
        )
        .await,
        json!("reply-text")
    );
    let reply = w
        .browser
        .client()
        .find(Locator::Css("#reply-text"))
        .await
        .expect("the reply box");
    reply.send_keys("jjk e?").await.expect("type");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(path_of(&w).await, rows[0], "typing does not navigate");
    assert_eq!(
        js(&w, "return document.getElementById('reply-text').value;").await,
        json!("jjk e?")
    );
    assert_eq!(
        js(&w, "return document.getElementById('keys-help').open;").await,
        json!(false),
        "nor open the keys"
    );
    // Esc leaves the box; ? shows the keys (translated; `/` is not bound yet), Esc closes them.
    reply
        .send_keys(&Key::Escape.to_string())
        .await
        .expect("Esc");
    js(
        &w,
        "document.getElementById('reply-text').value = ''; return true;",
    )
    .await;
    key(&w, "?").await;
    until(&w, "the keys panel opens", || async {
        js(&w, "return document.getElementById('keys-help').open;").await == json!(true)
    })
    .await;
    let help = js(
        &w,
        "return document.getElementById('keys-help').textContent;",
    )
    .await;
    let help = help.as_str().unwrap_or_default().to_owned();
    assert!(help.contains("следующий / предыдущий диалог"), "{help}");
    assert!(!help.contains("поиск"), "`/` is kept for templates: {help}");
    let dialog = w
        .browser
        .client()
        .find(Locator::Css("#keys-help"))
        .await
        .expect("the panel");
    dialog
        .send_keys(&Key::Escape.to_string())
        .await
        .expect("Esc");
    until(&w, "the keys panel closes", || async {
        js(&w, "return document.getElementById('keys-help').open;").await == json!(false)
    })
    .await;
    // e closes the open conversation, as its button does.
    key(&w, "e").await;
    until(&w, "closed by the key", || async {
        js(&w, "var f = document.getElementById('reopen-form'); return document.readyState === 'complete' && !!f && !f.hidden;").await
            == json!(true)
    })
    .await;
    w.close().await;
}
