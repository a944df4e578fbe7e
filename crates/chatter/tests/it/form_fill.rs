//! The form filler: every POST form the crawler finds gets, one field at a time (the others
//! keep their defaults), the values people and scripts really send — nothing, 10,000
//! characters, a script tag, emoji, right-to-left text and control characters. Every answer is
//! a success or the form again with a message in the person's language: never a 5xx,
//! `text/plain` or the framework's words. A fresh read of the page afterwards shows no script
//! tag unescaped, no 10,000-character value where the limit is lower, and no control character.
//!
//! Not filled, and why:
//! - `/sign-out`, `/sign-out-everywhere`: they end the session the rest of the run needs;
//! - `…/delete`, `…/remove`, `…/revoke`, `/app/crm/disconnect`: they delete what later forms act
//!   on (a rule, a dead letter, a member, an invitation, an API key, the amoCRM connection);
//! - nothing else: the password, 2FA and role forms are filled too, since none of these values
//!   is ever the current password, a valid code or a role, so they cannot lock the owner out;
//! - forms with nothing to type into (switch company, close, enable, export, 2FA start…): there
//!   is no field to fill; the crawler has already seen the page they are on.

use crate::crawl::{self, html::Form, Lang};
use chatter_testkit::{Session, TestApp};

/// Actions not submitted (see the module comment).
const SKIP: [&str; 5] = ["/sign-out", "/delete", "/remove", "/revoke", "/disconnect"];

const LONG: usize = 10_000;
const SCRIPT: &str = "<script>alert(1)</script>";

/// What each field gets, in turn.
fn cases() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("10,000 characters", "Ж".repeat(LONG)),
        ("a script", SCRIPT.into()),
        ("emoji", "Привет 👋🏽 😀".into()),
        ("right-to-left", "مرحبا بالعالم".into()),
        ("\\u{1}", "Анна\u{1}".into()),
        ("\\u{1b}[31m", "\u{1b}[31mАнна".into()),
        ("\\u{202e}", "\u{202e}Анна".into()),
    ]
}

/// Fields where 10,000 characters fit the limit (docs/limits.md): a reply, and the dry run's
/// text, which is not stored.
fn long_allowed(action: &str, field: &str) -> bool {
    field == "text" && (action.ends_with("/reply") || action.ends_with("/dry-run"))
}

/// What happened, for the summary.
#[derive(Default)]
struct Tally {
    forms: usize,
    fields: usize,
    posts: usize,
    accepted: usize,
    refused: usize,
    skipped: Vec<String>,
    problems: Vec<String>,
}

/// A message the person can read: a field's or the form's error, the error page's, a flash.
fn has_message(body: &str) -> bool {
    [
        "field-error",
        "form-error",
        "error-text",
        "role=\"alert\"",
        "class=\"flash",
    ]
    .iter()
    .any(|m| body.contains(m))
}

const FRAMEWORK: [&str; 5] = [
    "Failed to deserialize",
    "malformed form",
    "Invalid URL",
    "request body too large",
    "Failed to parse",
];

async fn fill_all(s: &Session, lang: Lang, fx: &crawl::Fixture, who: &str) -> Tally {
    let found = crawl::crawl(s, lang, &fx.data).await;
    let mut t = Tally::default();
    t.problems.extend(
        found
            .problems
            .iter()
            .map(|p| format!("[{who} {lang:?}] before filling: {p}")),
    );
    for (page, form) in &found.post_forms {
        if let Some(why) = SKIP.iter().find(|x| form.action.contains(*x)) {
            t.skipped.push(format!("{} ({why})", form.action));
            continue;
        }
        let fields: Vec<_> = form.fields.iter().filter(|f| f.fillable()).collect();
        if fields.is_empty() {
            t.skipped.push(format!("{} (no field)", form.action));
            continue;
        }
        t.forms += 1;
        for field in fields {
            t.fields += 1;
            for (case, value) in cases() {
                t.posts += 1;
                let at = format!(
                    "[{who} {lang:?}] {} from {page}, {} = {case}",
                    form.action, field.name
                );
                let problems = submit(s, lang, fx, page, form, &field.name, case, &value).await;
                match problems {
                    Ok(accepted) if accepted => t.accepted += 1,
                    Ok(_) => t.refused += 1,
                    Err(p) => t
                        .problems
                        .extend(p.into_iter().map(|p| format!("{at}: {p}"))),
                }
            }
        }
    }
    t
}

