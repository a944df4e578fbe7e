//! Connecting amoCRM (issue 4, item 1): the OAuth consent against the amoCRM fake, the code
//! exchange, tokens stored encrypted, the account's pipelines synced and shown; replayed or
//! foreign callbacks refused; revoked access shown with the fix; disconnect.

use crate::messages::{count, location, PW};
use chatter_testkit::{Session, TestApp};

/// Presses "Connect amoCRM" and approves on amoCRM's consent page; returns the callback path.
pub async fn consent(app: &TestApp, s: &Session, account: chatter_fakes::AccountId) -> String {
    let r = s.post_from("/app/crm", "/app/crm/connect", &[]).await;
    assert_eq!(r.status(), 303);
    let consent = location(&r);
    assert!(
        consent.starts_with(&format!("{}/oauth", app.amo.base_url())),
        "{consent}"
    );
    let state = consent
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .expect("state in the consent URL")
        .to_string();
    let back = app.amo.approve(account, TestApp::AMO_CLIENT_ID, &state);
    assert!(
        back.starts_with(&app.url),
        "amoCRM sends the person back to us: {back}"
    );
    back.trim_start_matches(&app.url).to_string()
}

#[tokio::test]
async fn an_admin_connects_amocrm_and_sees_its_pipelines() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Рога и Копыта", "Анна", "anna@example.ru", PW).await;
    assert!(s.html("/app/crm").await.contains("id=\"crm-connect\""));
    let account = app.amo.create_account("horns", "Рога и Копыта в amoCRM");
    let callback = consent(&app, &s, account).await;
    let r = s.get(&callback).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(location(&r), "/app/crm?ok=crm_connected");
    let page = s.html("/app/crm").await;
    assert!(page.contains("Рога и Копыта в amoCRM"), "{page}");
    assert!(page.contains("id=\"crm-pipelines\""));
    let first_pipeline = app.amo.pipelines(account)[0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        page.contains(&first_pipeline),
        "the synced pipeline {first_pipeline:?} is listed"
    );
    // Tokens are stored encrypted only.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM crm_integrations WHERE tokens LIKE 'v1:%'"
        )
        .await,
        1
    );
    // The same callback again: its state was used up.
    let r = s.get(&callback).await;
    assert_eq!(r.status(), 410);
    // Sync reads the account again; the audit log has both.
    let r = s.post_from("/app/crm", "/app/crm/sync", &[]).await;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    let why = body
        .split("id=\"crm-error\">")
        .nth(1)
        .and_then(|x| x.split('<').next())
        .unwrap_or("");
    assert_eq!(status, 303, "sync refused: {why}");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action IN ('crm.connect', 'crm.sync')"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn revoked_access_is_shown_with_the_fix_and_disconnect_forgets_the_tokens() {
    let app = TestApp::new().await;
    let s = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.ru", PW).await;
    let account = app.amo.create_account("romashka", "Ромашка CRM");
    let callback = consent(&app, &s, account).await;
    assert_eq!(s.get(&callback).await.status(), 303);
    app.amo.revoke_tokens(account);
    let r = s.post_from("/app/crm", "/app/crm/sync", &[]).await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("body");
    assert!(page.contains("id=\"crm-error\""), "{page}");
    assert!(s.html("/app/crm").await.contains("Доступ отозван"));
    let r = s.post_from("/app/crm", "/app/crm/disconnect", &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(count(&app, "SELECT count(*) FROM crm_integrations WHERE tokens IS NULL AND status = 'disconnected'").await, 1);
}

#[tokio::test]
async fn a_callback_started_by_someone_else_or_denied_changes_nothing() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Альфа", "Анна", "anna@alpha.ru", PW).await;
    let other = Session::sign_up(&app, "Бета", "Борис", "boris@beta.ru", PW).await;
    let account = app.amo.create_account("alpha", "Альфа CRM");
    let callback = consent(&app, &owner, account).await;
    // Another company's admin cannot use the first one's consent.
    let r = other.get(&callback).await;
    assert_eq!(r.status(), 410);
    // A refusal on amoCRM's page comes back as a clear message.
    let r = owner
        .get("/crm/amocrm/callback?error=access_denied&state=x")
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.expect("body").contains("не предоставлен"));
    assert_eq!(
        count(&app, "SELECT count(*) FROM crm_integrations").await,
        0
    );
    // The rightful owner can still finish.
    assert_eq!(owner.get(&callback).await.status(), 303);
    assert_eq!(
        count(&app, "SELECT count(*) FROM crm_integrations").await,
        1
    );
}
