//! The blob store for files customers send: content-addressed (the SHA-256 of the bytes, hex,
//! names a blob) and written once; and what a file really is (`raster_type`), read from its
//! first bytes rather than from what the provider said.
//!
//! Where blobs live is configuration (`blobs.store`): `local`, files under
//! `<data-dir>/blobs/ab/cdef…` written atomically (the default with SQLite); `postgres`, rows
//! of the `blobs` table (the default with PostgreSQL: every node of an installation reads what
//! any node stored); `s3`, objects `blobs/ab/cdef…` of a bucket of any S3-compatible store.
//! A shared store still reads the local directory when it lacks a blob, so files stored before
//! the switch keep working; `chatter blobs migrate` copies them over (`copy_local`).

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ObjectStore, PutPayload};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("blobs")
}

fn valid(hash: &str) -> bool {
    hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit())
}

fn path_of(data_dir: &Path, hash: &str) -> Option<PathBuf> {
    if !valid(hash) {
        return None;
    }
    Some(dir(data_dir).join(&hash[..2]).join(&hash[2..]))
}

/// Which store keeps blobs (`blobs.store`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Local,
    Postgres,
    S3,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Local => "local",
            StoreKind::Postgres => "postgres",
            StoreKind::S3 => "s3",
        }
    }
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(StoreKind::Local),
            "postgres" => Ok(StoreKind::Postgres),
            "s3" => Ok(StoreKind::S3),
            other => Err(format!(
                "{other:?} is not a blob store: choose local, postgres or s3"
            )),
        }
    }
}

/// An S3-compatible bucket (`blobs.s3`).
#[derive(Clone, Debug, Deserialize)]
pub struct S3Config {
    /// The server's address (`https://storage.yandexcloud.net`, `http://minio:9000`); unset:
    /// Amazon S3 of `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: crate::Secret,
    /// `endpoint/bucket/key` addresses (MinIO and most self-hosted servers); `false`:
    /// `bucket.endpoint/key` (virtual-hosted style).
    #[serde(default = "yes")]
    pub path_style: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn yes() -> bool {
    true
}

/// `blobs.*` of the configuration.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct BlobsConfig {
    /// Unset: `postgres` with a PostgreSQL database, else `local`.
    #[serde(default)]
    pub store: Option<StoreKind>,
    #[serde(default)]
    pub s3: Option<S3Config>,
}

impl BlobsConfig {
    /// The store used with a database of `backend`.
    pub fn effective(&self, postgres: bool) -> StoreKind {
        self.store.unwrap_or(if postgres {
            StoreKind::Postgres
        } else {
            StoreKind::Local
        })
    }
}

/// Why the configuration `cfg` cannot work with the store `kind`, found without the network.
pub fn config_problem(cfg: &BlobsConfig, kind: StoreKind) -> Option<String> {
    if kind != StoreKind::S3 {
        return None;
    }
    let s3 =
        match &cfg.s3 {
            Some(s3) => s3,
            None => return Some(
                "blobs.store = \"s3\" needs [blobs.s3]: endpoint, bucket, region, access_key_id \
                 and secret_access_key (the secret as CHATTER_BLOBS__S3__SECRET_ACCESS_KEY in the \
                 environment)"
                    .into(),
            ),
        };
    s3_store(s3).err()
}

/// Where blobs are written and read. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    backend: Backend,
    /// The data directory: the local store, and where a shared store looks for blobs stored
    /// before it was chosen.
    data_dir: PathBuf,
}

