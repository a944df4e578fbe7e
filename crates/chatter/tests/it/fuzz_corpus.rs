//! The fuzz targets' seed corpus (`fuzz/seeds/<target>/`) posted to the live webhook routes:
//! every file, to the route whose parser its target fuzzes, once with the proof the route needs
//! (so the parser is reached) and once without, plus a few hostile bodies (empty, truncated,
//! deeply nested, not UTF-8). Nothing may answer 5xx or drop the connection (a panic), the
//! proof-less posts are refused, and the server still answers afterwards.

use crate::api_source::company_with_api_source;
use crate::avito::company_with_avito;
use crate::max::company_with_max_bot;
use crate::messages::company_with_bot;
use crate::sms::{company_with_sms, setup_value};
use crate::telegram::within;
use crate::vk::company_with_community;
use crate::whatsapp::company_with_whatsapp;
use chatter_testkit::TestApp;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::PathBuf;

/// `(file name, bytes)` of every seed of `target`, sorted by name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("directory entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            (name, std::fs::read(&path).expect("seed file"))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// The seeds plus bodies no provider sends: empty, cut in half, nested past any parser's
/// depth, not UTF-8, and JSON that is not an object.
fn bodies(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = seeds(target);
    let halves: Vec<(String, Vec<u8>)> = out
        .iter()
        .map(|(n, b)| (format!("{n} (first half)"), b[..b.len() / 2].to_vec()))
        .collect();
    out.extend(halves);
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    for (name, body) in [
        ("empty", Vec::new()),
        ("null", b"null".to_vec()),
        ("array", b"[]".to_vec()),
        ("object", b"{}".to_vec()),
        (
            "huge number",
            b"{\"update_id\": 1e400, \"type\": 1e400}".to_vec(),
        ),
        ("deeply nested", deep.into_bytes()),
        ("not UTF-8", vec![0xff, 0xfe, b'{', 0x80, b'}']),
    ] {
        out.push((name.to_owned(), body));
    }
    out
}

/// Sets `key` to `value` in a JSON object body (other bodies are returned unchanged).
fn with_field(body: &[u8], key: &str, value: serde_json::Value) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut m)) => {
            if m.contains_key(key) {
                m.insert(key.to_owned(), value);
            }
            serde_json::Value::Object(m).to_string().into_bytes()
        }
        _ => body.to_vec(),
    }
}

fn hmac_sha256_hex(secret: &str, data: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    m.update(data);
    hex::encode(m.finalize().into_bytes())
}

/// Sends `req`, failing on a 5xx or a dropped connection; returns the status.
async fn send(req: reqwest::RequestBuilder, what: &str) -> u16 {
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: no answer (did the handler panic?): {e}"));
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    assert!(status < 500, "{what}: {status} {body}");
    status
}

async fn still_answers(app: &TestApp) {
    let r = app
        .client()
        .get(app.at("/healthz"))
        .send()
        .await
        .expect("the server still answers");
    assert_eq!(r.status(), 200);
}

/// Posts every body of `target` to `url` with `prove` (headers and body for a proven call)
/// and without proof; proven posts must not fail, unproven ones must be refused.
async fn post_all(
    app: &TestApp,
    target: &str,
    url: &str,
    prove: impl Fn(reqwest::RequestBuilder, &[u8]) -> reqwest::RequestBuilder,
    unproven_url: &str,
) {
    let http = reqwest::Client::new();
    let mut accepted = 0;
    for (name, body) in bodies(target) {
        // `prove` sets the content type where the route reads it (the SMS callbacks).
        let signed = prove(http.post(url), &body);
        if send(signed, &format!("{target}/{name} (proven)")).await == 200 {
            accepted += 1;
        }
        let unsigned = http
            .post(unproven_url)
            .header("content-type", "application/json")
            .body(body.clone());
        let status = send(unsigned, &format!("{target}/{name} (no proof)")).await;
        assert!(
            matches!(status, 400 | 401 | 403 | 404),
            "{target}/{name} without proof: {status}"
        );
    }
    assert!(
        accepted > 0,
        "{target}: no seed reached the parser and was stored"
    );
    still_answers(app).await;
}

