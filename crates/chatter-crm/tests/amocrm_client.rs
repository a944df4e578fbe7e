//! The amoCRM clients against a minimal stub on loopback: what goes over the wire and how each
//! answer is classified. (The full stateful fake lives in chatter-fakes.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chatter_crm::amocrm::chats::{self, ChatsClient};
use chatter_crm::amocrm::oauth::{self, AccountHosts, OAuthApp};
use chatter_crm::amocrm::{AmoCrm, RateLimit, RateLimiter};
use chatter_crm::{
    ChatDirection, ChatMessage, ChatParty, Clock, ContactQuery, Crm, CrmError, DealCreated,
    DealDraft, DeliveryStatus, DraftContact, FieldScalar, FieldValue, NewCompany, NewContact,
    NewDeal, StageKind,
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

const CLIENT_ID: &str = "0b0832f6-d123-4123-9123-e73f236833c0";
const CLIENT_SECRET: &str = "client-secret-xyz";
const REDIRECT: &str = "https://chatter.example/amocrm/callback";
const TOKEN: &str = "access-token-1";
const CHANNEL: &str = "f90ba33d-c9d9-44da-b76c-c349b0ecbe41";
const CHANNEL_SECRET: &str = "5a44c5dff55f3c15a4cce8d7c4cc27e207c7e189";

/// One request the stub saw.
#[derive(Clone, Debug)]
struct Call {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
    at: tokio::time::Instant,
}

impl Call {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// (status, extra headers, body) for a request.
type Answer = (u16, Vec<(&'static str, String)>, String);
type Responder = dyn Fn(&Call, &mut Value) -> Answer + Send + Sync;

#[derive(Clone)]
struct Stub {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Free-form state the responder keeps between calls (issued refresh tokens…).
    state: Arc<Mutex<Value>>,
    respond: Arc<Responder>,
}

async fn handle(
    State(stub): State<Stub>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call {
        method,
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        headers,
        body,
        at: tokio::time::Instant::now(),
    };
    let (status, extra, body) = {
        let mut state = stub.state.lock().expect("state lock");
        (stub.respond)(&call, &mut state)
    };
    stub.calls.lock().expect("calls lock").push(call);
    let mut resp = (StatusCode::from_u16(status).expect("a valid status"), body).into_response();
    for (k, v) in extra {
        resp.headers_mut()
            .insert(k, v.parse().expect("a valid header value"));
    }
    resp
}

struct Running {
    base: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Running {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls lock").clone()
    }
}

async fn start(respond: impl Fn(&Call, &mut Value) -> Answer + Send + Sync + 'static) -> Running {
    let stub = Stub {
        calls: Arc::default(),
        state: Arc::new(Mutex::new(json!({}))),
        respond: Arc::new(respond),
    };
    let calls = stub.calls.clone();
    let app = Router::new().fallback(handle).with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("stub serves");
    });
    Running {
        base: format!("http://{addr}"),
        calls,
    }
}

fn hal(status: u16, body: Value) -> Answer {
    (
        status,
        vec![("content-type", "application/hal+json".into())],
        body.to_string(),
    )
}

fn problem(status: u16, body: Value) -> Answer {
    (
        status,
        vec![("content-type", "application/problem+json".into())],
        body.to_string(),
    )
}

#[derive(Debug)]
struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(FixedClock(
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid time"),
    ))
}

fn client(base: &str) -> AmoCrm {
    AmoCrm::new(
        reqwest::Client::new(),
        base,
        TOKEN,
        RateLimiter::new(RateLimit::AMOCRM),
    )
}

fn oauth(consent: &str) -> OAuthApp {
    OAuthApp::new(
        reqwest::Client::new(),
        CLIENT_ID,
        CLIENT_SECRET,
        REDIRECT,
        consent,
        clock(),
    )
}

#[tokio::test]
async fn code_exchange_and_refresh_rotate_the_pair() {
    let stub = start(|c, state| {
        if c.path != "/acme/oauth2/access_token" || c.method != Method::POST {
            return problem(404, json!({"title": "Not Found"}));
        }
        let b = c.json();
        if b["client_id"] != CLIENT_ID
            || b["client_secret"] != CLIENT_SECRET
            || b["redirect_uri"] != REDIRECT
        {
            return problem(400, json!({"hint": "bad client"}));
        }
        let n = state["issued"].as_u64().unwrap_or(0) + 1;
        let ok = match b["grant_type"].as_str() {
            Some("authorization_code") => b["code"] == "the-code",
            Some("refresh_token") => {
                // Single use: only the latest refresh token works, once.
                let live = state["live_refresh"].clone();
                b["refresh_token"] == live && !live.is_null()
            }
            _ => false,
        };
        if !ok {
            return problem(
                400,
                json!({"title": "Bad Request", "detail": "Refresh token has been revoked", "status": 400}),
            );
        }
        state["issued"] = json!(n);
        state["live_refresh"] = json!(format!("refresh-{n}"));
        hal(
            200,
            json!({"token_type": "Bearer", "expires_in": 86400, "server_time": 1, "access_token": format!("access-{n}"), "refresh_token": format!("refresh-{n}")}),
        )
    })
    .await;

    let hosts = AccountHosts::Template(format!("{}/{{subdomain}}", stub.base));
    let base = hosts.base_url_for("acme.amocrm.ru").expect("a base URL");
    let app = oauth("https://www.amocrm.ru/oauth");

    let t1 = app
        .exchange_code(&base, "the-code")
        .await
        .expect("exchanged");
    assert_eq!(t1.access, "access-1");
    assert_eq!(t1.refresh, "refresh-1");
    let now = clock().now().timestamp();
    assert_eq!(t1.expires_at, now + 86400);

    let t2 = app.refresh(&base, &t1.refresh).await.expect("refreshed");
    assert_eq!(
        (t2.access.as_str(), t2.refresh.as_str()),
        ("access-2", "refresh-2")
    );

    // The old refresh token died with the rotation: reconnect is needed.
    let reused = app.refresh(&base, &t1.refresh).await;
    assert!(
        matches!(reused, Err(CrmError::Unauthorized(_))),
        "{reused:?}"
    );
    // A used code is refused for good, and the secret never shows in the error.
    let again = app
        .exchange_code(&base, "the-code-used")
        .await
        .expect_err("refused");
    assert!(matches!(again, CrmError::Permanent { .. }), "{again:?}");
    assert!(!format!("{again:?} {again}").contains(CLIENT_SECRET));

    let calls = stub.calls();
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[1].json()["grant_type"], "refresh_token");
    assert!(calls[0]
        .header("content-type")
        .starts_with("application/json"));
}

