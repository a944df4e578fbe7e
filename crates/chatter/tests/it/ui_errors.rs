//! One error path: whatever a person mistypes or a cut-off link carries, they get the product's
//! own page in their language with the navigation — never the framework's English text — and
//! an empty «all» choice in a filter is no error. The open conversation's row shows no badge.

use crate::messages::{company_with_bot, eventually};
use chatter_fakes::CustomerMessage;
use chatter_testkit::TestApp;

fn kind(r: &reqwest::Response) -> String {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn every_refusal_is_a_page_in_the_users_language_with_the_navigation() {
    let app = TestApp::new().await;
    let (s, _, source) = company_with_bot(&app).await;
    // «Все источники» sends an empty source: it means all, with search and «Мои» too.
    for path in [
        "/app/inbox?source=&status=open&only=&q=",
        "/app/inbox?source=&only=mine&q=%D0%B4%D0%BE%D1%81%D1%82%D0%B0%D0%B2%D0%BA%D0%B0",
        &format!("/app/inbox?source={source}&status=all"),
        "/app/crm/settings?source=",
    ] {
        let r = s.get(path).await;
        assert!(
            r.status() == 200 || r.status() == 303,
            "{path}: {}",
            r.status()
        );
    }
    let nav = "class=\"side\"";
    let cases: [(&str, u16, &str); 6] = [
        ("/app/inbox/not-a-uuid", 400, "Неверный адрес или запрос"),
        ("/app/inbox?source=oops", 400, "Неверный адрес или запрос"),
        ("/app/no-such-page", 404, "Такой страницы нет"),
        (
            "/app/inbox/0190a0a0-0000-7000-8000-000000000000",
            404,
            "Не найдено",
        ),
        (
            "/app/crm/settings?source=oops",
            400,
            "Неверный адрес или запрос",
        ),
        ("/no-such-page", 404, "Такой страницы нет"),
    ];
    for (path, status, text) in cases {
        let r = s.get(path).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert!(kind(&r).starts_with("text/html"), "{path}: {}", kind(&r));
        let body = r.text().await.expect("body");
        assert!(body.contains(text), "{path}: {body}");
        assert!(body.contains(nav), "{path}: the navigation is there");
        assert!(!body.contains("Failed to deserialize") && !body.contains("Invalid URL"));
    }
    // A method the address does not take, and a form that cannot be read.
    let r = s.post_from("/app", "/app/inbox", &[]).await;
    assert_eq!(r.status(), 405);
    assert!(kind(&r).starts_with("text/html"));
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("Этот адрес не принимает"));
    let r = s
        .post_from("/app/team", "/app/team/invite", &[("role", "manager")])
        .await;
    assert!(r.status().is_client_error());
    assert!(kind(&r).starts_with("text/html"), "{}", kind(&r));
    assert!(!r
        .text()
        .await
        .expect("body")
        .contains("Failed to deserialize"));

    // In English for a person who chose English.
    let r = s
        .post_from(
            "/app/profile",
            "/app/profile",
            &[("name", "Анна"), ("locale", "en")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let r = s.get("/app/inbox/not-a-uuid").await;
    let body = r.text().await.expect("body");
    assert!(body.contains("Bad address or request"), "{body}");
    assert!(!body.contains("Неверный"), "{body}");

    // Anonymous visitors get the page too; the API gets its JSON error.
    let anon = app.client();
    let r = anon.get(app.at("/no-such-page")).send().await.expect("GET");
    assert_eq!(r.status(), 404);
    assert!(kind(&r).starts_with("text/html"));
    let r = anon
        .get(app.at("/api/v1/no-such-thing"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 404);
    assert!(kind(&r).contains("json"), "{}", kind(&r));
    let v: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(v["error"]["code"], "not_found", "{v}");
    app.stop().await;
}

#[tokio::test]
async fn the_open_conversations_row_has_no_unread_badge() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    for text in ["Здравствуйте", "Есть доставка?", "Ответьте, пожалуйста"]
    {
        app.telegram
            .customer_writes(&token, CustomerMessage::text(5001, "Иван", text));
    }
    eventually("three unread messages", || async {
        s.html("/app/inbox").await.contains("class=\"badge\">3<")
    })
    .await;
    let inbox = s.html("/app/inbox").await;
    let conv = inbox
        .split("<li id=\"conv-")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .expect("a conversation row")
        .to_string();
    let page = s.html(&format!("/app/inbox/{conv}")).await;
    let row = page
        .split(&format!("<li id=\"conv-{conv}\""))
        .nth(1)
        .and_then(|x| x.split("</li>").next())
        .expect("its own row");
    assert!(!row.contains("class=\"badge\""), "{row}");
    assert!(!row.contains(" unread"), "{row}");
    assert!(!s.html("/app/inbox").await.contains("class=\"badge\""));
    app.stop().await;
}

/// A reply to a website visitor when the API source has no outgoing webhook: it fails at once,
/// says why in the conversation (in Russian) with the link to the setting; once the webhook
/// points at the website, «Повторить» delivers it there.
#[tokio::test]
async fn a_reply_that_cannot_be_delivered_says_why_and_links_to_the_fix() {
    use crate::api_source::{company_with_api_source, message_body, now_secs, post_signed};
    let app = TestApp::new().await;
    let (s, id, secret) = company_with_api_source(&app).await;
    // Its page is one click from the sources list, and reloading after creating it is no 405.
    let list = s.html("/app/sources").await;
    assert!(
        list.contains(&format!("href=\"/app/api-sources/{id}\"")),
        "{list}"
    );
    let r = s.get("/app/api-sources").await;
    assert_eq!(r.status(), 303);
    let http = reqwest::Client::new();
    let body = message_body("m-1", "visitor-1", "Есть диван в наличии?");
    let r = post_signed(&http, &app, &id, &secret, now_secs(&app), &body, None).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let inbox = s.html("/app/inbox").await;
    let conv = inbox
        .split("<li id=\"conv-")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .expect("a conversation row")
        .to_string();
    let page = format!("/app/inbox/{conv}");
    let r = s
        .post_from(&page, &format!("{page}/reply"), &[("text", "Да, есть")])
        .await;
    assert_eq!(r.status(), 303);
    eventually("the reply fails with its reason", || async {
        s.html(&page).await.contains("data-status=\"failed\"")
    })
    .await;
    let thread = s.html(&page).await;
    let at = thread
        .find("class=\"msg-error\"")
        .expect("the reason is shown");
    let block = &thread[at..at + thread[at..].find("</div>").expect("end")];
    assert!(
        block.contains("не задан адрес исходящего вебхука"),
        "{block}"
    );
    let fix = format!("href=\"/app/api-sources/{id}#webhook\"");
    assert!(block.contains(&fix), "{block}");
    // The provider's own (English) words stay in the tooltip, out of the visible text.
    let visible = &block[block.find('>').expect("tag end")..];
    assert!(!visible.contains("no outgoing webhook"), "{visible}");

    // Set the webhook to the company's website and retry: the site gets the answer.
    let site = chatter_fakes::website::FakeWebsite::start()
        .await
        .expect("website");
    site.set_secret(&secret);
    let source_page = format!("/app/api-sources/{id}");
    let r = s
        .post_from(
            &source_page,
            &format!("{source_page}/webhook"),
            &[("webhook_url", &site.webhook_url())],
        )
        .await;
    assert_eq!(r.status(), 303);
    let msg = thread
        .split("/retry\"")
        .next()
        .and_then(|x| x.rsplit("/messages/").next())
        .expect("the retry form")
        .to_string();
    let r = s
        .post_from(&page, &format!("{page}/messages/{msg}/retry"), &[])
        .await;
    assert_eq!(r.status(), 303);
    eventually("the website receives the answer", || async {
        site.received()
            .iter()
            .any(|r| r.direction() == Some("out") && r.text() == Some("Да, есть"))
    })
    .await;
    eventually("the reply shows as sent", || async {
        s.html(&page).await.contains("data-status=\"sent\"")
    })
    .await;
    assert_eq!(site.refused(), 0, "every delivery was signed right");
    app.stop().await;
}

#[tokio::test]
async fn search_ignores_case_in_cyrillic_on_both_databases() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5101, "Ольга Смирнова", "Доставка в Химки возможна?"),
    );
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5102, "Пётр", "Сколько стоит?"),
    );
    eventually("both arrive", || async {
        s.html("/app/inbox").await.matches("<li id=\"conv-").count() == 2
    })
    .await;
    for (q, who) in [
        ("ольга", "Ольга Смирнова"),
        ("ОЛЬГА", "Ольга Смирнова"),
        ("доставка", "Ольга Смирнова"),
        ("химки", "Ольга Смирнова"),
        ("сколько", "Пётр"),
    ] {
        let page = s.html(&format!("/app/inbox?q={}", url_escape(q))).await;
        assert_eq!(page.matches("<li id=\"conv-").count(), 1, "{q}");
        assert!(page.contains(who), "{q} finds {who}");
    }
    app.stop().await;
}

