//! Files reach amoCRM as files (issue 15, item 4), through the whole product against the
//! Telegram, SMS and amoCRM fakes: a customer's photo, document and voice message go into the
//! amoCRM chat as `picture`, `file` and `voice` messages whose URL is a signed, expiring
//! Chatter link amoCRM downloads without a session (the fake downloads it, as amoCRM does);
//! a changed or expired link is refused in plain words; without a chat the deal notes carry the
//! link; a manager's picture or document from amoCRM reaches the Telegram customer as a photo
//! or a document with the same bytes, and an SMS customer gets a link with a note in the thread
//! saying why.

use crate::crm::consent;
use crate::crm_sync::connected;
use crate::messages::{count, eventually};
use chatter_core::media_links;
use chatter_core::CoreConfig;
use chatter_fakes::{AccountId, CustomerMessage, ManagerFile};
use chatter_testkit::TestApp;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A real 1×1 PNG with bytes of its own after IEND.
fn png(tag: &str) -> Vec<u8> {
    let mut b = vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f,
        0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64,
        0x60, 0xf8, 0x5f, 0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    b.extend_from_slice(tag.as_bytes());
    b
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A client with no cookies, as amoCRM or a customer's phone opens a link.
fn stranger() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The account's chat messages of `kind` (`picture`, `file`, `voice` …) whose file amoCRM
/// has downloaded (the fake records that just after it stores the message).
fn chat_messages_of(app: &TestApp, account: AccountId, kind: &str) -> Vec<Value> {
    app.amo
        .chat_messages(account)
        .into_iter()
        .filter(|m| m["message"]["type"] == kind && !m["media_fetch"].is_null())
        .collect()
}

#[tokio::test]
async fn a_customers_photo_document_and_voice_reach_amocrm_as_files_behind_signed_links() {
    let app = TestApp::new().await;
    let (_s, token, _source, account) = connected(&app).await;
    let photo = png("customer photo");
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            photo: Some(photo.clone()),
            caption: Some("Вот фото поломки".into()),
            text: None,
            ..CustomerMessage::text(6001, "Иван", "")
        },
    );
    eventually("amoCRM holds a picture message", || async {
        !chat_messages_of(&app, account, "picture").is_empty()
    })
    .await;
    let m = chat_messages_of(&app, account, "picture").remove(0);
    assert_eq!(
        m["message"]["text"], "Вот фото поломки",
        "caption kept: {m}"
    );
    assert!(
        m["message"]["file_name"]
            .as_str()
            .is_some_and(|n| n.ends_with(".png")),
        "{m}"
    );
    assert_eq!(
        m["message"]["file_size"].as_u64(),
        Some(photo.len() as u64),
        "{m}"
    );
    let url = m["message"]["media"]
        .as_str()
        .expect("media URL")
        .to_owned();
    assert!(url.starts_with(&app.at("/media/")), "{url}");
    // amoCRM fetched it without any session, and got the photo itself.
    assert_eq!(m["media_fetch"]["status"], 200, "{m}");
    assert_eq!(m["media_fetch"]["sha256"], sha(&photo), "{m}");
    assert_eq!(m["media_fetch"]["content_type"], "image/png", "{m}");
    // No «[Фото]» as text anywhere.
    assert!(app
        .amo
        .chat_messages(account)
        .iter()
        .all(|m| !m["message"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("[Фото]")));

    // The link opens without a cookie, with the photo's bytes and type.
    let r = stranger().get(&url).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(disposition.starts_with("inline;"), "{disposition}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.expect("body").to_vec(), photo);

    // A changed signature, a moved expiry, another attachment, or no signature: 403, plainly.
    let (path, query) = url.split_once('?').expect("query");
    let sig = query.split("sig=").nth(1).expect("sig");
    let expires: i64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("expires="))
        .expect("expires")
        .parse()
        .expect("number");
    let flipped = format!(
        "{}{}",
        &sig[..sig.len() - 1],
        if sig.ends_with('0') { '1' } else { '0' }
    );
    for bad in [
        format!("{path}?expires={expires}&sig={flipped}"),
        format!("{path}?expires={}&sig={sig}", expires + 86_400),
        format!(
            "{}1?expires={expires}&sig={sig}",
            path.trim_end_matches('0')
        ),
        path.to_owned(),
    ] {
        let r = stranger().get(&bad).send().await.expect("get");
        assert_eq!(r.status(), 403, "{bad}");
        let text = r.text().await.expect("text");
        assert!(
            text.contains("not valid") && text.contains("недействительна"),
            "{text}"
        );
    }
    // A genuine link past its time: 410, saying it expired.
    let mut past = app.core.clone();
    past.config = Arc::new(CoreConfig {
        media_link_ttl_ms: -60_000,
        ..(*app.core.config).clone()
    });
    let message_id: uuid::Uuid = path
        .trim_start_matches(&app.at("/media/"))
        .split('/')
        .next()
        .expect("id")
        .parse()
        .expect("uuid");
    let old = media_links::link(&past, chatter_domain::MessageId(message_id), 0);
    let r = stranger().get(&old.url).send().await.expect("get");
    assert_eq!(r.status(), 410, "{}", old.url);
    assert!(r.text().await.expect("text").contains("expired"));

    // A document goes as `file` with its name and size, a voice message as `voice`.
    let pdf = b"%PDF-1.4 price list".to_vec();
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            document: Some((pdf.clone(), "прайс.pdf".into(), "application/pdf".into())),
            text: None,
            ..CustomerMessage::text(6001, "Иван", "")
        },
    );
    let voice = b"OggS\0voice of the customer".to_vec();
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            voice: Some(voice.clone()),
            text: None,
            ..CustomerMessage::text(6001, "Иван", "")
        },
    );
    eventually(
        "the document and the voice message are in amoCRM",
        || async {
            !chat_messages_of(&app, account, "file").is_empty()
                && !chat_messages_of(&app, account, "voice").is_empty()
        },
    )
    .await;
    let file = chat_messages_of(&app, account, "file").remove(0);
    assert_eq!(file["message"]["file_name"], "прайс.pdf", "{file}");
    assert_eq!(
        file["message"]["file_size"].as_u64(),
        Some(pdf.len() as u64)
    );
    assert_eq!(file["media_fetch"]["sha256"], sha(&pdf), "{file}");
    assert_eq!(file["media_fetch"]["content_type"], "application/pdf");
    let voice_msg = chat_messages_of(&app, account, "voice").remove(0);
    assert_eq!(
        voice_msg["media_fetch"]["sha256"],
        sha(&voice),
        "{voice_msg}"
    );
    // In order: photo, document, voice.
    let kinds: Vec<String> = app
        .amo
        .chat_messages(account)
        .iter()
        .filter_map(|m| m["message"]["type"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(kinds, ["picture", "file", "voice"]);
}

#[tokio::test]
async fn without_a_chat_the_deal_note_carries_the_link() {
    let app = TestApp::builder().without_amo_chats().start().await;
    let (_s, token, _source, account) = connected(&app).await;
    let photo = png("note photo");
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            photo: Some(photo.clone()),
            text: None,
            ..CustomerMessage::text(6002, "Пётр", "")
        },
    );
    eventually("a note with the photo's link", || async {
        app.amo.notes(account).iter().any(|n| {
            n["params"]["text"]
                .as_str()
                .unwrap_or("")
                .contains("/media/")
        })
    })
    .await;
    let note = app
        .amo
        .notes(account)
        .into_iter()
        .find(|n| {
            n["params"]["text"]
                .as_str()
                .unwrap_or("")
                .contains("/media/")
        })
        .expect("note");
    let text = note["params"]["text"].as_str().expect("text").to_owned();
    assert!(text.contains("[Фото] "), "{text}");
    assert!(text.contains("ссылки действуют до"), "{text}");
    let url = text
        .split_whitespace()
        .find(|w| w.contains("/media/"))
        .expect("link");
    let r = stranger().get(url).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").to_vec(), photo);
}

