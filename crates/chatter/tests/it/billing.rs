//! Plans and billing (issue 16) on a manual clock, through the product's pages, its API and its
//! fakes: the 14-day trial ends and replies wait while customers' messages are still stored
//! and shown, until the operator sets a plan and everything waiting goes out in order; a plan
//! with a small limit holds replies and the CRM sync over it, the thread and the inbox say why,
//! a pack from the operator sends everything held in order; the 80 % and 100 % mails go once;
//! metering counts every message once, a send that failed with a 5xx and then went out too.

use crate::api::{api, create_key};
use crate::crm_sync::connected;
use crate::messages::{company_with_bot, PW};
use crate::telegram::{conversation_with, reply, thread_shows};
use chatter_core::accounts::operators;
use chatter_fakes::{CustomerMessage, Failure};
use chatter_store::entity::{audit, company, message, plan};
use chatter_testkit::{Session, TestApp};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::Value;
use std::time::Duration;

const DAY_MS: i64 = 24 * 3600 * 1000;
/// What a held reply says in its thread (Russian by default).
const PAUSED_RU: &str = "Лимит тарифа исчерпан — ответ уйдёт после оплаты";

async fn app() -> TestApp {
    TestApp::builder().with_manual_clock().start().await
}

/// Moves the manual clock a second at a time until `f` holds (jobs that wait — an earlier
/// reply first, a retry's backoff — are due on the product's clock), or 20 s pass.
async fn ticking<F, Fut>(app: &TestApp, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let clock = app.clock.clone().expect("manual clock");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        clock.advance(1_000);
        app.core.jobs_notify.notify_waiters();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn company_id(app: &TestApp, name: &str) -> uuid::Uuid {
    company::Entity::find()
        .filter(company::Column::Name.eq(name))
        .one(&app.core.db)
        .await
        .expect("lookup")
        .expect("company")
        .id
}

/// An operator of the instance, signed in (a company of their own, as every account has).
async fn operator(app: &TestApp) -> Session {
    let s = Session::sign_up(app, "Хостинг", "Олег", "ops@host.test", PW).await;
    operators::add(&app.core, "ops@host.test")
        .await
        .expect("operator added");
    s
}

/// The operator changes a company's subscription in the operator area.
async fn operator_sets(ops: &Session, company: uuid::Uuid, fields: &[(&str, &str)]) {
    let r = ops
        .post_from(
            "/app/operator",
            &format!("/app/operator/companies/{company}/billing"),
            fields,
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
}

/// Texts the bot sent to `chat`, in order.
fn sent_to(app: &TestApp, token: &str, chat: i64) -> Vec<String> {
    app.telegram
        .sent(token)
        .into_iter()
        .filter(|m| m.chat_id == chat)
        .map(|m| m.text.unwrap_or_default())
        .collect()
}

/// Replies whose error says they are held.
async fn held_replies(app: &TestApp) -> Vec<String> {
    message::Entity::find()
        .filter(message::Column::Error.eq(chatter_core::billing::gate::PAUSED))
        .all(&app.core.db)
        .await
        .expect("messages")
        .into_iter()
        .filter_map(|m| m.text)
        .collect()
}

/// Whether amoCRM's chats have a message with `text`.
fn in_amo(app: &TestApp, account: chatter_fakes::AccountId, text: &str) -> bool {
    app.amo
        .chat_messages(account)
        .iter()
        .any(|m| m["message"]["text"] == text)
}

fn mails_with(app: &TestApp, subject: &str) -> usize {
    app.smtp
        .messages()
        .into_iter()
        .filter(|m| m.subject.contains(subject))
        .count()
}

#[tokio::test]
async fn after_the_trial_replies_wait_inbound_is_kept_and_a_plan_sends_them_in_order() {
    let app = app().await;
    let clock = app.clock.clone().expect("manual clock");
    let (s, token, _) = company_with_bot(&app).await;
    let company = company_id(&app, "Рога и Копыта").await;

    // A new company is on the 14-day trial with every feature.
    let page = s.html("/app/billing").await;
    assert!(page.contains("id=\"trial-days-left\">14<"), "{page}");
    assert!(page.contains("data-state=\"trial\""), "{page}");
    assert!(!page.contains("id=\"billing-banner\""), "{page}");
    let key = create_key(&s, "billing").await;
    let plan: Value = api(&app, "/api/v1/billing/plan", Some(&key))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(plan["subscription"]["state"], "trial", "{plan}");
    assert_eq!(plan["subscription"]["trial_days_left"], 14, "{plan}");
    assert!(plan["subscription"]["plan"].is_null(), "{plan}");
    let codes: Vec<&str> = plan["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .filter_map(|p| p["code"].as_str())
        .collect();
    assert_eq!(codes, ["basic", "professional", "enterprise"]);
    assert_eq!(plan["plans"][0]["price_month"], 99_000, "990 ₽ in kopecks");
    assert_eq!(plan["plans"][0]["messages_per_month"], 1_000);
    assert!(
        plan["plans"][2]["messages_per_month"].is_null(),
        "unlimited"
    );

    app.telegram
        .customer_writes(&token, CustomerMessage::text(8101, "Ольга", "Здравствуйте"));
    let conv = conversation_with(&s, "Ольга").await;
    reply(&s, &conv, "Добрый день, Ольга").await;
    ticking(&app, "the first reply is sent", || async {
        sent_to(&app, &token, 8101) == ["Добрый день, Ольга"]
    })
    .await;

    // Two days before the end: the banner and one reminder mail.
    clock.advance(12 * DAY_MS + 60_000);
    chatter_core::billing::gate::sweep(&app.core)
        .await
        .expect("sweep");
    chatter_core::billing::gate::sweep(&app.core)
        .await
        .expect("sweep again");
    let inbox = s.html("/app/inbox").await;
    assert!(
        inbox.contains("data-key=\"billing.banner_trial_ends\""),
        "{inbox}"
    );
    ticking(&app, "the trial reminder is mailed", || async {
        mails_with(&app, "пробный период") >= 1
    })
    .await;
    assert_eq!(
        mails_with(&app, "пробный период"),
        1,
        "once per step however often it is looked at"
    );

    // The trial is over: the customer's next messages are stored and shown; replies wait.
    clock.advance(3 * DAY_MS);
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(8101, "Ольга", "Вы ещё работаете?"),
    );
    thread_shows(&s, &conv, "Вы ещё работаете?").await;
    reply(&s, &conv, "Да, работаем").await;
    reply(&s, &conv, "Чем помочь?").await;
    ticking(&app, "both replies are held", || async {
        held_replies(&app).await.len() == 2
    })
    .await;
    let thread = thread_shows(&s, &conv, PAUSED_RU).await;
    assert!(thread.contains("href=\"/app/billing\""), "{thread}");
    let inbox = s.html("/app/inbox").await;
    assert!(
        inbox.contains("data-key=\"billing.banner_trial_ended\""),
        "the inbox says why: {inbox}"
    );
    assert_eq!(sent_to(&app, &token, 8101), ["Добрый день, Ольга"]);
    let usage: Value = api(&app, "/api/v1/billing/usage", Some(&key))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(usage["blocked"], "trial_ended", "{usage}");
    assert_eq!(usage["held"], 2, "{usage}");

    // The operator sets a plan: everything held goes out, in the order it was written.
    let ops = operator(&app).await;
    operator_sets(&ops, company, &[("action", "plan"), ("plan", "basic")]).await;
    ticking(&app, "the held replies go out", || async {
        sent_to(&app, &token, 8101).len() == 3
    })
    .await;
    assert_eq!(
        sent_to(&app, &token, 8101),
        ["Добрый день, Ольга", "Да, работаем", "Чем помочь?"]
    );
    // Recorded as sent just after the messenger took them.
    ticking(&app, "no reply is held any more", || async {
        held_replies(&app).await.is_empty()
    })
    .await;
    let page = s.html("/app/billing").await;
    assert!(page.contains("data-state=\"active\""), "{page}");
    assert!(page.contains("id=\"plan-name\">Basic<"), "{page}");
    let entries = audit::Entity::find()
        .filter(audit::Column::CompanyId.eq(company))
        .filter(audit::Column::Action.eq("billing.plan"))
        .all(&app.core.db)
        .await
        .expect("audit");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "ops@host.test");
}

#[tokio::test]
async fn over_a_small_limit_replies_and_the_crm_wait_and_a_pack_sends_them_in_order() {
    let app = app().await;
    let (s, token, _source, account) = connected(&app).await;
    let company = company_id(&app, "Рога и Копыта").await;
    let ops = operator(&app).await;
    // The operator makes Basic a plan of 5 messages and puts the company on it.
    let basic = plan::Entity::find()
        .filter(plan::Column::Code.eq("basic"))
        .one(&app.core.db)
        .await
        .expect("lookup")
        .expect("basic");
    let r = ops
        .post_from(
            "/app/operator",
            &format!("/app/operator/plans/{}", basic.id),
            &[
                ("name", "Basic"),
                ("messages_per_month", "5"),
                ("users", "3"),
                ("sources", "2"),
                ("price_month", "990"),
                ("price_year", "9900"),
                ("pack_messages", "500"),
                ("pack_price", "390"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    // A bad limit is refused and changes nothing.
    let r = ops
        .post_from(
            "/app/operator",
            &format!("/app/operator/plans/{}", basic.id),
            &[
                ("name", "Basic"),
                ("messages_per_month", "-4"),
                ("price_month", "990"),
                ("price_year", "9900"),
                ("pack_messages", "500"),
                ("pack_price", "390"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    operator_sets(&ops, company, &[("action", "plan"), ("plan", "basic")]).await;
    let limit = plan::Entity::find_by_id(basic.id)
        .one(&app.core.db)
        .await
        .expect("lookup")
        .expect("basic")
        .messages_per_month;
    assert_eq!(limit, Some(5));

    // 1: the customer; 2: the answer; 3: the customer again; 4: the answer (80 %).
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(8201, "Иван", "Есть доставка?"),
    );
    let conv = conversation_with(&s, "Иван").await;
    reply(&s, &conv, "Есть").await;
    ticking(&app, "the answer is sent", || async {
        sent_to(&app, &token, 8201).len() == 1
    })
    .await;
    app.telegram
        .customer_writes(&token, CustomerMessage::text(8201, "Иван", "А в субботу?"));
    thread_shows(&s, &conv, "А в субботу?").await;
    reply(&s, &conv, "И в субботу").await;
    ticking(&app, "the second answer is sent", || async {
        sent_to(&app, &token, 8201).len() == 2
    })
    .await;
    ticking(&app, "amoCRM has the customer's second message", || async {
        in_amo(&app, account, "А в субботу?")
    })
    .await;
    chatter_core::billing::gate::sweep(&app.core)
        .await
        .expect("sweep");
    ticking(&app, "the 80% mail", || async {
        mails_with(&app, "80%") == 1
    })
    .await;

    // 5: the customer (100 %): still synced, it is within the limit. The answer waits.
    app.telegram.customer_writes(
        &token,
        CustomerMessage::text(8201, "Иван", "Сколько стоит?"),
    );
    thread_shows(&s, &conv, "Сколько стоит?").await;
    ticking(&app, "amoCRM has the fifth message", || async {
        in_amo(&app, account, "Сколько стоит?")
    })
    .await;
    reply(&s, &conv, "500 рублей").await;
    ticking(&app, "the answer is held", || async {
        held_replies(&app).await == ["500 рублей"]
    })
    .await;
    thread_shows(&s, &conv, PAUSED_RU).await;
    let inbox = s.html("/app/inbox").await;
    assert!(
        inbox.contains("data-key=\"billing.banner_over\""),
        "{inbox}"
    );
    assert!(inbox.contains("href=\"/app/billing\""), "{inbox}");
    // 6: over the limit: stored and shown, not synced.
    app.telegram
        .customer_writes(&token, CustomerMessage::text(8201, "Иван", "Алло, вы тут?"));
    thread_shows(&s, &conv, "Алло, вы тут?").await;
    for _ in 0..20 {
        chatter_core::billing::gate::sweep(&app.core)
            .await
            .expect("sweep");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !in_amo(&app, account, "Алло, вы тут?"),
        "the CRM sync waits"
    );
    assert_eq!(sent_to(&app, &token, 8201).len(), 2, "the answer waits");
    assert_eq!(mails_with(&app, "80%"), 1, "the 80% mail went once");
    assert_eq!(mails_with(&app, "100%"), 1, "the 100% mail went once");
    let page = s.html("/app/billing").await;
    assert!(page.contains("id=\"used\">6<"), "{page}");
    assert!(page.contains("data-reason=\"over_limit\""), "{page}");

    // A pack from the operator: the answer goes out, the CRM gets what waited.
    operator_sets(&ops, company, &[("action", "packs"), ("packs", "1")]).await;
    ticking(&app, "the held answer goes out", || async {
        sent_to(&app, &token, 8201).len() == 3
    })
    .await;
    assert_eq!(
        sent_to(&app, &token, 8201),
        ["Есть", "И в субботу", "500 рублей"]
    );
    ticking(&app, "amoCRM gets what waited", || async {
        in_amo(&app, account, "Алло, вы тут?")
    })
    .await;
    let page = s.html("/app/billing").await;
    assert!(page.contains("id=\"limit\">505<"), "{page}");
    assert!(!page.contains("id=\"billing-blocked\""), "{page}");
}

#[tokio::test]
async fn metering_counts_each_message_once_and_a_retried_send_once() {
    let app = app().await;
    let (s, token, source) = company_with_bot(&app).await;
    let key = create_key(&s, "usage").await;
    app.telegram
        .customer_writes(&token, CustomerMessage::text(8301, "Пётр", "Добрый день"));
    let conv = conversation_with(&s, "Пётр").await;
    app.telegram
        .customer_writes(&token, CustomerMessage::text(8301, "Пётр", "Нужен счёт"));
    thread_shows(&s, &conv, "Нужен счёт").await;
    // A note is not a message to a customer.
    let r = s
        .post_from(
            &format!("/app/inbox/{conv}"),
            &format!("/app/inbox/{conv}/notes"),
            &[("text", "Проверить оплату")],
        )
        .await;
    assert_eq!(r.status(), 303);
    // The reply fails twice with a 5xx, then goes out.
    app.telegram
        .fail_next(&token, "sendMessage", Failure::server_error(), 2);
    reply(&s, &conv, "Счёт отправлен").await;
    ticking(&app, "the reply goes out after the 5xx", || async {
        sent_to(&app, &token, 8301) == ["Счёт отправлен"]
    })
    .await;
    ticking(&app, "the reply is recorded as sent", || async {
        message::Entity::find()
            .filter(message::Column::Text.eq("Счёт отправлен"))
            .one(&app.core.db)
            .await
            .expect("lookup")
            .is_some_and(|m| m.sent_at.is_some())
    })
    .await;
    let usage: Value = api(&app, "/api/v1/billing/usage", Some(&key))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(usage["used"], 3, "two in, one out: {usage}");
    assert_eq!(usage["per_day"].as_array().expect("days").len(), 14);
    let per_day: i64 = usage["per_day"]
        .as_array()
        .expect("days")
        .iter()
        .filter_map(Value::as_i64)
        .sum();
    assert_eq!(per_day, 3, "{usage}");
    assert_eq!(usage["per_source"][0]["source_id"], source.as_str());
    assert_eq!(usage["per_source"][0]["messages"], 3);
    assert!(usage["limit"].is_null(), "the trial has no limit: {usage}");
    // A day in, three messages: the forecast for the 14 days is 42.
    assert_eq!(usage["forecast"], 42, "{usage}");
    let page = s.html("/app/billing").await;
    assert!(page.contains("id=\"used\">3<"), "{page}");
    assert!(page.contains("<rect class=\"day\""), "the chart: {page}");
    assert!(page.contains("class=\"forecast\""), "{page}");
}
