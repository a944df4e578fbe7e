//! Files from the reply box, as a manager and an integrator send them: a photo by the 📎 button
//! and a PDF by drag-and-drop to a Telegram bot's customer (desktop) and to a WhatsApp customer
//! (360 px phone), each checked byte for byte at the fake provider and shown in the thread; the
//! same through `POST /api/v1/conversations/{id}/attachments`; what is refused before anything
//! is stored (too large for the kind, a program, an empty file, a kind that cannot send files);
//! and a provider's 429 retried by the send job until the file is delivered. VK, Max and Avito
//! customers get a photo and a document through each provider's uploads (Max's
//! `attachment.not.ready` waited out); Avito, which takes only pictures, has a PDF refused
//! before it is stored, with the reason in the reply box (360 px phone).

use crate::api::create_key;
use crate::avito::company_with_avito;
use crate::browser_inbox::{Window, WAIT};
use crate::max::company_with_max_bot;
use crate::messages::{company_with_bot, count, PW};
use crate::sms::company_with_sms;
use crate::telegram::{conversation_with, thread_shows, within};
use crate::vk::company_with_community;
use crate::whatsapp::company_with_whatsapp;
use chatter_fakes::avito::BuyerMessage;
use chatter_fakes::{CustomerMessage, Failure, VkCustomerMessage, VkFailure};
use chatter_testkit::{Browser, Session, TestApp};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

const WA_CUSTOMER: &str = "79161234567";

/// A real 1×1 PNG (so it is a raster picture by its bytes).
fn png() -> Vec<u8> {
    let mut b = vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f,
        0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64,
        0x60, 0xf8, 0x5f, 0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    // Bytes after IEND keep it a PNG and make each test's picture its own.
    b.extend_from_slice(b"chatter");
    b
}

/// A small PDF.
fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n% \xd0\x9f\xd1\x80\xd0\xb0\xd0\xb9\xd1\x81\ntrailer << /Root 1 0 R >>\n%%EOF\n"
        .to_vec()
}

fn file_form(name: &str, mime: &str, bytes: Vec<u8>, text: Option<&str>) -> Form {
    let part = Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(mime)
        .expect("a MIME type");
    let form = Form::new().part("file", part);
    match text {
        Some(t) => form.text("text", t.to_owned()),
        None => form,
    }
}

