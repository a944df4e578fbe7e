//! A Telegram bot through the whole product, as a company sees it: photos, files, voice,
//! contacts and places in the thread; edits; groups; a customer who blocks the bot; a revoked
//! token; wrong tokens; long replies; a Telegram outage; replayed webhooks; the live stream with
//! catch-up; and two nodes sharing one PostgreSQL database.

use crate::messages::{company_with_bot, count, PW};
use chatter_fakes::{CustomerMessage, Failure, GroupChat};
use chatter_testkit::{csrf_of, Session, TestApp};
use std::time::Duration;

/// Polls `f` until it is true or `secs` pass (outages need longer than `messages::eventually`).
pub(crate) async fn within<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first conversation in the inbox whose row mentions `text`.
pub(crate) async fn conversation_with(s: &Session, text: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let inbox = s.html("/app/inbox").await;
        for row in inbox.split("<li id=\"conv-").skip(1) {
            if row.split("</li>").next().unwrap_or("").contains(text) {
                return row.split('"').next().unwrap_or("").to_string();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no conversation shows {text:?}: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the conversation's thread contains `needle`; returns the page.
pub(crate) async fn thread_shows(s: &Session, conv: &str, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = s.html(&format!("/app/inbox/{conv}")).await;
        if page.contains(needle) {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the thread never showed {needle:?}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `<div id="msg-…">` block of the message whose text is `text`.
pub(crate) fn message_block<'a>(page: &'a str, text: &str) -> Option<&'a str> {
    page.split("<div id=\"msg-")
        .skip(1)
        .find(|b| b.contains(&format!("<div class=\"text\">{text}</div>")))
}

fn message_id_of(block: &str) -> String {
    block.split('"').next().unwrap_or("").to_string()
}

/// Replies through the inbox form, as a browser without JavaScript does.
pub(crate) async fn reply(s: &Session, conv: &str, text: &str) {
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/reply"),
            &[("text", text)],
        )
        .await;
    assert_eq!(r.status(), 303, "the reply is accepted");
}

/// Texts the bot sent into `chat`, in order.
fn sent_to(app: &TestApp, token: &str, chat: i64) -> Vec<String> {
    app.telegram
        .sent(token)
        .into_iter()
        .filter(|m| m.chat_id == chat)
        .map(|m| m.text.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn photos_files_voice_contacts_and_places_show_in_the_thread() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    // A JPEG by its first bytes: only real raster pictures are shown inline.
    let photo: Vec<u8> = [0xff, 0xd8, 0xff, 0xe0]
        .into_iter()
        .chain((0..20_000u32).map(|i| (i * 7 % 251) as u8))
        .collect();
    let pdf = b"%PDF-1.4 price list: 3000 rub".to_vec();
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            photo: Some(photo.clone()),
            caption: Some("Вот такой диван".into()),
            ..CustomerMessage::text(6001, "Ольга", "")
        },
    );
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            document: Some((pdf.clone(), "прайс.pdf".into(), "application/pdf".into())),
            ..CustomerMessage::text(6001, "Ольга", "")
        },
    );
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            voice: Some(vec![1u8; 9000]),
            ..CustomerMessage::text(6001, "Ольга", "")
        },
    );
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            contact: Some(("+79161234567".into(), "Ольга".into())),
            ..CustomerMessage::text(6001, "Ольга", "")
        },
    );
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            location: Some((55.755826, 37.6173)),
            ..CustomerMessage::text(6001, "Ольга", "")
        },
    );
    let conv = conversation_with(&s, "Ольга").await;
    // Files are fetched by a job: the thread shows them once they are downloaded.
    let page = thread_shows(&s, &conv, "прайс.pdf</a>").await;
    let page = if page.contains("<img src=\"/app/files/") {
        page
    } else {
        thread_shows(&s, &conv, "<img src=\"/app/files/").await
    };
    let img = page
        .split("<img src=\"")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .expect("an inline image")
        .to_string();
    let photo_block = message_block(&page, "Вот такой диван").expect("the photo's caption");
    assert!(
        photo_block.contains(&img),
        "the image belongs to the captioned message"
    );
    let doc_href = page
        .split("<a class=\"file\" href=\"")
        .skip(1)
        .find(|x| x.split("</a>").next().unwrap_or("").contains("прайс.pdf"))
        .and_then(|x| x.split('"').next())
        .expect("a download link for the document")
        .to_string();
    assert!(doc_href.ends_with("/0"), "the first attachment: {doc_href}");

    let r = s.get(&img).await;
    assert_eq!(r.status(), 200);
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ctype.starts_with("image/"), "image content type: {ctype}");
    assert_eq!(
        r.bytes().await.expect("body").to_vec(),
        photo,
        "the photo's bytes"
    );
    let r = s.get(&doc_href).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.expect("body").to_vec(),
        pdf,
        "the document's bytes"
    );

    // Voice, contact and place.
    let page = thread_shows(&s, &conv, "55.755826").await;
    assert!(page.contains("37.6173"), "the location's longitude");
    assert!(page.contains("+79161234567"), "the shared phone number");
    assert!(page.contains("voice"), "the voice message is in the thread");
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages").await,
        5,
        "one message each"
    );
    // Someone from another company cannot read the files.
    let other = Session::sign_up(&app, "Чужая", "Пётр", "petr@example.ru", PW).await;
    assert_ne!(other.get(&img).await.status(), 200);
}

