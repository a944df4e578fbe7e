//! The foundation's whole journey in headless Chromium, at desktop and phone sizes: sign-up,
//! sign-out and back in, turning on 2FA and signing in with it, inviting a teammate by mail,
//! accepting in a second browser (as an existing user with a company of their own, and as a
//! new account), and switching companies. Screenshots of every step land in
//! `<target dir>/screenshots/`; at both sizes the app pages must not scroll sideways.

use chatter_domain::totp;
use chatter_testkit::{Browser, TestApp};
use fantoccini::Locator;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a page gets to arrive after a click; generous because two cores run four browsers.
const NAV_WAIT: Duration = Duration::from_secs(20);
const MAIL_WAIT: Duration = Duration::from_secs(15);

const OWNER_EMAIL: &str = "anna@romashka.test";
const OWNER_PASSWORD: &str = "ромашка-пароль-42";
const COMPANY: &str = "Ромашка";
const INVITEE_EMAIL: &str = "boris@lavka.test";
const INVITEE_COMPANY: &str = "Лавка Бориса";
const NEWCOMER_EMAIL: &str = "vera@romashka.test";

/// How the owner proves the second factor when signing in again.
#[derive(Clone, Copy, PartialEq)]
enum SecondFactor {
    /// One of the recovery codes shown when 2FA was turned on.
    RecoveryCode,
    /// A fresh TOTP code from a later 30-second step than the one that turned 2FA on.
    NextTotpStep,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_journey_at_desktop_size() {
    journey("desktop", 1280, 800, SecondFactor::RecoveryCode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_journey_at_phone_size() {
    journey("phone", 390, 844, SecondFactor::NextTotpStep).await;
}

async fn journey(size: &str, width: u32, height: u32, second_factor: SecondFactor) {
    if !Browser::available_or_skip() {
        return;
    }
    let app = TestApp::new().await;
    let owner = Window::open(&app, size, "owner", width, height).await;

    // Sign-up lands on the new company's dashboard.
    owner.goto("/sign-up").await;
    owner.fill("input[name=company_name]", COMPANY).await;
    owner.fill("input[name=name]", "Анна Петрова").await;
    owner.fill("input[name=email]", OWNER_EMAIL).await;
    owner.fill("input[name=password]", OWNER_PASSWORD).await;
    owner.shot("01-sign-up-filled").await;
    owner.click("#sign-up-submit").await;
    owner.wait_path("/app").await;
    owner.wait_text("#dashboard-company", COMPANY).await;
    owner.shot("02-dashboard").await;
    owner.assert_no_sideways_scroll("the dashboard").await;

    // Signing out ends the session: the app sends the visitor to the sign-in page.
    owner.sign_out().await;
    owner.goto("/app").await;
    owner.wait_path("/sign-in").await;
    owner.shot("03-signed-out").await;

    owner.sign_in(OWNER_EMAIL, OWNER_PASSWORD).await;
    owner.wait_path("/app").await;
    owner.wait_text("#dashboard-company", COMPANY).await;

    // Turning on 2FA with a code from the shown secret gives recovery codes.
    owner.goto("/app/profile").await;
    owner.click("#twofa-start").await;
    let shown = owner.text("#totp-secret").await;
    let secret = totp::from_stored(&shown);
    assert!(
        !secret.is_empty(),
        "the profile shows a TOTP secret: {shown:?}"
    );
    let now = unix_now();
    let enabling_step = now / totp::STEP_SECS;
    owner
        .fill("input[name=code]", &totp::code_at(&secret, now))
        .await;
    owner.scroll_to("#twofa").await;
    owner.shot("04-twofa-setup").await;
    owner.click("#twofa-enable").await;
    owner
        .browser
        .wait_for("#recovery-codes", NAV_WAIT)
        .await
        .expect("recovery codes are shown");
    let recovery_codes = owner.texts("#recovery-codes code").await;
    assert_eq!(
        recovery_codes.len(),
        10,
        "ten recovery codes: {recovery_codes:?}"
    );
    assert!(
        recovery_codes.iter().all(|c| !c.trim().is_empty()),
        "no blank recovery code: {recovery_codes:?}"
    );
    let status = owner.text("#twofa-status").await;
    assert!(
        status.contains("Включён"),
        "2FA reported on, got {status:?}"
    );
    owner.scroll_to("#twofa").await;
    owner.shot("05-twofa-on").await;
    owner
        .assert_no_sideways_scroll("the profile with recovery codes")
        .await;

    // Signing in now asks for the second factor before the dashboard.
    owner.sign_out().await;
    owner.sign_in(OWNER_EMAIL, OWNER_PASSWORD).await;
    owner.wait_path("/sign-in/2fa").await;
    // Half signed in is not signed in: the app stays shut until the code is given.
    owner.goto("/app").await;
    owner.assert_not_at("/app").await;
    owner.goto("/sign-in/2fa").await;
    owner.wait_path("/sign-in/2fa").await;
    owner.shot("06-second-factor").await;
    let code = match second_factor {
        SecondFactor::RecoveryCode => recovery_codes[0].clone(),
        SecondFactor::NextTotpStep => {
            // A step is accepted once, and enabling used one: wait for the next.
            let next_step_at = (enabling_step + 1) * totp::STEP_SECS;
            let wait = u64::try_from(next_step_at - unix_now()).unwrap_or(0);
            tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(300)).await;
            let now = unix_now();
            assert!(now / totp::STEP_SECS > enabling_step);
            totp::code_at(&secret, now)
        }
    };
    owner.fill("input[name=code]", &code).await;
    owner.click("#two-factor-submit").await;
    owner.wait_path("/app").await;
    owner.wait_text("#dashboard-company", COMPANY).await;
    owner.shot("07-signed-in-with-2fa").await;

    // The person to invite already has an account and a company of their own.
    let invitee = Window::open(&app, size, "invitee", width, height).await;
    invitee.goto("/sign-up").await;
    invitee
        .fill("input[name=company_name]", INVITEE_COMPANY)
        .await;
    invitee.fill("input[name=name]", "Борис Иванов").await;
    invitee.fill("input[name=email]", INVITEE_EMAIL).await;
    invitee
        .fill("input[name=password]", "лавка-пароль-77")
        .await;
    invitee.click("#sign-up-submit").await;
    // Not the instance's first account: nothing exists until the mailed link is opened.
    invitee
        .wait_text("#sign-up-check-mail strong", INVITEE_EMAIL)
        .await;
    invitee.shot("08-check-your-mail").await;
    let confirm = app.sign_up_link(INVITEE_EMAIL).await;
    invitee.goto(&confirm).await;
    invitee.wait_text("#confirm-company", INVITEE_COMPANY).await;
    invitee.click("#sign-up-confirm").await;
    invitee.wait_path("/app").await;
    invitee
        .wait_text("#dashboard-company", INVITEE_COMPANY)
        .await;
    invitee.shot("08-own-company").await;

    // The owner invites them as a manager; the invitation arrives by mail.
    owner.goto("/app/team").await;
    owner.assert_no_sideways_scroll("the team page").await;
    owner.invite(INVITEE_EMAIL, "manager").await;
    owner.shot("09-invited").await;
    let link = invite_link(&app, INVITEE_EMAIL).await;

    // Accepting as the signed-in invitee joins the company and shows its dashboard.
    invitee
        .browser
        .goto(&link)
        .await
        .expect("open the invitation");
    let offer = invitee.text("#invite-company").await;
    assert!(
        offer.contains(COMPANY),
        "the invitation names {COMPANY}: {offer:?}"
    );
    invitee.shot("10-invitation").await;
    invitee.click("#accept-invite").await;
    invitee.wait_path("/app").await;
    invitee.wait_text("#dashboard-company", COMPANY).await;
    invitee.shot("11-joined").await;
    invitee
        .assert_no_sideways_scroll("the dashboard with the company switcher")
        .await;

    // Two companies now: the switcher moves between them.
    invitee
        .switch_company(INVITEE_COMPANY, "12-switcher-open")
        .await;
    invitee.shot("13-switched-to-own").await;
    invitee
        .switch_company(COMPANY, "14-switcher-open-again")
        .await;
    invitee.shot("15-switched-back").await;

    // Someone without an account creates one from the invitation.
    owner.goto("/app/team").await;
    owner.invite(NEWCOMER_EMAIL, "viewer").await;
    let link = invite_link(&app, NEWCOMER_EMAIL).await;
    invitee.sign_out().await;
    invitee
        .browser
        .goto(&link)
        .await
        .expect("open the invitation");
    invitee.fill("input[name=name]", "Вера Смирнова").await;
    invitee
        .fill("input[name=password]", "вера-пароль-123")
        .await;
    invitee.shot("16-new-account-from-invitation").await;
    invitee.click("#accept-invite").await;
    invitee.wait_path("/app").await;
    invitee.wait_text("#dashboard-company", COMPANY).await;
    invitee.shot("17-newcomer-dashboard").await;

    // The owner's team lists both new members.
    owner.goto("/app/team").await;
    for email in [INVITEE_EMAIL, NEWCOMER_EMAIL] {
        owner
            .browser
            .wait_for(&format!("#members tr[data-email=\"{email}\"]"), NAV_WAIT)
            .await
            .unwrap_or_else(|e| panic!("{email} is listed as a member: {e:#}"));
    }
    owner.shot("18-team").await;
    owner
        .assert_no_sideways_scroll("the team page with members")
        .await;

    invitee.close().await;
    owner.close().await;
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit i64")
}

/// The `/invites/…` link in the invitation mail sent to `email`.
async fn invite_link(app: &TestApp, email: &str) -> String {
    let mail = app
        .smtp
        .wait_for(email, MAIL_WAIT)
        .await
        .unwrap_or_else(|| panic!("an invitation mail reaches {email}"));
    mail.links()
        .into_iter()
        .find(|l| l.contains("/invites/"))
        .unwrap_or_else(|| panic!("the invitation mail has a link: {}", mail.body))
}

/// One browser of one person, with the app's base URL and screenshot names.
struct Window {
    browser: Browser,
    base: String,
    shot_prefix: String,
}

impl Window {
    async fn open(app: &TestApp, size: &str, who: &str, width: u32, height: u32) -> Window {
        let browser = Browser::start(width, height)
            .await
            .unwrap_or_else(|e| panic!("start a {width}x{height} browser: {e:#}"));
        Window {
            browser,
            base: app.url.clone(),
            shot_prefix: format!("{size}-{who}"),
        }
    }

    async fn goto(&self, path: &str) {
        self.browser
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    async fn fill(&self, css: &str, text: &str) {
        match self.browser.fill(css, text).await {
            Ok(value) => value,
            Err(e) => panic!("{e:#}\n{}", self.where_am_i().await),
        }
    }

    async fn click(&self, css: &str) {
        match self.browser.click(css).await {
            Ok(value) => value,
            Err(e) => panic!("{e:#}\n{}", self.where_am_i().await),
        }
    }

    async fn text(&self, css: &str) -> String {
        match self.browser.text(css).await {
            Ok(value) => value,
            Err(e) => panic!("{e:#}\n{}", self.where_am_i().await),
        }
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for element in self
            .browser
            .client()
            .find_all(Locator::Css(css))
            .await
            .expect("find elements")
        {
            out.push(element.text().await.expect("element text"));
        }
        out
    }

    async fn shot(&self, step: &str) {
        self.browser
            .screenshot(&format!("{}-{step}", self.shot_prefix))
            .await
            .expect("screenshot");
    }

    /// The current URL and the start of the page, for failure messages.
    async fn where_am_i(&self) -> String {
        let url = self
            .browser
            .client()
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let html = self.browser.page_source().await.unwrap_or_default();
        let start: String = html.chars().take(3000).collect();
        format!("at {url}:\n{start}")
    }

    /// Waits until the address bar shows `path` (query strings aside).
    async fn wait_path(&self, path: &str) {
        let deadline = tokio::time::Instant::now() + NAV_WAIT;
        loop {
            let url = self
                .browser
                .client()
                .current_url()
                .await
                .expect("current url");
            if url.path() == path {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("expected to arrive at {path}\n{}", self.where_am_i().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element matched by `css` reads `expected`.
    async fn wait_text(&self, css: &str, expected: &str) {
        let deadline = tokio::time::Instant::now() + NAV_WAIT;
        loop {
            let now = self.browser.text(css).await.unwrap_or_default();
            if now.trim() == expected {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "expected {css} to read {expected:?}, it reads {now:?}\n{}",
                    self.where_am_i().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn assert_not_at(&self, path: &str) {
        let url = self
            .browser
            .client()
            .current_url()
            .await
            .expect("current url");
        assert_ne!(url.path(), path, "{} must not open here", url);
    }

    async fn sign_in(&self, email: &str, password: &str) {
        self.goto("/sign-in").await;
        self.fill("input[name=email]", email).await;
        self.fill("input[name=password]", password).await;
        self.click("#sign-in-submit").await;
    }

    async fn sign_out(&self) {
        self.click("#sign-out").await;
        self.wait_path("/sign-in").await;
    }

    /// Sends an invitation from the team page, which must be open.
    async fn invite(&self, email: &str, role: &str) {
        let form = "form[action='/app/team/invite']";
        self.fill(&format!("{form} input[name=email]"), email).await;
        self.browser
            .wait_for(&format!("{form} select[name=role]"), NAV_WAIT)
            .await
            .expect("the role picker")
            .select_by_value(role)
            .await
            .unwrap_or_else(|e| panic!("pick the role {role}: {e}"));
        self.click("#invite-submit").await;
        // The answer is the team page with the link to pass on by hand, and the invitation
        // among the pending ones.
        self.wait_path("/app/team/invite").await;
        let link = self
            .browser
            .wait_for("#invite-link", NAV_WAIT)
            .await
            .expect("the invitation link is shown")
            .prop("value")
            .await
            .expect("read the link")
            .unwrap_or_default();
        assert!(link.contains("/invites/"), "a link to pass on: {link:?}");
        let pending = self.texts("ul.plain li").await;
        assert!(
            pending.iter().any(|line| line.contains(email)),
            "{email} is among the pending invitations: {pending:?}"
        );
    }

    /// Picks `company` in the header's company switcher and waits for its dashboard.
    async fn switch_company(&self, company: &str, shot: &str) {
        self.click("#company-switcher summary").await;
        self.shot(shot).await;
        self.click(&format!(
            "#company-switcher button[data-company=\"{company}\"]"
        ))
        .await;
        self.wait_path("/app").await;
        self.wait_text("#dashboard-company", company).await;
    }

    async fn scroll_to(&self, css: &str) {
        let element = self
            .browser
            .wait_for(css, NAV_WAIT)
            .await
            .expect("element to show");
        self.browser
            .client()
            .execute(
                "arguments[0].scrollIntoView();",
                vec![serde_json::to_value(element).expect("element as JSON")],
            )
            .await
            .expect("scroll");
    }

    /// The page is no wider than the window: nothing hides off to the right.
    async fn assert_no_sideways_scroll(&self, what: &str) {
        let (scroll, inner) = self.browser.widths().await.expect("measure the page");
        assert!(
            scroll <= inner,
            "{what} scrolls sideways in {}: {scroll}px of content in a {inner}px window",
            self.shot_prefix
        );
    }

    async fn close(self) {
        self.browser.close().await.expect("close the browser");
    }
}