async fn upload(app: &TestApp, key: &str, conv: &str, form: Form) -> (u16, Value) {
    let r = app
        .client()
        .post(app.at(&format!("/api/v1/conversations/{conv}/attachments")))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = r.status().as_u16();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// The status of our message `id` as the API reads it.
async fn status_of(app: &TestApp, key: &str, conv: &str, id: &str) -> String {
    let ms: Value = app
        .client()
        .get(app.at(&format!("/api/v1/conversations/{conv}/messages")))
        .bearer_auth(key)
        .send()
        .await
        .expect("messages")
        .json()
        .await
        .expect("json");
    ms.as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"] == id)
        .and_then(|m| m["status"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The conversation whose customer wrote `text` (waiting until it shows) and a new API key of
/// the company `s` is signed in to: what every test here starts from.
async fn conversation_and_key(s: &Session, text: &str) -> (String, String) {
    let conv = conversation_with(s, text).await;
    let key = create_key(s, "site").await;
    (conv, key)
}

/// Sends `form` as a reply through the API, checks it was taken, and returns the message id.
async fn sent_ok(app: &TestApp, key: &str, conv: &str, form: Form) -> String {
    let (st, m) = upload(app, key, conv, form).await;
    assert_eq!(st, 201, "{m}");
    m["id"].as_str().expect("id").to_owned()
}

async fn messages(app: &TestApp) -> i64 {
    count(app, "SELECT count(*) FROM messages").await
}

/// The file the bot sent last as `kind` (photo | document) in chat `chat`.
fn telegram_file(
    app: &TestApp,
    token: &str,
    kind: &str,
) -> Option<(chatter_fakes::SentFile, Option<String>)> {
    app.telegram
        .sent(token)
        .into_iter()
        .rev()
        .find(|m| m.kind == kind)
        .and_then(|m| m.file.map(|f| (f, m.caption)))
}

/// The medium WhatsApp's customer got last as `kind`, with its caption and filename.
fn whatsapp_file(
    app: &TestApp,
    pnid: &str,
    kind: &str,
) -> Option<(chatter_fakes::WaMedia, Option<String>, Option<String>)> {
    let m = app
        .whatsapp
        .sent(pnid)
        .into_iter()
        .rev()
        .find(|m| m.kind == kind)?;
    let media = app.whatsapp.media(m.media.as_deref()?)?;
    Some((media, m.caption, m.filename))
}

#[tokio::test]
async fn the_api_sends_files_to_telegram_and_refuses_what_cannot_go() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5001, "Иван", "Пришлите фото и прайс"),
    );
    let (conv, key) = conversation_and_key(&s, "Пришлите фото и прайс").await;

    let (st, m) = upload(
        &app,
        &key,
        &conv,
        file_form("фото.png", "image/png", png(), Some("Вот фото")),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["attachments"][0]["kind"], "image");
    assert_eq!(m["attachments"][0]["file_name"], "фото.png");
    assert_eq!(m["attachments"][0]["stored"], true);
    assert_eq!(m["text"], "Вот фото");
    let photo_id = m["id"].as_str().expect("id").to_owned();
    within(20, "the customer gets the photo", || async {
        telegram_file(&app, &token, "photo").is_some()
    })
    .await;
    let (f, caption) = telegram_file(&app, &token, "photo").expect("photo");
    assert_eq!(f.bytes, png(), "the exact bytes");
    assert_eq!(f.name, "фото.png");
    assert_eq!(f.mime, "image/png");
    assert_eq!(caption.as_deref(), Some("Вот фото"));

    let (st, m) = upload(
        &app,
        &key,
        &conv,
        file_form("Прайс.pdf", "application/pdf", pdf(), None),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["attachments"][0]["kind"], "document");
    within(20, "the customer gets the price list", || async {
        telegram_file(&app, &token, "document").is_some()
    })
    .await;
    let (f, _) = telegram_file(&app, &token, "document").expect("document");
    assert_eq!((f.name.as_str(), f.size), ("Прайс.pdf", pdf().len()));
    assert_eq!(f.bytes, pdf());
    assert_eq!(f.mime, "application/pdf");
    within(20, "the photo's message is sent", || async {
        status_of(&app, &key, &conv, &photo_id).await == "sent"
    })
    .await;
    let page = thread_shows(&s, &conv, "Прайс.pdf").await;
    assert!(page.contains("Вот фото"), "the caption is in the thread");

    // Refused before anything is stored, each with a message naming the field.
    let before = messages(&app).await;
    let sent_before = app.telegram.sent(&token).len();
    let refusals: Vec<(&str, Form, u16, &str)> = vec![
        (
            "a program by its name",
            file_form(
                "setup.exe",
                "application/octet-stream",
                b"MZ\x90\0".to_vec(),
                None,
            ),
            422,
            "file_executable",
        ),
        (
            "a program named like a picture",
            file_form(
                "photo.jpg",
                "image/jpeg",
                b"\x7fELF\x02\x01\x01".to_vec(),
                None,
            ),
            422,
            "file_executable",
        ),
        (
            "a script",
            file_form("install.sh", "text/plain", b"echo hi\n".to_vec(), None),
            422,
            "file_executable",
        ),
        (
            "an empty file",
            file_form("empty.pdf", "application/pdf", Vec::new(), None),
            422,
            "file_empty",
        ),
        (
            "over Telegram's 50 MB",
            file_form(
                "big.pdf",
                "application/pdf",
                vec![b'x'; 50 * 1024 * 1024 + 1],
                None,
            ),
            413,
            "file_too_large",
        ),
        (
            "no file at all",
            Form::new().text("text", "без файла"),
            422,
            "file_required",
        ),
    ];
    for (what, form, want, code) in refusals {
        let (st, body) = upload(&app, &key, &conv, form).await;
        assert_eq!(st, want, "{what}: {body}");
        assert_eq!(body["fields"][0]["field"], "file", "{what}: {body}");
        assert_eq!(body["fields"][0]["code"], code, "{what}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("`file`"),
            "{what}: the message names the field: {body}"
        );
        if code == "file_too_large" {
            assert_eq!(body["fields"][0]["limit"], 50, "names the limit: {body}");
            assert!(body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("50 MB"));
        }
    }
    // Not multipart at all.
    let r = app
        .client()
        .post(app.at(&format!("/api/v1/conversations/{conv}/attachments")))
        .bearer_auth(&key)
        .json(&serde_json::json!({"file": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 415);
    assert_eq!(messages(&app).await, before, "nothing was stored");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        app.telegram.sent(&token).len(),
        sent_before,
        "nothing was sent"
    );

    // The upload route is in the OpenAPI document with its statuses.
    let doc: Value = app
        .client()
        .get(app.at("/api/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let op = &doc["paths"]["/api/v1/conversations/{id}/attachments"]["post"];
    for status in ["201", "400", "401", "404", "413", "415", "422"] {
        assert!(op["responses"][status].is_object(), "{status}: {op}");
    }
    assert!(op["requestBody"]["content"]["multipart/form-data"].is_object());
}

#[tokio::test]
async fn the_api_sends_files_to_whatsapp_and_sms_says_it_cannot() {
    let app = TestApp::new().await;
    let (s, number, _) = company_with_whatsapp(&app).await;
    let pnid = number.phone_number_id.clone();
    app.whatsapp
        .customer_writes(&pnid, WA_CUSTOMER, "Ирина", "Скиньте фото и договор");
    let (conv, key) = conversation_and_key(&s, "Скиньте фото и договор").await;

    let (st, m) = upload(
        &app,
        &key,
        &conv,
        file_form("кухня.png", "image/png", png(), Some("Так выглядит")),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    let id = m["id"].as_str().expect("id").to_owned();
    within(20, "the customer gets the picture", || async {
        whatsapp_file(&app, &pnid, "image").is_some()
    })
    .await;
    let (media, caption, _) = whatsapp_file(&app, &pnid, "image").expect("image");
    assert_eq!(media.bytes, png());
    assert_eq!(media.file_name.as_deref(), Some("кухня.png"));
    assert_eq!(media.mime, "image/png");
    assert_eq!(caption.as_deref(), Some("Так выглядит"));

    let (st, m) = upload(
        &app,
        &key,
        &conv,
        file_form("Договор.pdf", "application/pdf", pdf(), Some("Договор")),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    within(20, "the customer gets the document", || async {
        whatsapp_file(&app, &pnid, "document").is_some()
    })
    .await;
    let (media, caption, filename) = whatsapp_file(&app, &pnid, "document").expect("document");
    assert_eq!((media.bytes, media.size), (pdf(), pdf().len()));
    assert_eq!(filename.as_deref(), Some("Договор.pdf"));
    assert_eq!(caption.as_deref(), Some("Договор"));
    within(20, "WhatsApp reports the picture delivered", || async {
        matches!(
            status_of(&app, &key, &conv, &id).await.as_str(),
            "delivered" | "read"
        )
    })
    .await;

    // An SMS conversation: the kind cannot send files, so nothing is read or stored.
    let app2 = TestApp::new().await;
    let (s2, sms_key, _) = company_with_sms(&app2).await;
    app2.sms.customer_sends(
        &sms_key,
        "+7 (926) 555-44-33",
        "+79990000000",
        "Пришлите счёт",
    );
    let conv2 = conversation_with(&s2, "Пришлите счёт").await;
    let page = thread_shows(&s2, &conv2, "id=\"attach-unsupported\"").await;
    assert!(
        page.contains("id=\"attach-btn\" disabled"),
        "the 📎 button is disabled with the reason: {page}"
    );
    assert!(!page.contains("id=\"file-form\""), "no file form for SMS");
    let key2 = create_key(&s2, "site").await;
    let before = messages(&app2).await;
    let (st, body) = upload(
        &app2,
        &key2,
        &conv2,
        file_form("Счёт.pdf", "application/pdf", pdf(), None),
    )
    .await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "file");
    assert_eq!(body["fields"][0]["code"], "file_kind_unsupported");
    assert_eq!(messages(&app2).await, before, "nothing was stored");
}

#[tokio::test]
async fn a_file_refused_with_429_is_retried_until_it_goes() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    app.telegram
        .customer_writes(&token, CustomerMessage::text(5002, "Олег", "Жду прайс"));
    let (conv, key) = conversation_and_key(&s, "Жду прайс").await;
    app.telegram
        .fail_next(&token, "sendDocument", Failure::too_many_requests(1), 1);
    let (st, m) = upload(
        &app,
        &key,
        &conv,
        file_form("Прайс.pdf", "application/pdf", pdf(), None),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    let id = m["id"].as_str().expect("id").to_owned();
    within(30, "the file goes after the provider's pause", || async {
        status_of(&app, &key, &conv, &id).await == "sent"
    })
    .await;
    let documents: Vec<_> = app
        .telegram
        .sent(&token)
        .into_iter()
        .filter(|m| m.kind == "document")
        .collect();
    assert_eq!(documents.len(), 1, "sent once");
    let f = documents[0].file.clone().expect("the file");
    assert_eq!((f.name.as_str(), f.bytes), ("Прайс.pdf", pdf()));
    assert!(
        app.telegram
            .calls(&token)
            .iter()
            .filter(|c| *c == "sendDocument")
            .count()
            >= 2,
        "the first try was refused and retried"
    );
}

/// Puts a file into the page's file input, as the 📎 button's dialog does.
const PICK: &str = "var b = new Uint8Array(arguments[0]); var f = new File([b], arguments[1], {type: arguments[2]});
var dt = new DataTransfer(); dt.items.add(f); var i = document.getElementById('file-input');
i.files = dt.files; i.dispatchEvent(new Event('change', {bubbles: true})); return true;";

/// Drops a file on the reply box (a synthetic `drop` with a DataTransfer built in the page).
const DROP: &str = "var b = new Uint8Array(arguments[0]); var f = new File([b], arguments[1], {type: arguments[2]});
var dt = new DataTransfer(); dt.items.add(f); var z = document.getElementById('reply-form');
z.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
z.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true})); return true;";

impl Window {
    async fn script(&self, js: &str, bytes: &[u8], name: &str, mime: &str) {
        let ran = self
            .browser
            .client()
            .execute(
                js,
                vec![
                    serde_json::json!(bytes),
                    serde_json::json!(name),
                    serde_json::json!(mime),
                ],
            )
            .await;
        if let Err(e) = ran {
            panic!("run the script: {e}\n{}", self.where_am_i().await);
        }
    }

    /// Picks a photo with the button, checks the preview, sends it with `caption`; then drops
    /// a PDF and sends it.
    async fn send_photo_and_pdf(&self, caption: &str) {
        self.browser
            .wait_for("#attach-btn", WAIT)
            .await
            .expect("the 📎 button");
        let hidden_form = self
            .browser
            .client()
            .execute(
                "return document.getElementById('file-form').hidden && !document.getElementById('attach-btn').hidden;",
                vec![],
            )
            .await
            .expect("read the form");
        assert_eq!(
            hidden_form,
            Value::Bool(true),
            "the script takes over the file form"
        );
        self.script(PICK, &png(), "фото.png", "image/png").await;
        self.browser
            .wait_for("#attach-preview img#attach-thumb", WAIT)
            .await
            .expect("the picture is previewed");
        self.wait_text_in("#attach-preview", "фото.png").await;
        self.assert_no_sideways_scroll("the reply box with a preview")
            .await;
        self.shot("01-photo-previewed").await;
        self.fill("#reply-text", caption).await;
        self.click("#reply-send").await;
        self.wait_text_in(".msg.out", caption).await;

        self.script(DROP, &pdf(), "price.pdf", "application/pdf")
            .await;
        self.wait_text_in("#attach-preview", "price.pdf").await;
        self.shot("02-pdf-dropped").await;
        self.click("#reply-send").await;
        self.wait_text_in(".msg.out a.file", "price.pdf").await;
    }

    /// Waits until the thread shows an outgoing picture and the PDF, both in a final state.
    async fn wait_both_final(&self, states: &[&str]) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let statuses = self
                .browser
                .client()
                .execute(
                    "var img = document.querySelector('.msg.out img'); var f = Array.prototype.find.call(document.querySelectorAll('.msg.out'), function (m) { return m.textContent.indexOf('price.pdf') >= 0; });
                     return [img ? img.closest('.msg').getAttribute('data-status') : '', f ? f.getAttribute('data-status') : ''];",
                    vec![],
                )
                .await
                .expect("read the thread");
            let both: Vec<String> = statuses
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect();
            if both.len() == 2 && both.iter().all(|s| states.contains(&s.as_str())) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "the files are {both:?}, not {states:?}\n{}",
                    self.where_am_i().await
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_sends_a_photo_and_a_pdf_to_a_telegram_customer_at_desktop_size() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let token = app.telegram.create_bot("romashka_shop_bot", "Ромашка");
    let w = Window::open(&app.url, "desktop-files-telegram", 1280, 800).await;
    w.sign_up_with_bot(&token).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6_021_550_347, "Мария", "Покажите, как выглядит"),
    );
    w.goto("/app/inbox").await;
    w.wait_text_in("li.conv", "Покажите, как выглядит").await;
    w.click("li.conv a").await;
    w.wait_text_in(".msg.in", "Покажите, как выглядит").await;
    w.send_photo_and_pdf("Вот так").await;

    within(20, "the customer gets both files", || async {
        telegram_file(&app, &token, "photo").is_some()
            && telegram_file(&app, &token, "document").is_some()
    })
    .await;
    let (photo, caption) = telegram_file(&app, &token, "photo").expect("photo");
    assert_eq!((photo.name.as_str(), photo.bytes), ("фото.png", png()));
    assert_eq!(caption.as_deref(), Some("Вот так"));
    let (doc, _) = telegram_file(&app, &token, "document").expect("document");
    assert_eq!((doc.name.as_str(), doc.bytes), ("price.pdf", pdf()));
    // Telegram reports no delivery to bots: «sent» is as far as it goes.
    w.wait_both_final(&["sent", "delivered", "read"]).await;
    w.shot("03-both-sent").await;
    w.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_sends_a_photo_and_a_pdf_to_a_whatsapp_customer_at_phone_size() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let (s, number, _) = company_with_whatsapp(&app).await;
    let pnid = number.phone_number_id.clone();
    app.whatsapp
        .customer_writes(&pnid, WA_CUSTOMER, "Ирина", "Пришлите фото и прайс");
    let conv = conversation_with(&s, "Пришлите фото и прайс").await;
    let w = Window::open(&app.url, "phone-files-whatsapp", 360, 740).await;
    w.goto("/sign-in").await;
    w.fill("input[name=email]", "anna@example.ru").await;
    w.fill("input[name=password]", PW).await;
    w.click("#sign-in-submit").await;
    w.wait_path(|p| p.starts_with("/app")).await;
    w.goto(&format!("/app/inbox/{conv}")).await;
    w.wait_text_in(".msg.in", "Пришлите фото и прайс").await;
    w.assert_no_sideways_scroll("the WhatsApp thread at 360 px")
        .await;
    let (btn, send, text) = {
        let rect = |css: &str| {
            format!("var r = document.querySelector('{css}').getBoundingClientRect(); return [r.left, r.right, r.width];")
        };
        let c = w.browser.client();
        (
            c.execute(&rect("#attach-btn"), vec![])
                .await
                .expect("button"),
            c.execute(&rect("#reply-send"), vec![]).await.expect("send"),
            c.execute(&rect("#reply-text"), vec![]).await.expect("text"),
        )
    };
    let right = |v: &Value, i: usize| v[i].as_f64().unwrap_or_default();
    assert!(
        right(&btn, 1) <= 360.0 && right(&send, 1) <= 360.0,
        "{btn} {send}"
    );
    assert!(
        right(&text, 2) >= 150.0,
        "the text box stays usable next to the buttons: {text}"
    );
    w.send_photo_and_pdf("Вот фото").await;

    within(20, "the customer gets both files", || async {
        whatsapp_file(&app, &pnid, "image").is_some()
            && whatsapp_file(&app, &pnid, "document").is_some()
    })
    .await;
    let (image, caption, _) = whatsapp_file(&app, &pnid, "image").expect("image");
    assert_eq!(image.bytes, png());
    assert_eq!(image.file_name.as_deref(), Some("фото.png"));
    assert_eq!(caption.as_deref(), Some("Вот фото"));
    let (doc, _, filename) = whatsapp_file(&app, &pnid, "document").expect("document");
    assert_eq!(doc.bytes, pdf());
    assert_eq!(filename.as_deref(), Some("price.pdf"));
    w.wait_both_final(&["delivered", "read"]).await;
    w.assert_no_sideways_scroll("the thread with files at 360 px")
        .await;
    w.shot("03-both-delivered").await;
    w.close().await;
}