#[tokio::test]
async fn an_edited_message_changes_in_place() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    let mid = app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6101, "Денис", "Хочу заказать 2 пиццы"),
    );
    let conv = conversation_with(&s, "Хочу заказать 2 пиццы").await;
    app.telegram
        .customer_edits(&token, 6101, mid, "Хочу заказать 3 пиццы");
    let page = thread_shows(&s, &conv, "Хочу заказать 3 пиццы").await;
    let thread = page
        .split("id=\"thread-messages\"")
        .nth(1)
        .expect("the thread");
    assert!(!thread.contains("2 пиццы"), "the old text is gone");
    let block = message_block(&page, "Хочу заказать 3 пиццы").expect("the message");
    assert!(block.contains("изменено"), "marked as edited: {block}");
    assert_eq!(count(&app, "SELECT count(*) FROM messages").await, 1);
    let list = s.html("/app/inbox").await;
    assert!(
        list.contains("Хочу заказать 3 пиццы") && !list.contains("2 пиццы"),
        "the list previews the edited text"
    );
}

#[tokio::test]
async fn a_group_chat_is_one_conversation_titled_with_the_group() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    let group = GroupChat {
        id: -100_200_300,
        title: "Оптовики Подмосковья".into(),
    };
    for (user, name, text) in [
        (6201, "Игорь", "Коллеги, есть скидка на опт?"),
        (6202, "Вера", "И доставка в Химки?"),
    ] {
        app.telegram.customer_writes(
            &token,
            CustomerMessage {
                chat: Some(group.clone()),
                ..CustomerMessage::text(user, name, text)
            },
        );
    }
    let conv = conversation_with(&s, "Оптовики Подмосковья").await;
    let page = thread_shows(&s, &conv, "И доставка в Химки?").await;
    assert!(page.contains("<h1 id=\"thread-title\">Оптовики Подмосковья</h1>"));
    assert!(page.contains("Коллеги, есть скидка на опт?"));
    assert_eq!(count(&app, "SELECT count(*) FROM conversations").await, 1);
    reply(&s, &conv, "Да, от 10 штук скидка 7%").await;
    within(20, "the answer reaches the group", || async {
        sent_to(&app, &token, group.id) == ["Да, от 10 штук скидка 7%"]
    })
    .await;
}

#[tokio::test]
async fn a_customer_who_blocked_the_bot_gets_the_reply_after_unblocking_and_a_retry() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6301, "Кирилл", "Передумал, не пишите мне"),
    );
    let conv = conversation_with(&s, "Передумал").await;
    app.telegram.customer_blocks(&token, 6301, true);
    let page = thread_shows(&s, &conv, "id=\"blocked-notice\"").await;
    assert!(page.contains("заблокировал бота"), "the notice explains");

    reply(&s, &conv, "Кирилл, последний вопрос по заказу").await;
    let page = thread_shows(&s, &conv, "data-status=\"failed\"").await;
    let block = message_block(&page, "Кирилл, последний вопрос по заказу").expect("the reply");
    assert!(block.contains("data-status=\"failed\""), "{block}");
    assert!(block.contains("blocked"), "the reason is visible: {block}");
    assert!(block.contains("class=\"small retry\""), "a retry button");
    let mid = message_id_of(block);
    assert!(sent_to(&app, &token, 6301).is_empty());

    app.telegram.customer_blocks(&token, 6301, false);
    within(20, "the notice goes away", || async {
        !s.html(&format!("/app/inbox/{conv}"))
            .await
            .contains("id=\"blocked-notice\"")
    })
    .await;
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/messages/{mid}/retry"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    within(20, "the retried reply arrives", || async {
        sent_to(&app, &token, 6301) == ["Кирилл, последний вопрос по заказу"]
    })
    .await;
    let page = thread_shows(&s, &conv, "data-status=\"sent\"").await;
    let block = message_block(&page, "Кирилл, последний вопрос по заказу").expect("the reply");
    assert!(block.contains("data-status=\"sent\""), "{block}");
}

