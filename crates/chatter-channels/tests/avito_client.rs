//! The Avito client against the stateful fake (chatter-fakes): OAuth tokens and their refresh,
//! identify, sending, the polling fallback, webhooks through a local receiver, rate limits and
//! error classification.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use chatter_channels::avito::{self, AvitoClient, PollCursor};
use chatter_channels::{Channel, ChannelError, InboundEvent, OutboundMessage};
use chatter_fakes::avito::{BuyerMessage, Credentials, Failure};
use chatter_fakes::FakeAvito;
use tokio::sync::mpsc;

fn http(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("a reqwest client")
}

async fn setup() -> (FakeAvito, Credentials, AvitoClient) {
    let fake = FakeAvito::start().await.expect("fake Avito starts");
    let creds = fake.add_account("ООО Ромашка");
    let client = AvitoClient::new(
        http(Duration::from_secs(5)),
        &fake.base_url(),
        &creds.client_id,
        &creds.client_secret,
    );
    (fake, creds, client)
}

fn texts(events: &[InboundEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            InboundEvent::Message(m) => m.text.clone().unwrap_or_default(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// A webhook receiver on loopback: forwards every body and answers 200.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Bytes>) {
    async fn hook(State(tx): State<mpsc::UnboundedSender<Bytes>>, body: Bytes) -> StatusCode {
        let _ = tx.send(body);
        StatusCode::OK
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/hooks/avito/unguessable",
        listener.local_addr().expect("addr")
    );
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/hooks/avito/unguessable", post(hook))
        .with_state(tx);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next_hook(rx: &mut mpsc::UnboundedReceiver<Bytes>) -> Bytes {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a webhook within 5 s")
        .expect("the receiver is running")
}

#[tokio::test]
async fn identify_names_the_account_and_rejects_bad_credentials() {
    let (fake, creds, client) = setup().await;
    let me = client.identify().await.expect("identify");
    assert_eq!(me.id, creds.user_id.to_string());
    assert_eq!(me.name, "ООО Ромашка");
    assert_eq!(fake.tokens_issued(&creds.client_id), 1);

    let wrong = AvitoClient::new(
        http(Duration::from_secs(5)),
        &fake.base_url(),
        &creds.client_id,
        "wrong-secret",
    );
    let e = wrong.identify().await.expect_err("wrong secret");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
    assert!(!e.to_string().contains("wrong-secret"), "{e}");

    fake.revoke(&creds.client_id);
    let e = client.identify().await.expect_err("revoked");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
}

#[tokio::test]
async fn polling_returns_new_messages_in_order_without_duplicates() {
    let (fake, creds, client) = setup().await;
    let id = &creds.client_id;
    let (chat_a, _) = fake.customer_writes(id, BuyerMessage::text(501, "Иван", 1001, "one"));
    fake.customer_writes(id, BuyerMessage::text(502, "Ольга", 1002, "two"));
    fake.customer_writes(id, BuyerMessage::text(501, "Иван", 1001, "three"));

    let (events, cursor) = client.poll(&PollCursor::default()).await.expect("poll");
    // Avito's times are whole seconds: across chats within one second the order is unknown,
    // within a chat it is the order written.
    let mut all = texts(&events);
    let pos = |t: &str| all.iter().position(|x| x == t).expect(t);
    assert!(pos("one") < pos("three"), "{all:?}");
    all.sort();
    assert_eq!(all, ["one", "three", "two"]);
    let first = events
        .iter()
        .find_map(|e| match e {
            InboundEvent::Message(m) if m.text.as_deref() == Some("one") => Some(m),
            _ => None,
        })
        .expect("one");
    assert_eq!(first.chat.external_id, chat_a);
    assert_eq!(first.sender.external_id, "501");
    assert_eq!(first.sender.name, "Иван");
    assert_eq!(first.chat.title.as_deref(), Some("Item 1001"));

    // Our reply is not a customer's message; a re-poll returns nothing twice.
    client
        .send(&OutboundMessage {
            chat_external_id: chat_a.clone(),
            text: "answer".into(),
            ..OutboundMessage::default()
        })
        .await
        .expect("send");
    let (again, cursor) = client.poll(&cursor).await.expect("re-poll");
    assert!(again.is_empty(), "{again:?}");

    fake.customer_writes(id, BuyerMessage::text(502, "Ольга", 1002, "four"));
    let (events, cursor) = client.poll(&cursor).await.expect("poll");
    assert_eq!(texts(&events), ["four"]);
    let (events, _) = client.poll(&cursor).await.expect("poll");
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn send_splits_at_1000_chars_and_the_fake_logs_it() {
    let (fake, creds, client) = setup().await;
    let (chat, _) = fake.customer_writes(
        &creds.client_id,
        BuyerMessage::text(7, "Анна", 55, "Is it available?"),
    );
    let text = "Да, в наличии. ".repeat(100); // 1500 chars
    let sent = client
        .send(&OutboundMessage {
            chat_external_id: chat.clone(),
            text: text.clone(),
            ..OutboundMessage::default()
        })
        .await
        .expect("send");
    let log = fake.sent(&creds.client_id);
    assert_eq!(log.len(), 2);
    assert_eq!(
        log.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        sent.external_ids
    );
    assert!(log.iter().all(|s| s.chat_id == chat));
    assert!(log
        .iter()
        .all(|s| s.text.chars().count() <= avito::MAX_TEXT));
    assert_eq!(format!("{}{}", log[0].text, log[1].text), text);

    let e = client
        .send(&OutboundMessage {
            chat_external_id: "u2i-nope".into(),
            text: "hi".into(),
            ..OutboundMessage::default()
        })
        .await
        .expect_err("unknown chat");
    assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");
}

#[tokio::test]
async fn webhook_is_delivered_to_a_receiver_and_parsed() {
    let (fake, creds, client) = setup().await;
    let (url, mut rx) = receiver().await;
    client.subscribe(&url).await.expect("subscribe");
    let subs = client.subscriptions().await.expect("list");
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].url, url);
    assert_eq!(fake.webhooks(&creds.client_id), vec![url.clone()]);

    let (chat, message_id) = fake.customer_writes(
        &creds.client_id,
        BuyerMessage {
            image: Some(b"\xff\xd8photo".to_vec()),
            ..BuyerMessage::text(77, "Пётр", 9, "")
        },
    );
    let events = avito::parse_webhook(&next_hook(&mut rx).await).expect("v3 payload");
    let [InboundEvent::Message(m)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(m.external_id, message_id);
    assert_eq!(m.chat.external_id, chat);
    assert_eq!(m.sender.external_id, "77");
    assert_eq!(m.attachments.len(), 1);
    let photo = client
        .download(&m.attachments[0].file_ref)
        .await
        .expect("download");
    assert_eq!(&photo.bytes[..], b"\xff\xd8photo");

    // The buyer's name is not in the payload; the chat has it.
    let info = client.chat(&chat).await.expect("chat");
    assert_eq!(info.users, [(77, "Пётр".to_owned())]);
    assert_eq!(info.item, Some((9, "Item 9".to_owned())));

    // Our own message comes back through the webhook and is skipped.
    client
        .send(&OutboundMessage {
            chat_external_id: chat,
            text: "Фото получили".into(),
            ..OutboundMessage::default()
        })
        .await
        .expect("send");
    let events = avito::parse_webhook(&next_hook(&mut rx).await).expect("v3 payload");
    assert!(
        matches!(events.as_slice(), [InboundEvent::Ignored { .. }]),
        "{events:?}"
    );

    client.unsubscribe(&url).await.expect("unsubscribe");
    assert!(client.subscriptions().await.expect("list").is_empty());
    assert!(matches!(
        avito::parse_webhook(b"{\"payload\":"),
        Err(avito::HookError::Malformed(_))
    ));
}

#[tokio::test]
async fn the_token_is_refreshed_after_it_expires() {
    let (fake, creds, client) = setup().await;
    fake.set_token_lifetime(&creds.client_id, Duration::from_secs(1));
    client.identify().await.expect("first call");
    client.identify().await.expect("cached token");
    assert_eq!(fake.tokens_issued(&creds.client_id), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.identify().await.expect("after expiry");
    assert_eq!(fake.tokens_issued(&creds.client_id), 2);

    // Clones share the cache.
    let clone = client.clone();
    clone.identify().await.expect("clone");
    assert_eq!(fake.tokens_issued(&creds.client_id), 2);
}

#[tokio::test]
async fn the_token_is_refreshed_once_after_a_401() {
    let (fake, creds, client) = setup().await;
    client.identify().await.expect("first call");
    fake.expire_tokens(&creds.client_id);
    client.identify().await.expect("refreshed after 401");
    assert_eq!(fake.tokens_issued(&creds.client_id), 2);

    // A 401 that survives a fresh token means the credentials are bad.
    fake.fail_next(
        &creds.client_id,
        Failure::Status {
            status: 401,
            message: "unauthorized".into(),
        },
        2,
    );
    let e = client.identify().await.expect_err("401 twice");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
    assert_eq!(fake.tokens_issued(&creds.client_id), 3);
}

#[tokio::test]
async fn rate_limits_and_errors_are_classified() {
    let (fake, creds, client) = setup().await;
    let id = &creds.client_id;
    fake.set_rate_limit(id, Some(2));
    client.identify().await.expect("1");
    client.identify().await.expect("2");
    let e = client.identify().await.expect_err("over the limit");
    assert!(
        matches!(
            e,
            ChannelError::RateLimited {
                retry_after_secs: 60,
                ..
            }
        ),
        "{e:?}"
    );
    fake.set_rate_limit(id, None);

    for (status, transient) in [(500, true), (503, true), (402, false), (403, false)] {
        fake.fail_next(
            id,
            Failure::Status {
                status,
                message: format!("injected {status}"),
            },
            1,
        );
        let e = client.identify().await.expect_err("injected");
        assert_eq!(e.is_retryable(), transient, "{status}: {e:?}");
        assert!(
            !matches!(e, ChannelError::Unauthorized(_)),
            "{status}: {e:?}"
        );
    }

    fake.fail_next(id, Failure::Hang, 1);
    let impatient = AvitoClient::new(
        http(Duration::from_millis(300)),
        &fake.base_url(),
        &creds.client_id,
        &creds.client_secret,
    );
    let e = impatient.identify().await.expect_err("hang");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");

    client.identify().await.expect("healthy again");
}

#[tokio::test]
async fn webhook_senders_are_named_from_their_chats() {
    use chatter_channels::{Connector, SenderRef};
    let (fake, creds, client) = setup().await;
    let (chat, _) = fake.customer_writes(
        &creds.client_id,
        BuyerMessage::text(48_112_950, "Николай", 3_402_118_800, "Диван ещё продаётся?"),
    );
    let (other, _) = fake.customer_writes(
        &creds.client_id,
        BuyerMessage::text(48_112_951, "Ирина", 3_402_118_801, "Торг уместен?"),
    );
    let who = [
        SenderRef {
            sender: "48112950".into(),
            chat: chat.clone(),
        },
        SenderRef {
            sender: "48112951".into(),
            chat: other,
        },
        // Not a person of that chat: no name for them.
        SenderRef {
            sender: "48112951".into(),
            chat,
        },
    ];
    let names = Connector::sender_names(&client, &who)
        .await
        .expect("Avito names senders")
        .expect("named");
    assert_eq!(names.get("48112950").map(String::as_str), Some("Николай"));
    assert_eq!(names.get("48112951").map(String::as_str), Some("Ирина"));
    assert_eq!(names.len(), 2);
}