#[tokio::test]
async fn an_api_source_gets_the_file_as_a_link_its_key_downloads() {
    use crate::api_source::{
        company_with_api_source, message_body, now_secs, post_signed, Receiver,
    };
    let app = TestApp::new().await;
    let (s, id, secret) = company_with_api_source(&app).await;
    let rx = Receiver::start(0).await;
    *rx.secret.lock().expect("lock") = secret.clone();
    let page = format!("/app/api-sources/{id}");
    let r = s
        .post_from(
            &page,
            &format!("{page}/webhook"),
            &[("webhook_url", &rx.url)],
        )
        .await;
    assert_eq!(r.status(), 303);
    let http = reqwest::Client::new();
    let body = message_body("m-1", "client-9", "Пришлите договор");
    let r = post_signed(&http, &app, &id, &secret, now_secs(&app), &body, None).await;
    assert_eq!(r.status(), 200);
    let stored: Value = r.json().await.expect("JSON");
    let conv = stored["conversation_id"].as_str().expect("id").to_string();
    let key = create_key(&s, "site").await;

    let (st, m) = upload(
        &app,
        &key,
        &conv,
        file_form("Договор.pdf", "application/pdf", pdf(), Some("Договор")),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    let out = || {
        rx.of_type("message.created")
            .into_iter()
            .map(|g| g.json)
            .find(|j| j["data"]["message"]["direction"] == "out")
    };
    within(20, "the integrator's webhook gets the reply", || async {
        out().is_some()
    })
    .await;
    let ev = out().expect("the reply");
    let att = &ev["data"]["message"]["attachments"][0];
    assert_eq!(att["file_name"], "Договор.pdf");
    assert_eq!(att["size"], pdf().len());
    assert_eq!(ev["data"]["message"]["text"], "Договор");
    let path = att["download_path"].as_str().expect("a download link");
    let r = app
        .client()
        .get(app.at(path))
        .bearer_auth(&key)
        .send()
        .await
        .expect("download");
    assert_eq!(r.status(), 200);
    let disposition = r
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert_eq!(r.bytes().await.expect("bytes").to_vec(), pdf());
    let r = app.client().get(app.at(path)).send().await.expect("get");
    assert_eq!(r.status(), 401, "only with the company's key");
}

/// The file the community sent last as `kind` (photo | doc), with its message's text.
fn vk_file(app: &TestApp, group: i64, kind: &str) -> Option<(chatter_fakes::VkSentFile, String)> {
    app.vk.sent(group).into_iter().rev().find_map(|m| {
        let f = m.attachments.iter().find(|a| a.kind == kind).cloned();
        f.map(|f| (f, m.text))
    })
}

#[tokio::test]
async fn the_api_sends_a_photo_and_a_document_to_a_vk_customer() {
    let app = TestApp::new().await;
    let (s, group, _) = company_with_community(&app).await;
    // VK's long poll starts from the events after it connects, as the real one does.
    within(20, "the community is polled", || async {
        app.vk.calls(group.id).iter().any(|c| c == "a_check")
    })
    .await;
    app.vk.customer_writes(
        group.id,
        VkCustomerMessage::text(612_444_319, "Пришлите фото и счёт"),
    );
    let (conv, key) = conversation_and_key(&s, "Пришлите фото и счёт").await;

    let photo = sent_ok(
        &app,
        &key,
        &conv,
        file_form("фото.png", "image/png", png(), Some("Вот фото")),
    )
    .await;
    within(20, "the customer gets the photo", || async {
        vk_file(&app, group.id, "photo").is_some()
    })
    .await;
    let (f, text) = vk_file(&app, group.id, "photo").expect("photo");
    assert_eq!(
        (f.name.as_str(), f.mime.as_str()),
        ("фото.png", "image/png")
    );
    assert_eq!(f.bytes, png(), "the exact bytes");
    assert_eq!(text, "Вот фото", "the caption goes with the photo");

    // The document's save fails once with VK's internal error: the send job tries again.
    app.vk
        .fail_next(group.id, "docs.save", VkFailure::internal(), 1);
    let doc = sent_ok(
        &app,
        &key,
        &conv,
        file_form("Счёт.pdf", "application/pdf", pdf(), None),
    )
    .await;
    within(30, "the customer gets the document", || async {
        vk_file(&app, group.id, "doc").is_some()
    })
    .await;
    let (f, text) = vk_file(&app, group.id, "doc").expect("doc");
    assert_eq!((f.name.as_str(), f.bytes), ("Счёт.pdf", pdf()));
    assert_eq!(text, "");
    let calls = app.vk.calls(group.id);
    for method in [
        "photos.getMessagesUploadServer",
        "photos.saveMessagesPhoto",
        "docs.getMessagesUploadServer",
    ] {
        assert_eq!(
            calls.iter().filter(|c| *c == method).count(),
            if method.starts_with("docs") { 2 } else { 1 },
            "{method}: {calls:?}"
        );
    }
    assert_eq!(calls.iter().filter(|c| *c == "docs.save").count(), 2);
    let with_files = app
        .vk
        .sent(group.id)
        .iter()
        .filter(|m| !m.attachments.is_empty())
        .count();
    assert_eq!(with_files, 2, "each file went once");
    for id in [&photo, &doc] {
        within(20, "the file's message is sent", || async {
            status_of(&app, &key, &conv, id).await == "sent"
        })
        .await;
    }
    thread_shows(&s, &conv, "Счёт.pdf").await;
}

#[tokio::test]
async fn a_file_whose_answer_was_lost_reaches_the_vk_customer_once() {
    let app = TestApp::new().await;
    let (s, group, _) = company_with_community(&app).await;
    within(20, "the community is polled", || async {
        app.vk.calls(group.id).iter().any(|c| c == "a_check")
    })
    .await;
    app.vk
        .customer_writes(group.id, VkCustomerMessage::text(612_444_321, "Счёт?"));
    let (conv, key) = conversation_and_key(&s, "Счёт?").await;
    // VK takes the send, and the answer never comes back: the job tries again.
    app.vk.lose_answer_next(group.id, "messages.send", 1);
    let id = sent_ok(
        &app,
        &key,
        &conv,
        file_form("Счёт.pdf", "application/pdf", pdf(), Some("Счёт")),
    )
    .await;
    within(30, "the retry is answered", || async {
        status_of(&app, &key, &conv, &id).await == "sent"
    })
    .await;
    let sends = app.vk.calls(group.id);
    assert!(
        sends.iter().filter(|c| *c == "messages.send").count() >= 2,
        "sent twice: {sends:?}"
    );
    let with_files: Vec<_> = app
        .vk
        .sent(group.id)
        .into_iter()
        .filter(|m| !m.attachments.is_empty())
        .collect();
    assert_eq!(with_files.len(), 1, "the customer got it once");
}

#[tokio::test]
async fn a_file_whose_answer_was_lost_reaches_the_max_customer_once() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_max_bot(&app).await;
    app.max.customer_writes(
        &token,
        chatter_fakes::max::CustomerMessage::text(100_503, "Ольга", "Прайс?"),
    );
    let (conv, key) = conversation_and_key(&s, "Прайс?").await;
    app.max.lose_answer_next(&token, 1);
    let id = sent_ok(
        &app,
        &key,
        &conv,
        file_form("Прайс.pdf", "application/pdf", pdf(), Some("Прайс")),
    )
    .await;
    within(30, "the retry finds the message", || async {
        status_of(&app, &key, &conv, &id).await == "sent"
    })
    .await;
    let sent = app.max.sent(&token);
    assert_eq!(sent.len(), 1, "the customer got it once: {sent:?}");
}