#[tokio::test]
async fn a_revoked_token_is_shown_with_the_fix_and_replies_fail_visibly() {
    let app = TestApp::new().await;
    let (s, token, source_id) = company_with_bot(&app).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6401, "Алла", "Вы работаете в субботу?"),
    );
    let conv = conversation_with(&s, "Вы работаете в субботу?").await;
    app.telegram.revoke(&token);
    within(20, "the source shows the revoked token", || async {
        s.html("/app/sources").await.contains("Токен отозван")
    })
    .await;
    let show = s.html(&format!("/app/sources/{source_id}")).await;
    assert!(show.contains("Токен отозван"), "{show}");
    assert!(show.contains("@BotFather"), "the fix names @BotFather");

    reply(&s, &conv, "Да, с 10 до 16").await;
    let page = thread_shows(&s, &conv, "data-status=\"failed\"").await;
    let block = message_block(&page, "Да, с 10 до 16").expect("the reply");
    assert!(block.contains("data-status=\"failed\""), "{block}");
    assert!(
        block.contains("class=\"msg-error\"") && block.contains("Токен бота отозван"),
        "the reason is visible: {block}"
    );
}

#[tokio::test]
async fn a_wrong_or_malformed_token_is_refused_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    let before = count(&app, "SELECT count(*) FROM sources").await;
    let unknown = format!("123456:{}", "A".repeat(35));
    for token in [unknown.as_str(), "это не токен", "123456:short"] {
        let r = s
            .post_from(
                "/app/sources/new",
                "/app/sources",
                &[("kind", "1"), ("token", token), ("name", "")],
            )
            .await;
        assert_eq!(r.status(), 422, "refused: {token}");
        let page = r.text().await.expect("body");
        assert!(
            page.contains("data-field=\"token\"") && page.contains("aria-invalid=\"true\""),
            "the token field is marked for {token}: {page}"
        );
    }
    assert_eq!(count(&app, "SELECT count(*) FROM sources").await, before);
}

