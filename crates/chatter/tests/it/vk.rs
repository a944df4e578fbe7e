//! A VK community bot through the whole product: added by its token and id (wrong ones are
//! refused and change nothing), customers read through Bots Long Poll (lost sessions and
//! expired keys included) or the Callback API, answers sent once and in order through a VK
//! outage, and forged or replayed callbacks storing nothing new.

use crate::messages::{count, location, PW};
use crate::telegram::{conversation_with, reply, thread_shows, within};
use chatter_fakes::{VkCustomerMessage, VkFailure, VkGroup};
use chatter_testkit::{Session, TestApp};

/// Signs up a company and connects a fresh community; returns the session, the community and
/// the source id.
pub(crate) async fn company_with_community(app: &TestApp) -> (Session, VkGroup, String) {
    let s = Session::sign_up(app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let group = app.vk.create_group("Рога и Копыта", "horns");
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[
                ("kind", "3"),
                ("vk_token", &group.token),
                ("vk_group_id", &format!("club{}", group.id)),
                ("name", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let path = location(&r);
    let id = path.rsplit('/').next().expect("id").to_string();
    let page = s.html(&path).await;
    assert!(page.contains("Рога и Копыта"), "community named: {page}");
    (s, group, id)
}

fn sent_texts(app: &TestApp, group: i64, peer: i64) -> Vec<String> {
    app.vk
        .sent(group)
        .into_iter()
        .filter(|m| m.peer_id == peer)
        .map(|m| m.text)
        .collect()
}

#[tokio::test]
async fn wrong_vk_tokens_and_communities_are_refused_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let ours = app.vk.create_group("Рога и Копыта", "horns");
    let other = app.vk.create_group("Чужое сообщество", "other");
    let unknown = format!("vk1.a.{}", "x".repeat(80));
    let club = format!("club{}", ours.id);
    let other_id = other.id.to_string();
    let cases: [(&str, &str, &str); 4] = [
        (&unknown, &club, "vk_token"),
        ("short", &club, "vk_token"),
        (&ours.token, "не номер", "vk_group_id"),
        (&ours.token, &other_id, "vk_group_id"),
    ];
    let before = count(&app, "SELECT count(*) FROM sources").await;
    for (token, group, field) in cases {
        let r = s
            .post_from(
                "/app/sources/new",
                "/app/sources",
                &[("kind", "3"), ("vk_token", token), ("vk_group_id", group)],
            )
            .await;
        assert_eq!(r.status(), 422, "refused: {token} / {group}");
        let page = r.text().await.expect("body");
        assert!(
            page.contains(&format!("data-field=\"{field}\"")),
            "{field} is marked for {token} / {group}: {page}"
        );
    }
    // VK unreachable: said so, nothing stored.
    app.vk
        .fail_next(ours.id, "groups.getById", VkFailure::Http(503), 1);
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[
                ("kind", "3"),
                ("vk_token", &ours.token),
                ("vk_group_id", &club),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("body");
    assert!(page.contains("Не удалось связаться"), "{page}");
    assert!(!page.contains(&ours.token), "the token is not echoed back");
    assert_eq!(count(&app, "SELECT count(*) FROM sources").await, before);
}

#[tokio::test]
async fn a_vk_customer_is_read_by_long_poll_and_gets_the_answer_once() {
    let app = TestApp::new().await;
    let (s, group, _) = company_with_community(&app).await;
    within(20, "the community is long-polled", || async {
        app.vk.calls(group.id).iter().any(|c| c == "a_check")
    })
    .await;
    app.vk.customer_writes(
        group.id,
        VkCustomerMessage::text(612_444_319, "Здравствуйте! Есть белые чайники?"),
    );
    let conv = conversation_with(&s, "Есть белые чайники?").await;
    let page = thread_shows(&s, &conv, "Есть белые чайники?").await;
    assert!(
        page.contains("id612444319"),
        "the customer is named: {page}"
    );
    // The position is stored with the messages.
    within(10, "the long-poll ts is stored", || async {
        count(
            &app,
            "SELECT count(*) FROM sources WHERE cursor IS NOT NULL",
        )
        .await
            == 1
    })
    .await;

    reply(&s, &conv, "Да, есть, 2490 ₽").await;
    within(20, "VK got the answer", || async {
        sent_texts(&app, group.id, 612_444_319) == ["Да, есть, 2490 ₽"]
    })
    .await;
    let sent = app.vk.sent(group.id);
    assert_ne!(sent[0].random_id, 0, "sent with a random_id");
    thread_shows(&s, &conv, "data-status=\"sent\"").await;

    // VK drops the key, then the whole session: the poller recovers and loses nothing after.
    app.vk.expire_long_poll_key(group.id);
    app.vk.customer_writes(
        group.id,
        VkCustomerMessage::text(612_444_319, "А доставка сколько?"),
    );
    thread_shows(&s, &conv, "А доставка сколько?").await;
    // After a lost session VK keeps nothing from before the new one: the customer writes once
    // the poller has a new session.
    let sessions = |app: &TestApp| {
        app.vk
            .calls(group.id)
            .iter()
            .filter(|c| *c == "groups.getLongPollServer")
            .count()
    };
    let before = sessions(&app);
    app.vk.lose_long_poll_session(group.id);
    within(20, "a new long-poll session", || async {
        sessions(&app) > before
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.vk
        .customer_writes(group.id, VkCustomerMessage::text(612_444_319, "Жду ответа"));
    thread_shows(&s, &conv, "Жду ответа").await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages WHERE direction = 'in'").await,
        3,
        "each message once"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM contacts").await, 1);
    let sources = s.html("/app/sources").await;
    assert!(sources.contains("Подключён"), "{sources}");
}

#[tokio::test]
async fn replies_during_a_vk_outage_arrive_once_and_in_order() {
    let app = TestApp::new().await;
    let (s, group, _) = company_with_community(&app).await;
    within(20, "the community is long-polled", || async {
        app.vk.calls(group.id).iter().any(|c| c == "a_check")
    })
    .await;
    app.vk.customer_writes(
        group.id,
        VkCustomerMessage::text(700_001, "Ответьте, пожалуйста"),
    );
    let conv = conversation_with(&s, "Ответьте").await;
    app.vk
        .fail_next(group.id, "messages.send", VkFailure::Http(502), 2);
    app.vk
        .fail_next(group.id, "messages.send", VkFailure::too_many_requests(), 1);
    for t in ["1", "2", "3"] {
        reply(&s, &conv, t).await;
    }
    within(40, "all replies arrive", || async {
        sent_texts(&app, group.id, 700_001).len() >= 3
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(sent_texts(&app, group.id, 700_001), ["1", "2", "3"]);
    within(20, "all three show as sent", || async {
        s.html(&format!("/app/inbox/{conv}"))
            .await
            .matches("data-status=\"sent\"")
            .count()
            == 3
    })
    .await;
}

#[tokio::test]
async fn vk_callbacks_are_confirmed_checked_and_stored_once() {
    let app = TestApp::builder().with_webhooks().start().await;
    let (s, group, source_id) = company_with_community(&app).await;
    within(20, "the callback server is confirmed", || async {
        app.vk
            .callback_servers(group.id)
            .first()
            .is_some_and(|c| c.confirmed && !c.event_types.is_empty())
    })
    .await;
    let server = app.vk.callback_servers(group.id).remove(0);
    assert_eq!(server.url, format!("{}/hooks/vk/{source_id}", app.url));
    let secret = server.secret_key.clone().expect("a secret");
    app.vk.customer_writes(
        group.id,
        VkCustomerMessage::text(612_000_001, "Пишу через Callback API"),
    );
    let conv = conversation_with(&s, "Пишу через Callback API").await;
    reply(&s, &conv, "Получили!").await;
    within(20, "VK got the answer", || async {
        sent_texts(&app, group.id, 612_000_001) == ["Получили!"]
    })
    .await;

    let http = reqwest::Client::new();
    let url = app.at(&format!("/hooks/vk/{source_id}"));
    let event = |secret: &str| {
        serde_json::json!({"type": "message_new", "event_id": "e1f2a3", "v": "5.199",
            "group_id": group.id, "secret": secret,
            "object": {"message": {"date": 1767225600, "from_id": 612000002, "id": 900,
                "out": 0, "peer_id": 612000002, "text": "Повтор", "conversation_message_id": 41,
                "attachments": [], "fwd_messages": []}, "client_info": {}}})
    };
    let before = count(&app, "SELECT count(*) FROM messages").await;
    for forged in ["forged", ""] {
        let r = http
            .post(&url)
            .json(&event(forged))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 401, "secret {forged:?}");
    }
    let r = http
        .post(&url)
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(count(&app, "SELECT count(*) FROM messages").await, before);
    for _ in 0..3 {
        let r = http
            .post(&url)
            .json(&event(&secret))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.expect("body"), "ok");
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages").await,
        before + 1,
        "a replayed event is stored once"
    );
    // The confirmation request gets the community's code.
    let r = http
        .post(&url)
        .json(&serde_json::json!({"type": "confirmation", "group_id": group.id}))
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.text().await.expect("body"),
        app.vk.confirmation_code(group.id)
    );
    let page = s.html(&format!("/app/sources/{source_id}")).await;
    assert!(page.contains("вебхук"), "webhook mode shown: {page}");
}

/// VK events carry only a user id: the customer is named by `users.get`, asked once for the
/// sender and kept for a day, so the conversation, the contact and the amoCRM deal carry the
/// person's name; an account VK reports deleted keeps its `id…`.
#[tokio::test]
async fn vk_customers_are_named_by_users_get_once_and_so_is_their_deal() {
    let app = TestApp::new().await;
    let (s, group, _) = company_with_community(&app).await;
    let account = app.amo.create_account("horns", "Рога и Копыта CRM");
    let callback = crate::crm::consent(&app, &s, account).await;
    let r = s.get(&callback).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    within(20, "the community is long-polled", || async {
        app.vk.calls(group.id).iter().any(|c| c == "a_check")
    })
    .await;
    app.vk.set_user_name(612_444_330, "Вера", "Иванова");
    app.vk.customer_writes(
        group.id,
        VkCustomerMessage::text(612_444_330, "Есть доставка в Тверь?"),
    );
    let conv = conversation_with(&s, "Есть доставка в Тверь?").await;
    thread_shows(&s, &conv, "Вера Иванова").await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM contacts WHERE name = 'Вера Иванова'"
        )
        .await,
        1,
        "the contact has her name"
    );
    within(30, "the deal is named after her", || async {
        app.amo.leads(account).iter().any(|l| {
            l["name"]
                .as_str()
                .is_some_and(|n| n.contains("Вера Иванова"))
        })
    })
    .await;

    // Her next message is named from the cache: VK is not asked again.
    app.vk.customer_writes(
        group.id,
        VkCustomerMessage::text(612_444_330, "И самовывоз есть?"),
    );
    thread_shows(&s, &conv, "И самовывоз есть?").await;
    let asked = |app: &TestApp| {
        app.vk
            .calls(group.id)
            .iter()
            .filter(|c| *c == "users.get")
            .count()
    };
    assert_eq!(asked(&app), 1, "asked once");

    // A deleted account has no name to show: the id stays, and it is not asked again today.
    app.vk
        .customer_writes(group.id, VkCustomerMessage::text(612_444_331, "Алло"));
    let other = conversation_with(&s, "Алло").await;
    thread_shows(&s, &other, "id612444331").await;
    app.vk
        .customer_writes(group.id, VkCustomerMessage::text(612_444_331, "Алло?"));
    thread_shows(&s, &other, "Алло?").await;
    assert_eq!(asked(&app), 2, "the deleted account was asked once");
}