/// The file the bot sent last as `kind` (image | file), with its message's text.
fn max_file(
    app: &TestApp,
    token: &str,
    kind: &str,
) -> Option<(chatter_fakes::max::SentFile, String)> {
    app.max.sent(token).into_iter().rev().find_map(|m| {
        let f = m.attachments.iter().find(|a| a.kind == kind).cloned();
        f.map(|f| (f, m.text))
    })
}

#[tokio::test]
async fn the_api_sends_a_photo_and_a_file_to_a_max_customer_once_max_has_them_ready() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_max_bot(&app).await;
    app.max.customer_writes(
        &token,
        chatter_fakes::max::CustomerMessage::text(100_500, "Ольга", "Нужны фото и прайс"),
    );
    let (conv, key) = conversation_and_key(&s, "Нужны фото и прайс").await;

    // Max is still processing the fresh upload the first time the message names it.
    app.max.attachment_not_ready_next(&token, 1);
    let photo = sent_ok(
        &app,
        &key,
        &conv,
        file_form("фото.png", "image/png", png(), Some("Вот фото")),
    )
    .await;
    within(20, "the customer gets the photo", || async {
        max_file(&app, &token, "image").is_some()
    })
    .await;
    let (f, text) = max_file(&app, &token, "image").expect("image");
    assert_eq!(
        (f.name.as_str(), f.mime.as_str()),
        ("фото.png", "image/png")
    );
    assert_eq!(f.bytes, png(), "the exact bytes");
    assert_eq!(text, "Вот фото");

    sent_ok(
        &app,
        &key,
        &conv,
        file_form("Прайс.pdf", "application/pdf", pdf(), Some("Прайс")),
    )
    .await;
    within(20, "the customer gets the file", || async {
        max_file(&app, &token, "file").is_some()
    })
    .await;
    let (f, text) = max_file(&app, &token, "file").expect("file");
    assert_eq!((f.name.as_str(), f.bytes), ("Прайс.pdf", pdf()));
    assert_eq!(text, "Прайс");
    let with_files = app
        .max
        .sent(&token)
        .iter()
        .filter(|m| !m.attachments.is_empty())
        .count();
    assert_eq!(
        with_files, 2,
        "each file went once, the photo after one not-ready answer"
    );
    within(20, "the photo's message is sent", || async {
        status_of(&app, &key, &conv, &photo).await == "sent"
    })
    .await;
}

