//! The REST API with company keys made in Settings, its OpenAPI document and Swagger UI; the
//! audit log page and CSV export; operations endpoints; the request body limit.

use crate::team::{join_new, location, PW};
use chatter_store::entity::{audit, company, session, user};
use chatter_testkit::{Session, TestApp};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;

fn attr_after<'a>(html: &'a str, marker: &str, attr: &str) -> &'a str {
    let i = html.find(marker).expect("marker in page");
    let tag_start = html[..i].rfind('<').unwrap_or(0);
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>').expect("tag end")];
    let a = format!("{attr}=\"");
    let v = &tag[tag.find(&a).expect("attribute") + a.len()..];
    &v[..v.find('"').expect("closing quote")]
}

/// Creates a key in Settings and returns it as the page shows it, once.
pub(crate) async fn create_key(s: &Session, name: &str) -> String {
    let r = s
        .post_from("/app/settings", "/app/settings/api-keys", &[("name", name)])
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.expect("body");
    let key = attr_after(&page, "id=\"new-api-key\"", "value").to_string();
    assert!(key.starts_with("chk_"), "{key}");
    key
}

pub(crate) async fn api(app: &TestApp, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = app.client().get(app.at(path));
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    req.send().await.expect("GET")
}

async fn assert_unauthorized(app: &TestApp, path: &str, key: Option<&str>) {
    let r = api(app, path, key).await;
    assert_eq!(r.status(), 401, "{path} with {key:?}");
    assert!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer")),
        "WWW-Authenticate names the scheme"
    );
    assert!(r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json")));
    let body: Value = r.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

fn member_emails(members: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = members
        .as_array()
        .expect("an array of members")
        .iter()
        .map(|m| {
            (
                m["email"].as_str().expect("email").to_string(),
                m["role"].as_str().expect("role").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_key_made_in_settings_reads_its_company_until_revoked() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.test", PW).await;
    let _boris = join_new(&app, &owner, "boris@romashka.test", "Борис", "manager").await;

    let key = create_key(&owner, "CRM sync").await;
    let again = owner.html("/app/settings").await;
    assert!(!again.contains(&key), "the key is shown once");
    assert!(again.contains("CRM sync"), "the key is listed by name");

    let r = api(&app, "/api/v1/me", Some(&key)).await;
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.expect("JSON");
    let stored = company::Entity::find()
        .one(&app.core.db)
        .await
        .expect("query")
        .expect("company");
    assert_eq!(me["company"]["name"], "Ромашка");
    assert_eq!(me["company"]["slug"], stored.slug.as_str());
    assert_eq!(me["company"]["id"], stored.id.to_string());
    assert_eq!(me["key_name"], "CRM sync");

    let r = api(&app, "/api/v1/members", Some(&key)).await;
    assert_eq!(r.status(), 200);
    let members: Value = r.json().await.expect("JSON");
    assert_eq!(
        member_emails(&members),
        vec![
            ("anna@romashka.test".into(), "owner".into()),
            ("boris@romashka.test".into(), "manager".into()),
        ]
    );
    assert!(members[0]["name"].is_string() && members[0]["user_id"].is_string());

    for path in ["/api/v1/me", "/api/v1/members"] {
        assert_unauthorized(&app, path, None).await;
        assert_unauthorized(&app, path, Some("chk_0000000000000000")).await;
        assert_unauthorized(&app, path, Some(&key[..key.len() - 1])).await;
    }
    // A session cookie is not a key.
    let r = owner.get("/api/v1/me").await;
    assert_eq!(r.status(), 401);

    let page = owner.html("/app/settings").await;
    let action = attr_after(&page, "/revoke\"", "action").to_string();
    assert!(action.starts_with("/app/settings/api-keys/"), "{action}");
    let r = owner.post_from("/app/settings", &action, &[]).await;
    assert_eq!(r.status(), 303);
    for path in ["/api/v1/me", "/api/v1/members"] {
        assert_unauthorized(&app, path, Some(&key)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_key_of_one_company_never_sees_another() {
    let app = TestApp::new().await;
    let a = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.test", PW).await;
    let _boris = join_new(&app, &a, "boris@romashka.test", "Борис", "viewer").await;
    let b = Session::sign_up(&app, "Лютик", "Вера", "vera@lutik.test", PW).await;
    let key_a = create_key(&a, "a").await;
    let key_b = create_key(&b, "b").await;

    let members: Value = api(&app, "/api/v1/members", Some(&key_b))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        member_emails(&members),
        vec![("vera@lutik.test".into(), "owner".into())]
    );
    let text = members.to_string();
    assert!(!text.contains("romashka"), "{text}");
    let me: Value = api(&app, "/api/v1/me", Some(&key_b))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(me["company"]["name"], "Лютик");

    let members: Value = api(&app, "/api/v1/members", Some(&key_a))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(member_emails(&members).len(), 2);
    assert!(!members.to_string().contains("lutik"));
    app.stop().await;
}

fn is_external(url: &str) -> bool {
    let u = url.trim().to_ascii_lowercase();
    let u = u
        .strip_prefix("http:")
        .or_else(|| u.strip_prefix("https:"))
        .unwrap_or(&u);
    u.starts_with("//") && !u.starts_with("//127.0.0.1") && !u.starts_with("//localhost")
}

/// Values of `src` and `href` attributes in an HTML page.
fn linked_urls(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=", "href="] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let v = &rest[1..];
            out.push(v[..v.find(q).unwrap_or(v.len())].to_string());
        }
    }
    out
}

#[tokio::test]
async fn openapi_document_and_swagger_ui_are_served_from_the_product() {
    let app = TestApp::new().await;
    let http = app.client();
    let r = http
        .get(app.at("/api/openapi.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let spec: Value = r.json().await.expect("valid JSON");
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
    assert!(spec["paths"]["/api/v1/me"]["get"].is_object(), "{spec}");
    assert!(spec["paths"]["/api/v1/members"]["get"].is_object());
    let schemes = &spec["components"]["securitySchemes"];
    let bearer = schemes
        .as_object()
        .expect("security schemes")
        .values()
        .find(|s| {
            s["type"] == "http"
                && s["scheme"].as_str().map(str::to_lowercase).as_deref() == Some("bearer")
        });
    assert!(bearer.is_some(), "a bearer scheme: {schemes}");

    // Swagger UI, following redirects by hand.
    let mut path = "/api/docs".to_string();
    let mut hops = 0;
    let html = loop {
        let r = http.get(app.at(&path)).send().await.expect("GET");
        if r.status().is_redirection() {
            hops += 1;
            assert!(hops < 5, "too many redirects");
            let to = location(&r);
            path = if to.starts_with('/') {
                to
            } else {
                format!("{}/{to}", path.rsplit_once('/').map(|p| p.0).unwrap_or(""))
            };
            continue;
        }
        assert_eq!(r.status(), 200, "{path}");
        break r.text().await.expect("body");
    };
    assert!(html.to_lowercase().contains("swagger"), "{html}");
    let urls = linked_urls(&html);
    assert!(!urls.is_empty(), "the page loads its script and style");
    for u in &urls {
        assert!(!is_external(u), "external resource {u} in {path}");
    }
    // The page's own scripts and styles are served too; the initializer points at our spec.
    let base = if path.ends_with('/') {
        path.clone()
    } else {
        format!("{path}/")
    };
    let mut initializer = false;
    for u in urls
        .iter()
        .filter(|u| u.ends_with(".js") || u.ends_with(".css"))
    {
        let p = if u.starts_with('/') {
            u.clone()
        } else {
            format!("{base}{}", u.trim_start_matches("./"))
        };
        let r = http.get(app.at(&p)).send().await.expect("GET");
        assert_eq!(r.status(), 200, "{p}");
        if p.ends_with("initializer.js") {
            initializer = true;
            let js = r.text().await.expect("body");
            assert!(js.contains("/api/openapi.json"), "{js}");
            assert!(!js.contains("https://"), "{js}");
        }
    }
    assert!(initializer, "the page has its initializer script: {urls:?}");
    app.stop().await;
}

/// (actor, action) of each row of the audit page.
fn audit_rows(html: &str) -> Vec<(String, String)> {
    let table = &html[html.find("<table id=\"audit\">").expect("audit table")..];
    let table = &table[..table.find("</table>").expect("table end")];
    table
        .split("<tr><td>")
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row.split("</td><td").collect();
            // The action cell shows its name; the code is in `data-action`.
            let code = cells[2]
                .split("data-action=\"")
                .nth(1)
                .and_then(|c| c.split('"').next())
                .expect("the action's code");
            (
                cells[1].trim_start_matches('>').to_string(),
                code.to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn audit_log_filters_and_exports_for_admins_only() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.test", PW).await;
    let boris = join_new(&app, &owner, "boris@romashka.test", "Борис", "manager").await;
    let _ = create_key(&owner, "CRM sync").await;
    let r = boris
        .post_from(
            "/app/profile",
            "/app/profile",
            &[("name", "Борис Б."), ("locale", "ru")],
        )
        .await;
    assert_eq!(r.status(), 303);

    let all = audit_rows(&owner.html("/app/audit").await);
    let actions: Vec<&str> = all.iter().map(|r| r.1.as_str()).collect();
    for a in [
        "company.create",
        "team.invite",
        "team.invite_accept",
        "api_key.create",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    // A person reads what happened, not the code.
    let page = owner.html("/app/audit").await;
    assert!(page.contains(">Отправлено приглашение<"), "{page}");
    assert!(!page.contains(">team.invite<"));

    let team = audit_rows(&owner.html("/app/audit?action=team.").await);
    assert!(!team.is_empty());
    assert!(team.iter().all(|r| r.1.starts_with("team.")), "{team:?}");
    assert!(team.len() < all.len());

    let by_boris = audit_rows(&owner.html("/app/audit?actor=boris").await);
    assert!(!by_boris.is_empty());
    assert!(
        by_boris.iter().all(|r| r.0.contains("boris")),
        "{by_boris:?}"
    );
    assert!(by_boris.iter().any(|r| r.1 == "team.invite_accept"));
    assert!(!by_boris.iter().any(|r| r.1 == "api_key.create"));

    let r = owner.get("/app/audit.csv?action=team.&actor=").await;
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/csv"), "{ct}");
    let csv = r.text().await.expect("body");
    let mut lines = csv.lines();
    let header = lines.next().expect("a header row");
    assert!(
        header.starts_with("time_utc,actor,action,target"),
        "{header}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), team.len(), "{csv}");
    assert!(
        rows.iter()
            .all(|l| l.split(',').nth(2).is_some_and(|a| a.starts_with("team."))),
        "{csv}"
    );

    let csv = owner.html("/app/audit.csv?actor=boris").await;
    assert_eq!(csv.lines().count() - 1, by_boris.len(), "{csv}");

    assert_eq!(boris.get("/app/audit").await.status(), 403);
    assert_eq!(boris.get("/app/audit.csv").await.status(), 403);
    assert_eq!(boris.get("/app/audit.csv?action=team.").await.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn operations_endpoints_answer() {
    let app = TestApp::new().await;
    let http = app.client();
    let get = |p: &'static str| {
        let http = http.clone();
        let url = app.at(p);
        async move {
            let r = http.get(url).send().await.expect("GET");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok".to_string()));
    assert_eq!(get("/readyz").await, (200, "ready".to_string()));
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("# TYPE chatter_http_responses_total counter"));
    let ok: u64 = metrics
        .lines()
        .find(|l| l.starts_with("chatter_http_responses_total{class=\"2xx\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a 2xx counter");
    assert!(ok >= 2, "the health checks were counted: {ok}");
    assert!(metrics.contains("chatter_jobs_count{state=\"queued\"}"));
    assert!(metrics.contains("chatter_jobs_count{state=\"dead\"}"));
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "not Prometheus text: {line}");
    }
    app.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_store_nothing() {
    let app = TestApp::new().await;
    let counts = || async {
        (
            user::Entity::find()
                .count(&app.core.db)
                .await
                .expect("count"),
            session::Entity::find()
                .count(&app.core.db)
                .await
                .expect("count"),
            audit::Entity::find()
                .count(&app.core.db)
                .await
                .expect("count"),
            company::Entity::find()
                .count(&app.core.db)
                .await
                .expect("count"),
        )
    };
    let s = Session::new(&app);
    let csrf = chatter_testkit::csrf_of(&s.html("/sign-up").await);
    let before = counts().await;
    let big = "x".repeat(2 * 1024 * 1024);
    let r = s
        .post_with(
            "/sign-in",
            &csrf,
            &[("email", "anna@romashka.test"), ("password", &big)],
        )
        .await;
    assert_eq!(r.status(), 413);
    let r = s
        .post_with(
            "/sign-up",
            &csrf,
            &[
                ("company_name", "Ромашка"),
                ("name", "Анна"),
                ("email", "anna@romashka.test"),
                ("password", PW),
                ("padding", &big),
            ],
        )
        .await;
    assert_eq!(r.status(), 413);
    assert_eq!(counts().await, before, "nothing is stored");
    assert!(user::Entity::find()
        .filter(user::Column::Email.eq("anna@romashka.test"))
        .one(&app.core.db)
        .await
        .expect("query")
        .is_none());
    // The same form under the limit goes through.
    let r = s
        .post_with(
            "/sign-up",
            &csrf,
            &[
                ("company_name", "Ромашка"),
                ("name", "Анна"),
                ("email", "anna@romashka.test"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    app.stop().await;
}

/// The JSON error of a refused API call: its status, `error.code`, and the first field named.
async fn json_error(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("application/problem+json"), "{status}: {ct}");
    let body: Value = r.json().await.expect("JSON error body");
    // An RFC 9457 problem document, with the older `error` object beside it.
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(
        body["type"],
        format!(
            "urn:chatter:problem:{}",
            body["code"].as_str().unwrap_or("?")
        ),
        "{body}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(body["detail"], body["error"]["message"], "{body}");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_string();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let field = body["error"]["fields"][0]["field"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, code, field)
}

/// What schemathesis found (issue 9): ids that are not UUIDs, bad query strings and bodies got
/// axum's text/plain 400s the document did not list, and schema-valid bodies got 422s. Every
/// refusal is now the API's JSON error with a documented status, and the document's schemas say
/// what the server checks.
#[tokio::test]
async fn refused_paths_queries_and_bodies_answer_documented_json_errors() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.test", PW).await;
    let key = create_key(&owner, "contract").await;
    let auth = format!("Bearer {key}");
    let http = app.client();

    for path in [
        "/api/v1/conversations/not-a-uuid/messages",
        "/api/v1/conversations/null,null/crm",
    ] {
        let r = api(&app, path, Some(&key)).await;
        assert_eq!(
            json_error(r).await,
            (400, "invalid_path".into(), "id".into()),
            "{path}"
        );
    }
    let r = http
        .post(app.at("/api/v1/conversations/42/messages"))
        .header("authorization", &auth)
        .json(&serde_json::json!({"text": "hi"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(
        json_error(r).await,
        (400, "invalid_path".into(), "id".into())
    );
    let r = http
        .post(app.at("/hooks/api/not-a-uuid"))
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(
        json_error(r).await,
        (400, "invalid_path".into(), "source_id".into())
    );

    let r = api(&app, "/api/v1/conversations?source=", Some(&key)).await;
    assert_eq!(
        json_error(r).await,
        (400, "invalid_query".into(), "source".into())
    );
    let r = api(&app, "/api/v1/conversations?limit=-1", Some(&key)).await;
    assert_eq!(
        json_error(r).await,
        (400, "invalid_query".into(), "limit".into())
    );
    let r = api(&app, "/api/v1/conversations?limit=501", Some(&key)).await;
    assert_eq!(json_error(r).await, (422, "invalid".into(), "limit".into()));
    let r = api(
        &app,
        "/api/v1/conversations?limit=500&status=all",
        Some(&key),
    )
    .await;
    assert_eq!(r.status(), 200);

    let post = |path: &str, body: &'static str, ct: &'static str| {
        http.post(app.at(path))
            .header("authorization", &auth)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let conv = "/api/v1/conversations/01950f2e-0000-7000-8000-000000000002/messages";
    let r = post(conv, "{\"text\":", "application/json")
        .await
        .expect("POST");
    assert_eq!(json_error(r).await, (422, "invalid".into(), "body".into()));
    let r = post(conv, "{\"text\": 5}", "application/json")
        .await
        .expect("POST");
    assert_eq!(json_error(r).await, (422, "invalid".into(), "text".into()));
    let r = post(conv, "{\"text\": \"hi\"}", "text/plain")
        .await
        .expect("POST");
    assert_eq!(json_error(r).await.0, 415);
    // A source that is not this company's is not found, like any other object.
    let r = post(
        "/api/v1/routing-rules/dry-run",
        "{\"source_id\": \"01950f2e-0000-7000-8000-000000000001\", \"text\": \"доставка\"}",
        "application/json",
    )
    .await
    .expect("POST");
    assert_eq!(json_error(r).await.0, 404);

    let doc: Value = app
        .client()
        .get(app.at("/api/openapi.json"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let statuses = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    };
    for (path, method) in [
        ("/api/v1/conversations", "get"),
        ("/api/v1/conversations/{id}/messages", "get"),
        ("/api/v1/conversations/{id}/messages", "post"),
        ("/api/v1/conversations/{id}/crm", "get"),
        ("/hooks/api/{source_id}", "post"),
    ] {
        assert!(
            statuses(path, method).contains(&"400".to_string()),
            "{method} {path}"
        );
    }
    for (path, method) in [
        ("/api/v1/conversations/{id}/messages", "post"),
        ("/api/v1/routing-rules/dry-run", "post"),
    ] {
        let s = statuses(path, method);
        for code in ["404", "415", "422"] {
            assert!(s.contains(&code.to_string()), "{method} {path} {code}");
        }
    }
    let params = doc["paths"]["/api/v1/conversations"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    for p in params {
        assert_eq!(p["in"], "query", "{p}");
        assert_ne!(p["required"], true, "{p}");
    }
    let limit = params.iter().find(|p| p["name"] == "limit").expect("limit");
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 500);
    let text = &doc["components"]["schemas"]["SendIn"]["properties"]["text"];
    assert_eq!(text["minLength"], 1, "{text}");
    assert_eq!(text["maxLength"], 20000, "{text}");
}

/// A source whose stored settings were damaged (hand-edited, a bad restore) still lists, and
/// the damage is not taken silently: it is counted on `/metrics` (and logged).
#[tokio::test]
async fn a_damaged_stored_setting_is_counted_and_the_sources_page_still_works() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::new().await;
    let (s, _, _) = crate::messages::company_with_bot(&app).await;
    let metric = || async {
        let text = reqwest::get(app.at("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body");
        text.lines()
            .find_map(|l| l.strip_prefix("chatter_stored_json_unreadable_total "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .expect("the counter")
    };
    let before = metric().await;
    app.core
        .db
        .execute_unprepared("UPDATE sources SET settings = '{\"bot_id\": ' ")
        .await
        .expect("damage the settings");
    let r = s.get("/app/sources").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("body").contains("@horns_bot"));
    assert!(metric().await > before, "the damaged value was counted");
    app.stop().await;
}
