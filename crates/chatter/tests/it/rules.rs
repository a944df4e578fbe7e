//! Routing rules (issue 4, item 5): created, edited, reordered, turned off and deleted through
//! the rules page; an invalid regex refused with its position; a manager kept out; the dry
//! run in the UI and the API (stemming, exclusions, regex, time windows in the company's time
//! zone, first match wins, the default) agreeing with what the CRM sync gets from
//! `rules::decide`.

use crate::messages::{count, location};
use crate::team::{join_new, PW};
use chatter_core::crm::rules;
use chatter_core::{Actor, ReqMeta};
use chatter_domain::routing::Actions;
use chatter_domain::{Role, SourceId};
use chatter_testkit::{Session, TestApp};
use uuid::Uuid;

/// A company with two Telegram bots and amoCRM connected (with a second pipeline and a third
/// user added in the CRM before the sync).
struct Company {
    s: Session,
    company: Uuid,
    owner: Uuid,
    site: String,
    tg: String,
    pipeline: i64,
    stage: (i64, String),
    user: i64,
}

async fn add_bot(app: &TestApp, s: &Session, username: &str, name: &str) -> String {
    let token = app.telegram.create_bot(username, name);
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[("kind", "1"), ("token", &token), ("name", name)],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    location(&r).rsplit('/').next().expect("id").to_string()
}

async fn company(app: &TestApp) -> Company {
    let s = Session::sign_up(app, "Рога и Копыта", "Анна", "anna@horns.ru", PW).await;
    let site = add_bot(app, &s, "horns_site_bot", "Сайт").await;
    let tg = add_bot(app, &s, "horns_tg_bot", "Телеграм").await;
    let account = app.amo.create_account("horns", "Рога и Копыта CRM");
    let pipeline = app
        .amo
        .add_pipeline(account, "Доставка", &["Новая заявка", "Расчёт"]);
    let user = app
        .amo
        .add_user(account, "Ольга Курьерова", "olga@horns.example");
    let stage = app
        .amo
        .pipelines(account)
        .iter()
        .find(|p| p["id"].as_i64() == Some(pipeline))
        .and_then(|p| {
            p["_embedded"]["statuses"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == "Расчёт")
                .map(|s| (s["id"].as_i64().unwrap_or_default(), "Расчёт".to_string()))
        })
        .expect("the stage «Расчёт» in the fake");
    // Connect: approve on amoCRM's consent page and come back.
    let r = s.post_from("/app/crm", "/app/crm/connect", &[]).await;
    let consent = location(&r);
    let state = consent
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .expect("state")
        .to_string();
    let back = app.amo.approve(account, TestApp::AMO_CLIENT_ID, &state);
    let r = s.get(back.trim_start_matches(&app.url)).await;
    assert_eq!(r.status(), 303, "connected");
    let company = crate::team::company_id(app, "Рога и Копыта").await;
    let owner = crate::team::user_id(app, "anna@horns.ru").await;
    Company {
        s,
        company,
        owner,
        site,
        tg,
        pipeline,
        stage,
        user,
    }
}

impl Company {
    fn actor(&self) -> Actor {
        Actor {
            user_id: Some(self.owner.into()),
            company_id: self.company.into(),
            role: Role::Owner,
            label: "anna@horns.ru".into(),
            meta: ReqMeta::default(),
        }
    }

    /// Saves a rule through the form; returns the rule's id as the list shows it.
    async fn create(&self, fields: &[(&str, &str)]) -> String {
        let before = rule_ids(&self.s.html("/app/crm/rules").await);
        let r = self
            .s
            .post_from("/app/crm/rules/new", "/app/crm/rules", fields)
            .await;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(
            status,
            303,
            "{}",
            between(&body, "id=\"rule-error\"", "</form>")
        );
        let after = rule_ids(&self.s.html("/app/crm/rules").await);
        after
            .into_iter()
            .find(|id| !before.contains(id))
            .expect("a new rule in the list")
    }

    /// Posts the dry run form; returns the page.
    async fn dry_run(&self, source: &str, text: &str, at: &str) -> String {
        let r = self
            .s
            .post_from(
                "/app/crm/rules",
                "/app/crm/rules/dry-run",
                &[("source", source), ("text", text), ("at", at)],
            )
            .await;
        assert_eq!(r.status(), 200);
        r.text().await.expect("body")
    }
}

