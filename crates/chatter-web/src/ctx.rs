//! The request context, built once per request by the `context` middleware: who is signed
//! in (and in which company), the language, the CSRF token, the client's address. It also
//! turns handler errors into localized pages.

use crate::error::ErrorPage;
use crate::i18n::Lang;
use crate::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chatter_core::accounts::{self, SessionInfo};
use chatter_core::{Actor, ReqMeta};
use chatter_domain::Role;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const SESSION_COOKIE: &str = "chatter_session";
pub const CSRF_COOKIE: &str = "chatter_csrf";
pub const LANG_COOKIE: &str = "chatter_lang";

#[derive(Clone)]
pub struct Ctx {
    pub lang: Lang,
    /// The token forms must carry: the session's when signed in, else the CSRF cookie's.
    pub csrf: String,
    pub session: Option<SessionInfo>,
    pub session_token: Option<String>,
    pub meta: ReqMeta,
    pub secure: bool,
    /// The header's bell on a signed-in page: unread notifications and where the live
    /// stream starts.
    pub bell: Option<Bell>,
}

/// What the bell in the header shows and needs.
#[derive(Clone, Debug, Default)]
pub struct Bell {
    pub unread: u64,
    /// Where the page's live stream starts (`events::newest` when the page was made).
    pub last_event: chatter_core::events::Position,
    /// Browser notifications and a sound while the tab is hidden (the person opted in).
    pub browser: bool,
    /// The plan's banner, if one is due: (translation key, the percent or days it names).
    pub billing: Option<(&'static str, Option<i64>)>,
}

/// The bell of a signed-in person's page (pages only: not the live stream, files or posts).
async fn bell_for(st: &AppState, session: Option<&SessionInfo>, page: bool) -> Option<Bell> {
    if !page {
        return None;
    }
    let s = session?;
    let (company, _) = s.company.as_ref()?;
    let db = &st.core.read;
    let unread = chatter_core::notifications::unread_count(db, company.id.into(), s.user.id)
        .await
        .ok()?;
    let last_event = chatter_core::events::newest(db, company.id).await.ok()?;
    let browser = chatter_core::notifications::settings(db, company.id, s.user.id)
        .await
        .ok()?
        .browser;
    // A banner that cannot be worked out is left off rather than failing the page.
    let billing = chatter_core::billing::banner(&st.core, company.id)
        .await
        .ok()
        .flatten()
        .map(|(key, n)| match key {
            "billing.banner_trial_ends" | "billing.banner_80" => (key, Some(n)),
            _ => (key, None),
        });
    Some(Bell {
        unread,
        last_event,
        browser,
        billing,
    })
}

impl Ctx {
    /// The signed-in member acting in their current company.
    pub fn actor(&self) -> Result<Actor, crate::error::AppError> {
        let s = self
            .session
            .as_ref()
            .ok_or(crate::error::AppError::SignIn)?;
        let (company, role) = s
            .company
            .as_ref()
            .ok_or(crate::error::AppError::NoCompany)?;
        Ok(Actor {
            user_id: Some(s.user.id.into()),
            company_id: company.id.into(),
            role: *role,
            label: s.user.email.clone(),
            meta: self.meta.clone(),
        })
    }

    pub fn signed(&self) -> Result<&SessionInfo, crate::error::AppError> {
        self.session.as_ref().ok_or(crate::error::AppError::SignIn)
    }

    pub fn role(&self) -> Option<Role> {
        self.session
            .as_ref()
            .and_then(|s| s.company.as_ref().map(|c| c.1))
    }

    /// A `Set-Cookie` value for the session.
    pub fn session_cookie(&self, token: &str) -> String {
        cookie(SESSION_COOKIE, token, 30 * 24 * 3600, "Lax", self.secure)
    }

    pub fn clear_session_cookie(&self) -> String {
        cookie(SESSION_COOKIE, "", 0, "Lax", self.secure)
    }
}

pub fn cookie(name: &str, value: &str, max_age: i64, same_site: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}")
}

pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

