//! The Max client against the stateful fake (chatter-fakes): identify, long polling with
//! markers, sending, media, webhooks through a local receiver, error classification, and the
//! extra-CA HTTP client.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chatter_channels::max::{self, HookError, MaxClient};
use chatter_channels::{Channel, ChannelError, ChatKind, Extra, InboundEvent, OutboundMessage};
use chatter_fakes::max::{CustomerMessage, Failure};
use chatter_fakes::FakeMax;
use tokio::sync::mpsc;

fn http(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("a reqwest client")
}

async fn setup() -> (FakeMax, String, MaxClient) {
    let fake = FakeMax::start().await.expect("fake Max starts");
    let token = fake.add_bot("Shop bot", "shop_bot");
    let client = MaxClient::new(http(Duration::from_secs(5)), &fake.base_url(), &token);
    (fake, token, client)
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

/// A webhook receiver on loopback: forwards (secret header, body) and answers `status`.
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    hooks: mpsc::UnboundedReceiver<(Option<String>, Bytes)>,
}

type ReceiverState = (
    Arc<AtomicU16>,
    mpsc::UnboundedSender<(Option<String>, Bytes)>,
);

async fn receiver() -> Receiver {
    async fn hook(
        State((status, tx)): State<ReceiverState>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let secret = headers
            .get(max::SECRET_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Read before forwarding: the test changes it once it has seen this delivery.
        let status = StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
        let _ = tx.send((secret, body));
        status
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hooks/max", listener.local_addr().expect("addr"));
    let status = Arc::new(AtomicU16::new(200));
    let (tx, hooks) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/hooks/max", post(hook))
        .with_state((status.clone(), tx));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, status, hooks }
}

async fn next_hook(r: &mut Receiver) -> (Option<String>, Bytes) {
    tokio::time::timeout(Duration::from_secs(5), r.hooks.recv())
        .await
        .expect("a webhook within 5 s")
        .expect("the receiver is running")
}

#[tokio::test]
async fn identify_names_the_bot_and_rejects_a_bad_token() {
    let (fake, token, client) = setup().await;
    let me = client.identify().await.expect("identify");
    assert_eq!(me.name, "Shop bot");
    assert_eq!(me.username.as_deref(), Some("shop_bot"));
    assert_eq!(me.id, fake.bot_user_id(&token).to_string());

    let wrong = MaxClient::new(
        http(Duration::from_secs(5)),
        &fake.base_url(),
        "not-a-token",
    );
    let e = wrong.identify().await.expect_err("a wrong token");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");

    fake.revoke(&token);
    let e = client.identify().await.expect_err("a revoked token");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
    assert!(!e.to_string().contains(&token), "{e}");
}

#[tokio::test]
async fn polling_returns_messages_in_order_without_duplicates() {
    let (fake, token, client) = setup().await;
    for text in ["one", "two", "three"] {
        fake.customer_writes(&token, CustomerMessage::text(501, "Ivan", text));
    }
    let (events, marker) = client.updates(None, 0).await.expect("poll");
    assert_eq!(texts(&events), ["one", "two", "three"]);
    let InboundEvent::Message(first) = &events[0] else {
        panic!("a message");
    };
    assert_eq!(first.sender.external_id, "501");
    assert_eq!(first.chat.kind, ChatKind::Private);
    assert!(marker.is_some());

    // The marker commits what was returned: a re-poll sees nothing new.
    let (again, marker2) = client.updates(marker, 0).await.expect("re-poll");
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(fake.pending_updates(&token), 0);

    // Without a marker the uncommitted updates come again (none here), then new ones.
    fake.customer_writes(&token, CustomerMessage::text(502, "Olga", "four"));
    let (events, _) = client.updates(marker2, 0).await.expect("poll");
    assert_eq!(texts(&events), ["four"]);
}

#[tokio::test]
async fn a_long_poll_waits_for_the_next_message() {
    let (fake, token, client) = setup().await;
    let writer = {
        let (fake, token) = (fake.clone(), token.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            fake.customer_writes(&token, CustomerMessage::text(7, "Anna", "late"));
        })
    };
    let started = std::time::Instant::now();
    let (events, _) = client.updates(None, 10).await.expect("long poll");
    assert_eq!(texts(&events), ["late"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    writer.await.expect("writer");

    // An idle poll ends empty after its timeout.
    let (_, marker) = client.updates(None, 0).await.expect("poll");
    let (events, _) = client.updates(marker, 1).await.expect("idle poll");
    assert!(events.is_empty());
}

#[tokio::test]
async fn media_edits_groups_and_stops_are_mapped() {
    let (fake, token, client) = setup().await;
    let mid = fake.customer_writes(
        &token,
        CustomerMessage {
            image: Some(b"\xff\xd8jpeg".to_vec()),
            file: Some((b"%PDF".to_vec(), "offer.pdf".into())),
            ..CustomerMessage::text(42, "Ivan", "see attached")
        },
    );
    fake.customer_edits(&token, &mid, "see attached (edited)");
    fake.customer_writes(
        &token,
        CustomerMessage {
            group: Some((-777, "Team".into())),
            reply_to: Some(mid.clone()),
            ..CustomerMessage::text(43, "Petr", "in the group")
        },
    );
    fake.bot_stopped(&token, 42, "Ivan");
    fake.bot_started(&token, 42, "Ivan", Some("promo"));
    fake.push_update(
        &token,
        serde_json::json!({"update_type": "message_callback", "timestamp": 1,
                           "callback": {"callback_id": "cb", "payload": "x", "user": {"user_id": 42, "first_name": "Ivan"}}}),
    );

    let (events, _) = client.updates(None, 0).await.expect("poll");
    assert_eq!(events.len(), 6, "{events:?}");
    let InboundEvent::Message(m) = &events[0] else {
        panic!("{:?}", events[0]);
    };
    assert_eq!(m.external_id, mid);
    assert_eq!(m.attachments.len(), 2);
    assert_eq!(m.attachments[0].kind, "photo");
    assert_eq!(m.attachments[1].kind, "document");
    assert_eq!(m.attachments[1].file_name.as_deref(), Some("offer.pdf"));
    let photo = client
        .download(&m.attachments[0].file_ref)
        .await
        .expect("download");
    assert_eq!(&photo.bytes[..], b"\xff\xd8jpeg");
    assert_eq!(photo.mime_type.as_deref(), Some("image/jpeg"));

    let InboundEvent::Message(edit) = &events[1] else {
        panic!("{:?}", events[1]);
    };
    assert!(edit.edited);
    assert_eq!(edit.external_id, mid);
    assert_eq!(edit.text.as_deref(), Some("see attached (edited)"));

    let InboundEvent::Message(group) = &events[2] else {
        panic!("{:?}", events[2]);
    };
    assert_eq!(group.chat.kind, ChatKind::Group);
    assert_eq!(group.chat.external_id, "-777");
    assert_eq!(group.reply_to_external_id.as_deref(), Some(mid.as_str()));

    assert!(matches!(
        &events[3],
        InboundEvent::Blocked { blocked: true, chat, .. } if chat.external_id == m.chat.external_id
    ));
    assert!(matches!(
        &events[4],
        InboundEvent::Blocked { blocked: false, .. }
    ));
    assert!(matches!(&events[5], InboundEvent::Ignored { .. }));
    assert_eq!(m.extra, None::<Extra>);
}

#[tokio::test]
async fn send_splits_long_texts_and_the_fake_logs_them() {
    let (fake, token, client) = setup().await;
    let mid = fake.customer_writes(&token, CustomerMessage::text(9, "Ivan", "hi"));
    let (events, _) = client.updates(None, 0).await.expect("poll");
    let InboundEvent::Message(m) = &events[0] else {
        panic!("a message");
    };
    let long = "слово ".repeat(1000); // 6000 chars
    let sent = client
        .send(&OutboundMessage {
            chat_external_id: m.chat.external_id.clone(),
            text: long.clone(),
            reply_to_external_id: Some(mid.clone()),
            idempotency_key: Some("k1".into()),
        })
        .await
        .expect("send");
    assert_eq!(sent.external_ids.len(), 2);
    let log = fake.sent(&token);
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].chat_id.to_string(), m.chat.external_id);
    assert_eq!(log[0].mid, sent.external_ids[0]);
    assert_eq!(log[0].reply_to.as_deref(), Some(mid.as_str()));
    assert_eq!(log[1].reply_to, None);
    assert_eq!(format!("{}{}", log[0].text, log[1].text), long);
    assert!(log.iter().all(|s| s.text.chars().count() <= max::MAX_TEXT));

    // The customer stopped the bot: Max answers 403, which is not worth a retry and means the
    // customer blocked us.
    fake.bot_stopped(&token, 9, "Ivan");
    let e = client
        .send(&OutboundMessage {
            chat_external_id: m.chat.external_id.clone(),
            text: "hello?".into(),
            ..OutboundMessage::default()
        })
        .await
        .expect_err("blocked");
    assert!(matches!(e, ChannelError::Blocked(_)), "{e:?}");
    assert!(!e.is_retryable());

    let e = client
        .send(&OutboundMessage {
            chat_external_id: "123".into(),
            text: "nobody".into(),
            ..OutboundMessage::default()
        })
        .await
        .expect_err("unknown chat");
    assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");
}

