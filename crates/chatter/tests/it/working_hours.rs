//! Working hours (issue 14, item 1), through the Automation pages and `/api/v1/working-hours`, on
//! the database the run uses: the company's week with a lunch break, a short day and a holiday,
//! read in its own time zone with "now: open until … / closed until …"; a source's own hours over
//! the company's and back; every bad field named, in the user's language, with nothing stored.

use crate::api::{api, create_key};
use crate::messages::{company_with_bot, count};
use chatter_testkit::{Session, TestApp};
use serde_json::{json, Value};

/// Monday 7 December 2026, 10:00 in Moscow (07:00 UTC).
const MONDAY_10_MSK: i64 = 1_796_626_800_000;

/// (days after Monday 7 December 2026, hour, minute) in Moscow (UTC+3), as Unix ms.
fn msk((day, hour, minute): (i64, i64, i64)) -> i64 {
    MONDAY_10_MSK + ((day * 24 + hour - 10) * 60 + minute) * 60_000
}

const WEEK: &[(&str, &str)] = &[
    ("zone", "Europe/Moscow"),
    ("mon", "09:00–13:00, 14:00–18:00"),
    ("tue", "09:00-13:00, 14:00-18:00"),
    ("wed", "9-18"),
    ("thu", "09:00–18:00"),
    ("fri", "09:00–17:00"),
    ("sat", ""),
    ("sun", ""),
    ("days", "2026-12-31 09:00–15:00\n01.01.2027"),
];

fn with(field: &str, value: &'static str) -> Vec<(&'static str, &'static str)> {
    WEEK.iter()
        .map(|(k, v)| if *k == field { (*k, value) } else { (*k, *v) })
        .collect()
}

async fn state(s: &Session, path: &str) -> String {
    let page = s.html(path).await;
    let at = page.find("id=\"hours-state\"").expect("the state line");
    let text = &page[at..];
    text[text.find('>').expect(">") + 1..text.find("</p>").expect("</p>")].to_string()
}

