//! The message path as people see it, in headless Chromium at desktop and phone sizes: a
//! company connects its bot on the Sources page, a customer writes in Telegram (the fake) and
//! the conversation appears in the open inbox without a reload; the manager answers with Enter
//! (Shift+Enter only breaks the line), the reply turns "sent" and shows on the customer's
//! phone; the customer writes again and it appears live in the open thread. Screenshots land
//! in `<target dir>/screenshots/`; the inbox and the thread must not scroll sideways.

use chatter_fakes::CustomerMessage;
use chatter_testkit::{Browser, TestApp};
use fantoccini::key::Key;
use fantoccini::Locator;
use std::time::Duration;

/// How long a page, a live update or a delivery gets; generous because two cores run four
/// browsers.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

const CUSTOMER_ID: i64 = 6_021_550_347;
const FIRST: &str = "Здравствуйте! Есть ли доставка в Тверь?";
const REPLY_LINE_1: &str = "Добрый день, Мария!";
const REPLY_LINE_2: &str = "Доставляем, 300 ₽, завтра до обеда.";
const AGAIN: &str = "Отлично, тогда оформляю заказ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_and_manager_talk_live_at_desktop_size() {
    talk("desktop", 1280, 800).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_and_manager_talk_live_at_phone_size() {
    talk("phone", 390, 844).await;
}

async fn talk(size: &str, width: u32, height: u32) {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let token = app.telegram.create_bot("romashka_shop_bot", "Ромашка");
    let manager = Window::open(&app.url, &format!("{size}-inbox-manager"), width, height).await;

    manager.goto("/sign-up").await;
    manager.fill("input[name=company_name]", "Ромашка").await;
    manager.fill("input[name=name]", "Анна Петрова").await;
    manager
        .fill("input[name=email]", "anna@romashka.test")
        .await;
    manager
        .fill("input[name=password]", "ромашка-пароль-42")
        .await;
    manager.click("#sign-up-submit").await;
    manager.wait_path(|p| p == "/app").await;

    // The bot is connected from the Sources page by its token.
    manager.goto("/app/sources/new?kind=1").await;
    manager.fill("input[name=token]", &token).await;
    manager.shot("01-add-bot").await;
    manager.click("#source-submit").await;
    manager
        .wait_path(|p| p.starts_with("/app/sources/") && p != "/app/sources/new")
        .await;
    manager.shot("02-bot-added").await;

    manager.goto("/app/inbox").await;
    manager.shot("03-inbox-empty").await;
    manager.mark_page().await;

    // The customer writes; the conversation arrives in the open list by itself.
    app.telegram.customer_writes(&token, maria(FIRST));
    manager.wait_text_in("li.conv", FIRST).await;
    manager.assert_same_page("the new conversation").await;
    manager.shot("04-conversation-arrived").await;
    manager.assert_no_sideways_scroll("the inbox").await;

    manager.click("li.conv a").await;
    manager
        .wait_path(|p| p.starts_with("/app/inbox/") && p.len() > "/app/inbox/".len())
        .await;
    manager.wait_text_in(".msg.in", FIRST).await;
    manager.mark_page().await;
    manager.shot("05-thread").await;
    manager.assert_no_sideways_scroll("the thread").await;

    // Shift+Enter breaks the line and sends nothing; Enter sends.
    let reply = manager
        .browser
        .wait_for("#reply-text", WAIT)
        .await
        .expect("the reply box");
    reply.click().await.expect("focus the reply box");
    reply
        .send_keys(&format!("{REPLY_LINE_1}{}{}", Key::Shift, Key::Enter))
        .await
        .expect("type the first line and Shift+Enter");
    // Releases Shift (WebDriver keeps modifiers down until the Null key).
    reply
        .send_keys(&format!("{}{REPLY_LINE_2}", Key::Null))
        .await
        .expect("type the second line");
    let typed = reply
        .prop("value")
        .await
        .expect("read the reply box")
        .unwrap_or_default();
    assert_eq!(
        typed,
        format!("{REPLY_LINE_1}\n{REPLY_LINE_2}"),
        "Shift+Enter puts a line break in the reply box"
    );
    assert!(
        manager.texts(".msg.out").await.is_empty(),
        "Shift+Enter sent nothing"
    );
    assert!(
        app.telegram.sent(&token).is_empty(),
        "Shift+Enter sent nothing to Telegram"
    );
    manager.shot("06-reply-typed").await;
    reply.send_keys("\n").await.expect("press Enter");

    manager
        .wait_text_in(".msg.out[data-status=sent]", REPLY_LINE_2)
        .await;
    let box_after = reply
        .prop("value")
        .await
        .expect("read the reply box")
        .unwrap_or_default();
    assert_eq!(box_after, "", "the reply box is emptied after sending");
    manager.assert_same_page("sending the reply").await;
    manager.shot("07-reply-sent").await;
    manager
        .assert_no_sideways_scroll("the thread with a reply")
        .await;
    let sent: Vec<_> = app
        .telegram
        .sent(&token)
        .into_iter()
        .filter_map(|m| m.text)
        .collect();
    assert_eq!(
        sent,
        vec![format!("{REPLY_LINE_1}\n{REPLY_LINE_2}")],
        "one message, both lines, reached Telegram"
    );

    // The customer's phone shows the manager's answer.
    let phone = Window::open(
        &app.telegram.base_url(),
        &format!("{size}-inbox-customer"),
        390,
        844,
    )
    .await;
    phone.goto(&format!("/phone/{token}/{CUSTOMER_ID}")).await;
    phone.wait_text_in("li.bot", REPLY_LINE_2).await;
    phone.shot("08-customer-phone").await;

    // The customer writes again: it appears in the open thread by itself.
    app.telegram.customer_writes(&token, maria(AGAIN));
    manager.wait_text_in(".msg.in", AGAIN).await;
    manager
        .assert_same_page("the customer's second message")
        .await;
    manager.shot("09-customer-wrote-again").await;
    manager
        .assert_no_sideways_scroll("the thread with the whole dialogue")
        .await;

    phone.close().await;
    manager.close().await;
}

