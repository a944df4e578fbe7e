//! Labels, changing conversations through the API, and bulk actions: the company's labels with
//! their refusals, a conversation labelled and found by its label (API and inbox), another
//! company's label refused with nothing changed, and one action on a selection that skips what
//! a manager may not change and says how many.

use crate::api::create_key;
use crate::messages::{company_with_bot, count, eventually, location, PW};
use crate::team::join_new;
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Session, TestApp};
use serde_json::{json, Value};

/// An API request with the key; the status and the JSON body (Null when there is none).
async fn call(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .client()
        .request(method, app.at(path))
        .header("authorization", format!("Bearer {key}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("API request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The field codes of a 422 answer, as (field, code).
fn fields(body: &Value) -> Vec<(String, String)> {
    body["error"]["fields"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    (
                        f["field"].as_str().unwrap_or_default().to_owned(),
                        f["code"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Customers `names` write to the company's bot; returns their conversations' ids by name.
async fn conversations(app: &TestApp, s: &Session, token: &str, names: &[&str]) -> Vec<String> {
    for (i, n) in names.iter().enumerate() {
        app.telegram.customer_writes(
            token,
            CustomerMessage::text(7000 + i as i64, n, &format!("Здравствуйте, это {n}")),
        );
    }
    eventually("every customer's conversation is listed", || async {
        let page = s.html("/app/inbox").await;
        names
            .iter()
            .all(|n| page.contains(&format!("Здравствуйте, это {n}")))
    })
    .await;
    let page = s.html("/app/inbox").await;
    names
        .iter()
        .map(|n| {
            let at = page
                .find(&format!("Здравствуйте, это {n}"))
                .expect("the row");
            let start = page[..at].rfind("<li id=\"conv-").expect("the row's start");
            page[start + "<li id=\"conv-".len()..]
                .split('"')
                .next()
                .expect("id")
                .to_owned()
        })
        .collect()
}

/// A conversation's status and assignee (empty: nobody), as the API lists it.
async fn status_of(app: &TestApp, key: &str, id: &str) -> (String, String) {
    let (_, all) = call(
        app,
        key,
        reqwest::Method::GET,
        "/api/v1/conversations?status=all",
        None,
    )
    .await;
    let c = all
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["id"] == id)
        .expect("listed")
        .clone();
    (
        c["status"].as_str().unwrap_or_default().to_owned(),
        c["assignee_id"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn labels_are_kept_by_admins_with_clear_refusals() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.test", PW).await;
    let key = create_key(&owner, "labels").await;
    let post = reqwest::Method::POST;
    let (st, vip) = call(
        &app,
        &key,
        post.clone(),
        "/api/v1/labels",
        Some(json!({"name": "  VIP  ", "color": "red"})),
    )
    .await;
    assert_eq!(st, 201, "{vip}");
    assert_eq!(vip["name"], "VIP", "spaces around are trimmed");
    assert_eq!(vip["color"], "red");
    let long = "д".repeat(41);
    for (body, field, code) in [
        (
            json!({"name": "   ", "color": "red"}),
            "name",
            "label_name_required",
        ),
        (
            json!({"name": long, "color": "red"}),
            "name",
            "label_name_too_long",
        ),
        (
            json!({"name": "vip", "color": "blue"}),
            "name",
            "label_name_taken",
        ),
        (
            json!({"name": "VIP\u{202e}", "color": "blue"}),
            "name",
            "bidi_chars",
        ),
        (
            json!({"name": "V\nIP", "color": "blue"}),
            "name",
            "control_chars",
        ),
    ] {
        let (st, b) = call(&app, &key, post.clone(), "/api/v1/labels", Some(body)).await;
        assert_eq!(st, 422, "{b}");
        assert_eq!(fields(&b), vec![(field.to_owned(), code.to_owned())], "{b}");
    }
    let (st, b) = call(
        &app,
        &key,
        post.clone(),
        "/api/v1/labels",
        Some(json!({"name": "Опт", "color": "magenta"})),
    )
    .await;
    assert_eq!(st, 422, "an unknown colour: {b}");
    assert!(
        b["error"].to_string().contains("color"),
        "names the field: {b}"
    );
    // 40 characters are fine.
    let forty = "ж".repeat(40);
    let (st, b) = call(
        &app,
        &key,
        post.clone(),
        "/api/v1/labels",
        Some(json!({"name": forty, "color": "green"})),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let (_, list) = call(&app, &key, reqwest::Method::GET, "/api/v1/labels", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");

    // Rename and recolour; a rename onto another's name is refused and changes nothing.
    let vip_path = format!("/api/v1/labels/{}", vip["id"].as_str().expect("id"));
    let (st, b) = call(
        &app,
        &key,
        reqwest::Method::PATCH,
        &vip_path,
        Some(json!({"name": "VIP-клиент", "color": "purple"})),
    )
    .await;
    assert_eq!(
        (st, b["name"].as_str(), b["color"].as_str()),
        (200, Some("VIP-клиент"), Some("purple"))
    );
    let (st, b) = call(
        &app,
        &key,
        reqwest::Method::PATCH,
        &vip_path,
        Some(json!({"name": forty.to_uppercase()})),
    )
    .await;
    assert_eq!(st, 422, "{b}");
    assert_eq!(fields(&b), vec![("name".into(), "label_name_taken".into())]);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM labels WHERE name = 'VIP-клиент' AND color = 'purple'"
        )
        .await,
        1
    );

    // The settings page: the same refusal next to the field, the typed name kept.
    let r = owner
        .post_from(
            "/app/settings/labels",
            "/app/settings/labels",
            &[("name", &"x".repeat(41)), ("color", "blue")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("page");
    assert!(
        page.contains("data-field=\"name\""),
        "the error is at the field"
    );
    assert!(page.contains("не длиннее 40 символов"), "{page}");
    let r = owner
        .post_from(
            "/app/settings/labels",
            "/app/settings/labels",
            &[("name", "Доставка"), ("color", "teal")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let page = owner.html("/app/settings/labels").await;
    assert!(
        page.contains("label label-teal\">Доставка<"),
        "listed in its colour"
    );
    assert!(page.contains("data-confirm="), "deleting asks first");

    // Deleted: gone, and a second delete is a 404.
    let (st, _) = call(&app, &key, reqwest::Method::DELETE, &vip_path, None).await;
    assert_eq!(st, 204);
    let (st, _) = call(&app, &key, reqwest::Method::DELETE, &vip_path, None).await;
    assert_eq!(st, 404);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'label.%'"
        )
        .await,
        5,
        "created three, changed one, deleted one"
    );
}

#[tokio::test]
async fn a_labelled_conversation_is_found_by_its_label_and_another_companys_label_changes_nothing()
{
    let app = TestApp::new().await;
    let (s, token, _) = company_with_bot(&app).await;
    let key = create_key(&s, "labels").await;
    let ids = conversations(&app, &s, &token, &["Ольга", "Пётр"]).await;
    let (_, vip) = call(
        &app,
        &key,
        reqwest::Method::POST,
        "/api/v1/labels",
        Some(json!({"name": "VIP", "color": "red"})),
    )
    .await;
    let vip = vip["id"].as_str().expect("label id").to_owned();

    // Another company and its label.
    let other = Session::sign_up(&app, "Лютик", "Борис", "boris@lutik.test", PW).await;
    let other_key = create_key(&other, "other").await;
    let (_, foreign) = call(
        &app,
        &other_key,
        reqwest::Method::POST,
        "/api/v1/labels",
        Some(json!({"name": "Чужая", "color": "blue"})),
    )
    .await;
    let foreign = foreign["id"].as_str().expect("label id").to_owned();

    let olga = format!("/api/v1/conversations/{}", ids[0]);
    let (st, c) = call(
        &app,
        &key,
        reqwest::Method::PATCH,
        &olga,
        Some(json!({"labels": [vip]})),
    )
    .await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["labels"][0]["name"], "VIP", "{c}");

    // Another company's label: refused by the field, nothing changed (not even the status
    // asked for in the same request).
    let (st, b) = call(
        &app,
        &key,
        reqwest::Method::PATCH,
        &olga,
        Some(json!({"labels": [foreign], "status": "closed"})),
    )
    .await;
    assert_eq!(st, 422, "{b}");
    assert_eq!(fields(&b), vec![("labels".into(), "label_unknown".into())]);
    // Another company's conversation is not found; its label is not changed by a bulk either.
    let (st, _) = call(
        &app,
        &other_key,
        reqwest::Method::PATCH,
        &olga,
        Some(json!({"labels": [foreign]})),
    )
    .await;
    assert_eq!(st, 404);
    let (st, b) = call(
        &app,
        &key,
        reqwest::Method::POST,
        "/api/v1/conversations/bulk",
        Some(json!({"ids": [ids[1]], "action": "add_label", "label_id": foreign})),
    )
    .await;
    assert_eq!(st, 422, "{b}");
    assert_eq!(
        fields(&b),
        vec![("label_id".into(), "label_unknown".into())]
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM conversation_labels").await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM conversations WHERE status = 'closed'"
        )
        .await,
        0
    );

    // The filter, in the API and in the inbox.
    let (_, listed) = call(
        &app,
        &key,
        reqwest::Method::GET,
        &format!("/api/v1/conversations?label={vip}"),
        None,
    )
    .await;
    let listed: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(listed, vec![ids[0].as_str()]);
    let page = s.html(&format!("/app/inbox?label={vip}")).await;
    assert!(page.contains(&format!("conv-{}", ids[0])));
    assert!(
        !page.contains(&format!("conv-{}", ids[1])),
        "only the labelled one"
    );
    assert!(page.contains("label label-red"), "the row shows its label");

    // The inbox header takes it off; the audit log has both changes.
    let conv = format!("/app/inbox/{}", ids[0]);
    let r = s
        .post_from(
            &conv,
            &format!("{conv}/labels"),
            &[("label", &vip), ("on", "0")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), conv);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM conversation_labels").await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'conversation.labels'"
        )
        .await,
        2
    );

    // Status and assignee through the same PATCH.
    let (st, c) = call(
        &app,
        &key,
        reqwest::Method::PATCH,
        &olga,
        Some(json!({"status": "closed", "assignee_id": null})),
    )
    .await;
    assert_eq!((st, c["status"].as_str()), (200, Some("closed")), "{c}");
}

#[tokio::test]
async fn bulk_actions_skip_what_a_manager_may_not_change_and_say_how_many() {
    let app = TestApp::new().await;
    let (owner, token, _) = company_with_bot(&app).await;
    let key = create_key(&owner, "bulk").await;
    let manager = join_new(&app, &owner, "ivan@example.ru", "Иван", "manager").await;
    let ids = conversations(&app, &owner, &token, &["Ольга", "Пётр", "Мария"]).await;
    let owner_id = crate::team::user_id(&app, "anna@example.ru")
        .await
        .to_string();
    let manager_id = crate::team::user_id(&app, "ivan@example.ru")
        .await
        .to_string();
    // Ольга is the owner's, Пётр the manager's, Мария nobody's.
    for (i, who) in [(0, &owner_id), (1, &manager_id)] {
        let (st, b) = call(
            &app,
            &key,
            reqwest::Method::PATCH,
            &format!("/api/v1/conversations/{}", ids[i]),
            Some(json!({"assignee_id": who})),
        )
        .await;
        assert_eq!(st, 200, "{b}");
    }

    // The manager closes all three from the inbox: his and nobody's close, the owner's is
    // skipped, and the list says so.
    let mut form: Vec<(&str, &str)> = ids.iter().map(|i| ("ids", i.as_str())).collect();
    form.push(("action", "close"));
    let r = manager
        .post_from("/app/inbox", "/app/inbox/bulk", &form)
        .await;
    assert_eq!(r.status(), 303);
    let back = location(&r);
    assert!(
        back.contains("done=2") && back.contains("not_yours=1"),
        "{back}"
    );
    let page = manager.html(&back).await;
    assert!(page.contains("Закрыто: 2, пропущено 1 — не ваши"), "{page}");
    assert_eq!(
        status_of(&app, &key, &ids[0]).await.0,
        "open",
        "the owner's conversation stays open"
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM conversations WHERE status = 'closed'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'conversation.close'"
        )
        .await,
        2
    );

    // A label on all three by the manager: again two.
    let (_, label) = call(
        &app,
        &key,
        reqwest::Method::POST,
        "/api/v1/labels",
        Some(json!({"name": "Перезвонить", "color": "orange"})),
    )
    .await;
    let label = label["id"].as_str().expect("id").to_owned();
    let mut form: Vec<(&str, &str)> = ids.iter().map(|i| ("ids", i.as_str())).collect();
    form.extend([
        ("action", "add_label"),
        ("label", label.as_str()),
        ("status", "all"),
    ]);
    let r = manager
        .post_from("/app/inbox", "/app/inbox/bulk", &form)
        .await;
    let back = location(&r);
    assert!(
        back.contains("status=all") && back.contains("done=2"),
        "{back}"
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM conversation_labels").await,
        2
    );

    // The API key acts as an admin: everything of its company, and a foreign id is counted.
    let mut all: Vec<Value> = ids.iter().map(|i| json!(i)).collect();
    all.push(json!("01890a5d-ac96-774b-bcce-b302099a8057"));
    let (st, b) = call(
        &app,
        &key,
        reqwest::Method::POST,
        "/api/v1/conversations/bulk",
        Some(json!({"ids": all, "action": "assign", "assignee_id": manager_id})),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b,
        json!({"done": 3, "skipped_not_yours": 0, "skipped_missing": 1})
    );
    for id in &ids {
        assert_eq!(status_of(&app, &key, id).await.1, manager_id);
    }
    // The manager hears of each conversation given to him: Пётр's by the PATCH above, Ольга's
    // and Мария's by the bulk (Пётр's, already his, not again).
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM notifications n JOIN users u ON u.id = n.user_id \
             WHERE u.email = 'ivan@example.ru' AND n.kind = 'assigned'"
        )
        .await,
        3
    );
    let (st, b) = call(
        &app,
        &key,
        reqwest::Method::POST,
        "/api/v1/conversations/bulk",
        Some(json!({"ids": ids, "action": "remove_label", "label_id": label})),
    )
    .await;
    assert_eq!((st, b["done"].as_u64()), (200, Some(3)), "{b}");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM conversation_labels").await,
        0
    );

    // Too many, or none: refused by the field, nothing changed.
    let many: Vec<String> = (0..501).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for ids in [many, vec![]] {
        let (st, b) = call(
            &app,
            &key,
            reqwest::Method::POST,
            "/api/v1/conversations/bulk",
            Some(json!({"ids": ids, "action": "close"})),
        )
        .await;
        assert_eq!(st, 422, "{b}");
        assert_eq!(fields(&b)[0].0, "ids", "{b}");
    }
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM conversations WHERE status = 'closed'"
        )
        .await,
        2
    );
}