fn lang_from(headers: &HeaderMap, session: Option<&SessionInfo>) -> Lang {
    if let Some(l) = read_cookie(headers, LANG_COOKIE) {
        return Lang::parse(&l);
    }
    if let Some(s) = session {
        return Lang::parse(&s.user.locale);
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim_start().starts_with("en") {
        Lang::En
    } else {
        Lang::Ru
    }
}

/// A block of addresses (`10.0.0.0/8`, `::1/128`, or one address), for `trusted_proxies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Loopback: a proxy on the same machine (the default list).
    pub fn loopback() -> Vec<Cidr> {
        vec![
            Cidr {
                addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            },
            Cidr {
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ]
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || {
            format!(
                "{s:?} is not an address block: write it as 10.0.0.0/8, fd00::/8 or one address"
            )
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// The client's address. Without `trust_proxy`, or when the direct peer is not one of the
/// trusted proxies, it is the peer. Else `X-Forwarded-For` is walked from the right (each
/// proxy appends the address it saw), skipping trusted proxies, and the first address that is
/// not one is the client; what lies left of it was written by the client and is ignored.
fn client_ip(req: &Request, trust_proxy: bool, trusted: &[Cidr]) -> String {
    let Some(peer) = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
    else {
        return "unknown".into();
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !trust_proxy || !is_trusted(peer) {
        return peer.to_string();
    }
    let hops: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>().map(|i| i.to_canonical()) else {
            // Not an address: nothing further left can be believed.
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client.to_string()
}

pub async fn context(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let headers = req.headers().clone();
    let session_token = read_cookie(&headers, SESSION_COOKIE);
    let session = match &session_token {
        Some(t) => match accounts::load_session(&st.core, t).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot load session");
                return crate::error::AppError::Core(e.into()).into_response();
            }
        },
        None => None,
    };
    let lang = lang_from(&headers, session.as_ref());
    let csrf_cookie = read_cookie(&headers, CSRF_COOKIE);
    let new_csrf = csrf_cookie.is_none().then(|| chatter_core::new_token().0);
    let csrf = match &session {
        Some(s) => s.session.csrf.clone(),
        None => csrf_cookie
            .clone()
            .or_else(|| new_csrf.clone())
            .unwrap_or_default(),
    };
    let meta = ReqMeta {
        ip: client_ip(&req, st.cfg.trust_proxy, &st.cfg.trusted_proxies),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    };
    let page = {
        let path = req.uri().path();
        req.method() == axum::http::Method::GET
            && (path == "/" || path.starts_with("/app"))
            && path != "/app/events"
            && !path.starts_with("/app/files/")
    };
    let bell = bell_for(&st, session.as_ref(), page).await;
    let ctx = Ctx {
        lang,
        csrf,
        session,
        session_token,
        meta,
        secure: st.cfg.secure_cookies,
        bell,
    };
    let path = req.uri().path().to_owned();
    req.extensions_mut().insert(ctx.clone());
    let mut resp = next.run(req).await;
    if let Some(page) = resp.extensions_mut().remove::<ErrorPage>() {
        let status = resp.status();
        let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
        let mut r = page.render(&ctx, status);
        if let Some(ra) = retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, ra);
        }
        resp = r;
    } else if let Some(r) = crate::error::instead_of_framework_text(&ctx, &path, &resp) {
        resp = r;
    }
    if let Some(t) = new_csrf {
        if let Ok(v) = HeaderValue::from_str(&cookie(
            CSRF_COOKIE,
            &t,
            365 * 24 * 3600,
            "Lax",
            st.cfg.secure_cookies,
        )) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::Cidr;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn address_blocks_parse_and_match() {
        let net: Cidr = "10.1.0.0/16".parse().expect("cidr");
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped IPv6");
        let one: Cidr = "203.0.113.7".parse().expect("one address");
        assert!(one.contains(ip("203.0.113.7")) && !one.contains(ip("203.0.113.8")));
        let v6: Cidr = "fd00::/8".parse().expect("v6");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("everything");
        assert!(all.contains(ip("8.8.8.8")));
        assert!(Cidr::loopback().iter().any(|c| c.contains(ip("::1"))));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0/8", "::/129"] {
            let e = bad.parse::<Cidr>().expect_err(bad);
            assert!(e.contains("10.0.0.0/8"), "the message shows the form: {e}");
        }
    }
}