#[tokio::test]
async fn a_long_reply_arrives_as_two_messages_in_order_and_shows_once() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6501, "Егор", "Пришлите условия договора"),
    );
    let conv = conversation_with(&s, "Пришлите условия").await;
    let mut text = String::new();
    let mut i = 0;
    while text.chars().count() < 5000 {
        i += 1;
        text.push_str(&format!("Пункт {i} договора. "));
    }
    let text: String = text
        .chars()
        .take(5000)
        .collect::<String>()
        .trim()
        .to_string();
    assert!(text.chars().count() > 4096);
    reply(&s, &conv, &text).await;
    within(20, "both parts arrive", || async {
        sent_to(&app, &token, 6501).len() >= 2
    })
    .await;
    let parts = sent_to(&app, &token, 6501);
    assert_eq!(parts.len(), 2, "two messages");
    assert!(parts.iter().all(|p| p.chars().count() <= 4096));
    assert_eq!(parts.concat(), text, "in order, nothing lost");
    let page = thread_shows(&s, &conv, "data-status=\"sent\"").await;
    assert_eq!(page.matches(&text).count(), 1, "shown once");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'out'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn replies_during_a_telegram_outage_arrive_once_and_in_order() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6601, "Лена", "Ответьте, пожалуйста"),
    );
    let conv = conversation_with(&s, "Ответьте").await;
    app.telegram
        .fail_next(&token, "sendMessage", Failure::server_error(), 3);
    app.telegram
        .fail_next(&token, "sendMessage", Failure::too_many_requests(1), 1);
    let csrf = csrf_of(&s.html(&format!("/app/inbox/{conv}")).await);
    for t in ["1", "2", "3", "4", "5"] {
        let r = s
            .http
            .post(format!("{}/app/inbox/{conv}/reply", s.base))
            .header("accept", "application/json")
            .form(&[("_csrf", csrf.as_str()), ("text", t)])
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 201, "reply {t} accepted");
    }
    let page = thread_shows(&s, &conv, "retrying").await;
    let first = message_block(&page, "1").expect("the first reply");
    assert!(
        first.contains("data-status=\"pending\"") && first.contains("retrying"),
        "the first reply says it is being retried: {first}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while sent_to(&app, &token, 6601).len() < 5 {
        if tokio::time::Instant::now() > deadline {
            let page = s.html(&format!("/app/inbox/{conv}")).await;
            let jobs = s.html("/app/settings").await;
            panic!(
                "not all replies arrived: {:?}\n{page}\n{jobs}",
                sent_to(&app, &token, 6601)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let any stray duplicate show up before judging.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sent_to(&app, &token, 6601), ["1", "2", "3", "4", "5"]);
    within(20, "all five show as sent", || async {
        s.html(&format!("/app/inbox/{conv}"))
            .await
            .matches("data-status=\"sent\"")
            .count()
            == 5
    })
    .await;
    let page = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(!page.contains("retrying"), "the note is cleared once sent");
}

#[tokio::test]
async fn replayed_webhooks_and_quick_first_messages_create_nothing_twice() {
    let app = TestApp::builder().with_telegram_webhooks().start().await;
    let (s, token, source_id) = company_with_bot(&app).await;
    within(20, "the webhook is set", || async {
        app.telegram.webhook(&token).is_some()
    })
    .await;
    let secret = app
        .telegram
        .webhook(&token)
        .and_then(|w| w.secret_token)
        .expect("a secret token");
    let http = reqwest::Client::new();
    let url = app.at(&format!("/hooks/telegram/{source_id}"));
    let post = |body: serde_json::Value| {
        http.post(&url)
            .header("X-Telegram-Bot-Api-Secret-Token", &secret)
            .json(&body)
            .send()
    };
    let update = |update_id: i64, user: i64, message_id: i64, text: &str| {
        serde_json::json!({"update_id": update_id, "message": {"message_id": message_id, "date": 1767225600,
            "from": {"id": user, "is_bot": false, "first_name": "Гость"},
            "chat": {"id": user, "type": "private", "first_name": "Гость"}, "text": text}})
    };
    // The same update twice, at the same moment and then once more later.
    let u = update(880_001, 6701, 1, "Повторная доставка");
    let (a, b) = tokio::join!(post(u.clone()), post(u.clone()));
    assert_eq!(a.expect("post").status(), 200);
    assert_eq!(b.expect("post").status(), 200);
    assert_eq!(post(u).await.expect("post").status(), 200);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM messages WHERE text = 'Повторная доставка'"
        )
        .await,
        1
    );
    // A new customer's first two messages at the same moment: one contact, one conversation.
    let (a, b) = tokio::join!(
        post(update(880_002, 6702, 1, "Здравствуйте")),
        post(update(880_003, 6702, 2, "Есть в наличии?"))
    );
    assert_eq!(a.expect("post").status(), 200);
    assert_eq!(b.expect("post").status(), 200);
    // And through Telegram itself, two quick messages from another newcomer.
    app.telegram
        .customer_writes(&token, CustomerMessage::text(6703, "Нина", "Добрый день"));
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6703, "Нина", "Сколько стоит?"),
    );
    within(20, "Telegram delivered both", || async {
        count(
            &app,
            "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.external_chat_id = '6703'",
        )
        .await
            == 2
    })
    .await;
    for user in ["6702", "6703"] {
        assert_eq!(
            count(
                &app,
                &format!("SELECT count(*) FROM contacts WHERE external_id = '{user}'")
            )
            .await,
            1,
            "one contact for {user}"
        );
        assert_eq!(
            count(
                &app,
                &format!("SELECT count(*) FROM conversations WHERE external_chat_id = '{user}'")
            )
            .await,
            1,
            "one conversation for {user}"
        );
    }
    assert_eq!(count(&app, "SELECT count(*) FROM messages").await, 5);
    let inbox = s.html("/app/inbox").await;
    assert_eq!(inbox.matches("<li id=\"conv-").count(), 3, "{inbox}");
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct SseEvent {
    /// The stream position (`events::Position`): `<tx>_<id>` on PostgreSQL, the id on SQLite;
    /// compared as (tx, id).
    id: (i64, i64),
    kind: String,
    data: serde_json::Value,
}

/// Reads `/app/events` chunk by chunk, as the browser's EventSource does.
struct SseStream {
    resp: reqwest::Response,
    buf: String,
}

