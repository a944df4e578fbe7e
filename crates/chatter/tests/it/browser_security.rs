//! In headless Chromium: no page breaks its own Content-Security-Policy (every
//! `securitypolicyviolation` event is collected from the first moment of each page), while the
//! policy is really in force (an injected inline script does not run); and a manager clicks
//! through 20 conversations and back and forward through them without the inbox stalling
//! (issue 11: pages left in the back/forward cache used to keep their live stream open until
//! the browser had no connection left for the site). Two things prevent that now: private
//! pages are `no-store`, which Chromium does not keep in that cache while they hold a
//! connection, and `app.js` closes the stream on `pagehide` and reopens it on `pageshow`; each
//! alone passes this test, neither (today's main) stalls at the seventh conversation.

use crate::browser_inbox::{Window, WAIT};
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Browser, TestApp};
use fantoccini::wd::TimeoutConfiguration;
use std::time::Duration;

/// Collects every CSP violation of the page into `window.chatterCsp`.
const WATCH_CSP: &str = "window.chatterCsp = [];\
    document.addEventListener('securitypolicyviolation', function (e) {\
      window.chatterCsp.push(e.effectiveDirective + ' blocked ' + (e.blockedURI || '?') +\
        ' at ' + (e.sourceFile || location.pathname) + ':' + e.lineNumber + ' ' + (e.sample || ''));\
    });";

/// Signs up through the form, connects a bot; returns the window and the bot's token.
async fn company(app: &TestApp, shots: &str) -> (Window, String) {
    let token = app.telegram.create_bot("romashka_shop_bot", "Ромашка");
    let w = Window::open(&app.url, shots, 1280, 800).await;
    w.browser
        .on_every_page(WATCH_CSP)
        .await
        .expect("watch CSP violations");
    w.sign_up_with_bot(&token).await;
    (w, token)
}