#[tokio::test]
async fn telegram_webhook_corpus_never_fails_the_route() {
    let app = TestApp::builder().with_telegram_webhooks().start().await;
    let (_s, token, id) = company_with_bot(&app).await;
    within(20, "the webhook is set", || async {
        app.telegram.webhook(&token).is_some()
    })
    .await;
    let secret = app
        .telegram
        .webhook(&token)
        .and_then(|w| w.secret_token)
        .expect("a secret token");
    let url = app.at(&format!("/hooks/telegram/{id}"));
    let prove = |req: reqwest::RequestBuilder, body: &[u8]| {
        req.header("X-Telegram-Bot-Api-Secret-Token", &secret)
            .body(body.to_vec())
    };
    post_all(&app, "telegram_webhook", &url, prove, &url).await;
}

#[tokio::test]
async fn vk_callback_corpus_never_fails_the_route() {
    let app = TestApp::builder().with_webhooks().start().await;
    let (_s, group, id) = company_with_community(&app).await;
    within(20, "the callback server is added", || async {
        app.vk
            .callback_servers(group.id)
            .first()
            .is_some_and(|c| c.confirmed && c.secret_key.is_some())
    })
    .await;
    let secret = app.vk.callback_servers(group.id)[0]
        .secret_key
        .clone()
        .expect("a secret");
    let url = app.at(&format!("/hooks/vk/{id}"));
    let gid = group.id;
    let prove = |req: reqwest::RequestBuilder, body: &[u8]| {
        let body = with_field(body, "group_id", gid.into());
        req.body(with_field(&body, "secret", secret.clone().into()))
    };
    // Without proof the seeds keep their own community and secret: refused.
    post_all(&app, "vk_callback", &url, prove, &url).await;
}

#[tokio::test]
async fn max_webhook_corpus_never_fails_the_route() {
    let app = TestApp::builder().with_webhooks().start().await;
    let (_s, token, id) = company_with_max_bot(&app).await;
    within(20, "the bot is subscribed", || async {
        app.max.subscription(&token).is_some()
    })
    .await;
    let secret = app
        .max
        .subscription(&token)
        .and_then(|s| s.secret)
        .expect("a secret");
    let url = app.at(&format!("/hooks/max/{id}"));
    let prove = |req: reqwest::RequestBuilder, body: &[u8]| {
        req.header("X-Max-Bot-Api-Secret", &secret)
            .body(body.to_vec())
    };
    post_all(&app, "max_webhook", &url, prove, &url).await;
}

#[tokio::test]
async fn avito_webhook_corpus_never_fails_the_route() {
    let app = TestApp::builder().with_webhooks().start().await;
    let (_s, creds, id) = company_with_avito(&app).await;
    within(20, "the webhook is subscribed", || async {
        !app.avito.webhooks(&creds.client_id).is_empty()
    })
    .await;
    let hook = app.avito.webhooks(&creds.client_id).remove(0);
    let wrong = app.at(&format!("/hooks/avito/{id}/{}", "0".repeat(43)));
    let prove = |req: reqwest::RequestBuilder, body: &[u8]| req.body(body.to_vec());
    post_all(&app, "avito_webhook", &hook, prove, &wrong).await;
}

#[tokio::test]
async fn whatsapp_webhook_corpus_never_fails_the_route() {
    let app = TestApp::new().await;
    let (_s, number, id) = company_with_whatsapp(&app).await;
    let url = app.at(&format!("/hooks/whatsapp/{id}"));
    let secret = number.app_secret.clone();
    let prove = |req: reqwest::RequestBuilder, body: &[u8]| {
        req.header(
            "X-Hub-Signature-256",
            format!("sha256={}", hmac_sha256_hex(&secret, body)),
        )
        .body(body.to_vec())
    };
    post_all(&app, "whatsapp_webhook", &url, prove, &url).await;
}

