//! The web surface as an attacker probes it (issue 9): customer files never run in Chatter's
//! origin (only sniffed raster pictures inline; everything else a sandboxed download), every
//! answer carries the security headers (CSP without inline script, no framing, nosniff, the
//! referrer policy, HSTS behind https, `no-store` on private answers), the language switch
//! redirects only to paths on this site, and a live event stream ends within seconds once its
//! session or membership is gone.

use crate::messages::{company_with_bot, count, PW};
use crate::telegram::{conversation_with, thread_shows};
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Session, TestApp};
use std::time::Duration;

/// A 1×1 PNG.
pub(crate) const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];
const SVG: &[u8] = br#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>fetch('/app/team')</script><rect width="10" height="10"/></svg>"#;
const HTML: &[u8] =
    b"<!doctype html><html><body><script>fetch('/app/settings')</script></body></html>";
const FILE_CSP: &str = "sandbox; default-src 'none'";

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// What is wrong with the security headers of an answer to `path`, if anything. The route walk
/// (`permissions::visit`) asks this of every answer of every route.
pub(crate) fn headers_complaint(path: &str, r: &reqwest::Response) -> Option<String> {
    let csp = header(r, "content-security-policy");
    let mut wrong = Vec::new();
    if path.starts_with("/app/files/") && r.status() == 200 {
        if csp != FILE_CSP {
            wrong.push(format!("file CSP {csp:?}"));
        }
    } else {
        let script = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .unwrap_or("");
        if !script.starts_with("script-src 'self'") || script.contains("unsafe-inline") {
            wrong.push(format!("script-src {script:?}"));
        }
        if !csp.contains("frame-ancestors 'none'") {
            wrong.push(format!("CSP {csp:?} allows framing"));
        }
    }
    for (name, want) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
        ("x-frame-options", "DENY"),
    ] {
        if header(r, name) != want {
            wrong.push(format!("{name}: {:?}", header(r, name)));
        }
    }
    let private = path == "/app" || path.starts_with("/app/") || path.starts_with("/api/v1/");
    if private && header(r, "cache-control") != "no-store" {
        wrong.push(format!("cache-control: {:?}", header(r, "cache-control")));
    }
    if !header(r, "strict-transport-security").is_empty() {
        wrong.push("HSTS over plain http".into());
    }
    (!wrong.is_empty()).then(|| format!("{path} headers: {}", wrong.join(", ")))
}

/// The `/app/files/…` link of the (only) attachment of the message captioned `caption`, and
/// whether the thread shows it as a picture.
fn file_of(page: &str, caption: &str) -> (String, bool) {
    let block = crate::telegram::message_block(page, caption)
        .unwrap_or_else(|| panic!("no message {caption:?} in {page}"));
    let block = block.split("<div id=\"msg-").next().unwrap_or(block);
    let href = block
        .split("href=\"/app/files/")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .unwrap_or_else(|| panic!("no file link in {block}"));
    (format!("/app/files/{href}"), block.contains("<img"))
}

