//! The fake amoCRM driven over HTTP as the integration drives the real one: OAuth, REST v4,
//! the limiter, injected failures, and amojo with signatures checked both ways.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chatter_fakes::{AccountId, FakeAmo};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sha1::Sha1;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CLIENT_ID: &str = "0b0832f6-d123-4123-9123-e73f236833c0";
const CLIENT_SECRET: &str = "client-secret-value";
const REDIRECT: &str = "https://chatter.example/integrations/amocrm/callback";
const CHANNEL: &str = "f90ba33d-c9d9-44da-b76c-c349b0ecbe41";
const CHANNEL_SECRET: &str = "5a44c5dff55f3c15a4cce8d7c4cc27e207c7e189";

struct Tokens {
    access: String,
    refresh: String,
}

async fn start() -> (FakeAmo, AccountId, reqwest::Client) {
    let amo = FakeAmo::start().await.expect("fake starts");
    amo.register_integration(CLIENT_ID, CLIENT_SECRET, REDIRECT);
    let account = amo.create_account("acme", "Акме");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    (amo, account, client)
}

fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .expect("redirect is a URL")
        .query_pairs()
        .into_owned()
        .collect()
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

async fn token_request(amo: &FakeAmo, client: &reqwest::Client, body: Value) -> (u16, Value) {
    let response = client
        .post(format!("{}/oauth2/access_token", amo.base_url()))
        .json(&body)
        .send()
        .await
        .expect("token request");
    read(response).await
}

async fn exchange(amo: &FakeAmo, client: &reqwest::Client, code: &str) -> (u16, Value) {
    token_request(
        amo,
        client,
        json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "authorization_code",
               "code": code, "redirect_uri": REDIRECT}),
    )
    .await
}

async fn refresh(amo: &FakeAmo, client: &reqwest::Client, refresh_token: &str) -> (u16, Value) {
    token_request(
        amo,
        client,
        json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "refresh_token",
               "refresh_token": refresh_token, "redirect_uri": REDIRECT}),
    )
    .await
}

fn tokens(body: &Value) -> Tokens {
    Tokens {
        access: body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned(),
        refresh: body["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_owned(),
    }
}

async fn connect(amo: &FakeAmo, client: &reqwest::Client, account: AccountId) -> Tokens {
    let redirect = amo.approve(account, CLIENT_ID, "st");
    let code = query_of(&redirect)["code"].clone();
    let (status, body) = exchange(amo, client, &code).await;
    assert_eq!(status, 200, "{body}");
    tokens(&body)
}

async fn api(
    amo: &FakeAmo,
    client: &reqwest::Client,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client
        .request(method, format!("{}{path}", amo.base_url()))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.expect("API request")).await
}