fn contact(id: i64, phone: &str, leads: &[i64]) -> Value {
    json!({"id": id, "name": format!("Contact {id}"), "responsible_user_id": 5500001,
        "custom_fields_values": [{"field_id": 66192, "field_code": "PHONE", "field_name": "Phone",
            "values": [{"value": phone, "enum_code": "MOB"}]}],
        "_embedded": {"leads": leads.iter().map(|l| json!({"id": l})).collect::<Vec<_>>(), "companies": []}})
}

fn lead(id: i64, status_id: i64) -> Value {
    json!({"id": id, "name": format!("Lead {id}"), "price": 0, "responsible_user_id": 5500001,
        "status_id": status_id, "pipeline_id": 3177727, "created_at": 1700000000, "is_deleted": false})
}

#[tokio::test]
async fn finds_contact_by_phone_and_its_open_deal_then_creates_contact_company_and_lead() {
    let stub = start(|c, _| {
        if c.header("authorization") != format!("Bearer {TOKEN}") {
            return problem(401, json!({"title": "Unauthorized", "status": 401}));
        }
        match (c.method.as_str(), c.path.as_str()) {
            ("GET", "/api/v4/contacts") if c.query.contains("query=9991234567") => hal(
                200,
                json!({"_embedded": {"contacts": [
                    // A substring hit with another number: must be rejected client-side.
                    contact(11, "+7 (999) 123-45-678", &[]),
                    contact(12, "8 999 123-45-67", &[19619, 19700, 19800]),
                ]}}),
            ),
            ("GET", "/api/v4/contacts") => (204, vec![], String::new()),
            ("GET", "/api/v4/contacts/12") => {
                hal(200, contact(12, "89991234567", &[19619, 19700, 19800]))
            }
            ("GET", "/api/v4/leads/19800") => hal(200, lead(19800, 142)),
            ("GET", "/api/v4/leads/19700") => hal(200, lead(19700, 32392159)),
            ("GET", "/api/v4/leads/19619") => hal(200, lead(19619, 143)),
            ("POST", "/api/v4/companies") => hal(
                200,
                json!({"_embedded": {"companies": [{"id": 7, "request_id": "0"}]}}),
            ),
            ("POST", "/api/v4/contacts") => hal(
                200,
                json!({"_embedded": {"contacts": [{"id": 403181, "request_id": "0"}]}}),
            ),
            ("POST", "/api/v4/contacts/403181/link") => {
                hal(200, json!({"_embedded": {"links": []}}))
            }
            ("POST", "/api/v4/leads") => hal(
                200,
                json!({"_embedded": {"leads": [{"id": 10185151, "request_id": "conv-1"}]}}),
            ),
            _ => problem(404, json!({"title": "Not Found", "status": 404})),
        }
    })
    .await;
    let crm = client(&stub.base);

    let found = crm
        .find_contact(&ContactQuery {
            phones: vec!["+79991234567".into()],
            emails: vec!["nobody@example.com".into()],
            ..ContactQuery::default()
        })
        .await
        .expect("searched")
        .expect("found");
    assert_eq!(found.id, 12);
    assert_eq!(found.phones, vec!["+79991234567".to_owned()]);

    let open = crm
        .find_open_deal(12)
        .await
        .expect("looked")
        .expect("an open deal");
    assert_eq!(open.id, 19700, "won 19800 is skipped, newest open wins");
    assert!(!open.closed);

    let none = crm
        .find_contact(&ContactQuery {
            emails: vec!["nobody@example.com".into()],
            ..ContactQuery::default()
        })
        .await
        .expect("searched");
    assert_eq!(none, None, "204 is an empty result");

    let created = crm
        .create_contact(&NewContact {
            name: "Ivan Petrov".into(),
            phones: vec!["+79990000001".into()],
            responsible_user_id: Some(5500001),
            company: Some(NewCompany {
                name: "Romashka LLC".into(),
                responsible_user_id: None,
            }),
            ..NewContact::default()
        })
        .await
        .expect("created");
    assert_eq!((created.contact_id, created.company_id), (403181, Some(7)));

    let deal = crm
        .create_deal(&NewDeal {
            request_id: "conv-1".into(),
            name: "Telegram: Ivan".into(),
            pipeline_id: Some(3177727),
            status_id: Some(32392159),
            responsible_user_id: Some(5500001),
            tags: vec!["telegram".into()],
            fields: vec![FieldValue {
                field_id: 1286575,
                values: vec![FieldScalar::Choice(2957741)],
            }],
            contact_id: Some(created.contact_id),
            unsorted_form: None,
        })
        .await
        .expect("created");
    assert_eq!(deal.deal_id, 10185151);

    let calls = stub.calls();
    let post = |path: &str| {
        calls
            .iter()
            .find(|c| c.method == Method::POST && c.path == path)
            .unwrap_or_else(|| panic!("no POST {path}"))
            .json()
    };
    assert_eq!(
        post("/api/v4/contacts"),
        json!([{"name": "Ivan Petrov", "responsible_user_id": 5500001, "request_id": "0",
            "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+79990000001", "enum_code": "MOB"}]}]}])
    );
    assert_eq!(
        post("/api/v4/contacts/403181/link"),
        json!([{"to_entity_id": 7, "to_entity_type": "companies"}])
    );
    assert_eq!(
        post("/api/v4/leads"),
        json!([{"name": "Telegram: Ivan", "request_id": "conv-1", "pipeline_id": 3177727, "status_id": 32392159,
            "responsible_user_id": 5500001, "tags_to_add": [{"name": "telegram"}],
            "custom_fields_values": [{"field_id": 1286575, "values": [{"enum_id": 2957741}]}],
            "_embedded": {"contacts": [{"id": 403181, "is_main": true}]}}])
    );
}

