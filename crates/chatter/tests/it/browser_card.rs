//! The customer card in headless Chromium (issue 11, "Then" 2): at desktop width it stands
//! beside the thread with the amoCRM deal's pipeline and stage; the manager renames the
//! customer, finds the same person's VK conversation with «Объединить с…» and merges them,
//! and the card then lists both messengers and the other conversation. At 360 px the card is
//! a section that opens on a tap, and the reply box stays reachable. Screenshots land in
//! `<target dir>/screenshots/`.

use crate::browser_inbox::{Window, WAIT};
use chatter_domain::SourceKind;
use chatter_fakes::{CustomerMessage, VkCustomerMessage};
use chatter_store::entity::{contact, conversation, source};
use chatter_testkit::{Browser, TestApp};
use sea_orm::EntityTrait;

const QUESTION: &str = "Добрый день! Сколько стоит оптовая партия?";

/// The conversation, contact and source of the customer on a source of `kind`.
async fn on_kind(app: &TestApp, kind: SourceKind) -> (conversation::Model, contact::Model, String) {
    let src = source::Entity::find()
        .all(&app.core.db)
        .await
        .expect("sources")
        .into_iter()
        .find(|s| s.kind == kind)
        .expect("a source of the kind");
    let conv = conversation::Entity::find()
        .all(&app.core.db)
        .await
        .expect("conversations")
        .into_iter()
        .find(|c| c.source_id == src.id)
        .expect("a conversation on the source");
    let person = contact::Entity::find_by_id(conv.contact_id)
        .one(&app.core.db)
        .await
        .expect("contact lookup")
        .expect("the contact");
    (conv, person, src.name)
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_beside_the_thread_shows_the_deal_edits_and_merges() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let account = app.amo.create_account("romashka", "Ромашка CRM");
    let token = app.telegram.create_bot("romashka_card_bot", "Ромашка");
    let group = app.vk.create_group("Ромашка ВКонтакте", "romashka_vk");
    let w = Window::open(&app.url, "card-desktop", 1280, 900).await;
    w.sign_up_with_bot(&token).await;
    w.goto("/app/sources/new?kind=3").await;
    w.fill("input[name=vk_token]", &group.token).await;
    w.fill("input[name=vk_group_id]", &format!("club{}", group.id))
        .await;
    w.click("#source-submit").await;
    w.wait_path(|p| p.starts_with("/app/sources/") && p != "/app/sources/new")
        .await;
    w.goto("/app/crm").await;
    w.click("#crm-connect").await;
    w.wait_path(|p| p == "/oauth").await;
    w.click("#allow").await;
    w.wait_path(|p| p == "/app/crm").await;

    // The same person writes in Telegram, then in VK.
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            username: Some("oleg_opt".into()),
            ..CustomerMessage::text(7_310_000_201, "Олег", QUESTION)
        },
    );
    until("the Telegram deal", || app.amo.leads(account).len() == 1).await;
    // VK's long poll starts from the events after it connects, as the real one does.
    until("the community is polled", || {
        app.vk.calls(group.id).iter().any(|c| c == "a_check")
    })
    .await;
    app.vk.customer_writes(
        group.id,
        VkCustomerMessage::text(612_000_777, "Это Олег, пишу из ВК"),
    );
    until("both deals", || app.amo.leads(account).len() == 2).await;
    let main_pipeline = app
        .amo
        .pipelines(account)
        .into_iter()
        .find(|p| p["is_main"] == true)
        .and_then(|p| p["name"].as_str().map(str::to_owned))
        .expect("the main pipeline");
    let (tg_conv, _, _) = on_kind(&app, SourceKind::TelegramBot).await;
    let (_, vk_person, vk_source) = on_kind(&app, SourceKind::VkBot).await;

    // The card beside the thread: the deal with its pipeline and stage, the profile link.
    let mut shown = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !shown {
        w.goto(&format!("/app/inbox/{}", tg_conv.id)).await;
        shown = w
            .texts("#card-pipeline")
            .await
            .iter()
            .any(|t| t.contains(&main_pipeline));
        assert!(
            tokio::time::Instant::now() < deadline,
            "the card never showed the pipeline\n{}",
            w.where_am_i().await
        );
    }
    let stage = w.texts("#card-stage").await.join(" ");
    assert!(
        !stage.is_empty() && !stage.contains("ещё не"),
        "the stage is named: {stage}"
    );
    w.wait_text_in("#card-deal", "#").await;
    w.wait_text_in("#card-identities", "@oleg_opt").await;
    w.shot("01-card-beside-the-thread").await;
    w.assert_no_sideways_scroll("the inbox with the card").await;

    // Rename.
    w.fill("#card-edit-name", "Олег Сидоров").await;
    w.click("#card-save").await;
    w.wait_path(|p| p == format!("/app/inbox/{}", tg_conv.id))
        .await;
    w.wait_text_in("#card-name", "Олег Сидоров").await;
    w.shot("02-renamed").await;

    // Merge with the VK conversation's person, found by name.
    let needle: String = vk_person.name.chars().take(4).collect();
    w.fill("#card-merge-q", &needle).await;
    w.click("#card-merge-find").await;
    w.wait_path(|p| p.ends_with("/merge")).await;
    w.wait_text_in("#merge-found", &vk_person.name).await;
    w.shot("03-merge-candidates").await;
    w.click(&format!("a.merge-pick[data-contact=\"{}\"]", vk_person.id))
        .await;
    w.wait_text_in("#merge-confirm", &vk_person.name).await;
    w.shot("04-merge-confirm").await;
    w.click("#merge-confirm-button").await;
    w.wait_path(|p| p == format!("/app/inbox/{}", tg_conv.id))
        .await;
    w.wait_text_in("#card-conversations", &vk_source).await;
    w.wait_text_in("#card-name", "Олег Сидоров").await;
    assert_eq!(w.texts("#card-identities li").await.len(), 2);
    w.shot("05-merged").await;
    // The other conversation opens from the card.
    w.click("#card-conversations a.card-conv").await;
    w.wait_text_in(".msg.in", "Это Олег, пишу из ВК").await;
    w.wait_text_in("#card-name", "Олег Сидоров").await;
    w.shot("06-the-other-conversation").await;
    w.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_phone_width_the_card_opens_and_the_reply_box_stays_reachable() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let token = app.telegram.create_bot("romashka_phone_bot", "Ромашка");
    let w = Window::open(&app.url, "card-phone", 360, 740).await;
    w.sign_up_with_bot(&token).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(7_310_000_301, "Мария", QUESTION),
    );
    w.goto("/app/inbox").await;
    w.wait_text_in("li.conv", QUESTION).await;
    w.click("li.conv a").await;
    w.wait_path(|p| p.starts_with("/app/inbox/") && p.len() > "/app/inbox/".len())
        .await;
    w.shot("01-thread").await;
    // Closed until tapped: the form inside is not shown yet.
    assert!(w
        .texts("#card-edit label")
        .await
        .iter()
        .all(String::is_empty));
    w.click("#card-summary").await;
    w.wait_text_in("#customer-card", "amoCRM").await;
    w.wait_text_in("#card-edit", "Имя").await;
    w.shot("02-card-open").await;
    w.assert_no_sideways_scroll("the open card").await;
    // The reply box is still there and works.
    w.fill("#reply-text", "Добрый день, Мария!").await;
    w.click("#reply-send").await;
    w.wait_text_in(".msg.out", "Добрый день, Мария!").await;
    w.shot("03-replied").await;
    w.close().await;
    app.stop().await;
}
