//! The fake Telegram Bot API, driven over HTTP as a real bot client would (JSON, form,
//! multipart), with the control API playing the customers.

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chatter_fakes::{CustomerMessage, Failure, FakeTelegram, GroupChat};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn start() -> (FakeTelegram, String, reqwest::Client) {
    let tg = FakeTelegram::start().await.expect("fake starts");
    let token = tg.create_bot("shop_bot", "Магазин");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    (tg, token, client)
}

fn url(tg: &FakeTelegram, token: &str, method: &str) -> String {
    format!("{}/bot{token}/{method}", tg.base_url())
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.expect("JSON body");
    (status, body)
}

async fn call(
    client: &reqwest::Client,
    tg: &FakeTelegram,
    token: &str,
    method: &str,
    params: Value,
) -> (u16, Value) {
    let response = client
        .post(url(tg, token, method))
        .json(&params)
        .send()
        .await
        .expect("request");
    read(response).await
}

async fn form(
    client: &reqwest::Client,
    tg: &FakeTelegram,
    token: &str,
    method: &str,
    params: &str,
) -> (u16, Value) {
    let response = client
        .post(url(tg, token, method))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(params.to_owned())
        .send()
        .await
        .expect("request");
    read(response).await
}

/// A multipart part: name, optional (file name, mime), content.
type Part<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [u8]);

