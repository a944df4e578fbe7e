//! The Telegram client against a minimal stub Bot API on loopback: what goes over the wire and
//! how each answer is classified. (The full stateful fake lives in chatter-fakes.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chatter_channels::telegram::{TelegramClient, ALLOWED_UPDATES};
use chatter_channels::{ChannelError, Identity, OutboundMessage};
use serde_json::{json, Value};

const TOKEN: &str = "987654321:AAF-secretPartOfTheToken_xyz0123456";
const SECRET: &str = "secretPartOfTheToken";

/// One request the stub saw.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    content_type: String,
    body: Bytes,
}

impl Call {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Answers a Bot API method call: (method, JSON body or Null, index of the call) → (status, body).
type Responder = dyn Fn(&str, &Value, usize) -> (u16, String) + Send + Sync;

#[derive(Clone)]
struct Stub {
    calls: Arc<Mutex<Vec<Call>>>,
    respond: Arc<Responder>,
    files: Arc<Vec<(String, Vec<u8>)>>,
}

fn ok(result: Value) -> (u16, String) {
    (200, json!({"ok": true, "result": result}).to_string())
}

fn err(code: u16, description: &str, parameters: Option<Value>) -> (u16, String) {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    (code, body.to_string())
}

async fn handle(State(stub): State<Stub>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    if let Some(rest) = path.strip_prefix(&format!("/file/bot{TOKEN}/")) {
        return match stub.files.iter().find(|(p, _)| p == rest) {
            Some((_, bytes)) => (StatusCode::OK, bytes.clone()).into_response(),
            None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
        };
    }
    let method = path.rsplit('/').next().unwrap_or_default().to_owned();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let parsed = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let index = {
        let mut calls = stub.calls.lock().expect("lock");
        calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            content_type,
            body,
        });
        calls.len() - 1
    };
    // Requests for another token get what Telegram gives a wrong token.
    let (status, body) = if !path.starts_with(&format!("/bot{TOKEN}/")) {
        err(401, "Unauthorized", None)
    } else {
        (stub.respond)(&method, &parsed, index)
    };
    let status = StatusCode::from_u16(status).expect("a status");
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

struct Running {
    base: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Running {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }

    fn client(&self) -> TelegramClient {
        TelegramClient::new(reqwest::Client::new(), &self.base, TOKEN)
    }
}

async fn stub_with_files(
    respond: impl Fn(&str, &Value, usize) -> (u16, String) + Send + Sync + 'static,
    files: Vec<(String, Vec<u8>)>,
) -> Running {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let stub = Stub {
        calls: calls.clone(),
        respond: Arc::new(respond),
        files: Arc::new(files),
    };
    let app = Router::new().fallback(handle).with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Running {
        base: format!("http://{addr}"),
        calls,
    }
}

async fn stub(
    respond: impl Fn(&str, &Value, usize) -> (u16, String) + Send + Sync + 'static,
) -> Running {
    stub_with_files(respond, Vec::new()).await
}

/// A server that accepts connections and never answers.
async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

fn assert_no_token(e: &ChannelError) {
    for s in [e.to_string(), format!("{e:?}")] {
        assert!(!s.contains(SECRET), "the token leaked: {s}");
    }
}

#[tokio::test]
async fn get_me_names_the_bot() {
    let s = stub(|method, _, _| match method {
        "getMe" => ok(
            json!({"id": 987654321, "is_bot": true, "first_name": "Магазин Ромашка",
            "username": "romashka_shop_bot", "can_join_groups": true,
            "can_read_all_group_messages": false, "supports_inline_queries": false}),
        ),
        _ => err(404, "Not Found", None),
    })
    .await;
    let me = s.client().get_me().await.expect("getMe");
    assert_eq!(
        me,
        Identity {
            id: "987654321".into(),
            name: "Магазин Ромашка".into(),
            username: Some("romashka_shop_bot".into()),
        }
    );
    let calls = s.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, format!("/bot{TOKEN}/getMe"));
}