#[tokio::test]
async fn a_managers_picture_and_document_from_amocrm_reach_the_telegram_customer_as_files() {
    let app = TestApp::new().await;
    let (_s, token, _source, account) = connected(&app).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6003, "Ольга", "Пришлите фото товара"),
    );
    eventually("the chat is in amoCRM", || async {
        !app.amo.chat_messages(account).is_empty()
    })
    .await;
    let chat = app.amo.chats(account)[0]["id"]
        .as_str()
        .expect("chat")
        .to_owned();
    let picture = png("manager picture");
    let status = app
        .amo
        .manager_sends_file(
            account,
            &chat,
            ManagerFile {
                kind: "picture",
                caption: "Вот он",
                file_name: "товар.png",
                mime: "image/png",
                bytes: &picture,
            },
        )
        .await
        .expect("hook delivered");
    assert_eq!(status, 200);
    eventually("the customer gets the photo", || async {
        app.telegram.sent(&token).iter().any(|m| m.kind == "photo")
    })
    .await;
    let sent = app
        .telegram
        .sent(&token)
        .into_iter()
        .find(|m| m.kind == "photo")
        .expect("photo");
    assert_eq!(sent.file.as_ref().expect("file").bytes, picture);
    assert_eq!(sent.caption.as_deref(), Some("Вот он"));
    eventually("amoCRM hears the picture was delivered", || async {
        app.amo
            .chat_messages(account)
            .iter()
            .any(|m| m["message"]["type"] == "picture" && m["delivery_status"] == 1)
    })
    .await;

    let pdf = b"%PDF-1.4 offer".to_vec();
    app.amo
        .manager_sends_file(
            account,
            &chat,
            ManagerFile {
                kind: "file",
                caption: "",
                file_name: "КП.pdf",
                mime: "application/pdf",
                bytes: &pdf,
            },
        )
        .await
        .expect("hook delivered");
    eventually("the customer gets the document", || async {
        app.telegram
            .sent(&token)
            .iter()
            .any(|m| m.kind == "document")
    })
    .await;
    let doc = app
        .telegram
        .sent(&token)
        .into_iter()
        .find(|m| m.kind == "document")
        .and_then(|m| m.file)
        .expect("document");
    assert_eq!(doc.bytes, pdf);
    assert_eq!(doc.name, "КП.pdf");
    // Stored once each, as files of our messages, not mirrored back into amoCRM.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'out' AND attachments LIKE '%fetched:%'"
        )
        .await,
        2
    );
    assert_eq!(
        app.amo
            .chat_messages(account)
            .iter()
            .filter(|m| m["direction"] == "outgoing")
            .count(),
        2
    );
}

