//! No server-side request forgery: an API source's outgoing webhook URL may lead only to the
//! internet. Loopback, private, link-local (cloud metadata) and other non-public addresses are
//! refused when saved (form and API) and when connecting (after DNS, for URLs stored before the
//! guard or while private targets were allowed); redirects are not followed; the delivery log
//! keeps the status and timing, never the receiver's answer.

use crate::api_source::{company_with_api_source, message_body, now_secs, post_signed};
use crate::messages::eventually;
use chatter_core::sources::api as api_source;
use chatter_core::{Actor, CoreConfig, ReqMeta};
use chatter_domain::Role;
use chatter_testkit::{Session, TestApp};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A receiver on loopback that counts the calls it gets and answers with `answer`.
async fn receiver(
    answer: impl Fn() -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let app = axum::Router::new().fallback(move || {
        let (c, answer) = (c.clone(), answer.clone());
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            answer()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://127.0.0.1:{port}"), calls)
}

fn ok() -> axum::response::Response {
    use axum::response::IntoResponse;
    axum::http::StatusCode::NO_CONTENT.into_response()
}

/// The stored webhook URL of the source.
async fn stored_url(app: &TestApp, id: &str) -> Option<String> {
    use sea_orm::EntityTrait;
    let s =
        chatter_store::entity::source::Entity::find_by_id(id.parse::<uuid::Uuid>().expect("id"))
            .one(&app.core.db)
            .await
            .expect("lookup")
            .expect("source");
    api_source::settings_of(&s).webhook_url
}

async fn api_key(s: &Session) -> String {
    crate::api::create_key(s, "ssrf").await
}

#[tokio::test]
async fn webhook_urls_into_private_networks_are_refused_when_saved() {
    let app = TestApp::builder().deny_private_targets().start().await;
    let (s, id, _) = company_with_api_source(&app).await;
    let (port_url, calls) = receiver(ok).await;
    let page = format!("/app/api-sources/{id}");
    let port = port_url.rsplit(':').next().expect("port").to_string();
    for url in [
        format!("{port_url}/hook"),
        format!("http://localhost:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.7/hook".to_string(),
        "http://100.64.1.1/hook".to_string(),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        "http://0.0.0.0/".to_string(),
    ] {
        let r = s
            .post_from(&page, &format!("{page}/webhook"), &[("webhook_url", &url)])
            .await;
        assert_eq!(r.status(), 422, "{url} must be refused");
        let html = r.text().await.expect("body");
        assert!(
            html.contains("ведёт во внутреннюю сеть"),
            "{url}: the form says why:\n{html}"
        );
        assert_eq!(stored_url(&app, &id).await, None, "{url} changed nothing");
    }
    let r = s
        .post_from(
            &page,
            &format!("{page}/webhook"),
            &[("webhook_url", "http://no-such-host.invalid/hook")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("Не удалось найти такой сервер"));

    // The API refuses the same way, with the field named.
    let key = api_key(&s).await;
    let http = reqwest::Client::new();
    let r = http
        .post(app.at(&format!("/api/v1/api-sources/{id}/webhook-url")))
        .bearer_auth(&key)
        .json(&serde_json::json!({"url": format!("http://localhost:{port}/hook")}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(body["error"]["fields"][0]["field"], "webhook_url", "{body}");
    assert_eq!(
        body["error"]["fields"][0]["code"], "url_not_public",
        "{body}"
    );
    assert_eq!(stored_url(&app, &id).await, None);
    // An ordinary clear through the API works.
    let r = http
        .post(app.at(&format!("/api/v1/api-sources/{id}/webhook-url")))
        .bearer_auth(&key)
        .json(&serde_json::json!({"url": ""}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing was ever called");
    app.stop().await;
}

/// The company's owner, to save a URL as if private targets had been allowed then.
async fn owner(app: &TestApp, email: &str) -> Actor {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let u = chatter_store::entity::user::Entity::find()
        .filter(chatter_store::entity::user::Column::Email.eq(email))
        .one(&app.core.db)
        .await
        .expect("lookup")
        .expect("user");
    let m = chatter_store::entity::membership::Entity::find()
        .filter(chatter_store::entity::membership::Column::UserId.eq(u.id))
        .one(&app.core.db)
        .await
        .expect("lookup")
        .expect("membership");
    Actor {
        user_id: Some(u.id.into()),
        company_id: m.company_id.into(),
        role: Role::Owner,
        label: email.into(),
        meta: ReqMeta::default(),
    }
}

#[tokio::test]
async fn a_stored_url_that_leads_to_a_private_address_is_refused_when_connecting() {
    let app = TestApp::builder().deny_private_targets().start().await;
    let (s, id, secret) = company_with_api_source(&app).await;
    let (base, calls) = receiver(ok).await;
    let port = base.rsplit(':').next().expect("port").to_string();
    // Saved while the instance allowed private targets (or before this guard existed); the
    // instance now runs with them refused.
    let mut then = app.core.clone();
    then.config = Arc::new(CoreConfig {
        allow_private_targets: true,
        ..(*app.core.config).clone()
    });
    let boss = owner(&app, "anna@example.ru").await;
    let source: chatter_domain::SourceId = id.parse().expect("id");
    let page = format!("/app/api-sources/{id}");
    let http = reqwest::Client::new();
    // A name (resolved at connect time), then a literal loopback address.
    for (n, url) in [
        format!("http://localhost:{port}/hook"),
        format!("{base}/hook"),
    ]
    .into_iter()
    .enumerate()
    {
        api_source::set_webhook_url(&then, &boss, source, &url)
            .await
            .expect("saved while allowed");
        let body = message_body(&format!("m-{n}"), "client-1", "Здравствуйте");
        let r = post_signed(&http, &app, &id, &secret, now_secs(&app), &body, None).await;
        assert_eq!(r.status(), 200);
        eventually("the delivery is refused and logged", || async {
            let log = s.html(&page).await;
            log.matches("data-status=\"failed\"").count() > n && log.contains("refused:")
        })
        .await;
        api_source::set_webhook_url(&then, &boss, source, "")
            .await
            .expect("cleared");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the private receiver was never called"
    );
    app.stop().await;
}

/// A public-looking receiver that sends Chatter elsewhere and tells it something it must not
/// repeat: the redirect is not followed, the log has the status and timing only.
#[tokio::test]
async fn redirects_are_not_followed_and_the_log_keeps_no_answer() {
    use axum::response::IntoResponse;
    let app = TestApp::new().await;
    let (s, id, secret) = company_with_api_source(&app).await;
    let (inner, inner_calls) = receiver(ok).await;
    let target = format!("{inner}/internal-admin");
    let (outer, outer_calls) = receiver(move || {
        (
            axum::http::StatusCode::FOUND,
            [(axum::http::header::LOCATION, target.clone())],
            "db_password=hunter2",
        )
            .into_response()
    })
    .await;
    let page = format!("/app/api-sources/{id}");
    let r = s
        .post_from(
            &page,
            &format!("{page}/webhook"),
            &[("webhook_url", &format!("{outer}/hook"))],
        )
        .await;
    assert_eq!(r.status(), 303);
    let http = reqwest::Client::new();
    let body = message_body("r-1", "client-2", "Добрый день");
    let r = post_signed(&http, &app, &id, &secret, now_secs(&app), &body, None).await;
    assert_eq!(r.status(), 200);
    eventually("the 302 is logged", || async {
        s.html(&page).await.contains("HTTP 302 in ")
    })
    .await;
    let log = s.html(&page).await;
    assert!(
        !log.contains("hunter2"),
        "the answer's body is not shown:\n{log}"
    );
    assert!(outer_calls.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        inner_calls.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
    app.stop().await;
}