async fn violations(w: &Window) -> Vec<String> {
    let v = w
        .browser
        .client()
        .execute("return window.chatterCsp || null;", vec![])
        .await
        .expect("read the violations");
    match v {
        serde_json::Value::Array(a) => a
            .into_iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect(),
        other => panic!("the CSP watcher did not run on the page: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_breaks_its_content_security_policy() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let (w, token) = company(&app, "csp").await;
    app.telegram.customer_writes(
        &token,
        CustomerMessage {
            photo: Some(crate::web_security::PNG.to_vec()),
            caption: Some("Вот такой диван".into()),
            ..CustomerMessage::text(6301, "Ольга", "")
        },
    );
    w.goto("/app/inbox").await;
    w.wait_text_in("li.conv", "Вот такой диван").await;
    w.click("li.conv a").await;
    w.wait_path(|p| p.starts_with("/app/inbox/") && p.len() > "/app/inbox/".len())
        .await;
    let thread = w
        .browser
        .client()
        .current_url()
        .await
        .expect("url")
        .path()
        .to_string();
    let mut wrong = Vec::new();
    for (path, ready) in [
        ("/app", "main h1"),
        ("/app/inbox", "#conv-list"),
        (thread.as_str(), "#thread-messages img"),
        ("/app/sources", "main h1"),
        ("/app/sources/new", "main h1"),
        ("/app/settings", "main h1"),
        ("/app/team", "main h1"),
        ("/app/profile", "main h1"),
        ("/app/crm", "main h1"),
        ("/app/crm/settings", "main h1"),
        ("/app/crm/rules", "main h1"),
        ("/app/crm/rules/new", "main h1"),
        ("/app/audit", "main h1"),
        ("/api/docs/", ".swagger-ui .opblock"),
    ] {
        w.goto(path).await;
        if let Err(e) = w.browser.wait_for(ready, WAIT).await {
            panic!("{path}: {e:#}\n{}", w.where_am_i().await);
        }
        // Give late work (Swagger UI's rendering, lazy images, the live stream) a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        wrong.extend(
            violations(&w)
                .await
                .into_iter()
                .map(|v| format!("{path}: {v}")),
        );
    }
    w.shot("api-docs").await;
    // Signed out: the sign-in and sign-up pages.
    w.goto("/app").await;
    w.click("#sign-out").await;
    w.wait_path(|p| p == "/sign-in").await;
    for path in ["/sign-in", "/sign-up", "/forgot-password"] {
        w.goto(path).await;
        w.browser.wait_for("main h1", WAIT).await.expect("page");
        wrong.extend(
            violations(&w)
                .await
                .into_iter()
                .map(|v| format!("{path}: {v}")),
        );
    }
    assert!(wrong.is_empty(), "CSP violations:\n{}", wrong.join("\n"));

    // The policy is in force: an inline script put into the page does not run.
    let ran = w
        .browser
        .client()
        .execute(
            "var s = document.createElement('script');\
             s.textContent = 'window.chatterInline = true;';\
             document.head.appendChild(s);\
             return window.chatterInline === true;",
            vec![],
        )
        .await
        .expect("inject a script");
    assert_eq!(ran, serde_json::Value::Bool(false), "inline script ran");
    let seen = violations(&w).await;
    assert!(
        seen.iter().any(|v| v.starts_with("script-src")),
        "the blocked inline script is reported: {seen:?}"
    );
    w.close().await;
}

/// The path of the page the window shows.
async fn path_of(w: &Window) -> String {
    w.browser
        .client()
        .current_url()
        .await
        .expect("url")
        .path()
        .to_string()
}

/// Waits (at most `NAV`) until the window shows the thread at `path`, fully loaded.
async fn shows_thread(w: &Window, path: &str, step: &str) {
    let deadline = tokio::time::Instant::now() + NAV;
    loop {
        let ready = w
            .browser
            .client()
            .execute(
                "return document.readyState === 'complete' && !!document.getElementById('thread-messages') ? location.pathname : '';",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if ready == path {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            w.shot(&format!("stalled-{step}")).await;
            panic!(
                "{step}: {path} did not load within {NAV:?} (at {})",
                path_of(w).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long one navigation may take before it counts as a stall.
const NAV: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_conversations_in_a_row_and_back_and_forward_never_stall() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let (w, token) = company(&app, "twenty").await;
    for i in 0..20 {
        app.telegram.customer_writes(
            &token,
            CustomerMessage::text(6400 + i, &format!("Покупатель {i}"), "Есть в наличии?"),
        );
    }
    w.goto("/app/inbox").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while w.texts("li.conv").await.len() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the 20 conversations never all showed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let links = w
        .browser
        .client()
        .execute(
            "return Array.from(document.querySelectorAll('li.conv a')).map(function (a) { return a.getAttribute('href'); });",
            vec![],
        )
        .await
        .expect("the conversation links");
    let links: Vec<String> = links
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(links.len(), 20, "{links:?}");
    w.browser
        .client()
        .update_timeouts(TimeoutConfiguration::new(None, Some(NAV), None))
        .await
        .expect("a page-load timeout");

    // One after another, by clicking in the list.
    for (i, href) in links.iter().enumerate() {
        w.click(&format!("li.conv a[href=\"{href}\"]")).await;
        shows_thread(&w, href, &format!("click {i}")).await;
    }
    // Back through all of them, then forward again.
    for i in (0..links.len() - 1).rev() {
        w.browser
            .client()
            .back()
            .await
            .unwrap_or_else(|e| panic!("back to {i}: {e}"));
        shows_thread(&w, &links[i], &format!("back {i}")).await;
    }
    for (i, href) in links.iter().enumerate().skip(1) {
        w.browser
            .client()
            .forward()
            .await
            .unwrap_or_else(|e| panic!("forward to {i}: {e}"));
        shows_thread(&w, href, &format!("forward {i}")).await;
    }
    // And the page shown last is still live.
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(6419, "Покупатель 19", "Беру, оформляйте"),
    );
    w.wait_text_in("li.conv", "Беру, оформляйте").await;
    w.close().await;
}
