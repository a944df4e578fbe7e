//! `POST /api/v1/sources`: a source of any kind with a form is connected through the API with
//! the same fields and checks as the Sources page, and answered as `GET /api/v1/sources`
//! lists it; wrong credentials, unknown kinds and an unreachable provider are 422s naming the
//! field, and store nothing.

use crate::api::create_key;
use crate::team::PW;
use chatter_fakes::VkFailure;
use chatter_testkit::{Session, TestApp};
use serde_json::{json, Value};

async fn create(app: &TestApp, key: &str, body: Value) -> (u16, Value) {
    let r = app
        .client()
        .post(app.at("/api/v1/sources"))
        .header("authorization", format!("Bearer {key}"))
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON"))
}

async fn listed(app: &TestApp, key: &str) -> Vec<Value> {
    let r = app
        .client()
        .get(app.at("/api/v1/sources"))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    r.json().await.expect("JSON")
}

/// The refused field and its code.
fn refusal(body: &Value) -> (String, String) {
    let f = &body["error"]["fields"][0];
    (
        f["field"].as_str().unwrap_or_default().to_owned(),
        f["code"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_vk_community_is_connected_through_the_api_and_bad_tokens_are_clear_422s() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.test", PW).await;
    let key = create_key(&owner, "sources").await;
    let group = app.vk.create_group("Ромашка ВКонтакте", "romashka");

    // A token VK refuses: 422 on the token, nothing stored.
    let (status, body) = create(
        &app,
        &key,
        json!({"kind": "vk_bot", "fields": {"vk_token": "x".repeat(40), "vk_group_id": format!("club{}", group.id)}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid", "{body}");
    assert_eq!(
        refusal(&body),
        ("vk_token".into(), "vk_token_rejected".into())
    );
    // Malformed values are refused before VK is asked, each on its field.
    let (status, body) = create(
        &app,
        &key,
        json!({"kind": "vk_bot", "fields": {"vk_token": "short", "vk_group_id": "nope"}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, ["vk_token", "vk_group_id"], "{body}");
    // Kinds without a form here, and kinds that do not exist.
    for kind in ["api", "telegram_private", "icq"] {
        let (status, body) = create(&app, &key, json!({"kind": kind, "fields": {}})).await;
        assert_eq!(status, 422, "{kind}: {body}");
        assert_eq!(
            refusal(&body),
            ("kind".into(), "kind_unsupported".into()),
            "{kind}"
        );
    }
    // VK down: the token's field says the provider did not answer.
    app.vk
        .fail_next(group.id, "groups.getById", VkFailure::Http(503), 1);
    let (status, body) = create(
        &app,
        &key,
        json!({"kind": "vk_bot", "fields": {"vk_token": &group.token, "vk_group_id": group.id.to_string()}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        refusal(&body),
        ("vk_token".into(), "provider_unreachable".into())
    );
    assert!(listed(&app, &key).await.is_empty(), "nothing stored");

    // The right token: 201 with the source as the list shows it, named after the community.
    let (status, body) = create(
        &app,
        &key,
        json!({"kind": "vk_bot", "name": "", "fields": {"vk_token": &group.token, "vk_group_id": format!("club{}", group.id)}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["kind"], "vk_bot");
    assert_eq!(body["kind_id"], 3);
    assert_eq!(body["name"], "Ромашка ВКонтакте");
    let list = listed(&app, &key).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], body["id"]);
    // The same community again is refused on the token's field.
    let (status, body) = create(
        &app,
        &key,
        json!({"kind": "vk_bot", "fields": {"vk_token": &group.token, "vk_group_id": group.id.to_string()}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        refusal(&body),
        ("vk_token".into(), "bot_already_added".into())
    );
    app.stop().await;
}
