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
    // The page says the same "check your mail" whoever owns the address; the owner learns
    // of it by mail, and nothing else is created.
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("body");
    assert!(body.contains("id=\"sign-up-check-mail\""), "{body}");
    assert!(body.contains("Проверьте почту"), "{body}");
    assert!(
        !body.contains("уже зарегистрирован"),
        "no enumeration: {body}"
    );
    let mail = app
        .smtp
        .wait_for("anna@example.ru", Duration::from_secs(10))
        .await
        .expect("the owner is told by mail");
    assert_eq!(mail.subject, "Чаттер: у вас уже есть аккаунт");
    assert!(mail.links().iter().any(|l| l.ends_with("/forgot-password")));
    assert_eq!(count(&app, "companies").await, 1);
    assert_eq!(count(&app, "users").await, 1);
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
        &chatter_core::throttle::sign_in_limits("anna@example.ru", "127.0.0.1"),
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
    // The same key as a QR code drawn on the server: an inline SVG, nothing fetched elsewhere.
    let qr = page
        .split("id=\"totp-qr\"")
        .nth(1)
        .expect("a QR code is shown");
    assert!(qr.contains("<svg") && qr.contains("<path"), "{qr}");
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

// --- Issue 9: sign-in hardening (2FA lock, raced throttles, client addresses, reset links,
// mail limits, names, recovery codes, the audit CSV) ---

/// Turns 2FA on for the signed-in `s` (at the manual clock's time); returns the raw secret
/// and the recovery codes.
async fn enable_two_factor(app: &TestApp, s: &Session) -> (Vec<u8>, Vec<String>) {
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
    let now_s = app.core.now() / 1000;
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
    assert_eq!(codes.len(), 10);
    (raw, codes)
}

/// A six-digit code that is not valid around `now_s`.
fn wrong_code(raw: &[u8], now_s: i64) -> String {
    (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| totp::verify(raw, c, now_s).is_none())
        .expect("some code is wrong")
}

/// The owner's audit export filtered by an action prefix.
async fn audit_csv(owner: &Session, action: &str) -> String {
    let r = owner.get(&format!("/app/audit.csv?action={action}")).await;
    assert_eq!(r.status(), 200);
    r.text().await.expect("csv")
}

#[tokio::test]
async fn wrong_second_factor_codes_lock_even_when_the_password_is_entered_again_and_are_audited() {
    let app = TestApp::builder().with_manual_clock().start().await;
    let clock = app.clock.clone().expect("manual clock");
    let owner = Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    let (raw, _) = enable_two_factor(&app, &owner).await;
    // Five wrong codes, each after a fresh sign-in with the (known) password.
    for i in 0..5 {
        let (t, r) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
        assert_eq!(location(&r), "/sign-in/2fa", "attempt {i}");
        let wrong = wrong_code(&raw, app.core.now() / 1000);
        let r = t
            .post_from("/sign-in/2fa", "/sign-in/2fa", &[("code", &wrong)])
            .await;
        assert_eq!(r.status(), 401, "wrong code {i} is refused");
    }
    // Re-entering the password did not reset the count: even the right code is refused now.
    let (t, r) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    assert_eq!(location(&r), "/sign-in/2fa");
    clock.advance(30_000);
    let now_s = app.core.now() / 1000;
    let r = t
        .post_from(
            "/sign-in/2fa",
            "/sign-in/2fa",
            &[("code", &totp::code_at(&raw, now_s))],
        )
        .await;
    assert_eq!(r.status(), 429);
    let retry: i64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    let body = r.text().await.expect("body");
    assert!(body.contains("Слишком много неверных кодов"), "{body}");
    assert_eq!(
        location(&t.get("/app").await),
        "/sign-in",
        "still not signed in"
    );
    // Every wrong code is in the company's audit log.
    let csv = audit_csv(&owner, "user.two_factor_failed").await;
    assert_eq!(
        csv.lines()
            .filter(|l| l.contains("user.two_factor_failed"))
            .count(),
        5,
        "{csv}"
    );
    // After the window the right code signs in, and a completed sign-in clears the count.
    clock.advance(15 * 60 * 1000);
    let now_s = app.core.now() / 1000;
    let (t, _) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    let r = t
        .post_from(
            "/sign-in/2fa",
            "/sign-in/2fa",
            &[("code", &totp::code_at(&raw, now_s))],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/app");
    for i in 0..4 {
        let (t, _) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
        let r = t
            .post_from(
                "/sign-in/2fa",
                "/sign-in/2fa",
                &[("code", &wrong_code(&raw, now_s))],
            )
            .await;
        assert_eq!(r.status(), 401, "a fresh count after the sign-in: {i}");
    }
}

#[tokio::test]
async fn a_burst_of_parallel_wrong_passwords_gets_no_more_checks_than_the_limit() {
    let app = TestApp::new().await;
    Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    let mut posts = Vec::new();
    for _ in 0..24 {
        let s = Session::new(&app);
        let csrf = csrf_of(&s.html("/sign-in").await);
        posts.push((s, csrf));
    }
    let answers = futures::future::join_all(posts.iter().map(|(s, csrf)| {
        s.post_with(
            "/sign-in",
            csrf,
            &[("email", "anna@example.ru"), ("password", "a wrong guess")],
        )
    }))
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked, 5, "exactly the limit was checked: {statuses:?}");
    assert_eq!(refused, 19, "the rest were refused unchecked: {statuses:?}");
    // The right password after the burst is refused too.
    let (s, r) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(location(&s.get("/app").await), "/sign-in");
}