#[tokio::test]
async fn an_sms_customer_gets_a_managers_file_as_a_link_and_the_thread_says_why() {
    let app = TestApp::new().await;
    let (s, key, _source) = crate::sms::company_with_sms(&app).await;
    let account = app.amo.create_account("horns", "Рога и Копыта CRM");
    let callback = consent(&app, &s, account).await;
    assert_eq!(s.get(&callback).await.status(), 303);
    app.sms
        .customer_sends(&key, "79161230002", "74950001122", "Пришлите счёт");
    eventually("the chat is in amoCRM", || async {
        !app.amo.chat_messages(account).is_empty()
    })
    .await;
    let chat = app.amo.chats(account)[0]["id"]
        .as_str()
        .expect("chat")
        .to_owned();
    let picture = png("invoice");
    app.amo
        .manager_sends_file(
            account,
            &chat,
            ManagerFile {
                kind: "picture",
                caption: "Счёт",
                file_name: "счёт.png",
                mime: "image/png",
                bytes: &picture,
            },
        )
        .await
        .expect("hook delivered");
    eventually("the customer gets an SMS with the link", || async {
        app.sms
            .sent(&key)
            .iter()
            .any(|m| m.text.contains("/media/"))
    })
    .await;
    let sms = app
        .sms
        .sent(&key)
        .into_iter()
        .find(|m| m.text.contains("/media/"))
        .expect("sms");
    assert!(sms.text.starts_with("Счёт\n"), "{}", sms.text);
    let url = sms
        .text
        .split_whitespace()
        .find(|w| w.contains("/media/"))
        .expect("link");
    let r = stranger().get(url).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").to_vec(), picture);
    // The thread says why it went as a link; so does the deal in amoCRM.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM notes WHERE text LIKE '%счёт.png%' AND text LIKE '%carries no files%'"
        )
        .await,
        1
    );
    eventually("amoCRM's deal has the note", || async {
        app.amo.notes(account).iter().any(|n| {
            n["params"]["text"]
                .as_str()
                .unwrap_or("")
                .contains("отправлен клиенту ссылкой")
        })
    })
    .await;
    eventually("amoCRM hears the SMS was delivered", || async {
        app.amo
            .chat_messages(account)
            .iter()
            .any(|m| m["message"]["type"] == "picture" && m["delivery_status"] == 1)
    })
    .await;
}