#[tokio::test]
async fn code_exchange_gives_tokens_and_a_code_works_once() {
    let (amo, account, client) = start().await;
    let redirect = amo.approve(account, CLIENT_ID, "state-42");
    assert!(redirect.starts_with(REDIRECT), "{redirect}");
    let q = query_of(&redirect);
    assert_eq!(q["state"], "state-42");
    assert_eq!(q["referer"], "acme.amocrm.ru");
    assert_eq!(q["platform"], "1");
    assert_eq!(q["client_id"], CLIENT_ID);

    let (status, body) = exchange(&amo, &client, &q["code"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 86400);
    let t = tokens(&body);
    assert_eq!(t.access.split('.').count(), 3, "the access token is a JWT");

    let (status, me) = api(
        &amo,
        &client,
        &t.access,
        "GET",
        "/api/v4/account?with=amojo_id",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(me["id"], account.0);
    assert_eq!(me["subdomain"], "acme");
    assert_eq!(me["amojo_id"], amo.amojo_id(account));
    assert_eq!(me["current_user_id"], amo.users(account)[0]["id"]);

    let (status, body) = exchange(&amo, &client, &q["code"]).await;
    assert_eq!(status, 400, "a used code is refused: {body}");
    assert_eq!(body["status"], 400);
}

#[tokio::test]
async fn a_wrong_redirect_uri_or_secret_or_an_expired_code_is_refused() {
    let (amo, account, client) = start().await;
    let code = query_of(&amo.approve(account, CLIENT_ID, ""))["code"].clone();
    let (status, _) = token_request(
        &amo,
        &client,
        json!({"client_id": CLIENT_ID, "client_secret": "wrong", "grant_type": "authorization_code",
               "code": code, "redirect_uri": REDIRECT}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = token_request(
        &amo,
        &client,
        json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "authorization_code",
               "code": code, "redirect_uri": "https://chatter.example/other"}),
    )
    .await;
    assert_eq!(status, 400);

    let code = query_of(&amo.approve(account, CLIENT_ID, ""))["code"].clone();
    amo.advance_clock(Duration::from_secs(21 * 60));
    let (status, _) = exchange(&amo, &client, &code).await;
    assert_eq!(status, 400, "a code lives 20 minutes");
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_is_refused() {
    let (amo, account, client) = start().await;
    let first = connect(&amo, &client, account).await;
    let (status, body) = refresh(&amo, &client, &first.refresh).await;
    assert_eq!(status, 200, "{body}");
    let second = tokens(&body);
    assert_ne!(second.access, first.access);
    assert_ne!(second.refresh, first.refresh);
    let (status, _) = api(
        &amo,
        &client,
        &second.access,
        "GET",
        "/api/v4/account",
        None,
    )
    .await;
    assert_eq!(status, 200);

    let (status, body) = refresh(&amo, &client, &first.refresh).await;
    assert_eq!(
        status, 400,
        "the old refresh token died with its use: {body}"
    );
    let (status, _) = refresh(&amo, &client, &second.refresh).await;
    assert_eq!(status, 200, "the new one still works once");
}

#[tokio::test]
async fn tokens_are_bound_to_their_account_and_expire() {
    let (amo, acme, client) = start().await;
    let other = amo.create_account("other", "Другая");
    let a = connect(&amo, &client, acme).await;
    let b = connect(&amo, &client, other).await;

    let (status, _) = api(
        &amo,
        &client,
        &a.access,
        "POST",
        "/api/v4/contacts",
        Some(json!([{"name": "Иван"}])),
    )
    .await;
    assert_eq!(status, 200);
    let (_, me) = api(&amo, &client, &b.access, "GET", "/api/v4/account", None).await;
    assert_eq!(me["id"], other.0);
    let (status, _) = api(&amo, &client, &b.access, "GET", "/api/v4/contacts", None).await;
    assert_eq!(
        status, 204,
        "another account's token sees none of acme's contacts"
    );

    let (status, body) = api(&amo, &client, "not-a-token", "GET", "/api/v4/account", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["status"], 401);

    amo.advance_clock(Duration::from_secs(86_400 + 60));
    let (status, _) = api(&amo, &client, &a.access, "GET", "/api/v4/account", None).await;
    assert_eq!(status, 401, "an access token lives 24 hours");
    let (status, body) = refresh(&amo, &client, &a.refresh).await;
    assert_eq!(status, 200, "the refresh token outlives it: {body}");
}

#[tokio::test]
async fn the_consent_page_redirects_with_a_code_or_access_denied() {
    let (amo, account, client) = start().await;
    let page = client
        .get(format!(
            "{}/oauth?client_id={CLIENT_ID}&state=s1&mode=popup",
            amo.base_url()
        ))
        .send()
        .await
        .expect("consent page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("Разрешить"));

    let allow = client
        .post(format!("{}/oauth", amo.base_url()))
        .form(&[
            ("client_id", CLIENT_ID),
            ("state", "s1"),
            ("account", &account.to_string()),
            ("decision", "allow"),
        ])
        .send()
        .await
        .expect("allow");
    assert!(allow.status().is_redirection());
    let location = allow.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let q = query_of(&location);
    assert_eq!(q["state"], "s1");
    let (status, _) = exchange(&amo, &client, &q["code"]).await;
    assert_eq!(status, 200);

    let deny = client
        .post(format!("{}/oauth", amo.base_url()))
        .form(&[
            ("client_id", CLIENT_ID),
            ("state", "s2"),
            ("account", &account.to_string()),
            ("decision", "deny"),
        ])
        .send()
        .await
        .expect("deny");
    let q = query_of(deny.headers()["location"].to_str().expect("location"));
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "s2");
}

#[tokio::test]
async fn a_contact_is_found_by_its_phone_written_differently() {
    let (amo, account, client) = start().await;
    // More than 7 calls in a row: the limiter has its own test.
    amo.set_rate_limit(1000);
    let t = connect(&amo, &client, account).await;
    let (status, body) = api(
        &amo,
        &client,
        &t.access,
        "POST",
        "/api/v4/contacts",
        Some(json!([{"first_name": "Иван", "last_name": "Петров", "request_id": "c1",
            "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": "+7 (999) 123-45-67", "enum_code": "MOB"}]},
                {"field_code": "EMAIL", "values": [{"value": "Ivan@Example.ru"}]}]}])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let created = &body["_embedded"]["contacts"][0];
    assert_eq!(created["request_id"], "c1");
    let id = created["id"].as_i64().expect("id");

    for query in ["89991234567", "79991234567", "ivan@example.ru", "Петров"] {
        let (status, found) = api(
            &amo,
            &client,
            &t.access,
            "GET",
            &format!("/api/v4/contacts?query={}&with=leads", urlencode(query)),
            None,
        )
        .await;
        assert_eq!(status, 200, "query {query}");
        let contacts = found["_embedded"]["contacts"].as_array().expect("contacts");
        assert_eq!(contacts.len(), 1, "query {query}");
        assert_eq!(contacts[0]["id"], id);
        assert_eq!(contacts[0]["name"], "Иван Петров");
        assert!(contacts[0]["_embedded"]["leads"].is_array());
        let phone = &contacts[0]["custom_fields_values"][0];
        assert_eq!(phone["field_code"], "PHONE");
        assert_eq!(phone["values"][0]["enum_code"], "MOB");
    }
    let (status, _) = api(
        &amo,
        &client,
        &t.access,
        "GET",
        "/api/v4/contacts?query=89990000000",
        None,
    )
    .await;
    assert_eq!(status, 204, "no match is an empty 204");

    let (status, body) = api(
        &amo,
        &client,
        &t.access,
        "POST",
        "/api/v4/contacts",
        Some(json!([{"name": "Bad", "custom_fields_values": [{"field_id": 1, "values": [{"value": "x"}]}]}])),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["validation-errors"][0]["request_id"], "0");
    assert_eq!(
        body["validation-errors"][0]["errors"][0]["code"],
        "NotSupportedChoice"
    );
    assert_eq!(
        amo.contacts(account).len(),
        1,
        "an invalid batch stores nothing"
    );
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn leads_complex_creates_leads_with_contacts_and_links() {
    let (amo, account, client) = start().await;
    // More than 7 calls in a row: the limiter has its own test.
    amo.set_rate_limit(1000);
    let t = connect(&amo, &client, account).await;
    let items: Vec<Value> = (0..3)
        .map(|i| {
            json!({"name": format!("Telegram: клиент {i}"), "request_id": format!("m-{i}"),
                   "tags_to_add": [{"name": "telegram"}],
                   "_embedded": {"contacts": [{"first_name": format!("Клиент {i}"),
                       "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": format!("+7999000000{i}")}]}]}],
                     "companies": if i == 0 { json!([{"name": "Ромашка"}]) } else { json!([]) }}})
        })
        .collect();
    let (status, body) = api(
        &amo,
        &client,
        &t.access,
        "POST",
        "/api/v4/leads/complex",
        Some(Value::Array(items)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answers = body.as_array().expect("a bare array");
    assert_eq!(answers.len(), 3);
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["request_id"], json!([format!("m-{i}")]));
        assert_eq!(answer["merged"], false);
        assert!(answer["contact_id"].is_i64());
    }
    assert!(answers[0]["company_id"].is_i64());
    assert!(answers[1]["company_id"].is_null());

    let leads = amo.leads(account);
    assert_eq!(leads.len(), 3);
    let main = &amo.pipelines(account)[0];
    for answer in answers {
        let lead = leads
            .iter()
            .find(|l| l["id"] == answer["id"])
            .expect("lead stored");
        assert_eq!(lead["_embedded"]["contacts"][0]["id"], answer["contact_id"]);
        assert_eq!(lead["_embedded"]["contacts"][0]["is_main"], true);
        assert_eq!(lead["pipeline_id"], main["id"]);
        assert_eq!(
            lead["status_id"], main["_embedded"]["statuses"][1]["id"],
            "first stage after Неразобранное"
        );
        assert_eq!(lead["_embedded"]["tags"][0]["name"], "telegram");
    }
    assert_eq!(amo.contacts(account).len(), 3);
    let contact = answers[0]["contact_id"].as_i64().expect("contact");
    let (_, c) = api(
        &amo,
        &client,
        &t.access,
        "GET",
        &format!("/api/v4/contacts/{contact}?with=leads"),
        None,
    )
    .await;
    assert_eq!(c["_embedded"]["leads"][0]["id"], answers[0]["id"]);
    assert_eq!(
        c["_embedded"]["companies"][0]["id"],
        answers[0]["company_id"]
    );

    let too_many: Vec<Value> = (0..51).map(|i| json!({"name": format!("{i}")})).collect();
    let (status, _) = api(
        &amo,
        &client,
        &t.access,
        "POST",
        "/api/v4/leads/complex",
        Some(Value::Array(too_many)),
    )
    .await;
    assert_eq!(status, 400, "at most 50 per request");
}

