//! Files from the reply box through the VK, Max and Avito clients against their fakes: what
//! goes as a photo and what as a document, the providers' refusals of an upload (an unknown
//! upload URL, a token or image id nobody uploaded, a file that is not what it says) and how
//! each is classified, Max's `attachment.not.ready` waited out, and Avito refusing anything but
//! a picture before it calls. A file whose send was taken but whose answer was lost reaches
//! the customer once when retried: VK by `random_id`, Max and Avito by finding the earlier
//! message among the chat's newest.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatter_channels::avito::AvitoClient;
use chatter_channels::max::MaxClient;
use chatter_channels::vk::VkClient;
use chatter_channels::{ChannelError, EarlierTry, FileToSend, Sleeper};
use chatter_fakes::avito::BuyerMessage;
use chatter_fakes::max::{CustomerMessage, Failure};
use chatter_fakes::{FakeAvito, FakeMax, FakeVk, VkCustomerMessage, VkFailure};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";
const PDF: &[u8] = b"%PDF-1.4\n%%EOF\n";
const WEBP: &[u8] = b"RIFF\x1a\0\0\0WEBPVP8L\x0d\0\0\0";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client")
}

fn file(name: &str, mime: &str, bytes: &[u8], as_image: bool) -> FileToSend {
    FileToSend {
        bytes: bytes.to_vec(),
        file_name: name.into(),
        mime_type: mime.into(),
        as_image,
        key: String::new(),
        retry: None,
    }
}

/// `f` as our message `key`, and as a retry when `retry` names what the earlier try knows.
fn keyed(f: FileToSend, key: &str, retry: Option<EarlierTry>) -> FileToSend {
    FileToSend {
        key: key.into(),
        retry,
        ..f
    }
}

/// A retry's view: the first try began within the last minute, and `known` are other replies.
fn since_a_minute(known: &[&str]) -> Option<EarlierTry> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    Some(EarlierTry {
        since_ms: i64::try_from(now).expect("fits") - 60_000,
        known: known.iter().map(|k| (*k).to_owned()).collect(),
    })
}

/// Pauses asked of it, recorded; it returns at once.
#[derive(Default)]
struct Pauses(Mutex<Vec<Duration>>);

impl Sleeper for Pauses {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.0.lock().expect("lock").push(d);
        Box::pin(std::future::ready(()))
    }
}

impl Pauses {
    fn taken(&self) -> Vec<Duration> {
        self.0.lock().expect("lock").clone()
    }
}

fn multipart(field: &str, name: &str, bytes: &[u8]) -> Form {
    Form::new().part(
        field.to_owned(),
        Part::bytes(bytes.to_vec()).file_name(name.to_owned()),
    )
}

