//! amoCRM OAuth 2.0 (§1): the consent URL, the redirect's parameters, code exchange and refresh
//! against the account host, the account-subdomain lookup, the "integration disabled" hook and
//! identifying who signed in.
//!
//! The token endpoint lives on the *account's* host, named by the redirect's `referer`, which
//! the browser controls: `AccountHosts` only turns a referer into a URL if it is an amoCRM
//! account host, so the client secret is never posted anywhere else.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use url::Url;

use super::api::{classify, AmoCrm};
use super::{transport_error, HookError};
use crate::{Clock, CrmError, CrmId, Tokens};

/// The consent page (§1.2) for accounts on amocrm.ru.
pub const CONSENT_URL_RU: &str = "https://www.amocrm.ru/oauth";
/// The consent page for Kommo accounts (the host is unconfirmed in the spec, §7.2).
pub const CONSENT_URL_KOMMO: &str = "https://www.kommo.com/oauth";

/// The account domains amoCRM serves accounts from (§0).
const ACCOUNT_DOMAINS: [&str; 3] = ["amocrm.ru", "amocrm.com", "kommo.com"];

/// How the consent window hands the code back (§1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentMode {
    /// The window closes; the Redirect URI opens in the main window.
    Popup,
    /// The redirect happens inside the popup, whose page `postMessage`s the opener.
    PostMessage,
}

impl ConsentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentMode::Popup => "popup",
            ConsentMode::PostMessage => "post_message",
        }
    }
}

/// Where an account's REST API and token endpoint live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountHosts {
    /// Production: `https://{referer}` for a referer under amocrm.ru, amocrm.com or kommo.com.
    Amocrm,
    /// Tests and the demo: the template with `{subdomain}` replaced by the referer's first label
    /// (a template without the marker sends every account to the same base URL).
    Template(String),
}

impl AccountHosts {
    /// The base URL (no trailing slash) for the account the redirect's `referer` names, e.g.
    /// `acme.amocrm.ru` → `https://acme.amocrm.ru`. Anything that is not an account host is
    /// refused: the referer comes from the browser.
    pub fn base_url_for(&self, referer: &str) -> Result<String, CrmError> {
        let host = referer.trim().to_ascii_lowercase();
        let host = host
            .strip_prefix("https://")
            .unwrap_or(&host)
            .trim_end_matches('/');
        let bad = || CrmError::permanent(format!("not an amoCRM account host: {referer:?}"));
        let (subdomain, domain) = host.split_once('.').ok_or_else(bad)?;
        let label_ok = !subdomain.is_empty()
            && subdomain.len() <= 63
            && subdomain != "www"
            && !subdomain.starts_with('-')
            && subdomain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !label_ok {
            return Err(bad());
        }
        match self {
            AccountHosts::Amocrm if ACCOUNT_DOMAINS.contains(&domain) => {
                Ok(format!("https://{host}"))
            }
            AccountHosts::Amocrm => Err(bad()),
            AccountHosts::Template(t) => Ok(t
                .replace("{subdomain}", subdomain)
                .trim_end_matches('/')
                .to_owned()),
        }
    }
}

/// What amoCRM appended to the Redirect URI (§1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callback {
    Approved {
        code: String,
        /// The account host (`acme.amocrm.ru`): give it to `AccountHosts::base_url_for`.
        referer: String,
        state: Option<String>,
        /// 1 = amocrm.ru, 2 = amocrm.com / kommo.com.
        platform: Option<u8>,
        from_widget: bool,
    },
    /// The user refused (`error=access_denied`).
    Denied { state: Option<String> },
}

impl fmt::Display for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Callback::Approved { referer, .. } => write!(f, "approved for {referer}"),
            Callback::Denied { .. } => f.write_str("denied"),
        }
    }
}