#[tokio::test]
async fn webhook_is_delivered_to_a_receiver_and_parsed() {
    let (fake, token, client) = setup().await;
    let mut rx = receiver().await;
    let secret = max::new_webhook_secret();
    client
        .subscribe(&rx.url, Some(&secret))
        .await
        .expect("subscribe");
    let subs = client.subscriptions().await.expect("list");
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].url, rx.url);
    assert_eq!(
        fake.subscription(&token).and_then(|s| s.secret),
        Some(secret.clone())
    );

    // Polling and webhooks are exclusive (§3.2: 405).
    let e = client.updates(None, 0).await.expect_err("405");
    assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");

    // The first delivery fails: the fake retries until a 200.
    rx.status.store(500, Ordering::SeqCst);
    fake.customer_writes(&token, CustomerMessage::text(11, "Ivan", "via hook"));
    let (header, body) = next_hook(&mut rx).await;
    rx.status.store(200, Ordering::SeqCst);
    let events = max::parse_webhook(&body, header.as_deref(), &secret).expect("genuine");
    assert_eq!(texts(&events), ["via hook"]);
    let (header, body) = next_hook(&mut rx).await;
    let again = max::parse_webhook(&body, header.as_deref(), &secret).expect("genuine");
    assert_eq!(again, events, "a retry carries the same update (same mid)");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.pending_updates(&token), 0);
    let statuses: Vec<Option<u16>> = fake.deliveries(&token).iter().map(|d| d.status).collect();
    assert_eq!(statuses[0], Some(500));
    assert_eq!(statuses.last(), Some(&Some(200)));

    client.unsubscribe(&rx.url).await.expect("unsubscribe");
    assert!(client.subscriptions().await.expect("list").is_empty());
    fake.customer_writes(&token, CustomerMessage::text(11, "Ivan", "polled"));
    let (events, _) = client.updates(None, 0).await.expect("polling again");
    assert_eq!(texts(&events), ["polled"]);
}