/// Posts `form` with `field` set to `value`; `Ok(true)` for a success, `Ok(false)` for a
/// refusal shown as it should be, `Err` with what is wrong.
#[allow(clippy::too_many_arguments)]
async fn submit(
    s: &Session,
    lang: Lang,
    fx: &crawl::Fixture,
    page: &str,
    form: &Form,
    field: &str,
    case: &str,
    value: &str,
) -> Result<bool, Vec<String>> {
    let long = case == "10,000 characters" && !long_allowed(&form.action, field);
    // Whether the page showed the long value before (a reply may hold it, lawfully).
    let before = long && crawl::get(s, page).await.body.contains(value);
    let mut pairs = form.defaults();
    match pairs.iter_mut().find(|(k, _)| k == field) {
        Some(p) => p.1 = value.to_owned(),
        None => pairs.push((field.to_owned(), value.to_owned())),
    }
    let r = s
        .http
        .post(format!("{}{}", s.base, form.action))
        .form(&pairs)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let location = crate::messages::location(&r);
    let kind = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = r.text().await.unwrap_or_default();
    let mut problems = Vec::new();
    if status >= 500 {
        problems.push(format!("answered {status}"));
    }
    if kind.starts_with("text/plain") {
        problems.push(format!("answered text/plain: {}", short(&body)));
    }
    if let Some(f) = FRAMEWORK.iter().find(|f| body.contains(*f)) {
        problems.push(format!("the framework's words «{f}»"));
    }
    let accepted = (200..400).contains(&status);
    if body.contains(SCRIPT) {
        problems.push("the answer shows the script tag unescaped".into());
    }
    // A typed field that takes 10,000 characters keeps them somewhere; a select or a hidden id
    // that does not parse may fall back to its default, which stores nothing of it.
    let typed = form
        .fields
        .iter()
        .any(|f| f.name == field && !matches!(f.kind.as_str(), "select" | "hidden" | "number"));
    if long && accepted && typed {
        problems.push("10,000 characters accepted where the limit is lower".into());
    }
    if (300..400).contains(&status) {
        // A redirect elsewhere (amoCRM's consent page) is the success; on this site, its page.
        if location.starts_with('/') {
            let a = crawl::get(s, &location).await;
            if a.status >= 400 || !a.kind.starts_with("text/html") {
                problems.push(format!("led to {} answering {}", a.path, a.status));
            } else if !a.path.starts_with("/sign-in") {
                problems.extend(crawl::check_page(&a.body, lang, &fx.data));
                if a.body.contains(SCRIPT) {
                    problems.push(format!("{} shows the script tag unescaped", a.path));
                }
            } else {
                problems.push("signed the person out".into());
            }
        }
    } else if kind.starts_with("text/html") {
        problems.extend(crawl::check_page(&body, lang, &fx.data));
        if !accepted && !has_message(&body) {
            problems.push(format!("refused ({status}) without a message"));
        }
    } else if problems.is_empty() {
        problems.push(format!("answered {status} {kind}"));
    }
    // Put back what a success changed around the session: the company and the language.
    if form.action == "/app/companies" && accepted {
        let r = s
            .post_with(
                &format!("/app/companies/{}/switch", fx.company_id),
                &chatter_testkit::csrf_of(&s.html("/app/profile").await),
                &[],
            )
            .await;
        assert_eq!(r.status(), 303, "switching back to the fixture's company");
    }
    crawl::set_lang(s, lang).await;
    // What a fresh read of the page shows.
    let after = crawl::get(s, page).await;
    let shown = &after.body;
    if shown.contains(SCRIPT) {
        problems.push(format!("{page} shows the script tag unescaped"));
    }
    if long && !before && shown.contains(value) {
        problems.push(format!(
            "{page} shows the 10,000 characters: stored past the limit"
        ));
    }
    if shown.contains('\u{1}') || shown.contains('\u{1b}') {
        problems.push(format!("{page} shows a control character"));
    }
    if shown.contains('\u{202e}') && !page.starts_with("/app/inbox") {
        problems.push(format!("{page} shows a bidi override"));
    }
    if after.status >= 400 && after.status != 404 {
        problems.push(format!("{page} answers {} afterwards", after.status));
    }
    if problems.is_empty() {
        Ok(accepted)
    } else {
        Err(problems)
    }
}

