//! Companies and team through the HTTP surface: invitations by mail link (new and existing
//! accounts), the company switcher, dead links, roles and who may change them, the last owner,
//! removal, and creating another company.

use chatter_core::jobs::BackgroundJob;
use chatter_store::entity::{company, invite, job, membership};
use chatter_testkit::{Session, TestApp};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use std::time::Duration;
use uuid::Uuid;

pub(crate) const PW: &str = "correct horse battery";
const MAIL_WAIT: Duration = Duration::from_secs(15);

pub(crate) fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub(crate) async fn user_id(app: &TestApp, email: &str) -> Uuid {
    chatter_core::accounts::find_user_by_email(&app.core.db, email)
        .await
        .expect("user lookup")
        .expect("the user exists")
        .id
}

pub(crate) async fn company_id(app: &TestApp, name: &str) -> Uuid {
    company::Entity::find()
        .filter(company::Column::Name.eq(name))
        .one(&app.core.db)
        .await
        .expect("company lookup")
        .expect("the company exists")
        .id
}

/// The member's role in a company, as stored (None: not a member).
pub(crate) async fn role_in(app: &TestApp, company: Uuid, user: Uuid) -> Option<String> {
    membership::Entity::find_by_id((company, user))
        .one(&app.core.db)
        .await
        .expect("membership lookup")
        .map(|m| m.role)
}

/// Sends an invitation from the team page and returns the path of the link that arrives by mail.
pub(crate) async fn invite_by_mail(
    app: &TestApp,
    inviter: &Session,
    email: &str,
    role: &str,
) -> String {
    let r = inviter
        .post_from(
            "/app/team",
            "/app/team/invite",
            &[("email", email), ("role", role)],
        )
        .await;
    assert_eq!(r.status(), 200, "the invitation is accepted by the form");
    let page = r.text().await.expect("body");
    assert!(page.contains("id=\"invite-link\""), "the link is shown");
    let mail = app
        .smtp
        .wait_for(email, MAIL_WAIT)
        .await
        .expect("the invitation mail arrives");
    let link = mail
        .links()
        .into_iter()
        .find(|l| l.contains("/invites/"))
        .expect("the mail carries an /invites/ link");
    assert!(link.starts_with(&app.url), "the link points at Chatter");
    link[app.url.len()..].to_string()
}

/// Invites a new person and accepts as them in a fresh browser session.
pub(crate) async fn join_new(
    app: &TestApp,
    inviter: &Session,
    email: &str,
    name: &str,
    role: &str,
) -> Session {
    let path = invite_by_mail(app, inviter, email, role).await;
    let s = Session::new(app);
    let r = s
        .post_from(&path, &path, &[("name", name), ("password", PW)])
        .await;
    assert_eq!(r.status(), 303, "accepting creates the account");
    s
}

fn dashboard_company(html: &str) -> String {
    between(html, "id=\"dashboard-company\">", "<")
}

fn dashboard_role(html: &str) -> String {
    between(html, "<span id=\"my-role\">", "<")
}

fn between(html: &str, start: &str, end: &str) -> String {
    html.find(start)
        .map(|i| {
            let rest = &html[i + start.len()..];
            rest[..rest.find(end).unwrap_or(rest.len())].to_string()
        })
        .unwrap_or_default()
}