#[tokio::test]
async fn forged_and_malformed_webhooks_are_rejected() {
    let secret = max::new_webhook_secret();
    let body = br#"{"update_type":"bot_stopped","timestamp":1,"chat_id":5,"user":{"user_id":6,"first_name":"A"}}"#;
    assert!(max::parse_webhook(body, Some(&secret), &secret).is_ok());
    assert_eq!(
        max::parse_webhook(body, Some("forged-secret-value"), &secret),
        Err(HookError::Forged)
    );
    assert_eq!(
        max::parse_webhook(body, None, &secret),
        Err(HookError::Forged)
    );
    let e = max::parse_webhook(b"{\"update_type\":", Some(&secret), &secret).expect_err("bad");
    assert!(matches!(e, HookError::Malformed(_)), "{e:?}");
    let e = max::parse_webhook(b"[1,2]", Some(&secret), &secret).expect_err("bad");
    assert!(matches!(e, HookError::Malformed(_)), "{e:?}");
}

#[tokio::test]
async fn errors_are_classified() {
    let (fake, token, client) = setup().await;
    fake.fail_next(
        &token,
        Failure::TooManyRequests {
            retry_after: Some(3),
        },
        1,
    );
    let e = client.identify().await.expect_err("429");
    assert!(
        matches!(
            e,
            ChannelError::RateLimited {
                retry_after_secs: 3,
                ..
            }
        ),
        "{e:?}"
    );
    fake.fail_next(&token, Failure::server_error(), 1);
    let e = client.identify().await.expect_err("503");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
    fake.fail_next(
        &token,
        Failure::Status {
            status: 400,
            code: "proto.payload".into(),
            message: "bad".into(),
        },
        1,
    );
    let e = client.identify().await.expect_err("400");
    assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");

    fake.fail_next(&token, Failure::Hang, 1);
    let impatient = MaxClient::new(http(Duration::from_millis(300)), &fake.base_url(), &token);
    let e = impatient.identify().await.expect_err("hang");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
    assert!(e.is_retryable());

    // The failures are used up: the next call goes through.
    client.identify().await.expect("healthy again");

    fake.shutdown();
    let e = client.identify().await.expect_err("server gone");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
}