#[tokio::test]
async fn get_me_with_a_revoked_token_is_unauthorized_with_the_fix() {
    let s = stub(|_, _, _| err(401, "Unauthorized", None)).await;
    let e = s.client().get_me().await.expect_err("401");
    assert_eq!(
        e,
        ChannelError::Unauthorized(
            "the bot token was revoked or is wrong: create a new token with @BotFather".into()
        )
    );
    assert_no_token(&e);
}

#[tokio::test]
async fn get_me_with_a_malformed_token_is_unauthorized() {
    let s = stub(|_, _, _| err(404, "Not Found", None)).await;
    let e = s.client().get_me().await.expect_err("404");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
}

#[tokio::test]
async fn send_message_body_has_chat_id_text_and_reply_parameters() {
    let s = stub(|_, body, _| {
        ok(json!({"message_id": 77, "date": 1767225700,
                  "chat": {"id": body["chat_id"].as_str().and_then(|c| c.parse::<i64>().ok()), "type": "private"},
                  "text": body["text"]}))
    })
    .await;
    let sent = s
        .client()
        .send(&OutboundMessage {
            chat_external_id: "123456789".into(),
            text: "Добрый день! Заказ готов.".into(),
            reply_to_external_id: Some("123456789:42".into()),
            idempotency_key: None,
        })
        .await
        .expect("send");
    assert_eq!(sent.external_ids, vec!["123456789:77".to_owned()]);
    let calls = s.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "sendMessage");
    assert!(calls[0].content_type.starts_with("application/json"));
    assert_eq!(
        calls[0].json(),
        json!({"chat_id": "123456789", "text": "Добрый день! Заказ готов.",
               "reply_parameters": {"message_id": 42, "allow_sending_without_reply": true}})
    );
}

#[tokio::test]
async fn a_long_text_is_sent_as_two_messages_in_order() {
    let s = stub(|_, _, index| {
        ok(json!({"message_id": 100 + index, "date": 1767225700,
        "chat": {"id": -1001234567890_i64, "type": "supergroup"}}))
    })
    .await;
    let text: String = (0..1000)
        .map(|i| format!("слово{} ", i % 10))
        .collect::<String>();
    assert!(text.chars().count() > 4096);
    let sent = s
        .client()
        .send(&OutboundMessage {
            chat_external_id: "-1001234567890".into(),
            text: text.clone(),
            reply_to_external_id: Some("-1001234567890:5".into()),
            idempotency_key: None,
        })
        .await
        .expect("send");
    assert_eq!(
        sent.external_ids,
        vec![
            "-1001234567890:100".to_owned(),
            "-1001234567890:101".to_owned()
        ]
    );
    let calls = s.calls();
    assert_eq!(calls.len(), 2);
    let (first, second) = (calls[0].json(), calls[1].json());
    let part = |v: &Value| v["text"].as_str().expect("text").to_owned();
    assert!(part(&first).chars().count() <= 4096);
    assert!(part(&second).chars().count() <= 4096);
    assert_eq!(part(&first) + &part(&second), text);
    assert_eq!(first["reply_parameters"]["message_id"], 5);
    assert!(second.get("reply_parameters").is_none(), "{second}");
}

#[tokio::test]
async fn too_many_requests_carries_retry_after() {
    let s = stub(|_, _, _| {
        err(
            429,
            "Too Many Requests: retry after 37",
            Some(json!({"retry_after": 37})),
        )
    })
    .await;
    let e = s
        .client()
        .send_text_part("123456789", "привет", None)
        .await
        .expect_err("429");
    assert_eq!(
        e,
        ChannelError::RateLimited {
            retry_after_secs: 37,
            message: "Too Many Requests: retry after 37".into()
        }
    );
    assert!(e.is_retryable());
}

#[tokio::test]
async fn bad_gateway_is_transient() {
    let s = stub(|_, _, _| (502, "<html><body>502 Bad Gateway</body></html>".into())).await;
    let e = s.client().get_me().await.expect_err("502");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
}