impl SseStream {
    async fn open(s: &Session, last_event_id: Option<(i64, i64)>) -> SseStream {
        Self::open_at(
            s,
            last_event_id.map(|(tx, id)| {
                if tx == 0 {
                    id.to_string()
                } else {
                    format!("{tx}_{id}")
                }
            }),
        )
        .await
    }

    /// Opens with `Last-Event-ID` exactly as given (a position, or an older version's plain id).
    async fn open_at(s: &Session, last_event_id: Option<String>) -> SseStream {
        let mut req = s
            .http
            .get(format!("{}/app/events", s.base))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("open the event stream");
        assert_eq!(resp.status(), 200);
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        SseStream {
            resp,
            buf: String::new(),
        }
    }

    /// The next event, or `None` if none comes within `secs`.
    async fn next(&mut self, secs: u64) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        let v = v.trim();
                        id = match v.split_once('_') {
                            Some((tx, id)) => tx.parse().ok().zip(id.parse().ok()),
                            None => v.parse().ok().map(|id| (0, id)),
                        };
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if let Some(id) = id {
                    let data = serde_json::from_str(&data).expect("event data is JSON");
                    return Some(SseEvent { id, kind, data });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .ok()?
                .expect("read the event stream")?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Skips events until one carries a message fragment containing `text`.
    async fn until_message(&mut self, text: &str) -> SseEvent {
        loop {
            let e = self
                .next(20)
                .await
                .unwrap_or_else(|| panic!("no event with {text:?} arrived"));
            if e.data["message"].as_str().is_some_and(|m| m.contains(text)) {
                return e;
            }
        }
    }
}

#[tokio::test]
async fn the_live_stream_shows_new_messages_and_replays_missed_ones() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    let mut live = SseStream::open(&s, None).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6801, "Тимур", "Первое сообщение"),
    );
    let first = live.until_message("Первое сообщение").await;
    assert_eq!(first.kind, "message");
    let conv = first.data["conversation_id"]
        .as_str()
        .expect("conversation_id")
        .to_string();
    assert!(first.data["row"]
        .as_str()
        .is_some_and(|r| r.contains(&format!("conv-{conv}"))));
    assert!(s
        .html(&format!("/app/inbox/{conv}"))
        .await
        .contains("Первое сообщение"));
    drop(live);

    // While the browser is away, two more arrive.
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6801, "Тимур", "Второе сообщение"),
    );
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6801, "Тимур", "Третье сообщение"),
    );
    within(20, "both are stored", || async {
        count(&app, "SELECT count(*) FROM messages").await == 3
    })
    .await;
    let mut back = SseStream::open(&s, Some(first.id)).await;
    let second = back.until_message("Второе сообщение").await;
    let third = back.until_message("Третье сообщение").await;
    assert!(first.id < second.id && second.id < third.id);
    assert_eq!(second.data["conversation_id"].as_str(), Some(conv.as_str()));
    // Nothing from before the given id is replayed.
    let mut again = SseStream::open(&s, Some(second.id)).await;
    let e = again.next(20).await.expect("the missed event");
    assert!(e.id > second.id, "replay starts after Last-Event-ID");
    // A page of an older version gives back the plain event id: it resumes right after it.
    let mut plain = SseStream::open_at(&s, Some(second.id.1.to_string())).await;
    let p = plain.next(20).await.expect("the event after the plain id");
    assert_eq!(p.id, e.id, "a plain id resumes right after that event");
}