fn draft(rid: &str, contact: DraftContact) -> DealDraft {
    DealDraft {
        deal: NewDeal {
            request_id: rid.into(),
            name: format!("Deal {rid}"),
            pipeline_id: Some(3177727),
            ..NewDeal::default()
        },
        contact,
    }
}

#[tokio::test]
async fn complex_batch_of_three_maps_results_by_request_id() {
    let stub = start(|c, _| match c.path.as_str() {
        // The official bare array (§3.5); "m-2" and "m-3" collapsed into one merged lead.
        "/api/v4/leads/complex" => hal(
            200,
            json!([
                {"id": 15198335, "contact_id": 19663157, "company_id": 19663155, "request_id": ["m-1"], "merged": false},
                {"id": 15198336, "contact_id": 403181, "company_id": null, "request_id": ["m-2", "m-3"], "merged": true}
            ]),
        ),
        _ => problem(404, json!({"title": "Not Found"})),
    })
    .await;
    let crm = client(&stub.base);
    let drafts = [
        draft(
            "m-1",
            DraftContact::New(Box::new(NewContact {
                name: "Ivan".into(),
                phones: vec!["+79991234567".into()],
                company: Some(NewCompany {
                    name: "Romashka LLC".into(),
                    responsible_user_id: None,
                }),
                ..NewContact::default()
            })),
        ),
        draft("m-2", DraftContact::Existing(403181)),
        draft("m-3", DraftContact::Existing(403181)),
    ];
    let items = crm
        .create_deals(&drafts)
        .await
        .expect("the batch went through");
    let got: Vec<(String, DealCreated)> = items
        .into_iter()
        .map(|i| (i.request_id, i.result.expect("created")))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "m-1".into(),
                DealCreated {
                    deal_id: 15198335,
                    contact_id: Some(19663157),
                    company_id: Some(19663155),
                    merged: false
                }
            ),
            (
                "m-2".into(),
                DealCreated {
                    deal_id: 15198336,
                    contact_id: Some(403181),
                    company_id: None,
                    merged: true
                }
            ),
            (
                "m-3".into(),
                DealCreated {
                    deal_id: 15198336,
                    contact_id: Some(403181),
                    company_id: None,
                    merged: true
                }
            ),
        ]
    );
    let calls = stub.calls();
    assert_eq!(calls.len(), 1, "one request for three deals");
    let body = calls[0].json();
    assert_eq!(body.as_array().map(Vec::len), Some(3));
    assert_eq!(body[0]["request_id"], "m-1");
    assert_eq!(
        body[0]["_embedded"]["companies"],
        json!([{"name": "Romashka LLC"}])
    );
    assert_eq!(
        body[0]["_embedded"]["contacts"][0]["custom_fields_values"][0]["field_code"],
        "PHONE"
    );
    assert_eq!(body[1]["_embedded"]["contacts"], json!([{"id": 403181}]));

    // More than 50 is refused before anything is sent.
    let many: Vec<DealDraft> = (0..51)
        .map(|i| draft(&i.to_string(), DraftContact::Existing(1)))
        .collect();
    assert!(matches!(
        crm.create_deals(&many).await,
        Err(CrmError::Permanent { .. })
    ));
    assert_eq!(stub.calls().len(), 1);
}