#[tokio::test]
async fn sms_callback_corpus_never_fails_the_routes() {
    let app = TestApp::new().await;
    let (s, _key, id) = company_with_sms(&app).await;
    let page = s.html(&format!("/app/sources/{id}")).await;
    for (target, key, kind) in [
        ("sms_status", "sources.sms_status_url", "status"),
        ("sms_inbound", "sources.sms_inbound_url", "inbound"),
    ] {
        let url = setup_value(&page, key);
        let wrong = app.at(&format!("/hooks/sms/{id}/{}/{kind}", "0".repeat(43)));
        // Forms are posted as forms, the rest as JSON (the gateway sends either).
        let prove = |req: reqwest::RequestBuilder, body: &[u8]| {
            let form = !body.is_empty() && !matches!(body[0], b'{' | b'[');
            let req = req.header(
                "content-type",
                if form {
                    "application/x-www-form-urlencoded"
                } else {
                    "application/json"
                },
            );
            req.body(body.to_vec())
        };
        post_all(&app, target, &url, prove, &wrong).await;
    }
}

#[tokio::test]
async fn api_source_corpus_never_fails_the_route() {
    let app = TestApp::new().await;
    let (_s, id, secret) = company_with_api_source(&app).await;
    let url = app.at(&format!("/hooks/api/{id}"));
    let ts = app.core.now() / 1000;
    let prove = |req: reqwest::RequestBuilder, body: &[u8]| {
        let mut signed = format!("{ts}.").into_bytes();
        signed.extend_from_slice(body);
        req.header("x-chatter-timestamp", ts.to_string())
            .header(
                "x-chatter-signature",
                format!("sha256={}", hmac_sha256_hex(&secret, &signed)),
            )
            .body(body.to_vec())
    };
    post_all(&app, "api_source_message", &url, prove, &url).await;
}

#[tokio::test]
async fn amojo_hook_corpus_never_fails_the_route() {
    let app = TestApp::new().await;
    let url = app.at(&format!("/hooks/amojo/{}_fuzz", TestApp::AMO_CHANNEL_ID));
    let http = reqwest::Client::new();
    for (name, body) in bodies("amojo_hook") {
        let sig = chatter_crm::amocrm::chats::hmac_sha1_hex(TestApp::AMO_CHANNEL_SECRET, &body);
        let signed = http
            .post(&url)
            .header("X-Signature", sig)
            .body(body.clone());
        let status = send(signed, &format!("amojo_hook/{name} (signed)")).await;
        assert!(matches!(status, 200 | 400), "{name}: {status}");
        let unsigned = http.post(&url).body(body);
        assert_eq!(
            send(unsigned, &format!("amojo_hook/{name} (unsigned)")).await,
            401
        );
    }
    still_answers(&app).await;
}

#[tokio::test]
async fn amocrm_disabled_hook_corpus_never_fails_the_route() {
    let app = TestApp::new().await;
    let http = app.client();
    let mut queries: Vec<(String, String)> = Vec::new();
    for (name, body) in seeds("amocrm_disabled_hook") {
        let query = String::from_utf8_lossy(&body).into_owned();
        // The same account, signed by this installation's integration.
        let account = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("account_id="))
            .map(str::to_owned);
        if let Some(account) = account {
            let sig = hmac_sha256_hex(
                TestApp::AMO_CLIENT_SECRET,
                format!("{}|{account}", TestApp::AMO_CLIENT_ID).as_bytes(),
            );
            let signed = format!(
                "account_id={account}&client_uuid={}&signature={sig}",
                TestApp::AMO_CLIENT_ID
            );
            queries.push((format!("{name} (signed)"), signed));
        }
        queries.push((name, query));
    }
    queries.push(("empty".into(), String::new()));
    queries.push(("not UTF-8".into(), "account_id=%FF%FE&signature=%80".into()));
    for (name, query) in queries {
        let r = http
            .get(app.at(&format!("/hooks/amocrm/disabled?{query}")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: no answer: {e}"));
        assert!(
            matches!(r.status().as_u16(), 200 | 400 | 401),
            "{name}: {}",
            r.status()
        );
    }
    still_answers(&app).await;
}