#[tokio::test]
async fn customer_files_never_run_in_chatters_origin() {
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    let customer = |caption: &str| CustomerMessage {
        caption: Some(caption.into()),
        ..CustomerMessage::text(6101, "Ольга", "")
    };
    // An SVG with script, sent as a document that says it is an image.
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            document: Some((SVG.to_vec(), "диван.svg".into(), "image/svg+xml".into())),
            ..customer("svg-документ")
        },
    );
    // A "photo" that is an HTML page.
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            photo: Some(HTML.to_vec()),
            ..customer("html-фото")
        },
    );
    // A document whose reported type is text/html, named like a photo.
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            document: Some((HTML.to_vec(), "photo\".jpg".into(), "text/html".into())),
            ..customer("html-документ")
        },
    );
    // A real PNG, sent as a document with a wrong type.
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            document: Some((PNG.to_vec(), "схема.png".into(), "text/html".into())),
            ..customer("png-документ")
        },
    );
    // A real PNG as a photo.
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            photo: Some(PNG.to_vec()),
            ..customer("png-фото")
        },
    );
    let conv = conversation_with(&s, "Ольга").await;
    let mut page = thread_shows(&s, &conv, "png-фото").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while page.matches("href=\"/app/files/").count() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the five files were never fetched: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        page = s.html(&format!("/app/inbox/{conv}")).await;
    }

    for (caption, name) in [
        (
            "svg-документ",
            "attachment; filename=\"_____.svg\"; filename*=UTF-8''%D0%B4%D0%B8%D0%B2%D0%B0%D0%BD.svg",
        ),
        (
            "html-фото",
            "attachment; filename=\"photo-0\"; filename*=UTF-8''photo-0",
        ),
        (
            "html-документ",
            "attachment; filename=\"photo_.jpg\"; filename*=UTF-8''photo_.jpg",
        ),
    ] {
        let (href, img) = file_of(&page, caption);
        assert!(!img, "{caption} is not shown as a picture");
        let r = s.get(&href).await;
        assert_eq!(r.status(), 200, "{caption}");
        assert_eq!(
            header(&r, "content-type"),
            "application/octet-stream",
            "{caption}"
        );
        assert_eq!(header(&r, "content-disposition"), name, "{caption}");
        assert_eq!(header(&r, "content-security-policy"), FILE_CSP, "{caption}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{caption}");
        assert_eq!(header(&r, "cache-control"), "no-store", "{caption}");
    }
    for (caption, name) in [
        (
            "png-документ",
            "inline; filename=\"_____.png\"; filename*=UTF-8''%D1%81%D1%85%D0%B5%D0%BC%D0%B0.png",
        ),
        (
            "png-фото",
            "inline; filename=\"photo-0\"; filename*=UTF-8''photo-0",
        ),
    ] {
        let (href, img) = file_of(&page, caption);
        assert!(img, "{caption} is shown as a picture");
        let r = s.get(&href).await;
        assert_eq!(r.status(), 200, "{caption}");
        assert_eq!(header(&r, "content-type"), "image/png", "{caption}");
        assert_eq!(header(&r, "content-disposition"), name, "{caption}");
        assert_eq!(header(&r, "content-security-policy"), FILE_CSP, "{caption}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{caption}");
        assert_eq!(r.bytes().await.expect("body").to_vec(), PNG, "{caption}");
    }
}

async fn api_key(s: &Session) -> String {
    crate::api::create_key(s, "k").await
}

#[tokio::test]
async fn every_kind_of_answer_carries_the_security_headers() {
    let app = TestApp::new().await;
    let (s, _, _) = company_with_bot(&app).await;
    let key = api_key(&s).await;
    let anon = app.client();
    let mut wrong = Vec::new();
    for path in [
        "/sign-in",
        "/sign-up",
        "/healthz",
        "/no-such-page",
        "/api/docs/",
        "/api/openapi.json",
    ] {
        let r = anon.get(app.at(path)).send().await.expect("GET");
        wrong.extend(headers_complaint(path, &r));
    }
    for path in ["/app", "/app/inbox", "/app/settings", "/app/events?after=0"] {
        let r = s.get(path).await;
        wrong.extend(headers_complaint(path, &r));
    }
    for path in ["/api/v1/me", "/api/v1/conversations"] {
        let r = anon
            .get(app.at(path))
            .bearer_auth(&key)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200, "{path}");
        wrong.extend(headers_complaint(path, &r));
    }
    // A refused form and a webhook answer too.
    let r = s
        .http
        .post(app.at("/app/team/invite"))
        .send()
        .await
        .expect("POST");
    wrong.extend(headers_complaint("/app/team/invite", &r));
    let r = anon
        .post(app.at(&format!("/hooks/telegram/{}", uuid::Uuid::new_v4())))
        .body("{}")
        .send()
        .await
        .expect("POST");
    wrong.extend(headers_complaint("/hooks/telegram", &r));
    assert!(wrong.is_empty(), "{wrong:#?}");

    // No page may be framed, run inline script, post forms elsewhere or frame anything.
    let r = anon.get(app.at("/sign-in")).send().await.expect("GET");
    let csp = header(&r, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "style-src 'self';",
        "frame-src 'none'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("telegram.org"), "{csp}");
    // The pages themselves carry no inline script, handler or style.
    for path in [
        "/app",
        "/app/inbox",
        "/app/sources",
        "/app/settings",
        "/app/profile",
        "/app/team",
        "/app/crm",
        "/app/crm/rules",
        "/app/crm/rules/new",
    ] {
        let page = s.html(path).await;
        for bad in [
            "<script>",
            "<style",
            " style=\"",
            " onclick=",
            " onsubmit=",
            " onload=",
        ] {
            assert!(!page.contains(bad), "{path} has {bad}");
        }
    }
}