#[derive(Clone)]
enum Backend {
    Local,
    Database(DatabaseConnection),
    S3 {
        store: Arc<AmazonS3>,
        label: String,
    },
    /// A configuration that cannot work (`chatter serve` refuses it at start); every use
    /// fails with this reason.
    Unusable(String),
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl BlobStore {
    /// The data directory's store.
    pub fn local(data_dir: &Path) -> Self {
        Self {
            backend: Backend::Local,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The store of `kind`; `db` is the installation's database (the `postgres` store's).
    pub fn open(
        kind: StoreKind,
        cfg: &BlobsConfig,
        data_dir: &Path,
        db: &DatabaseConnection,
    ) -> Result<Self, String> {
        let backend = match kind {
            StoreKind::Local => Backend::Local,
            StoreKind::Postgres => Backend::Database(db.clone()),
            StoreKind::S3 => return Self::s3(cfg, data_dir),
        };
        Ok(Self {
            backend,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The configured store for a database of `db`; a configuration that cannot work gives a
    /// store whose every use fails with the reason (`chatter serve` refuses it before).
    pub fn configured(cfg: &BlobsConfig, data_dir: &Path, db: &DatabaseConnection) -> Self {
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        Self::open(cfg.effective(postgres), cfg, data_dir, db).unwrap_or_else(|e| Self {
            backend: Backend::Unusable(e),
            data_dir: data_dir.to_path_buf(),
        })
    }

    pub fn kind(&self) -> Option<StoreKind> {
        match &self.backend {
            Backend::Local => Some(StoreKind::Local),
            Backend::Database(_) => Some(StoreKind::Postgres),
            Backend::S3 { .. } => Some(StoreKind::S3),
            Backend::Unusable(_) => None,
        }
    }

    /// One line for logs and `chatter check-config` (no secrets).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Local => format!("local ({})", dir(&self.data_dir).display()),
            Backend::Database(_) => "postgres (the blobs table of the database)".into(),
            Backend::S3 { label, .. } => format!("s3 ({label})"),
            Backend::Unusable(e) => format!("unusable: {e}"),
        }
    }

    /// Whether the store answers (the bucket exists, the credentials are taken): lists the
    /// bucket's `blobs/` prefix, or asks for a blob. Writes nothing.
    pub async fn probe(&self) -> Result<(), String> {
        if let Backend::S3 { store, label } = &self.backend {
            let prefix = object_store::path::Path::from("blobs");
            return store
                .list_with_delimiter(Some(&prefix))
                .await
                .map(|_| ())
                .map_err(|e| s3_error(label, e).to_string());
        }
        self.has(&"0".repeat(64)).await.map(|_| ())
    }

    /// The `s3` store of `cfg` (whatever `blobs.store` says: `chatter blobs migrate --to s3`).
    pub fn s3(cfg: &BlobsConfig, data_dir: &Path) -> Result<Self, String> {
        let s3 = cfg.s3.as_ref().ok_or(
            "the s3 blob store needs [blobs.s3]: endpoint, bucket, region, access_key_id and \
             secret_access_key (CHATTER_BLOBS__S3__SECRET_ACCESS_KEY in the environment)",
        )?;
        let (store, label) = s3_store(s3)?;
        Ok(Self {
            backend: Backend::S3 {
                store: Arc::new(store),
                label,
            },
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// Stores `bytes` (once: a blob already there is left as it is); returns their hash.
    pub async fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let hash = hex::encode(Sha256::digest(bytes));
        match &self.backend {
            Backend::Local => put_file(&self.data_dir, &hash, bytes).await?,
            Backend::Database(db) => put_row(db, &hash, bytes)
                .await
                .map_err(|e| std::io::Error::other(format!("blob store (postgres): {e}")))?,
            Backend::S3 { store, label } => {
                let key = object_key(&hash);
                match store.head(&key).await {
                    Ok(_) => {}
                    Err(object_store::Error::NotFound { .. }) => {
                        store
                            .put(&key, PutPayload::from(bytes.to_vec()))
                            .await
                            .map_err(|e| s3_error(label, e))?;
                    }
                    Err(e) => return Err(s3_error(label, e)),
                }
            }
            Backend::Unusable(e) => {
                return Err(std::io::Error::other(format!("blob store: {e}")));
            }
        }
        Ok(hash)
    }

    /// The blob's bytes; `Ok(None)` when no store has it (nor the local directory); `Err` when
    /// the store cannot be asked.
    pub async fn fetch(&self, hash: &str) -> Result<Option<Vec<u8>>, String> {
        if !valid(hash) {
            return Ok(None);
        }
        let shared = match &self.backend {
            Backend::Local => None,
            Backend::Database(db) => get_row(db, hash)
                .await
                .map_err(|e| format!("blob store (postgres): {e}"))?,
            Backend::S3 { store, label } => match store.get(&object_key(hash)).await {
                Ok(r) => Some(
                    r.bytes()
                        .await
                        .map_err(|e| s3_error(label, e).to_string())?
                        .to_vec(),
                ),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(s3_error(label, e).to_string()),
            },
            Backend::Unusable(e) => return Err(format!("blob store: {e}")),
        };
        if shared.is_some() {
            return Ok(shared);
        }
        Ok(read_file(&self.data_dir, hash).await)
    }

    /// Whether the store itself (not the local fallback) has the blob.
    async fn has(&self, hash: &str) -> Result<bool, String> {
        match &self.backend {
            Backend::Local => Ok(path_of(&self.data_dir, hash).is_some_and(|p| p.exists())),
            Backend::Database(db) => {
                let sql = match db.get_database_backend() {
                    DbBackend::Postgres => "SELECT 1 AS one FROM blobs WHERE hash = $1",
                    _ => "SELECT 1 AS one FROM blobs WHERE hash = ?",
                };
                db.query_one(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    sql,
                    [hash.into()],
                ))
                .await
                .map(|r| r.is_some())
                .map_err(|e| format!("blob store (postgres): {e}"))
            }
            Backend::S3 { store, label } => match store.head(&object_key(hash)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(s3_error(label, e).to_string()),
            },
            Backend::Unusable(e) => Err(format!("blob store: {e}")),
        }
    }
}

/// What `copy_local` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Blobs written to the store.
    pub copied: usize,
    /// Blobs the store already had.
    pub present: usize,
    /// Files whose bytes do not hash to their name (damaged; left alone), by path.
    pub damaged: Vec<String>,
}

/// Copies every blob of the local directory `data_dir` into `to` (`chatter blobs migrate`).
/// Idempotent: blobs the store has are skipped; local files are left in place.
pub async fn copy_local(data_dir: &Path, to: &BlobStore) -> Result<CopyReport, String> {
    let mut report = CopyReport::default();
    let root = dir(data_dir);
    let Ok(mut outer) = tokio::fs::read_dir(&root).await else {
        return Ok(report);
    };
    while let Some(prefix) = outer.next_entry().await.map_err(|e| e.to_string())? {
        let p = prefix.file_name().to_string_lossy().to_string();
        if p.len() != 2 || !prefix.path().is_dir() {
            continue;
        }
        let mut inner = tokio::fs::read_dir(prefix.path())
            .await
            .map_err(|e| format!("{}: {e}", prefix.path().display()))?;
        while let Some(f) = inner.next_entry().await.map_err(|e| e.to_string())? {
            let hash = format!("{p}{}", f.file_name().to_string_lossy());
            // Half-written files (`….tmp-…`) and anything else that is no blob name.
            if !valid(&hash) {
                continue;
            }
            if to.has(&hash).await? {
                report.present += 1;
                continue;
            }
            let bytes = tokio::fs::read(f.path())
                .await
                .map_err(|e| format!("{}: {e}", f.path().display()))?;
            if hex::encode(Sha256::digest(&bytes)) != hash.to_ascii_lowercase() {
                report.damaged.push(f.path().display().to_string());
                continue;
            }
            to.put(&bytes).await.map_err(|e| e.to_string())?;
            report.copied += 1;
        }
    }
    Ok(report)
}

fn object_key(hash: &str) -> object_store::path::Path {
    object_store::path::Path::from(format!("blobs/{}/{}", &hash[..2], &hash[2..]))
}

fn s3_error(label: &str, e: object_store::Error) -> std::io::Error {
    std::io::Error::other(format!("blob store (s3 {label}): {e}"))
}

fn s3_store(c: &S3Config) -> Result<(AmazonS3, String), String> {
    if c.bucket.is_empty() {
        return Err("blobs.s3.bucket is empty: name the bucket blobs go to".into());
    }
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&c.bucket)
        .with_region(&c.region)
        .with_access_key_id(&c.access_key_id)
        .with_secret_access_key(c.secret_access_key.expose())
        .with_virtual_hosted_style_request(!c.path_style)
        .with_retry(object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(20),
            ..Default::default()
        })
        .with_client_options(
            object_store::ClientOptions::new()
                .with_connect_timeout(std::time::Duration::from_secs(10))
                .with_timeout(std::time::Duration::from_secs(90)),
        );
    let mut label = format!("bucket {}", c.bucket);
    if let Some(e) = c.endpoint.as_deref().filter(|e| !e.is_empty()) {
        let u = url::Url::parse(e)
            .map_err(|err| format!("blobs.s3.endpoint = {e:?} is not a URL ({err})"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!(
                "blobs.s3.endpoint = {e:?}: give the server's http:// or https:// address"
            ));
        }
        b = b
            .with_endpoint(e.trim_end_matches('/'))
            .with_allow_http(u.scheme() == "http");
        label = format!("bucket {} at {}", c.bucket, e.trim_end_matches('/'));
    }
    let store = b
        .build()
        .map_err(|e| format!("blobs.s3 cannot be used: {e}"))?;
    Ok((store, label))
}

async fn put_file(data_dir: &Path, hash: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = path_of(data_dir, hash).ok_or_else(|| std::io::Error::other("bad hash"))?;
    if tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, &path).await
}