#[tokio::test]
async fn vk_sends_photos_and_documents_and_refusals_are_classified() {
    let vk = FakeVk::start().await.expect("fake starts");
    let group = vk.create_group("Магазин", "shop");
    let customer = 612_444_319;
    vk.customer_writes(group.id, VkCustomerMessage::text(customer, "Здравствуйте"));
    let client = VkClient::new(http(), &vk.base_url(), &group.token, group.id);

    let sent = |kind: &str| {
        vk.sent(group.id)
            .last()
            .and_then(|m| m.attachments.first().cloned())
            .filter(|a| a.kind == kind)
    };
    client
        .send_upload(
            customer,
            &file("a.png", "image/png", PNG, true),
            Some("Фото"),
            None,
        )
        .await
        .expect("a photo goes");
    assert_eq!(sent("photo").map(|f| f.bytes), Some(PNG.to_vec()));
    assert_eq!(
        vk.sent(group.id).last().map(|m| m.text.clone()),
        Some("Фото".into())
    );
    // VK shows JPEG, PNG and GIF as photos; a WebP goes as a document.
    client
        .send_upload(
            customer,
            &file("b.webp", "image/webp", WEBP, true),
            None,
            None,
        )
        .await
        .expect("a WebP goes as a document");
    assert_eq!(sent("doc").map(|f| f.name), Some("b.webp".into()));

    // Bytes that are no picture: VK's photo server takes nothing, which is not retried.
    let e = client
        .send_upload(customer, &file("c.png", "image/png", PDF, true), None, None)
        .await
        .expect_err("refused");
    assert!(
        matches!(e, ChannelError::Permanent(ref m) if m.contains("did not take")),
        "{e:?}"
    );
    // A revoked token on the first step, and VK's flood control on the save.
    vk.fail_next(
        group.id,
        "docs.getMessagesUploadServer",
        VkFailure::error(5, "User authorization failed"),
        1,
    );
    let e = client
        .send_upload(
            customer,
            &file("d.pdf", "application/pdf", PDF, false),
            None,
            None,
        )
        .await
        .expect_err("unauthorized");
    assert!(matches!(e, ChannelError::Unauthorized(_)), "{e:?}");
    vk.fail_next(
        group.id,
        "docs.save",
        VkFailure::error(9, "Flood control"),
        1,
    );
    let e = client
        .send_upload(
            customer,
            &file("d.pdf", "application/pdf", PDF, false),
            None,
            None,
        )
        .await
        .expect_err("limited");
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
    assert!(!format!("{e:?}").contains(&group.token), "the token leaked");

    // The fake refuses what VK refuses: an upload URL it never gave, an attachment nobody saved.
    let answer: Value = http()
        .post(format!("{}/upload/photo/unknown", vk.base_url()))
        .multipart(multipart("photo", "a.png", PNG))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["error"], "ERR_UPLOAD_BAD_SIGNATURE", "{answer}");
    let answer: Value = http()
        .post(format!("{}/method/messages.send", vk.base_url()))
        .form(&[
            ("access_token", group.token.as_str()),
            ("v", "5.199"),
            ("peer_id", &customer.to_string()),
            ("random_id", "77"),
            ("attachment", "photo-1_2"),
        ])
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["error"]["error_code"], 100, "{answer}");
}

#[tokio::test]
async fn max_waits_out_an_attachment_not_ready_and_refuses_unknown_tokens() {
    let fake = FakeMax::start().await.expect("fake starts");
    let token = fake.add_bot("Shop bot", "shop_bot");
    fake.customer_writes(&token, CustomerMessage::text(100_500, "Ольга", "Привет"));
    let chat = fake
        .dialog_of(&token, 100_500)
        .expect("a dialog")
        .to_string();
    let pauses = Arc::new(Pauses::default());
    let client = MaxClient::new(http(), &fake.base_url(), &token).with_sleeper(pauses.clone());

    fake.attachment_not_ready_next(&token, 1);
    let mid = client
        .send_upload(
            &chat,
            &file("a.png", "image/png", PNG, true),
            Some("Фото"),
            None,
        )
        .await
        .expect("sent after the pause");
    assert_eq!(
        pauses.taken(),
        [Duration::from_secs(1)],
        "paused, in no real time"
    );
    let sent = fake.sent(&token);
    let last = sent.last().expect("sent");
    assert_eq!(last.mid, mid);
    assert_eq!((last.attachments.len(), last.text.as_str()), (1, "Фото"));
    assert_eq!(last.attachments[0].bytes, PNG);
    client
        .send_upload(
            &chat,
            &file("p.pdf", "application/pdf", PDF, false),
            None,
            None,
        )
        .await
        .expect("a file goes");
    let last = fake.sent(&token).pop().expect("sent");
    assert_eq!(
        (
            last.attachments[0].kind.as_str(),
            last.attachments[0].name.as_str()
        ),
        ("file", "p.pdf")
    );

    fake.fail_next(
        &token,
        Failure::TooManyRequests {
            retry_after: Some(3),
        },
        1,
    );
    let e = client
        .send_upload(
            &chat,
            &file("p.pdf", "application/pdf", PDF, false),
            None,
            None,
        )
        .await
        .expect_err("limited");
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

    // An upload URL nobody gave, and a message naming a token nobody uploaded.
    let r = http()
        .post(format!("{}/upload/unknown", fake.base_url()))
        .multipart(multipart("data", "a.png", PNG))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404);
    let r = http()
        .post(format!("{}/messages?chat_id={chat}", fake.base_url()))
        .header("Authorization", &token)
        .json(&json!({"text": "", "attachments": [{"type": "file", "payload": {"token": "nope"}}]}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["code"], "attachment.invalid");
}

