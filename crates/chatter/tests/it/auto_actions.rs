//! Auto-reply actions beyond plain text (issue 14, item 2): a saved reply template with its
//! file (Telegram takes the file; SMS gets the text alone and the firing says why), a template
//! a rule sends refused deletion naming the rule, the dry run showing the rendered text;
//! outside WhatsApp's 24-hour window the rule's approved template instead (an unknown name is
//! refused by WhatsApp with 132001 and the message fails); «notify» by e-mail to the owners
//! and admins, each in their language; the SMS cost and its warning in the editor; and two
//! Chatter companies whose auto-replies answer each other through their API sources, stopped
//! by the per-conversation loop guard.

use crate::api::create_key;
use crate::api_source::{message_body, now_secs, post_signed};
use crate::messages::{company_with_bot, count, eventually};
use crate::telegram::conversation_with;
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Session, TestApp};
use serde_json::{json, Value};

const MINUTE: i64 = 60_000;

async fn call(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = app
        .client()
        .request(method, app.at(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("API request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn rule(app: &TestApp, key: &str, body: Value) -> String {
    let (status, out) = call(
        app,
        key,
        reqwest::Method::POST,
        "/api/v1/auto-replies",
        body,
    )
    .await;
    assert_eq!(status, 201, "{out}");
    out["id"].as_str().expect("id").to_owned()
}

fn refused(body: &Value) -> Vec<(String, String)> {
    body["error"]["fields"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    (
                        f["field"].as_str().unwrap_or_default().to_owned(),
                        f["code"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn checks_done(app: &TestApp, n: i64) {
    eventually(&format!("{n} auto-reply checks ran"), || async {
        count(
            app,
            "SELECT count(*) FROM jobs WHERE kind = 'auto_reply_check' AND status = 'done'",
        )
        .await
            >= n
    })
    .await;
}

/// A company template with a PDF; returns its id.
async fn price_template(app: &TestApp, key: &str) -> String {
    let pdf = "JVBERi0xLjQKJcTl8uXr"; // %PDF-1.4 …
    let (st, t) = call(
        app,
        key,
        reqwest::Method::POST,
        "/api/v1/templates",
        json!({"category": "Продажи", "title": "Прайс", "body": "{client_name|Клиент}, прайс во вложении.",
            "file": {"name": "Прайс.pdf", "mime_type": "application/pdf", "data_base64": pdf}}),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    t["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_rule_sends_a_saved_template_with_its_file_which_cannot_be_deleted_while_used() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    let key = create_key(&s, "auto").await;
    let template = price_template(&app, &key).await;

    // A text and a template at once, or a template of no one's: refused, nothing stored.
    let bad = [
        (
            json!({"type": "reply", "text": "Привет", "template_id": template}),
            ("reply", "auto_reply_text_or_template"),
        ),
        (
            json!({"type": "reply", "template_id": uuid::Uuid::now_v7()}),
            ("template", "auto_template_unknown"),
        ),
    ];
    for (action, (field, code)) in bad {
        let body =
            json!({"name": "Прайс", "trigger": {"type": "first_message"}, "actions": [action]});
        let (st, out) = call(
            &app,
            &key,
            reqwest::Method::POST,
            "/api/v1/auto-replies",
            body,
        )
        .await;
        assert_eq!(st, 422, "{out}");
        assert_eq!(
            refused(&out),
            [(field.to_owned(), code.to_owned())],
            "{out}"
        );
    }
    assert_eq!(count(&app, "SELECT count(*) FROM auto_replies").await, 0);

    let rid = rule(
        &app,
        &key,
        json!({"name": "Прайс новым", "trigger": {"type": "first_message"},
            "actions": [{"type": "reply", "template_id": template}]}),
    )
    .await;
    let (_, got) = call(
        &app,
        &key,
        reqwest::Method::GET,
        &format!("/api/v1/auto-replies/{rid}"),
        Value::Null,
    )
    .await;
    assert_eq!(got["actions"][0]["template_id"], json!(template), "{got}");

    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5001, "Иван", "Добрый день, сколько стоит?"),
    );
    eventually("the template goes with its file", || async {
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
        .expect("the document");
    assert_eq!(
        doc.caption.as_deref(),
        Some("Иван, прайс во вложении."),
        "rendered: {doc:?}"
    );
    let file = doc.file.as_ref().expect("the file");
    assert_eq!(file.name, "Прайс.pdf");
    assert!(file.bytes.starts_with(b"%PDF-1.4"), "{file:?}");

    // The dry run shows what this customer got: the template's text with their name.
    let (st, dry) = call(
        &app,
        &key,
        reqwest::Method::POST,
        &format!("/api/v1/auto-replies/{rid}/dry-run"),
        json!({"days": 7}),
    )
    .await;
    assert_eq!(st, 200, "{dry}");
    assert_eq!(dry["hits"][0]["reply"], "Иван, прайс во вложении.", "{dry}");
    let form = [
        ("name", "Прайс новым"),
        ("enabled", "1"),
        ("trigger", "first_message"),
        ("reply_kind", "template"),
        ("template", template.as_str()),
        ("days", "7"),
        ("dry_run", "1"),
    ];
    let page_path = format!("/app/automation/replies/{rid}");
    let r = s.post_from(&page_path, &page_path, &form).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.expect("page");
    assert!(
        page.contains("Иван, прайс во вложении."),
        "the page's dry run renders it: {page}"
    );
    let edit = s.html(&page_path).await;
    assert!(
        edit.contains(&format!(
            "<option value=\"{template}\" selected>Продажи · Прайс</option>"
        )),
        "the editor shows the chosen template: {edit}"
    );

    // Deleting the template the rule sends is refused, naming the rule, by the API and the page.
    let (st, out) = call(
        &app,
        &key,
        reqwest::Method::DELETE,
        &format!("/api/v1/templates/{template}"),
        Value::Null,
    )
    .await;
    assert_eq!(st, 409, "{out}");
    assert_eq!(out["code"], "in_use", "{out}");
    assert!(
        out["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("«Прайс новым»"),
        "{out}"
    );
    let tpath = format!("/app/automation/templates/{template}");
    let r = s.post_from(&tpath, &format!("{tpath}/delete"), &[]).await;
    assert_eq!(r.status(), 409);
    let page = r.text().await.expect("page");
    assert!(page.contains("Шаблон отправляют автоответы"), "{page}");
    assert!(page.contains("«Прайс новым»"), "{page}");
    assert_eq!(count(&app, "SELECT count(*) FROM reply_templates").await, 1);
    // Once the rule is gone, the template may go.
    let (st, _) = call(
        &app,
        &key,
        reqwest::Method::DELETE,
        &format!("/api/v1/auto-replies/{rid}"),
        Value::Null,
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = call(
        &app,
        &key,
        reqwest::Method::DELETE,
        &format!("/api/v1/templates/{template}"),
        Value::Null,
    )
    .await;
    assert_eq!(st, 204);
    app.stop().await;
}

#[tokio::test]
async fn on_sms_the_templates_text_goes_alone_and_the_firing_says_why() {
    let app = TestApp::new().await;
    let (s, gw, _) = crate::sms::company_with_sms(&app).await;
    let key = create_key(&s, "auto").await;
    let template = price_template(&app, &key).await;
    rule(
        &app,
        &key,
        json!({"name": "Прайс новым", "trigger": {"type": "first_message"},
            "actions": [{"type": "reply", "template_id": template}]}),
    )
    .await;
    app.sms.customer_sends(
        &gw,
        "+7 (926) 555-44-33",
        "+79990001122",
        "Сколько стоит доставка?",
    );
    eventually("the text goes by SMS", || async {
        !app.sms.sent(&gw).is_empty()
    })
    .await;
    let sent = app.sms.sent(&gw);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].text.ends_with(", прайс во вложении."),
        "the text alone: {sent:?}"
    );
    assert!(!sent[0].text.contains('{'), "{sent:?}");
    assert_eq!(
        count(&app, "SELECT count(*) FROM auto_reply_firings WHERE outcome = 'fired' AND reason = 'file_not_sent_kind'").await,
        1
    );
    let conv = conversation_with(&s, "прайс во вложении").await;
    let thread = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(
        thread.contains(
            "Автоответ «Прайс новым» отправлен (без файла шаблона: этот канал не принимает файлы)"
        ),
        "{thread}"
    );
    app.stop().await;
}

#[tokio::test]
async fn outside_whatsapps_window_the_rules_approved_template_goes_instead() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    clock.set(real);
    let (s, number, _) = crate::whatsapp::company_with_whatsapp(&app).await;
    let phone = number.phone_number_id.clone();
    app.whatsapp.add_template(
        &phone,
        "order_update",
        "ru",
        "UTILITY",
        "APPROVED",
        "Здравствуйте, {{1}}! Менеджер свяжется с вами сегодня.",
    );
    let key = create_key(&s, "auto").await;
    let day = 24 * 60;
    let wa = |name: &str| {
        json!({"name": "Через сутки", "trigger": {"type": "no_answer", "minutes": day + 60},
            "actions": [{"type": "reply", "text": "Мы на связи!",
                "whatsapp_template": {"name": name, "language": "ru", "params": ["{client_name|клиент}"]}}]})
    };
    // A malformed template name is refused field by field.
    let (st, out) = call(
        &app,
        &key,
        reqwest::Method::POST,
        "/api/v1/auto-replies",
        wa("Order Update"),
    )
    .await;
    assert_eq!(st, 422);
    assert_eq!(
        refused(&out),
        [("wa_template".to_owned(), "auto_wa_name".to_owned())]
    );
    let rid = rule(&app, &key, wa("order_update")).await;

    app.whatsapp
        .customer_writes(&phone, "79161234567", "Ирина", "Заказ 1042 готов?");
    checks_done(&app, 1).await;
    clock.advance((day + 61) * MINUTE);
    eventually("the approved template goes", || async {
        app.whatsapp
            .sent(&phone)
            .iter()
            .any(|m| m.kind == "template")
    })
    .await;
    let sent = app.whatsapp.sent(&phone);
    assert_eq!(sent.len(), 1, "only the template: {sent:?}");
    assert_eq!(sent[0].template.as_deref(), Some("order_update"));
    assert_eq!(sent[0].template_params, ["Ирина"]);
    assert_eq!(
        sent[0].text.as_deref(),
        Some("Здравствуйте, Ирина! Менеджер свяжется с вами сегодня.")
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM auto_reply_firings WHERE outcome = 'fired' AND reason = 'whatsapp_template'").await,
        1
    );
    let conv = conversation_with(&s, "order_update").await;
    let thread = s.html(&format!("/app/inbox/{conv}")).await;
    assert!(
        thread.contains("шаблоном WhatsApp: окно в 24 часа закрыто"),
        "{thread}"
    );

    // A name WhatsApp does not know: it refuses with 132001, and the message fails.
    let (st, out) = call(
        &app,
        &key,
        reqwest::Method::PUT,
        &format!("/api/v1/auto-replies/{rid}"),
        wa("no_such_template"),
    )
    .await;
    assert_eq!(st, 200, "{out}");
    app.whatsapp
        .customer_writes(&phone, "79035550011", "Олег", "Где мой заказ 77?");
    checks_done(&app, 2).await;
    clock.advance((day + 61) * MINUTE);
    eventually("the unknown template fails", || async {
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'failed'",
        )
        .await
            == 1
    })
    .await;
    assert_eq!(
        app.whatsapp
            .sent(&phone)
            .iter()
            .filter(|m| m.kind == "template")
            .count(),
        1,
        "nothing more reached a customer"
    );
    app.stop().await;
}

#[tokio::test]
async fn notify_by_email_reaches_the_owners_and_admins_in_their_language() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    let admin = crate::team::join_new(&app, &s, "boris@example.ru", "Boris", "admin").await;
    let r = admin
        .post_from(
            "/app/profile",
            "/app/profile",
            &[("name", "Boris"), ("locale", "en")],
        )
        .await;
    assert_eq!(r.status(), 303);
    crate::team::join_new(&app, &s, "vera@example.ru", "Вера", "manager").await;
    let key = create_key(&s, "auto").await;
    rule(
        &app,
        &key,
        json!({"name": "Срочно", "trigger": {"type": "keywords"}, "conditions": {"keywords": ["срочно"]},
            "actions": [{"type": "notify", "email": true}]}),
    )
    .await;
    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5001, "Иван", "Срочно перезвоните!"),
    );
    let to = |who: &str| {
        app.smtp
            .messages()
            .into_iter()
            .find(|m| m.to.iter().any(|t| t == who) && m.body.contains("/app/inbox/"))
    };
    eventually("both mails arrive", || async {
        to("anna@example.ru").is_some() && to("boris@example.ru").is_some()
    })
    .await;
    let conv = conversation_with(&s, "Срочно перезвоните").await;
    let anna = to("anna@example.ru").expect("the owner's mail");
    assert!(
        anna.subject.contains("автоответ «Срочно»"),
        "{}",
        anna.subject
    );
    assert!(
        anna.body.contains("сработал автоответ «Срочно»"),
        "{}",
        anna.body
    );
    assert!(anna.body.contains("Срочно перезвоните!"), "{}", anna.body);
    assert!(
        anna.body.contains(&format!("/app/inbox/{conv}")),
        "{}",
        anna.body
    );
    let boris = to("boris@example.ru").expect("the admin's mail");
    assert!(
        boris.body.contains("the auto-reply «Срочно» fired"),
        "in English: {}",
        boris.body
    );
    assert!(
        boris.body.contains(&format!("/app/inbox/{conv}")),
        "{}",
        boris.body
    );
    assert!(to("vera@example.ru").is_none(), "a manager is not mailed");
    // The inbox notice went to everyone who reads, as before.
    let notices = count(&app, "SELECT count(*) FROM notifications").await;
    assert!(notices >= 3, "{notices}");
    let edit = s.html("/app/automation/replies").await;
    assert!(edit.contains("Срочно"), "{edit}");
    app.stop().await;
}

#[tokio::test]
async fn the_editor_shows_an_sms_replys_cost_and_warns_above_one_part() {
    let app = TestApp::new().await;
    let (s, _, source) = crate::sms::company_with_sms(&app).await;
    let key = create_key(&s, "auto").await;
    let long =
        "Здравствуйте! Мы получили ваше сообщение и ответим в рабочее время, с 9 до 18 по Москве.";
    let rid = rule(
        &app,
        &key,
        json!({"name": "Нерабочее", "trigger": {"type": "first_message"},
            "actions": [{"type": "reply", "text": long}]}),
    )
    .await;
    let edit = format!("/app/automation/replies/{rid}");
    // No price yet: the parts, the warning, no cost.
    let page = s.html(&edit).await;
    assert!(page.contains("2 SMS · кириллица"), "{page}");
    assert!(page.contains("id=\"sms-cost-warning\""), "{page}");
    assert!(!page.contains("id=\"sms-cost\""), "{page}");

    // A bad price is refused on the source's page, nothing saved; a good one is kept.
    let spath = format!("/app/sources/{source}");
    let r = s
        .post_from(
            &spath,
            &format!("{spath}/sms-price"),
            &[("price", "три рубля")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("page");
    assert!(page.contains("data-field=\"price\""), "{page}");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM sources WHERE settings LIKE '%sms_part_price%'"
        )
        .await,
        0
    );
    let r = s
        .post_from(&spath, &format!("{spath}/sms-price"), &[("price", "3,50")])
        .await;
    assert_eq!(r.status(), 303);
    assert!(s.html(&spath).await.contains("value=\"3.50\""));
    let page = s.html(&edit).await;
    assert!(page.contains("Стоимость: 7,00 ₽"), "{page}");
    assert!(page.contains("id=\"sms-cost-warning\""), "{page}");

    // Through the API as well; one part shows its cost and no warning.
    let (st, out) = call(
        &app,
        &key,
        reqwest::Method::PUT,
        &format!("/api/v1/sources/{source}/sms-price"),
        json!({"price": "1001"}),
    )
    .await;
    assert_eq!(st, 422, "{out}");
    assert_eq!(
        refused(&out),
        [("price".to_owned(), "sms_part_price".to_owned())]
    );
    let (st, out) = call(
        &app,
        &key,
        reqwest::Method::PUT,
        &format!("/api/v1/sources/{source}/sms-price"),
        json!({"price": "2.5"}),
    )
    .await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["price_kopecks"], 250);
    let (st, _) = call(
        &app,
        &key,
        reqwest::Method::PUT,
        &format!("/api/v1/auto-replies/{rid}"),
        json!({"name": "Нерабочее", "trigger": {"type": "first_message"},
            "actions": [{"type": "reply", "text": "Ответим утром."}]}),
    )
    .await;
    assert_eq!(st, 200);
    let page = s.html(&edit).await;
    assert!(page.contains("Стоимость: 2,50 ₽"), "{page}");
    assert!(!page.contains("id=\"sms-cost-warning\""), "{page}");
    s.get("/lang/en").await;
    let page = s.html(&edit).await;
    assert!(page.contains("Cost: 2,50 ₽"), "{page}");
    app.stop().await;
}

/// An API source made through the UI for a new company: (session, source id, secret).
async fn api_company(app: &TestApp, company: &str, email: &str) -> (Session, String, String) {
    let s = Session::sign_up(app, company, "Анна", email, "ромашка-пароль-42").await;
    let r = s
        .post_from(
            "/app/sources/new/api",
            "/app/api-sources",
            &[("name", "Сайт")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.expect("body");
    let secret = crate::api_source::attr_after(&page, "id=\"api-secret\"", "value").to_owned();
    let id = page
        .split("/app/api-sources/")
        .nth(1)
        .and_then(|x| x.split('/').next())
        .expect("source id in page")
        .to_owned();
    (s, id, secret)
}

/// The other company's system: receives one company's outgoing webhooks and writes each
/// message that company sent to the other company's API source, signed with its secret, as
/// a customer of `chat`. Returns the URL to set as the first company's webhook.
async fn bridge(inbound: String, secret: String, chat: &'static str) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let (inbound, secret) = (inbound.clone(), secret.clone());
            async move {
                let ev: Value = serde_json::from_str(&body).unwrap_or_default();
                let m = &ev["data"]["message"];
                if ev["type"] == "message.created" && m["direction"] == "out" {
                    let text = m["text"].as_str().unwrap_or_default();
                    let id = m["id"].as_str().unwrap_or_default();
                    let body = message_body(&format!("{chat}-{id}"), chat, text);
                    let ts = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .expect("after 1970")
                        .as_secs() as i64;
                    let sig = crate::api_source::sign(&secret, ts, &body);
                    let r = reqwest::Client::new()
                        .post(&inbound)
                        .header("content-type", "application/json")
                        .header("x-chatter-timestamp", ts.to_string())
                        .header("x-chatter-signature", sig)
                        .body(body)
                        .send()
                        .await;
                    if !r.is_ok_and(|r| r.status().is_success()) {
                        return axum::http::StatusCode::BAD_GATEWAY;
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    url
}

#[tokio::test]
async fn two_chatter_companies_answering_each_other_stop_at_the_loop_guard() {
    let app = TestApp::new().await;
    let (a, a_id, a_secret) = api_company(&app, "Рога и Копыта", "anna@roga.test").await;
    let (b, b_id, b_secret) = api_company(&app, "Ромашка", "anna@romashka.test").await;
    // Each company's outgoing webhook goes, through the other's system, to the other's API
    // source: whatever one sends, the other receives as its customer's message.
    let to_b = bridge(
        app.at(&format!("/hooks/api/{b_id}")),
        b_secret.clone(),
        "roga-bot",
    )
    .await;
    let to_a = bridge(
        app.at(&format!("/hooks/api/{a_id}")),
        a_secret.clone(),
        "romashka-bot",
    )
    .await;
    for (s, id, url) in [(&a, &a_id, &to_b), (&b, &b_id, &to_a)] {
        let page = format!("/app/api-sources/{id}");
        let r = s
            .post_from(&page, &format!("{page}/webhook"), &[("webhook_url", url)])
            .await;
        assert_eq!(r.status(), 303);
        let key = create_key(s, "auto").await;
        rule(
            &app,
            &key,
            json!({"name": "Приветствие", "trigger": {"type": "first_message"},
                "actions": [{"type": "reply", "text": "Здравствуйте! Чем помочь с заказом?"}]}),
        )
        .await;
        rule(
            &app,
            &key,
            json!({"name": "Заказ", "trigger": {"type": "keywords"}, "conditions": {"keywords": ["заказ"]},
                "once_per_minutes": 0,
                "actions": [{"type": "reply", "text": "Расскажите подробнее про заказ."}]}),
        )
        .await;
    }
    // A visitor of A's site writes once; from then on the two companies answer each other.
    let http = reqwest::Client::new();
    let first = message_body("start", "visitor", "Здравствуйте, вопрос по заказу");
    let r = post_signed(&http, &app, &a_id, &a_secret, now_secs(&app), &first, None).await;
    assert_eq!(r.status(), 200);
    eventually("the loop guard holds one side back", || async {
        count(
            &app,
            "SELECT count(*) FROM auto_reply_firings WHERE reason = 'loop_guard'",
        )
        .await
            == 1
    })
    .await;
    // A greeted the visitor (its own conversation). B greeted A's greeting, and from then on
    // A's conversation with B's bot and B's with A's bot answered each other: A's reached the
    // cap of 3 first, B's fourth was held, and nothing more was sent.
    checks_done(&app, 8).await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages WHERE direction = 'in'").await,
        8
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'out'"
        )
        .await,
        7
    );
    assert_eq!(
        count(&app, "SELECT max(n) FROM (SELECT count(*) AS n FROM auto_reply_firings WHERE reply_message_id IS NOT NULL GROUP BY conversation_id) t").await,
        3,
        "at most the cap in any conversation"
    );
    assert_eq!(
        count(&app, "SELECT count(DISTINCT company_id) FROM auto_reply_firings WHERE reply_message_id IS NOT NULL").await,
        2
    );
    let conv = conversation_with(&b, "Расскажите подробнее").await;
    let thread = b.html(&format!("/app/inbox/{conv}")).await;
    assert!(
        thread.contains("не отправлен: защита от зацикливания"),
        "{thread}"
    );
    app.stop().await;
}