/// A second node over the same PostgreSQL database: its own pool, event hub, workers and pollers.
async fn second_node(app: &TestApp) -> (chatter_web::server::Server, String) {
    use std::sync::Arc;
    let mut core = app.core.clone();
    core.db = chatter_store::connect(&app.db.url)
        .await
        .expect("node 2 connects");
    core.node_id = format!("node-2-{}", uuid::Uuid::new_v4().simple());
    core.events = Arc::new(chatter_core::events::EventHub::default());
    core.jobs_notify = Arc::new(tokio::sync::Notify::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let web = chatter_web::WebConfig {
        database_url: app.db.url.clone(),
        ..chatter_web::WebConfig::default()
    };
    let workers = (
        chatter_core::jobs::worker::Registry::standard(),
        chatter_core::jobs::worker::WorkerConfig {
            concurrency: 4,
            lease_ms: 30_000,
            poll_ms: 50,
            ..Default::default()
        },
    );
    let server = chatter_web::server::start(core, web, Some(listener), Some(workers)).await;
    (server, url)
}

async fn sign_in_on(app: &TestApp, url: &str) -> Session {
    let s = Session {
        http: app.client(),
        base: url.to_string(),
    };
    let r = s
        .post_from(
            "/sign-in",
            "/sign-in",
            &[("email", "anna@example.ru"), ("password", PW)],
        )
        .await;
    assert_eq!(r.status(), 303, "signed in on {url}");
    s
}

#[tokio::test]
async fn a_browser_on_node_two_sees_a_message_ingested_by_node_one() {
    // Webhook mode: Telegram delivers to node 1's address, so node 1 stores the message.
    let app = TestApp::builder().with_telegram_webhooks().start().await;
    if !app.db.is_postgres() {
        // Several nodes need PostgreSQL; SQLite is one node by design.
        return;
    }
    let (s, token, source_id) = company_with_bot(&app).await;
    within(20, "the webhook is set", || async {
        app.telegram.webhook(&token).is_some()
    })
    .await;
    let (node2, url2) = second_node(&app).await;
    let s2 = sign_in_on(&app, &url2).await;
    let mut live2 = SseStream::open(&s2, None).await;
    let mut live1 = SseStream::open(&s, None).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6901, "Роман", "Через первый узел"),
    );
    let on2 = live2.until_message("Через первый узел").await;
    let on1 = live1.until_message("Через первый узел").await;
    assert_eq!(on1.id, on2.id, "the same event on both nodes");
    assert_eq!(on1.data["conversation_id"], on2.data["conversation_id"]);
    let hook = app.telegram.webhook(&token).expect("webhook");
    assert_eq!(
        hook.url,
        format!("{}/hooks/telegram/{source_id}", app.telegram_hook_base)
    );
    // A reply written on node 2 reaches the customer, and node 1's browser sees it sent.
    let conv = on2.data["conversation_id"]
        .as_str()
        .expect("id")
        .to_string();
    reply(&s2, &conv, "Ответ со второго узла").await;
    within(20, "the reply arrives", || async {
        sent_to(&app, &token, 6901) == ["Ответ со второго узла"]
    })
    .await;
    let e = live1.until_message("Ответ со второго узла").await;
    assert_eq!(e.data["conversation_id"].as_str(), Some(conv.as_str()));
    // A graceful stop waits for open connections: close the streams first.
    drop((live1, live2));
    node2.shutdown().await;
}

#[tokio::test]
async fn with_two_nodes_polling_each_bot_is_polled_once() {
    let app = TestApp::new().await;
    if !app.db.is_postgres() {
        return;
    }
    let (s, token, _) = company_with_bot(&app).await;
    let (node2, _) = second_node(&app).await;
    let mut tokens = vec![token];
    for i in 0..3 {
        let t = app.telegram.create_bot(&format!("extra{i}_bot"), "Ещё бот");
        let r = s
            .post_from(
                "/app/sources/new",
                "/app/sources",
                &[("kind", "1"), ("token", &t), ("name", "")],
            )
            .await;
        assert_eq!(r.status(), 303);
        tokens.push(t);
    }
    let expected = 5 * tokens.len() as i64;
    for round in 0..5 {
        for (b, t) in tokens.iter().enumerate() {
            app.telegram.customer_writes(
                t,
                CustomerMessage::text(7000 + b as i64, "Клиент", &format!("бот {b} раз {round}")),
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    within(30, "every message is stored", || async {
        count(&app, "SELECT count(*) FROM messages").await == expected
    })
    .await;
    // Give a second poller, if there were one, time to store something twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages").await,
        expected,
        "nothing stored twice"
    );
    let holders = count(
        &app,
        "SELECT count(DISTINCT holder) FROM leases WHERE name LIKE 'telegram-poll:%'",
    )
    .await;
    assert!((1..=2).contains(&holders), "held by our nodes: {holders}");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM leases WHERE name LIKE 'telegram-poll:%'"
        )
        .await,
        tokens.len() as i64,
        "one poller lease per bot"
    );
    // Two pollers of one bot would keep getting 409 "terminated by other getUpdates request",
    // which marks the source as failing.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM sources WHERE status <> 'connected' OR last_error IS NOT NULL"
        )
        .await,
        0,
        "no bot saw a conflict"
    );
    for t in &tokens {
        assert_eq!(app.telegram.pending_updates(t), 0);
    }
    node2.shutdown().await;
}