async fn audit_actions(owner: &Session, query: &str) -> Vec<String> {
    let html = owner.html(&format!("/app/audit?{query}")).await;
    html.split("data-action=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap_or(0)].to_string())
        .collect()
}

#[tokio::test]
async fn invited_person_creates_an_account_and_joins_as_manager() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.test", PW).await;

    let path = invite_by_mail(&app, &owner, "boris@romashka.test", "manager").await;
    assert!(path.starts_with("/invites/"));

    let guest = Session::new(&app);
    let r = guest.get(&path).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.expect("body");
    assert!(page.contains("Ромашка"), "the invitation names the company");
    assert!(page.contains("boris@romashka.test"));

    let r = guest
        .post_from(&path, &path, &[("name", "Борис"), ("password", PW)])
        .await;
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/app"), "{}", location(&r));

    let dash = guest.html("/app").await;
    assert_eq!(dashboard_company(&dash), "Ромашка");
    assert_eq!(dashboard_role(&dash), "Менеджер");

    let team = owner.html("/app/team").await;
    assert!(team.contains("data-email=\"boris@romashka.test\""));
    assert!(team.contains("Борис"));

    let actions = audit_actions(&owner, "action=team.").await;
    assert!(actions.iter().any(|a| a == "team.invite"), "{actions:?}");
    assert!(
        actions.iter().any(|a| a == "team.invite_accept"),
        "{actions:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn existing_user_joins_a_second_company_and_switches_between_them() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.test", PW).await;
    let vera = Session::sign_up(&app, "Лютик", "Вера", "vera@lutik.test", PW).await;
    let _other = Session::sign_up(&app, "Тюльпан", "Глеб", "gleb@tulip.test", PW).await;
    assert!(
        !vera.html("/app").await.contains("id=\"company-switcher\""),
        "one company: no switcher"
    );

    let path = invite_by_mail(&app, &owner, "vera@lutik.test", "viewer").await;
    let page = vera.html(&path).await;
    assert!(page.contains("Ромашка"));
    assert!(page.contains("id=\"accept-invite\""));
    let r = vera.post_from(&path, &path, &[]).await;
    assert_eq!(r.status(), 303);

    let dash = vera.html("/app").await;
    assert_eq!(dashboard_company(&dash), "Ромашка");
    assert_eq!(dashboard_role(&dash), "Только просмотр");
    assert!(dash.contains("id=\"company-switcher\""));
    assert!(dash.contains("data-company=\"Лютик\""));

    let lutik = company_id(&app, "Лютик").await;
    let r = vera
        .post_from("/app", &format!("/app/companies/{lutik}/switch"), &[])
        .await;
    assert_eq!(r.status(), 303);
    let dash = vera.html("/app").await;
    assert_eq!(dashboard_company(&dash), "Лютик");
    assert_eq!(dashboard_role(&dash), "Владелец");

    let tulip = company_id(&app, "Тюльпан").await;
    let r = vera
        .post_from("/app", &format!("/app/companies/{tulip}/switch"), &[])
        .await;
    assert_eq!(r.status(), 403, "not a member of that company");
    assert_eq!(dashboard_company(&vera.html("/app").await), "Лютик");
    app.stop().await;
}

