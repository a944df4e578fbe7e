//! The certificate a node serves now: one slot every TLS handshake reads, replaced whole when
//! a reload or a renewal brings a new certificate, so connections already open keep theirs and
//! new ones get the new one. It also keeps what the health page shows: the current
//! certificate's facts and the last problem (a bad file, a refused order) with its time.

use crate::cert::LoadedCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::sync::{Arc, RwLock};

/// Where this node's certificate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `tls.cert` / `tls.key`, reloaded when they change.
    Files,
    /// `tls.acme`: ordered and renewed, shared through the database.
    Acme,
}

/// What the health page shows about TLS on this node.
#[derive(Clone, Debug)]
pub struct Status {
    pub source: Source,
    pub current: Option<CertFacts>,
    /// The last failure (reload or order), Unix ms and message; cleared by the next success.
    pub problem: Option<(i64, String)>,
    /// When the current certificate was put in place, Unix ms.
    pub since: Option<i64>,
}

/// A served certificate's facts, without the key.
#[derive(Clone, Debug)]
pub struct CertFacts {
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub serial: String,
    pub issuer: String,
}

impl From<&LoadedCert> for CertFacts {
    fn from(c: &LoadedCert) -> Self {
        CertFacts {
            names: c.names.clone(),
            not_before: c.not_before,
            not_after: c.not_after,
            serial: c.serial.clone(),
            issuer: c.issuer.clone(),
        }
    }
}

/// The slot rustls asks on every handshake.
#[derive(Debug)]
pub struct CertSlot {
    key: RwLock<Option<Arc<CertifiedKey>>>,
    status: RwLock<Status>,
}

impl CertSlot {
    pub fn new(source: Source) -> Arc<CertSlot> {
        Arc::new(CertSlot {
            key: RwLock::new(None),
            status: RwLock::new(Status {
                source,
                current: None,
                problem: None,
                since: None,
            }),
        })
    }

    /// Serves `cert` from the next handshake on; clears the recorded problem.
    pub fn set(&self, cert: &LoadedCert, now_ms: i64) {
        if let Ok(mut k) = self.key.write() {
            *k = Some(cert.key.clone());
        }
        if let Ok(mut s) = self.status.write() {
            s.current = Some(cert.into());
            s.problem = None;
            s.since = Some(now_ms);
        }
    }

    /// Records a failure; the certificate already served stays.
    pub fn problem(&self, message: String, now_ms: i64) {
        if let Ok(mut s) = self.status.write() {
            s.problem = Some((now_ms, message));
        }
    }

    pub fn status(&self) -> Option<Status> {
        self.status.read().ok().map(|s| s.clone())
    }

    /// The serial of the certificate served now.
    pub fn serial(&self) -> Option<String> {
        self.status().and_then(|s| s.current).map(|c| c.serial)
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No certificate yet (ACME has not delivered one): the handshake fails, which is all
        // a client can be told before there is something to present.
        self.key.read().ok().and_then(|k| k.clone())
    }
}

/// The rustls server configuration over `slot`: TLS 1.2 and 1.3 with ring, HTTP/2 and
/// HTTP/1.1 offered by ALPN.
pub fn server_config(slot: Arc<CertSlot>) -> Result<Arc<ServerConfig>, crate::TlsError> {
    let mut cfg =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| crate::TlsError::Invalid(format!("TLS setup: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(slot);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
