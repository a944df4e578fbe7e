//! The browser driver can open a page, fill a form, click and read the result, on a desktop and
//! a phone-sized window.

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use chatter_testkit::Browser;
use std::time::Duration;

const PAGE: &str = r#"<!doctype html>
<html lang="ru">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Проверка</title></head>
<body>
  <form id="greet" onsubmit="return false">
    <label>Имя <input id="name" name="name" value="черновик"></label>
    <button id="go" type="button"
      onclick="document.getElementById('out').textContent = 'Привет, ' + document.getElementById('name').value + '!'">
      Поздороваться</button>
  </form>
  <p id="out">ещё никто</p>
  <p id="width"></p>
  <script>document.getElementById('width').textContent = String(window.innerWidth);</script>
</body>
</html>"#;

async fn serve_page() -> String {
    let app = Router::new().route("/", get(|| async { Html(PAGE) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the page server");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve the page");
    });
    format!("http://{addr}/")
}

#[tokio::test]
async fn fills_a_form_and_reads_the_result_at_desktop_and_phone_sizes() {
    if !Browser::available_or_skip() {
        return;
    }
    let url = serve_page().await;
    for (width, height, name) in [(1280, 800, "Анна"), (390, 844, "Борис")] {
        let browser = Browser::start(width, height)
            .await
            .expect("start the browser");
        browser.goto(&url).await.expect("open the page");
        assert_eq!(
            browser.text("#out").await.expect("initial text"),
            "ещё никто"
        );
        browser.fill("#name", name).await.expect("type the name");
        browser.click("#go").await.expect("click the button");
        assert_eq!(
            browser.text("#out").await.expect("greeting"),
            format!("Привет, {name}!")
        );
        let inner_width: u32 = browser
            .text("#width")
            .await
            .expect("width")
            .parse()
            .expect("a number");
        assert!(
            inner_width <= width && inner_width + 40 >= width,
            "viewport {inner_width} for a {width}px window"
        );
        assert!(browser
            .page_source()
            .await
            .expect("source")
            .contains("Поздороваться"));
        assert!(browser
            .wait_for("#missing", Duration::from_millis(300))
            .await
            .is_err());
        let shot = browser
            .screenshot(&format!("browser_smoke_{width}x{height}"))
            .await
            .expect("screenshot");
        let png = std::fs::read(&shot).expect("read the screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", shot.display());
        browser.close().await.expect("close the browser");
    }
}
