//! Helpers for the production-setup tests (TLS, nginx, ACME): a test CA and the certificates
//! it signs, HTTPS clients that trust it and resolve `chatter.test` to loopback, a company
//! signed up with a Telegram bot (the fake) over any base URL, and a live stream reader.

use chatter_fakes::{CustomerMessage, FakeTelegram};
use chatter_testkit::Session;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub(crate) const HOST: &str = "chatter.test";
pub(crate) const PW: &str = "correct horse battery";

/// A test certificate authority.
pub(crate) struct Pki {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A certificate signed by the test CA: PEM chain, PEM key, and its DER (to compare with
/// what a server presents).
pub(crate) struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    /// The DER SubjectPublicKeyInfo (Chromium trusts a key by its SHA-256).
    pub spki: Vec<u8>,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Chatter test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        Pki {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    pub(crate) fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub(crate) fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, HOST);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &*self.issuer).expect("sign");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            spki: rcgen::PublicKeyData::subject_public_key_info(&key),
        }
    }
}

/// Writes `text` to `path` the way deployment tools do: a temporary file renamed over it.
pub(crate) fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// An HTTPS client that trusts `ca_pem`, reaches `chatter.test:<port>` at `addr`, keeps
/// cookies, does not follow redirects, and records the server's certificate.
pub(crate) fn https_client(ca_pem: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .resolve(HOST, addr)
        .tls_info(true)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// The DER of the certificate the server presented for `r`.
pub(crate) fn served_der(r: &reqwest::Response) -> Vec<u8> {
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .expect("a TLS answer with the server's certificate")
        .to_vec()
}

/// Signs up at `s.base` and connects a bot of `telegram` through the Sources form; returns
/// the bot's token.
pub(crate) async fn company_with_bot(s: &Session, telegram: &FakeTelegram) -> String {
    let r = s
        .post_from(
            "/sign-up",
            "/sign-up",
            &[
                ("company_name", "Ромашка"),
                ("name", "Анна"),
                ("email", "anna@romashka.test"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "signed up");
    let token = telegram.create_bot("romashka_bot", "Ромашка");
    let r = s
        .post_from(
            "/app/sources/new",
            "/app/sources",
            &[("kind", "1"), ("token", &token), ("name", "")],
        )
        .await;
    assert_eq!(r.status(), 303, "the bot is connected");
    token
}

/// A message from a customer.
pub(crate) fn customer(id: i64, text: &str) -> CustomerMessage {
    CustomerMessage::text(id, "Мария", text)
}

/// Reads a live stream until `needle` has arrived, or fails after `within`.
pub(crate) async fn stream_until(stream: &mut reqwest::Response, needle: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = String::new();
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, stream.chunk()).await {
            Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
            Ok(Ok(None)) => panic!("the live stream ended; it had sent:\n{seen}"),
            Ok(Err(e)) => panic!("the live stream failed ({e}); it had sent:\n{seen}"),
            Err(_) => panic!("no {needle:?} on the live stream within {within:?}:\n{seen}"),
        }
    }
}

/// Polls `url` with `client` until it answers 200.
pub(crate) async fn wait_ok(client: &reqwest::Client, url: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} did not answer 200 within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
