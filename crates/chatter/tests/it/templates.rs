//! Reply templates (issue 14, item 4): the company's templates through the API with every
//! refusal (nothing saved), members' own templates seen by their owner alone, a template
//! rendered for a real conversation with a fake Telegram customer (values and fallbacks, never
//! braces), a template's file sent with the reply, and the reply box's `/` list driven by the
//! keyboard in Chromium at desktop width and at 360 px.

use crate::api::create_key;
use crate::browser_inbox::{Window, WAIT};
use crate::messages::{company_with_bot, count, location};
use crate::team::join_new;
use crate::telegram::{conversation_with, within};
use chatter_fakes::CustomerMessage;
use chatter_testkit::{csrf_of, Browser, Session, TestApp};
use fantoccini::key::Key;
use serde_json::{json, Value};

/// An API request with the key; the status and the JSON body (Null when there is none).
async fn call(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.client().request(method, app.at(path)).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("API request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The (field, code, limit) of a 422 answer.
fn fields(body: &Value) -> Vec<(String, String, Option<u64>)> {
    body["error"]["fields"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    (
                        f["field"].as_str().unwrap_or_default().to_owned(),
                        f["code"].as_str().unwrap_or_default().to_owned(),
                        f["limit"].as_u64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn templates(app: &TestApp) -> i64 {
    count(app, "SELECT count(*) FROM reply_templates").await
}

#[tokio::test]
async fn the_api_keeps_company_templates_and_refuses_bad_ones_saving_nothing() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(
        &app,
        "Ромашка",
        "Анна",
        "anna@romashka.test",
        "ромашка-пароль-42",
    )
    .await;
    let key = create_key(&owner, "templates").await;
    let (post, put, get) = (
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::GET,
    );
    let body = "Здравствуйте, {client_name|клиент}! Доставим завтра. {{код}}";
    let (st, t) = call(
        &app,
        &key,
        post.clone(),
        "/api/v1/templates",
        Some(json!({"category": " Доставка ", "title": "Сроки", "body": body})),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    assert_eq!(t["category"], "Доставка", "trimmed");
    assert_eq!(t["personal"], false);
    assert!(t["file"].is_null());
    let id = t["id"].as_str().expect("id").to_owned();

    // Every refusal names its field and code; nothing is saved.
    let long_title = "я".repeat(101);
    let long_body = "б".repeat(4001);
    let cases: Vec<(Value, &str, &str, Option<u64>)> = vec![
        (
            json!({"title": "Т", "body": "Привет, {client_name"}),
            "body",
            "template_unclosed",
            Some(9),
        ),
        (
            json!({"title": "Т", "body": "Привет, {clent_name}!"}),
            "body",
            "template_unknown_var",
            Some(9),
        ),
        (
            json!({"title": "Т", "body": "ок }"}),
            "body",
            "template_stray",
            Some(4),
        ),
        (
            json!({"title": "Т", "body": "Текст \u{202e}наоборот"}),
            "body",
            "bidi_chars",
            None,
        ),
        (
            json!({"title": "  ", "body": "Текст"}),
            "title",
            "required",
            None,
        ),
        (
            json!({"title": "Т", "body": "   "}),
            "body",
            "required",
            None,
        ),
        (
            json!({"title": long_title, "body": "Текст"}),
            "title",
            "too_long",
            Some(100),
        ),
        (
            json!({"title": "Т", "body": long_body}),
            "body",
            "too_long",
            Some(4000),
        ),
        (
            json!({"title": "Т", "category": "к".repeat(61), "body": "Текст"}),
            "category",
            "too_long",
            Some(60),
        ),
        (
            json!({"title": "Т", "body": "Текст", "file": {"name": "a.pdf", "data_base64": "!!!"}}),
            "file",
            "file_base64",
            None,
        ),
        (
            json!({"title": "Т", "body": "Текст", "file": {"name": "setup.exe", "data_base64": "TVqQAA=="}}),
            "file",
            "file_executable",
            None,
        ),
    ];
    for (b, field, code, limit) in cases {
        let (st, e) = call(
            &app,
            &key,
            post.clone(),
            "/api/v1/templates",
            Some(b.clone()),
        )
        .await;
        assert_eq!(st, 422, "{b} → {e}");
        assert!(
            fields(&e).contains(&(field.to_owned(), code.to_owned(), limit)),
            "{b}: want {field}/{code}/{limit:?}, got {e}"
        );
        let (st, e) = call(
            &app,
            &key,
            put.clone(),
            &format!("/api/v1/templates/{id}"),
            Some(b.clone()),
        )
        .await;
        assert_eq!(st, 422, "PUT {b} → {e}");
    }
    assert_eq!(templates(&app).await, 1, "no refused template was saved");
    let (_, same) = call(
        &app,
        &key,
        get.clone(),
        &format!("/api/v1/templates/{id}"),
        None,
    )
    .await;
    assert_eq!(same["body"], body, "no refused change was saved");

    // Replaced with a file, found by a search, listed by category; then deleted.
    let pdf = "JVBERi0xLjQKJcTl8uXr"; // %PDF-1.4 …
    let (st, t) = call(
        &app,
        &key,
        put.clone(),
        &format!("/api/v1/templates/{id}"),
        Some(json!({"category": "Доставка", "title": "Сроки доставки", "body": "До {deal_id|завтра}", "file": {"name": "Прайс.pdf", "mime_type": "application/pdf", "data_base64": pdf}})),
    )
    .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["file"]["name"], "Прайс.pdf");
    assert_eq!(t["file"]["mime_type"], "application/pdf");
    let (_, b) = call(
        &app,
        &key,
        post.clone(),
        "/api/v1/templates",
        Some(json!({"category": "Оплата", "title": "Реквизиты", "body": "Счёт пришлём на почту"})),
    )
    .await;
    let (_, a) = call(
        &app,
        &key,
        post.clone(),
        "/api/v1/templates",
        Some(json!({"title": "Без категории", "body": "Спасибо!"})),
    )
    .await;
    let (_, all) = call(&app, &key, get.clone(), "/api/v1/templates", None).await;
    let titles: Vec<&str> = all
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["title"].as_str())
        .collect();
    assert_eq!(
        titles,
        ["Сроки доставки", "Реквизиты", "Без категории"],
        "by category, uncategorised last"
    );
    let (_, found) = call(
        &app,
        &key,
        get.clone(),
        "/api/v1/templates?q=%D0%A1%D0%A7%D0%81%D0%A2",
        None,
    )
    .await;
    assert_eq!(
        found.as_array().map(Vec::len),
        Some(1),
        "«СЧЁТ» finds the text in any case: {found}"
    );
    let (st, _) = call(&app, &key, put, &format!("/api/v1/templates/{id}"), Some(json!({"category": "Доставка", "title": "Сроки доставки", "body": "До завтра", "remove_file": true}))).await;
    assert_eq!(st, 200);
    let (_, t) = call(
        &app,
        &key,
        get.clone(),
        &format!("/api/v1/templates/{id}"),
        None,
    )
    .await;
    assert!(t["file"].is_null(), "the file is taken away: {t}");
    for x in [
        &id,
        b["id"].as_str().expect("id"),
        a["id"].as_str().expect("id"),
    ] {
        let (st, _) = call(
            &app,
            &key,
            reqwest::Method::DELETE,
            &format!("/api/v1/templates/{x}"),
            None,
        )
        .await;
        assert_eq!(st, 204);
    }
    let (st, _) = call(&app, &key, get, &format!("/api/v1/templates/{id}"), None).await;
    assert_eq!(st, 404);
    assert_eq!(templates(&app).await, 0);
    let audited = count(
        &app,
        "SELECT count(*) FROM audit_log WHERE action LIKE 'template.%'",
    )
    .await;
    assert_eq!(
        audited,
        3 + 2 + 3,
        "create ×3, update ×2, delete ×3 are audited"
    );

    // The audit page names them in Russian.
    let page = owner.html("/app/audit").await;
    assert!(
        page.contains("Создан шаблон ответа"),
        "audit names the action"
    );
}

#[tokio::test]
async fn personal_templates_are_seen_by_their_owner_alone() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(
        &app,
        "Ромашка",
        "Анна",
        "anna@romashka.test",
        "ромашка-пароль-42",
    )
    .await;
    let manager = join_new(&app, &owner, "boris@romashka.test", "Борис", "manager").await;
    let key = create_key(&owner, "templates").await;
    let new = "/app/automation/templates/new";
    let create = "/app/automation/templates/create";

    let r = owner
        .post_from(
            new,
            create,
            &[
                ("scope", "personal"),
                ("category", "Моё"),
                ("title", "Анны личный"),
                ("body", "Это Анна, {manager_name}"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let annas = location(&r);
    let r = manager
        .post_from(
            new,
            create,
            &[
                ("scope", "personal"),
                ("title", "Бориса личный"),
                ("body", "Это Борис"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let boris = location(&r);
    let r = owner
        .post_from(
            new,
            create,
            &[
                ("scope", "company"),
                ("title", "Общий"),
                ("body", "Для всех"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    // A manager does not keep the company's templates.
    let r = manager
        .post_from(
            new,
            create,
            &[
                ("scope", "company"),
                ("title", "Захват"),
                ("body", "Для всех"),
            ],
        )
        .await;
    assert_eq!(r.status(), 403);
    // A refused form comes back with the field's message in Russian, nothing saved.
    let r = manager
        .post_from(
            new,
            create,
            &[
                ("scope", "personal"),
                ("title", "Ошибка"),
                ("body", "Здравствуйте, {имя}"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("page");
    assert!(
        page.contains("Неизвестная переменная в позиции 15"),
        "{page}"
    );
    assert_eq!(templates(&app).await, 3);

    let owners_list = owner.html("/app/automation/templates").await;
    let managers_list = manager.html("/app/automation/templates").await;
    assert!(owners_list.contains("Анны личный") && owners_list.contains("Общий"));
    assert!(
        !owners_list.contains("Бориса личный"),
        "Boris's own is his alone"
    );
    assert!(managers_list.contains("Бориса личный") && managers_list.contains("Общий"));
    assert!(
        !managers_list.contains("Анны личный"),
        "Anna's own is hers alone"
    );
    assert_eq!(manager.get(&annas).await.status(), 404);
    assert_eq!(owner.get(&boris).await.status(), 404);
    let boris_id = boris
        .rsplit('/')
        .next()
        .expect("id")
        .split('?')
        .next()
        .expect("id")
        .to_owned();
    let r = owner
        .post_from(
            "/app/automation/templates",
            &format!("/app/automation/templates/{boris_id}/delete"),
            &[],
        )
        .await;
    assert_eq!(
        r.status(),
        404,
        "the owner cannot delete Boris's own either"
    );
    let (_, api) = call(&app, &key, reqwest::Method::GET, "/api/v1/templates", None).await;
    let titles: Vec<&str> = api
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["title"].as_str())
        .collect();
    assert_eq!(titles, ["Общий"], "a key sees the company's templates only");
    let (st, _) = call(
        &app,
        &key,
        reqwest::Method::GET,
        &format!("/api/v1/templates/{boris_id}"),
        None,
    )
    .await;
    assert_eq!(st, 404);
    assert_eq!(templates(&app).await, 3);
}

#[tokio::test]
async fn a_template_is_rendered_for_a_real_conversation_and_its_file_goes_with_the_reply() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    let key = create_key(&s, "templates").await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5101, "Мария", "Сколько стоит доставка?"),
    );
    let conv = conversation_with(&s, "Сколько стоит доставка?").await;
    let pdf = "JVBERi0xLjQKJcTl8uXr";
    let (st, t) = call(
        &app,
        &key,
        reqwest::Method::POST,
        "/api/v1/templates",
        Some(json!({
            "category": "Доставка",
            "title": "Цена доставки",
            "body": "{client_name|Клиент}, здравствуйте! Это {company_name}, {source_name}. Менеджер: {manager_name|дежурный}. Сделка: {deal_id|ещё не заведена}.{deal_id}",
            "file": {"name": "Прайс.pdf", "mime_type": "application/pdf", "data_base64": pdf}
        })),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    let tid = t["id"].as_str().expect("id").to_owned();

    // Through the API (a key acts for no member, and nobody is assigned: the fallback).
    let (st, r) = call(
        &app,
        &key,
        reqwest::Method::GET,
        &format!("/api/v1/conversations/{conv}/templates/{tid}/render"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let text = r["text"].as_str().expect("text");
    let src = source_name(&app, &key).await;
    assert_eq!(
        text,
        format!("Мария, здравствуйте! Это Рога и Копыта, {src}. Менеджер: дежурный. Сделка: ещё не заведена.")
    );
    assert!(!text.contains('{') && !text.contains('}'));
    assert_eq!(r["file"]["name"], "Прайс.pdf");

    // In the reply box's list (JSON) the manager is the member answering.
    let offered: Value = s
        .http
        .get(format!(
            "{}/app/inbox/{conv}/templates?q=%D1%86%D0%B5%D0%BD%D0%B0",
            s.base
        ))
        .header("accept", "application/json")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let first = &offered[0];
    assert_eq!(first["title"], "Цена доставки");
    let rendered = first["text"].as_str().expect("text").to_owned();
    assert!(rendered.contains("Менеджер: Анна."), "{rendered}");
    assert_eq!(first["file"], "Прайс.pdf");

    // Without the script: the templates page, «Вставить», the conversation with the draft.
    let page = s.html(&format!("/app/inbox/{conv}/templates")).await;
    assert!(
        page.contains(&format!("/app/inbox/{conv}?template={tid}")),
        "{page}"
    );
    let thread = s.html(&format!("/app/inbox/{conv}?template={tid}")).await;
    assert!(
        thread.contains("Мария, здравствуйте!"),
        "the draft is the rendered text"
    );
    assert!(thread.contains(&format!(
        "name=\"template_id\" id=\"template-id\" value=\"{tid}\""
    )));
    assert!(thread.contains("📎 Прайс.pdf"));

    // Sent: the customer gets the document with the edited text as its caption.
    let csrf = csrf_of(&thread);
    let edited = format!("{rendered} Прайс во вложении.");
    let r = s
        .post_with(
            &format!("/app/inbox/{conv}/reply"),
            &csrf,
            &[("text", &edited), ("template_id", &tid)],
        )
        .await;
    assert_eq!(r.status(), 303);
    within(30, "the customer gets the template's file", || async {
        app.telegram
            .sent(&token)
            .iter()
            .any(|m| m.kind == "document")
    })
    .await;
    let sent = app.telegram.sent(&token);
    let doc = sent
        .iter()
        .find(|m| m.kind == "document")
        .expect("document");
    assert_eq!(doc.caption.as_deref(), Some(edited.as_str()));
    assert_eq!(
        doc.file.as_ref().map(|f| f.name.as_str()),
        Some("Прайс.pdf")
    );

    // Through the API too: the template's file goes with the text.
    let (st, m) = call(
        &app,
        &key,
        reqwest::Method::POST,
        &format!("/api/v1/conversations/{conv}/messages"),
        Some(json!({"text": "Прайс ещё раз", "template_id": tid})),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    within(30, "the customer gets the file again", || async {
        app.telegram
            .sent(&token)
            .iter()
            .filter(|m| m.kind == "document" && m.caption.as_deref() == Some("Прайс ещё раз"))
            .count()
            == 1
    })
    .await;

    // A template from another company's conversation is not found.
    let (st, _) = call(
        &app,
        &key,
        reqwest::Method::GET,
        &format!(
            "/api/v1/conversations/{conv}/templates/00000000-0000-0000-0000-000000000000/render"
        ),
        None,
    )
    .await;
    assert_eq!(st, 404);
}

/// The name of the company's only source, as the API lists it.
async fn source_name(app: &TestApp, key: &str) -> String {
    let (_, s) = call(app, key, reqwest::Method::GET, "/api/v1/sources", None).await;
    s[0]["name"].as_str().expect("a source").to_owned()
}

#[tokio::test]
async fn the_edit_page_previews_with_the_latest_conversation_and_keeps_an_uploaded_file() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    let page = s.html("/app/automation/templates/new").await;
    assert!(
        page.contains("С примерами значений"),
        "no conversation yet: samples"
    );
    app.telegram
        .customer_writes(&token, CustomerMessage::text(5202, "Олег", "Добрый день"));
    conversation_with(&s, "Добрый день").await;
    let csrf = csrf_of(&page);
    let form = reqwest::multipart::Form::new()
        .text("_csrf", csrf)
        .text("scope", "company")
        .text("category", "Приветствия")
        .text("title", "Привет")
        .text("body", "Здравствуйте, {client_name|клиент}!")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"%PDF-1.4 price".to_vec())
                .file_name("Прайс.pdf")
                .mime_str("application/pdf")
                .expect("mime"),
        );
    let r = s
        .http
        .post(format!("{}/app/automation/templates/create", s.base))
        .multipart(form)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    let edit = location(&r);
    let page = s.html(&edit).await;
    assert!(page.contains("Со значениями последнего диалога"), "{page}");
    assert!(
        page.contains("Здравствуйте, Олег!"),
        "the preview uses the latest conversation"
    );
    assert!(page.contains("📎 Прайс.pdf"));
    // «Предпросмотр» shows the typed text rendered, saving nothing.
    let id = edit
        .rsplit('/')
        .next()
        .expect("id")
        .split('?')
        .next()
        .expect("id")
        .to_owned();
    let r = s
        .post_with(
            &format!("/app/automation/templates/{id}/save"),
            &csrf_of(&page),
            &[
                ("title", "Привет"),
                ("body", "Добрый день, {client_name}"),
                ("action", "preview"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("page").contains("Добрый день, Олег"));
    assert!(
        s.html(&edit)
            .await
            .contains("Здравствуйте, {client_name|клиент}!"),
        "not saved"
    );
}

/// The browser part: `/`, a filter, ArrowDown, Enter; the box holds the rendered text; Enter
/// sends; the customer gets it without braces. Esc closes the list and keeps the focus.
async fn slash_insert(size: &str, width: u32, height: u32) {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let token = app.telegram.create_bot("romashka_shop_bot", "Ромашка");
    let w = Window::open(&app.url, &format!("{size}-templates"), width, height).await;
    w.sign_up_with_bot(&token).await;

    for (category, title, body) in [
        (
            "Доставка",
            "Доставка: сроки",
            "{client_name|Клиент}, доставим завтра до обеда. Ваш менеджер {manager_name}.",
        ),
        (
            "Доставка",
            "Доставка: цена",
            "{client_name|Клиент}, доставка стоит 300 ₽. Сделка {deal_id|будет заведена}.",
        ),
        ("Оплата", "Оплата картой", "Оплатить можно картой."),
    ] {
        w.goto("/app/automation/templates/new").await;
        w.fill("#template-category", category).await;
        w.fill("#template-title", title).await;
        w.fill("#template-body", body).await;
        w.click("#template-save").await;
        w.wait_path(|p| {
            p.starts_with("/app/automation/templates/")
                && !p.ends_with("/new")
                && !p.ends_with("/create")
        })
        .await;
    }
    w.goto("/app/automation/templates").await;
    w.shot("01-templates").await;
    w.assert_no_sideways_scroll("the templates page").await;

    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6_021_550_348, "Мария", "Сколько стоит доставка?"),
    );
    w.goto("/app/inbox").await;
    w.wait_text_in("li.conv", "Сколько стоит доставка?").await;
    w.click("li.conv a").await;
    w.wait_path(|p| p.starts_with("/app/inbox/") && p.len() > "/app/inbox/".len())
        .await;
    w.wait_text_in(".msg.in", "Сколько стоит доставка?").await;
    w.mark_page().await;

    let reply = w
        .browser
        .wait_for("#reply-text", WAIT)
        .await
        .expect("the reply box");
    reply.click().await.expect("focus the reply box");
    // Esc closes the list and the focus stays in the text.
    reply.send_keys("/").await.expect("type /");
    w.wait_text_in("#tpl-list li", "Оплата").await;
    reply
        .send_keys(&Key::Escape.to_string())
        .await
        .expect("Esc");
    let state = w
        .browser
        .client()
        .execute("return [document.getElementById('tpl-list').hidden, document.activeElement && document.activeElement.id];", vec![])
        .await
        .expect("read the list");
    assert_eq!(
        state,
        json!([true, "reply-text"]),
        "Esc closes the list, the focus stays"
    );

    // `/дост` filters to the two delivery templates; ArrowDown picks the second; Enter inserts.
    reply.send_keys("дост").await.expect("type the filter");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let items = w.texts("#tpl-list li.tpl-item").await;
        if items.len() == 2 && items.iter().all(|t| t.contains("Доставка")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the list is not filtered: {items:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    w.shot("02-list").await;
    w.assert_no_sideways_scroll("the open list").await;
    reply
        .send_keys(&Key::Down.to_string())
        .await
        .expect("ArrowDown");
    let on = w.texts("#tpl-list li.on").await;
    assert!(
        on.first().is_some_and(|t| t.contains("Доставка: цена")),
        "ArrowDown moves to the second: {on:?}"
    );
    reply
        .send_keys(&Key::Enter.to_string())
        .await
        .expect("Enter");
    let want = "Мария, доставка стоит 300 ₽. Сделка будет заведена.";
    let typed = reply
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default();
    assert_eq!(typed, want, "the box holds the rendered text");
    assert!(
        w.texts(".msg.out").await.is_empty(),
        "Enter inserted, it did not send"
    );
    w.shot("03-inserted").await;

    reply.send_keys(" Оформим?").await.expect("edit");
    reply
        .send_keys(&Key::Enter.to_string())
        .await
        .expect("send");
    let sent = format!("{want} Оформим?");
    w.wait_text_in(".msg.out[data-status=sent]", "Оформим?")
        .await;
    w.assert_same_page("inserting and sending").await;
    let texts: Vec<String> = app
        .telegram
        .sent(&token)
        .into_iter()
        .filter_map(|m| m.text)
        .collect();
    assert_eq!(
        texts,
        [sent],
        "the customer receives the text without braces"
    );
    w.shot("04-sent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_inserts_a_template_with_the_keyboard_at_desktop_width() {
    slash_insert("desktop", 1280, 800).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_inserts_a_template_with_the_keyboard_at_360_px() {
    slash_insert("phone", 360, 740).await;
}

/// The variables synced with amoCRM: the customer's phone and e-mail as edited on the card (and
/// sent to the amoCRM contact), and the deal's pipeline, stage and responsible exactly as the
/// customer card shows them; without values, the fallbacks.
#[tokio::test]
async fn the_amocrm_variables_are_what_the_customer_card_shows() {
    let app = TestApp::new().await;
    let (s, token, _, _account) = crate::crm_sync::connected(&app).await;
    let key = create_key(&s, "templates").await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5201, "Олег", "Нужен счёт на двоих"),
    );
    let conv = conversation_with(&s, "Нужен счёт на двоих").await;
    let (st, t) = call(
        &app,
        &key,
        reqwest::Method::POST,
        "/api/v1/templates",
        Some(json!({
            "title": "Сделка",
            "body": "{client_phone|без телефона}; {client_email|без почты}; {deal_pipeline|?} / {deal_stage|?}; {deal_responsible|никто}"
        })),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    let tid = t["id"].as_str().expect("id").to_owned();
    let render = || async {
        let (st, r) = call(
            &app,
            &key,
            reqwest::Method::GET,
            &format!("/api/v1/conversations/{conv}/templates/{tid}/render"),
            None,
        )
        .await;
        assert_eq!(st, 200, "{r}");
        r["text"].as_str().expect("text").to_owned()
    };
    within(30, "the deal is in amoCRM", || async {
        count(
            &app,
            "SELECT count(*) FROM crm_conversations WHERE deal_id IS NOT NULL",
        )
        .await
            == 1
    })
    .await;

    // The card's contact: phone and e-mail set there.
    let (st, list) = call(&app, &key, reqwest::Method::GET, "/api/v1/contacts", None).await;
    assert_eq!(st, 200, "{list}");
    let items = list
        .as_array()
        .cloned()
        .or_else(|| list["items"].as_array().cloned());
    let contact = items.expect("contacts")[0]["id"]
        .as_str()
        .expect("contact id")
        .to_owned();
    let (st, c) = call(
        &app,
        &key,
        reqwest::Method::PATCH,
        &format!("/api/v1/contacts/{contact}"),
        Some(json!({"phone": "8 999 111-22-33", "email": "oleg@example.ru"})),
    )
    .await;
    assert_eq!(st, 200, "{c}");
    let (st, card) = call(
        &app,
        &key,
        reqwest::Method::GET,
        &format!("/api/v1/contacts/{contact}"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{card}");
    let deal = &card["conversations"][0]["deal"];
    let pipeline = deal["pipeline"]
        .as_str()
        .expect("the card names the pipeline");
    let stage = deal["stage"].as_str().expect("the card names the stage");
    let responsible = deal["responsible"].as_str().unwrap_or("никто");
    assert_eq!(
        render().await,
        format!("+79991112233; oleg@example.ru; {pipeline} / {stage}; {responsible}")
    );
}