fn short(body: &str) -> String {
    body.chars().filter(|c| !c.is_control()).take(160).collect()
}

#[tokio::test]
async fn every_post_form_takes_bad_input_with_a_message_and_stores_nothing_harmful() {
    let app = TestApp::new().await;
    let mut fx = crawl::fixture(&app).await;
    // What the filler types is user data from then on (the language checks leave it alone).
    fx.data.extend(cases().into_iter().map(|(_, v)| v));
    // A long reply shows cut short in the conversation list: its letter is data wherever it is.
    fx.data.extend(["Анна", "Привет", "Ж"].map(str::to_owned));
    fx.data.retain(|d| !d.is_empty());
    fx.data
        .sort_by_key(|d| std::cmp::Reverse(d.chars().count()));
    let mut problems = Vec::new();
    for (who, s, lang) in [
        ("owner", &fx.owner, Lang::Ru),
        ("manager", &fx.manager, Lang::En),
    ] {
        crawl::set_lang(s, lang).await;
        let t = fill_all(s, lang, &fx, who).await;
        println!(
            "form filler as {who} in {lang:?}: {} forms, {} fields, {} posts \
             ({} accepted, {} refused with a message); not filled: {}",
            t.forms,
            t.fields,
            t.posts,
            t.accepted,
            t.refused,
            t.skipped.join(", ")
        );
        assert!(t.forms >= 5, "{who}: only {} forms filled", t.forms);
        problems.extend(t.problems);
    }
    crawl::assert_none("the form filler", &problems);
    app.stop().await;
}

#[tokio::test]
async fn the_api_keeps_the_same_limits_and_names_the_field() {
    let app = TestApp::new().await;
    let (s, token, _) = crate::messages::company_with_bot(&app).await;
    crate::messages::eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    app.telegram.customer_writes(
        &token,
        chatter_fakes::CustomerMessage::text(5001, "Иван", "Здравствуйте"),
    );
    crate::messages::eventually("the conversation is in the inbox", || async {
        s.html("/app/inbox").await.contains("Здравствуйте")
    })
    .await;
    let key = crate::api::create_key(&s, "Сайт").await;
    let http = app.client();
    let call = |method: reqwest::Method, path: &str| {
        http.request(method, app.at(path))
            .header("authorization", format!("Bearer {key}"))
    };
    let list: serde_json::Value = call(reqwest::Method::GET, "/api/v1/conversations")
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let conv = list[0]["id"].as_str().expect("a conversation").to_owned();
    let send = |text: String| {
        call(
            reqwest::Method::POST,
            &format!("/api/v1/conversations/{conv}/messages"),
        )
        .json(&serde_json::json!({ "text": text }))
        .send()
    };
    let r = send("Ж".repeat(20_001)).await.expect("POST");
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(
        v["error"]["fields"][0],
        serde_json::json!({"field": "text", "code": "too_long", "limit": 20000}),
        "{v}"
    );
    // Control characters leave a reply (line breaks and tabs stay); bidi text is the customer's.
    let r = send("\u{1b}[31mДобрый\u{1} день\r\n\tвсё \u{202e}готово".into())
        .await
        .expect("POST");
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(v["text"], "[31mДобрый день\n\tвсё \u{202e}готово", "{v}");
    app.stop().await;
}
