//! amoCRM as people use it, in headless Chromium: an admin connects amoCRM through its consent
//! page, sets where deals land, a customer writes in Telegram, the deal appears in amoCRM with
//! the chosen tag, the manager answers inside amoCRM, the customer receives it and Chatter's
//! open thread shows the answer live. Screenshots land in `<target dir>/screenshots/`.

use crate::browser_inbox::{Window, WAIT};
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Browser, TestApp};

const CUSTOMER: i64 = 7_310_000_101;
const QUESTION: &str = "Добрый день! Сколько стоит оптовая партия?";
const ANSWER: &str = "От 100 штук — скидка 15%, пришлю прайс";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_configure_message_deal_and_reply_from_amocrm() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let account = app.amo.create_account("romashka", "Ромашка CRM");
    let token = app.telegram.create_bot("romashka_crm_bot", "Ромашка");
    let w = Window::open(&app.url, "crm-admin", 1280, 800).await;

    w.sign_up_with_bot(&token).await;

    // Connect: our button → amoCRM's consent page → «Разрешить» → back on the CRM page.
    w.goto("/app/crm").await;
    w.shot("01-crm-not-connected").await;
    w.click("#crm-connect").await;
    w.wait_path(|p| p == "/oauth").await;
    w.shot("02-amocrm-consent").await;
    w.click("#allow").await;
    w.wait_path(|p| p == "/app/crm").await;
    w.wait_text_in("#crm-account", "Ромашка CRM").await;
    w.shot("03-crm-connected").await;

    // Configure: a tag and "whoever answers first" for every source.
    w.click("#crm-settings-link").await;
    w.wait_path(|p| p == "/app/crm/settings").await;
    w.fill("input[name=tags]", "из браузера").await;
    w.click("input[name=responsible][value=first]").await;
    w.shot("04-settings").await;
    w.click("#crm-settings-save").await;
    w.wait_text_in(".flash", "").await;
    w.shot("05-settings-saved").await;

    // A customer writes: a contact and a deal appear in amoCRM, with the tag.
    w.goto("/app/inbox").await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            username: Some("opt_buyer".into()),
            ..CustomerMessage::text(CUSTOMER, "Олег", QUESTION)
        },
    );
    w.wait_text_in("li.conv", QUESTION).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.amo.leads(account).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no deal in amoCRM");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    w.click("li.conv a").await;
    w.wait_path(|p| p.starts_with("/app/inbox/") && p.len() > "/app/inbox/".len())
        .await;
    w.wait_text_in("#thread-crm", "#").await;
    w.shot("06-thread-with-deal").await;
    w.mark_page().await;

    // amoCRM's side: the deal with the tag, the chat; the manager answers there.
    let crm = Window::open(&app.amo.base_url(), "crm-amocrm", 1280, 800).await;
    crm.goto("/ui/romashka").await;
    crm.wait_text_in("tr[data-lead]", "Telegram: Олег").await;
    crm.wait_text_in("tr[data-lead]", "из браузера").await;
    crm.wait_text_in("section.chat", QUESTION).await;
    crm.shot("07-amocrm-deal-and-chat").await;
    crm.fill("section.chat input[name=text]", ANSWER).await;
    crm.click("section.chat button[type=submit]").await;
    crm.wait_text_in("section.chat", ANSWER).await;
    crm.shot("08-amocrm-answered").await;

    // The customer receives it; Chatter's open thread shows it without a reload.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !app
        .telegram
        .sent(&token)
        .iter()
        .any(|m| m.text.as_deref() == Some(ANSWER))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the customer did not get the answer"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    w.wait_text_in(".msg.out", ANSWER).await;
    w.assert_same_page("the answer from amoCRM").await;
    w.shot("09-answer-in-chatter").await;

    // The troubleshooting page has nothing to complain about.
    w.goto("/app/crm/health").await;
    w.wait_text_in("#check-token", "").await;
    let page = w.browser.page_source().await.expect("page");
    assert!(page.contains("crm-no-problems"), "{page}");
    w.shot("10-health").await;
    crm.close().await;
    w.close().await;
}
