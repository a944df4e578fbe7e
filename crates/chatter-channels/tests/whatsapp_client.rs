//! The WhatsApp client and webhook functions against the stateful fake Cloud API: identify,
//! sending, signed status notifications received by a local webhook, the verification
//! handshake, the 24-hour window, media download and failure classification.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chatter_channels::whatsapp::{
    self, is_outside_window, parse_notification, verify_signature, verify_subscription, HookError,
    MediaKind, MediaRef, WhatsAppClient,
};
use chatter_channels::{
    Channel, ChannelError, DeliveryState, Extra, InboundEvent, InboundMessage, OutboundMessage,
};
use chatter_fakes::{FakeWhatsApp, WaCustomerContent, WaFailure, WaNumber};
use std::collections::HashMap;

const VERIFY_TOKEN: &str = "our-verify-token-4f1c";
const CUSTOMER: &str = "79991234567";

/// Our side of the webhook, as core will run it: handshake, signature, parsing.
#[derive(Clone)]
struct Hook {
    app_secret: String,
    events: Arc<Mutex<Vec<InboundEvent>>>,
    rejected: Arc<Mutex<u32>>,
}

async fn hook_get(Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str);
    match verify_subscription(
        get("hub.mode"),
        get("hub.verify_token"),
        get("hub.challenge"),
        VERIFY_TOKEN,
    ) {
        Ok(challenge) => (StatusCode::OK, challenge).into_response(),
        Err(_) => StatusCode::FORBIDDEN.into_response(),
    }
}

