//! Requests to addresses a person typed (an API source's outgoing webhook URL, and any such URL
//! added later): the one guard against server-side request forgery.
//!
//! Chatter runs inside someone's network, next to cloud metadata services, databases and admin
//! panels that trust whoever can reach them. So a person's URL must lead to the public internet:
//! - at save time, `check_url` resolves the name and refuses it when any address it gives is
//!   not public (loopback, private, link-local with 169.254.169.254, CGNAT, ULA, multicast,
//!   documentation ranges, IPv4 hidden in IPv6, …), with a form error saying why;
//! - at connect time, the `outbound` client resolves every name through `GuardedResolver`,
//!   which drops non-public addresses, so a name that resolves (or later rebinds) to a private
//!   address is refused too; a URL with a literal IP is checked by `check_literal` before the
//!   request; no redirect is followed and no proxy is used (both would bypass the check).
//!
//! `allow_private_targets` (instance configuration, off by default) turns the guard off for
//! tests, the demo and on-premise installs whose receivers live on the private network.
//! URLs the operator writes in the configuration file are not guarded: they use `Core::http`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why a URL a person typed may not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not an http(s) URL with a host")]
    Invalid,
    #[error("the host {0} cannot be resolved")]
    Unresolvable(String),
    #[error(
        "refused: {host} is a non-public address ({ip}); only internet addresses may be called"
    )]
    NotPublic { host: String, ip: IpAddr },
}

impl Refusal {
    /// The translation key of the form error.
    pub fn key(&self) -> &'static str {
        match self {
            Refusal::Invalid => "err.url_invalid",
            Refusal::Unresolvable(_) => "err.url_unresolvable",
            Refusal::NotPublic { .. } => "err.url_not_public",
        }
    }
}

/// Whether `ip` is an ordinary internet address (not loopback, private, link-local, shared,
/// reserved, multicast, documentation, or one of those wrapped in IPv6).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // "this network", incl. 0.0.0.0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96) carry an IPv4 address.
    let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0; 6] {
        // ::, ::1 and ::a.b.c.d
        return !ip.is_unspecified() && !ip.is_loopback() && is_public_v4(embedded);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return is_public_v4(embedded);
    }
    if s[0] == 0x2002 {
        // 6to4 carries the IPv4 address in the next 32 bits.
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return is_public_v4(v4);
    }
    let refused = (s[0] & 0xfe00) == 0xfc00 // ULA fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo: the real address is hidden
        || (s[0] == 0x0100 && s[1..4] == [0; 3]); // discard-only
    !refused
}

/// Parses a person's URL: http or https with a host.
pub fn parse(url: &str) -> Result<reqwest::Url, Refusal> {
    let u = reqwest::Url::parse(url.trim()).map_err(|_| Refusal::Invalid)?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(Refusal::Invalid);
    }
    Ok(u)
}

/// A URL whose host is an IP literal must be public (names are checked by the resolver).
pub fn check_literal(url: &reqwest::Url, allow_private: bool) -> Result<(), Refusal> {
    if allow_private {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err(Refusal::Invalid),
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(Refusal::NotPublic {
            host: ip.to_string(),
            ip,
        })
    }
}

/// The save-time check: a valid http(s) URL whose host resolves to public addresses only.
pub async fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, Refusal> {
    let u = parse(url)?;
    if allow_private {
        return Ok(u);
    }
    check_literal(&u, false)?;
    if let Some(url::Host::Domain(name)) = u.host() {
        let port = u.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| Refusal::Unresolvable(name.to_string()))?
            .collect();
        if addrs.is_empty() {
            return Err(Refusal::Unresolvable(name.to_string()));
        }
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(Refusal::NotPublic {
                host: name.to_string(),
                ip: bad.ip(),
            });
        }
    }
    Ok(u)
}

/// Resolves names like the system does, then drops every non-public address: a name with none
/// left fails to connect with a `Refusal` in the error's source chain.
#[derive(Clone, Copy, Debug)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Box::new(Refusal::Unresolvable(host.clone())))?
                .collect();
            let first = all.first().map(SocketAddr::ip);
            let kept: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| allow || is_public(a.ip()))
                .collect();
            match (kept.is_empty(), first) {
                (false, _) => Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs),
                (true, Some(ip)) => Err(Box::new(Refusal::NotPublic { host, ip }) as _),
                (true, None) => Err(Box::new(Refusal::Unresolvable(host)) as _),
            }
        })
    }
}

/// The HTTP client for person-typed URLs: guarded resolution, no redirects, no proxy.
pub fn client(allow_private: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// The guard's refusal inside a request error, if that is why it failed.
pub fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refusal>() {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().expect("an IP address"))
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.10",
            "198.51.100.1",
            "203.0.113.9",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:0a00:0001::1",
        ] {
            assert!(!public(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn internet_addresses_are_public() {
        for ip in [
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2a00:1450:4010:c05::64",
            "::ffff:8.8.8.8",
        ] {
            assert!(public(ip), "{ip} is on the internet");
        }
    }

    #[test]
    fn literal_urls_are_checked_without_resolving() {
        let u = parse("http://[::ffff:169.254.169.254]/latest").expect("URL");
        assert!(check_literal(&u, false).is_err());
        assert!(check_literal(&u, true).is_ok());
        let u = parse("https://8.8.8.8/hook").expect("URL");
        assert!(check_literal(&u, false).is_ok());
        assert_eq!(parse("ftp://example.com/"), Err(Refusal::Invalid));
    }
}
