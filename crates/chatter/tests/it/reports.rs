//! The reports page on a known data set (both databases): three customers on one day, two
//! answered after 5 and 25 minutes, one of them closed 40 minutes after it began; the figures
//! on the page, in the CSV and through the API, and bad periods refused with their reason.

use crate::messages::{company_with_bot, eventually};
use chatter_fakes::CustomerMessage;
use chatter_testkit::{Session, TestApp};

#[tokio::test]
async fn reports_give_the_known_times_per_source_manager_and_day() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    let (s, token, _) = company_with_bot(&app).await;
    let minute = 60_000;
    let convs = three_customers_two_answered(&app, &s, &token, 5600).await;
    // The first closed 40 minutes after it began.
    clock.advance(14 * minute);
    let page = format!("/app/inbox/{}", convs[0]);
    let r = s.post_from(&page, &format!("{page}/close"), &[]).await;
    assert_eq!(r.status(), 303);

    // The dashboard links the reports for an owner.
    assert!(s.html("/app").await.contains("href=\"/app/reports\""));
    let html = s.html("/app/reports").await;
    let figure = |id: &str| {
        let at = html
            .find(&format!("id=\"{id}\">"))
            .unwrap_or_else(|| panic!("{id}: {html}"));
        let rest = &html[at + id.len() + 6..];
        rest[..rest.find("</strong>").expect("end")].to_string()
    };
    assert_eq!(figure("rep-conversations"), "3");
    assert_eq!(
        figure("rep-first"),
        "15 мин / 25 мин",
        "median of 5 and 25 minutes, p90 the larger"
    );
    assert_eq!(figure("rep-resolution"), "40 мин / 40 мин");
    assert_eq!(figure("rep-messages"), "3 / 2");
    assert!(
        html.contains(
            "<td>Анна</td><td>2</td><td>15 мин / 25 мин</td><td>40 мин / 40 мин</td><td>2</td>"
        ),
        "the owner answered both first: {html}"
    );
    assert!(
        !html.contains(">reports.") && !html.contains(">err."),
        "an untranslated key: {html}"
    );

    // The CSV: one table, times in seconds.
    let r = s.get("/app/reports.csv").await;
    assert_eq!(r.status(), 200);
    let disposition = r
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(disposition.contains("chatter-report-"), "{disposition}");
    let csv = r.text().await.expect("body");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[1], "total,,,3,3,2,900,1500,2400,2400", "{csv}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("manager,Анна,,2,0,2,900,1500,2400,2400")),
        "{csv}"
    );
    let days: Vec<&&str> = lines.iter().filter(|l| l.starts_with("day,")).collect();
    assert_eq!(days.len(), 30, "30 days by default: {csv}");
    assert!(
        days.last().is_some_and(|d| d.ends_with(",3,3,2,,,,")),
        "{csv}"
    );

    // Bad periods: a clear reason, nothing shown.
    for (query, field, says) in [
        ("from=2026-13-01", "from", "ГГГГ-ММ-ДД"),
        ("from=2026-02-01&to=2026-01-01", "to", "раньше его начала"),
        ("from=2024-01-01&to=2025-06-01", "to", "длиннее года"),
    ] {
        let r = s.get(&format!("/app/reports?{query}")).await;
        assert_eq!(r.status(), 422, "{query}");
        let html = r.text().await.expect("body");
        assert!(
            html.contains(&format!("data-field=\"{field}\"")) && html.contains(says),
            "{query}: {html}"
        );
        assert!(!html.contains("id=\"report-figures\""), "{query}");
        let r = s.get(&format!("/app/reports.csv?{query}")).await;
        assert_eq!(r.status(), 422, "{query}");
    }

    // The same through the API, with an owner's key.
    let r = s
        .post_from(
            "/app/settings",
            "/app/settings/api-keys",
            &[("name", "reports")],
        )
        .await;
    let page = r.text().await.expect("body");
    let key = page
        .split("chk_")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .map(|k| format!("chk_{k}"))
        .expect("the new key");
    let api = |path: &str| {
        reqwest::Client::new()
            .get(app.at(path))
            .bearer_auth(&key)
            .send()
    };
    let v: serde_json::Value = api("/api/v1/reports")
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(v["total"]["conversations"], 3, "{v}");
    assert_eq!(
        v["total"]["first_response"]["median_ms"],
        15 * minute,
        "{v}"
    );
    assert_eq!(v["total"]["first_response"]["p90_ms"], 25 * minute, "{v}");
    assert_eq!(v["total"]["resolution"]["median_ms"], 40 * minute, "{v}");
    assert_eq!(v["by_manager"][0]["name"], "Анна", "{v}");
    assert_eq!(v["days"].as_array().map(Vec::len), Some(30), "{v}");
    let r = api("/api/v1/reports/csv").await.expect("GET");
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("total,,,3,3,2,900,1500,2400,2400"));
    let r = api("/api/v1/reports?from=2026-02-30").await.expect("GET");
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(v["fields"][0]["field"], "from", "{v}");
    app.stop().await;
}

/// Three customers write to the bot `token` a minute apart (ids from `first_customer`); the
/// first is answered 5 minutes after writing, the second 25 (the manual clock moves). Returns
/// the conversations' ids, oldest first.
pub(crate) async fn three_customers_two_answered(
    app: &TestApp,
    s: &Session,
    token: &str,
    first_customer: i64,
) -> Vec<String> {
    let clock = app.clock.clone().expect("manual clock");
    eventually("the bot is polled", || async {
        app.telegram.calls(token).iter().any(|c| c == "getUpdates")
    })
    .await;
    let minute = 60_000;
    let mut convs = Vec::new();
    for (i, who) in ["Анна Клиентка", "Борис", "Вера"].iter().enumerate() {
        let before = s.html("/app/inbox").await.matches("<li id=\"conv-").count();
        app.telegram.customer_writes(
            token,
            CustomerMessage::text(first_customer + i as i64, who, "Здравствуйте"),
        );
        eventually("the message arrives", || async {
            s.html("/app/inbox").await.matches("<li id=\"conv-").count() > before
        })
        .await;
        let list = s.html("/app/inbox").await;
        let id = list
            .split("<li id=\"conv-")
            .nth(1)
            .and_then(|x| x.split('"').next())
            .expect("newest row")
            .to_string();
        convs.push(id);
        clock.advance(minute);
    }
    clock.advance(2 * minute);
    let page = format!("/app/inbox/{}", convs[0]);
    let r = s
        .post_from(&page, &format!("{page}/reply"), &[("text", "Добрый день!")])
        .await;
    assert_eq!(r.status(), 303);
    clock.advance(21 * minute);
    let page = format!("/app/inbox/{}", convs[1]);
    let r = s
        .post_from(
            &page,
            &format!("{page}/reply"),
            &[("text", "Здравствуйте!")],
        )
        .await;
    assert_eq!(r.status(), 303);
    convs
}