#[tokio::test]
async fn the_company_sets_its_week_and_sees_whether_it_is_open_now() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    clock.set(MONDAY_10_MSK);
    let (s, _, _) = company_with_bot(&app).await;
    assert!(state(&s, "/app/automation")
        .await
        .contains("Рабочие часы не заданы"));

    let r = s
        .post_from("/app/automation/hours", "/app/automation/hours", WEEK)
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/app/automation/hours?ok=saved");
    assert_eq!(
        state(&s, "/app/automation/hours").await,
        "Сейчас: открыто до пн 07.12 13:00"
    );
    // The form reads back as typed, written the one way.
    let page = s.html("/app/automation/hours").await;
    assert!(page.contains("value=\"09:00–18:00\""), "{page}");
    assert!(
        page.contains("2026-12-31 09:00–15:00\n2027-01-01</textarea>"),
        "{page}"
    );

    // The lunch break, Friday evening, the short day and the holiday after it.
    // The lunch break, Friday evening, the short day and the holiday after it: (days after
    // Monday 7 December, hour, minute) in Moscow.
    for (at, want) in [
        ((0, 13, 30), "закрыто до пн 07.12 14:00"),
        ((4, 17, 0), "закрыто до пн 14.12 09:00"),
        ((24, 14, 59), "открыто до чт 31.12 15:00"),
        ((24, 15, 0), "закрыто до пн 04.01 09:00"),
    ] {
        clock.set(msk(at));
        assert_eq!(state(&s, "/app/automation").await, want, "at {at:?}");
    }
    // In English the same, in its words.
    s.get("/lang/en").await;
    assert_eq!(
        state(&s, "/app/automation").await,
        "closed until Mon 04.01 09:00"
    );
    // The audit log names the change.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'hours.save'"
        )
        .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn every_bad_field_is_named_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let (s, _, _) = company_with_bot(&app).await;
    for (field, value, says) in [
        ("zone", "Europe/Atlantis", "Неизвестный часовой пояс"),
        ("tue", "18:00–09:00", "кончается раньше, чем начинается"),
        ("wed", "09:00–13:00, 12:00–18:00", "пересекаются"),
        ("thu", "с утра до вечера", "Время не читается"),
        ("fri", "09:00–25:00", "Время не читается"),
        (
            "days",
            "2026-12-31\n\n2026-02-30",
            "Строка 3: дата не читается",
        ),
        (
            "days",
            "2026-12-31\n31.12.2026 10:00-12:00",
            "Строка 2: эта дата уже есть",
        ),
        (
            "days",
            "2026-12-31 15:00-09:00",
            "Строка 1: время не читается",
        ),
    ] {
        let r = s
            .post_from(
                "/app/automation/hours",
                "/app/automation/hours",
                &with(field, value),
            )
            .await;
        assert_eq!(r.status(), 422, "{field}={value}");
        let page = r.text().await.expect("page");
        let error = format!("<p class=\"field-error\" data-field=\"{field}\">");
        let shown = page
            .split(&error)
            .nth(1)
            .and_then(|rest| rest.split("</p>").next())
            .unwrap_or_else(|| panic!("{field}={value}: no error by the field: {page}"));
        assert!(shown.contains(says), "{field}: {shown}");
        // What was typed is kept for fixing.
        assert!(
            page.contains(value.split('\n').next().unwrap_or(value)),
            "{page}"
        );
        assert_eq!(count(&app, "SELECT count(*) FROM working_hours").await, 0);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_source_gets_hours_of_its_own_and_gives_them_back() {
    let app = TestApp::builder().with_manual_clock().start().await;
    app.clock.clone().expect("manual clock").set(MONDAY_10_MSK);
    let (s, _, source) = company_with_bot(&app).await;
    s.post_from("/app/automation/hours", "/app/automation/hours", WEEK)
        .await;
    let page = format!("/app/automation/hours?source={source}");
    let html = s.html(&page).await;
    assert!(html.contains("работает по часам компании"), "{html}");
    assert!(
        !html.contains("id=\"hours-reset\""),
        "nothing of its own to remove"
    );
    assert_eq!(state(&s, &page).await, "Сейчас: открыто до пн 07.12 13:00");

    // Around the clock, in Vladivostok's zone.
    let all = "00:00–24:00";
    let own: Vec<(&str, &str)> = [
        ("zone", "Asia/Vladivostok"),
        ("mon", all),
        ("tue", all),
        ("wed", all),
        ("thu", all),
        ("fri", all),
        ("sat", all),
        ("sun", all),
        ("days", ""),
    ]
    .into();
    let r = s
        .post_from(
            &page,
            &format!("/app/automation/hours?source={source}"),
            &own,
        )
        .await;
    assert_eq!(r.status(), 303);
    let html = s.html(&page).await;
    assert!(html.contains("свои рабочие часы"), "{html}");
    assert_eq!(state(&s, &page).await, "Сейчас: открыто круглосуточно");
    // The company's hours are unchanged.
    assert_eq!(
        state(&s, "/app/automation/hours").await,
        "Сейчас: открыто до пн 07.12 13:00"
    );

    let r = s
        .post_from(
            &page,
            &format!("/app/automation/hours/reset?source={source}"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    let html = s.html(&format!("{page}&ok=hours_reset")).await;
    assert!(html.contains("снова работает по часам компании"), "{html}");
    assert_eq!(state(&s, &page).await, "Сейчас: открыто до пн 07.12 13:00");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'hours.reset'"
        )
        .await,
        1
    );
    app.stop().await;
}

async fn put(app: &TestApp, key: &str, query: &str, body: &Value) -> (u16, Value) {
    let r = app
        .client()
        .put(app.at(&format!("/api/v1/working-hours{query}")))
        .header("authorization", format!("Bearer {key}"))
        .json(body)
        .send()
        .await
        .expect("PUT");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_api_reads_replaces_and_removes_hours_and_names_bad_fields() {
    let app = TestApp::builder().with_manual_clock().start().await;
    app.clock.clone().expect("manual clock").set(MONDAY_10_MSK);
    let (s, _, source) = company_with_bot(&app).await;
    let key = create_key(&s, "hours").await;
    let read = |q: String| {
        let (app, key) = (&app, key.clone());
        async move {
            let r = api(app, &format!("/api/v1/working-hours{q}"), Some(&key)).await;
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = read(String::new()).await;
    assert_eq!(
        (status, &body["hours"], &body["now"]),
        (200, &Value::Null, &Value::Null)
    );

    let day = json!([{"from": "09:00", "to": "13:00"}, {"from": "14:00", "to": "18:00"}]);
    let hours = json!({
        "zone": "Europe/Moscow",
        "week": {"mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": [], "sun": []},
        "days": [{"date": "2027-01-01", "spans": []}],
    });
    let (status, body) = put(&app, &key, "", &hours).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hours"], hours);
    assert_eq!(
        body["now"],
        json!({"open": true, "until": "2026-12-07T10:00:00+00:00"})
    );
    // The page shows what the API stored.
    assert_eq!(
        state(&s, "/app/automation/hours").await,
        "Сейчас: открыто до пн 07.12 13:00"
    );

    // Bad fields: 422 naming each, nothing changed.
    let mut bad = hours.clone();
    bad["zone"] = json!("Mars/Olympus");
    bad["week"]["tue"] = json!([{"from": "18:00", "to": "09:00"}]);
    bad["week"]["wed"] = json!([{"from": "09:00", "to": "25:00"}]);
    bad["days"] = json!([{"date": "2027-02-30", "spans": []}]);
    let (status, body) = put(&app, &key, "", &bad).await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["field"].as_str().expect("field"))
        .collect();
    assert_eq!(
        fields,
        ["wed", "days"],
        "times and dates that do not read first: {body}"
    );
    bad["week"]["wed"] = day.clone();
    bad["days"] = json!([]);
    let (status, body) = put(&app, &key, "", &bad).await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<(&str, &str)> = body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| {
            (
                f["field"].as_str().expect("field"),
                f["code"].as_str().expect("code"),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [("zone", "hours.err_zone"), ("tue", "hours.err_order")],
        "{body}"
    );
    let (_, body) = read(String::new()).await;
    assert_eq!(body["hours"], hours, "unchanged");

    // A source's own hours, then back to the company's.
    let q = format!("?source_id={source}");
    let mut own = hours.clone();
    own["zone"] = json!("Asia/Vladivostok");
    let (status, body) = put(&app, &key, &q, &own).await;
    assert_eq!((status, body["own"].as_bool()), (200, Some(true)), "{body}");
    // 17:00 in Vladivostok: open until 18:00 there (08:00 UTC).
    assert_eq!(
        body["now"],
        json!({"open": true, "until": "2026-12-07T08:00:00+00:00"})
    );
    let r = app
        .client()
        .delete(app.at(&format!("/api/v1/working-hours{q}")))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        (body["own"].as_bool(), &body["hours"]),
        (Some(false), &hours)
    );

    // Another company's source, or none at all: not found, nothing stored.
    let other = uuid::Uuid::new_v4();
    let (status, _) = put(&app, &key, &format!("?source_id={other}"), &hours).await;
    assert_eq!(status, 404);
    let (status, _) = read(format!("?source_id={other}")).await;
    assert_eq!(status, 404);
    assert_eq!(count(&app, "SELECT count(*) FROM working_hours").await, 1);
    app.stop().await;
}
