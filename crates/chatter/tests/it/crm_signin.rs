//! Sign in with amoCRM (requirement R2.3) against the amoCRM fake: a person who connected amoCRM
//! signs in with it; a member is linked by email or from the profile; a stranger is sent to
//! the owner; an account no company uses becomes a new company (unless the email already has
//! an account); replayed, forged and denied callbacks change nothing; and amoCRM's
//! "integration disabled" hook ends the connection, while a forged one is refused.

use crate::messages::{count, location, PW};
use chatter_fakes::AccountId;
use chatter_store::entity::user_identity;
use chatter_testkit::{Session, TestApp};
use sea_orm::EntityTrait;

/// The `state` of an amoCRM consent URL.
fn state_of(consent: &str) -> String {
    consent
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .expect("state in the consent URL")
        .to_string()
}

/// The path amoCRM sends the person back to.
fn back_path(app: &TestApp, back: &str) -> String {
    assert!(
        back.starts_with(&app.url),
        "amoCRM sends back to us: {back}"
    );
    back.trim_start_matches(&app.url).to_string()
}

/// Presses a button that starts an amoCRM consent; returns its state.
async fn press(app: &TestApp, s: &Session, page: &str, action: &str) -> String {
    let r = s.post_from(page, action, &[]).await;
    assert_eq!(r.status(), 303, "{action}");
    let consent = location(&r);
    assert!(
        consent.starts_with(&format!("{}/oauth", app.amo.base_url())),
        "{consent}"
    );
    state_of(&consent)
}

/// Connects the signed-in owner's company to `account` (approved by its admin).
async fn connect(app: &TestApp, s: &Session, account: AccountId) {
    let state = press(app, s, "/app/crm", "/app/crm/connect").await;
    let back = app.amo.approve(account, TestApp::AMO_CLIENT_ID, &state);
    let r = s.get(&back_path(app, &back)).await;
    assert_eq!(location(&r), "/app/crm?ok=crm_connected");
}

/// A browser presses «Войти через amoCRM» and `user` (None: the admin) allows access;
/// returns the browser and the callback path.
async fn sign_in_consent(
    app: &TestApp,
    account: AccountId,
    user: Option<i64>,
) -> (Session, String) {
    let s = Session::new(app);
    let page = s.html("/sign-in").await;
    assert!(
        page.contains("id=\"amocrm-sign-in\""),
        "the button is shown"
    );
    let state = press(app, &s, "/sign-in", "/sign-in/amocrm").await;
    let back = match user {
        Some(u) => app
            .amo
            .approve_as(account, u, TestApp::AMO_CLIENT_ID, &state),
        None => app.amo.approve(account, TestApp::AMO_CLIENT_ID, &state),
    };
    (s, back_path(app, &back))
}

/// Whether the browser is signed in (the app answers instead of sending it to sign in).
async fn signed_in(s: &Session) -> bool {
    s.get("/app").await.status() == 200
}

async fn sign_out(s: &Session) {
    let r = s.post_from("/app", "/sign-out", &[]).await;
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn a_person_who_connected_amocrm_signs_in_with_it() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@horns.ru", PW).await;
    let account = app.amo.create_account("horns", "Рога и Копыта в amoCRM");
    connect(&app, &owner, account).await;
    sign_out(&owner).await;

    let (s, callback) = sign_in_consent(&app, account, None).await;
    let r = s.get(&callback).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(location(&r), "/app");
    let dashboard = s.html("/app").await;
    assert!(
        dashboard.contains("id=\"dashboard-company\">Рога и Копыта<"),
        "{dashboard}"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'user.sign_in' AND details LIKE '%amocrm%'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'user.amocrm_link' AND details LIKE '%connect%'"
        )
        .await,
        1,
        "connecting linked the person to their amoCRM user"
    );
    // The sign-in did not touch the connection's tokens.
    assert_eq!(
        count(&app, "SELECT count(*) FROM crm_integrations WHERE status = 'connected' AND tokens LIKE 'v1:%'").await,
        1
    );
}

