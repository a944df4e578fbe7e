//! Cursor pagination of the API's lists (both databases): walking every page of the
//! conversations, of a conversation's messages and of the sources while customers keep writing,
//! managers answer and sources are added — each item seen once, none skipped; clients that send
//! no cursor get the bare array as before; a bad cursor or limit is a 422 naming it; the
//! OpenAPI document says all of it.

use crate::api::create_key;
use crate::api_source::{company_with_api_source, message_body, now_secs, post_signed};
use chatter_testkit::{Session, TestApp};
use serde_json::Value;
use std::collections::HashSet;

struct Api<'a> {
    app: &'a TestApp,
    key: String,
    http: reqwest::Client,
}

impl Api<'_> {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.app.at(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON"))
    }

    /// Every page of `path` (`limit` each), calling `between` after each page; the items' ids.
    async fn walk(
        &self,
        path: &str,
        limit: u32,
        mut between: impl AsyncFnMut(usize),
    ) -> Vec<String> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut cursor = String::new();
        let mut ids = Vec::new();
        for page in 0.. {
            let (status, v) = self
                .get(&format!("{path}{sep}limit={limit}&cursor={cursor}"))
                .await;
            assert_eq!(status, 200, "{v}");
            let items = v["items"].as_array().expect("items");
            assert!(items.len() <= limit as usize, "{v}");
            ids.extend(items.iter().map(|i| {
                i["id"]
                    .as_str()
                    .or(i["user_id"].as_str())
                    .expect("id")
                    .to_string()
            }));
            match v["next_cursor"].as_str() {
                Some(c) => {
                    assert_eq!(items.len(), limit as usize, "a full page before the last");
                    cursor = c.to_string();
                }
                None => {
                    assert!(v["next_cursor"].is_null(), "{v}");
                    break;
                }
            }
            between(page).await;
        }
        ids
    }
}

fn no_duplicates(ids: &[String]) {
    let set: HashSet<&String> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "an item seen twice: {ids:?}");
}