async fn hook_post(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if verify_signature(&hook.app_secret, &body, signature).is_err() {
        *hook.rejected.lock().expect("lock") += 1;
        return StatusCode::UNAUTHORIZED;
    }
    match parse_notification(&body) {
        Ok(events) => {
            hook.events.lock().expect("lock").extend(events);
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

struct Setup {
    fake: FakeWhatsApp,
    number: WaNumber,
    client: WhatsAppClient,
    hook: Hook,
    hook_url: String,
}

impl Setup {
    fn events(&self) -> Vec<InboundEvent> {
        self.hook.events.lock().expect("lock").clone()
    }

    /// Waits until `pred` holds for the received events (5 s at most).
    async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&[InboundEvent]) -> bool,
    ) -> Vec<InboundEvent> {
        for _ in 0..250 {
            let events = self.events();
            if pred(&events) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.events());
    }

    fn statuses_of(events: &[InboundEvent], wamid: &str) -> Vec<(DeliveryState, Option<String>)> {
        events
            .iter()
            .filter_map(|e| match e {
                InboundEvent::Status {
                    external_id,
                    state,
                    error,
                    ..
                } if external_id == wamid => Some((*state, error.clone())),
                _ => None,
            })
            .collect()
    }
}

fn messages(events: &[InboundEvent]) -> Vec<InboundMessage> {
    events
        .iter()
        .filter_map(|e| match e {
            InboundEvent::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

async fn setup() -> Setup {
    let fake = FakeWhatsApp::start().await.expect("fake starts");
    let number = fake.add_number("+7 999 000-11-22", "Ромашка");
    let client = client_for(&fake, &number, &number.access_token, reqwest::Client::new());
    let hook = Hook {
        app_secret: number.app_secret.clone(),
        events: Arc::default(),
        rejected: Arc::default(),
    };
    let app = Router::new()
        .route("/hooks/whatsapp", get(hook_get).post(hook_post))
        .with_state(hook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Setup {
        fake,
        number,
        client,
        hook,
        hook_url: format!("http://{addr}/hooks/whatsapp"),
    }
}

fn client_for(
    fake: &FakeWhatsApp,
    number: &WaNumber,
    token: &str,
    http: reqwest::Client,
) -> WhatsAppClient {
    WhatsAppClient::new(
        http,
        &fake.base_url(),
        whatsapp::DEFAULT_API_VERSION,
        &number.phone_number_id,
        token,
    )
}

fn text_to(to: &str, text: &str) -> OutboundMessage {
    OutboundMessage {
        chat_external_id: to.into(),
        text: text.into(),
        ..OutboundMessage::default()
    }
}

#[tokio::test]
async fn identify_names_the_number_and_a_bad_token_is_unauthorized() {
    let s = setup().await;
    let me = s.client.identify().await.expect("identify");
    assert_eq!(me.id, s.number.phone_number_id);
    assert_eq!(me.name, "Ромашка");
    assert_eq!(me.username.as_deref(), Some("+7 999 000-11-22"));

    let wrong = client_for(&s.fake, &s.number, "EAAGwrong", reqwest::Client::new());
    let e = wrong.identify().await.expect_err("bad token");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
    assert!(!e.to_string().contains("EAAGwrong"), "{e}");
}

#[tokio::test]
async fn send_text_and_media_are_what_the_customer_gets() {
    let s = setup().await;
    let question = s.fake.customer_writes(
        &s.number.phone_number_id,
        CUSTOMER,
        "Иван",
        "Есть доставка?",
    );
    let sent = s
        .client
        .send(&OutboundMessage {
            reply_to_external_id: Some(question.clone()),
            ..text_to(&format!("+{CUSTOMER}"), "Да, завтра")
        })
        .await
        .expect("text sent");
    assert_eq!(sent.external_ids.len(), 1);
    assert!(sent.external_ids[0].starts_with("wamid."));

    let image = s
        .client
        .send_media(
            CUSTOMER,
            MediaKind::Image,
            MediaRef::Link("https://example.com/menu.jpg"),
            Some("Меню"),
        )
        .await
        .expect("image sent");
    let media_id = s
        .client
        .upload_media(b"%PDF-1.4".to_vec(), "application/pdf", "price.pdf")
        .await
        .expect("uploaded");
    let doc = s
        .client
        .send_document(CUSTOMER, MediaRef::Id(&media_id), "Прайс.pdf", None)
        .await
        .expect("document sent");

    let log = s.fake.sent(&s.number.phone_number_id);
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].id, sent.external_ids[0]);
    assert_eq!(log[0].to, CUSTOMER);
    assert_eq!(log[0].text.as_deref(), Some("Да, завтра"));
    assert_eq!(log[0].reply_to.as_deref(), Some(question.as_str()));
    assert_eq!(log[1].id, image);
    assert_eq!(log[1].kind, "image");
    assert_eq!(log[1].caption.as_deref(), Some("Меню"));
    assert_eq!(log[2].id, doc);
    assert_eq!(log[2].media.as_deref(), Some(media_id.as_str()));
    assert_eq!(log[2].filename.as_deref(), Some("Прайс.pdf"));
}

#[tokio::test]
async fn a_long_text_goes_out_in_parts_of_4096() {
    let s = setup().await;
    s.fake
        .customer_writes(&s.number.phone_number_id, CUSTOMER, "Иван", "?");
    let sent = s
        .client
        .send(&text_to(CUSTOMER, &"я".repeat(5000)))
        .await
        .expect("sent");
    assert_eq!(sent.external_ids.len(), 2);
    let log = s.fake.sent(&s.number.phone_number_id);
    assert_eq!(log[0].text.as_ref().map(|t| t.chars().count()), Some(4096));
    assert_eq!(log[1].text.as_ref().map(|t| t.chars().count()), Some(904));
}

#[tokio::test]
async fn customer_messages_and_statuses_arrive_signed_and_in_order() {
    let s = setup().await;
    let pnid = s.number.phone_number_id.clone();
    s.fake
        .subscribe(&pnid, &s.hook_url, VERIFY_TOKEN)
        .await
        .expect("handshake");
    let hello = s
        .fake
        .customer_writes(&pnid, CUSTOMER, "Иван", "Здравствуйте");
    s.fake.customer_sends(
        &pnid,
        CUSTOMER,
        "Иван",
        WaCustomerContent::Location {
            latitude: 55.75,
            longitude: 37.62,
            name: Some("Офис".into()),
        },
    );
    s.fake.customer_sends(
        &pnid,
        CUSTOMER,
        "Иван",
        WaCustomerContent::ButtonReply {
            id: "yes".into(),
            title: "Да".into(),
        },
    );
    let wamid = s
        .client
        .send_text(CUSTOMER, "Добрый день!", None)
        .await
        .expect("sent");
    let events = s
        .wait_for("read status", |e| Setup::statuses_of(e, &wamid).len() == 3)
        .await;
    let msgs = messages(&events);
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0].external_id, hello);
    assert_eq!(msgs[0].text.as_deref(), Some("Здравствуйте"));
    assert_eq!(msgs[0].sender.name, "Иван");
    assert_eq!(msgs[0].sender.phone.as_deref(), Some("+79991234567"));
    assert_eq!(msgs[0].chat.external_id, CUSTOMER);
    assert_eq!(
        msgs[1].extra,
        Some(Extra::Location {
            latitude: 55.75,
            longitude: 37.62
        })
    );
    assert_eq!(msgs[2].text.as_deref(), Some("Да"));
    assert_eq!(
        Setup::statuses_of(&events, &wamid),
        vec![
            (DeliveryState::Sent, None),
            (DeliveryState::Delivered, None),
            (DeliveryState::Read, None)
        ]
    );
    assert_eq!(*s.hook.rejected.lock().expect("lock"), 0);
    assert!(s
        .fake
        .deliveries(&pnid)
        .iter()
        .all(|d| d.delivered && d.attempts == 1));
}

#[tokio::test]
async fn a_forged_signature_is_rejected_and_nothing_is_parsed() {
    let s = setup().await;
    let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    let resp = reqwest::Client::new()
        .post(&s.hook_url)
        .header("X-Hub-Signature-256", format!("sha256={}", "ab".repeat(32)))
        .body(body.to_vec())
        .send()
        .await
        .expect("posted");
    assert_eq!(resp.status(), 401);
    assert_eq!(*s.hook.rejected.lock().expect("lock"), 1);
    assert!(s.events().is_empty());
    assert_eq!(
        verify_signature(&s.number.app_secret, body, None),
        Err(HookError::BadSignature)
    );
}

#[tokio::test]
async fn the_verification_handshake_needs_our_verify_token() {
    let s = setup().await;
    let pnid = s.number.phone_number_id.clone();
    let e = s
        .fake
        .subscribe(&pnid, &s.hook_url, "someone-elses-token")
        .await
        .expect_err("refused");
    assert!(e.contains("403"), "{e}");
    // Nothing is delivered to an unverified URL.
    s.fake.customer_writes(&pnid, CUSTOMER, "Иван", "hi");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(s.events().is_empty());
    // Once verified, the queued notification arrives.
    s.fake
        .subscribe(&pnid, &s.hook_url, VERIFY_TOKEN)
        .await
        .expect("handshake");
    s.wait_for("the queued message", |e| messages(e).len() == 1)
        .await;
}

#[tokio::test]
async fn outside_the_24_hour_window_free_text_fails_and_templates_go() {
    let s = setup().await;
    let pnid = s.number.phone_number_id.clone();
    s.fake
        .subscribe(&pnid, &s.hook_url, VERIFY_TOKEN)
        .await
        .expect("handshake");
    s.fake.customer_writes(&pnid, CUSTOMER, "Иван", "hi");
    assert!(whatsapp::window_open(0, whatsapp::WINDOW_MS - 1));
    s.fake.advance_clock(Duration::from_secs(25 * 3600));

    // Meta's usual way: accepted, then a failed status with 131047.
    let wamid = s
        .client
        .send_text(CUSTOMER, "Вы забыли корзину", None)
        .await
        .expect("accepted");
    let events = s
        .wait_for("failed status", |e| {
            !Setup::statuses_of(e, &wamid).is_empty()
        })
        .await;
    let statuses = Setup::statuses_of(&events, &wamid);
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].0, DeliveryState::Failed);
    let error = statuses[0].1.clone().expect("error text");
    assert_eq!(
        whatsapp::error_code(&error),
        Some(whatsapp::OUTSIDE_WINDOW_CODE)
    );

    // Refused at once: Permanent and recognisable.
    s.fake.set_window_errors_sync(&pnid, true);
    let e = s
        .client
        .send(&text_to(CUSTOMER, "ещё раз"))
        .await
        .expect_err("refused");
    assert!(is_outside_window(&e), "{e:?}");
    assert!(!e.is_retryable());

    // A closed window from the control API behaves the same.
    s.fake.customer_writes(&pnid, "79990000000", "Анна", "hi");
    s.fake.close_window(&pnid, "79990000000");
    let e = s
        .client
        .send_text("79990000000", "hello", None)
        .await
        .expect_err("closed");
    assert!(is_outside_window(&e), "{e:?}");

    // Templates: listed (approved only), sent outside the window, parameters checked.
    s.fake.add_template(
        &pnid,
        "cart_reminder",
        "ru",
        "MARKETING",
        "APPROVED",
        "{{1}}, вы оставили товары в корзине",
    );
    s.fake
        .add_template(&pnid, "draft", "ru", "UTILITY", "PENDING", "…");
    let templates = s
        .client
        .templates(&s.number.waba_id)
        .await
        .expect("templates");
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].name, "cart_reminder");
    assert_eq!(templates[0].body_params(), 1);
    s.client
        .send_template(CUSTOMER, "cart_reminder", "ru", &["Иван".into()])
        .await
        .expect("template sent");
    let last = s.fake.sent(&pnid).pop().expect("logged");
    assert_eq!(
        last.text.as_deref(),
        Some("Иван, вы оставили товары в корзине")
    );
    let e = s
        .client
        .send_template(CUSTOMER, "cart_reminder", "ru", &[])
        .await
        .expect_err("params missing");
    assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");
    assert_eq!(whatsapp::error_code(&e.to_string()), Some(132_000));
    let e = s
        .client
        .send_template(CUSTOMER, "draft", "ru", &[])
        .await
        .expect_err("not approved");
    assert_eq!(whatsapp::error_code(&e.to_string()), Some(132_001));
}