#[tokio::test]
async fn two_factor_is_still_asked_after_amocrm() {
    use chatter_domain::totp;
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.ru", PW).await;
    let account = app.amo.create_account("romashka", "Ромашка CRM");
    connect(&app, &owner, account).await;
    let r = owner
        .post_from("/app/profile", "/app/profile/2fa/start", &[])
        .await;
    assert_eq!(r.status(), 303);
    let page = owner.html("/app/profile").await;
    let secret = page
        .split("id=\"totp-secret\">")
        .nth(1)
        .and_then(|x| x.split('<').next())
        .expect("the secret is shown");
    let code = totp::code_at(&totp::from_stored(secret), app.core.now() / 1000);
    let r = owner
        .post_from(
            "/app/profile",
            "/app/profile/2fa/enable",
            &[("code", &code)],
        )
        .await;
    assert_eq!(r.status(), 200);
    sign_out(&owner).await;

    let (s, callback) = sign_in_consent(&app, account, None).await;
    let r = s.get(&callback).await;
    assert_eq!(location(&r), "/sign-in/2fa");
    assert!(
        !signed_in(&s).await,
        "not signed in before the second factor"
    );
}

#[tokio::test]
async fn a_member_with_the_same_email_is_linked_and_a_stranger_is_sent_to_the_owner() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Альфа", "Анна", "anna@alpha.ru", PW).await;
    let account = app.amo.create_account("alpha", "Альфа CRM");
    connect(&app, &owner, account).await;
    let boris = app.amo.add_user(account, "Борис", "boris@alpha.ru");
    let vera = app.amo.add_user(account, "Вера", "vera@alpha.ru");
    crate::team::join_new(&app, &owner, "boris@alpha.ru", "Борис", "manager").await;

    // Борис is a member with the email amoCRM knows him by: linked and signed in.
    let (s, callback) = sign_in_consent(&app, account, Some(boris)).await;
    let r = s.get(&callback).await;
    assert_eq!(location(&r), "/app");
    assert!(signed_in(&s).await);
    let boris_id = crate::team::user_id(&app, "boris@alpha.ru").await;
    let link =
        user_identity::Entity::find_by_id(("amocrm".to_string(), format!("{}:{boris}", account.0)))
            .one(&app.core.db)
            .await
            .expect("link lookup")
            .expect("Борис is linked");
    assert_eq!(link.user_id, boris_id);

    // Вера is in amoCRM but not in the company: she is told whom to ask.
    let sessions = count(&app, "SELECT count(*) FROM sessions").await;
    let (s, callback) = sign_in_consent(&app, account, Some(vera)).await;
    let r = s.get(&callback).await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.expect("body");
    assert!(page.contains("id=\"amocrm-not-member\""), "{page}");
    assert!(page.contains("пригласить"), "{page}");
    assert!(!signed_in(&s).await);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, sessions);
    assert_eq!(
        count(&app, "SELECT count(*) FROM user_identities").await,
        2,
        "the owner's (from connecting) and Борис's"
    );
}

#[tokio::test]
async fn a_member_links_and_unlinks_amocrm_from_the_profile() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Бета", "Анна", "anna@beta.ru", PW).await;
    let account = app.amo.create_account("beta", "Бета CRM");
    connect(&app, &owner, account).await;
    // In amoCRM under another email than in Chatter.
    let gleb = app
        .amo
        .add_user(account, "Глеб", "gleb.private@mail.example");
    let member = crate::team::join_new(&app, &owner, "gleb@beta.ru", "Глеб", "manager").await;

    let state = press(&app, &member, "/app/profile", "/app/profile/amocrm/link").await;
    let back = app
        .amo
        .approve_as(account, gleb, TestApp::AMO_CLIENT_ID, &state);
    let r = member.get(&back_path(&app, &back)).await;
    assert_eq!(location(&r), "/app/profile?ok=saved");
    let profile = member.html("/app/profile").await;
    assert!(profile.contains("id=\"amocrm-links\""), "{profile}");
    assert!(profile.contains("Бета CRM"), "{profile}");

    // The owner cannot take Глеб's amoCRM user.
    let state = press(&app, &owner, "/app/profile", "/app/profile/amocrm/link").await;
    let back = app
        .amo
        .approve_as(account, gleb, TestApp::AMO_CLIENT_ID, &state);
    let r = owner.get(&back_path(&app, &back)).await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.expect("body").contains("уже привязан"));

    sign_out(&member).await;
    let (s, callback) = sign_in_consent(&app, account, Some(gleb)).await;
    assert_eq!(location(&s.get(&callback).await), "/app");

    // Unlinked, Глеб's amoCRM user no longer opens his account.
    let subject = format!("{}:{gleb}", account.0);
    let r = s
        .post_from(
            "/app/profile",
            "/app/profile/amocrm/unlink",
            &[("subject", &subject)],
        )
        .await;
    assert_eq!(location(&r), "/app/profile?ok=saved");
    assert!(s.html("/app/profile").await.contains("id=\"amocrm-none\""));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action IN ('user.amocrm_link', 'user.amocrm_unlink')"
        )
        .await,
        3,
        "the owner's link by connecting, Глеб's link and unlink"
    );
    sign_out(&s).await;
    let (s, callback) = sign_in_consent(&app, account, Some(gleb)).await;
    assert_eq!(s.get(&callback).await.status(), 403);
}

