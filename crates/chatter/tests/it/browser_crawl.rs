//! The crawler's pages in the browser: at 360 px, every page the owner can reach scrolls only
//! up and down — nothing sticks out to the right (`scrollWidth <= innerWidth`). New pages are
//! measured without editing this test, since the crawler finds them.

use crate::crawl::{self, Lang};
use crate::messages::PW;
use chatter_testkit::{Browser, TestApp};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_scrolls_sideways_at_360_px() {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let fx = crawl::fixture(&app).await;
    let found = crawl::crawl(&fx.owner, Lang::Ru, &fx.data).await;
    crawl::assert_none("the crawl", &found.problems);
    let b = Browser::start(360, 780).await.expect("the browser starts");
    b.goto(&app.at("/sign-in")).await.expect("sign-in page");
    b.fill("input[name=email]", "anna@example.ru")
        .await
        .expect("email");
    b.fill("input[name=password]", PW).await.expect("password");
    b.click("#sign-in-submit").await.expect("sign in");
    b.wait_for("nav.side", Duration::from_secs(20))
        .await
        .expect("signed in");
    let mut wide = Vec::new();
    for page in &found.pages {
        b.goto(&app.at(page)).await.expect("open the page");
        let (content, window) = b.widths().await.expect("widths");
        if content > window {
            let name = format!(
                "wide-{}",
                page.trim_start_matches('/')
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            );
            let shot = b.screenshot(&name).await.ok();
            wide.push(format!(
                "{page}: {content} px wide in a {window} px window ({shot:?})"
            ));
        }
    }
    println!("measured {} pages at 360 px", found.pages.len());
    b.close().await.expect("the browser closes");
    crawl::assert_none("pages wider than a 360 px phone", &wide);
    app.stop().await;
}
