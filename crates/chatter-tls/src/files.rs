//! `tls.cert` and `tls.key`: read at start (a bad pair stops the start with its reason), then
//! looked at every couple of seconds; a changed pair that loads replaces the served one for new
//! connections, a changed pair that does not load is reported and the old one kept. A pair
//! caught half-written (the certificate replaced, the key not yet) is only reported if it is
//! still bad on the next look.

use crate::cert::{self, LoadedCert};
use crate::slot::CertSlot;
use crate::TlsError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the files are compared with what was loaded.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The certificate files of `tls.cert` / `tls.key`.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    /// Loads the pair into `slot`, or says why it cannot be served.
    pub fn load_into(&self, slot: &CertSlot, now_ms: i64) -> Result<Loaded, TlsError> {
        let (c, bytes) = cert::from_files(&self.cert, &self.key)?;
        slot.set(&c, now_ms);
        Ok(Loaded { cert: c, bytes })
    }

    /// Watches the files until `stop` turns true.
    pub async fn watch(
        self,
        slot: Arc<CertSlot>,
        mut loaded: Loaded,
        clock: Arc<dyn chatter_core::Clock>,
        mut stop: watch::Receiver<bool>,
    ) {
        // The bad contents last seen, and whether they were reported.
        let mut bad_seen: Option<([Vec<u8>; 2], bool)> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RELOAD_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = [std::fs::read(&self.cert), std::fs::read(&self.key)];
            let same =
                matches!(&now, [Ok(c), Ok(k)] if *c == loaded.bytes[0] && *k == loaded.bytes[1]);
            if same {
                bad_seen = None;
                continue;
            }
            match cert::from_files(&self.cert, &self.key) {
                Ok((c, bytes)) => {
                    slot.set(&c, clock.now_ms());
                    tracing::info!(
                        names = ?c.names,
                        serial = %c.serial,
                        not_after = %crate::fmt_ms(c.not_after),
                        "TLS certificate reloaded from tls.cert / tls.key; new connections get it"
                    );
                    loaded = Loaded { cert: c, bytes };
                    bad_seen = None;
                }
                Err(e) => {
                    let content = match now {
                        [Ok(c), Ok(k)] => [c, k],
                        _ => [Vec::new(), Vec::new()],
                    };
                    // Reported once per bad content, on its second look.
                    match &mut bad_seen {
                        Some((seen, reported)) if *seen == content => {
                            if *reported {
                                continue;
                            }
                            *reported = true;
                        }
                        _ => {
                            bad_seen = Some((content, false));
                            continue;
                        }
                    }
                    let msg = format!(
                        "{e}; still serving the previous certificate (serial {}, valid until {})",
                        loaded.cert.serial,
                        crate::fmt_ms(loaded.cert.not_after)
                    );
                    tracing::error!("cannot reload the TLS certificate: {msg}");
                    slot.problem(msg, clock.now_ms());
                }
            }
        }
    }
}

/// A loaded pair with the file contents it came from.
pub struct Loaded {
    pub cert: LoadedCert,
    bytes: [Vec<u8>; 2],
}