#[tokio::test]
async fn refused_batch_item_is_permanent_and_the_rest_retryable() {
    let stub = start(|_, _| {
        problem(
            400,
            json!({"title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400,
                "detail": "Request validation failed", "validation-errors": [{"request_id": "b",
                "errors": [{"code": "NotSupportedChoice", "path": "custom_fields_values.0.field_id", "detail": "no such field"}]}]}),
        )
    })
    .await;
    let crm = client(&stub.base);
    let items = crm
        .create_deals(&[
            draft("a", DraftContact::Existing(1)),
            draft("b", DraftContact::Existing(1)),
        ])
        .await
        .expect("per-item results");
    assert!(
        matches!(items[0].result, Err(CrmError::Transient(_))),
        "{items:?}"
    );
    let Err(CrmError::Permanent { fields, .. }) = &items[1].result else {
        panic!("b is refused: {items:?}");
    };
    assert_eq!(fields[0].path, "custom_fields_values.0.field_id");
}

#[tokio::test]
async fn status_codes_are_classified() {
    let stub = start(|c, _| match c.path.as_str() {
        "/api/v4/account" => (429, vec![("retry-after", "7".into())], String::new()),
        "/api/v4/leads/pipelines" => problem(
            401,
            json!({"title": "Unauthorized", "status": 401, "detail": "Token expired"}),
        ),
        "/api/v4/users" => (503, vec![], "<html>bad gateway</html>".into()),
        _ => (
            403,
            vec![("content-type", "text/html".into())],
            "<html>nginx</html>".into(),
        ),
    })
    .await;
    let crm = client(&stub.base);
    match crm.account().await {
        Err(CrmError::RateLimited {
            retry_after_secs, ..
        }) => assert_eq!(retry_after_secs, 7),
        other => panic!("429 must be RateLimited: {other:?}"),
    }
    let unauthorized = crm.pipelines().await;
    assert!(
        matches!(unauthorized, Err(CrmError::Unauthorized(_))),
        "{unauthorized:?}"
    );
    let e = unauthorized.expect_err("an error");
    assert!(!e.to_string().contains(TOKEN));
    assert!(matches!(crm.users().await, Err(CrmError::Transient(_))));
    assert!(matches!(
        crm.add_note(1, "x").await,
        Err(CrmError::Permanent { .. })
    ));

    // Nothing listens on this port any more: a network error is transient.
    let gone = client("http://127.0.0.1:9");
    assert!(matches!(gone.account().await, Err(CrmError::Transient(_))));
}

