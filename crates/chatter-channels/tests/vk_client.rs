//! The VK client against the stateful fake (chatter-fakes): identify, long poll with its `ts`
//! and `failed` codes, deduplicated sends, callbacks delivered to a real receiver, error
//! classification and downloads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use chatter_channels::vk::{
    parse_callback, CallbackError, CallbackOutcome, LongPoll, VkClient, CALLBACK_OK,
};
use chatter_channels::{
    Channel, ChannelError, ChatKind, InboundEvent, InboundMessage, OutboundMessage,
};
use chatter_fakes::{FakeVk, VkCustomerMessage, VkFailure, VkGroup};

const CUSTOMER: i64 = 612444319;

async fn start() -> (FakeVk, VkGroup, VkClient) {
    let vk = FakeVk::start().await.expect("fake starts");
    let group = vk.create_group("Магазин Ромашка", "romashka_shop");
    let client = client(&vk, &group, Duration::from_secs(30));
    (vk, group, client)
}

fn client(vk: &FakeVk, group: &VkGroup, timeout: Duration) -> VkClient {
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client");
    VkClient::new(http, &vk.base_url(), &group.token, group.id)
}

fn messages(events: Vec<InboundEvent>) -> Vec<InboundMessage> {
    events
        .into_iter()
        .filter_map(|e| match e {
            InboundEvent::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn outbound(peer: i64, text: &str, key: &str) -> OutboundMessage {
    OutboundMessage {
        chat_external_id: peer.to_string(),
        text: text.into(),
        reply_to_external_id: None,
        idempotency_key: Some(key.into()),
    }
}

fn assert_no_token(e: &ChannelError, token: &str) {
    for s in [e.to_string(), format!("{e:?}")] {
        assert!(!s.contains(token), "the token leaked: {s}");
    }
}

#[tokio::test]
async fn identify_names_the_community_and_a_revoked_token_is_unauthorized() {
    let (vk, group, client) = start().await;
    let me = client.identify().await.expect("groups.getById");
    assert_eq!(me.id, group.id.to_string());
    assert_eq!(me.name, "Магазин Ромашка");
    assert_eq!(me.username.as_deref(), Some("romashka_shop"));
    assert!(!format!("{client:?}").contains(&group.token));

    vk.revoke(&group.token);
    let e = client.identify().await.expect_err("error 5");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
    assert!(e.to_string().contains("VK error 5"), "{e}");
    assert_no_token(&e, &group.token);

    // A token of another community than the one configured.
    let other = vk.create_group("Другой", "other");
    let wrong = VkClient::new(
        reqwest::Client::new(),
        &vk.base_url(),
        &other.token,
        group.id,
    );
    let e = wrong.identify().await.expect_err("foreign token");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
}

#[tokio::test]
async fn long_poll_returns_messages_in_order_and_moves_ts() {
    let (vk, group, client) = start().await;
    let server = client.get_long_poll_server().await.expect("server");
    assert_eq!(server.ts, vk.long_poll_ts(group.id).to_string());

    let first = vk.customer_writes(group.id, VkCustomerMessage::text(CUSTOMER, "Здравствуйте"));
    vk.customer_writes(
        group.id,
        VkCustomerMessage {
            reply_to: Some(first),
            ..VkCustomerMessage::text(CUSTOMER, "Есть доставка?")
        },
    );
    vk.customer_writes(
        group.id,
        VkCustomerMessage {
            chat: Some(7),
            ..VkCustomerMessage::text(CUSTOMER + 1, "из беседы")
        },
    );
    vk.customer_edits(group.id, CUSTOMER, first, "Здравствуйте!");
    vk.customer_denies(group.id, CUSTOMER);

    let LongPoll::Events { ts, events } = client
        .long_poll(&server.server, &server.key, &server.ts, 25)
        .await
        .expect("poll")
    else {
        panic!("events expected");
    };
    assert_eq!(events.len(), 5);
    let msgs = messages(events.clone());
    assert_eq!(msgs.len(), 4);
    assert_eq!(msgs[0].text.as_deref(), Some("Здравствуйте"));
    assert_eq!(msgs[0].external_id, format!("{CUSTOMER}:{first}"));
    assert_eq!(msgs[0].chat.kind, ChatKind::Private);
    assert_eq!(msgs[0].sender.external_id, CUSTOMER.to_string());
    assert_eq!(
        msgs[1].reply_to_external_id,
        Some(msgs[0].external_id.clone())
    );
    assert_eq!(msgs[2].chat.external_id, "2000000007");
    assert_eq!(msgs[2].chat.kind, ChatKind::Group);
    assert_eq!(msgs[2].external_id, "2000000007:1");
    assert!(msgs[3].edited);
    assert_eq!(msgs[3].external_id, msgs[0].external_id);
    assert_eq!(msgs[3].text.as_deref(), Some("Здравствуйте!"));
    assert!(matches!(
        events[4],
        InboundEvent::Blocked { blocked: true, .. }
    ));

    // The new ts is past them: an idle poll returns nothing and keeps it.
    let again = client
        .long_poll(&server.server, &server.key, &ts, 1)
        .await
        .expect("idle poll");
    assert_eq!(
        again,
        LongPoll::Events {
            ts: ts.clone(),
            events: vec![]
        }
    );
    // Polling from the old ts again replays the same events (the cursor is the caller's).
    let LongPoll::Events { events: replay, .. } = client
        .long_poll(&server.server, &server.key, &server.ts, 1)
        .await
        .expect("replay")
    else {
        panic!("events expected");
    };
    assert_eq!(replay, events);
}

#[tokio::test]
async fn a_waiting_poll_wakes_up_for_a_new_message() {
    let (vk, group, client) = start().await;
    let server = client.get_long_poll_server().await.expect("server");
    let writer = vk.clone();
    let id = group.id;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer.customer_writes(id, VkCustomerMessage::text(CUSTOMER, "ау"));
    });
    let started = std::time::Instant::now();
    let LongPoll::Events { events, .. } = client
        .long_poll(&server.server, &server.key, &server.ts, 25)
        .await
        .expect("poll")
    else {
        panic!("events expected");
    };
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(messages(events)[0].text.as_deref(), Some("ау"));
}

#[tokio::test]
async fn long_poll_failed_codes_are_reported_and_handled() {
    let (vk, group, client) = start().await;
    let server = client.get_long_poll_server().await.expect("server");

    // failed 2: a new key, the old ts still holds what came meanwhile.
    vk.expire_long_poll_key(group.id);
    vk.customer_writes(group.id, VkCustomerMessage::text(CUSTOMER, "один"));
    let r = client
        .long_poll(&server.server, &server.key, &server.ts, 1)
        .await;
    assert_eq!(r, Ok(LongPoll::KeyExpired));
    let fresh = client.get_long_poll_server().await.expect("new key");
    let LongPoll::Events { ts, events } = client
        .long_poll(&fresh.server, &fresh.key, &server.ts, 1)
        .await
        .expect("poll")
    else {
        panic!("events expected");
    };
    assert_eq!(messages(events)[0].text.as_deref(), Some("один"));

    // failed 1: history lost; continue from the ts VK gives.
    vk.customer_writes(group.id, VkCustomerMessage::text(CUSTOMER, "потеряно"));
    vk.lose_long_poll_history(group.id);
    let r = client.long_poll(&fresh.server, &fresh.key, &ts, 1).await;
    let expected_ts = vk.long_poll_ts(group.id).to_string();
    assert_eq!(r, Ok(LongPoll::HistoryLost { ts: expected_ts }));

    // failed 3: key and ts are both gone.
    vk.lose_long_poll_session(group.id);
    let r = client.long_poll(&fresh.server, &fresh.key, &ts, 1).await;
    assert_eq!(r, Ok(LongPoll::SessionLost));

    // `poll` acts on all of them by itself.
    let mut session = fresh;
    session.ts = ts;
    vk.customer_writes(group.id, VkCustomerMessage::text(CUSTOMER, "после сбоя"));
    let got = client.poll(&mut session, 1).await.expect("poll");
    // The session was lost: what was written in the gap (and the history VK lost) is read
    // again from the conversations.
    let texts: Vec<_> = messages(got).into_iter().filter_map(|m| m.text).collect();
    for lost in ["потеряно", "после сбоя"] {
        assert!(texts.iter().any(|t| t == lost), "{lost}: {texts:?}");
    }
    vk.expire_long_poll_key(group.id);
    vk.customer_writes(group.id, VkCustomerMessage::text(CUSTOMER, "снова"));
    let got = messages(client.poll(&mut session, 1).await.expect("poll"));
    assert_eq!(got[0].text.as_deref(), Some("снова"));
    assert_eq!(session.ts, vk.long_poll_ts(group.id).to_string());
}

#[tokio::test]
async fn send_is_logged_once_even_when_retried_and_replies_by_forward() {
    let (vk, group, client) = start().await;
    let cmid = vk.customer_writes(group.id, VkCustomerMessage::text(CUSTOMER, "Вопрос"));
    let mut m = outbound(CUSTOMER, "Ответ", "out-1");
    m.reply_to_external_id = Some(format!("{CUSTOMER}:{cmid}"));
    let sent = client.send(&m).await.expect("send");
    assert_eq!(sent.external_ids.len(), 1);
    let retry = client.send(&m).await.expect("retry");
    assert_eq!(retry, sent);
    let log = vk.sent(group.id);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].text, "Ответ");
    assert_eq!(log[0].peer_id, CUSTOMER);
    assert_eq!(log[0].reply_to, Some(cmid));
    assert_eq!(log[0].message_id.to_string(), sent.external_ids[0]);

    // Another key is another message; a bare id replies with reply_to.
    let mut m2 = outbound(CUSTOMER, "Ещё", "out-2");
    m2.reply_to_external_id = Some(sent.external_ids[0].clone());
    client.send(&m2).await.expect("send");
    let log = vk.sent(group.id);
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].reply_to, Some(log[0].conversation_message_id));

    // A long text is split; every part's id comes back, and a retry sends none again.
    let long: String = "слово ".repeat(1500);
    let parts = client
        .send(&outbound(CUSTOMER, &long, "out-3"))
        .await
        .expect("send");
    assert_eq!(parts.external_ids.len(), 3);
    let again = client
        .send(&outbound(CUSTOMER, &long, "out-3"))
        .await
        .expect("send");
    assert_eq!(again, parts);
    let log = vk.sent(group.id);
    assert_eq!(log.len(), 5);
    assert_eq!(
        log[2..].iter().map(|s| s.text.as_str()).collect::<String>(),
        long
    );
}

