//! The SMS client with the SMSC.ru, SMS.ru and SMS Aero presets against their stateful fakes:
//! the balance check, sending (sender, text, number), each gateway's errors mapped to ours
//! (credentials → Unauthorized, no money and wrong numbers → Permanent saying so, rate limits →
//! RateLimited, 5xx → Transient), and delivery reports in each gateway's format read back into
//! statuses and acknowledged the gateway's way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chatter_channels::sms::{SmsClient, SmsGateway, SmsGatewayConfig};
use chatter_channels::{Channel, ChannelError, DeliveryState, InboundEvent};
use chatter_fakes::{FakeSmsGateways, Gateway, GatewayAccount, GatewayFailure, GwStatus};

const CUSTOMER: &str = "+7 (926) 555-44-33";

fn ours(g: Gateway) -> SmsGateway {
    match g {
        Gateway::Smsc => SmsGateway::Smsc,
        Gateway::SmsRu => SmsGateway::SmsRu,
        Gateway::SmsAero => SmsGateway::SmsAero,
    }
}

fn base(fake: &FakeSmsGateways, g: Gateway) -> String {
    match g {
        Gateway::Smsc => fake.smsc_base_url(),
        Gateway::SmsRu => fake.smsru_base_url(),
        Gateway::SmsAero => fake.smsaero_base_url(),
    }
}

fn client(fake: &FakeSmsGateways, a: &GatewayAccount, secret: &str) -> SmsClient {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    SmsClient::new(
        http,
        SmsGatewayConfig::of(
            ours(a.gateway),
            &base(fake, a.gateway),
            &a.login,
            secret,
            Some("Romashka"),
        ),
    )
}

fn login(g: Gateway) -> &'static str {
    match g {
        Gateway::Smsc => "romashka",
        Gateway::SmsRu => "",
        Gateway::SmsAero => "shop@example.ru",
    }
}

/// Our delivery-report endpoint, as the kind runs it: parse, then the gateway's ack.
#[derive(Clone)]
struct Receiver {
    client: SmsClient,
    events: Arc<Mutex<Vec<InboundEvent>>>,
}