#[tokio::test]
async fn the_contacts_open_deal_is_found_and_a_closed_one_moves_out() {
    let (amo, account, client) = start().await;
    // More than 7 calls in a row: the limiter has its own test.
    amo.set_rate_limit(1000);
    let t = connect(&amo, &client, account).await;
    let (_, body) = api(
        &amo,
        &client,
        &t.access,
        "POST",
        "/api/v4/contacts",
        Some(json!([{"name": "Ольга"}])),
    )
    .await;
    let contact = body["_embedded"]["contacts"][0]["id"]
        .as_i64()
        .expect("contact");
    let manager = amo.users(account)[1]["id"].as_i64().expect("manager");
    let (status, body) = api(
        &amo,
        &client,
        &t.access,
        "POST",
        "/api/v4/leads",
        Some(json!([{"name": "Старая", "_embedded": {"contacts": [{"id": contact}]}},
                    {"name": "Новая", "responsible_user_id": manager, "_embedded": {"contacts": [{"id": contact}]}}])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let old = body["_embedded"]["leads"][0]["id"].as_i64().expect("lead");
    let new = body["_embedded"]["leads"][1]["id"].as_i64().expect("lead");

    let (status, body) = api(
        &amo,
        &client,
        &t.access,
        "PATCH",
        &format!("/api/v4/leads/{old}"),
        Some(json!({"status_id": 143, "tags_to_add": [{"name": "повтор"}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, lead) = api(
        &amo,
        &client,
        &t.access,
        "GET",
        &format!("/api/v4/leads/{old}"),
        None,
    )
    .await;
    assert_eq!(lead["status_id"], 143);
    assert!(lead["closed_at"].is_i64());
    assert_eq!(lead["_embedded"]["tags"][0]["name"], "повтор");

    let (_, c) = api(
        &amo,
        &client,
        &t.access,
        "GET",
        &format!("/api/v4/contacts/{contact}?with=leads"),
        None,
    )
    .await;
    let ids: Vec<String> = c["_embedded"]["leads"]
        .as_array()
        .expect("leads")
        .iter()
        .map(|l| l["id"].to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let filter: String = ids.iter().map(|id| format!("filter[id][]={id}&")).collect();
    let (_, found) = api(
        &amo,
        &client,
        &t.access,
        "GET",
        &format!("/api/v4/leads?{filter}with=contacts"),
        None,
    )
    .await;
    let open: Vec<&Value> = found["_embedded"]["leads"]
        .as_array()
        .expect("leads")
        .iter()
        .filter(|l| l["status_id"] != 142 && l["status_id"] != 143)
        .collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["id"], new);
    assert_eq!(open[0]["responsible_user_id"], manager);

    let pipeline = amo.pipelines(account)[0]["id"].as_i64().expect("pipeline");
    let (_, closed) = api(
        &amo,
        &client,
        &t.access,
        "GET",
        &format!("/api/v4/leads?filter[statuses][0][pipeline_id]={pipeline}&filter[statuses][0][status_id]=143"),
        None,
    )
    .await;
    assert_eq!(closed["_embedded"]["leads"][0]["id"], old);

    let (status, body) = api(
        &amo,
        &client,
        &t.access,
        "POST",
        "/api/v4/leads/notes",
        Some(json!([{"entity_id": new, "note_type": "common", "params": {"text": "Клиент прислал фото"}, "request_id": "n1"}])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["_embedded"]["notes"][0]["request_id"], "n1");
    assert_eq!(
        amo.notes(account)[0]["params"]["text"],
        "Клиент прислал фото"
    );
}

#[tokio::test]
async fn the_eighth_request_in_a_second_is_refused_for_that_account_only() {
    let (amo, acme, client) = start().await;
    let other = amo.create_account("other", "Другая");
    let a = connect(&amo, &client, acme).await;
    let b = connect(&amo, &client, other).await;

    let burst = (0..20).map(|_| {
        api(
            &amo,
            &client,
            &a.access,
            "GET",
            "/api/v4/leads/pipelines",
            None,
        )
    });
    let answers = futures::future::join_all(burst).await;
    let refused: Vec<&(u16, Value)> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert!(
        !refused.is_empty(),
        "20 requests at once exceed 7 per second"
    );
    assert_eq!(refused[0].1["status"], 429);
    assert_eq!(amo.throttled(acme), refused.len());

    // Whatever the timing, the admitted requests never exceed 7 in any second.
    let admitted: Vec<_> = amo
        .account_requests(acme)
        .into_iter()
        .filter(|r| r.status != 429)
        .map(|r| r.at)
        .collect();
    for (i, start) in admitted.iter().enumerate() {
        let within = admitted[i..]
            .iter()
            .filter(|t| t.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(within <= 7, "{within} admitted within a second");
    }

    let (status, _) = api(
        &amo,
        &client,
        &b.access,
        "GET",
        "/api/v4/leads/pipelines",
        None,
    )
    .await;
    assert_eq!(status, 200, "another account has its own budget");
    assert_eq!(amo.throttled(other), 0);
}

#[tokio::test]
async fn fail_next_injects_a_502_once() {
    let (amo, account, client) = start().await;
    let t = connect(&amo, &client, account).await;
    amo.fail_next("/api/v4/leads", 502, 1);
    let (status, body) = api(&amo, &client, &t.access, "GET", "/api/v4/leads", None).await;
    assert_eq!(status, 502);
    assert_eq!(body["status"], 502);
    let (status, _) = api(&amo, &client, &t.access, "GET", "/api/v4/leads", None).await;
    assert_eq!(status, 204, "only the next one fails");
}

#[tokio::test]
async fn revoked_tokens_answer_401_and_cannot_be_refreshed() {
    let (amo, account, client) = start().await;
    let t = connect(&amo, &client, account).await;
    amo.revoke_tokens(account);
    let (status, _) = api(&amo, &client, &t.access, "GET", "/api/v4/account", None).await;
    assert_eq!(status, 401);
    let (status, _) = refresh(&amo, &client, &t.refresh).await;
    assert_eq!(status, 400);
    let again = connect(&amo, &client, account).await;
    let (status, _) = api(&amo, &client, &again.access, "GET", "/api/v4/account", None).await;
    assert_eq!(status, 200, "re-authorizing works");
}

// ---------------------------------------------------------------------------------------------
// amojo

fn hmac_sha1_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// A request signed as §4.2 prescribes.
async fn amojo(
    amo: &FakeAmo,
    client: &reqwest::Client,
    secret: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let md5 = hex::encode(Md5::digest(&bytes));
    let date = chrono::Utc::now().to_rfc2822();
    let to_sign = format!("{method}\n{md5}\napplication/json\n{date}\n{path}");
    let signature = hmac_sha1_hex(secret, to_sign.as_bytes());
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let response = client
        .request(method, format!("{}{path}", amo.base_url()))
        .header("Date", date)
        .header("Content-Type", "application/json")
        .header("Content-MD5", md5)
        .header("X-Signature", signature)
        .body(bytes)
        .send()
        .await
        .expect("amojo request");
    read(response).await
}

async fn connect_channel(amo: &FakeAmo, client: &reqwest::Client, account: AccountId) -> String {
    let amojo_id = amo.amojo_id(account);
    let (status, body) = amojo(
        amo,
        client,
        CHANNEL_SECRET,
        "POST",
        &format!("/v2/origin/custom/{CHANNEL}/connect"),
        Some(&json!({"account_id": amojo_id, "title": "Telegram", "hook_api_version": "v2"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope_id"], format!("{CHANNEL}_{amojo_id}"));
    body["scope_id"].as_str().expect("scope").to_owned()
}

fn incoming(msgid: &str, text: &str) -> Value {
    json!({"event_type": "new_message", "payload": {"timestamp": 1_700_000_000, "msec_timestamp": 1_700_000_000_123_i64,
        "msgid": msgid, "conversation_id": "tg-987654321",
        "sender": {"id": "tg-u-987654321", "name": "Ivan Petrov", "profile": {"phone": "+79991234567"}},
        "message": {"type": "text", "text": text}, "source": {"external_id": "tg-acme"}, "silent": false}})
}

#[tokio::test]
async fn a_signed_message_is_accepted_and_a_badly_signed_one_refused() {
    let (amo, account, client) = start().await;
    amo.register_chat_channel(CHANNEL, CHANNEL_SECRET, None);
    let scope = connect_channel(&amo, &client, account).await;
    let path = format!("/v2/origin/custom/{scope}");

    let (status, body) = amojo(
        &amo,
        &client,
        CHANNEL_SECRET,
        "POST",
        &path,
        Some(&incoming("tg-m-1", "Сколько стоит?")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["new_message"]["ref_id"], "tg-m-1");
    let chat_id = body["new_message"]["conversation_id"]
        .as_str()
        .expect("chat")
        .to_owned();
    let amojo_msg = body["new_message"]["msgid"]
        .as_str()
        .expect("msgid")
        .to_owned();

    let (status, again) = amojo(
        &amo,
        &client,
        CHANNEL_SECRET,
        "POST",
        &path,
        Some(&incoming("tg-m-1", "Сколько стоит?")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        again["new_message"]["msgid"],
        amojo_msg.as_str(),
        "a resent msgid is not a second message"
    );

    let wrong = "0000000000000000000000000000000000000000";
    let (status, body) = amojo(
        &amo,
        &client,
        wrong,
        "POST",
        &path,
        Some(&incoming("tg-m-2", "подделка")),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error_type"], "ORIGIN_INVALID_SIGNATURE");

    let messages = amo.chat_messages(account);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["message"]["text"], "Сколько стоит?");
    assert_eq!(messages[0]["direction"], "incoming");
    assert_eq!(messages[0]["chat_id"], chat_id.as_str());

    // amoCRM's own side effect: a contact with the phone and an Unsorted lead for it.
    let leads = amo.leads(account);
    assert_eq!(leads.len(), 1);
    let unsorted = amo.pipelines(account)[0]["_embedded"]["statuses"][0]["id"].clone();
    assert_eq!(leads[0]["status_id"], unsorted);
    assert_eq!(amo.contacts(account)[0]["name"], "Ivan Petrov");

    let (status, _) = amojo(
        &amo,
        &client,
        CHANNEL_SECRET,
        "POST",
        &format!("{path}/{amojo_msg}/delivery_status"),
        Some(&json!({"msgid": amojo_msg, "delivery_status": -1, "error_code": 905, "error": "Telegram: bot was blocked by the user"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(amo.chat_messages(account)[0]["delivery_status"], -1);

    let (status, history) = amojo(
        &amo,
        &client,
        CHANNEL_SECRET,
        "GET",
        &format!("{path}/chats/{chat_id}/history"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["messages"][0]["message"]["text"], "Сколько стоит?");
}

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>);

async fn receive(
    State(received): State<Received>,
    Path(scope): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    received
        .0
        .lock()
        .expect("lock")
        .push((scope, headers, body));
    StatusCode::OK
}

#[tokio::test]
async fn a_managers_reply_reaches_our_webhook_signed() {
    let received = Received::default();
    let app = Router::new()
        .route("/amojo/{scope}", post(receive))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (amo, account, client) = start().await;
    amo.register_chat_channel(
        CHANNEL,
        CHANNEL_SECRET,
        Some(&format!("http://{addr}/amojo/:scope_id")),
    );
    let scope = connect_channel(&amo, &client, account).await;
    let (status, _) = amojo(
        &amo,
        &client,
        CHANNEL_SECRET,
        "POST",
        &format!("/v2/origin/custom/{scope}"),
        Some(&incoming("tg-m-1", "Здравствуйте")),
    )
    .await;
    assert_eq!(status, 200);

    let status = amo
        .manager_replies(account, "tg-987654321", "Добрый день! 1500 ₽")
        .await
        .expect("delivered");
    assert_eq!(status, 200);

    let hooks = received.0.lock().expect("lock").clone();
    assert_eq!(hooks.len(), 1);
    let (path_scope, headers, body) = &hooks[0];
    assert_eq!(path_scope, &scope, ":scope_id is substituted");
    let signature = headers["x-signature"].to_str().expect("signature");
    assert_eq!(
        signature,
        hmac_sha1_hex(CHANNEL_SECRET, body),
        "signed with the channel secret over the raw body"
    );
    let hook: Value = serde_json::from_slice(body).expect("JSON hook");
    assert_eq!(hook["account_id"], amo.amojo_id(account));
    assert_eq!(hook["message"]["conversation"]["client_id"], "tg-987654321");
    assert_eq!(hook["message"]["receiver"]["client_id"], "tg-u-987654321");
    assert_eq!(hook["message"]["message"]["type"], "text");
    assert_eq!(hook["message"]["message"]["text"], "Добрый день! 1500 ₽");

    let outgoing: Vec<Value> = amo
        .chat_messages(account)
        .into_iter()
        .filter(|m| m["direction"] == "outgoing")
        .collect();
    assert_eq!(outgoing.len(), 1);
    assert_eq!(outgoing[0]["id"], hook["message"]["message"]["id"]);

    let page = client
        .get(format!("{}/ui/acme", amo.base_url()))
        .send()
        .await
        .expect("ui");
    let html = page.text().await.expect("html");
    assert!(html.contains("Здравствуйте") && html.contains("Добрый день! 1500 ₽"));
}

#[tokio::test]
async fn a_chat_linked_to_a_contact_with_an_open_deal_bypasses_unsorted() {
    let (amo, account, client) = start().await;
    amo.register_chat_channel(CHANNEL, CHANNEL_SECRET, None);
    let scope = connect_channel(&amo, &client, account).await;
    let t = connect(&amo, &client, account).await;

    let chat_request = json!({"conversation_id": "tg-987654321", "source": {"external_id": "tg-acme"},
        "user": {"id": "tg-u-987654321", "name": "Ivan Petrov", "profile": {"phone": "79991234567"}}});
    let (status, chat) = amojo(
        &amo,
        &client,
        CHANNEL_SECRET,
        "POST",
        &format!("/v2/origin/custom/{scope}/chats"),
        Some(&chat_request),
    )
    .await;
    assert_eq!(status, 200, "{chat}");
    let (_, same) = amojo(
        &amo,
        &client,
        CHANNEL_SECRET,
        "POST",
        &format!("/v2/origin/custom/{scope}/chats"),
        Some(&chat_request),
    )
    .await;
    assert_eq!(same["id"], chat["id"], "one chat per conversation_id");

    let (status, created) = api(
        &amo,
        &client,
        &t.access,
        "POST",
        "/api/v4/leads/complex",
        Some(json!([{"name": "Telegram: Ivan", "_embedded": {"contacts": [{"first_name": "Ivan"}]}}])),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let contact = created[0]["contact_id"].clone();
    let (status, linked) = api(
        &amo,
        &client,
        &t.access,
        "POST",
        "/api/v4/contacts/chats",
        Some(json!([{"contact_id": contact, "chat_id": chat["id"]}])),
    )
    .await;
    assert_eq!(status, 200, "{linked}");
    assert_eq!(linked["_embedded"]["chats"][0]["request_id"], "0");

    let (status, _) = amojo(
        &amo,
        &client,
        CHANNEL_SECRET,
        "POST",
        &format!("/v2/origin/custom/{scope}"),
        Some(&incoming("tg-m-1", "Привет")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        amo.leads(account).len(),
        1,
        "no Unsorted lead next to the open one"
    );
    assert_eq!(amo.contacts(account).len(), 1);
    assert_eq!(amo.chats(account)[0]["contact_id"], contact);
}
