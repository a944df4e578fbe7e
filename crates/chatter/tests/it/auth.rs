//! Sign-up, sign-in, sessions, CSRF, throttling, password reset by mail, two-factor sign-in,
//! Sign in with Telegram, languages and refused input — through the HTTP surface.

use chatter_domain::totp;
use chatter_testkit::{csrf_of, Session, TestApp};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn count(app: &TestApp, table: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
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

#[tokio::test]
async fn sign_up_creates_company_and_owner_and_signs_in() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PASSWORD).await;
    let html = s.html("/app").await;
    assert!(
        html.contains("Рога и Копыта"),
        "dashboard shows the company"
    );
    assert!(html.contains("Владелец"), "the person is the owner: {html}");
    assert!(
        html.contains("Входящие"),
        "navigation is in Russian by default"
    );
    assert_eq!(count(&app, "companies").await, 1);
    assert_eq!(count(&app, "memberships").await, 1);
    // The same email again is refused with the field marked; nothing else is created.
    let other = Session::new(&app);
    let r = other
        .post_from(
            "/sign-up",
            "/sign-up",
            &[
                ("company_name", "Другая"),
                ("name", "Б"),
                ("email", "ANNA@example.ru"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let body = r.text().await.expect("body");
    assert!(body.contains("data-field=\"email\""), "{body}");
    assert!(body.contains("уже зарегистрирован"));
    assert_eq!(count(&app, "companies").await, 1);
}

#[tokio::test]
async fn invalid_sign_up_marks_every_bad_field_and_writes_nothing() {
    let app = TestApp::new().await;
    let s = Session::new(&app);
    let r = s
        .post_from(
            "/sign-up",
            "/sign-up",
            &[
                ("company_name", " "),
                ("name", "Анна"),
                ("email", "not-an-email"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let body = r.text().await.expect("body");
    for f in ["company_name", "email", "password"] {
        assert!(body.contains(&format!("data-field=\"{f}\"")), "{f} marked");
    }
    assert!(!body.contains("data-field=\"name\""));
    assert!(body.contains("value=\"Анна\""), "good input is kept");
    assert_eq!(count(&app, "users").await, 0);
    assert_eq!(count(&app, "companies").await, 0);
}

#[tokio::test]
async fn sign_in_rotates_the_session_and_wrong_passwords_get_one_generic_message() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    drop(owner);
    let (s, r) = Session::sign_in(&app, "anna@example.ru", "wrong password").await;
    assert_eq!(r.status(), 401);
    let wrong_pw = r.text().await.expect("body");
    let (_, r) = Session::sign_in(&app, "nobody@example.ru", "wrong password").await;
    let no_account = r.text().await.expect("body");
    assert!(wrong_pw.contains("Неверный email или пароль"));
    assert!(
        no_account.contains("Неверный email или пароль"),
        "no account enumeration"
    );
    // A session cookie set before sign-in is not the one after it.
    let r = s
        .post_from(
            "/sign-in",
            "/sign-in",
            &[("email", "anna@example.ru"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(cookie.starts_with("chatter_session="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    assert!(!cookie.contains("Secure"), "plain HTTP in tests");
    let (s2, _) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    assert_eq!(s.get("/app").await.status(), 200);
    assert_eq!(s2.get("/app").await.status(), 200);
    // Sign out everywhere ends both.
    let r = s
        .post_from("/app/profile", "/sign-out-everywhere", &[])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&s2.get("/app").await), "/sign-in");
    assert_eq!(location(&s.get("/app").await), "/sign-in");
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    let r = s
        .post_with(
            "/app/team/invite",
            "forged",
            &[("email", "x@example.ru"), ("role", "manager")],
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = Session::new(&app)
        .post_with(
            "/sign-up",
            "",
            &[
                ("company_name", "X"),
                ("name", "X"),
                ("email", "x@example.ru"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(count(&app, "invites").await, 0);
    assert_eq!(count(&app, "users").await, 1);
}

#[tokio::test]
async fn repeated_failures_lock_the_account_even_for_the_right_password() {
    let app = TestApp::new().await;
    Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    for _ in 0..5 {
        let (_, r) = Session::sign_in(&app, "anna@example.ru", "nope nope").await;
        assert_eq!(r.status(), 401);
    }
    let (_, r) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // The lock lives in the database, so another node (another app over the same rows) sees it.
    let locked = chatter_core::throttle::locked_for(
        &app.db.db,
        &[chatter_core::throttle::account_key("anna@example.ru")],
        app.core.now(),
    )
    .await
    .expect("query");
    assert!(locked.is_some());
}

#[tokio::test]
async fn password_reset_by_mail_is_single_use_and_expires_after_an_hour() {
    let app = TestApp::builder().with_manual_clock().start().await;
    Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    let s = Session::new(&app);
    let r = s
        .post_from(
            "/forgot-password",
            "/forgot-password",
            &[("email", "anna@example.ru")],
        )
        .await;
    assert_eq!(r.status(), 200);
    // An unknown address gets the same answer and no mail.
    let r2 = s
        .post_from(
            "/forgot-password",
            "/forgot-password",
            &[("email", "ghost@example.ru")],
        )
        .await;
    assert_eq!(r2.status(), 200);
    let mail = app
        .smtp
        .wait_for("anna@example.ru", Duration::from_secs(10))
        .await
        .expect("reset mail");
    assert_eq!(mail.subject, "Чаттер: сброс пароля");
    let link = mail
        .links()
        .into_iter()
        .find(|l| l.contains("/reset-password/"))
        .expect("link");
    let path = link.trim_start_matches(&app.url).to_string();
    assert!(app
        .smtp
        .wait_for("ghost@example.ru", Duration::from_millis(300))
        .await
        .is_none());
    // Too short a password: refused, link still good.
    let r = s.post_from(&path, &path, &[("password", "short")]).await;
    assert_eq!(r.status(), 422);
    let r = s
        .post_from(&path, &path, &[("password", "a brand new secret")])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/sign-in?ok=password_reset");
    let (_, r) = Session::sign_in(&app, "anna@example.ru", "a brand new secret").await;
    assert_eq!(r.status(), 303);
    let (_, r) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    assert_eq!(r.status(), 401);
    // Used: a clear page.
    let r = s.get(&path).await;
    assert_eq!(r.status(), 410);
    assert!(r.text().await.expect("body").contains("уже использована"));
    // Expired: a fresh link, an hour and a second later.
    s.post_from(
        "/forgot-password",
        "/forgot-password",
        &[("email", "anna@example.ru")],
    )
    .await;
    let mail = app
        .smtp
        .wait_for("anna@example.ru", Duration::from_secs(10))
        .await
        .expect("second mail");
    let link = mail
        .links()
        .into_iter()
        .find(|l| l.contains("/reset-password/"))
        .expect("link");
    let path = link.trim_start_matches(&app.url).to_string();
    app.clock
        .as_ref()
        .expect("manual clock")
        .advance(3601 * 1000);
    assert_eq!(s.get(&path).await.status(), 410);
    let r = s
        .post_from(
            "/forgot-password",
            &path,
            &[("password", "yet another secret")],
        )
        .await;
    assert_eq!(r.status(), 410);
}

#[tokio::test]
async fn two_factor_sign_in_with_totp_and_recovery_codes() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    let s = Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    let r = s
        .post_from("/app/profile", "/app/profile/2fa/start", &[])
        .await;
    assert_eq!(r.status(), 303);
    let page = s.html("/app/profile").await;
    let secret = page
        .split("id=\"totp-secret\">")
        .nth(1)
        .and_then(|x| x.split('<').next())
        .expect("secret shown");
    let raw = totp::from_stored(secret);
    // A wrong code does not enable it.
    let r = s
        .post_from(
            "/app/profile",
            "/app/profile/2fa/enable",
            &[("code", "000000")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let now_s = clock.now_ms_for_test() / 1000;
    let r = s
        .post_from(
            "/app/profile",
            "/app/profile/2fa/enable",
            &[("code", &totp::code_at(&raw, now_s))],
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.expect("body");
    let codes: Vec<String> = page
        .split("<code>")
        .skip(1)
        .filter_map(|x| x.split("</code>").next())
        .filter(|c| c.len() == 11 && c.contains('-'))
        .map(str::to_string)
        .collect();
    assert_eq!(codes.len(), 10, "ten recovery codes are shown once");

    // Password alone is not enough now.
    let (t, r) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    assert_eq!(location(&r), "/sign-in/2fa");
    assert_eq!(
        location(&t.get("/app").await),
        "/sign-in",
        "half-signed-in session cannot use the app"
    );
    // The code used to enable 2FA cannot be replayed.
    let r = t
        .post_from(
            "/sign-in/2fa",
            "/sign-in/2fa",
            &[("code", &totp::code_at(&raw, now_s))],
        )
        .await;
    assert_eq!(r.status(), 401);
    clock.advance(30_000);
    let r = t
        .post_from(
            "/sign-in/2fa",
            "/sign-in/2fa",
            &[("code", &totp::code_at(&raw, now_s + 30))],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/app");
    assert_eq!(t.get("/app").await.status(), 200);

    // A recovery code works once.
    let (u, _) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    let r = u
        .post_from("/sign-in/2fa", "/sign-in/2fa", &[("code", &codes[0])])
        .await;
    assert_eq!(r.status(), 303);
    let (v, _) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    let r = v
        .post_from("/sign-in/2fa", "/sign-in/2fa", &[("code", &codes[0])])
        .await;
    assert_eq!(r.status(), 401);

    // Turning it off needs the password.
    let r = u
        .post_from(
            "/app/profile",
            "/app/profile/2fa/disable",
            &[("password", "wrong one!")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = u
        .post_from(
            "/app/profile",
            "/app/profile/2fa/disable",
            &[("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status(), 303);
    let (_, r) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    assert_eq!(location(&r), "/app");
}

trait NowForTest {
    fn now_ms_for_test(&self) -> i64;
}
impl NowForTest for chatter_core::ManualClock {
    fn now_ms_for_test(&self) -> i64 {
        use chatter_core::Clock;
        self.now_ms()
    }
}

fn as_refs(f: &[(String, String)]) -> Vec<(&str, &str)> {
    f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn telegram_fields(token: &str, id: &str, auth_date: i64) -> Vec<(String, String)> {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let mut fields = vec![
        ("auth_date".to_string(), auth_date.to_string()),
        ("first_name".to_string(), "Иван".to_string()),
        ("id".to_string(), id.to_string()),
        ("username".to_string(), "ivan".to_string()),
    ];
    fields.sort();
    let dcs = fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n");
    let key = Sha256::digest(token.as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac");
    mac.update(dcs.as_bytes());
    fields.push(("hash".into(), hex::encode(mac.finalize().into_bytes())));
    fields
}

#[tokio::test]
async fn sign_in_with_telegram_after_linking_it() {
    let token = "123456:platform-bot-token";
    let app = TestApp::builder()
        .with_manual_clock()
        .with_telegram_login(token, "chatter_login_bot")
        .start()
        .await;
    let now_s = app.core.now() / 1000;
    let owner = Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    let page = Session::new(&app).html("/sign-in").await;
    assert!(
        page.contains("data-telegram-login=\"chatter_login_bot\""),
        "the widget is offered"
    );

    let fields = telegram_fields(token, "777000", now_s);
    // Not linked yet: a clear refusal.
    let anon = Session::new(&app);
    let r = anon
        .post_from("/sign-in", "/auth/telegram", &as_refs(&fields))
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.expect("body").contains("не привязан"));
    // Link from the profile, then sign in with it.
    let mut link = fields.clone();
    link.push(("_link".into(), "1".into()));
    let r = owner
        .post_from("/app/profile", "/auth/telegram", &as_refs(&link))
        .await;
    assert_eq!(r.status(), 303);
    let r = anon
        .post_from("/sign-in", "/auth/telegram", &as_refs(&fields))
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/app");
    assert!(anon.html("/app").await.contains("Acme"));
    // A forged hash and stale data are refused.
    let mut forged = fields.clone();
    forged[1].1 = "Пётр".into();
    let r = Session::new(&app)
        .post_from("/sign-in", "/auth/telegram", &as_refs(&forged))
        .await;
    assert_eq!(r.status(), 401);
    let stale = telegram_fields(token, "777000", now_s - 2 * 3600);
    let r = Session::new(&app)
        .post_from("/sign-in", "/auth/telegram", &as_refs(&stale))
        .await;
    assert_eq!(r.status(), 410);
}

#[tokio::test]
async fn english_is_one_click_away_and_sticks() {
    let app = TestApp::new().await;
    let s = Session::new(&app);
    let r = s.get("/lang/en?back=/sign-in").await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/sign-in");
    let page = s.html("/sign-in").await;
    assert!(page.contains("Sign in to Chatter"), "{page}");
    assert!(page.contains("lang=\"en\""));
    let r = s.get("/lang/ru?back=//evil.example").await;
    assert_eq!(location(&r), "/", "no open redirect");
    assert!(s.html("/sign-in").await.contains("Вход в Чаттер"));
}

#[tokio::test]
async fn every_translation_key_used_in_templates_exists() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../chatter-web/templates");
    let mut missing = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("templates dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("template");
            for part in text.split("p.t(\"").skip(1) {
                let key = part.split('"').next().unwrap_or("");
                if !chatter_web::i18n::has(key) {
                    missing.push(format!("{}: {key}", p.display()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "missing translations: {missing:?}");
}

#[tokio::test]
async fn csrf_token_of_a_signed_in_page_is_the_sessions() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    let a = csrf_of(&s.html("/app/team").await);
    let b = csrf_of(&s.html("/app/profile").await);
    assert_eq!(a, b);
    assert_eq!(a.len(), 64);
}