/// A message from the customer, Мария Иванова, in her private chat with the bot.
fn maria(text: &str) -> CustomerMessage {
    CustomerMessage {
        last_name: Some("Иванова".into()),
        username: Some("maria_iv".into()),
        ..CustomerMessage::text(CUSTOMER_ID, "Мария", text)
    }
}

/// One browser window on one site.
pub(crate) struct Window {
    pub(crate) browser: Browser,
    base: String,
    shot_prefix: String,
}

impl Window {
    /// Signs Анна Петрова of «Ромашка» up and connects the Telegram bot `token` through the
    /// add form, as a new customer of Chatter does first.
    pub(crate) async fn sign_up_with_bot(&self, token: &str) {
        self.goto("/sign-up").await;
        self.fill("input[name=company_name]", "Ромашка").await;
        self.fill("input[name=name]", "Анна Петрова").await;
        self.fill("input[name=email]", "anna@romashka.test").await;
        self.fill("input[name=password]", "ромашка-пароль-42").await;
        self.click("#sign-up-submit").await;
        self.wait_path(|p| p == "/app").await;
        self.goto("/app/sources/new?kind=1").await;
        self.fill("input[name=token]", token).await;
        self.click("#source-submit").await;
        self.wait_path(|p| p.starts_with("/app/sources/") && p != "/app/sources/new")
            .await;
    }

    pub(crate) async fn open(base: &str, shot_prefix: &str, width: u32, height: u32) -> Window {
        let browser = Browser::start(width, height)
            .await
            .unwrap_or_else(|e| panic!("start a {width}x{height} browser: {e:#}"));
        Window {
            browser,
            base: base.to_owned(),
            shot_prefix: shot_prefix.to_owned(),
        }
    }

    pub(crate) async fn goto(&self, path: &str) {
        self.browser
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    pub(crate) async fn fill(&self, css: &str, text: &str) {
        if let Err(e) = self.browser.fill(css, text).await {
            panic!("{e:#}\n{}", self.where_am_i().await);
        }
    }

    pub(crate) async fn click(&self, css: &str) {
        if let Err(e) = self.browser.click(css).await {
            panic!("{e:#}\n{}", self.where_am_i().await);
        }
    }

    pub(crate) async fn shot(&self, step: &str) {
        self.browser
            .screenshot(&format!("{}-{step}", self.shot_prefix))
            .await
            .expect("screenshot");
    }

    /// The rendered texts of every element matched by `css` (none: empty).
    pub(crate) async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(found) = self.browser.client().find_all(Locator::Css(css)).await else {
            return out;
        };
        for element in found {
            // An element replaced by a live update in between is simply skipped.
            if let Ok(text) = element.text().await {
                out.push(text);
            }
        }
        out
    }

    /// Waits until some element matched by `css` shows `text`, without reloading the page.
    pub(crate) async fn wait_text_in(&self, css: &str, text: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.texts(css).await;
            if now.iter().any(|t| t.contains(text)) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "no {css} shows {text:?} within {WAIT:?}; they read {now:?}\n{}",
                    self.where_am_i().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the address bar's path satisfies `ok`.
    pub(crate) async fn wait_path(&self, ok: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let url = self
                .browser
                .client()
                .current_url()
                .await
                .expect("current url");
            if ok(url.path()) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("did not arrive where expected\n{}", self.where_am_i().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Leaves a mark in the page's window object; a reload or a navigation would wipe it.
    pub(crate) async fn mark_page(&self) {
        self.browser
            .client()
            .execute("window.chatterSamePage = true; return true;", vec![])
            .await
            .expect("mark the page");
    }

    pub(crate) async fn assert_same_page(&self, what: &str) {
        let marked = self
            .browser
            .client()
            .execute("return window.chatterSamePage === true;", vec![])
            .await
            .expect("read the mark");
        assert_eq!(
            marked,
            serde_json::Value::Bool(true),
            "{what} must show up without a reload ({})",
            self.shot_prefix
        );
    }

    /// The page is no wider than the window: nothing hides off to the right.
    pub(crate) async fn assert_no_sideways_scroll(&self, what: &str) {
        let (scroll, inner) = self.browser.widths().await.expect("measure the page");
        assert!(
            scroll <= inner,
            "{what} scrolls sideways in {}: {scroll}px of content in a {inner}px window",
            self.shot_prefix
        );
    }

    /// The current URL and the start of the page, for failure messages.
    pub(crate) async fn where_am_i(&self) -> String {
        let url = self
            .browser
            .client()
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let html = self.browser.page_source().await.unwrap_or_default();
        let start: String = html.chars().take(3000).collect();
        format!("at {url}:\n{start}")
    }

    pub(crate) async fn close(self) {
        self.browser.close().await.expect("close the browser");
    }
}