#[tokio::test]
async fn sending_without_permission_is_blocked() {
    let (vk, group, client) = start().await;
    let e = client
        .send(&outbound(CUSTOMER, "привет", "k"))
        .await
        .expect_err("never wrote");
    assert!(
        matches!(&e, ChannelError::Blocked(m) if m.contains("901")),
        "{e:?}"
    );
    vk.customer_writes(group.id, VkCustomerMessage::text(CUSTOMER, "hi"));
    vk.customer_denies(group.id, CUSTOMER);
    let e = client
        .send(&outbound(CUSTOMER, "привет", "k2"))
        .await
        .expect_err("denied");
    assert!(matches!(e, ChannelError::Blocked(_)), "{e:?}");
    vk.customer_allows(group.id, CUSTOMER);
    client
        .send(&outbound(CUSTOMER, "привет", "k3"))
        .await
        .expect("allowed again");
}

#[test]
fn callback_parsing_confirmation_message_secret_and_malformed() {
    let group = 214167102;
    let c = parse_callback(
        br#"{"type":"confirmation","group_id":214167102}"#,
        "s3cr3t",
        group,
    );
    assert_eq!(c, Ok(CallbackOutcome::Confirmation { group_id: group }));

    let body = br#"{"type":"message_new","event_id":"da1b15e9f6d0c3c8a0c937e048cdd3e2b43794d0","v":"5.199","group_id":214167102,"secret":"s3cr3t",
 "object":{"message":{"date":1767225600,"from_id":612444319,"id":513,"out":0,"peer_id":612444319,"text":"Hi",
   "conversation_message_id":2169,"attachments":[],"fwd_messages":[]},"client_info":{"keyboard":true,"lang_id":0}}}"#;
    let Ok(CallbackOutcome::Events { event_id, events }) = parse_callback(body, "s3cr3t", group)
    else {
        panic!("events expected");
    };
    assert_eq!(
        event_id.as_deref(),
        Some("da1b15e9f6d0c3c8a0c937e048cdd3e2b43794d0")
    );
    let InboundEvent::Message(m) = &events[0] else {
        panic!("a message");
    };
    assert_eq!(m.external_id, "612444319:2169");
    assert_eq!(m.text.as_deref(), Some("Hi"));
    assert_eq!(m.sent_at, 1_767_225_600_000);

    assert_eq!(
        parse_callback(body, "wrong", group),
        Err(CallbackError::Unauthenticated)
    );
    let unsigned = String::from_utf8_lossy(body).replace(r#""secret":"s3cr3t","#, "");
    assert_eq!(
        parse_callback(unsigned.as_bytes(), "s3cr3t", group),
        Err(CallbackError::Unauthenticated)
    );
    for bad in [
        &b"not json"[..],
        br#"{"group_id":214167102}"#,
        br#"{"type":"message_new"}"#,
    ] {
        assert!(
            matches!(
                parse_callback(bad, "s3cr3t", group),
                Err(CallbackError::Malformed(_))
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

/// A callback receiver like core's: the confirmation code, the secret, and what it got.
#[derive(Clone, Default)]
struct Receiver {
    code: Arc<Mutex<Option<String>>>,
    secret: String,
    group_id: i64,
    events: Arc<Mutex<Vec<InboundEvent>>>,
    /// Answers this many events with something other than `ok` first.
    refuse: Arc<Mutex<u32>>,
}

async fn receive(State(r): State<Receiver>, body: Bytes) -> axum::response::Response {
    match parse_callback(&body, &r.secret, r.group_id) {
        Ok(CallbackOutcome::Confirmation { .. }) => {
            let code = r.code.lock().expect("lock").clone().unwrap_or_default();
            code.into_response()
        }
        Ok(CallbackOutcome::Events { events, .. }) => {
            let mut refuse = r.refuse.lock().expect("lock");
            if *refuse > 0 {
                *refuse -= 1;
                return "busy".into_response();
            }
            r.events.lock().expect("lock").extend(events);
            CALLBACK_OK.into_response()
        }
        Err(CallbackError::Unauthenticated) => StatusCode::UNAUTHORIZED.into_response(),
        Err(CallbackError::Malformed(_)) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn the_fake_confirms_and_delivers_callbacks_to_a_receiver() {
    let (vk, group, client) = start().await;
    let receiver = Receiver {
        secret: "s3cr3t-key".into(),
        group_id: group.id,
        refuse: Arc::new(Mutex::new(1)),
        ..Receiver::default()
    };
    let app = Router::new().fallback(receive).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/vk/callback",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Core's set-up order: add the server, learn the (new) code, switch our events on.
    let server_id = client
        .add_callback_server(&url, "Chatter", "s3cr3t-key")
        .await
        .expect("add");
    let code = client.get_callback_confirmation_code().await.expect("code");
    assert_eq!(code, vk.confirmation_code(group.id));
    *receiver.code.lock().expect("lock") = Some(code);
    client
        .set_callback_settings(server_id)
        .await
        .expect("settings");
    eventually("the confirmation", || {
        vk.callback_servers(group.id)[0].confirmed
    })
    .await;
    let servers = vk.callback_servers(group.id);
    assert_eq!(servers[0].secret_key.as_deref(), Some("s3cr3t-key"));
    assert!(servers[0].event_types.iter().any(|t| t == "message_new"));

    vk.customer_writes(group.id, VkCustomerMessage::text(CUSTOMER, "первое"));
    vk.customer_writes(group.id, VkCustomerMessage::text(CUSTOMER, "второе"));
    eventually("two messages", || {
        receiver.events.lock().expect("lock").len() == 2
    })
    .await;
    let got = messages(receiver.events.lock().expect("lock").clone());
    assert_eq!(got[0].text.as_deref(), Some("первое"));
    assert_eq!(got[1].text.as_deref(), Some("второе"));
    eventually("both marked delivered", || {
        let d = vk.deliveries(group.id);
        d.len() == 2 && d.iter().all(|d| d.delivered)
    })
    .await;
    let deliveries = vk.deliveries(group.id);
    // The first was answered "busy" once, so VK sent it again.
    assert_eq!(deliveries[0].attempts, 2);
    assert_eq!(deliveries[1].attempts, 1);
    // Our own sends are not subscribed to (message_reply is off).
    client
        .send(&outbound(CUSTOMER, "ответ", "cb-1"))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(vk.deliveries(group.id).len(), 2);
}

#[tokio::test]
async fn errors_are_classified_by_vk_code_and_http_failure() {
    let (vk, group, client) = start().await;
    vk.customer_writes(group.id, VkCustomerMessage::text(CUSTOMER, "hi"));
    let m = outbound(CUSTOMER, "ответ", "e-1");

    vk.fail_next(group.id, "messages.send", VkFailure::too_many_requests(), 1);
    let e = client.send(&m).await.expect_err("6");
    assert!(
        matches!(
            e,
            ChannelError::RateLimited {
                retry_after_secs: 1,
                ..
            }
        ),
        "{e:?}"
    );
    for code in [7, 901, 902, 925] {
        vk.fail_next(
            group.id,
            "messages.send",
            VkFailure::error(code, "denied"),
            1,
        );
        let e = client.send(&m).await.expect_err("permission");
        // 901 and 902: the customer disallowed messages (blocked, for the inbox).
        if code == 901 || code == 902 {
            assert!(matches!(e, ChannelError::Blocked(_)), "{code}: {e:?}");
        } else {
            assert!(matches!(e, ChannelError::Permanent(_)), "{code}: {e:?}");
        }
    }
    vk.fail_next(group.id, "messages.send", VkFailure::internal(), 1);
    let e = client.send(&m).await.expect_err("10");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
    vk.fail_next(group.id, "*", VkFailure::Http(500), 1);
    let e = client.identify().await.expect_err("500");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");

    let impatient = self::client(&vk, &group, Duration::from_millis(300));
    vk.fail_next(
        group.id,
        "messages.send",
        VkFailure::Hang(Duration::from_secs(5)),
        1,
    );
    let e = impatient.send(&m).await.expect_err("hang");
    assert!(
        matches!(&e, ChannelError::Transient(msg) if msg.contains("timed out")),
        "{e:?}"
    );
    assert_no_token(&e, &group.token);
    vk.fail_next(group.id, "a_check", VkFailure::Http(502), 1);
    let server = client.get_long_poll_server().await.expect("server");
    let e = client
        .long_poll(&server.server, &server.key, &server.ts, 1)
        .await
        .expect_err("502");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
    assert!(!e.to_string().contains(&server.key), "{e}");

    // After all that, the message goes out exactly once.
    client.send(&m).await.expect("send");
    client.send(&m).await.expect("send");
    assert_eq!(vk.sent(group.id).len(), 1);

    vk.revoke(&group.token);
    let e = client.send(&m).await.expect_err("5");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
    assert_no_token(&e, &group.token);
}

#[tokio::test]
async fn photos_and_documents_download_by_their_urls() {
    let (vk, group, client) = start().await;
    let server = client.get_long_poll_server().await.expect("server");
    let jpeg = b"\xff\xd8\xff\xe0fake-jpeg-bytes".to_vec();
    let pdf = b"%PDF-1.4 fake".to_vec();
    vk.customer_writes(
        group.id,
        VkCustomerMessage {
            photo: Some(jpeg.clone()),
            doc: Some((pdf.clone(), "счёт.pdf".into())),
            ..VkCustomerMessage::text(CUSTOMER, "")
        },
    );
    let LongPoll::Events { events, .. } = client
        .long_poll(&server.server, &server.key, &server.ts, 1)
        .await
        .expect("poll")
    else {
        panic!("events expected");
    };
    let m = &messages(events)[0];
    assert_eq!(m.text, None);
    assert_eq!(m.attachments.len(), 2);
    let photo = &m.attachments[0];
    assert_eq!(photo.kind, "photo");
    assert!(photo.file_ref.ends_with("_z.jpg"), "{}", photo.file_ref);
    let d = client.download(&photo.file_ref).await.expect("photo");
    assert_eq!(d.bytes.as_ref(), jpeg.as_slice());
    assert_eq!(d.mime_type.as_deref(), Some("image/jpeg"));

    let doc = &m.attachments[1];
    assert_eq!(doc.kind, "document");
    assert_eq!(doc.file_name.as_deref(), Some("счёт.pdf"));
    assert_eq!(doc.size, Some(pdf.len() as i64));
    let d = client.download(&doc.file_ref).await.expect("doc");
    assert_eq!(d.bytes.as_ref(), pdf.as_slice());
    assert_eq!(d.mime_type.as_deref(), Some("application/pdf"));

    let missing = format!("{}/files/nope.jpg", vk.base_url());
    let e = client.download(&missing).await.expect_err("404");
    assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");
}

#[tokio::test]
async fn users_get_names_people_and_skips_deleted_accounts() {
    use chatter_channels::{Connector, SenderRef};
    let vk = chatter_fakes::FakeVk::start().await.expect("fake starts");
    let group = vk.create_group("Магазин", "shop_names");
    vk.set_user_name(612_444_400, "Вера", "Иванова");
    let client = chatter_channels::vk::VkClient::new(
        reqwest::Client::new(),
        &vk.base_url(),
        &group.token,
        group.id,
    );
    let who: Vec<SenderRef> = ["612444400", "612444401", "-5", "612444400"]
        .iter()
        .map(|s| SenderRef {
            sender: (*s).into(),
            chat: (*s).into(),
        })
        .collect();
    let names = Connector::sender_names(&client, &who)
        .await
        .expect("VK names senders")
        .expect("named");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [("612444400".to_string(), "Вера Иванова".to_string())],
        "a deleted account and a community have no name"
    );
    let calls = vk.calls(group.id);
    assert_eq!(
        calls.iter().filter(|c| *c == "users.get").count(),
        1,
        "one call for the batch: {calls:?}"
    );
}

struct NoSave;

#[async_trait::async_trait]
impl chatter_channels::SaveSettings for NoSave {
    async fn save(
        &self,
        _settings: &chatter_channels::SourceSettings,
    ) -> Result<(), chatter_channels::ChannelError> {
        Ok(())
    }
}

/// What a customer writes after the community is connected and before the first long poll is
/// read by that poll, on this node and on another one building the client from the settings.
#[tokio::test]
async fn the_first_poll_starts_where_the_community_was_connected() {
    use chatter_channels::{Connector, HookSite, PollState, SourceSettings};
    let vk = chatter_fakes::FakeVk::start().await.expect("fake starts");
    let group = vk.create_group("Магазин", "shop_catch_up");
    let client = || {
        chatter_channels::vk::VkClient::new(
            reqwest::Client::new(),
            &vk.base_url(),
            &group.token,
            group.id,
        )
    };
    let here = client();
    let mut settings = SourceSettings::default();
    let site = HookSite {
        source_id: uuid::Uuid::new_v4(),
        webhook_base: None,
        public_url: "http://127.0.0.1:9",
        hook_secret: "s3cr3t",
    };
    Connector::setup(&here, &site, &mut settings, &NoSave)
        .await
        .expect("connected");
    assert_eq!(settings.mode, "polling");
    assert!(settings.vk_poll_ts.is_some(), "{settings:?}");
    vk.customer_writes(
        group.id,
        VkCustomerMessage::text(612_444_500, "Пока вы подключались"),
    );
    let there = client().with_start_ts(settings.vk_poll_ts.clone());
    for (which, c) in [("this node", &here), ("another node", &there)] {
        let polled = Connector::poll(c, None, &mut PollState::default(), 0)
            .await
            .expect("polled");
        let texts: Vec<String> = polled
            .events
            .iter()
            .filter_map(|e| match e {
                chatter_channels::InboundEvent::Message(m) => m.text.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["Пока вы подключались"], "{which}");
    }
    // Without the connect-time position, a first poll starts after it: the message is missed.
    let polled = Connector::poll(&client(), None, &mut PollState::default(), 0)
        .await
        .expect("polled");
    assert!(polled.events.is_empty(), "{:?}", polled.events);
}

/// VK loses the session (`failed: 3`, a new `ts`) or the history (`failed: 1`): what customers
/// wrote in the gap is read again from the conversations, once, in order.
#[tokio::test]
async fn messages_written_while_vk_lost_the_session_are_read_again() {
    let vk = chatter_fakes::FakeVk::start().await.expect("fake starts");
    let group = vk.create_group("Магазин", "shop_gap");
    let client = chatter_channels::vk::VkClient::new(
        reqwest::Client::new(),
        &vk.base_url(),
        &group.token,
        group.id,
    );
    let texts = |evs: &[chatter_channels::InboundEvent]| -> Vec<String> {
        evs.iter()
            .filter_map(|e| match e {
                chatter_channels::InboundEvent::Message(m) => m.text.clone(),
                _ => None,
            })
            .collect()
    };
    let mut session = client.get_long_poll_server().await.expect("session");
    vk.customer_writes(group.id, VkCustomerMessage::text(612_444_600, "Первое"));
    let evs = client.poll(&mut session, 0).await.expect("polled");
    assert_eq!(texts(&evs), ["Первое"]);

    // The session is lost, and two customers write before the next poll.
    vk.lose_long_poll_session(group.id);
    vk.customer_writes(group.id, VkCustomerMessage::text(612_444_600, "Второе"));
    vk.customer_writes(group.id, VkCustomerMessage::text(612_444_601, "Третье"));
    let evs = client.poll(&mut session, 0).await.expect("polled");
    let got = texts(&evs);
    for want in ["Второе", "Третье"] {
        assert_eq!(
            got.iter().filter(|t| *t == want).count(),
            1,
            "{want}: {got:?}"
        );
    }
    let calls = vk.calls(group.id);
    assert!(
        calls.iter().any(|c| c == "messages.getHistory"),
        "read from the conversations: {calls:?}"
    );
    // Nothing is read again after that.
    vk.customer_writes(group.id, VkCustomerMessage::text(612_444_601, "Четвёртое"));
    let evs = client.poll(&mut session, 0).await.expect("polled");
    assert_eq!(texts(&evs), ["Четвёртое"]);

    // The history is lost (`failed: 1`): the same.
    vk.lose_long_poll_history(group.id);
    let before = session.clone();
    vk.customer_writes(group.id, VkCustomerMessage::text(612_444_602, "Пятое"));
    let mut stale = before;
    stale.ts = "1".into();
    let evs = client.poll(&mut stale, 0).await.expect("polled");
    assert!(
        texts(&evs).contains(&"Пятое".to_string()),
        "{:?}",
        texts(&evs)
    );
}