/// Parses the redirect's query string (without the leading `?`).
pub fn parse_callback(query: &str) -> Result<Callback, HookError> {
    let mut code = None;
    let mut referer = None;
    let mut state = None;
    let mut platform = None;
    let mut error = None;
    let mut from_widget = false;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "code" => code = Some(v.into_owned()),
            "referer" => referer = Some(v.into_owned()),
            "state" => state = Some(v.into_owned()),
            "platform" => platform = v.parse().ok(),
            "error" => error = Some(v.into_owned()),
            "from_widget" => from_widget = true,
            _ => {}
        }
    }
    if let Some(e) = error {
        return if e == "access_denied" {
            Ok(Callback::Denied { state })
        } else {
            Err(HookError::Malformed(format!("error={e}")))
        };
    }
    match (code, referer) {
        (Some(code), Some(referer)) if !code.is_empty() && !referer.is_empty() => {
            Ok(Callback::Approved {
                code,
                referer,
                state,
                platform,
                from_widget,
            })
        }
        _ => Err(HookError::Malformed("code and referer are required".into())),
    }
}

/// Our integration's OAuth credentials. `Debug` never shows the secret.
#[derive(Clone)]
pub struct OAuthApp {
    http: reqwest::Client,
    client_id: String,
    client_secret: String,
    /// Exactly as configured in the integration (the token endpoint compares it).
    redirect_uri: String,
    consent_url: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .field("consent_url", &self.consent_url)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: i64,
}

/// §1.6: the account's current host.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AccountDomain {
    pub id: CrmId,
    pub subdomain: String,
    /// `acme.amocrm.ru`: a referer for `AccountHosts::base_url_for`.
    pub domain: String,
    #[serde(default)]
    pub top_level_domain: Option<String>,
}

/// A verified "integration disabled" hook (§1.7): stop calling this account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisabledHook {
    pub account_id: CrmId,
}

/// Who signed in with amoCRM (§1.8). Key tenants by `account_id`: the subdomain can change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedInUser {
    pub account_id: CrmId,
    pub account_name: String,
    pub subdomain: String,
    pub user_id: CrmId,
    /// `None` when the token's user is not an admin (`/users/{id}` answers 403).
    pub name: Option<String>,
    pub email: Option<String>,
    pub lang: Option<String>,
    pub is_admin: Option<bool>,
}