/// A self-signed root generated once for this test with `openssl req -x509` (P-256, 100 years).
const TEST_ROOT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBwjCCAWmgAwIBAgIUKkFP9gqt2GLwCne47FiEUGy2jrkwCgYIKoZIzj0EAwIw
NjE0MDIGA1UEAwwrQ2hhdHRlciB0ZXN0IHJvb3QgQ0EgKE1heCBleHRyYSBDQSBm
aXh0dXJlKTAgFw0yNjExMjQwNDIyMzhaGA8yMTI2MTAzMTA0MjIzOFowNjE0MDIG
A1UEAwwrQ2hhdHRlciB0ZXN0IHJvb3QgQ0EgKE1heCBleHRyYSBDQSBmaXh0dXJl
KTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABE5IPeSOtiU75UhvXaEMntZYM7VR
XqDB15FN9BPrzi+laqrDFtFOtirEqIiWVEOXgFjTScRNg2BT/ap9505OwMKjUzBR
MB0GA1UdDgQWBBR5Ymjqx9hGgE+/pmrjPgoiy2HETzAfBgNVHSMEGDAWgBR5Ymjq
x9hGgE+/pmrjPgoiy2HETzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cA
MEQCIHQLfPoySTHzJdH0/nwRf7MCPQ/K4lssfEf3n4AGcFNJAiBc89DGDJKG69He
HTTBYtFu+8gleMaKpRYLCvJuCcn62g==
-----END CERTIFICATE-----
";

#[tokio::test]
async fn the_extra_ca_client_builds_and_works_over_plain_http() {
    let http = max::http_client_with_extra_ca(TEST_ROOT_PEM.as_bytes(), Duration::from_secs(5))
        .expect("a client trusting the test root");
    // A bundle with the root twice is fine too.
    let bundle = format!("{TEST_ROOT_PEM}{TEST_ROOT_PEM}");
    max::http_client_with_extra_ca(bundle.as_bytes(), Duration::from_secs(5)).expect("bundle");
    let e =
        max::http_client_with_extra_ca(b"not a pem", Duration::from_secs(5)).expect_err("garbage");
    assert!(e.contains("no certificate"), "{e}");

    let fake = FakeMax::start().await.expect("fake");
    let token = fake.add_bot("Bot", "bot");
    let client = MaxClient::new(http, &fake.base_url(), &token);
    client.identify().await.expect("the client is usable");
}
