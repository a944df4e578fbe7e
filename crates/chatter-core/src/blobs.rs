//! The blob store for files customers send: content-addressed files under
//! `<data-dir>/blobs/ab/cdef…` (SHA-256), written atomically; and what a file really is
//! (`raster_type`), read from its first bytes rather than from what the provider said.

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

/// The image type of `bytes` when they are a PNG, JPEG, GIF or WebP picture, by their magic
/// bytes; `None` for anything else (SVG, HTML, PDF, …), whatever the provider called it. Only
/// these are ever shown inline.
pub fn raster_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The picture type of `bytes` by their magic bytes: what `raster_type` knows, and besides a
/// BMP (`BM`, a zero reserved field and a known header size) or a HEIC/HEIF picture (an ISO
/// box `ftyp` whose major brand is `heic`, `heix`, `heim`, `heis` or `mif1`). These two are
/// never shown inline (browsers do not all show them); they are what a provider that takes
/// only pictures may take beyond the common ones (Avito, §4.2). `None` for anything else,
/// whatever its name or declared type says.
pub fn picture_type(bytes: &[u8]) -> Option<&'static str> {
    if let Some(t) = raster_type(bytes) {
        return Some(t);
    }
    let u32_at = |i: usize| {
        bytes
            .get(i..i + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
    };
    let bmp = bytes.starts_with(b"BM")
        && u32_at(6) == Some(0)
        && matches!(u32_at(14), Some(12 | 40 | 52 | 56 | 64 | 108 | 124));
    if bmp {
        return Some("image/bmp");
    }
    let heic = bytes.get(4..8) == Some(b"ftyp")
        && matches!(
            bytes.get(8..12),
            Some(b"heic" | b"heix" | b"heim" | b"heis" | b"mif1")
        );
    heic.then_some("image/heic")
}

#[cfg(test)]
mod tests {
    use super::{picture_type, raster_type};

    #[test]
    fn bmp_and_heic_are_pictures_by_their_bytes_only() {
        let mut bmp = b"BM\x46\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0".to_vec();
        bmp.extend_from_slice(&[0; 16]);
        assert_eq!(picture_type(&bmp), Some("image/bmp"));
        assert_eq!(raster_type(&bmp), None, "never shown inline");
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        assert_eq!(picture_type(heic), Some("image/heic"));
        assert_eq!(
            picture_type(b"\0\0\0\x18ftypmif1\0\0\0\0"),
            Some("image/heic")
        );
        assert_eq!(picture_type(b"\x89PNG\r\n\x1a\n\0"), Some("image/png"));
        for other in [
            &b"BMW price list, 2026"[..],
            b"BM\x46\0\0\0\x01\0\0\0\x36\0\0\0\x28\0\0\0",
            b"\0\0\0\x18ftypisom\0\0\0\0",
            b"\0\0\0\x18ftypavif\0\0\0\0",
            b"%PDF-1.4",
            b"",
        ] {
            assert_eq!(picture_type(other), None, "{other:?}");
        }
    }

    #[test]
    fn only_real_raster_images_are_recognised() {
        assert_eq!(
            raster_type(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some("image/png")
        );
        assert_eq!(
            raster_type(&[0xff, 0xd8, 0xff, 0xe0, 0, 0x10]),
            Some("image/jpeg")
        );
        assert_eq!(raster_type(b"GIF89a\x01\0\x01\0"), Some("image/gif"));
        assert_eq!(raster_type(b"RIFF\x24\0\0\0WEBPVP8 "), Some("image/webp"));
        for other in [
            &b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"[..],
            b"<html><script>alert(1)</script></html>",
            b"%PDF-1.4",
            b"RIFF\x24\0\0\0WAVEfmt ",
            b"",
            b"\x89PN",
        ] {
            assert_eq!(raster_type(other), None, "{other:?}");
        }
    }
}