async fn read_file(data_dir: &Path, hash: &str) -> Option<Vec<u8>> {
    tokio::fs::read(path_of(data_dir, hash)?).await.ok()
}

async fn put_row(db: &DatabaseConnection, hash: &str, bytes: &[u8]) -> Result<(), sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO blobs (hash, bytes, size, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (hash) DO NOTHING"
        }
        _ => {
            "INSERT INTO blobs (hash, bytes, size, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (hash) DO NOTHING"
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    db.execute(Statement::from_sql_and_values(
        backend,
        sql,
        [
            hash.into(),
            bytes.to_vec().into(),
            (bytes.len() as i64).into(),
            now.into(),
        ],
    ))
    .await
    .map(|_| ())
}

async fn get_row(db: &DatabaseConnection, hash: &str) -> Result<Option<Vec<u8>>, sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT bytes FROM blobs WHERE hash = $1",
        _ => "SELECT bytes FROM blobs WHERE hash = ?",
    };
    match db
        .query_one(Statement::from_sql_and_values(backend, sql, [hash.into()]))
        .await?
    {
        Some(row) => Ok(Some(row.try_get::<Vec<u8>>("", "bytes")?)),
        None => Ok(None),
    }
}

/// Stores `bytes` in `store`; returns their hash (the blob's name).
pub async fn put(store: &BlobStore, bytes: &[u8]) -> std::io::Result<String> {
    store.put(bytes).await
}

/// The blob's bytes, or `None` when it is missing or its store cannot be asked (logged with
/// the reason; callers answer "not found").
pub async fn get(store: &BlobStore, hash: &str) -> Option<Vec<u8>> {
    match store.fetch(hash).await {
        Ok(Some(b)) => Some(b),
        Ok(None) => {
            tracing::warn!(blob = hash, store = %store.describe(), "blob missing");
            None
        }
        Err(e) => {
            tracing::warn!(blob = hash, "blob cannot be read: {e}");
            None
        }
    }
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
