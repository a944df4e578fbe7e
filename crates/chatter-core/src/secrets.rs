//! Secrets at rest: XChaCha20-Poly1305 under a master key from configuration, or generated
//! once into `<data-dir>/master.key` (mode 0600). Ciphertexts are `v1:<base64(nonce|ct)>`.

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use std::path::Path;

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the master key must be 64 hex characters (32 bytes); generate one with `openssl rand -hex 32`")]
    BadKey,
    #[error("cannot read or write the master key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("a stored secret cannot be decrypted: wrong master key or damaged data")]
    Decrypt,
}

pub struct Secrets {
    cipher: XChaCha20Poly1305,
    /// The key of signed links (`media_links`): derived from the master key, so links made by
    /// one node open on every node, and a link key that leaked reveals nothing of the master.
    link_key: [u8; 32],
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(***)")
    }
}

impl Secrets {
    /// From a 64-hex-character key.
    pub fn from_hex(key: &str) -> Result<Self, SecretsError> {
        let bytes = hex::decode(key.trim()).map_err(|_| SecretsError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretsError::BadKey)?;
        Ok(Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
            link_key: derive(&key, b"chatter/signed-links/v1"),
        })
    }

    /// The configured key, else `<data_dir>/master.key`, created (0600) when missing.
    /// Returns whether a new key was generated, so the caller can say so.
    pub fn load_or_create(
        configured: Option<&Secret>,
        data_dir: &Path,
    ) -> Result<(Self, bool), SecretsError> {
        if let Some(k) = configured {
            return Ok((Self::from_hex(k.expose())?, false));
        }
        let path = data_dir.join("master.key");
        let io = |source| SecretsError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok((Self::from_hex(&s)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                let hexkey = hex::encode(key);
                write_private(&path, hexkey.as_bytes()).map_err(io)?;
                Ok((Self::from_hex(&hexkey)?, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// HMAC-SHA256 of `message` under the signed-links key.
    pub fn link_mac(&self, message: &[u8]) -> [u8; 32] {
        derive(&self.link_key, message)
    }

    /// Whether `mac` is `link_mac(message)`, compared in constant time.
    pub fn link_mac_matches(&self, message: &[u8], mac: &[u8]) -> bool {
        use hmac::Mac;
        let Ok(mut m) = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.link_key)
        else {
            return false;
        };
        m.update(message);
        m.verify_slice(mac).is_ok()
    }

    pub fn encrypt(&self, plain: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let ct = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plain.as_bytes())
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("v1:{}", B64.encode(out))
    }

    pub fn decrypt(&self, stored: &str) -> Result<Secret, SecretsError> {
        let b = stored.strip_prefix("v1:").ok_or(SecretsError::Decrypt)?;
        let raw = B64.decode(b).map_err(|_| SecretsError::Decrypt)?;
        if raw.len() < 24 + 16 {
            return Err(SecretsError::Decrypt);
        }
        let (nonce, ct) = raw.split_at(24);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| SecretsError::Decrypt)?;
        String::from_utf8(plain)
            .map(Secret)
            .map_err(|_| SecretsError::Decrypt)
    }
}

/// HMAC-SHA256 of `message` keyed by `key` (a key derivation when `message` is a label).
fn derive(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    // HMAC takes a key of any length.
    let Ok(mut m) = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(key) else {
        return [0; 32];
    };
    m.update(message);
    m.finalize().into_bytes().into()
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_key_file_is_private() {
        let dir = std::env::temp_dir().join(format!("chatter-secrets-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let (s, created) = Secrets::load_or_create(None, &dir).expect("create");
        assert!(created);
        let ct = s.encrypt("bot-token-123");
        assert!(!ct.contains("bot-token-123"));
        assert_eq!(s.decrypt(&ct).expect("decrypt").expose(), "bot-token-123");
        let (again, created) = Secrets::load_or_create(None, &dir).expect("load");
        assert!(!created);
        assert_eq!(
            again.decrypt(&ct).expect("same key").expose(),
            "bot-token-123"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("master.key"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(format!("{:?}", Secret::new("x")), "Secret(***)");
        assert!(Secrets::from_hex("abc").is_err());
        // Signed links: the same on every node with the key, refused under another key.
        let mac = s.link_mac(b"media:1");
        assert!(again.link_mac_matches(b"media:1", &mac));
        assert!(!again.link_mac_matches(b"media:2", &mac));
        let other = Secrets::from_hex(&"11".repeat(32)).expect("key");
        assert!(!other.link_mac_matches(b"media:1", &mac));
        let _ = std::fs::remove_dir_all(dir);
    }
}