#[tokio::test]
async fn only_pages_with_the_telegram_widget_allow_telegram_and_hsts_follows_https() {
    let app = TestApp::builder()
        .with_telegram_login("4242:platform-token", "chatter_login_bot")
        .start()
        .await;
    let anon = app.client();
    let r = anon.get(app.at("/sign-in")).send().await.expect("GET");
    let csp = header(&r, "content-security-policy");
    let page = r.text().await.expect("body");
    assert!(
        page.contains("telegram-widget.js"),
        "the widget is on the page"
    );
    assert!(
        !page.contains("data-onauth"),
        "no callback for the widget to eval"
    );
    assert!(
        csp.contains("script-src 'self' https://telegram.org;"),
        "{csp}"
    );
    assert!(
        csp.contains("frame-src https://oauth.telegram.org;"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    for path in ["/sign-up", "/forgot-password"] {
        let r = anon.get(app.at(path)).send().await.expect("GET");
        let csp = header(&r, "content-security-policy");
        assert!(!csp.contains("telegram.org"), "{path}: {csp}");
    }
    let s = Session::sign_up(&app, "Ромашка", "Анна", "anna@example.ru", PW).await;
    let r = s.get("/app/profile").await;
    assert!(
        header(&r, "content-security-policy").contains("script-src 'self' https://telegram.org;")
    );
    let r = s.get("/app/team").await;
    assert!(!header(&r, "content-security-policy").contains("telegram.org"));
    assert_eq!(header(&r, "strict-transport-security"), "", "plain http");

    // The same product at an https public address: HSTS on every answer.
    let mut core = app.core.clone();
    let mut cfg = (*core.config).clone();
    cfg.public_url = "https://chatter.example".into();
    core.config = std::sync::Arc::new(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let web = chatter_web::WebConfig {
        database_url: app.db.url.clone(),
        ..chatter_web::WebConfig::default()
    };
    let server = chatter_web::server::start(core, web, Some(listener), None).await;
    for path in ["/sign-in", "/healthz", "/app"] {
        let r = anon.get(format!("{url}{path}")).send().await.expect("GET");
        assert_eq!(
            header(&r, "strict-transport-security"),
            "max-age=31536000",
            "{path}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_language_switch_redirects_only_to_paths_on_this_site() {
    let app = TestApp::new().await;
    let http = app.client();
    let go = |back: Option<&str>, referer: Option<&str>| {
        let mut req = http.get(app.at("/lang/en"));
        if let Some(b) = back {
            req = req.query(&[("back", b)]);
        }
        if let Some(r) = referer {
            req = req.header("referer", r);
        }
        async move {
            let r = req.send().await.expect("GET");
            assert_eq!(r.status(), 303);
            header(&r, "location")
        }
    };
    for evil in [
        "//evil.example",
        "//evil.example/app",
        "/\\evil.example",
        "/\\/evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "http:evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        "/\n/evil.example",
        "/app\r\nSet-Cookie: chatter_session=x",
        "evil.example",
        "",
    ] {
        assert_eq!(go(Some(evil), None).await, "/", "back={evil:?}");
    }
    for evil in [
        "https://evil.example/app/inbox",
        "http://evil.example//x",
        "not a url",
    ] {
        assert_eq!(go(None, Some(evil)).await, "/", "referer {evil:?}");
    }
    // Our own page in the Referer, with a path that would leave the site.
    assert_eq!(
        go(None, Some(&format!("{}//evil.example", app.url))).await,
        "/"
    );
    // What stays: a path here, from `back` or from our own Referer.
    assert_eq!(
        go(Some("/app/inbox?status=open"), None).await,
        "/app/inbox?status=open"
    );
    assert_eq!(
        go(None, Some(&app.at("/app/sources?x=1"))).await,
        "/app/sources?x=1"
    );
    assert_eq!(go(None, None).await, "/");
}

/// An open `/app/events` stream, read as raw text.
struct Stream {
    resp: reqwest::Response,
    text: String,
}

impl Stream {
    async fn open(s: &Session) -> Stream {
        let resp = s
            .http
            .get(format!("{}/app/events", s.base))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("open the event stream");
        assert_eq!(resp.status(), 200);
        Stream {
            resp,
            text: String::new(),
        }
    }

    /// Reads until `needle` shows up; panics after 20 s.
    async fn until(&mut self, needle: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !self.text.contains(needle) {
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .unwrap_or_else(|_| panic!("{needle:?} never came: {}", self.text))
                .expect("read the stream")
                .unwrap_or_else(|| panic!("the stream ended before {needle:?}"));
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads until the server ends the stream; `false` if it is still open after `secs`.
    async fn ends_within(&mut self, secs: u64) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => return false,
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Ok(Ok(Some(chunk))) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
            }
        }
    }
}

/// A company with a bot, its owner, and a manager who has the live stream open and has seen
/// the first customer message on it.
async fn manager_watching(app: &TestApp) -> (Session, Session, String, Stream) {
    let (owner, token, _) = company_with_bot(app).await;
    let manager = crate::team::join_new(app, &owner, "boris@example.ru", "Борис", "manager").await;
    let mut stream = Stream::open(&manager).await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6201, "Ирина", "Первое сообщение"),
    );
    stream.until("Первое сообщение").await;
    (owner, manager, token, stream)
}

async fn customer_writes_again(app: &TestApp, owner: &Session, token: &str) {
    app.telegram.customer_writes(
        token,
        CustomerMessage::text(6201, "Ирина", "Секретное второе"),
    );
    crate::telegram::within(20, "the second message is stored", || async {
        count(app, "SELECT count(*) FROM messages").await == 2
    })
    .await;
    let conv = conversation_with(owner, "Ирина").await;
    thread_shows(owner, &conv, "Секретное второе").await;
}

#[tokio::test]
async fn a_removed_member_stops_receiving_live_messages_within_seconds() {
    let app = TestApp::new().await;
    let (owner, _manager, token, mut stream) = manager_watching(&app).await;
    let boris = crate::team::user_id(&app, "boris@example.ru").await;
    let r = owner
        .post_from(
            "/app/team",
            &format!("/app/team/members/{boris}/remove"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303, "the owner removes the manager");
    // A customer writes right away: the stream must not carry it.
    customer_writes_again(&app, &owner, &token).await;
    assert!(stream.ends_within(6).await, "the stream is still open");
    assert!(
        !stream.text.contains("Секретное второе"),
        "a removed member received a later message"
    );
}

#[tokio::test]
async fn signing_out_everywhere_ends_open_live_streams() {
    let app = TestApp::new().await;
    let (owner, manager, token, mut stream) = manager_watching(&app).await;
    let r = manager
        .post_from("/app/profile", "/sign-out-everywhere", &[])
        .await;
    assert_eq!(r.status(), 303);
    assert!(stream.ends_within(6).await, "the stream is still open");
    customer_writes_again(&app, &owner, &token).await;
    assert!(!stream.text.contains("Секретное второе"));
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_live_streams() {
    let app = TestApp::new().await;
    let (owner, _manager, token, mut stream) = manager_watching(&app).await;
    // The manager, on another device, changes the password.
    let (other, r) = Session::sign_in(&app, "boris@example.ru", PW).await;
    assert_eq!(r.status(), 303);
    let r = other
        .post_from(
            "/app/profile",
            "/app/profile/password",
            &[
                ("current_password", PW),
                ("new_password", "совсем другой пароль 42"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "the password is changed");
    assert!(stream.ends_within(6).await, "the stream is still open");
    customer_writes_again(&app, &owner, &token).await;
    assert!(!stream.text.contains("Секретное второе"));
}

#[tokio::test]
async fn private_pages_and_api_answers_are_never_stored_by_the_browser() {
    let app = TestApp::new().await;
    let (s, _, _) = company_with_bot(&app).await;
    let key = api_key(&s).await;
    for path in [
        "/app",
        "/app/inbox",
        "/app/settings",
        "/app/team",
        "/app/profile",
        "/app/no-such-page",
    ] {
        let r = s.get(path).await;
        assert_eq!(header(&r, "cache-control"), "no-store", "{path}");
    }
    let r = app
        .client()
        .get(app.at("/api/v1/sources"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "no-store", "/api/v1/sources");
    // After signing out, the same address answers with the sign-in, not the old page.
    let r = s.post_from("/app", "/sign-out", &[]).await;
    assert_eq!(r.status(), 303);
    let r = s.get("/app/settings").await;
    assert_eq!(crate::messages::location(&r), "/sign-in");
    assert_eq!(header(&r, "cache-control"), "no-store");
}