#[tokio::test]
async fn a_blocked_customer_gets_a_failed_status() {
    let s = setup().await;
    let pnid = s.number.phone_number_id.clone();
    s.fake
        .subscribe(&pnid, &s.hook_url, VERIFY_TOKEN)
        .await
        .expect("handshake");
    s.fake.customer_writes(&pnid, CUSTOMER, "Иван", "hi");
    s.fake.block(&pnid, CUSTOMER);
    let wamid = s
        .client
        .send_text(CUSTOMER, "hello", None)
        .await
        .expect("accepted");
    let events = s
        .wait_for("failed status", |e| {
            !Setup::statuses_of(e, &wamid).is_empty()
        })
        .await;
    let statuses = Setup::statuses_of(&events, &wamid);
    assert_eq!(statuses[0].0, DeliveryState::Failed);
    assert_eq!(
        whatsapp::error_code(statuses[0].1.as_deref().unwrap_or("")),
        Some(131_026)
    );
}

#[tokio::test]
async fn the_customers_image_downloads_with_its_mime_type() {
    let s = setup().await;
    let pnid = s.number.phone_number_id.clone();
    s.fake
        .subscribe(&pnid, &s.hook_url, VERIFY_TOKEN)
        .await
        .expect("handshake");
    let jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 1, 2, 3];
    s.fake.customer_sends(
        &pnid,
        CUSTOMER,
        "Иван",
        WaCustomerContent::Image {
            bytes: jpeg.clone(),
            mime: "image/jpeg".into(),
            caption: Some("вот".into()),
        },
    );
    let events = s.wait_for("the image", |e| messages(e).len() == 1).await;
    let m = &messages(&events)[0];
    assert_eq!(m.text.as_deref(), Some("вот"));
    let attachment = &m.attachments[0];
    assert_eq!(attachment.kind, "photo");
    let d = s
        .client
        .download(&attachment.file_ref)
        .await
        .expect("downloaded");
    assert_eq!(d.bytes.as_ref(), jpeg.as_slice());
    assert_eq!(d.mime_type.as_deref(), Some("image/jpeg"));

    let e = s.client.download("12345").await.expect_err("unknown id");
    assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");
}

