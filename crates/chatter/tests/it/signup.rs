//! Sign-up confirmed by mail: a stranger cannot tell a new address from a known one, and
//! nothing exists until the owner of the address opens the link.

use chatter_testkit::{Session, TestApp};
use sea_orm::{ConnectionTrait, Statement};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

async fn count(app: &TestApp, table: &str) -> i64 {
    let row = app
        .db
        .db
        .query_one(Statement::from_string(
            app.db.db.get_database_backend(),
            format!("SELECT count(*) AS n FROM {table}"),
        ))
        .await
        .expect("count")
        .expect("row");
    row.try_get::<i64>("", "n").expect("n")
}

/// Posts the sign-up form from a fresh visitor and returns the answer's status and body, with
/// the visitor's own CSRF token and the e-mail taken out (the only parts that may differ).
async fn attempt(app: &TestApp, company: &str, email: &str) -> (u16, String) {
    let s = Session::new(app);
    let page = s.html("/sign-up").await;
    let csrf = chatter_testkit::csrf_of(&page);
    let r = s
        .post_with(
            "/sign-up",
            &csrf,
            &[
                ("company_name", company),
                ("name", "Борис"),
                ("email", email),
                ("password", PASSWORD),
            ],
        )
        .await;
    let status = r.status().as_u16();
    let body = r.text().await.expect("body");
    (status, body.replace(&csrf, "CSRF").replace(email, "EMAIL"))
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn a_new_address_gets_the_answer_a_known_one_gets_and_only_the_mailed_link_creates_the_company(
) {
    let app = TestApp::builder().with_manual_clock().start().await;
    // The instance's first account is created at once: there is nobody to find yet.
    let anna = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PASSWORD).await;
    assert_eq!(anna.get("/app").await.status(), 200);

    let known = attempt(&app, "Другая", "anna@example.ru").await;
    let new = attempt(&app, "Другая", "boris@example.ru").await;
    assert_eq!(known.0, 200);
    assert_eq!(new, known, "the two answers are the same page");
    assert!(new.1.contains("id=\"sign-up-check-mail\""), "{}", new.1);
    assert_eq!(count(&app, "users").await, 1, "nothing is created yet");
    assert_eq!(count(&app, "companies").await, 1);

    // The mail says which it was.
    let told = app
        .smtp
        .wait_for("anna@example.ru", Duration::from_secs(20))
        .await
        .expect("the owner is told");
    assert_eq!(told.subject, "Чаттер: у вас уже есть аккаунт");
    assert!(!told.body.contains("/sign-up/confirm/"));
    let link = app.sign_up_link("boris@example.ru").await;

    // Opening the link shows what is about to be made; only the button makes it.
    let boris = Session::new(&app);
    let page = boris.html(&link).await;
    assert!(
        page.contains("Другая") && page.contains("boris@example.ru"),
        "{page}"
    );
    assert_eq!(
        count(&app, "users").await,
        1,
        "a GET (a mail scanner) creates nothing"
    );
    assert_eq!(boris.post_with(&link, "forged", &[]).await.status(), 403);
    let r = boris.post_from(&link, &link, &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/app");
    assert!(boris.html("/app").await.contains("Другая"));
    assert_eq!(count(&app, "users").await, 2);
    assert_eq!(count(&app, "companies").await, 2);
    let (_, r) = Session::sign_in(&app, "boris@example.ru", PASSWORD).await;
    assert_eq!(r.status(), 303, "the password chosen on the form works");

    // The link is spent: a clear page, nothing more is created.
    let again = Session::new(&app);
    let r = again.get(&link).await;
    assert_eq!(r.status(), 410);
    assert!(r.text().await.expect("body").contains("уже использована"));
    assert_eq!(again.post_from("/sign-up", &link, &[]).await.status(), 410);
    assert_eq!(count(&app, "companies").await, 2);

    // Two links to one address: the first one opened spends the other. Each link is read
    // before the next attempt: the two mails are sent by jobs that may finish in either order.
    attempt(&app, "Ромашка", "vera@example.ru").await;
    let first = app.sign_up_link("vera@example.ru").await;
    attempt(&app, "Ромашка-2", "vera@example.ru").await;
    let second = app.sign_up_link("vera@example.ru").await;
    assert_ne!(first, second);
    let vera = Session::new(&app);
    assert_eq!(vera.post_from(&second, &second, &[]).await.status(), 303);
    assert!(vera.html("/app").await.contains("Ромашка-2"));
    assert_eq!(Session::new(&app).get(&first).await.status(), 410);

    // A link older than a day is gone.
    attempt(&app, "Лютик", "gleb@example.ru").await;
    let late = app.sign_up_link("gleb@example.ru").await;
    app.clock
        .as_ref()
        .expect("manual clock")
        .advance(24 * 3600 * 1000 + 1000);
    let gleb = Session::new(&app);
    assert_eq!(gleb.get(&late).await.status(), 410);
    assert_eq!(count(&app, "companies").await, 3);
    assert_eq!(
        count(&app, "signup_confirmations").await,
        1,
        "only the expired one is left"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_link_for_an_address_that_got_an_account_meanwhile_creates_nothing() {
    let app = TestApp::new().await;
    Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PASSWORD).await;
    attempt(&app, "Другая", "boris@example.ru").await;
    let link = app.sign_up_link("boris@example.ru").await;
    // Boris got an account another way (an invitation, amoCRM) before opening the link.
    chatter_core::accounts::sign_up(
        &app.core,
        &chatter_core::accounts::SignUp {
            company_name: "Третья".into(),
            name: "Борис".into(),
            email: "boris@example.ru".into(),
            password: "another password 1".into(),
        },
        &chatter_core::ReqMeta {
            ip: "127.0.0.1".into(),
            user_agent: "test".into(),
        },
    )
    .await
    .expect("account");
    let s = Session::new(&app);
    let r = s.post_from(&link, &link, &[]).await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.expect("body").contains("уже есть"));
    assert_eq!(count(&app, "users").await, 2);
    assert_eq!(count(&app, "companies").await, 2);
    assert_eq!(s.get("/app").await.status(), 303, "not signed in");
    let (_, r) = Session::sign_in(&app, "boris@example.ru", PASSWORD).await;
    assert_eq!(r.status(), 401, "the password of the link was not set");
    app.stop().await;
}
