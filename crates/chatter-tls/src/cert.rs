//! One certificate with its key, read from PEM and checked before it is ever served: the chain
//! parses, the key parses, the key belongs to the first certificate. Each refusal says which of
//! the two files is wrong and what was expected, since it is read by a person fixing a config.

use crate::TlsError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

/// A certificate chain and key ready for rustls, with the facts people and renewal need.
#[derive(Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// The end-entity certificate's `notAfter`, Unix milliseconds.
    pub not_after: i64,
    /// Its `notBefore`, Unix milliseconds (renewal is a share of the lifetime for short ones).
    pub not_before: i64,
    /// Its DNS names (subjectAltName), for the health page and for matching the ACME domains.
    pub names: Vec<String>,
    /// Its serial number in hex, so a test or a person can tell two certificates apart.
    pub serial: String,
    /// The issuer's distinguished name, as text.
    pub issuer: String,
}

impl std::fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCert")
            .field("names", &self.names)
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Reads and checks a PEM certificate chain and its PEM private key. `cert_what` and
/// `key_what` name the sources in messages (`tls.cert /etc/chatter/cert.pem`).
pub fn from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_what: &str,
    key_what: &str,
) -> Result<LoadedCert, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("{cert_what}: not a PEM certificate ({e})")))?;
    if chain.is_empty() {
        return Err(TlsError::Invalid(format!(
            "{cert_what}: no certificate in it (expected a PEM block `-----BEGIN CERTIFICATE-----`)"
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        TlsError::Invalid(format!(
            "{key_what}: no private key in it (expected a PEM block `-----BEGIN PRIVATE KEY-----`, \
             `RSA PRIVATE KEY` or `EC PRIVATE KEY`): {e}"
        ))
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain.clone(), key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Invalid(format!(
            "{key_what} does not match {cert_what}: the key belongs to another certificate \
             (put the certificate and the key from the same issuance side by side)"
        )),
        other => TlsError::Invalid(format!("{key_what}: unusable private key ({other})")),
    })?;
    let facts = facts(&chain[0])
        .map_err(|e| TlsError::Invalid(format!("{cert_what}: unreadable certificate ({e})")))?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after: facts.not_after,
        not_before: facts.not_before,
        names: facts.names,
        serial: facts.serial,
        issuer: facts.issuer,
    })
}

/// Reads both files; a missing or unreadable file is named with the reason.
pub fn from_files(cert: &Path, key: &Path) -> Result<(LoadedCert, [Vec<u8>; 2]), TlsError> {
    let read = |what: &str, p: &Path| {
        std::fs::read(p)
            .map_err(|e| TlsError::Invalid(format!("{what} {}: cannot read it ({e})", p.display())))
    };
    let c = read("tls.cert", cert)?;
    let k = read("tls.key", key)?;
    let loaded = from_pem(
        &c,
        &k,
        &format!("tls.cert {}", cert.display()),
        &format!("tls.key {}", key.display()),
    )?;
    Ok((loaded, [c, k]))
}

struct Facts {
    not_after: i64,
    not_before: i64,
    names: Vec<String>,
    serial: String,
    issuer: String,
}

fn facts(der: &CertificateDer<'_>) -> Result<Facts, x509_cert::der::Error> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    let cert = x509_cert::Certificate::from_der(der.as_ref())?;
    let tbs = &cert.tbs_certificate;
    let ms = |t: x509_cert::time::Time| t.to_unix_duration().as_millis() as i64;
    let mut names = Vec::new();
    if let Some((_, san)) = tbs.get::<SubjectAltName>()? {
        for n in san.0 {
            match n {
                GeneralName::DnsName(d) => names.push(d.as_str().to_string()),
                GeneralName::IpAddress(ip) => {
                    let b = ip.as_bytes();
                    if let Ok(v4) = <[u8; 4]>::try_from(b) {
                        names.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(b) {
                        names.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Facts {
        not_after: ms(tbs.validity.not_after),
        not_before: ms(tbs.validity.not_before),
        names,
        serial: hex::encode(tbs.serial_number.as_bytes()),
        issuer: tbs.issuer.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_loads_with_its_names_and_expiry() {
        let (c, k) = pair("chatter.example.ru");
        let l = from_pem(c.as_bytes(), k.as_bytes(), "cert", "key").expect("loads");
        assert_eq!(l.names, vec!["chatter.example.ru".to_string()]);
        assert!(l.not_after > l.not_before);
        assert!(!l.serial.is_empty());
    }

    #[test]
    fn each_bad_input_names_the_file_and_the_fix() {
        let (c1, _) = pair("a.example");
        let (_, k2) = pair("b.example");
        let err = |c: &str, k: &str| {
            from_pem(
                c.as_bytes(),
                k.as_bytes(),
                "tls.cert c.pem",
                "tls.key k.pem",
            )
            .expect_err("refused")
            .to_string()
        };
        let e = err(&c1, &k2);
        assert!(
            e.contains("tls.key k.pem does not match tls.cert c.pem"),
            "{e}"
        );
        let e = err("hello", &k2);
        assert!(e.contains("tls.cert c.pem: no certificate"), "{e}");
        let e = err(&c1, "");
        assert!(e.contains("tls.key k.pem: no private key"), "{e}");
        let e = from_files(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
        )
        .expect_err("refused")
        .to_string();
        assert!(
            e.contains("tls.cert /nonexistent/c.pem: cannot read it"),
            "{e}"
        );
    }
}
