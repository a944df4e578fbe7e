//! The crawler: signed in as an owner and as a manager, in Russian and in English, it follows
//! every same-origin link and every GET form (its defaults, then each option of each select)
//! reachable from `/app`, and fails on a 5xx, a 4xx the page did not mean, a `text/plain`
//! answer, a page without the navigation, an untranslated key or a `?` for a missing
//! translation, an inline style (the CSP refuses it), a raw role or state name, English in the
//! chrome of a Russian page or Russian in an English one. It discovers pages, so a new page is covered without editing it. The POST
//! forms it finds are what `form_fill` fills; the pages are what `browser_crawl` measures.

pub mod html;

use crate::messages::{company_with_bot, eventually, location};
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Session, TestApp};
use html::{Form, Node};
use std::collections::{HashSet, VecDeque};

/// The company every crawl walks through: the owner's and a manager's sessions, and every text
/// the fixture typed or the fakes hold (user data, which the language checks leave alone).
pub struct Fixture {
    pub owner: Session,
    pub manager: Session,
    pub company_id: String,
    pub data: Vec<String>,
}

/// A company with a Telegram bot and a conversation, an API source, amoCRM connected, a rule,
/// and a manager.
pub async fn fixture(app: &TestApp) -> Fixture {
    let (owner, token, _) = company_with_bot(app).await;
    // A greeting, so threads show an automatic message and its line (issue 14).
    let r = owner
        .post_from(
            "/app/automation/replies/new",
            "/app/automation/replies",
            &[
                ("name", "Приветствие"),
                ("enabled", "1"),
                ("trigger", "first_message"),
                ("reply", "Здравствуйте! Менеджер скоро ответит."),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "the auto-reply is saved");
    eventually("the bot is polled", || async {
        app.telegram.calls(&token).iter().any(|c| c == "getUpdates")
    })
    .await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5001, "Иван", "Здравствуйте, есть доставка?"),
    );
    eventually("the conversation is in the inbox, greeted", || async {
        owner
            .html("/app/inbox")
            .await
            .contains("Менеджер скоро ответит")
    })
    .await;
    let r = owner
        .post_from(
            "/app/sources/new/api",
            "/app/api-sources",
            &[("name", "Сайт")],
        )
        .await;
    assert_eq!(r.status(), 200, "the API source is created");
    let account = app.amo.create_account("horns", "Рога и Копыта в amoCRM");
    let callback = crate::crm::consent(app, &owner, account).await;
    let r = owner.get(&callback).await;
    assert_eq!(r.status(), 303, "amoCRM is connected");
    let r = owner
        .post_from(
            "/app/crm/rules/new",
            "/app/crm/rules",
            &[
                ("name", "Доставка"),
                ("enabled", "1"),
                ("keywords", "доставка"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "the rule is saved: {}", location(&r));
    // A second customer whose deal amoCRM refuses: the CRM health page lists a problem.
    app.amo.fail_next("/api/v4/", 400, 1000);
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5002, "Пётр", "Где мой заказ?"),
    );
    eventually("the CRM health page lists the refused deal", || async {
        owner.html("/app/crm/health").await.contains("data-item=")
    })
    .await;
    // A reply template (issue 14): its list, edit page and the inbox's list of templates.
    let r = owner
        .post_from(
            "/app/automation/templates/new",
            "/app/automation/templates/create",
            &[
                ("scope", "company"),
                ("category", "Доставка"),
                ("title", "Сроки"),
                (
                    "body",
                    "Здравствуйте, {client_name|клиент}! Доставим завтра.",
                ),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "the template is saved");
    let manager = crate::team::join_new(app, &owner, "oleg@example.ru", "Олег", "manager").await;
    let company_id = crate::team::company_id(app, "Рога и Копыта")
        .await
        .to_string();
    let mut data: Vec<String> = [
        "Рога и Копыта в amoCRM",
        "Рога и Копыта",
        "Здравствуйте, есть доставка?",
        "Анна",
        "Олег",
        "Иван",
        "Пётр",
        "Где мой заказ?",
        "Здравствуйте! Менеджер скоро ответит.",
        "Приветствие",
        "Сайт",
        "Доставка",
        "доставка",
        "Сроки",
        "Здравствуйте",
        "Доставим завтра",
        "клиент",
    ]
    .map(str::to_owned)
    .to_vec();
    for p in app.amo.pipelines(account) {
        data.extend(p["name"].as_str().map(str::to_owned));
        for s in p["_embedded"]["statuses"].as_array().into_iter().flatten() {
            data.extend(s["name"].as_str().map(str::to_owned));
        }
    }
    for u in app.amo.users(account) {
        data.extend(u["name"].as_str().map(str::to_owned));
    }
    // Longest first, so a name inside a longer one is not cut out of it first.
    data.sort_by_key(|d| std::cmp::Reverse(d.chars().count()));
    Fixture {
        owner,
        manager,
        company_id,
        data,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lang {
    Ru,
    En,
}

/// What a crawl saw: the HTML pages (paths with their queries), the POST forms found (with the
/// page each was on) and every problem.
#[derive(Default)]
pub struct Crawl {
    pub pages: Vec<String>,
    pub post_forms: Vec<(String, Form)>,
    pub problems: Vec<String>,
}

/// Addresses that are not pages, or that change state when followed.
const SKIP: [&str; 9] = [
    "/sign-out",
    "/lang/",
    "/api/",
    "/hooks/",
    "/static/",
    "/favicon",
    "/app/events",
    "/crm/",
    "/auth/",
];

/// The same-origin path of `href` as seen from `page`, without its fragment; `None` for other
/// sites, non-HTTP links and the addresses in `SKIP`.
fn local(base: &str, page: &str, href: &str) -> Option<String> {
    let href = href.split('#').next().unwrap_or("");
    if href.is_empty() {
        return None;
    }
    let u = reqwest::Url::parse(&format!("{base}{page}"))
        .ok()?
        .join(href)
        .ok()?;
    let origin = reqwest::Url::parse(base).ok()?;
    if u.origin() != origin.origin() {
        return None;
    }
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    };
    (!SKIP.iter().any(|s| path.starts_with(s))).then_some(path)
}

/// `action` with `pairs` as its query.
fn with_query(base: &str, action: &str, pairs: &[(String, String)]) -> Option<String> {
    let mut u = reqwest::Url::parse(base).ok()?.join(action).ok()?;
    u.query_pairs_mut().clear().extend_pairs(pairs);
    Some(format!("{}?{}", u.path(), u.query().unwrap_or("")))
}

/// A GET answer after same-origin redirects.
pub struct Answer {
    pub path: String,
    pub status: u16,
    pub kind: String,
    pub body: String,
}

/// GETs `path`, following redirects on this site (at most 5); a redirect elsewhere ends there.
pub async fn get(s: &Session, path: &str) -> Answer {
    let mut path = path.to_owned();
    for _ in 0..5 {
        let r = s.get(&path).await;
        let status = r.status().as_u16();
        if (300..400).contains(&status) {
            let to = location(&r);
            match local(&s.base, &path, &to) {
                Some(next) if !to.starts_with("http") || to.starts_with(&s.base) => {
                    path = next;
                    continue;
                }
                _ => {
                    return Answer {
                        path: to,
                        status,
                        kind: String::new(),
                        body: String::new(),
                    }
                }
            }
        }
        let kind = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = r.text().await.unwrap_or_default();
        return Answer {
            path,
            status,
            kind,
            body,
        };
    }
    panic!("{path}: more than 5 redirects");
}

/// Walks everything reachable from `/app` in the session's current language.
pub async fn crawl(s: &Session, lang: Lang, data: &[String]) -> Crawl {
    let mut out = Crawl::default();
    let mut queue: VecDeque<(String, String)> = VecDeque::from([("/app".into(), "-".into())]);
    let mut seen: HashSet<String> = queue.iter().map(|(p, _)| p.clone()).collect();
    let mut forms_seen = HashSet::new();
    while let Some((path, from)) = queue.pop_front() {
        assert!(seen.len() < 600, "the crawl does not end: {seen:?}");
        let a = get(s, &path).await;
        let at = format!("{path} (linked from {from})");
        if a.status >= 400 {
            out.problems
                .push(format!("{at}: answered {} {}", a.status, brief(&a.body)));
        }
        if a.kind.is_empty() {
            if a.path.contains("/sign-in") {
                out.problems.push(format!("{at}: signed the person out"));
            }
            continue;
        }
        if a.kind.starts_with("text/plain") {
            out.problems
                .push(format!("{at}: answered text/plain: {}", brief(&a.body)));
        }
        if !a.kind.starts_with("text/html") {
            continue;
        }
        if a.path.starts_with("/sign-in") {
            out.problems.push(format!("{at}: signed the person out"));
            continue;
        }
        out.pages.push(a.path.clone());
        out.problems.extend(
            check_page(&a.body, lang, data)
                .into_iter()
                .map(|p| format!("{} (from {from}): {p}", a.path)),
        );
        let nodes = html::parse(&a.body);
        let mut next: Vec<String> = html::links(&nodes)
            .iter()
            .filter_map(|h| local(&s.base, &a.path, h))
            .collect();
        for f in html::forms(&nodes, &a.path) {
            if f.method == "get" {
                next.extend(get_form_urls(&s.base, &f));
            } else if local(&s.base, &a.path, &f.action).is_some() {
                let names: Vec<&str> = f.fields.iter().map(|x| x.name.as_str()).collect();
                if forms_seen.insert(format!("{} {}", f.action, names.join(","))) {
                    out.post_forms.push((a.path.clone(), f));
                }
            }
        }
        for n in next {
            if seen.insert(n.clone()) {
                queue.push_back((n, a.path.clone()));
            }
        }
    }
    out
}

/// A GET form with its defaults, then with each option of each select in turn.
fn get_form_urls(base: &str, f: &Form) -> Vec<String> {
    let defaults = f.defaults();
    let mut urls: Vec<String> = with_query(base, &f.action, &defaults).into_iter().collect();
    for field in f.fields.iter().filter(|x| x.kind == "select") {
        for o in &field.options {
            let pairs: Vec<(String, String)> = defaults
                .iter()
                .map(|(k, v)| {
                    let v = if *k == field.name { o } else { v };
                    (k.clone(), v.clone())
                })
                .collect();
            urls.extend(with_query(base, &f.action, &pairs));
        }
    }
    urls
}

fn cut(s: &str) -> String {
    s.chars().take(100).collect()
}

fn brief(body: &str) -> String {
    body.chars().filter(|c| !c.is_control()).take(160).collect()
}

/// Names of roles and states as stored: never a visible text of their own in a Russian page.
const RAW: [&str; 16] = [
    "owner",
    "admin",
    "manager",
    "viewer",
    "pending",
    "failed",
    "sent",
    "delivered",
    "connected",
    "connecting",
    "disabled",
    "open",
    "closed",
    "queued",
    "dead",
    "running",
];

/// Words that are the same in both languages (names of products and protocols).
const NEUTRAL: [&str; 41] = [
    "telegram",
    "vk",
    "max",
    "avito",
    "whatsapp",
    "sms",
    "api",
    "amocrm",
    "crm",
    "url",
    "chatter",
    "cloud",
    "business",
    "sipout",
    "id",
    "json",
    "csv",
    "http",
    "https",
    "post",
    "get",
    "utm",
    "openapi",
    "swagger",
    "meta",
    "google",
    "authenticator",
    "qr",
    "totp",
    "bot",
    "botfather",
    "bearer",
    "authorization",
    "hmac",
    "sha",
    "zip",
    "ru",
    "en",
    "webhook",
    "email",
    "mail",
];

fn cyrillic(s: &str) -> bool {
    s.chars()
        .any(|c| matches!(c, 'а'..='я' | 'А'..='Я' | 'ё' | 'Ё'))
}

/// Two or more English words and nothing Russian.
fn english(s: &str) -> bool {
    let words = s
        .split(|c: char| !c.is_ascii_alphabetic() && c != '\'' && c != '-')
        .filter(|w| w.len() >= 2 && w.chars().all(|c| c.is_ascii_alphabetic()))
        .filter(|w| !NEUTRAL.contains(&w.to_ascii_lowercase().as_str()))
        .count();
    words >= 2 && !cyrillic(s)
}

/// Text that looks like a translation key the table has.
fn keys_in(s: &str) -> Vec<String> {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .map(|t| t.trim_matches('.'))
        .filter(|t| t.contains('.') && chatter_web::i18n::has(t))
        .map(str::to_owned)
        .collect()
}

/// The checks every page passes; returns what is wrong.
pub fn check_page(body: &str, lang: Lang, data: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if !body.contains("class=\"side\"") {
        problems.push("no navigation".to_owned());
    }
    let want = match lang {
        Lang::Ru => "lang=\"ru\"",
        Lang::En => "lang=\"en\"",
    };
    if !body.contains(want) {
        problems.push(format!("not in the person's language ({want} missing)"));
    }
    // The CSP allows stylesheets from our origin only: a style attribute is ignored by the
    // browser (the reports page's bars once had no width for that).
    if body.contains(" style=\"") {
        problems.push("an inline style attribute, which the CSP refuses".to_owned());
    }
    let nodes = html::parse(body);
    let strip = |s: &str| {
        let mut s = s.to_owned();
        for d in data {
            s = s.replace(d.as_str(), " ");
        }
        s
    };
    let mut check = |what: &str, raw: &str, chrome: bool| {
        let t = strip(raw);
        let t = t.trim();
        if t.is_empty() {
            return;
        }
        for k in keys_in(t) {
            problems.push(format!("untranslated key {k:?} in {what}"));
        }
        if t == "?" {
            problems.push(format!("a missing translation («?») in {what}"));
        }
        match lang {
            Lang::Ru if RAW.contains(&t) => {
                problems.push(format!("a raw name {t:?} in {what}"));
            }
            Lang::Ru if chrome && english(t) => {
                problems.push(format!("English on a Russian page in {what}: {:?}", cut(t)));
            }
            Lang::En if chrome && cyrillic(t) => {
                problems.push(format!(
                    "Russian on an English page in {what}: {:?}",
                    cut(t)
                ));
            }
            _ => {}
        }
    };
    for t in html::texts(&nodes) {
        if ["code", "pre", "textarea", "title"]
            .iter()
            .any(|n| t.inside(n))
        {
            continue;
        }
        // Options and table cells list the company's own things (sources, pipelines, people).
        let chrome = !t.inside("option") && !t.inside("td");
        let el = t.around.last().map_or("", |e| e.name.as_str());
        check(&format!("<{el}>"), t.text, chrome);
    }
    for n in &nodes {
        let Node::Open(e) = n else { continue };
        for attr in ["placeholder", "aria-label", "title", "alt"] {
            if let Some(v) = e.attr(attr) {
                check(&format!("<{} {attr}>", e.name), v, true);
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// Fails with every problem listed.
pub fn assert_none(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problems:\n{}",
        problems.len(),
        problems
            .iter()
            .take(80)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Switches the session's language (a cookie, as the EN/RU link in the header does).
pub async fn set_lang(s: &Session, lang: Lang) {
    let code = match lang {
        Lang::Ru => "ru",
        Lang::En => "en",
    };
    let r = s.get(&format!("/lang/{code}?back=/app")).await;
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn every_page_reachable_from_the_app_works_in_both_languages_for_owner_and_manager() {
    let app = TestApp::new().await;
    let fx = fixture(&app).await;
    let mut problems = Vec::new();
    let mut total = 0;
    for (who, s) in [("owner", &fx.owner), ("manager", &fx.manager)] {
        for lang in [Lang::Ru, Lang::En] {
            set_lang(s, lang).await;
            let c = crawl(s, lang, &fx.data).await;
            println!(
                "crawl as {who} in {lang:?}: {} pages, {} POST forms",
                c.pages.len(),
                c.post_forms.len()
            );
            assert!(
                c.pages.len() >= 10,
                "{who}/{lang:?} reached only {:?}",
                c.pages
            );
            total += c.pages.len();
            problems.extend(c.problems.iter().map(|p| format!("[{who} {lang:?}] {p}")));
        }
    }
    println!("crawled {total} pages in all");
    assert_none("the crawl", &problems);
    app.stop().await;
}

#[test]
fn the_language_heuristics() {
    assert!(english("Save the rule"));
    assert!(!english("Сохранить правило"));
    assert!(!english("Telegram API"));
    assert!(!english("Подключить amoCRM"));
    assert!(cyrillic("Ёлка"));
    assert_eq!(keys_in("see err.required here"), vec!["err.required"]);
    assert!(keys_in("anna@example.ru").is_empty());
}