/// A multipart/form-data body built by hand, as Telegram clients upload files.
fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "----chatter-test-boundary-7MA4YWxk";
    let mut body = Vec::new();
    for (name, file, content) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some((file_name, mime)) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: {mime}\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn get_me_describes_the_bot_until_the_token_is_revoked() {
    let (tg, token, client) = start().await;
    let (status, body) = read(
        client
            .get(url(&tg, &token, "GETME"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], true);
    let me = &body["result"];
    let bot_id: i64 = token
        .split(':')
        .next()
        .expect("id")
        .parse()
        .expect("numeric");
    assert_eq!(me["id"], bot_id);
    assert_eq!(me["is_bot"], true);
    assert_eq!(me["username"], "shop_bot");
    assert_eq!(me["first_name"], "Магазин");
    assert_eq!(me["can_read_all_group_messages"], false);
    assert_eq!(me["supports_inline_queries"], false);
    assert!(me.get("last_name").is_none(), "absent fields are omitted");
    let secret = token.split(':').nth(1).expect("secret");
    assert_eq!(secret.len(), 35);
    assert_eq!(tg.calls(&token), vec!["getMe"]);

    let (status, body) = call(
        &client,
        &tg,
        "123:unknownTokenAAAAAAAAAAAAAAAAAAAAAAAAA",
        "getMe",
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (401, Some("Unauthorized"))
    );
    let (status, body) = read(
        client
            .get(format!("{}/bot{token}", tg.base_url()))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (404, Some("Not Found"))
    );

    tg.revoke(&token);
    let (status, body) = call(&client, &tg, &token, "getMe", json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );
    assert_eq!(tg.calls(&token), vec!["getMe", "getMe"]);
}

#[tokio::test]
async fn get_updates_returns_pending_updates_until_confirmed_by_offset() {
    let (tg, token, client) = start().await;
    let first = tg.customer_writes(&token, CustomerMessage::text(1001, "Иван", "Здравствуйте"));
    let second = tg.customer_writes(
        &token,
        CustomerMessage::text(1001, "Иван", "Есть доставка?"),
    );
    assert_eq!(second, first + 1, "message ids grow per chat");
    assert_eq!(tg.pending_updates(&token), 2);

    let (status, body) = form(&client, &tg, &token, "getUpdates", "timeout=0").await;
    assert_eq!(status, 200);
    let updates = body["result"].as_array().expect("array").clone();
    assert_eq!(updates.len(), 2);
    let id0 = updates[0]["update_id"].as_i64().expect("update_id");
    assert_eq!(updates[1]["update_id"], id0 + 1);
    let message = &updates[0]["message"];
    assert_eq!(message["message_id"], first);
    assert_eq!(message["text"], "Здравствуйте");
    assert_eq!(message["from"]["first_name"], "Иван");
    assert_eq!(message["from"]["is_bot"], false);
    assert_eq!(
        message["chat"],
        json!({"id": 1001, "type": "private", "first_name": "Иван"})
    );
    assert!(message["date"].as_i64().expect("date") > 1_700_000_000);

    // Without an offset nothing is confirmed; limit takes the oldest.
    let (_, body) = form(&client, &tg, &token, "getUpdates", "limit=1").await;
    assert_eq!(body["result"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["result"][0]["update_id"], id0);

    // offset = last + 1 confirms both; the next poll is empty.
    let (_, body) = form(
        &client,
        &tg,
        &token,
        "getUpdates",
        &format!("offset={}", id0 + 1),
    )
    .await;
    assert_eq!(body["result"].as_array().map(Vec::len), Some(1));
    let (_, body) = call(
        &client,
        &tg,
        &token,
        "getUpdates",
        json!({"offset": id0 + 2}),
    )
    .await;
    assert_eq!(body["result"], json!([]));
    assert_eq!(tg.pending_updates(&token), 0);
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_a_customer_writes() {
    let (tg, token, client) = start().await;
    let started = Instant::now();
    let poll = {
        let client = client.clone();
        let url = url(&tg, &token, "getUpdates");
        tokio::spawn(async move {
            let response = client
                .get(format!("{url}?timeout=10"))
                .send()
                .await
                .expect("request");
            read(response).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    tg.customer_writes(&token, CustomerMessage::text(7, "Ольга", "Алло"));
    let (status, body) = poll.await.expect("poll task");
    assert_eq!(status, 200);
    assert_eq!(body["result"][0]["message"]["text"], "Алло");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woke before the timeout"
    );

    // An empty long poll waits its timeout, then answers [].
    let (_, body) = form(&client, &tg, &token, "getUpdates", "timeout=1").await;
    assert_eq!(body["result"].as_array().map(Vec::len), Some(1));
    let confirm = body["result"][0]["update_id"].as_i64().expect("id") + 1;
    let started = Instant::now();
    let (_, body) = form(
        &client,
        &tg,
        &token,
        "getUpdates",
        &format!("offset={confirm}&timeout=1"),
    )
    .await;
    assert_eq!(body["result"], json!([]));
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_second_poller_terminates_the_first_and_webhooks_forbid_polling() {
    let (tg, token, client) = start().await;
    let first = {
        let client = client.clone();
        let url = url(&tg, &token, "getUpdates");
        tokio::spawn(async move {
            read(
                client
                    .get(format!("{url}?timeout=10"))
                    .send()
                    .await
                    .expect("request"),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = {
        let client = client.clone();
        let url = url(&tg, &token, "getUpdates");
        tokio::spawn(async move {
            read(
                client
                    .get(format!("{url}?timeout=1"))
                    .send()
                    .await
                    .expect("request"),
            )
            .await
        })
    };
    let (status, body) = first.await.expect("first poll");
    assert_eq!(status, 409);
    assert_eq!(
        body["description"],
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
    );
    let (status, _) = second.await.expect("second poll");
    assert_eq!(status, 200);

    tg.route("https://hooks.example.test", "http://127.0.0.1:9");
    let (status, body) = call(
        &client,
        &tg,
        &token,
        "setWebhook",
        json!({"url": "https://hooks.example.test/hook"}),
    )
    .await;
    assert_eq!((status, &body["result"]), (200, &json!(true)));
    let (status, body) = call(&client, &tg, &token, "getUpdates", json!({})).await;
    assert_eq!(status, 409);
    assert_eq!(body["error_code"], 409);
    assert_eq!(
        body["description"],
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
    );
    let (_, body) = call(&client, &tg, &token, "deleteWebhook", json!({})).await;
    assert_eq!(body["result"], true);
    let (status, _) = call(&client, &tg, &token, "getUpdates", json!({})).await;
    assert_eq!(status, 200);
}

/// setWebhook refuses what Telegram refuses, with Telegram's texts, and keeps no webhook.
#[tokio::test]
async fn set_webhook_refuses_plain_http_other_ports_and_unknown_hosts() {
    let (tg, token, client) = start().await;
    tg.route("https://hooks.example.test:8443", "http://127.0.0.1:9");
    tg.route("https://hooks.example.test:9443", "http://127.0.0.1:9");
    for (url, description) in [
        (
            "http://127.0.0.1:8080/hook",
            "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
        ),
        (
            "https://hooks.example.test:9443/hook",
            "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
        ),
        (
            "https://nowhere.example.test/hook",
            "Bad Request: bad webhook: Failed to resolve host: Name or service not known",
        ),
    ] {
        let (status, body) = call(&client, &tg, &token, "setWebhook", json!({"url": url})).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["ok"], false);
        assert_eq!(body["error_code"], 400);
        assert_eq!(body["description"], description, "{url}");
        assert!(tg.webhook(&token).is_none(), "{url}: no webhook kept");
    }
    let (status, body) = call(
        &client,
        &tg,
        &token,
        "setWebhook",
        json!({"url": "https://hooks.example.test:8443/hook"}),
    )
    .await;
    assert_eq!((status, &body["result"]), (200, &json!(true)));
}

#[derive(Default)]
struct Receiver {
    secrets: Vec<Option<String>>,
    bodies: Vec<Value>,
}

#[tokio::test]
async fn webhook_delivers_with_the_secret_and_retries_after_a_500() {
    let (tg, token, client) = start().await;
    let seen = Arc::new(Mutex::new(Receiver::default()));
    let app = {
        let seen = seen.clone();
        Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let mut seen = seen.lock().expect("lock");
                    seen.secrets.push(
                        headers
                            .get("x-telegram-bot-api-secret-token")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned),
                    );
                    seen.bodies
                        .push(serde_json::from_str(&body).expect("JSON update"));
                    if seen.bodies.len() == 1 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    // The public https address Telegram is given leads to the loopback server, as a
    // TLS-terminating proxy would.
    tg.route(
        "https://bot-hooks.example.test:8443",
        &format!("http://{}", listener.local_addr().expect("addr")),
    );
    let hook = "https://bot-hooks.example.test:8443/hook".to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (_, body) = form(
        &client,
        &tg,
        &token,
        "setWebhook",
        &format!("url={hook}&secret_token=s3cr3t-Token_1&max_connections=1&allowed_updates=%5B%22message%22%5D"),
    )
    .await;
    assert_eq!(body["result"], true);
    let config = tg.webhook(&token).expect("webhook set");
    assert_eq!(config.url, hook);
    assert_eq!(config.secret_token.as_deref(), Some("s3cr3t-Token_1"));
    assert_eq!(config.max_connections, 1);
    assert_eq!(config.allowed_updates, Some(vec!["message".to_owned()]));

    tg.customer_writes(&token, CustomerMessage::text(55, "Пётр", "Добрый день"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while tg.pending_updates(&token) > 0 {
        assert!(Instant::now() < deadline, "update delivered in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deliveries = tg.deliveries(&token);
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].attempts, 2);
    assert_eq!(deliveries[0].last_status, Some(200));
    assert!(deliveries[0].delivered);
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.secrets, vec![Some("s3cr3t-Token_1".to_owned()); 2]);
        assert_eq!(seen.bodies[0], seen.bodies[1], "the same update is retried");
        assert_eq!(seen.bodies[1]["message"]["text"], "Добрый день");
        assert_eq!(seen.bodies[1]["update_id"], deliveries[0].update_id);
    }
    let (_, info) = call(&client, &tg, &token, "getWebhookInfo", json!({})).await;
    let info = &info["result"];
    assert_eq!(info["url"], hook);
    assert_eq!(info["pending_update_count"], 0);
    assert_eq!(info["has_custom_certificate"], false);
    assert_eq!(info["max_connections"], 1);
    assert_eq!(
        info["last_error_message"],
        "Wrong response from the webhook: 500 Internal Server Error"
    );

    // allowed_updates = ["message"]: a block is not delivered at all.
    tg.customer_blocks(&token, 55, true);
    assert_eq!(tg.pending_updates(&token), 0);

    let (_, body) = call(&client, &tg, &token, "setWebhook", json!({"url": ""})).await;
    assert_eq!(body["result"], true);
    assert!(tg.webhook(&token).is_none());
    let (_, info) = call(&client, &tg, &token, "getWebhookInfo", json!({})).await;
    assert_eq!(info["result"]["url"], "");
}

#[tokio::test]
async fn send_message_records_the_reply_and_answers_the_message() {
    let (tg, token, client) = start().await;
    let asked = tg.customer_writes(&token, CustomerMessage::text(42, "Анна", "Сколько стоит?"));

    let (status, body) = call(
        &client,
        &tg,
        &token,
        "sendMessage",
        json!({"chat_id": 42, "text": "1 500 ₽", "reply_parameters": {"message_id": asked}}),
    )
    .await;
    assert_eq!(status, 200);
    let message = &body["result"];
    assert_eq!(message["message_id"], asked + 1, "one id sequence per chat");
    assert_eq!(message["text"], "1 500 ₽");
    assert_eq!(message["from"]["is_bot"], true);
    assert_eq!(message["chat"]["id"], 42);
    assert_eq!(message["reply_to_message"]["message_id"], asked);
    assert_eq!(message["reply_to_message"]["text"], "Сколько стоит?");

    // Form-encoded, reply_parameters as a JSON string, HTML parse mode.
    let params = format!(
        "chat_id=42&parse_mode=HTML&text=%3Cb%3E%D0%94%D0%B0%3C%2Fb%3E+%26amp%3B+%D0%BD%D0%B5%D1%82&reply_parameters=%7B%22message_id%22%3A{asked}%7D"
    );
    let (status, body) = form(&client, &tg, &token, "sendMessage", &params).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["text"], "Да & нет");

    let sent = tg.sent(&token);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].chat_id, 42);
    assert_eq!(sent[0].kind, "text");
    assert_eq!(sent[0].text.as_deref(), Some("1 500 ₽"));
    assert_eq!(sent[0].reply_to_message_id, Some(asked));
    assert_eq!(sent[1].message_id, asked + 2);
    assert_eq!(sent[1].text.as_deref(), Some("Да & нет"));
    assert!(sent[1].caption.is_none());
}

#[tokio::test]
async fn send_message_refuses_empty_long_unknown_and_blocked() {
    let (tg, token, client) = start().await;
    tg.customer_writes(&token, CustomerMessage::text(42, "Анна", "Привет"));
    let cases = [
        (
            json!({"chat_id": 42, "text": ""}),
            400,
            "Bad Request: message text is empty",
        ),
        (
            json!({"chat_id": 42, "text": "я".repeat(4097)}),
            400,
            "Bad Request: message is too long",
        ),
        (
            json!({"chat_id": 777, "text": "Здравствуйте"}),
            400,
            "Bad Request: chat not found",
        ),
        (
            json!({"chat_id": 42, "text": "Ответ", "reply_parameters": {"message_id": 99}}),
            400,
            "Bad Request: message to be replied not found",
        ),
    ];
    for (params, code, description) in cases {
        let (status, body) = call(&client, &tg, &token, "sendMessage", params).await;
        assert_eq!(status, code);
        assert_eq!(body["ok"], false);
        assert_eq!(body["error_code"], code);
        assert_eq!(body["description"], description);
    }
    let (status, _) = call(
        &client,
        &tg,
        &token,
        "sendMessage",
        json!({"chat_id": 42, "text": "я".repeat(4096)}),
    )
    .await;
    assert_eq!(status, 200, "exactly 4096 characters fit");

    tg.customer_blocks(&token, 42, true);
    let (status, body) = call(
        &client,
        &tg,
        &token,
        "sendMessage",
        json!({"chat_id": 42, "text": "Вы тут?"}),
    )
    .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (403, Some("Forbidden: bot was blocked by the user"))
    );
    let (_, body) = call(&client, &tg, &token, "getUpdates", json!({})).await;
    let update = body["result"]
        .as_array()
        .expect("updates")
        .last()
        .cloned()
        .expect("an update");
    let member = &update["my_chat_member"];
    assert_eq!(member["chat"]["type"], "private");
    assert_eq!(member["from"]["id"], 42);
    assert_eq!(member["old_chat_member"]["status"], "member");
    assert_eq!(member["new_chat_member"]["status"], "kicked");

    tg.customer_blocks(&token, 42, false);
    let (status, _) = call(
        &client,
        &tg,
        &token,
        "sendMessage",
        json!({"chat_id": 42, "text": "Снова здесь"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(tg.sent(&token).len(), 2);
}

#[tokio::test]
async fn injected_failures_answer_429_and_502_then_recover() {
    let (tg, token, client) = start().await;
    tg.customer_writes(&token, CustomerMessage::text(42, "Анна", "Привет"));
    tg.fail_next(&token, "sendMessage", Failure::too_many_requests(7), 1);
    tg.fail_next(&token, "*", Failure::server_error(), 1);
    let params = json!({"chat_id": 42, "text": "Ответ"});

    let (status, body) = call(&client, &tg, &token, "sendmessage", params.clone()).await;
    assert_eq!(status, 429);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7",
               "parameters": {"retry_after": 7}})
    );
    let (status, body) = call(&client, &tg, &token, "getMe", json!({})).await;
    assert_eq!(
        (status, body["description"].as_str()),
        (502, Some("Bad Gateway"))
    );
    let (status, _) = call(&client, &tg, &token, "sendMessage", params).await;
    assert_eq!(status, 200);
    assert_eq!(tg.sent(&token).len(), 1, "failed calls send nothing");
    assert_eq!(
        tg.calls(&token),
        vec!["sendMessage", "getMe", "sendMessage"]
    );

    tg.fail_next(&token, "sendMessage", Failure::forbidden_blocked(), 1);
    let (status, body) = call(
        &client,
        &tg,
        &token,
        "sendMessage",
        json!({"chat_id": 42, "text": "x"}),
    )
    .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (403, Some("Forbidden: bot was blocked by the user"))
    );
}

#[tokio::test]
async fn a_hanging_call_makes_the_client_time_out() {
    let (tg, token, _) = start().await;
    tg.fail_next(&token, "getMe", Failure::Hang, 1);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let started = Instant::now();
    let error = client
        .get(url(&tg, &token, "getMe"))
        .send()
        .await
        .expect_err("no answer");
    assert!(error.is_timeout());
    assert!(started.elapsed() < Duration::from_secs(3));
    let response = client
        .get(url(&tg, &token, "getMe"))
        .send()
        .await
        .expect("answers again");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn files_round_trip_through_get_file_and_download() {
    let (tg, token, client) = start().await;
    let photo: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    tg.customer_writes(
        &token,
        CustomerMessage {
            photo: Some(photo.clone()),
            caption: Some("Вот такой нужен".into()),
            ..CustomerMessage::text(9, "Игорь", "")
        },
    );
    tg.customer_writes(
        &token,
        CustomerMessage {
            text: None,
            document: Some((
                b"%PDF-1.4".to_vec(),
                "счёт.pdf".into(),
                "application/pdf".into(),
            )),
            ..CustomerMessage::text(9, "Игорь", "")
        },
    );
    let (_, body) = call(&client, &tg, &token, "getUpdates", json!({})).await;
    let message = &body["result"][0]["message"];
    assert_eq!(message["caption"], "Вот такой нужен");
    assert!(
        message.get("text").is_none(),
        "no empty text next to a photo"
    );
    let sizes = message["photo"].as_array().expect("photo sizes");
    assert_eq!(sizes.len(), 2);
    assert!(
        sizes[0]["width"].as_i64() < sizes[1]["width"].as_i64(),
        "ascending sizes"
    );
    let document = &body["result"][1]["message"]["document"];
    assert_eq!(document["file_name"], "счёт.pdf");
    assert_eq!(document["mime_type"], "application/pdf");

    let file_id = sizes[1]["file_id"].as_str().expect("file_id");
    let (status, body) = form(
        &client,
        &tg,
        &token,
        "getFile",
        &format!("file_id={file_id}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["file_size"], 3000);
    let path = body["result"]["file_path"].as_str().expect("file_path");
    let bytes = client
        .get(format!("{}/file/bot{token}/{path}", tg.base_url()))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(bytes.as_ref(), photo.as_slice());

    // The bot uploads a photo (multipart) in reply; the customer can download it too.
    let (content_type, body) = multipart(&[
        ("chat_id", None, b"9"),
        ("caption", None, "Есть в наличии".as_bytes()),
        (
            "photo",
            Some(("shoe.jpg", "image/jpeg")),
            b"\xff\xd8\xff\xe0 jpeg",
        ),
    ]);
    let (status, body) = read(
        client
            .post(url(&tg, &token, "sendPhoto"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("upload"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["caption"], "Есть в наличии");
    let uploaded = body["result"]["photo"][1]["file_id"]
        .as_str()
        .expect("file_id")
        .to_owned();
    let (_, file) = call(
        &client,
        &tg,
        &token,
        "getFile",
        json!({"file_id": uploaded}),
    )
    .await;
    let path = file["result"]["file_path"].as_str().expect("path");
    let bytes = client
        .get(format!("{}/file/bot{token}/{path}", tg.base_url()))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(bytes.as_ref(), b"\xff\xd8\xff\xe0 jpeg");

    // Resending by file_id works as a document too.
    let (status, body) = call(
        &client,
        &tg,
        &token,
        "sendDocument",
        json!({"chat_id": 9, "document": uploaded}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let kinds: Vec<String> = tg.sent(&token).into_iter().map(|m| m.kind).collect();
    assert_eq!(kinds, vec!["photo", "document"]);
}

#[tokio::test]
async fn groups_edits_and_media_have_telegrams_shapes() {
    let (tg, token, client) = start().await;
    let group = GroupChat {
        id: -4_000_123,
        title: "Оптовики".into(),
    };
    let id = tg.customer_writes(
        &token,
        CustomerMessage {
            chat: Some(group),
            last_name: Some("Смирнов".into()),
            username: Some("smirnov".into()),
            ..CustomerMessage::text(5, "Олег", "Всем привет")
        },
    );
    tg.customer_edits(&token, -4_000_123, id, "Всем добрый день");
    tg.customer_writes(
        &token,
        CustomerMessage {
            text: None,
            voice: Some(vec![0; 9000]),
            ..CustomerMessage::text(5, "Олег", "")
        },
    );
    tg.customer_writes(
        &token,
        CustomerMessage {
            text: None,
            contact: Some(("+79001234567".into(), "Олег".into())),
            ..CustomerMessage::text(5, "Олег", "")
        },
    );
    tg.customer_writes(
        &token,
        CustomerMessage {
            text: None,
            location: Some((55.7558, 37.6173)),
            ..CustomerMessage::text(5, "Олег", "")
        },
    );
    let (_, body) = call(&client, &tg, &token, "getUpdates", json!({})).await;
    let updates = body["result"].as_array().expect("updates");
    assert_eq!(updates.len(), 5);
    let message = &updates[0]["message"];
    assert_eq!(
        message["chat"],
        json!({"id": -4_000_123, "type": "group", "title": "Оптовики"})
    );
    assert_eq!(message["from"]["last_name"], "Смирнов");
    assert_eq!(message["from"]["username"], "smirnov");
    let edited = &updates[1]["edited_message"];
    assert_eq!(edited["message_id"], id);
    assert_eq!(edited["text"], "Всем добрый день");
    assert!(edited["edit_date"].as_i64().is_some());
    let voice = &updates[2]["message"]["voice"];
    assert_eq!(voice["duration"], 2);
    assert_eq!(voice["mime_type"], "audio/ogg");
    assert_eq!(updates[2]["message"]["chat"]["type"], "private");
    assert!(updates[2]["message"].get("text").is_none());
    assert_eq!(
        updates[3]["message"]["contact"]["phone_number"],
        "+79001234567"
    );
    assert_eq!(updates[4]["message"]["location"]["latitude"], 55.7558);
}

#[tokio::test]
async fn the_customers_phone_shows_replies_and_writes_as_the_customer() {
    let (tg, token, client) = start().await;
    tg.customer_writes(
        &token,
        CustomerMessage::text(77, "Мария", "Когда откроетесь?"),
    );
    let (status, _) = call(
        &client,
        &tg,
        &token,
        "sendMessage",
        json!({"chat_id": 77, "text": "Завтра в 9:00 <ждём>"}),
    )
    .await;
    assert_eq!(status, 200);

    let index = client
        .get(format!("{}/phone", tg.base_url()))
        .send()
        .await
        .expect("index")
        .text()
        .await
        .expect("html");
    assert!(index.contains("Мария"), "{index}");
    assert!(index.contains(&format!("/phone/{token}/77")));

    let page_url = format!("{}/phone/{token}/77", tg.base_url());
    let page = client
        .get(&page_url)
        .send()
        .await
        .expect("chat")
        .text()
        .await
        .expect("html");
    assert!(page.contains("http-equiv=\"refresh\" content=\"2\""));
    let question = page
        .find("Когда откроетесь?")
        .expect("customer message shown");
    let answer = page
        .find("Завтра в 9:00 &lt;ждём&gt;")
        .expect("reply shown, escaped");
    assert!(question < answer, "oldest first");

    let response = client
        .post(&page_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=%D0%A1%D0%BF%D0%B0%D1%81%D0%B8%D0%B1%D0%BE")
        .send()
        .await
        .expect("write");
    assert!(
        response.status().is_success(),
        "redirect followed to the chat"
    );
    let (_, body) = call(&client, &tg, &token, "getUpdates", json!({})).await;
    let last = body["result"]
        .as_array()
        .and_then(|u| u.last())
        .cloned()
        .expect("update");
    assert_eq!(last["message"]["text"], "Спасибо");
    assert_eq!(last["message"]["from"]["first_name"], "Мария");
    assert_eq!(last["message"]["chat"]["id"], 77);
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_server() {
    let tg = FakeTelegram::start().await.expect("fake starts");
    let token = tg.create_bot("demo_bot", "Демо");
    let base = tg.base_url();
    let clone = tg.clone();
    drop(tg);
    let client = reqwest::Client::new();
    let response = client.get(format!("{base}/bot{token}/getMe")).send().await;
    assert_eq!(response.expect("a clone keeps it running").status(), 200);
    drop(clone);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(format!("{base}/phone")).send().await.is_err());
}