#[tokio::test]
async fn failures_are_classified() {
    let s = setup().await;
    let pnid = s.number.phone_number_id.clone();
    s.fake.customer_writes(&pnid, CUSTOMER, "Иван", "hi");

    s.fake.fail_next(&pnid, WaFailure::rate_limited(), 1);
    let e = s
        .client
        .send_text(CUSTOMER, "a", None)
        .await
        .expect_err("429");
    assert!(matches!(e, ChannelError::RateLimited { .. }), "{e:?}");

    s.fake.fail_next(&pnid, WaFailure::server_error(), 1);
    let e = s
        .client
        .send_text(CUSTOMER, "a", None)
        .await
        .expect_err("500");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");

    s.fake.fail_next(
        &pnid,
        WaFailure::Graph {
            http_status: 400,
            code: 131_056,
            message: "(#131056) (Business Account, Consumer Account) pair rate limit hit".into(),
        },
        1,
    );
    let e = s
        .client
        .send_text(CUSTOMER, "a", None)
        .await
        .expect_err("pair");
    assert!(
        matches!(
            e,
            ChannelError::RateLimited {
                retry_after_secs: 6,
                ..
            }
        ),
        "{e:?}"
    );

    s.fake.fail_next(&pnid, WaFailure::Hang, 1);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let c = client_for(&s.fake, &s.number, &s.number.access_token, impatient);
    let e = c.send_text(CUSTOMER, "a", None).await.expect_err("hang");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");

    // Recovered: the next call goes through.
    s.client.send_text(CUSTOMER, "a", None).await.expect("sent");

    s.fake.revoke_token(&pnid);
    let e = s
        .client
        .send_text(CUSTOMER, "a", None)
        .await
        .expect_err("190");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
    assert!(!e.to_string().contains(&s.number.access_token));
}