#[tokio::test]
async fn avito_sends_a_picture_with_its_caption_and_nothing_but_pictures() {
    let fake = FakeAvito::start().await.expect("fake starts");
    let creds = fake.add_account("ООО Ромашка");
    let (chat, _) = fake.customer_writes(
        &creds.client_id,
        BuyerMessage::text(48_112_907, "Николай", 3_402_118_775, "Фото есть?"),
    );
    let client = AvitoClient::new(
        http(),
        &fake.base_url(),
        &creds.client_id,
        &creds.client_secret,
    );

    client
        .send_image(
            &chat,
            &file("диван.png", "image/png", PNG, true),
            Some("Вот"),
        )
        .await
        .expect("a picture goes");
    let sent = fake.sent(&creds.client_id);
    assert_eq!(sent.len(), 2, "the picture, then its caption as a text");
    assert_eq!(
        sent[0].image.as_ref().map(|i| i.bytes.clone()),
        Some(PNG.to_vec())
    );
    assert_eq!(sent[1].text, "Вот");

    for f in [
        file("p.pdf", "application/pdf", PDF, false),
        file("b.webp", "image/webp", WEBP, true),
    ] {
        let e = client
            .send_image(&chat, &f, None)
            .await
            .expect_err("refused");
        assert!(matches!(e, ChannelError::Permanent(_)), "{e:?}");
    }
    assert_eq!(fake.sent(&creds.client_id).len(), 2, "nothing more went");

    // Avito refuses a PDF as an image, and an image id nobody uploaded.
    let token: Value = http()
        .post(format!("{}/token", fake.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.as_str()),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let bearer = token["access_token"].as_str().expect("a token").to_owned();
    let base = format!(
        "{}/messenger/v1/accounts/{}",
        fake.base_url(),
        creds.user_id
    );
    let r = http()
        .post(format!("{base}/uploadImages"))
        .bearer_auth(&bearer)
        .multipart(multipart("uploadfile[]", "p.pdf", PDF))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let r = http()
        .post(format!("{base}/chats/{chat}/messages/image"))
        .bearer_auth(&bearer)
        .json(&json!({"image_id": "nope"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn max_pauses_one_two_and_four_seconds_then_leaves_it_to_the_job() {
    let fake = FakeMax::start().await.expect("fake starts");
    let token = fake.add_bot("Shop bot", "shop_bot");
    fake.customer_writes(&token, CustomerMessage::text(100_501, "Ольга", "Привет"));
    let chat = fake
        .dialog_of(&token, 100_501)
        .expect("a dialog")
        .to_string();
    let pauses = Arc::new(Pauses::default());
    let client = MaxClient::new(http(), &fake.base_url(), &token).with_sleeper(pauses.clone());
    fake.attachment_not_ready_next(&token, 4);
    let e = client
        .send_upload(&chat, &file("a.png", "image/png", PNG, true), None, None)
        .await
        .expect_err("still not ready after three pauses");
    assert!(
        !matches!(e, ChannelError::Permanent(_)),
        "retried by the job: {e:?}"
    );
    let secs: Vec<u64> = pauses.taken().iter().map(Duration::as_secs).collect();
    assert_eq!(
        secs,
        [1, 2, 4],
        "the official client's backoff, through the sleeper"
    );
    assert!(fake.sent(&token).is_empty(), "nothing went");
}

#[tokio::test]
async fn a_vk_file_whose_answer_was_lost_goes_once_when_retried() {
    let vk = FakeVk::start().await.expect("fake starts");
    let group = vk.create_group("Магазин", "shop");
    let customer = 612_444_320;
    vk.customer_writes(group.id, VkCustomerMessage::text(customer, "Счёт?"));
    let client = VkClient::new(http(), &vk.base_url(), &group.token, group.id);
    let pdf = keyed(file("Счёт.pdf", "application/pdf", PDF, false), "m-1", None);

    vk.lose_answer_next(group.id, "messages.send", 1);
    let e = client
        .send_upload(customer, &pdf, Some("Счёт"), None)
        .await
        .expect_err("the answer was lost");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
    let first = vk.sent(group.id);
    assert_eq!(first.len(), 1, "VK took it");
    let again = keyed(pdf.clone(), "m-1", since_a_minute(&[]));
    let id = client
        .send_upload(customer, &again, Some("Счёт"), None)
        .await
        .expect("the retry is answered");
    let sent = vk.sent(group.id);
    assert_eq!(sent.len(), 1, "the customer got the file once: {sent:?}");
    assert_eq!(id, first[0].message_id, "the first message's id");
    // Another message (another key) is another file.
    client
        .send_upload(customer, &keyed(pdf, "m-2", None), None, None)
        .await
        .expect("sent");
    assert_eq!(vk.sent(group.id).len(), 2);
}

#[tokio::test]
async fn a_max_file_whose_answer_was_lost_goes_once_when_retried() {
    let fake = FakeMax::start().await.expect("fake starts");
    let token = fake.add_bot("Shop bot", "shop_bot");
    fake.customer_writes(&token, CustomerMessage::text(100_502, "Ольга", "Прайс?"));
    let chat = fake
        .dialog_of(&token, 100_502)
        .expect("a dialog")
        .to_string();
    let client = MaxClient::new(http(), &fake.base_url(), &token);
    let pdf = file("Прайс.pdf", "application/pdf", PDF, false);

    fake.lose_answer_next(&token, 1);
    let e = client
        .send_upload(&chat, &pdf, Some("Прайс"), None)
        .await
        .expect_err("the answer was lost");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
    let mid = client
        .send_upload(
            &chat,
            &keyed(pdf.clone(), "m-1", since_a_minute(&[])),
            Some("Прайс"),
            None,
        )
        .await
        .expect("the retry finds it");
    let sent = fake.sent(&token);
    assert_eq!(sent.len(), 1, "the customer got the file once");
    assert_eq!(mid, sent[0].mid);
    // A message Chatter recorded for another reply is not this one's earlier try; nor is one
    // with another caption.
    client
        .send_upload(
            &chat,
            &keyed(pdf.clone(), "m-2", since_a_minute(&[&mid])),
            Some("Прайс"),
            None,
        )
        .await
        .expect("sent anew");
    assert_eq!(fake.sent(&token).len(), 2);
    client
        .send_upload(
            &chat,
            &keyed(pdf, "m-3", since_a_minute(&[])),
            Some("Другой"),
            None,
        )
        .await
        .expect("sent anew");
    assert_eq!(fake.sent(&token).len(), 3);
}

#[tokio::test]
async fn an_avito_picture_whose_answer_was_lost_goes_once_with_its_caption() {
    let fake = FakeAvito::start().await.expect("fake starts");
    let creds = fake.add_account("ООО Ромашка");
    let (chat, _) = fake.customer_writes(
        &creds.client_id,
        BuyerMessage::text(48_112_908, "Николай", 3_402_118_776, "Фото?"),
    );
    let client = AvitoClient::new(
        http(),
        &fake.base_url(),
        &creds.client_id,
        &creds.client_secret,
    );
    let png = file("диван.png", "image/png", PNG, true);

    fake.lose_answer_next(&creds.client_id, 1);
    let e = client
        .send_image(&chat, &png, Some("Вот"))
        .await
        .expect_err("the answer was lost");
    assert!(matches!(e, ChannelError::Transient(_)), "{e:?}");
    assert_eq!(
        fake.sent(&creds.client_id).len(),
        1,
        "Avito took the picture"
    );
    let id = client
        .send_image(
            &chat,
            &keyed(png.clone(), "m-1", since_a_minute(&[])),
            Some("Вот"),
        )
        .await
        .expect("the retry finds it");
    let sent = fake.sent(&creds.client_id);
    assert_eq!(
        sent.len(),
        2,
        "the picture once, then its caption: {sent:?}"
    );
    assert_eq!(id, sent[0].id);
    assert!(sent[0].image.is_some());
    assert_eq!(sent[1].text, "Вот");
    // Retried again (the caption's answer lost too, say): nothing more goes.
    let again = client
        .send_image(
            &chat,
            &keyed(png.clone(), "m-1", since_a_minute(&[])),
            Some("Вот"),
        )
        .await
        .expect("found again");
    assert_eq!((again, fake.sent(&creds.client_id).len()), (id.clone(), 2));
    // A picture recorded for another reply is not this one's.
    client
        .send_image(&chat, &keyed(png, "m-2", since_a_minute(&[&id])), None)
        .await
        .expect("sent anew");
    assert_eq!(fake.sent(&creds.client_id).len(), 3);
}