async fn report(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match r.client.parse_status_callback(ct, &body, 0) {
        Ok(events) => {
            r.events.lock().expect("lock").extend(events);
            r.client.callback_ack().1.to_owned().into_response()
        }
        Err(e) => (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn receiver(client: SmsClient) -> (String, Arc<Mutex<Vec<InboundEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/status", post(report))
        .with_state(Receiver {
            client,
            events: events.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/status", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, events)
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

fn states_of(events: &[InboundEvent], id: &str) -> Vec<(DeliveryState, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            InboundEvent::Status {
                external_id,
                state,
                error,
                ..
            } if external_id == id => Some((*state, error.clone())),
            _ => None,
        })
        .collect()
}

async fn gateway_round_trip(g: Gateway) {
    let fake = FakeSmsGateways::start().await.expect("fake");
    let a = fake.add_account(g, login(g), 100.0);
    let c = client(&fake, &a, &a.secret);

    // The balance check, and credentials that are wrong or blocked.
    let b = c.balance().await.expect("balance");
    assert!((b.balance - 100.0).abs() < 1e-9, "{b:?}");
    let wrong = client(&fake, &a, "wrong-secret-0123456789");
    let e = wrong.balance().await.expect_err("wrong secret");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{g:?}: {e:?}");
    assert!(!e.to_string().contains("wrong-secret"), "scrubbed: {e}");
    assert!(matches!(
        wrong.identify().await,
        Err(ChannelError::Unauthorized(_))
    ));

    // Delivery reports go to our receiver: the cabinet's URL, or the message's own.
    let (url, events) = receiver(c.clone()).await;
    match g {
        Gateway::SmsAero => {
            c.set_callback_url(Some(url.clone()));
            fake.start_reports(&a);
        }
        _ => fake.set_callback_url(&a, &url),
    }

    // A Cyrillic text of 100 characters is two parts, billed as two.
    let text = "Здравствуйте! Ваш заказ №1024 собран и ждёт вас в пункте выдачи на Ленина, 5. До встречи!!";
    let ids = c
        .send_sms(CUSTOMER, text, Some("key-1"))
        .await
        .expect("sent");
    let sent = fake.sent(&a);
    assert_eq!(sent.len(), 1);
    assert_eq!(ids, [sent[0].id.clone()]);
    assert_eq!(sent[0].to, "79265554433");
    assert_eq!(sent[0].text, text);
    assert_eq!(sent[0].sender.as_deref(), Some("Romashka"));
    assert_eq!(sent[0].parts, 2);
    assert!((fake.balance(&a) - (100.0 - sent[0].cost)).abs() < 1e-9);
    if g == Gateway::SmsAero {
        assert_eq!(sent[0].callback_url.as_deref(), Some(url.as_str()));
    }
    let id = ids[0].clone();
    until("sent, then delivered", || {
        states_of(&events.lock().expect("lock"), &id)
            == [
                (DeliveryState::Sent, None),
                (DeliveryState::Delivered, None),
            ]
    })
    .await;
    until("the fake saw our acknowledgements", || {
        fake.callbacks(&a)
            .iter()
            .all(|c| c.delivered && c.attempts == 1)
    })
    .await;
    assert_eq!(fake.sent(&a)[0].status, GwStatus::Delivered);

    // A number that cannot be reached fails later, with the reason; one that never answers
    // expires.
    fake.set_failing_number(&a, "+79990000001");
    fake.set_expiring_number(&a, "+79990000002");
    let failed = c
        .send_sms("+79990000001", "Hi", None)
        .await
        .expect("accepted")[0]
        .clone();
    let expired = c
        .send_sms("+79990000002", "Hi", None)
        .await
        .expect("accepted")[0]
        .clone();
    until("failed and expired", || {
        let ev = events.lock().expect("lock");
        states_of(&ev, &failed).len() == 2 && states_of(&ev, &expired).len() == 2
    })
    .await;
    let ev = events.lock().expect("lock").clone();
    let (state, reason) = states_of(&ev, &failed)[1].clone();
    assert_eq!(state, DeliveryState::Failed);
    assert!(reason.is_some_and(|r| !r.is_empty()));
    let (state, reason) = states_of(&ev, &expired)[1].clone();
    assert_eq!(state, DeliveryState::Failed);
    if g != Gateway::SmsAero {
        // SMS Aero's table has no "expired" of its own (unconfirmed): it reports a failure.
        assert!(
            reason.as_deref().is_some_and(|r| r.contains("expired")),
            "{reason:?}"
        );
    }

    // A number the gateway refuses outright.
    fake.set_invalid_number(&a, "+79990000003");
    let e = c
        .send_sms("+79990000003", "Hi", None)
        .await
        .expect_err("bad number");
    assert!(
        matches!(&e, ChannelError::Permanent(m) if m.contains("cannot receive SMS") || g == Gateway::SmsAero),
        "{g:?}: {e:?}"
    );
    assert!(!e.is_retryable());

    // The gateway's rate limit, then an outage page: both retried later.
    fake.fail_next(&a, GatewayFailure::RateLimited, 1);
    let e = c
        .send_sms(CUSTOMER, "Later", None)
        .await
        .expect_err("limited");
    assert!(
        matches!(e, ChannelError::RateLimited { .. }),
        "{g:?}: {e:?}"
    );
    fake.fail_next(&a, GatewayFailure::ServerError, 1);
    let e = c.send_sms(CUSTOMER, "Later", None).await.expect_err("503");
    assert!(matches!(e, ChannelError::Transient(_)), "{g:?}: {e:?}");

    // No money: a clear message, not retried.
    fake.set_balance(&a, 0.5);
    let e = c
        .send_sms(CUSTOMER, "Pay", None)
        .await
        .expect_err("no money");
    assert!(
        matches!(&e, ChannelError::Permanent(m) if m.contains("no money")),
        "{g:?}: {e:?}"
    );
    let n = fake.sent(&a).len();

    // Revoked credentials: the source is asked to be reconnected.
    fake.revoke(&a);
    let e = c.send_sms(CUSTOMER, "Hi", None).await.expect_err("revoked");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{g:?}: {e:?}");
    assert_eq!(fake.sent(&a).len(), n, "nothing more was sent");
}

#[tokio::test]
async fn smsc_sends_checks_the_balance_and_reports_delivery() {
    gateway_round_trip(Gateway::Smsc).await;
}

#[tokio::test]
async fn smsru_sends_checks_the_balance_and_reports_delivery() {
    gateway_round_trip(Gateway::SmsRu).await;
}

#[tokio::test]
async fn smsaero_sends_checks_the_balance_and_reports_delivery() {
    gateway_round_trip(Gateway::SmsAero).await;
}

#[tokio::test]
async fn smsru_callbacks_are_acknowledged_with_100_and_other_entries_skipped() {
    let fake = FakeSmsGateways::start().await.expect("fake");
    let a = fake.add_account(Gateway::SmsRu, "", 10.0);
    let c = client(&fake, &a, &a.secret);
    let body = "data%5B%5D=sms_status%0A000005-1%0A103%0A1767225600\
                &data%5B%5D=callcheck_status%0Ax%0A401\
                &data%5B1%5D=sms_status%0A000005-2%0A104";
    let events = c
        .parse_status_callback(
            Some("application/x-www-form-urlencoded"),
            body.as_bytes(),
            7,
        )
        .expect("parsed");
    assert_eq!(events.len(), 3);
    assert!(
        matches!(&events[0], InboundEvent::Status { external_id, state: DeliveryState::Delivered, at: 1_767_225_600_000, .. } if external_id == "000005-1")
    );
    assert!(matches!(&events[1], InboundEvent::Ignored { .. }));
    assert!(
        matches!(&events[2], InboundEvent::Status { state: DeliveryState::Failed, error: Some(e), at: 7, .. } if e.contains("expired"))
    );
    assert_eq!(c.callback_ack(), (200, "100"));
    assert!(c.parse_status_callback(None, b"foo=bar", 0).is_err());
}

#[tokio::test]
async fn smsru_refuses_a_repeated_text_within_a_minute_as_a_rate_limit() {
    let fake = FakeSmsGateways::start().await.expect("fake");
    let a = fake.add_account(Gateway::SmsRu, "", 10.0);
    let c = client(&fake, &a, &a.secret);
    c.send_sms(CUSTOMER, "Same", None).await.expect("first");
    let e = c
        .send_sms(CUSTOMER, "Same", None)
        .await
        .expect_err("second");
    assert!(matches!(e, ChannelError::RateLimited { .. }), "{e:?}");
    assert_eq!(fake.sent(&a).len(), 1);
}