/// Signs in through a (trusted, loopback) proxy that says the client is `forwarded_for`.
async fn sign_in_via_proxy(
    app: &TestApp,
    forwarded_for: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let s = Session::new(app);
    let csrf = csrf_of(&s.html("/sign-in").await);
    s.http
        .post(app.at("/sign-in"))
        .header("x-forwarded-for", forwarded_for)
        .form(&[
            ("_csrf", csrf.as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .expect("POST")
}

#[tokio::test]
async fn a_stranger_guessing_locks_only_their_own_address_not_the_account() {
    let app = TestApp::builder().with_trust_proxy().start().await;
    Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    for _ in 0..5 {
        let r = sign_in_via_proxy(&app, "198.51.100.9", "anna@example.ru", "a wrong guess").await;
        assert_eq!(r.status(), 401);
    }
    let r = sign_in_via_proxy(&app, "198.51.100.9", "anna@example.ru", PASSWORD).await;
    assert_eq!(r.status(), 429, "the guessing address is locked out");
    // Writing Anna's address first does not help the stranger: the proxy appended the real one.
    let r = sign_in_via_proxy(
        &app,
        "203.0.113.7, 198.51.100.9",
        "anna@example.ru",
        PASSWORD,
    )
    .await;
    assert_eq!(r.status(), 429, "a spoofed left-most address is ignored");
    // Anna, from her own address, signs in.
    let r = sign_in_via_proxy(&app, "203.0.113.7", "anna@example.ru", PASSWORD).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/app");
}

#[tokio::test]
async fn the_client_address_is_the_right_most_one_a_trusted_proxy_added() {
    let app = TestApp::builder().with_trust_proxy().start().await;
    let owner = Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    // The client wrote 6.6.6.6; the proxy appended the address it really saw.
    let r = sign_in_via_proxy(
        &app,
        "6.6.6.6, 203.0.113.7",
        "anna@example.ru",
        "a wrong guess",
    )
    .await;
    assert_eq!(r.status(), 401);
    let csv = audit_csv(&owner, "user.sign_in_failed").await;
    assert!(csv.contains("203.0.113.7"), "the real address: {csv}");
    assert!(
        !csv.contains("6.6.6.6"),
        "not the client's own claim: {csv}"
    );
}

#[tokio::test]
async fn old_reset_links_die_after_a_reset_or_a_password_change() {
    let app = TestApp::new().await;
    Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    let s = Session::new(&app);
    let mut links = Vec::new();
    for _ in 0..2 {
        let r = s
            .post_from(
                "/forgot-password",
                "/forgot-password",
                &[("email", "anna@example.ru")],
            )
            .await;
        assert_eq!(r.status(), 200);
        let mail = app
            .smtp
            .wait_for("anna@example.ru", Duration::from_secs(10))
            .await
            .expect("reset mail");
        let link = mail
            .links()
            .into_iter()
            .find(|l| l.contains("/reset-password/"))
            .expect("link");
        links.push(link.trim_start_matches(&app.url).to_string());
    }
    assert_eq!(s.get(&links[0]).await.status(), 200, "both links work");
    let r = s
        .post_from(&links[1], &links[1], &[("password", "a brand new secret")])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(s.get(&links[0]).await.status(), 410, "the older link died");
    let r = s
        .post_from(
            "/forgot-password",
            &links[0],
            &[("password", "attacker's secret")],
        )
        .await;
    assert_eq!(r.status(), 410);
    // A link asked for before a password change dies with the change.
    let (anna, _) = Session::sign_in(&app, "anna@example.ru", "a brand new secret").await;
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
        .expect("third reset mail");
    let link = mail
        .links()
        .into_iter()
        .find(|l| l.contains("/reset-password/"))
        .expect("link");
    let path = link.trim_start_matches(&app.url).to_string();
    let r = anna
        .post_from(
            "/app/profile",
            "/app/profile/password",
            &[
                ("current_password", "a brand new secret"),
                ("new_password", "changed on purpose"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(s.get(&path).await.status(), 410);
}

#[tokio::test]
async fn reset_mail_is_limited_per_address_and_per_ip() {
    let app = TestApp::new().await;
    Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    let s = Session::new(&app);
    for i in 0..4 {
        let r = s
            .post_from(
                "/forgot-password",
                "/forgot-password",
                &[("email", "anna@example.ru")],
            )
            .await;
        assert_eq!(r.status(), 200, "the same answer every time: {i}");
        assert!(r.text().await.expect("body").contains("id=\"reset-sent\""));
    }
    for i in 0..3 {
        assert!(
            app.smtp
                .wait_for("anna@example.ru", Duration::from_secs(10))
                .await
                .is_some(),
            "mail {i}"
        );
    }
    assert!(
        app.smtp
            .wait_for("anna@example.ru", Duration::from_secs(2))
            .await
            .is_none(),
        "no fourth mail within the hour"
    );
    // One IP asks for at most 20 an hour, whatever the addresses.
    for i in 0..17 {
        let r = s
            .post_from(
                "/forgot-password",
                "/forgot-password",
                &[("email", &format!("someone{i}@example.ru"))],
            )
            .await;
        assert_eq!(r.status(), 200, "request {i}");
    }
    let r = s
        .post_from(
            "/forgot-password",
            "/forgot-password",
            &[("email", "one.more@example.ru")],
        )
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn names_with_line_breaks_are_refused() {
    let app = TestApp::new().await;
    let s = Session::new(&app);
    let r = s
        .post_from(
            "/sign-up",
            "/sign-up",
            &[
                ("company_name", "Acme"),
                ("name", "Anna\r\nBcc: everyone@example.ru"),
                ("email", "anna@example.ru"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let body = r.text().await.expect("body");
    assert!(body.contains("data-field=\"name\""), "{body}");
    assert!(body.contains("в одну строку"), "{body}");
    assert_eq!(count(&app, "users").await, 0);
    let owner = Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    let r = owner
        .post_from(
            "/app/profile",
            "/app/profile",
            &[("name", "Anna\nSubject: hi"), ("locale", "ru")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(owner.html("/app/profile").await.contains("value=\"Anna\""));
}

#[tokio::test]
async fn recovery_codes_are_stored_with_the_password_hash_and_old_ones_still_work_once() {
    use chatter_store::entity::recovery_code;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
    let app = TestApp::builder().with_manual_clock().start().await;
    let owner = Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    let (_, codes) = enable_two_factor(&app, &owner).await;
    let user = chatter_core::accounts::find_user_by_email(&app.core.db, "anna@example.ru")
        .await
        .expect("lookup")
        .expect("user");
    let rows = recovery_code::Entity::find()
        .filter(recovery_code::Column::UserId.eq(user.id))
        .all(&app.core.db)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 10);
    assert!(
        rows.iter().all(|r| r.code_hash.starts_with("$argon2id$")),
        "argon2id, not a fast hash"
    );
    // A new code works once.
    let (t, _) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    let r = t
        .post_from("/sign-in/2fa", "/sign-in/2fa", &[("code", &codes[3])])
        .await;
    assert_eq!(r.status(), 303);
    // A code stored the old way (SHA-256) before the change still works, once.
    recovery_code::ActiveModel {
        code_hash: Set(chatter_core::hash_token("abcde12345")),
        user_id: Set(user.id),
        used_at: Set(None),
    }
    .insert(&app.core.db)
    .await
    .expect("legacy code");
    let (t, _) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    let r = t
        .post_from("/sign-in/2fa", "/sign-in/2fa", &[("code", "ABCDE-12345")])
        .await;
    assert_eq!(r.status(), 303);
    let (t, _) = Session::sign_in(&app, "anna@example.ru", PASSWORD).await;
    let r = t
        .post_from("/sign-in/2fa", "/sign-in/2fa", &[("code", "abcde-12345")])
        .await;
    assert_eq!(r.status(), 401, "used up");
}

#[tokio::test]
async fn the_audit_csv_does_not_hand_spreadsheets_a_formula() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PASSWORD).await;
    // A stranger's failed sign-in lands in the company's log with the stranger's user agent.
    let s = Session::new(&app);
    let csrf = csrf_of(&s.html("/sign-in").await);
    let r = s
        .http
        .post(app.at("/sign-in"))
        .header("user-agent", "=1+2*cmd|' /C calc'!A0")
        .form(&[
            ("_csrf", csrf.as_str()),
            ("email", "anna@example.ru"),
            ("password", "a wrong guess"),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 401);
    let csv = audit_csv(&owner, "user.sign_in_failed").await;
    assert!(csv.contains("'=1+2*cmd"), "the cell is defused: {csv}");
    assert!(!csv.contains(",=1+2") && !csv.contains("\"=1+2"), "{csv}");
}