#[tokio::test]
async fn used_and_revoked_links_are_gone_and_bad_email_creates_nothing() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.test", PW).await;

    // Used: the second visitor finds a dead link.
    let used = invite_by_mail(&app, &owner, "boris@romashka.test", "manager").await;
    let boris = Session::new(&app);
    let r = boris
        .post_from(&used, &used, &[("name", "Борис"), ("password", PW)])
        .await;
    assert_eq!(r.status(), 303);
    let late = Session::new(&app);
    assert_eq!(late.get(&used).await.status(), 410);
    let r = late
        .post_from("/sign-in", &used, &[("name", "Чужой"), ("password", PW)])
        .await;
    assert_eq!(r.status(), 410);
    assert_eq!(boris.get(&used).await.status(), 410, "also for the member");

    // Revoked.
    let revoked = invite_by_mail(&app, &owner, "dina@romashka.test", "viewer").await;
    let team = owner.html("/app/team").await;
    let id = between(&team, "action=\"/app/team/invites/", "/revoke");
    assert!(
        !id.is_empty(),
        "the open invitation is listed with a revoke form"
    );
    let r = owner
        .post_from("/app/team", &format!("/app/team/invites/{id}/revoke"), &[])
        .await;
    assert_eq!(r.status(), 303);
    let dina = Session::new(&app);
    assert_eq!(dina.get(&revoked).await.status(), 410);
    let r = dina
        .post_from("/sign-in", &revoked, &[("name", "Дина"), ("password", PW)])
        .await;
    assert_eq!(r.status(), 410);
    assert!(
        chatter_core::accounts::find_user_by_email(&app.core.db, "dina@romashka.test")
            .await
            .expect("lookup")
            .is_none()
    );

    // Invalid email: the form comes back, nothing is created.
    let invites_before = invite::Entity::find()
        .count(&app.core.db)
        .await
        .expect("count");
    let mail_jobs = || async {
        job::Entity::find()
            .filter(job::Column::Kind.eq(chatter_core::mailer::SendEmail::NAME))
            .count(&app.core.db)
            .await
            .expect("count")
    };
    let jobs_before = mail_jobs().await;
    let r = owner
        .post_from(
            "/app/team",
            "/app/team/invite",
            &[("email", "not-an-email"), ("role", "manager")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.expect("body");
    assert!(page.contains("class=\"field-error\" data-field=\"email\""));
    assert!(page.contains("value=\"not-an-email\""), "the input is kept");
    assert_eq!(
        invite::Entity::find()
            .count(&app.core.db)
            .await
            .expect("count"),
        invites_before
    );
    assert_eq!(mail_jobs().await, jobs_before, "no mail is queued");
    assert!(app
        .smtp
        .messages()
        .iter()
        .all(|m| m.to.iter().all(|t| t != "not-an-email")));
    app.stop().await;
}

#[tokio::test]
async fn roles_change_within_limits_and_removal_ends_access() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.test", PW).await;
    let admin = join_new(&app, &owner, "adam@romashka.test", "Адам", "admin").await;
    let manager = join_new(&app, &owner, "maria@romashka.test", "Мария", "manager").await;
    let viewer = join_new(&app, &owner, "viktor@romashka.test", "Виктор", "viewer").await;
    let gleb = Session::sign_up(&app, "Тюльпан", "Глеб", "gleb@tulip.test", PW).await;
    let path = invite_by_mail(&app, &owner, "gleb@tulip.test", "viewer").await;
    assert_eq!(gleb.post_from(&path, &path, &[]).await.status(), 303);

    let c = company_id(&app, "Ромашка").await;
    let anna = user_id(&app, "anna@romashka.test").await;
    let adam = user_id(&app, "adam@romashka.test").await;
    let maria = user_id(&app, "maria@romashka.test").await;
    let viktor = user_id(&app, "viktor@romashka.test").await;
    let gleb_id = user_id(&app, "gleb@tulip.test").await;

    // The owner changes a role; the member sees it.
    let r = owner
        .post_from(
            "/app/team",
            &format!("/app/team/members/{maria}/role"),
            &[("role", "viewer")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        dashboard_role(&manager.html("/app").await),
        "Только просмотр"
    );
    let r = owner
        .post_from(
            "/app/team",
            &format!("/app/team/members/{maria}/role"),
            &[("role", "manager")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(role_in(&app, c, maria).await.as_deref(), Some("manager"));

    // An admin may not make an admin, nor touch the owner.
    let r = admin
        .post_from(
            "/app/team",
            &format!("/app/team/members/{maria}/role"),
            &[("role", "admin")],
        )
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(role_in(&app, c, maria).await.as_deref(), Some("manager"));
    let r = admin
        .post_from(
            "/app/team",
            "/app/team/invite",
            &[("email", "new-admin@romashka.test"), ("role", "admin")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("data-field=\"role\""));
    let r = admin
        .post_from(
            "/app/team",
            &format!("/app/team/members/{anna}/role"),
            &[("role", "viewer")],
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = admin
        .post_from(
            "/app/team",
            &format!("/app/team/members/{anna}/remove"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(role_in(&app, c, anna).await.as_deref(), Some("owner"));
    let r = admin
        .post_from(
            "/app/team",
            &format!("/app/team/members/{adam}/role"),
            &[("role", "owner")],
        )
        .await;
    assert_eq!(r.status(), 403, "nor raise themself");
    assert_eq!(role_in(&app, c, adam).await.as_deref(), Some("admin"));
    // A manager manages nobody.
    let r = manager
        .post_from(
            "/app/team",
            &format!("/app/team/members/{viktor}/role"),
            &[("role", "manager")],
        )
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(role_in(&app, c, viktor).await.as_deref(), Some("viewer"));

    // The last owner stays.
    let r = owner
        .post_from(
            "/app/team",
            &format!("/app/team/members/{anna}/role"),
            &[("role", "admin")],
        )
        .await;
    assert_eq!(r.status(), 409);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("class=\"form-error\""));
    let r = owner
        .post_from(
            "/app/team",
            &format!("/app/team/members/{anna}/remove"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(role_in(&app, c, anna).await.as_deref(), Some("owner"));
    assert_eq!(dashboard_role(&owner.html("/app").await), "Владелец");

    // Removal ends access: with no other company, to "create a company"; else the other one.
    let r = admin
        .post_from(
            "/app/team",
            &format!("/app/team/members/{viktor}/remove"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(role_in(&app, c, viktor).await, None);
    let r = viewer.get("/app").await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/app/companies/new");
    assert_eq!(viewer.get("/app/team").await.status(), 303);
    assert!(!owner
        .html("/app/team")
        .await
        .contains("data-email=\"viktor@romashka.test\""));

    assert_eq!(dashboard_company(&gleb.html("/app").await), "Ромашка");
    let r = owner
        .post_from(
            "/app/team",
            &format!("/app/team/members/{gleb_id}/remove"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    let dash = gleb.html("/app").await;
    assert_eq!(dashboard_company(&dash), "Тюльпан");
    assert!(
        !dash.contains("Ромашка"),
        "the old company is gone from the switcher"
    );
    let actions = audit_actions(&owner, "action=team.").await;
    assert!(actions.iter().any(|a| a == "team.remove"), "{actions:?}");
    assert!(
        actions.iter().any(|a| a == "team.role_change"),
        "{actions:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn another_company_makes_its_creator_owner_and_switches_to_it() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Ромашка", "Анна", "anna@romashka.test", PW).await;

    let r = owner
        .post_from(
            "/app/companies/new",
            "/app/companies",
            &[("company_name", " ")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("data-field=\"company_name\""));
    assert_eq!(
        company::Entity::find()
            .count(&app.core.db)
            .await
            .expect("count"),
        1
    );

    let r = owner
        .post_from(
            "/app/companies/new",
            "/app/companies",
            &[("company_name", "Второй офис")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/app"));
    let dash = owner.html("/app").await;
    assert_eq!(dashboard_company(&dash), "Второй офис");
    assert_eq!(dashboard_role(&dash), "Владелец");
    assert!(
        dash.contains("data-company=\"Ромашка\""),
        "the switcher offers the first"
    );

    let second = company_id(&app, "Второй офис").await;
    let anna = user_id(&app, "anna@romashka.test").await;
    assert_eq!(role_in(&app, second, anna).await.as_deref(), Some("owner"));
    let team = owner.html("/app/team").await;
    assert_eq!(team.matches("<tr data-email=").count(), 1, "a team of one");
    app.stop().await;
}

// --- Issue 9: invitations are bound to the invited address and limited ---

#[tokio::test]
async fn an_invitation_is_for_the_invited_address_not_whoever_holds_the_link() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PW).await;
    let path = invite_by_mail(&app, &owner, "bob@example.ru", "manager").await;
    // Carol has her own account and got hold of Bob's link.
    let carol = Session::sign_up(&app, "Carol Co", "Carol", "carol@example.ru", PW).await;
    let r = carol.get(&path).await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.expect("body");
    assert!(page.contains("id=\"invite-other-person\""), "{page}");
    assert!(
        page.contains("b***@example.ru"),
        "the address, masked: {page}"
    );
    assert!(!page.contains("bob@example.ru"), "{page}");
    let r = carol.post_from(&path, &path, &[]).await;
    assert_eq!(r.status(), 403);
    let acme = company_id(&app, "Acme").await;
    let carol_id = user_id(&app, "carol@example.ru").await;
    assert_eq!(
        role_in(&app, acme, carol_id).await,
        None,
        "Carol did not join"
    );
    // Bob, creating his account from the link, gets the invited address whatever he posts.
    let bob = Session::new(&app);
    let r = bob
        .post_from(
            &path,
            &path,
            &[
                ("name", "Bob"),
                ("password", PW),
                ("email", "mallory@example.ru"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let bob_id = user_id(&app, "bob@example.ru").await;
    assert_eq!(
        role_in(&app, acme, bob_id).await.as_deref(),
        Some("manager")
    );
    assert!(
        chatter_core::accounts::find_user_by_email(&app.core.db, "mallory@example.ru")
            .await
            .expect("lookup")
            .is_none()
    );
}

#[tokio::test]
async fn invitation_mail_to_one_address_is_limited() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Acme", "Anna", "anna@example.ru", PW).await;
    for i in 0..3 {
        let r = owner
            .post_from(
                "/app/team",
                "/app/team/invite",
                &[("email", "bob@example.ru"), ("role", "manager")],
            )
            .await;
        assert_eq!(r.status(), 200, "invitation {i}");
    }
    let r = owner
        .post_from(
            "/app/team",
            "/app/team/invite",
            &[("email", "bob@example.ru"), ("role", "manager")],
        )
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let open = invite::Entity::find()
        .filter(invite::Column::Email.eq("bob@example.ru"))
        .count(&app.core.db)
        .await
        .expect("count");
    assert_eq!(open, 3, "the fourth was not made");
}