fn sofa(text: &str) -> BuyerMessage {
    BuyerMessage {
        item_title: "Диван угловой".into(),
        ..BuyerMessage::text(48_112_907, "Николай", 3_402_118_775, text)
    }
}

/// The pictures the account sent, with their message ids.
fn avito_images(app: &TestApp, client_id: &str) -> Vec<chatter_fakes::avito::SentImage> {
    app.avito
        .sent(client_id)
        .into_iter()
        .filter_map(|m| m.image)
        .collect()
}

#[tokio::test]
async fn avito_gets_a_photo_and_a_pdf_is_refused_before_it_is_stored() {
    let app = TestApp::new().await;
    let (s, creds, _) = company_with_avito(&app).await;
    let client = creds.client_id.clone();
    app.avito
        .customer_writes(&client, sofa("Пришлите фото дивана и договор"));
    let (conv, key) = conversation_and_key(&s, "Пришлите фото дивана и договор").await;

    // The reply box says what Avito takes before anything is picked.
    let page = thread_shows(&s, &conv, "id=\"attach-images-only\"").await;
    assert!(
        page.contains("только фотографии JPEG, PNG, GIF, BMP или HEIC до 24 МБ"),
        "{page}"
    );
    assert!(page.contains("accept=\"image/jpeg,image/png,image/gif,image/bmp,image/heic\""));

    let photo = sent_ok(
        &app,
        &key,
        &conv,
        file_form("диван.png", "image/png", png(), Some("Вот он")),
    )
    .await;
    within(20, "the buyer gets the photo and its caption", || async {
        !avito_images(&app, &client).is_empty()
            && app.avito.sent(&client).iter().any(|m| m.text == "Вот он")
    })
    .await;
    let image = avito_images(&app, &client).remove(0);
    assert_eq!(
        (image.name.as_str(), image.mime.as_str()),
        ("диван.png", "image/png")
    );
    assert_eq!(image.bytes, png(), "the exact bytes");
    within(20, "the photo's message is sent", || async {
        status_of(&app, &key, &conv, &photo).await == "sent"
    })
    .await;

    // A HEIC and a BMP go too, known by their bytes whatever their name and declared type say.
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\x08free".to_vec();
    let mut bmp = b"BM\x46\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0".to_vec();
    bmp.extend_from_slice(&[0; 24]);
    for (name, mime, bytes, is) in [
        ("IMG_0001.jpg", "image/jpeg", heic, "image/heic"),
        ("скан", "application/octet-stream", bmp, "image/bmp"),
    ] {
        let id = sent_ok(
            &app,
            &key,
            &conv,
            file_form(name, mime, bytes.clone(), None),
        )
        .await;
        within(20, "the buyer gets the picture", || async {
            avito_images(&app, &client).iter().any(|i| i.bytes == bytes)
        })
        .await;
        let image = avito_images(&app, &client)
            .into_iter()
            .find(|i| i.bytes == bytes)
            .expect("sent");
        assert_eq!(image.mime, is, "{name}: typed by its bytes");
        within(20, "the picture's message is sent", || async {
            status_of(&app, &key, &conv, &id).await == "sent"
        })
        .await;
    }

    // A PDF (named and declared a PNG too), and a picture Avito does not take (WebP), are
    // refused before anything is stored.
    let before = messages(&app).await;
    let sent_before = app.avito.sent(&client).len();
    let webp = b"RIFF\x1a\0\0\0WEBPVP8L\x0d\0\0\0\x2f\0\0\0\x10\x07\x10\x11\x11\x88\x88\xfe\x07\0"
        .to_vec();
    for (name, mime, bytes) in [
        ("Договор.pdf", "application/pdf", pdf()),
        ("Договор.png", "image/png", pdf()),
        ("диван.webp", "image/webp", webp),
    ] {
        let (st, body) = upload(&app, &key, &conv, file_form(name, mime, bytes, None)).await;
        assert_eq!(st, 422, "{name}: {body}");
        assert_eq!(body["fields"][0]["field"], "file", "{body}");
        assert_eq!(body["fields"][0]["code"], "file_images_only", "{body}");
        assert_eq!(body["fields"][0]["limit"], 24, "{body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("24 MB"),
            "the reason names what Avito takes: {body}"
        );
    }
    // The same PDF through the page's file form (no script): the refusal, in Russian, on the
    // thread it was sent from.
    let csrf = chatter_testkit::csrf_of(&page);
    let form = file_form("Договор.pdf", "application/pdf", pdf(), None).text("_csrf", csrf);
    let r = s
        .http
        .post(format!("{}/app/inbox/{conv}/files", s.base))
        .multipart(form)
        .send()
        .await
        .expect("post the file form");
    let shown = r.text().await.expect("page");
    assert!(
        shown.contains(
            "Этот мессенджер принимает только фотографии JPEG, PNG, GIF, BMP или HEIC до 24 МБ"
        ),
        "the reason is shown: {shown}"
    );
    assert_eq!(messages(&app).await, before, "nothing was stored");
    assert_eq!(
        app.avito.sent(&client).len(),
        sent_before,
        "nothing was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_is_told_avito_takes_no_pdf_and_sends_a_photo_at_phone_size() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let (s, creds, _) = company_with_avito(&app).await;
    app.avito
        .customer_writes(&creds.client_id, sofa("Покажите диван поближе"));
    let conv = conversation_with(&s, "Покажите диван поближе").await;
    let w = Window::open(&app.url, "phone-files-avito", 360, 740).await;
    w.goto("/sign-in").await;
    w.fill("input[name=email]", "anna@example.ru").await;
    w.fill("input[name=password]", PW).await;
    w.click("#sign-in-submit").await;
    w.wait_path(|p| p.starts_with("/app")).await;
    w.goto(&format!("/app/inbox/{conv}")).await;
    w.wait_text_in(".msg.in", "Покажите диван поближе").await;
    w.wait_text_in("#attach-images-only", "JPEG, PNG").await;

    w.script(PICK, &pdf(), "price.pdf", "application/pdf").await;
    w.wait_text_in("#attach-error", "только фотографии").await;
    let previewed = w
        .browser
        .client()
        .execute(
            "return !document.getElementById('attach-preview').hidden;",
            vec![],
        )
        .await
        .expect("read the preview");
    assert_eq!(previewed, Value::Bool(false), "the PDF is not attached");
    // A PDF named and typed as a PNG is known by its first bytes, in the page too.
    w.script(PICK, &pdf(), "диван.png", "image/png").await;
    w.wait_text_in("#attach-error", "только фотографии").await;
    let previewed = w
        .browser
        .client()
        .execute(
            "return !document.getElementById('attach-preview').hidden;",
            vec![],
        )
        .await
        .expect("read the preview");
    assert_eq!(
        previewed,
        Value::Bool(false),
        "the disguised PDF is not attached"
    );
    w.assert_no_sideways_scroll("the refusal at 360 px").await;
    w.shot("01-pdf-refused").await;

    w.script(PICK, &png(), "диван.png", "image/png").await;
    w.browser
        .wait_for("#attach-preview img#attach-thumb", WAIT)
        .await
        .expect("the picture is previewed");
    w.fill("#reply-text", "Вот так").await;
    w.click("#reply-send").await;
    w.wait_text_in(".msg.out", "Вот так").await;
    within(20, "the buyer gets the photo", || async {
        !avito_images(&app, &creds.client_id).is_empty()
    })
    .await;
    let image = avito_images(&app, &creds.client_id).remove(0);
    assert_eq!((image.name.as_str(), image.bytes), ("диван.png", png()));
    w.assert_no_sideways_scroll("the thread with the photo at 360 px")
        .await;
    w.shot("02-photo-sent").await;
    w.close().await;
}