#[tokio::test]
async fn blocked_by_the_user_is_blocked_with_telegrams_words() {
    let s = stub(|_, _, _| err(403, "Forbidden: bot was blocked by the user", None)).await;
    let e = s
        .client()
        .send_text_part("123456789", "привет", None)
        .await
        .expect_err("403");
    assert_eq!(
        e,
        ChannelError::Blocked("Forbidden: bot was blocked by the user".into())
    );
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn a_server_that_never_answers_is_transient_after_the_timeout() {
    let base = silent_server().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let client = TelegramClient::new(http, &base, TOKEN);
    let started = std::time::Instant::now();
    let e = client.get_me().await.expect_err("timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
    assert!(e.to_string().contains("timed out"), "{e}");
    assert_no_token(&e);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let client = TelegramClient::new(reqwest::Client::new(), &format!("http://{addr}"), TOKEN);
    let e = client.get_me().await.expect_err("refused");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
    assert_no_token(&e);
}

#[tokio::test]
async fn get_updates_asks_for_our_types_and_returns_raw_updates() {
    let s = stub(|_, _, _| {
        ok(json!([
            {"update_id": 880001, "message": {"message_id": 1, "date": 1767225600,
             "from": {"id": 5, "is_bot": false, "first_name": "Иван"},
             "chat": {"id": 5, "type": "private"}, "text": "Привет"}},
            {"update_id": 880002, "my_chat_member": {"chat": {"id": 5, "type": "private"},
             "from": {"id": 5, "is_bot": false, "first_name": "Иван"}, "date": 1767225601,
             "old_chat_member": {"status": "member"}, "new_chat_member": {"status": "kicked"}}}
        ]))
    })
    .await;
    let updates = s
        .client()
        .get_updates(Some(880001), 0, 100)
        .await
        .expect("getUpdates");
    assert_eq!(
        updates.iter().map(|u| u.update_id).collect::<Vec<_>>(),
        vec![880001, 880002]
    );
    assert_eq!(updates[0].raw["message"]["text"], "Привет");
    let body = s.calls()[0].json();
    assert_eq!(body["offset"], 880001);
    assert_eq!(body["timeout"], 0);
    assert_eq!(body["limit"], 100);
    assert_eq!(body["allowed_updates"], json!(ALLOWED_UPDATES));
}

#[tokio::test]
async fn get_updates_while_a_webhook_is_set_is_a_permanent_conflict() {
    const CONFLICT: &str = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
    let s = stub(|_, _, _| err(409, CONFLICT, None)).await;
    let e = s.client().get_updates(None, 0, 100).await.expect_err("409");
    assert_eq!(e, ChannelError::Permanent(CONFLICT.into()));
    assert!(s.calls()[0].json().get("offset").is_none());
}

#[tokio::test]
async fn webhook_calls_send_what_the_spec_says() {
    let s = stub(|method, _, _| match method {
        "getWebhookInfo" => ok(json!({"url": "https://chatter.example/hooks/telegram/1",
            "has_custom_certificate": false, "pending_update_count": 3,
            "last_error_date": 1767225000, "last_error_message": "Connection timed out",
            "max_connections": 40})),
        _ => ok(json!(true)),
    })
    .await;
    let c = s.client();
    c.set_webhook("https://chatter.example/hooks/telegram/1", "s3cr3t_-Token")
        .await
        .expect("setWebhook");
    let info = c.get_webhook_info().await.expect("getWebhookInfo");
    c.delete_webhook(true).await.expect("deleteWebhook");

    assert_eq!(info.url, "https://chatter.example/hooks/telegram/1");
    assert_eq!(info.pending_update_count, 3);
    assert_eq!(info.last_error_date, Some(1767225000));
    assert_eq!(
        info.last_error_message.as_deref(),
        Some("Connection timed out")
    );
    let calls = s.calls();
    assert_eq!(
        calls[0].json(),
        json!({"url": "https://chatter.example/hooks/telegram/1", "secret_token": "s3cr3t_-Token",
               "allowed_updates": ALLOWED_UPDATES, "max_connections": 40})
    );
    assert_eq!(calls[2].method, "deleteWebhook");
    assert_eq!(calls[2].json(), json!({"drop_pending_updates": true}));
}

#[tokio::test]
async fn photos_and_documents_are_uploaded_as_multipart() {
    let s = stub(|_, _, index| {
        ok(json!({"message_id": 200 + index, "date": 1767225700,
        "chat": {"id": 5, "type": "private"}}))
    })
    .await;
    let c = s.client();
    let photo_id = c
        .send_photo(
            "5",
            b"\xFF\xD8JPEGDATA".to_vec(),
            "счёт.jpg",
            Some("Ваш счёт"),
        )
        .await
        .expect("sendPhoto");
    let doc_id = c
        .send_document(
            "5",
            b"%PDF-1.7 data".to_vec(),
            "invoice.pdf",
            "application/pdf",
            None,
        )
        .await
        .expect("sendDocument");
    assert_eq!((photo_id, doc_id), (200, 201));

    let calls = s.calls();
    assert_eq!(calls[0].method, "sendPhoto");
    assert!(calls[0].content_type.starts_with("multipart/form-data"));
    let body = String::from_utf8_lossy(&calls[0].body);
    assert!(body.contains(r#"name="chat_id""#), "{body}");
    assert!(body.contains(r#"name="photo"; filename="#), "{body}");
    assert!(body.contains("JPEGDATA"), "{body}");
    assert!(body.contains(r#"name="caption""#) && body.contains("Ваш счёт"));

    assert_eq!(calls[1].method, "sendDocument");
    let body = String::from_utf8_lossy(&calls[1].body);
    assert!(
        body.contains(r#"name="document"; filename="invoice.pdf""#),
        "{body}"
    );
    assert!(body.contains("Content-Type: application/pdf"), "{body}");
    assert!(!body.contains(r#"name="caption""#));
}

#[tokio::test]
async fn get_file_then_download_returns_the_bytes() {
    let voice = vec![0x4f, 0x67, 0x67, 0x53, 0, 1, 2, 3, 255];
    let s = stub_with_files(
        |_, body, _| {
            ok(
                json!({"file_id": body["file_id"], "file_unique_id": "AgADxyz",
                      "file_size": 9, "file_path": "voice/file_12.oga"}),
            )
        },
        vec![("voice/file_12.oga".into(), voice.clone())],
    )
    .await;
    let c = s.client();
    let info = c.get_file("AwACAgIAAxkBAAIBZ").await.expect("getFile");
    assert_eq!(info.file_id, "AwACAgIAAxkBAAIBZ");
    assert_eq!(info.file_size, Some(9));
    let path = info.file_path.expect("a file path");
    let bytes = c.download(&path).await.expect("download");
    assert_eq!(bytes.as_ref(), voice.as_slice());

    let e = c.download("voice/gone.oga").await.expect_err("404");
    assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");
    assert_no_token(&e);
}

#[tokio::test]
async fn no_error_ever_contains_the_token() {
    // A hostile or buggy server that echoes the request path (with the token) in every error.
    let s = stub(|method, _, index| {
        let echo = format!("Bad Request: /bot{TOKEN}/{method}");
        match index % 5 {
            0 => err(400, &echo, None),
            1 => err(401, &echo, None),
            2 => err(429, &echo, Some(json!({"retry_after": 1}))),
            3 => err(502, &echo, None),
            _ => err(403, &echo, None),
        }
    })
    .await;
    let c = s.client();
    let first = c.get_me().await.expect_err("an error");
    assert_eq!(
        first,
        ChannelError::Permanent("Bad Request: /bot<token>/getMe".into())
    );
    for _ in 0..4 {
        let e = c.get_me().await.expect_err("an error");
        assert_no_token(&e);
    }
    let e = c
        .send(&OutboundMessage {
            chat_external_id: "1".into(),
            text: "x".into(),
            reply_to_external_id: None,
            idempotency_key: None,
        })
        .await
        .expect_err("an error");
    assert_no_token(&e);
    assert_no_token(&c.download("nope").await.expect_err("404"));
    assert!(!format!("{c:?}").contains(SECRET));
}