#[tokio::test]
async fn an_account_no_company_uses_becomes_a_new_company() {
    let app = TestApp::new().await;
    let account = app.amo.create_account("fresh", "Свежий ветер");
    let (s, callback) = sign_in_consent(&app, account, None).await;
    let r = s.get(&callback).await;
    assert_eq!(location(&r), "/sign-up/amocrm");
    let form = s.html("/sign-up/amocrm").await;
    assert!(
        form.contains("id=\"amocrm-account\">Свежий ветер<"),
        "{form}"
    );
    assert!(form.contains("value=\"admin@fresh.example\""), "{form}");
    assert!(form.contains("value=\"Администратор\""), "{form}");
    assert!(!form.contains("access_token") && !form.contains("def50200"));

    // Same password rules as sign-up; nothing is created on a refusal.
    let fields = |password: &'static str| {
        [
            ("company_name", "Свежий ветер"),
            ("name", "Ирина"),
            ("email", "admin@fresh.example"),
            ("password", password),
        ]
    };
    let r = s
        .post_from("/sign-up/amocrm", "/sign-up/amocrm", &fields("short"))
        .await;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("data-field=\"password\""));
    assert_eq!(count(&app, "SELECT count(*) FROM companies").await, 0);

    let r = s
        .post_from("/sign-up/amocrm", "/sign-up/amocrm", &fields(PW))
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(location(&r), "/app");
    let crm = s.html("/app/crm").await;
    assert!(crm.contains("id=\"crm-account\">Свежий ветер<"), "{crm}");
    assert!(crm.contains("id=\"crm-pipelines\""), "{crm}");
    for (sql, n) in [
        ("SELECT count(*) FROM companies WHERE name = 'Свежий ветер'", 1),
        ("SELECT count(*) FROM memberships WHERE role = 'owner'", 1),
        ("SELECT count(*) FROM users WHERE email = 'admin@fresh.example'", 1),
        ("SELECT count(*) FROM crm_integrations WHERE status = 'connected' AND tokens LIKE 'v1:%'", 1),
        ("SELECT count(*) FROM user_identities", 1),
        ("SELECT count(*) FROM pending_signups", 0),
        ("SELECT count(*) FROM audit_log WHERE action = 'company.create_via_amocrm'", 1),
    ] {
        assert_eq!(count(&app, sql).await, n, "{sql}");
    }
    // The form is single use.
    let r = s
        .post_from("/app/profile", "/sign-up/amocrm", &fields(PW))
        .await;
    assert_eq!(r.status(), 410);

    // Next time amoCRM signs the new owner in; so does the password.
    sign_out(&s).await;
    let (s, callback) = sign_in_consent(&app, account, None).await;
    assert_eq!(location(&s.get(&callback).await), "/app");
    let (_, r) = Session::sign_in(&app, "admin@fresh.example", PW).await;
    assert_eq!(location(&r), "/app");
}

