//! TLS for `chatter serve`: the certificate a node presents, from PEM files (`tls.cert`,
//! `tls.key`, reloaded when they change) or from an ACME CA (`tls.acme`, ordered and renewed
//! under a lease and kept encrypted in the database so every node serves the same one), and
//! the rustls configuration whose resolver hands it to every handshake.

pub mod acme;
pub mod cert;
pub mod files;
pub mod slot;

pub use cert::LoadedCert;
pub use files::CertFiles;
pub use slot::{server_config, CertSlot, Source, Status};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key that cannot be served; the message names the file and the fix.
    #[error("{0}")]
    Invalid(String),
}

/// Unix milliseconds as an RFC 3339 UTC time, for logs and messages.
pub fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_as_utc() {
        assert_eq!(super::fmt_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::fmt_ms(1_709_210_096_000), "2024-02-29T12:34:56Z");
    }
}
