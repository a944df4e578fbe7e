//! The blob store for files customers send: content-addressed files under
//! `<data-dir>/blobs/ab/cdef…` (SHA-256), written atomically.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("blobs")
}

fn path_of(data_dir: &Path, hash: &str) -> Option<PathBuf> {
    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(dir(data_dir).join(&hash[..2]).join(&hash[2..]))
}

/// Stores `bytes`; returns their hash (the blob's name).
pub async fn put(data_dir: &Path, bytes: &[u8]) -> std::io::Result<String> {
    let hash = hex::encode(Sha256::digest(bytes));
    let path = path_of(data_dir, &hash).ok_or_else(|| std::io::Error::other("bad hash"))?;
    if tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Ok(hash);
    }
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, &path).await?;
    Ok(hash)
}

pub async fn get(data_dir: &Path, hash: &str) -> Option<Vec<u8>> {
    tokio::fs::read(path_of(data_dir, hash)?).await.ok()
}