#[tokio::test]
async fn an_email_that_already_has_an_account_creates_nothing() {
    let app = TestApp::new().await;
    Session::sign_up(&app, "Старая", "Админ", "admin@taken.example", PW).await;
    let account = app.amo.create_account("taken", "Занятый");
    let (s, callback) = sign_in_consent(&app, account, None).await;
    assert_eq!(location(&s.get(&callback).await), "/sign-up/amocrm");
    let form = s.html("/sign-up/amocrm").await;
    assert!(
        form.contains("id=\"amocrm-message\""),
        "warned up front: {form}"
    );
    let r = s
        .post_from(
            "/sign-up/amocrm",
            "/sign-up/amocrm",
            &[
                ("company_name", "Занятый"),
                ("name", "Админ"),
                ("email", "Admin@Taken.example"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(r.status(), 409);
    let page = r.text().await.expect("body");
    assert!(page.contains("Войдите по email и паролю"), "{page}");
    for (sql, n) in [
        ("SELECT count(*) FROM companies", 1),
        ("SELECT count(*) FROM users", 1),
        ("SELECT count(*) FROM crm_integrations", 0),
        ("SELECT count(*) FROM user_identities", 0),
    ] {
        assert_eq!(count(&app, sql).await, n, "{sql}");
    }
    assert!(!signed_in(&s).await);
}

#[tokio::test]
async fn replayed_forged_or_denied_sign_ins_change_nothing() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Гамма", "Анна", "anna@gamma.ru", PW).await;
    let account = app.amo.create_account("gamma", "Гамма CRM");
    connect(&app, &owner, account).await;
    let sessions = count(&app, "SELECT count(*) FROM sessions").await;

    // Someone else's callback link, opened in another browser.
    let (s, callback) = sign_in_consent(&app, account, None).await;
    let other = Session::new(&app);
    assert_eq!(other.get(&callback).await.status(), 410);
    assert!(!signed_in(&other).await);
    // A made-up state.
    let forged = "/crm/amocrm/callback?code=def502&referer=gamma.amocrm.ru&state=forged";
    assert_eq!(other.get(forged).await.status(), 410);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, sessions);

    // The rightful browser finishes; the same callback again is refused.
    assert_eq!(location(&s.get(&callback).await), "/app");
    sign_out(&s).await;
    let r = s.get(&callback).await;
    assert_eq!(r.status(), 410);
    assert!(!signed_in(&s).await);

    // A refusal on amoCRM's page: a clear message, the state used up.
    let s = Session::new(&app);
    let state = press(&app, &s, "/sign-in", "/sign-in/amocrm").await;
    let denied = format!("/crm/amocrm/callback?error=access_denied&state={state}");
    let r = s.get(&denied).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.expect("body").contains("не предоставлен"));
    assert_eq!(s.get(&denied).await.status(), 410);
    assert!(!signed_in(&s).await);
    assert_eq!(count(&app, "SELECT count(*) FROM oauth_states").await, 0);
}

#[tokio::test]
async fn the_disabled_hook_ends_the_connection_and_a_forged_one_changes_nothing() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Дельта", "Анна", "anna@delta.ru", PW).await;
    let account = app.amo.create_account("delta", "Дельта CRM");
    connect(&app, &owner, account).await;
    let connected =
        "SELECT count(*) FROM crm_integrations WHERE status = 'connected' AND tokens IS NOT NULL";
    let http = app.client();

    let zeros = "0".repeat(64);
    let forged = format!(
        "/hooks/amocrm/disabled?account_id={}&client_uuid={}&signature={zeros}",
        account.0,
        TestApp::AMO_CLIENT_ID
    );
    let r = http.get(app.at(&forged)).send().await.expect("GET");
    assert_eq!(r.status(), 401);
    let malformed = format!(
        "/hooks/amocrm/disabled?account_id=delta&client_uuid={}&signature={zeros}",
        TestApp::AMO_CLIENT_ID
    );
    let r = http.get(app.at(&malformed)).send().await.expect("GET");
    assert_eq!(r.status(), 400);
    assert_eq!(count(&app, connected).await, 1, "nothing changed");

    app.amo
        .set_disabled_hook_url(TestApp::AMO_CLIENT_ID, &app.at("/hooks/amocrm/disabled"));
    let status = app
        .amo
        .disable_integration(account, TestApp::AMO_CLIENT_ID)
        .await
        .expect("the hook is delivered");
    assert_eq!(status, 200);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM crm_integrations WHERE status = 'disabled' AND tokens IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'crm.disabled_in_amocrm'"
        )
        .await,
        1
    );
    let page = owner.html("/app/crm").await;
    assert!(page.contains("Интеграция отключена в amoCRM"), "{page}");
    assert!(page.contains("id=\"crm-disabled\""), "the fix is shown");

    // A repeat is harmless; reconnecting is the fix.
    let status = app
        .amo
        .disable_integration(account, TestApp::AMO_CLIENT_ID)
        .await
        .expect("the hook is delivered");
    assert_eq!(status, 200);
    connect(&app, &owner, account).await;
    assert_eq!(count(&app, connected).await, 1);
}