#[tokio::test]
async fn metadata_sync_reads_account_pipelines_users_and_paged_fields() {
    let stub = start(|c, _| match c.path.as_str() {
        "/api/v4/account" => hal(
            200,
            json!({"id": 31000001, "name": "Acme", "subdomain": "acme", "current_user_id": 5500001, "country": "RU",
                "is_unsorted_on": true, "amojo_id": "af9945ff-1490-4cad-807d-945c15d88bec",
                "_embedded": {"datetime_settings": {"timezone": "Europe/Moscow", "timezone_offset": "+03:00"}}}),
        ),
        "/api/v4/leads/pipelines" => hal(
            200,
            json!({"_total_items": 1, "_embedded": {"pipelines": [{"id": 3177727, "name": "Main", "sort": 1, "is_main": true,
                "is_unsorted_on": true, "is_archive": false, "account_id": 31000001, "_embedded": {"statuses": [
                {"id": 32392156, "name": "Incoming leads", "sort": 10, "is_editable": false, "pipeline_id": 3177727, "color": "#c1c1c1", "type": 1},
                {"id": 32392159, "name": "First contact", "sort": 20, "is_editable": true, "pipeline_id": 3177727, "color": "#99ccff", "type": 0},
                {"id": 142, "name": "Won", "sort": 10000, "type": 0, "pipeline_id": 3177727},
                {"id": 143, "name": "Lost", "sort": 11000, "type": 0, "pipeline_id": 3177727}]}}]}}),
        ),
        "/api/v4/users" => hal(
            200,
            json!({"_page": 1, "_embedded": {"users": [{"id": 5500001, "name": "Ivan", "email": "ivan@example.com", "lang": "ru",
                "amojo_id": "8f3c0e0c-0000-4000-8000-000000000002",
                "rights": {"is_admin": true, "is_free": false, "is_active": true}}]}}),
        ),
        "/api/v4/contacts/custom_fields" if c.query.contains("page=1&") => hal(
            200,
            json!({"_page": 1, "_links": {"next": {"href": "…?page=2"}}, "_embedded": {"custom_fields": [
                {"id": 66192, "name": "Phone", "code": "PHONE", "type": "multitext", "entity_type": "contacts",
                 "enums": [{"id": 193226, "value": "WORK", "sort": 2}, {"id": 193228, "value": "MOB", "sort": 6}]}]}}),
        ),
        "/api/v4/contacts/custom_fields" => hal(
            200,
            json!({"_page": 2, "_embedded": {"custom_fields": [
                {"id": 1286575, "name": "Telegram", "code": null, "type": "text", "entity_type": "contacts", "enums": null}]}}),
        ),
        _ => problem(404, json!({"title": "Not Found"})),
    })
    .await;
    let crm = client(&stub.base);
    let account = crm.account().await.expect("account");
    assert_eq!(account.id, 31000001);
    assert_eq!(
        account.chat_account_id.as_deref(),
        Some("af9945ff-1490-4cad-807d-945c15d88bec")
    );
    assert_eq!(account.timezone.as_deref(), Some("Europe/Moscow"));

    let pipelines = crm.pipelines().await.expect("pipelines");
    let kinds: Vec<StageKind> = pipelines[0].statuses.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            StageKind::Unsorted,
            StageKind::Regular,
            StageKind::Won,
            StageKind::Lost
        ]
    );

    let users = crm.users().await.expect("users");
    assert!(users[0].is_admin && users[0].can_be_responsible());
    assert_eq!(
        users[0].chat_user_id.as_deref(),
        Some("8f3c0e0c-0000-4000-8000-000000000002")
    );

    let fields = crm
        .custom_fields(chatter_crm::EntityKind::Contacts)
        .await
        .expect("fields");
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["Phone", "Telegram"], "both pages read");
    assert_eq!(fields[0].enums.len(), 2);
}

