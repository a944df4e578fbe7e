//! Search (issue 11, "Then" item 6), through the inbox page and `GET /api/v1/search`, on the
//! database the run uses (SQLite; PostgreSQL with TEST_DATABASE_URL): any form of a word finds
//! the message, in any case; the matched words are marked and the text around them escaped; a
//! hit opens the conversation at its message; edits and managers' replies are found; another
//! company's messages never are; and bad queries get a clear answer, never a 500.

use crate::api::api;
use crate::messages::{company_named, eventually};
use crate::telegram::{conversation_with, reply};
use crate::ui_errors::url_escape as esc;
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Session, TestApp};
use serde_json::Value;

/// Signs up a company with a Telegram bot and waits until the bot is polled; returns the
/// session and the bot's token.
async fn company(app: &TestApp, name: &str, email: &str, bot: &str) -> (Session, String) {
    let (s, token, _) = company_named(app, name, email, bot).await;
    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    (s, token)
}

async fn api_search(app: &TestApp, key: &str, query: &str) -> (u16, Value) {
    let r = api(app, &format!("/api/v1/search?{query}"), Some(key)).await;
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The conversation ids of the search rows on an inbox page.
fn rows(page: &str) -> Vec<String> {
    page.split("<li id=\"conv-")
        .skip(1)
        .map(|r| r.split('"').next().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn any_form_of_a_word_finds_the_message_marked_and_opens_the_thread_at_it() {
    let app = TestApp::new().await;
    let (s, token) = company(&app, "Рога и Копыта", "anna@horns.test", "horns_bot").await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5201, "Ольга Смирнова", "Сколько стоит доставка в Москву?"),
    );
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5202, "Пётр", "<script>alert(1)</script> Жду ДОСТАВКОЙ"),
    );
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5203, "Иван", "Есть ли гарантия на диван?"),
    );
    let olga = conversation_with(&s, "Сколько стоит доставка").await;
    conversation_with(&s, "Есть ли гарантия").await;
    let petr = conversation_with(&s, "Жду ДОСТАВКОЙ").await;

    for q in ["доставку", "ДОСТАВКА", "Доставкой"] {
        let page = s.html(&format!("/app/inbox?q={}", esc(q))).await;
        let found = rows(&page);
        assert_eq!(
            found.len(),
            2,
            "{q} finds both deliveries, not the sofa: {page}"
        );
        assert!(found.contains(&olga) && found.contains(&petr), "{q}");
        assert!(page.contains("<mark>доставка</mark>"), "{q}: {page}");
        assert!(page.contains("<mark>ДОСТАВКОЙ</mark>"), "{q}: {page}");
        // The customer's text is shown as text.
        assert!(!page.contains("<script>alert"), "{q}: {page}");
        assert!(
            page.contains("&#60;script&#62;alert(1)&#60;"),
            "{q}: {page}"
        );
    }
    // As one types: the beginning of the last word.
    let page = s.html(&format!("/app/inbox?q={}", esc("стоит дос"))).await;
    assert_eq!(rows(&page), vec![olga.clone()], "{page}");
    // A name finds the customer's conversation.
    let page = s.html(&format!("/app/inbox?q={}", esc("ольга"))).await;
    assert_eq!(rows(&page), vec![olga.clone()], "{page}");

    // The hit's link opens the conversation at that message, which the page marks as the
    // fragment's target.
    let page = s.html(&format!("/app/inbox?q={}", esc("москва"))).await;
    let href = page
        .split(&format!(
            "<li id=\"conv-{olga}\" class=\"conv hit\"><a href=\""
        ))
        .nth(1)
        .and_then(|x| x.split('"').next())
        .expect("the hit's link")
        .replace("&#38;", "&");
    let (path, fragment) = href.split_once('#').expect("a #msg- fragment");
    let message = fragment.strip_prefix("msg-").expect("the message's anchor");
    assert!(path.starts_with(&format!("/app/inbox/{olga}?")), "{href}");
    assert!(path.contains(&format!("m={message}")), "{href}");
    let thread = s.html(path).await;
    assert!(
        thread.contains(&format!("<div id=\"msg-{message}\"")),
        "{thread}"
    );
    assert!(thread.contains("Сколько стоит доставка в Москву?"));

    // A manager's reply and a customer's edit are searchable at once.
    reply(&s, &olga, "Курьер приедет завтра").await;
    let page = s.html(&format!("/app/inbox?q={}", esc("курьером"))).await;
    assert_eq!(
        rows(&page),
        vec![olga.clone()],
        "the reply is indexed: {page}"
    );
    let ivan_msg = app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5204, "Иван", "Нужен самовывоз"),
    );
    conversation_with(&s, "Нужен самовывоз").await;
    app.telegram
        .customer_edits(&token, 5204, ivan_msg, "Нужна примерка");
    eventually("the edit is found and the old text is not", || async {
        let now = s.html(&format!("/app/inbox?q={}", esc("примерку"))).await;
        let old = s.html(&format!("/app/inbox?q={}", esc("самовывоз"))).await;
        rows(&now).len() == 1 && rows(&old).is_empty()
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn the_api_answers_hits_with_offsets_and_refuses_bad_queries_clearly() {
    let app = TestApp::new().await;
    let (s, token) = company(&app, "Рога и Копыта", "anna@horns.test", "horns_bot").await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5301, "Ольга", "Когда будет доставка? «Срочно»"),
    );
    let conv = conversation_with(&s, "Когда будет доставка").await;
    let key = crate::api::create_key(&s, "search").await;

    let (status, body) = api_search(&app, &key, &format!("q={}", esc("доставку"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["words"], serde_json::json!(["доставку"]));
    let hit = &body["hits"][0];
    assert_eq!(hit["conversation_id"], conv.as_str());
    let snippet: Vec<char> = hit["snippet"].as_str().expect("snippet").chars().collect();
    let h = &hit["highlights"][0];
    let (start, end) = (
        h["start"].as_u64().expect("start") as usize,
        h["end"].as_u64().expect("end") as usize,
    );
    assert_eq!(snippet[start..end].iter().collect::<String>(), "доставка");
    let message = hit["message_id"].as_str().expect("message id");
    assert_eq!(
        hit["url"],
        format!("/app/inbox/{conv}?m={message}#msg-{message}").as_str()
    );

    // Empty, only spaces, over-long: 422 naming `q` and what is wrong with it.
    for (query, code) in [
        ("q=".to_string(), "required"),
        ("q=%20%20".to_string(), "required"),
        (format!("q={}", "я".repeat(10_000)), "too_long"),
    ] {
        let (status, body) = api_search(&app, &key, &query).await;
        assert_eq!(status, 422, "{}: {body}", &query[..query.len().min(20)]);
        assert_eq!(body["fields"][0]["field"], "q", "{body}");
        assert_eq!(body["fields"][0]["code"], code, "{body}");
        if code == "too_long" {
            assert_eq!(body["fields"][0]["limit"], 200, "{body}");
        }
    }
    let (status, body) = api_search(&app, &key, "").await;
    assert_eq!(status, 400, "no q: {body}");
    let (status, body) = api_search(&app, &key, "q=x&limit=0").await;
    assert_eq!(status, 422, "{body}");
    // Punctuation only: nothing to search for, said as no words.
    let (status, body) = api_search(&app, &key, &format!("q={}", esc("?!… —"))).await;
    assert_eq!(
        (status, &body["words"]),
        (200, &serde_json::json!([])),
        "{body}"
    );
    // FTS and SQL syntax is text like any other: never an error, the words still found.
    for q in [
        "\"доставка",
        "доставка*",
        "NEAR(доставка)",
        "-доставка",
        "доставка:",
        "'доставка'",
        "доставка OR 1=1; --",
        "{company} : доставка",
        "\"\"\"",
        "*",
        "AND OR NOT",
    ] {
        let (status, body) = api_search(&app, &key, &format!("q={}", esc(q))).await;
        assert_eq!(status, 200, "{q}: {body}");
        // Where «доставка» is the only word, its message is found.
        if body["words"] == serde_json::json!(["доставка"]) {
            assert_eq!(
                body["hits"].as_array().map(Vec::len),
                Some(1),
                "{q}: {body}"
            );
        }
    }
    // The OpenAPI document declares what is refused, so clients (and schemathesis) know.
    let doc: Value = app
        .client()
        .get(app.at("/api/openapi.json"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let op = &doc["paths"]["/api/v1/search"]["get"];
    let params = op["parameters"].as_array().expect("parameters");
    let q = params.iter().find(|p| p["name"] == "q").expect("q");
    assert_eq!(q["required"], true, "{q}");
    assert_eq!(
        (
            &q["schema"]["minLength"],
            &q["schema"]["maxLength"],
            &q["schema"]["pattern"]
        ),
        (&Value::from(1), &Value::from(200), &Value::from("\\S")),
        "{q}"
    );
    for code in ["200", "400", "401", "422"] {
        assert!(op["responses"][code].is_object(), "{code}: {op}");
    }
    // The page says the same things in words.
    let page = s
        .html(&format!("/app/inbox?q={}", esc(&"я".repeat(10_000))))
        .await;
    assert!(page.contains("не больше 200 символов"), "{page}");
    let page = s.html(&format!("/app/inbox?q={}", esc("?!"))).await;
    assert!(page.contains("нет ни букв, ни цифр"), "{page}");
    let page = s
        .html(&format!("/app/inbox?q={}", esc("NEAR \" * : '")))
        .await;
    assert!(page.contains("id=\"search-notice\""), "{page}");
    app.stop().await;
}

#[tokio::test]
async fn a_search_never_finds_another_companys_messages() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = TestApp::new().await;
    let (a, a_token) = company(&app, "Рога и Копыта", "anna@horns.test", "horns_bot").await;
    let (b, b_token) = company(&app, "Другая фирма", "anna@other.test", "other_bot").await;
    let row = app
        .db
        .db
        .query_one(Statement::from_string(
            app.db.db.get_database_backend(),
            "SELECT id FROM companies WHERE name = 'Рога и Копыта'",
        ))
        .await
        .expect("query")
        .expect("company a");
    let a_id: uuid::Uuid = row.try_get("", "id").expect("id");
    app.telegram.customer_writes(
        &a_token,
        CustomerMessage::text(5401, "Ольга", "Доставка в Химки, секрет фирмы А"),
    );
    // Company B's customer writes company A's id as the index spells it, trying to land in A's
    // searches.
    let forged = format!("Доставка {} company {}", a_id.simple(), a_id.simple());
    app.telegram
        .customer_writes(&b_token, CustomerMessage::text(5402, "Борис", &forged));
    let a_conv = conversation_with(&a, "секрет фирмы").await;
    let b_conv = conversation_with(&b, "Доставка").await;
    let a_key = crate::api::create_key(&a, "a").await;
    let b_key = crate::api::create_key(&b, "b").await;
    for q in [
        "доставка",
        "химки",
        "секрет",
        &a_id.simple().to_string(),
        "ольга",
        "борис",
    ] {
        let (_, body) = api_search(&app, &a_key, &format!("q={}", esc(q))).await;
        for h in body["hits"].as_array().expect("hits") {
            assert_eq!(h["conversation_id"], a_conv.as_str(), "A's {q}: {body}");
        }
        let (_, body) = api_search(&app, &b_key, &format!("q={}", esc(q))).await;
        for h in body["hits"].as_array().expect("hits") {
            assert_eq!(h["conversation_id"], b_conv.as_str(), "B's {q}: {body}");
        }
        let page = b.html(&format!("/app/inbox?q={}", esc(q))).await;
        assert!(!page.contains("секрет фирмы"), "B's page for {q}: {page}");
        assert!(!rows(&page).contains(&a_conv), "B's page for {q}");
    }
    let (_, body) = api_search(&app, &a_key, &format!("q={}", esc("доставка"))).await;
    assert_eq!(body["hits"].as_array().map(Vec::len), Some(1), "{body}");
    let (_, body) = api_search(&app, &b_key, &format!("q={}", esc("секрет"))).await;
    assert_eq!(body["hits"], serde_json::json!([]), "{body}");
    app.stop().await;
}

/// In Chromium: the search box finds an old message in a long thread, the hit shows the word
/// marked, and its link opens the thread scrolled to that message (not to the latest) and
/// outlined as the page's target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_opens_the_thread_scrolled_to_its_message_in_a_browser() {
    use crate::browser_inbox::{Window, WAIT};
    use chatter_testkit::Browser;
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let token = app.telegram.create_bot("romashka_shop_bot", "Ромашка");
    let w = Window::open(&app.url, "search", 1280, 800).await;
    w.sign_up_with_bot(&token).await;

    // The word is in the first message; forty more follow it.
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(7001, "Мария", "Какая гарантия на холодильник?"),
    );
    for i in 0..40 {
        app.telegram.customer_writes(
            &token,
            CustomerMessage::text(7001, "Мария", &format!("Ещё вопрос номер {i}")),
        );
    }
    w.goto("/app/inbox").await;
    w.wait_text_in("li.conv", "Ещё вопрос номер 39").await;

    w.goto(&format!("/app/inbox?q={}", esc("гарантию"))).await;
    w.wait_text_in("#search-hits mark", "гарантия").await;
    w.shot("01-hits").await;
    w.click("#search-hits li.conv a").await;
    w.wait_path(|p| p.starts_with("/app/inbox/")).await;
    w.wait_text_in(".msg.in", "Какая гарантия на холодильник?")
        .await;
    w.shot("02-thread-at-the-hit").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = w
            .browser
            .client()
            .execute(
                "var t = document.querySelector('.msg:target'); var box = document.getElementById('thread-messages'); \
                 if (!t || !box) return 'no target'; var a = t.getBoundingClientRect(), b = box.getBoundingClientRect(); \
                 return (a.top >= b.top - 1 && a.bottom <= b.bottom + 1 && box.scrollTop + box.clientHeight < box.scrollHeight - 5) ? 'in view' : 'out of view';",
                vec![],
            )
            .await
            .expect("run the check");
        if seen == "in view" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the found message is {seen}\n{}",
            w.where_am_i().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    w.close().await;
    app.stop().await;
}
