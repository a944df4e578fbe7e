//! A company owner exports the company's own data (contacts, conversations, messages as JSON
//! lines and CSV in a zip), made by a job, downloaded from Settings or through the API; the
//! file holds that company's rows only, sits owner-only under an unguessable name, and nobody
//! of another company (nor a non-owner member) can download it.

use crate::api_source::{attr_after, message_body, now_secs, post_signed};
use crate::messages::{eventually, location, PW};
use chatter_testkit::{Session, TestApp};
use std::collections::BTreeMap;
use std::io::Read;

/// A company with an API source, and one customer message through it.
async fn company_with_message(
    app: &TestApp,
    company: &str,
    email: &str,
    customer: &str,
    text: &str,
) -> Session {
    let s = Session::sign_up(app, company, "Владелец", email, PW).await;
    let r = s
        .post_from(
            "/app/sources/new/api",
            "/app/api-sources",
            &[("name", "Сайт")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.expect("body");
    let secret = attr_after(&page, "id=\"api-secret\"", "value").to_string();
    let id = page
        .split("/app/api-sources/")
        .nth(1)
        .and_then(|x| x.split('/').next())
        .expect("source id")
        .to_string();
    let body = message_body("1", customer, text).replace("Иван Петров", customer);
    let r = post_signed(
        &reqwest::Client::new(),
        app,
        &id,
        &secret,
        now_secs(app),
        &body,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    s
}

/// The zip's files by name.
fn unzip(bytes: &[u8]) -> BTreeMap<String, String> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip file");
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).expect("entry");
        let mut text = String::new();
        f.read_to_string(&mut text).expect("UTF-8");
        out.insert(f.name().to_string(), text);
    }
    out
}

fn assert_only_alpha(files: &BTreeMap<String, String>) {
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "contacts.csv",
            "contacts.jsonl",
            "conversations.csv",
            "conversations.jsonl",
            "messages.csv",
            "messages.jsonl"
        ]
    );
    let all: String = files.values().cloned().collect();
    assert!(all.contains("Алиса Клиентова"), "{all}");
    assert!(all.contains("Нужна доставка в Тулу"), "{all}");
    assert!(
        !all.contains("Борис Чужой"),
        "another company's contact: {all}"
    );
    assert!(
        !all.contains("Секрет конкурента"),
        "another company's message: {all}"
    );
    let messages: Vec<serde_json::Value> = files["messages.jsonl"]
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["text"], "Нужна доставка в Тулу");
    assert_eq!(messages[0]["direction"], "in");
    assert!(files["contacts.csv"].starts_with("id,source_id,external_id,name,"));
    assert_eq!(
        files["messages.csv"].lines().count(),
        2,
        "header and one row"
    );
}

#[tokio::test]
async fn an_owner_exports_only_their_companys_data() {
    let app = TestApp::new().await;
    let alpha = company_with_message(
        &app,
        "Альфа",
        "owner@alpha.test",
        "Алиса Клиентова",
        "Нужна доставка в Тулу",
    )
    .await;
    let beta = company_with_message(
        &app,
        "Бета",
        "owner@beta.test",
        "Борис Чужой",
        "Секрет конкурента",
    )
    .await;

    let r = alpha
        .post_from("/app/settings", "/app/settings/exports", &[])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/app/settings?ok=export_started#exports");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let link = loop {
        let page = alpha.html("/app/settings").await;
        if page.contains("class=\"export-download\"") {
            break attr_after(&page, "class=\"export-download\"", "href").to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no export link:\n{page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let r = alpha.get(&link).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .expect("header")
        .starts_with("attachment"));
    assert_only_alpha(&unzip(&r.bytes().await.expect("body")));

    // Another company's owner cannot download it.
    assert_eq!(beta.get(&link).await.status(), 404);
    assert_eq!(Session::new(&app).get(&link).await.status(), 303);

    // Stored owner-only under a name nobody can guess.
    let dir = chatter_core::exports::export_dir(&app.core.config.data_dir);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("exports dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1);
    let name = files[0]
        .file_stem()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(
        name.len() >= 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
        "{name}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0])
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Through the API: start, poll, download; the other company's key finds nothing.
    let key = |s: Session| async move {
        let r = s
            .post_from(
                "/app/settings",
                "/app/settings/api-keys",
                &[("name", "export")],
            )
            .await;
        attr_after(
            &r.text().await.expect("body"),
            "id=\"new-api-key\"",
            "value",
        )
        .to_string()
    };
    let (key_a, key_b) = (key(alpha).await, key(beta).await);
    let http = reqwest::Client::new();
    let r = http
        .post(app.at("/api/v1/exports"))
        .bearer_auth(&key_a)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 202);
    let started: serde_json::Value = r.json().await.expect("JSON");
    let id = started["id"].as_str().expect("id").to_string();
    let status_url = app.at(&format!("/api/v1/exports/{id}"));
    eventually("the API export is ready", || async {
        let v: serde_json::Value = http
            .get(&status_url)
            .bearer_auth(&key_a)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        v["status"] == "ready"
    })
    .await;
    let download = app.at(&format!("/api/v1/exports/{id}/download"));
    let r = http
        .get(&download)
        .bearer_auth(&key_a)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert_only_alpha(&unzip(&r.bytes().await.expect("body")));
    for url in [&status_url, &download] {
        let r = http.get(url).bearer_auth(&key_b).send().await.expect("GET");
        assert_eq!(r.status(), 404, "{url}");
    }
    // The API document describes the export.
    let spec: serde_json::Value = http
        .get(app.at("/api/openapi.json"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert!(spec["paths"]["/api/v1/exports"]["post"].is_object());
    assert!(spec["paths"]["/api/v1/exports/{id}"]["get"].is_object());
    assert!(spec["paths"]["/api/v1/exports/{id}/download"]["get"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn members_who_do_not_own_the_company_cannot_export() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Альфа", "Анна", "owner@alpha.test", PW).await;
    let admin = crate::team::join_new(&app, &owner, "admin@alpha.test", "Админ", "admin").await;
    let settings = admin.html("/app/settings").await;
    assert!(!settings.contains("id=\"export-now\""), "{settings}");
    let r = admin
        .post_from("/app/settings", "/app/settings/exports", &[])
        .await;
    assert_eq!(r.status(), 403);
    app.stop().await;
}