impl OAuthApp {
    /// `consent_url` is `CONSENT_URL_RU` in production, the fake's page in tests.
    pub fn new(
        http: reqwest::Client,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        consent_url: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        OAuthApp {
            http,
            client_id: client_id.trim().to_owned(),
            client_secret: client_secret.trim().to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            consent_url: consent_url.to_owned(),
            clock,
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The consent page URL (§1.2) with our client id, an opaque `state` (CSRF) and the mode.
    pub fn consent_url(&self, state: &str, mode: ConsentMode) -> Result<String, CrmError> {
        let mut url = Url::parse(&self.consent_url)
            .map_err(|e| CrmError::permanent(format!("bad consent URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("state", state)
            .append_pair("mode", mode.as_str());
        Ok(url.into())
    }

    /// Exchanges an authorization code (20 min, single use) at the account's token endpoint
    /// (`account_base` from `AccountHosts::base_url_for(referer)`).
    pub async fn exchange_code(&self, account_base: &str, code: &str) -> Result<Tokens, CrmError> {
        self.token_request(
            account_base,
            json!({
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
            }),
        )
        .await
    }

    /// Trades a refresh token for a new pair. Refresh tokens are single use (§1.4): the old one
    /// is dead as soon as this succeeds, so the caller must store the returned pair atomically
    /// and never refresh the same token twice (hold the account's lease). A 400/401 means the
    /// refresh token is spent or revoked: `Unauthorized`, re-authorization is needed.
    pub async fn refresh(
        &self,
        account_base: &str,
        refresh_token: &str,
    ) -> Result<Tokens, CrmError> {
        let r = self
            .token_request(
                account_base,
                json!({
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "redirect_uri": self.redirect_uri,
                }),
            )
            .await;
        match r {
            Err(CrmError::Permanent { message, .. }) => Err(CrmError::Unauthorized(format!(
                "the refresh token was refused ({message}): reconnect amoCRM"
            ))),
            other => other,
        }
    }

    async fn token_request(
        &self,
        account_base: &str,
        body: serde_json::Value,
    ) -> Result<Tokens, CrmError> {
        let url = format!("{}/oauth2/access_token", account_base.trim_end_matches('/'));
        let resp = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| transport_error("oauth2/access_token", e))?;
        let status = resp.status().as_u16();
        let retry_after = super::api::retry_after(resp.headers());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error("oauth2/access_token", e))?;
        if !(200..300).contains(&status) {
            // The code or the refresh token is refused with 400 (§1.3), which for a code is
            // final; 401 here is about the client credentials, not an access token.
            let err = classify(status, &bytes, retry_after);
            return Err(match err {
                CrmError::Unauthorized(m) => CrmError::permanent(m),
                other => other,
            });
        }
        let t: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| {
            CrmError::permanent(format!("oauth2/access_token: unexpected answer: {e}"))
        })?;
        Ok(Tokens {
            access: t.access_token,
            // Long-lived tokens come without one (§1.1).
            refresh: t.refresh_token.unwrap_or_default(),
            expires_at: self.clock.now().timestamp() + t.expires_in,
        })
    }

    /// §1.6: the account's current subdomain, asked of the JWT's `api_domain` host (as a base
    /// URL) with the refresh token. Use it when the account host stops answering.
    pub async fn current_domain(
        &self,
        api_base: &str,
        refresh_token: &str,
    ) -> Result<AccountDomain, CrmError> {
        let url = format!(
            "{}/oauth2/account/current/subdomain",
            api_base.trim_end_matches('/')
        );
        let resp = self
            .http
            .get(url)
            .header("X-Refresh-Token", refresh_token)
            .send()
            .await
            .map_err(|e| transport_error("oauth2/account/current/subdomain", e))?;
        let status = resp.status().as_u16();
        let retry_after = super::api::retry_after(resp.headers());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error("oauth2/account/current/subdomain", e))?;
        if !(200..300).contains(&status) {
            return Err(classify(status, &bytes, retry_after));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| CrmError::permanent(format!("account subdomain: unexpected answer: {e}")))
    }

    /// Verifies the "integration disabled" hook (§1.7), given its query string:
    /// `signature == hex(HMAC-SHA256(client_secret, "{client_uuid}|{account_id}"))` and
    /// `client_uuid` is ours.
    pub fn verify_disabled_hook(&self, query: &str) -> Result<DisabledHook, HookError> {
        let mut account_id = None;
        let mut client_uuid = None;
        let mut signature = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "account_id" => account_id = Some(v.into_owned()),
                "client_uuid" => client_uuid = Some(v.into_owned()),
                "signature" => signature = Some(v.into_owned()),
                _ => {}
            }
        }
        let (Some(account_id), Some(client_uuid), Some(signature)) =
            (account_id, client_uuid, signature)
        else {
            return Err(HookError::Malformed(
                "account_id, client_uuid and signature are required".into(),
            ));
        };
        let id: CrmId = account_id
            .parse()
            .map_err(|_| HookError::Malformed("account_id is not a number".into()))?;
        let sig = hex::decode(signature.trim()).map_err(|_| HookError::BadSignature)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.client_secret.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(format!("{client_uuid}|{account_id}").as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| HookError::BadSignature)?;
        if !client_uuid.eq_ignore_ascii_case(&self.client_id) {
            return Err(HookError::BadSignature);
        }
        Ok(DisabledHook { account_id: id })
    }
}