async fn customer_writes(app: &TestApp, source: &str, secret: &str, id: &str, chat: &str) {
    let r = post_signed(
        &reqwest::Client::new(),
        app,
        source,
        secret,
        now_secs(app),
        &message_body(id, chat, "Здравствуйте"),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn every_list_walks_in_pages_while_items_are_added_seeing_each_once() {
    let app = TestApp::new().await;
    let (s, source, secret) = company_with_api_source(&app).await;
    let api = Api {
        app: &app,
        key: create_key(&s, "pages").await,
        http: reqwest::Client::new(),
    };
    for i in 0..7 {
        customer_writes(
            &app,
            &source,
            &secret,
            &format!("m{i}"),
            &format!("chat-{i}"),
        )
        .await;
    }
    let (_, before) = api.get("/api/v1/conversations?status=all").await;
    let before: Vec<String> = before
        .as_array()
        .expect("without a cursor: the bare array, as before")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(before.len(), 7);

    // Conversations: new customers, and new messages in conversations not reached yet (which
    // would move them in a list ordered by activity), between the pages.
    let mut n = 100;
    let ids = api
        .walk("/api/v1/conversations?status=all", 3, async |page| {
            n += 1;
            customer_writes(
                &app,
                &source,
                &secret,
                &format!("m{n}"),
                &format!("new-{n}"),
            )
            .await;
            n += 1;
            let old = format!("chat-{page}");
            customer_writes(&app, &source, &secret, &format!("m{n}"), &old).await;
        })
        .await;
    no_duplicates(&ids);
    for id in &before {
        assert!(ids.contains(id), "{id} skipped: {ids:?}");
    }

    // A conversation's messages: the manager answers and the customer writes between pages.
    let conv = &before[0];
    let path = format!("/api/v1/conversations/{conv}/messages");
    for text in ["раз", "два", "три", "четыре"] {
        let r = api
            .http
            .post(app.at(&path))
            .bearer_auth(&api.key)
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 201);
    }
    let (_, all) = api.get(&path).await;
    let all: Vec<String> = all
        .as_array()
        .expect("the bare array")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect();
    let chat = {
        let (_, c) = api.get("/api/v1/conversations?status=all&limit=500").await;
        c.as_array()
            .expect("list")
            .iter()
            .find(|c| c["id"] == conv.as_str())
            .and_then(|c| c["contact"]["external_id"].as_str())
            .expect("the conversation's customer")
            .to_string()
    };
    let mut k = 500;
    let walked = api
        .walk(&path, 2, async |_| {
            k += 1;
            customer_writes(&app, &source, &secret, &format!("m{k}"), &chat).await;
        })
        .await;
    no_duplicates(&walked);
    assert_eq!(
        &walked[..all.len()],
        &all[..],
        "oldest first, each once; new ones follow"
    );
    assert!(
        walked.len() > all.len(),
        "messages written during the walk come at the end"
    );

    // Sources: three, then one added after each of the first two pages.
    add_api_source(&s, "Сайт 1").await;
    add_api_source(&s, "Сайт 2").await;
    let mut added = 2;
    let sources = api
        .walk("/api/v1/sources", 1, async |_| {
            if added < 4 {
                added += 1;
                add_api_source(&s, &format!("Сайт {added}")).await;
            }
        })
        .await;
    no_duplicates(&sources);
    assert_eq!(
        sources.len(),
        5,
        "the three, and the two added during the walk"
    );
    assert_eq!(sources[0], source, "oldest first");

    // The short lists answer pages too.
    for path in [
        "/api/v1/members",
        "/api/v1/routing-rules",
        "/api/v1/dead-letters",
    ] {
        let (status, v) = api.get(&format!("{path}?cursor=")).await;
        assert_eq!(status, 200, "{path}: {v}");
        assert!(
            v["items"].is_array() && v["next_cursor"].is_null(),
            "{path}: {v}"
        );
        let (status, v) = api.get(path).await;
        assert_eq!(status, 200, "{path}: {v}");
        assert!(v.is_array(), "{path} without a cursor, as before: {v}");
    }
    let members = api.walk("/api/v1/members", 1, async |_| {}).await;
    assert_eq!(members.len(), 1);
    app.stop().await;
}

async fn add_api_source(s: &Session, name: &str) {
    let r = s
        .post_from(
            "/app/sources/new/api",
            "/app/api-sources",
            &[("name", name)],
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_bad_cursor_or_limit_is_refused_naming_it_and_the_document_says_so() {
    let app = TestApp::new().await;
    let (s, _, _) = company_with_api_source(&app).await;
    let api = Api {
        app: &app,
        key: create_key(&s, "pages").await,
        http: reqwest::Client::new(),
    };
    let lists = [
        "/api/v1/conversations",
        "/api/v1/members",
        "/api/v1/sources",
        "/api/v1/routing-rules",
        "/api/v1/dead-letters",
    ];
    for path in lists {
        for (query, field) in [
            ("cursor=abc".to_string(), "cursor"),
            (format!("cursor={}", "z".repeat(48)), "cursor"),
            ("cursor=&limit=0".to_string(), "limit"),
            ("limit=501".to_string(), "limit"),
        ] {
            let (status, v) = api.get(&format!("{path}?{query}")).await;
            assert_eq!(status, 422, "{path}?{query}: {v}");
            assert_eq!(v["fields"][0]["field"], field, "{path}?{query}: {v}");
            assert!(
                v["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("`{field}`"))),
                "the message names the parameter: {v}"
            );
        }
    }

    let (_, spec) = api.get("/api/openapi.json").await;
    let mut paths: Vec<String> = lists.iter().map(|p| p.to_string()).collect();
    paths.push("/api/v1/conversations/{id}/messages".into());
    for path in &paths {
        let params = spec["paths"][path.as_str()]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: no parameters"));
        let param = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{path}: no {name}"))
                .clone()
        };
        let limit = param("limit");
        assert_eq!(limit["schema"]["minimum"], 1, "{path}: {limit}");
        assert_eq!(limit["schema"]["maximum"], 500, "{path}: {limit}");
        let cursor = param("cursor");
        assert_eq!(
            cursor["schema"]["pattern"], "^([0-9a-fA-F]{48})?$",
            "{path}: {cursor}"
        );
        // The answer is one of the bare array and the page.
        let ok = spec["paths"][path.as_str()]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: a named answer"))
            .trim_start_matches("#/components/schemas/")
            .to_string();
        let shapes = spec["components"]["schemas"][ok.as_str()]["oneOf"].to_string();
        assert!(
            shapes.contains("\"array\"") && shapes.contains("Page"),
            "{path}: {shapes}"
        );
        let refused = &spec["paths"][path.as_str()]["get"]["responses"]["422"];
        assert!(refused.is_object(), "{path}: 422 documented");
    }
    app.stop().await;
}