#[tokio::test]
async fn the_limiter_lets_at_most_seven_requests_a_second_through() {
    let stub = start(|_, _| {
        hal(
            200,
            json!({"id": 1, "name": "A", "subdomain": "a", "current_user_id": 1}),
        )
    })
    .await;
    // Two clients of the same account share one bucket.
    let limiter = RateLimiter::new(RateLimit::AMOCRM);
    let a = AmoCrm::new(reqwest::Client::new(), &stub.base, TOKEN, limiter.clone());
    let b = AmoCrm::new(reqwest::Client::new(), &stub.base, TOKEN, limiter);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { c.account().await }));
    }
    for t in tasks {
        t.await.expect("task").expect("answered");
    }
    let calls = stub.calls();
    assert_eq!(calls.len(), 24);
    let first = calls.iter().map(|c| c.at).min().expect("calls");
    let mut per_second = std::collections::BTreeMap::<u64, usize>::new();
    for c in &calls {
        *per_second.entry((c.at - first).as_secs()).or_default() += 1;
    }
    // And in any sliding second, as the stub saw them arrive.
    let mut at: Vec<Duration> = calls.iter().map(|c| c.at - first).collect();
    at.sort();
    let worst_window = at
        .iter()
        .map(|t| {
            at.iter()
                .filter(|u| **u >= *t && **u - *t < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    println!("requests per second window: {per_second:?}; worst sliding second: {worst_window}");
    assert!(per_second.values().all(|n| *n <= 7), "{per_second:?}");
    assert!(worst_window <= 7, "{worst_window}");
}

#[tokio::test]
async fn sign_in_identifies_the_account_and_user_with_or_without_admin_rights() {
    let stub = start(|c, _| match c.path.as_str() {
        "/api/v4/account" => hal(
            200,
            json!({"id": 31000001, "name": "Acme", "subdomain": "acme", "current_user_id": 5500001}),
        ),
        "/api/v4/users/5500001" if c.header("authorization") == "Bearer admin-token" => hal(
            200,
            json!({"id": 5500001, "name": "Ivan", "email": "ivan@example.com", "lang": "ru", "rights": {"is_admin": true}}),
        ),
        // §1.8: reading a user needs admin rights.
        "/api/v4/users/5500001" => problem(403, json!({"title": "Forbidden", "status": 403})),
        _ => problem(404, json!({"title": "Not Found"})),
    })
    .await;
    let limiter = RateLimiter::new(RateLimit::AMOCRM);
    let admin = AmoCrm::new(
        reqwest::Client::new(),
        &stub.base,
        "admin-token",
        limiter.clone(),
    );
    let who = oauth::identify(&admin).await.expect("identified");
    assert_eq!((who.account_id, who.user_id), (31000001, 5500001));
    assert_eq!(who.email.as_deref(), Some("ivan@example.com"));
    assert_eq!(who.is_admin, Some(true));

    let manager = AmoCrm::new(reqwest::Client::new(), &stub.base, "manager-token", limiter);
    let who = oauth::identify(&manager)
        .await
        .expect("identified without rights");
    assert_eq!(
        (who.account_id, who.user_id, who.subdomain.as_str()),
        (31000001, 5500001, "acme")
    );
    assert_eq!((who.name, who.is_admin), (None, None));
}

fn chats_client(base: &str) -> ChatsClient {
    ChatsClient::new(
        reqwest::Client::new(),
        base,
        CHANNEL,
        CHANNEL_SECRET,
        clock(),
    )
}

/// The stub side of §4.2: recompute the signature from what arrived.
fn signature_ok(c: &Call) -> bool {
    let md5 = chats::content_md5(&c.body);
    let sts = chats::string_to_sign(
        c.method.as_str(),
        &md5,
        c.header("content-type"),
        c.header("date"),
        &c.path,
    );
    c.header("content-md5") == md5
        && c.header("x-signature") == chats::hmac_sha1_hex(CHANNEL_SECRET, sts.as_bytes())
}

#[tokio::test]
async fn chats_requests_are_signed_and_shaped_per_spec() {
    let scope = format!("{CHANNEL}_af9945ff-1490-4cad-807d-945c15d88bec");
    let scope2 = scope.clone();
    let stub = start(move |c, _| {
        if !signature_ok(c) {
            return (
                403,
                vec![],
                json!({"status": 0, "error_code": 403, "error_type": "ORIGIN_INVALID_SIGNATURE", "error_description": "invalid signature"}).to_string(),
            );
        }
        let b = c.json();
        if c.path == format!("/v2/origin/custom/{CHANNEL}/connect") {
            return hal(200, json!({"account_id": b["account_id"], "scope_id": scope2, "title": b["title"], "hook_api_version": "v2"}));
        }
        if c.path == format!("/v2/origin/custom/{scope2}") {
            return hal(200, json!({"new_message": {"conversation_id": "6cbab3d5-c4c1-46ff-b710-ad59ad10805f",
                "sender_id": "u-1", "receiver_id": null, "msgid": "amojo-msg-1", "ref_id": b["payload"]["msgid"]}}));
        }
        if c.path.ends_with("/delivery_status") {
            return (200, vec![], String::new());
        }
        (404, vec![], String::new())
    })
    .await;
    let chats = chats_client(&stub.base);
    let conn = chats
        .connect("af9945ff-1490-4cad-807d-945c15d88bec", "Telegram")
        .await
        .expect("connected");
    assert_eq!(conn.scope_id, scope);

    let crm = client(&stub.base).with_chats(chats.clone(), &conn.scope_id);
    assert!(crm.supports_chat());
    let sent = crm
        .send_chat_message(&ChatMessage {
            conversation_id: "tg-987654321".into(),
            conversation_ref: None,
            msgid: "tg-m-555".into(),
            sender: ChatParty {
                id: "tg-u-987654321".into(),
                name: "Ivan Petrov".into(),
                ..ChatParty::default()
            },
            direction: ChatDirection::FromCustomer,
            text: "Hi, how much?".into(),
            sent_at_ms: 1_700_000_000_123,
            source_external_id: Some("tg-acme".into()),
            silent: false,
            media: None,
        })
        .await
        .expect("accepted");
    assert_eq!(sent.message_ref, "amojo-msg-1");
    assert_eq!(
        sent.conversation_ref,
        "6cbab3d5-c4c1-46ff-b710-ad59ad10805f"
    );

    crm.update_delivery_status("amojo-msg-9", &DeliveryStatus::Delivered)
        .await
        .expect("reported");

    // A wrong secret is refused by the other side and classified with the fix.
    let wrong = ChatsClient::new(reqwest::Client::new(), &stub.base, CHANNEL, "0000", clock());
    let e = wrong.connect("x", "t").await.expect_err("refused");
    assert!(e.to_string().contains("channel secret"), "{e}");

    let calls = stub.calls();
    assert!(calls[..3].iter().all(signature_ok));
    assert_eq!(calls[0].header("date"), "Mon, 01 Jan 2024 00:00:00 +0000");
    assert_eq!(calls[0].json()["hook_api_version"], "v2");
    assert_eq!(calls[1].json()["payload"]["sender"]["id"], "tg-u-987654321");
    assert!(calls[1].json()["payload"].get("receiver").is_none());
    assert_eq!(
        calls[2].path,
        format!("/v2/origin/custom/{scope}/amojo-msg-9/delivery_status")
    );
    assert_eq!(
        calls[2].json(),
        json!({"msgid": "amojo-msg-9", "delivery_status": 1})
    );
}