/// §1.8: who owns a fresh token. The user's name and email need admin rights; for anyone else
/// the account and the user id are all amoCRM tells.
pub async fn identify(api: &AmoCrm) -> Result<SignedInUser, CrmError> {
    let account = crate::Crm::account(api).await?;
    let user = match api.user(account.current_user_id).await {
        Ok(u) => Some(u),
        Err(CrmError::Permanent { .. }) => None,
        Err(e) => return Err(e),
    };
    Ok(SignedInUser {
        account_id: account.id,
        account_name: account.name,
        subdomain: account.subdomain,
        user_id: account.current_user_id,
        name: user.as_ref().map(|u| u.name.clone()),
        email: user.as_ref().and_then(|u| u.email.clone()),
        lang: user.as_ref().and_then(|u| u.lang.clone()),
        is_admin: user.as_ref().map(|u| u.is_admin),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SystemClock;

    const CLIENT_ID: &str = "0b0832f6-d123-4123-9123-e73f236833c0";

    fn app() -> OAuthApp {
        OAuthApp::new(
            reqwest::Client::new(),
            CLIENT_ID,
            "client-secret",
            "https://chatter.example/amocrm/callback",
            CONSENT_URL_RU,
            Arc::new(SystemClock),
        )
    }

    #[test]
    fn consent_url_carries_client_state_and_mode() {
        let url = app()
            .consent_url("st/é 1", ConsentMode::PostMessage)
            .expect("valid");
        assert_eq!(
            url,
            format!("https://www.amocrm.ru/oauth?client_id={CLIENT_ID}&state=st%2F%C3%A9+1&mode=post_message")
        );
        let url = app().consent_url("s", ConsentMode::Popup).expect("valid");
        assert!(url.ends_with("state=s&mode=popup"), "{url}");
    }

    #[test]
    fn referer_becomes_the_account_host_only_for_amocrm_domains() {
        let h = AccountHosts::Amocrm;
        assert_eq!(
            h.base_url_for("acme.amocrm.ru").expect("ok"),
            "https://acme.amocrm.ru"
        );
        assert_eq!(
            h.base_url_for("Acme.Kommo.com").expect("ok"),
            "https://acme.kommo.com"
        );
        for bad in [
            "evil.example.com",
            "acme.amocrm.ru.evil.com",
            "acme.amocrm.ru/../x",
            "www.amocrm.ru",
            "a b.amocrm.ru",
            "amocrm.ru",
            "acme.amocrm.ru:8080",
            "",
        ] {
            assert!(h.base_url_for(bad).is_err(), "{bad} accepted");
        }
        let t = AccountHosts::Template("http://127.0.0.1:9000/amo/{subdomain}/".into());
        assert_eq!(
            t.base_url_for("acme.amocrm.ru").expect("ok"),
            "http://127.0.0.1:9000/amo/acme"
        );
        let fixed = AccountHosts::Template("http://127.0.0.1:9000".into());
        assert_eq!(
            fixed.base_url_for("acme.amocrm.ru").expect("ok"),
            "http://127.0.0.1:9000"
        );
    }

    #[test]
    fn callback_parses_approval_and_denial() {
        let c =
            parse_callback("code=def502&referer=acme.amocrm.ru&state=xyz&platform=1").expect("ok");
        assert_eq!(
            c,
            Callback::Approved {
                code: "def502".into(),
                referer: "acme.amocrm.ru".into(),
                state: Some("xyz".into()),
                platform: Some(1),
                from_widget: false,
            }
        );
        assert_eq!(
            parse_callback("error=access_denied&state=xyz").expect("ok"),
            Callback::Denied {
                state: Some("xyz".into())
            }
        );
        assert!(parse_callback("state=xyz").is_err());
    }

    #[test]
    fn disabled_hook_verifies_the_spec_vector() {
        // §1.7: HMAC-SHA256("client-secret", "0b08…33c0|12345678").
        let sig = "87ea6a59e475d7a45d24bbe17566da706baa3d6919d7bdf5d4d9d5edc4ed4d38";
        let q = format!("account_id=12345678&client_uuid={CLIENT_ID}&signature={sig}");
        assert_eq!(
            app().verify_disabled_hook(&q),
            Ok(DisabledHook {
                account_id: 12345678
            })
        );

        let tampered = format!("account_id=12345679&client_uuid={CLIENT_ID}&signature={sig}");
        assert_eq!(
            app().verify_disabled_hook(&tampered),
            Err(HookError::BadSignature)
        );
        let not_hex = format!("account_id=12345678&client_uuid={CLIENT_ID}&signature=zz");
        assert_eq!(
            app().verify_disabled_hook(&not_hex),
            Err(HookError::BadSignature)
        );
        assert!(matches!(
            app().verify_disabled_hook("account_id=1"),
            Err(HookError::Malformed(_))
        ));
    }

    #[test]
    fn debug_hides_the_client_secret() {
        let s = format!("{:?}", app());
        assert!(!s.contains("client-secret"), "{s}");
    }
}