fn between(html: &str, start: &str, end: &str) -> String {
    html.find(start)
        .map(|i| {
            let rest = &html[i + start.len()..];
            rest[..rest.find(end).unwrap_or(rest.len())].to_string()
        })
        .unwrap_or_default()
}

/// The rule ids of the list page, in order.
fn rule_ids(html: &str) -> Vec<String> {
    html.split("data-rule=\"")
        .skip(1)
        .map(|x| x[..x.find('"').expect("quote")].to_string())
        .collect()
}

/// The names of the list page's rules, in order.
fn rule_names(html: &str) -> Vec<String> {
    html.split("class=\"rule-name\">")
        .skip(1)
        .map(|x| {
            let name = &x[..x.find('<').expect("tag")];
            name.split_once(". ")
                .map(|(_, n)| n)
                .unwrap_or(name)
                .to_string()
        })
        .collect()
}

fn fired(page: &str) -> String {
    between(page, "id=\"dry-rule\">", "<")
}

#[tokio::test]
async fn an_admin_creates_edits_reorders_and_deletes_rules_through_the_forms() {
    let app = TestApp::new().await;
    let c = company(&app).await;
    let page = c.s.html("/app/crm").await;
    assert!(
        page.contains("href=\"/app/crm/rules\""),
        "linked from the CRM page"
    );
    let form = c.s.html("/app/crm/rules/new").await;
    assert!(
        form.contains("Ольга Курьерова"),
        "users offered from the CRM"
    );
    assert!(form.contains("Расчёт"), "stages offered from the CRM");

    let pipeline = c.pipeline.to_string();
    let stage = c.stage.0.to_string();
    let user = c.user.to_string();
    let delivery = c
        .create(&[
            ("name", "Доставка"),
            ("enabled", "1"),
            ("source", &c.site),
            ("keywords", "доставка\nкурьер"),
            ("pipeline", &pipeline),
            ("stage", &stage),
            ("responsible", "user"),
            ("user", &user),
            ("tags", "доставка, срочно"),
        ])
        .await;
    let night = c
        .create(&[
            ("name", "Ночь"),
            ("enabled", "1"),
            ("w0_day", "sat"),
            ("w0_day", "sun"),
            ("w0_from", "20:00"),
            ("w0_to", "08:00"),
            ("responsible", "first"),
        ])
        .await;
    let list = c.s.html("/app/crm/rules").await;
    assert_eq!(rule_names(&list), ["Доставка", "Ночь"]);
    for shown in [
        "Сайт",
        "доставка, курьер",
        "Доставка → Расчёт",
        "Ольга Курьерова",
        "доставка, срочно",
        "Сб, Вс 20:00–08:00",
        "Кто первым ответит",
        "По умолчанию — настройки источника",
    ] {
        assert!(list.contains(shown), "{shown:?} on the list: {list}");
    }

    // Reorder: «Ночь» up.
    let r =
        c.s.post_from(
            "/app/crm/rules",
            &format!("/app/crm/rules/{night}/move"),
            &[("dir", "up")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let list = c.s.html("/app/crm/rules").await;
    assert_eq!(rule_ids(&list), [night.clone(), delivery.clone()]);

    // Off and on again.
    let r =
        c.s.post_from(
            "/app/crm/rules",
            &format!("/app/crm/rules/{delivery}/disable"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(c.s.html("/app/crm/rules").await.contains("(выключено)"));
    assert!(
        !rules::get(&app.core, &c.actor(), &delivery)
            .await
            .expect("rule")
            .enabled
    );
    c.s.post_from(
        "/app/crm/rules",
        &format!("/app/crm/rules/{delivery}/enable"),
        &[],
    )
    .await;
    assert!(
        rules::get(&app.core, &c.actor(), &delivery)
            .await
            .expect("rule")
            .enabled
    );

    // Edit: the form shows what is stored; the change keeps the rule's place and id.
    let edit = c.s.html(&format!("/app/crm/rules/{delivery}")).await;
    assert!(edit.contains("доставка\nкурьер"), "{edit}");
    assert!(edit.contains(&format!("value=\"{}\" selected", c.stage.0)));
    let r =
        c.s.post_from(
            &format!("/app/crm/rules/{delivery}"),
            &format!("/app/crm/rules/{delivery}"),
            &[
                ("name", "Доставка и курьер"),
                ("enabled", "1"),
                ("keywords", "доставка"),
                ("responsible", "round_robin"),
                ("rr_user", &user),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let list = c.s.html("/app/crm/rules").await;
    assert_eq!(rule_names(&list), ["Ночь", "Доставка и курьер"]);
    assert_eq!(rule_ids(&list), [night.clone(), delivery.clone()]);
    assert!(list.contains("По очереди: Ольга Курьерова"), "{list}");

    // Delete.
    let r =
        c.s.post_from(
            "/app/crm/rules",
            &format!("/app/crm/rules/{night}/delete"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    let list = c.s.html("/app/crm/rules").await;
    assert_eq!(rule_ids(&list), [delivery]);
    assert_eq!(
        c.s.get(&format!("/app/crm/rules/{night}")).await.status(),
        404
    );
    // Every change is in the audit log.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action IN ('rules.create', 'rules.reorder', \
             'rules.disable', 'rules.enable', 'rules.update', 'rules.delete')"
        )
        .await,
        7
    );
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_regex_is_refused_with_its_position_and_a_manager_cannot_edit() {
    let app = TestApp::new().await;
    let c = company(&app).await;
    let r =
        c.s.post_from(
            "/app/crm/rules/new",
            "/app/crm/rules",
            &[
                ("name", "Заказы"),
                ("enabled", "1"),
                ("regex", "заказ(№\\d+"),
                ("w0_day", "mon"),
                ("w0_from", "09:00"),
                ("w0_to", "18:00"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("body");
    let error = between(&page, "id=\"regex-error\">", "<");
    assert!(
        error.contains("Ошибка в регулярном выражении") && error.contains("символ 6"),
        "{error}"
    );
    // What was typed stays in the form.
    assert!(page.contains("value=\"Заказы\""));
    assert!(page.contains("value=\"заказ(№\\d+\""), "{page}");
    assert!(page.contains("name=\"w0_day\" value=\"mon\" checked"));
    assert_eq!(count(&app, "SELECT count(*) FROM routing_rules").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action LIKE 'rules.%'"
        )
        .await,
        0
    );

    // A window without a weekday, and a stage from another pipeline, are refused too.
    let pipeline = c.pipeline.to_string();
    let r =
        c.s.post_from(
            "/app/crm/rules/new",
            "/app/crm/rules",
            &[
                ("name", "Окно"),
                ("w0_from", "09:00"),
                ("w0_to", "18:00"),
                ("pipeline", &pipeline),
                ("stage", "142000"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("body");
    assert!(page.contains("data-field=\"conditions.windows\""), "{page}");
    assert!(page.contains("data-field=\"actions.status_id\""), "{page}");
    assert_eq!(count(&app, "SELECT count(*) FROM routing_rules").await, 0);

    // A manager sees the rules and may try them, but not change them.
    let id = c.create(&[("name", "Все"), ("enabled", "1")]).await;
    let m = join_new(&app, &c.s, "masha@horns.ru", "Маша", "manager").await;
    let list = m.html("/app/crm/rules").await;
    assert_eq!(rule_names(&list), ["Все"]);
    assert!(!list.contains("/delete"), "no edit buttons for a manager");
    assert_eq!(m.get("/app/crm/rules/new").await.status(), 403);
    let r = m
        .post_from("/app/crm/rules", "/app/crm/rules", &[("name", "Моё")])
        .await;
    assert_eq!(r.status(), 403);
    let r = m
        .post_from(
            "/app/crm/rules",
            &format!("/app/crm/rules/{id}/delete"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = m
        .post_from(
            "/app/crm/rules",
            "/app/crm/rules/dry-run",
            &[("source", &c.site), ("text", "привет")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(fired(&r.text().await.expect("body")), "Все");
    assert_eq!(
        rules::list(&app.core, &c.actor())
            .await
            .expect("rules")
            .len(),
        1
    );
    app.stop().await;
}

/// Moscow local time (UTC+3, no daylight saving since 2014) → Unix ms.
fn moscow_ms(y: i64, mo: i64, d: i64, h: i64, mi: i64) -> i64 {
    // Days since 1970-01-01 of a proleptic Gregorian date.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + h - 3) * 60 + mi) * 60_000
}

#[tokio::test]
async fn the_dry_run_says_which_rule_fires_and_why_in_the_ui_and_the_api_as_decide_does() {
    let app = TestApp::new().await;
    let c = company(&app).await;
    let pipeline = c.pipeline.to_string();
    let user = c.user.to_string();
    // In order: the first match wins.
    c.create(&[
        ("name", "Опт"),
        ("enabled", "1"),
        ("keywords", "опт"),
        ("exclude", "розница"),
        ("pipeline", &pipeline),
        ("responsible", "user"),
        ("user", &user),
    ])
    .await;
    c.create(&[
        ("name", "Доставка в будни"),
        ("enabled", "1"),
        ("keywords", "доставка"),
        ("w0_day", "mon"),
        ("w0_day", "tue"),
        ("w0_day", "wed"),
        ("w0_day", "thu"),
        ("w0_day", "fri"),
        ("w0_from", "09:00"),
        ("w0_to", "18:00"),
        ("tags", "будни"),
    ])
    .await;
    c.create(&[
        ("name", "Доставка"),
        ("enabled", "1"),
        ("keywords", "доставка"),
        ("tags", "выходные"),
    ])
    .await;
    c.create(&[
        ("name", "Заказ из Телеграма"),
        ("enabled", "1"),
        ("source", &c.tg),
        ("regex", r"заказ\s*№?\s*\d+"),
        ("responsible", "first"),
    ])
    .await;

    // Stemming: «доставку» finds the keyword «доставка»; Monday noon is within the window.
    let text = "Сколько стоит доставку в Казань?";
    let page = c.dry_run(&c.site, text, "2025-03-03T12:00").await;
    assert_eq!(fired(&page), "Доставка в будни");
    let steps = between(&page, "id=\"dry-steps\">", "</ol>");
    assert!(
        steps.contains("«доставка»") && steps.contains("«доставку»"),
        "{steps}"
    );
    assert!(steps.contains("Пн–Пт 09:00–18:00 MSK"), "{steps}");
    assert!(between(&page, "id=\"dry-actions\">", "</ul>").contains("будни"));

    // Saturday night is outside the weekday window: the next rule fires, and the page says why.
    let page = c.dry_run(&c.site, text, "2025-03-08T23:30").await;
    assert_eq!(fired(&page), "Доставка");
    let steps = between(&page, "id=\"dry-steps\">", "</ol>");
    assert!(
        steps.contains("вне заданного времени") && steps.contains("Сб 23:30"),
        "{steps}"
    );
    assert!(between(&page, "id=\"dry-actions\">", "</ul>").contains("выходные"));

    // An exclusion stops «Опт»; nothing else matches: the default.
    let page = c
        .dry_run(&c.site, "Нужен опт, но не в розницу", "2025-03-03T12:00")
        .await;
    assert_eq!(fired(&page), "По умолчанию");
    let steps = between(&page, "id=\"dry-steps\">", "</ol>");
    assert!(
        steps.contains("исключено словом «розница» («розницу»)"),
        "{steps}"
    );
    assert!(steps.contains("data-step=\"default\""));
    // Without the exclusion «Опт» fires, with the pipeline and user by name.
    let page = c
        .dry_run(&c.site, "Интересует опт", "2025-03-03T12:00")
        .await;
    assert_eq!(fired(&page), "Опт");
    let actions = between(&page, "id=\"dry-actions\">", "</ul>");
    assert!(
        actions.contains("Доставка → первый этап") && actions.contains("Ольга Курьерова"),
        "{actions}"
    );

    // The regex only for the Telegram bot.
    let order = "Где мой заказ № 1234?";
    assert_eq!(
        fired(&c.dry_run(&c.tg, order, "").await),
        "Заказ из Телеграма"
    );
    let page = c.dry_run(&c.site, order, "").await;
    assert_eq!(fired(&page), "По умолчанию");
    assert!(page.contains("источник не из списка"));
    // Bad input: no source, an impossible time.
    let r =
        c.s.post_from(
            "/app/crm/rules",
            "/app/crm/rules/dry-run",
            &[("text", "x"), ("source", "")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let r =
        c.s.post_from(
            "/app/crm/rules",
            "/app/crm/rules/dry-run",
            &[("text", "x"), ("source", &c.site), ("at", "8 марта")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.expect("body").contains("data-field=\"at\""));

    // The API: the rules, and the same dry run.
    let key = {
        let r =
            c.s.post_from(
                "/app/settings",
                "/app/settings/api-keys",
                &[("name", "rules")],
            )
            .await;
        let page = r.text().await.expect("body");
        let tag = between(&page, "id=\"new-api-key\"", ">");
        let tag = if tag.contains("value=") {
            tag
        } else {
            // The value may come before the id in the tag.
            let i = page.find("id=\"new-api-key\"").expect("the new key");
            let start = page[..i].rfind('<').expect("tag start");
            page[start..i].to_string()
        };
        between(&tag, "value=\"", "\"")
    };
    assert!(key.starts_with("chk_"), "{key}");
    let http = app.client();
    let list: serde_json::Value = http
        .get(app.at("/api/v1/routing-rules"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        ["Опт", "Доставка в будни", "Доставка", "Заказ из Телеграма"]
    );
    assert_eq!(list[0]["actions"]["pipeline_name"], "Доставка");
    assert_eq!(list[1]["conditions"]["windows"][0]["weekdays"][0], "mon");

    let site: SourceId = c.site.parse().expect("uuid");
    let tg: SourceId = c.tg.parse().expect("uuid");
    let cases = [
        (
            site,
            text,
            "2025-03-03T12:00",
            moscow_ms(2025, 3, 3, 12, 0),
            Some("Доставка в будни"),
        ),
        // 10:00 in Moscow is 07:00 UTC: the window is read in the company's zone.
        (
            site,
            text,
            "2025-03-03T10:00",
            moscow_ms(2025, 3, 3, 10, 0),
            Some("Доставка в будни"),
        ),
        (
            site,
            text,
            "2025-03-08T23:30",
            moscow_ms(2025, 3, 8, 23, 30),
            Some("Доставка"),
        ),
        (
            site,
            "Нужен опт, но не в розницу",
            "2025-03-03T12:00",
            moscow_ms(2025, 3, 3, 12, 0),
            None,
        ),
        (
            tg,
            order,
            "2025-03-08T23:30",
            moscow_ms(2025, 3, 8, 23, 30),
            Some("Заказ из Телеграма"),
        ),
        (
            site,
            "Здравствуйте",
            "2025-03-03T12:00",
            moscow_ms(2025, 3, 3, 12, 0),
            None,
        ),
    ];
    for (source, text, at, at_ms, want) in cases {
        let r = http
            .post(app.at("/api/v1/routing-rules/dry-run"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"source_id": source, "text": text, "at": at}))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200);
        let api: serde_json::Value = r.json().await.expect("JSON");
        assert_eq!(api["rule_name"].as_str(), want, "{text} at {at}: {api}");
        let steps = api["explanation"].as_array().expect("steps");
        let last = &steps[steps.len() - 1];
        assert_eq!(
            last["step"],
            if want.is_some() { "matched" } else { "default" }
        );

        // What the CRM sync gets is the dry run's decision.
        let decided = rules::decide(
            &app.core,
            c.company.into(),
            &Actions::default(),
            source,
            text,
            at_ms,
        )
        .await
        .expect("decide");
        let dry = rules::dry_run(&app.core, &c.actor(), source, text, at)
            .await
            .expect("dry run");
        assert_eq!(decided, dry, "{text} at {at}");
        assert_eq!(api["rule_id"].as_str(), decided.rule_id.as_deref());
        assert_eq!(steps.len(), decided.explanation.len());
    }
    // The default's own values come through where the rule leaves them.
    let default = Actions {
        pipeline_id: Some(1),
        status_id: Some(2),
        responsible: None,
        tags: vec!["chatter".into()],
    };
    let d = rules::decide(
        &app.core,
        c.company.into(),
        &default,
        site,
        text,
        moscow_ms(2025, 3, 8, 23, 30),
    )
    .await
    .expect("decide");
    assert_eq!(d.actions.tags, ["chatter", "выходные"]);
    assert_eq!(d.actions.pipeline_id, Some(1));

    // Bad API input changes nothing and says what is wrong.
    let r = http
        .post(app.at("/api/v1/routing-rules/dry-run"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"source_id": Uuid::nil(), "text": "x"}))
        .send()
        .await
        .expect("POST");
    // Another company's (or no) source is, from here, a source that does not exist.
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "not_found");
    app.stop().await;
}
