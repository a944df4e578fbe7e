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
    let key = crate::api::create_key(&s, "reports").await;
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

/// The facts the dashboard reads from each conversation (first customer message, first
/// response and who sent it, latest message each way) are written as messages arrive and are
/// sent; they must be what the migration computes from the messages alone, so an upgraded
/// database and a live one show the same figures.
#[tokio::test]
async fn the_facts_kept_on_conversations_are_those_computed_from_their_messages() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    let (s, token, _) = company_with_bot(&app).await;
    let convs = three_customers_two_answered(&app, &s, &token, 5700).await;
    // A second answer and a later customer message: neither is a first.
    clock.advance(3 * 60_000);
    let page = format!("/app/inbox/{}", convs[0]);
    let r = s
        .post_from(&page, &format!("{page}/reply"), &[("text", "Ещё вопрос?")])
        .await;
    assert_eq!(r.status(), 303);
    clock.advance(60_000);
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(5700, "Анна Клиентка", "Спасибо"),
    );
    eventually("the customer's second message", || async {
        crate::messages::count(&app, "SELECT count(*) FROM messages WHERE direction = 'in'").await
            == 4
    })
    .await;

    let facts = || async {
        let rows = app
            .core
            .db
            .query_all(sea_orm::Statement::from_string(
                app.core.db.get_database_backend(),
                "SELECT id, first_in_at, first_response_at, first_responder_id, last_in_at, \
                 last_out_at FROM conversations ORDER BY id",
            ))
            .await
            .expect("facts");
        rows.iter()
            .map(|r| {
                (
                    r.try_get::<uuid::Uuid>("", "id").expect("id"),
                    r.try_get::<Option<i64>>("", "first_in_at")
                        .expect("first_in_at"),
                    r.try_get::<Option<i64>>("", "first_response_at")
                        .expect("first_response_at"),
                    r.try_get::<Option<uuid::Uuid>>("", "first_responder_id")
                        .expect("first_responder_id"),
                    r.try_get::<Option<i64>>("", "last_in_at")
                        .expect("last_in_at"),
                    r.try_get::<Option<i64>>("", "last_out_at")
                        .expect("last_out_at"),
                )
            })
            .collect::<Vec<_>>()
    };
    let live = facts().await;
    assert_eq!(live.len(), 3);
    let answered = live.iter().filter(|f| f.2.is_some()).count();
    assert_eq!(answered, 2, "{live:?}");
    assert!(
        live.iter().all(|f| f.1.is_some() && f.4.is_some()),
        "{live:?}"
    );
    let dashboard = s.html("/app").await;
    let figures = |html: &str| html[html.find("id=\"fig-open\"").expect("figures")..].to_string();

    // Forget them, and compute them again as the migration does.
    app.core
        .db
        .execute_unprepared(
            "UPDATE conversations SET first_in_at = NULL, first_response_at = NULL, \
             first_responder_id = NULL, last_in_at = NULL, last_out_at = NULL",
        )
        .await
        .expect("forget");
    chatter_store::figures::backfill(&app.core.db)
        .await
        .expect("backfill");
    assert_eq!(facts().await, live);
    assert_eq!(figures(&s.html("/app").await), figures(&dashboard));
    app.stop().await;
}

/// The dashboard chart keeps the days that are over (`inbound_days`) and counts only the rest
/// from the messages: its figures stay those of the messages as days pass, and a company that
/// changes its time zone gets its days counted again in the new zone.
#[tokio::test]
async fn the_chart_keeps_finished_days_and_follows_the_company_day() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    let (s, token, _) = company_with_bot(&app).await;
    eventually("the bot is polled", || async {
        app.telegram
            .calls(token.as_str())
            .iter()
            .any(|c| c == "getUpdates")
    })
    .await;
    let key = crate::api::create_key(&s, "chart").await;
    let chart = || async {
        let v: serde_json::Value = reqwest::Client::new()
            .get(app.at("/api/v1/dashboard"))
            .bearer_auth(&key)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        let mut days = vec![0i64; 30];
        for line in v["series"].as_array().expect("series") {
            for (d, n) in line["per_day"]
                .as_array()
                .expect("per_day")
                .iter()
                .enumerate()
            {
                days[d] += n.as_i64().expect("a count");
            }
        }
        days
    };
    let hour = 3_600_000i64;
    let day = 24 * hour;
    let start = 1_767_225_600_000i64; // the manual clock's start
    let mut written: Vec<i64> = Vec::new();
    async fn write(app: &TestApp, s: &Session, token: &str, written: &mut Vec<i64>, at: i64) {
        let before = written.len();
        written.push(at);
        app.telegram.customer_writes(
            token,
            CustomerMessage::text(6100 + before as i64, "Покупатель", "Есть в наличии?"),
        );
        eventually("the message arrives", || async {
            s.html("/app/inbox").await.matches("<li id=\"conv-").count() > before
        })
        .await;
    }
    // Expected: each message in its company day, today the last of 30.
    let expected = |written: &[i64], now: i64, offset: i64| {
        let mut days = vec![0i64; 30];
        let today = (now + offset).div_euclid(day);
        for t in written {
            let back = today - (t + offset).div_euclid(day);
            if (0..30).contains(&back) {
                days[29 - back as usize] += 1;
            }
        }
        days
    };
    let moscow = 3 * hour;

    write(&app, &s, &token, &mut written, start).await;
    clock.advance(2 * day);
    write(&app, &s, &token, &mut written, start + 2 * day).await;
    let now = start + 2 * day;
    assert_eq!(chart().await, expected(&written, now, moscow));
    assert_eq!(
        chart().await[27..],
        [1, 0, 1],
        "the finished days, read back"
    );
    let stored = app
        .db
        .db
        .query_one(sea_orm::Statement::from_string(
            app.db.db.get_database_backend(),
            "SELECT count(*) AS n FROM inbound_days",
        ))
        .await
        .expect("count")
        .and_then(|r| r.try_get::<i64>("", "n").ok())
        .unwrap_or_default();
    assert!(stored >= 29, "29 finished days kept, each marked: {stored}");

    // A day later, a third customer: the kept days move along, today is counted anew.
    clock.advance(day);
    write(&app, &s, &token, &mut written, start + 3 * day).await;
    let now = start + 3 * day;
    assert_eq!(chart().await[26..], [1, 0, 1, 1]);

    // Another time zone: its days are other days, counted again.
    app.db
        .db
        .execute(sea_orm::Statement::from_string(
            app.db.db.get_database_backend(),
            "UPDATE companies SET timezone = 'Asia/Vladivostok'",
        ))
        .await
        .expect("time zone");
    clock.advance(20 * hour);
    let now = now + 20 * hour;
    let vladivostok = 10 * hour;
    let got = chart().await;
    assert_eq!(got, expected(&written, now, vladivostok));
    assert_eq!(got.iter().sum::<i64>(), 3, "{got:?}");
    app.stop().await;
}
