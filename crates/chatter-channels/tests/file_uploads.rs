//! Files from the reply box through the VK, Max and Avito clients against their fakes: what
//! goes as a photo and what as a document, the providers' refusals of an upload (an unknown
//! upload URL, a token or image id nobody uploaded, a file that is not what it says) and how
//! each is classified, Max's `attachment.not.ready` waited out, and Avito refusing anything but
//! a picture before it calls.

use std::time::Duration;

use chatter_channels::avito::AvitoClient;
use chatter_channels::max::MaxClient;
use chatter_channels::vk::VkClient;
use chatter_channels::{ChannelError, FileToSend};
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
    let client = MaxClient::new(http(), &fake.base_url(), &token);

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