pub(crate) fn url_escape(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Every form that destroys or cuts off something asks first (`data-confirm`, which the page's
/// script turns into a confirmation), and the question is translated.
#[tokio::test]
async fn every_destructive_form_asks_for_confirmation() {
    let app = TestApp::new().await;
    let (s, _, source) = company_with_bot(&app).await;
    let r = s
        .post_from(
            "/app/settings",
            "/app/settings/api-keys",
            &[("name", "CRM")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = s
        .post_from(
            "/app/team",
            "/app/team/invite",
            &[("email", "boris@example.ru"), ("role", "manager")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let destructive = [
        "/revoke",
        "/remove",
        "/delete",
        "/disable",
        "/disconnect",
        "/rotate",
    ];
    let mut checked = 0;
    for page in [
        "/app/settings".to_string(),
        "/app/team".to_string(),
        format!("/app/sources/{source}"),
        "/app/crm/rules".to_string(),
    ] {
        let html = s.html(&page).await;
        for form in html.split("<form").skip(1) {
            let tag = &form[..form.find('>').expect("tag end")];
            let Some(action) = tag
                .split("action=\"")
                .nth(1)
                .and_then(|a| a.split('"').next())
            else {
                continue;
            };
            if destructive.iter().any(|d| action.ends_with(d)) {
                checked += 1;
                let question = tag
                    .split("data-confirm=\"")
                    .nth(1)
                    .and_then(|a| a.split('"').next())
                    .unwrap_or_else(|| panic!("{page}: {action} does not ask first"));
                assert!(
                    question
                        .chars()
                        .any(|c| ('а'..='я').contains(&c.to_lowercase().next().unwrap_or(c))),
                    "{page}: {action} asks {question:?}"
                );
            }
        }
    }
    assert!(checked >= 3, "only {checked} destructive forms were found");
    app.stop().await;
}

/// Adding a source starts with a chooser; each kind has its own page, so a refused form shows
/// its errors at the top of a short page instead of 2,700 px down a long one.
#[tokio::test]
async fn each_kind_is_added_on_its_own_page_with_the_errors_in_view() {
    let app = TestApp::new().await;
    let s = chatter_testkit::Session::sign_up(
        &app,
        "Ромашка",
        "Анна",
        "anna@example.ru",
        "correct horse battery",
    )
    .await;
    let chooser = s.html("/app/sources/new").await;
    assert!(chooser.contains("id=\"kind-chooser\""), "{chooser}");
    for k in [1, 3, 4, 5, 7, 8] {
        assert!(
            chooser.contains(&format!("href=\"/app/sources/new?kind={k}\"")),
            "{k}"
        );
    }
    assert!(chooser.contains("href=\"/app/sources/new/api\""));
    assert!(
        !chooser.contains("<form method=\"post\" action=\"/app/sources\""),
        "no forms yet"
    );
    let vk = s.html("/app/sources/new?kind=3").await;
    assert_eq!(vk.matches("action=\"/app/sources\"").count(), 1, "one form");
    assert!(vk.contains("name=\"vk_token\"") && !vk.contains("name=\"token\""));
    let r = s.get("/app/sources/new?kind=6").await;
    assert_eq!(r.status(), 303, "the API source has its own page");
    let r = s
        .post_from(
            "/app/sources/new?kind=3",
            "/app/sources",
            &[
                ("kind", "3"),
                ("vk_token", ""),
                ("vk_group_id", "x"),
                ("name", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("body");
    assert_eq!(
        page.matches("action=\"/app/sources\"").count(),
        1,
        "the same single form"
    );
    let alert = page.find("id=\"form-errors\"").expect("the summary");
    let form = page.find("action=\"/app/sources\"").expect("the form");
    assert!(alert < form, "the summary comes before the form");
    assert!(
        page.contains("data-field=\"vk_token\""),
        "the field is marked"
    );
    app.stop().await;
}

/// amoCRM diagnostics agree with themselves: with an item stopped after amoCRM stopped
/// answering, the checks say delivery fails, the item says its attempts are over (never "we
/// retry on our own"), and the raw English error is tucked under «Подробности».
#[tokio::test]
async fn crm_diagnostics_do_not_contradict_themselves() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    let account = app.amo.create_account("horns", "Рога и Копыта CRM");
    let callback = crate::crm::consent(&app, &s, account).await;
    assert_eq!(s.get(&callback).await.status(), 303);
    app.telegram
        .customer_writes(&token, CustomerMessage::text(5301, "Пётр", "Нужен счёт"));
    eventually("the deal is made", || async {
        !app.amo.leads(account).is_empty()
    })
    .await;
    let healthy = s.html("/app/crm/health").await;
    assert!(healthy.contains("Обращения доходят до amoCRM"), "{healthy}");
    let db = &app.db.db;
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT company_id, id AS conversation_id FROM conversations".to_string(),
        ))
        .await
        .expect("query")
        .expect("a conversation");
    let company: uuid::Uuid = row.try_get("", "company_id").expect("company");
    let conv: uuid::Uuid = row.try_get("", "conversation_id").expect("conversation");
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO crm_outbox (company_id, conversation_id, message_id, kind, payload, status, attempts, last_error, next_at, created_at) \
         VALUES ($1, $2, NULL, 'message', '{}', 'failed', 8, 'error sending request for url (http://127.0.0.1:9/api/v4/leads/complex): Connection refused', 0, 0)",
        vec![company.into(), conv.into()],
    ))
    .await
    .expect("a stopped item");
    let page = s.html("/app/crm/health").await;
    assert!(
        page.contains("Часть обращений не дошла до amoCRM"),
        "{page}"
    );
    assert!(page.contains("попытки исчерпаны"), "{page}");
    assert!(
        !page.contains("повторим сами"),
        "a stopped item is not retried on its own: {page}"
    );
    let raw = page
        .find("Connection refused")
        .expect("the raw error is kept");
    let details = page[..raw].rfind("<details").expect("under details");
    assert!(page[details..raw].contains("Подробности"));
    app.stop().await;
}

#[tokio::test]
async fn a_message_without_text_is_previewed_in_words_not_codes() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            photo: Some(crate::web_security::PNG.to_vec()),
            ..CustomerMessage::text(5401, "Ольга", "")
        },
    );
    eventually("the photo arrives", || async {
        s.html("/app/inbox").await.contains("<li id=\"conv-")
    })
    .await;
    let list = s.html("/app/inbox").await;
    assert!(list.contains("📷 Фото"), "{list}");
    assert!(!list.contains("[photo]"), "{list}");
    app.stop().await;
}

/// The dashboard's figures on a known data set (both databases): three customers, two answered
/// after 5 and 25 minutes, one waiting.
#[tokio::test]
async fn the_dashboard_shows_the_teams_figures() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let (s, token, _) = company_with_bot(&app).await;
    let empty = s.html("/app").await;
    assert!(empty.contains("id=\"chart-empty\""), "{empty}");
    let minute = 60_000;
    crate::reports::three_customers_two_answered(&app, &s, &token, 5500).await;
    let dash = s.html("/app").await;
    let figure = |id: &str| {
        let at = dash
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("{id}: {dash}"));
        let rest = &dash[at..];
        rest[rest.find("<strong>").expect("value") + 8..rest.find("</strong>").expect("end")]
            .to_string()
    };
    assert_eq!(figure("fig-open"), "3");
    assert_eq!(figure("fig-waiting"), "1", "Вера waits");
    assert_eq!(figure("fig-new"), "3 / 3");
    assert_eq!(
        figure("fig-first-response"),
        "15 мин",
        "the median of 5 and 25 minutes"
    );
    assert!(dash.contains("id=\"response-by-source\""));
    assert!(
        dash.contains("<td>Анна</td><td>15 мин</td><td>2</td>"),
        "{dash}"
    );
    let chart = &dash[dash.find("id=\"volume-chart\"").expect("the chart")..];
    assert_eq!(
        chart[..chart.find("</svg>").expect("svg end")]
            .matches("<polyline")
            .count(),
        1
    );
    // The same figures through the API.
    let key = crate::api::create_key(&s, "reports").await;
    let v: serde_json::Value = reqwest::Client::new()
        .get(app.at("/api/v1/dashboard"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(v["open"], 3, "{v}");
    assert_eq!(v["waiting"], 1, "{v}");
    assert_eq!(v["first_response"]["median_ms"], 15 * minute, "{v}");
    assert_eq!(v["first_response"]["answered"], 2, "{v}");
    assert_eq!(
        v["series"][0]["per_day"].as_array().map(Vec::len),
        Some(30),
        "{v}"
    );
    app.stop().await;
}
