//! The SMS client with the Sipout preset against the stateful fake gateway: account check,
//! phone normalisation, part counting, sending with delivery reports and incoming SMS posted to
//! a local callback receiver, and failure classification.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chatter_channels::sms::{
    callback_token_matches, new_callback_token, normalize_phone, sms_parts, SmsClient, SmsEncoding,
    SmsGatewayConfig, SmsParts,
};
use chatter_channels::{Channel, ChannelError, DeliveryState, InboundEvent, OutboundMessage};
use chatter_fakes::{FakeSms, SmsFailure};

/// Our callback endpoint, as core will run it: token in the path, parse, ack.
#[derive(Clone)]
struct Receiver {
    client: SmsClient,
    token: String,
    events: Arc<Mutex<Vec<InboundEvent>>>,
}

async fn callback(
    State(r): State<Receiver>,
    Path((kind, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !callback_token_matches(&token, &r.token) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed = match kind.as_str() {
        "status" => r.client.parse_status_callback(content_type, &body, 0),
        _ => r.client.parse_inbound_callback(content_type, &body, 0),
    };
    match parsed {
        Ok(events) => {
            r.events.lock().expect("lock").extend(events);
            let (status, ack) = r.client.callback_ack();
            let status = StatusCode::from_u16(status).expect("status");
            (status, ack.to_owned()).into_response()
        }
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

struct Setup {
    fake: FakeSms,
    key: String,
    client: SmsClient,
    events: Arc<Mutex<Vec<InboundEvent>>>,
}

impl Setup {
    async fn wait_for(&self, what: &str, n: usize) -> Vec<InboundEvent> {
        for _ in 0..250 {
            let events = self.events.lock().expect("lock").clone();
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.events);
    }
}

async fn setup() -> Setup {
    let fake = FakeSms::start().await.expect("fake starts");
    let key = fake.add_account("ООО Ромашка", "7701234567", 100.0);
    let client = client_with(&fake, &key, reqwest::Client::new());
    let token = new_callback_token();
    let events = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/hooks/sms/{kind}/{token}", post(callback))
        .with_state(Receiver {
            client: client.clone(),
            token: token.clone(),
            events: events.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    fake.set_callbacks(
        &key,
        Some(&format!("http://{addr}/hooks/sms/status/{token}")),
        Some(&format!("http://{addr}/hooks/sms/inbound/{token}")),
    );
    Setup {
        fake,
        key,
        client,
        events,
    }
}

fn client_with(fake: &FakeSms, key: &str, http: reqwest::Client) -> SmsClient {
    SmsClient::new(
        http,
        SmsGatewayConfig::sipout(&fake.base_url(), key, Some("Romashka")),
    )
}

#[tokio::test]
async fn identify_reads_the_account_and_a_wrong_key_is_unauthorized() {
    let s = setup().await;
    let me = s.client.identify().await.expect("identify");
    assert_eq!(me.id, "7701234567");
    assert_eq!(me.name, "ООО Ромашка");
    assert_eq!(me.username.as_deref(), Some("Romashka"));
    assert_eq!(s.client.balance().await.expect("balance").balance, 100.0);

    let wrong = client_with(&s.fake, "not-a-key-123", reqwest::Client::new());
    let e = wrong.identify().await.expect_err("wrong key");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
    assert!(!e.to_string().contains("not-a-key-123"), "{e}");
}

#[test]
fn phones_are_normalised_to_e164() {
    let table = [
        ("+7 (999) 123-45-67", Some("+79991234567")),
        ("89991234567", Some("+79991234567")),
        ("8 999 123 45 67", Some("+79991234567")),
        ("79991234567", Some("+79991234567")),
        ("9991234567", Some("+79991234567")),
        ("+380 50 123 4567", Some("+380501234567")),
        ("0079991234567", Some("+79991234567")),
        ("380501234567", Some("+380501234567")),
        ("4951234567", None),
        ("+7999123456", None),
        ("12345", None),
        ("", None),
        ("abc", None),
        ("+7 999 123-45-67 доб. 5", None),
    ];
    for (raw, want) in table {
        assert_eq!(normalize_phone(raw).as_deref(), want, "{raw:?}");
    }
}

#[test]
fn parts_are_counted_as_operators_bill_them() {
    let cyr = |n: usize| "ж".repeat(n);
    let table: Vec<(String, SmsEncoding, u32, usize)> = vec![
        (String::new(), SmsEncoding::Gsm7, 0, 0),
        ("a".repeat(160), SmsEncoding::Gsm7, 1, 160),
        ("a".repeat(161), SmsEncoding::Gsm7, 2, 161),
        ("a".repeat(306), SmsEncoding::Gsm7, 2, 306),
        ("a".repeat(307), SmsEncoding::Gsm7, 3, 307),
        (cyr(70), SmsEncoding::Ucs2, 1, 70),
        (cyr(71), SmsEncoding::Ucs2, 2, 71),
        (cyr(134), SmsEncoding::Ucs2, 2, 134),
        (cyr(135), SmsEncoding::Ucs2, 3, 135),
        // Extension characters take two septets.
        ("€".repeat(80), SmsEncoding::Gsm7, 1, 160),
        (format!("{}[", "a".repeat(159)), SmsEncoding::Gsm7, 2, 161),
        // An escape pair never straddles parts: 152 + 2 moves to part two.
        (
            format!("{}{{{}", "a".repeat(152), "a".repeat(10)),
            SmsEncoding::Gsm7,
            2,
            164,
        ),
        // One Cyrillic letter turns the whole text into UCS-2.
        (format!("{}ж", "a".repeat(69)), SmsEncoding::Ucs2, 1, 70),
        // An emoji is two UTF-16 units.
        ("🙂".repeat(35), SmsEncoding::Ucs2, 1, 70),
        ("Hello @home £5 ¿¡".into(), SmsEncoding::Gsm7, 1, 17),
    ];
    for (text, encoding, parts, chars) in table {
        assert_eq!(
            sms_parts(&text),
            SmsParts {
                encoding,
                parts,
                chars
            },
            "{text:?}"
        );
    }
    assert_eq!(sms_parts(&"a".repeat(200)).per_part(), 153);
    assert_eq!(sms_parts("ж").per_part(), 70);
}

#[tokio::test]
async fn send_bills_per_part_and_the_delivery_report_arrives() {
    let s = setup().await;
    let text = "ж".repeat(71);
    let sent = s
        .client
        .send(&OutboundMessage {
            chat_external_id: "8 (999) 123-45-67".into(),
            text: text.clone(),
            ..OutboundMessage::default()
        })
        .await
        .expect("sent");
    assert_eq!(sent.external_ids.len(), 1);
    let log = s.fake.sent(&s.key);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].to, "79991234567");
    assert_eq!(log[0].text, text);
    assert_eq!(log[0].sender.as_deref(), Some("Romashka"));
    assert_eq!(log[0].parts, sms_parts(&text).parts);
    assert_eq!(s.fake.balance(&s.key), 100.0 - 2.0 * 3.5);

    let events = s.wait_for("two reports", 2).await;
    let id = &sent.external_ids[0];
    let states: Vec<DeliveryState> = events
        .iter()
        .map(|e| match e {
            InboundEvent::Status {
                external_id, state, ..
            } if external_id == id => *state,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(states, [DeliveryState::Sent, DeliveryState::Delivered]);
    let callbacks = s.fake.callbacks(&s.key);
    assert!(callbacks.iter().all(|c| c.delivered && c.attempts == 1));
}

#[tokio::test]
async fn a_failing_number_reports_failed_with_the_reason() {
    let s = setup().await;
    s.fake.set_failing_number(&s.key, "+79990000000");
    let ids = s
        .client
        .send_sms("+79990000000", "Ваш заказ готов", None)
        .await
        .expect("accepted");
    let events = s.wait_for("two reports", 2).await;
    assert_eq!(
        events[1],
        InboundEvent::Status {
            external_id: ids[0].clone(),
            state: DeliveryState::Failed,
            error: Some("Абонент недоступен".into()),
            at: match &events[1] {
                InboundEvent::Status { at, .. } => *at,
                _ => 0,
            },
        }
    );
}

#[tokio::test]
async fn an_incoming_sms_becomes_a_message_from_the_phone() {
    let s = setup().await;
    let id = s
        .fake
        .customer_sends(&s.key, "79991234567", "74950000000", "Перезвоните мне");
    let events = s.wait_for("the SMS", 1).await;
    let InboundEvent::Message(m) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(m.external_id, id);
    assert_eq!(m.text.as_deref(), Some("Перезвоните мне"));
    assert_eq!(m.chat.external_id, "+79991234567");
    assert_eq!(m.sender.phone.as_deref(), Some("+79991234567"));
    assert!(m.sent_at > 1_700_000_000_000, "{}", m.sent_at);
}

#[tokio::test]
async fn failures_are_classified() {
    let s = setup().await;
    let send = |c: SmsClient| async move { c.send_sms("+79991234567", "hi", None).await };

    s.fake.fail_next(&s.key, SmsFailure::rate_limited(), 1);
    let e = send(s.client.clone()).await.expect_err("429");
    assert!(matches!(e, ChannelError::RateLimited { .. }), "{e:?}");

    s.fake.fail_next(&s.key, SmsFailure::server_error(), 1);
    let e = send(s.client.clone()).await.expect_err("503");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");

    s.fake.fail_next(&s.key, SmsFailure::Hang, 1);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let e = send(client_with(&s.fake, &s.key, impatient))
        .await
        .expect_err("hang");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");

    let e = s
        .client
        .send_sms("12345", "hi", None)
        .await
        .expect_err("bad phone");
    assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");

    s.fake.set_price(&s.key, 1000.0);
    let e = send(s.client.clone()).await.expect_err("no money");
    assert!(
        matches!(&e, ChannelError::Permanent(m) if m.contains("no_money")),
        "{e:?}"
    );
    assert!(s.fake.sent(&s.key).is_empty());

    s.fake.revoke(&s.key);
    let e = send(s.client.clone()).await.expect_err("revoked");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
    assert!(!e.to_string().contains(&s.key));
}
