//! A company's website as the API source sees it: a receiver of Chatter's outgoing webhooks
//! (`POST /chatter-webhook`) that checks the signature the way the README tells integrators to
//! (`X-Chatter-Signature: sha256=HMAC-SHA256(secret, "{X-Chatter-Timestamp}.{body}")`, the
//! timestamp within five minutes), keeps each delivery once by `X-Chatter-Delivery`, and shows
//! what it received on its own page (`GET /`), newest first — where a demo visitor sees the
//! manager's answers arrive "on the site".
//!
//! Answers: 401 for a missing or wrong signature or a stale timestamp, 400 for a body that is
//! not JSON, 200 otherwise (also for a repeated delivery, which is not stored twice).

use crate::server::{escape_html, PageServer};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{Arc, Mutex};

/// One delivery the site accepted.
#[derive(Clone, Debug)]
pub struct Received {
    pub delivery: String,
    pub event: String,
    pub body: serde_json::Value,
}

impl Received {
    /// The message text of a `message.created`, if the body has one.
    pub fn text(&self) -> Option<&str> {
        self.body.pointer("/data/message/text")?.as_str()
    }

    /// `in` (the customer's) or `out` (a manager's answer) for a `message.created`.
    pub fn direction(&self) -> Option<&str> {
        self.body.pointer("/data/message/direction")?.as_str()
    }
}

#[derive(Default)]
struct Inner {
    secret: String,
    received: Vec<Received>,
    refused: u64,
}

type Shared = Arc<Mutex<Inner>>;

/// The running site. Dropping it stops the server.
pub struct FakeWebsite {
    server: PageServer,
    state: Shared,
}

impl FakeWebsite {
    /// Listens on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<FakeWebsite> {
        let state: Shared = Arc::default();
        let app = Router::new()
            .route("/", get(page))
            .route("/chatter-webhook", post(receive))
            .with_state(Arc::clone(&state));
        let server = PageServer::start(app, "the fake website stopped").await?;
        Ok(FakeWebsite { server, state })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url.clone()
    }

    /// The URL to set as the API source's outgoing webhook.
    pub fn webhook_url(&self) -> String {
        format!("{}/chatter-webhook", self.server.base_url)
    }

    /// The API source's signing secret, which the site checks signatures with.
    pub fn set_secret(&self, secret: &str) {
        lock(&self.state).secret = secret.to_owned();
    }

    /// Every delivery accepted so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state).received.clone()
    }

    /// How many requests were refused (bad signature, stale timestamp, not JSON).
    pub fn refused(&self) -> u64 {
        lock(&self.state).refused
    }
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn signature_ok(secret: &str, ts: &str, body: &[u8], given: &str) -> bool {
    let Some(hex_sig) = given.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

async fn receive(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> Response {
    let ts = header(&h, "x-chatter-timestamp");
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= 300);
    let mut inner = lock(&s);
    if inner.secret.is_empty()
        || !fresh
        || !signature_ok(&inner.secret, ts, &body, header(&h, "x-chatter-signature"))
    {
        inner.refused += 1;
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        inner.refused += 1;
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let delivery = header(&h, "x-chatter-delivery").to_owned();
    if !inner.received.iter().any(|r| r.delivery == delivery) {
        inner.received.push(Received {
            delivery,
            event: header(&h, "x-chatter-event").to_owned(),
            body: json,
        });
    }
    StatusCode::OK.into_response()
}

async fn page(State(s): State<Shared>) -> Html<String> {
    let inner = lock(&s);
    let mut rows = String::new();
    for r in inner.received.iter().rev() {
        let who = match r.direction() {
            Some("out") => "Ответ менеджера",
            Some("in") => "Сообщение посетителя",
            _ => "Событие",
        };
        let what = r
            .text()
            .map(escape_html)
            .unwrap_or_else(|| escape_html(&r.body["data"].to_string()));
        rows.push_str(&format!(
            "<li><b>{}</b> · <code>{}</code><br>{}</li>\n",
            who,
            escape_html(&r.event),
            what
        ));
    }
    if rows.is_empty() {
        rows.push_str("<li>Пока ничего не пришло. Ответьте посетителю сайта в Чаттере.</li>");
    }
    Html(format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <title>Сайт компании (демо)</title></head><body style=\"font-family:sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem\">\
         <h1>Сайт компании — что пришло из Чаттера</h1>\
         <p>Демо-сайт принимает исходящие вебхуки API-источника «Сайт» и проверяет их подпись. \
         Отклонено запросов: {}.</p><ul>{}</ul></body></html>",
        inner.refused, rows
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, ts: &str, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{ts}.{body}").as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[tokio::test]
    async fn keeps_signed_deliveries_once_and_refuses_the_rest() {
        let site = FakeWebsite::start().await.expect("start");
        site.set_secret("s3cret");
        let http = reqwest::Client::new();
        let body = r#"{"id":"d1","type":"message.created","data":{"message":{"direction":"out","text":"<b>Да</b>, доставим"}}}"#;
        let ts = chrono::Utc::now().timestamp().to_string();
        let post = |sig: String, ts: String| {
            http.post(site.webhook_url())
                .header("x-chatter-timestamp", ts)
                .header("x-chatter-signature", sig)
                .header("x-chatter-event", "message.created")
                .header("x-chatter-delivery", "d1")
                .body(body)
                .send()
        };
        let ok = post(sign("s3cret", &ts, body), ts.clone())
            .await
            .expect("post");
        assert_eq!(ok.status(), 200);
        let again = post(sign("s3cret", &ts, body), ts.clone())
            .await
            .expect("post");
        assert_eq!(again.status(), 200);
        let wrong = post(sign("other", &ts, body), ts.clone())
            .await
            .expect("post");
        assert_eq!(wrong.status(), 401);
        let old = (chrono::Utc::now().timestamp() - 3600).to_string();
        let stale = post(sign("s3cret", &old, body), old).await.expect("post");
        assert_eq!(stale.status(), 401);
        assert_eq!(site.received().len(), 1, "a repeat is kept once");
        assert_eq!(site.received()[0].text(), Some("<b>Да</b>, доставим"));
        assert_eq!(site.refused(), 2);
        let page = http
            .get(site.base_url())
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        assert!(page.contains("&lt;b&gt;Да&lt;/b&gt;, доставим"), "{page}");
        assert!(page.contains("Ответ менеджера"));
    }
}
