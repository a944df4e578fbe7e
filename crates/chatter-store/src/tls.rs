//! Rows of the ACME certificates every node shares: the certificate per domain set (its key
//! already encrypted by the caller) with the last order's outcome, the ACME account per CA
//! directory, and the HTTP-01 challenge answers any node may be asked for.

use crate::{stmt, Result};
use sea_orm::{ConnectionTrait, FromQueryResult};

/// One domain set's certificate and the state of its renewal.
#[derive(Clone, Debug, FromQueryResult)]
pub struct CertificateRow {
    pub name: String,
    pub cert_pem: Option<String>,
    /// Encrypted with the master key.
    pub key_pem: Option<String>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub serial: Option<String>,
    pub issued_at: Option<i64>,
    pub issued_by_node: Option<String>,
    pub attempted_at: Option<i64>,
    /// The last order's failure, cleared by a success.
    pub error: Option<String>,
    pub next_attempt_at: i64,
    pub failures: i32,
    pub updated_at: i64,
}

const COLUMNS: &str = "name, cert_pem, key_pem, not_before, not_after, serial, issued_at, \
     issued_by_node, attempted_at, error, next_attempt_at, failures, updated_at";

pub async fn find_certificate(
    conn: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<CertificateRow>> {
    Ok(CertificateRow::find_by_statement(stmt(
        conn.get_database_backend(),
        &format!("SELECT {COLUMNS} FROM tls_certificates WHERE name = $1"),
        vec![name.into()],
    ))
    .one(conn)
    .await?)
}

/// Every domain set's row (the health page of an instance whose names changed shows both).
pub async fn list_certificates(conn: &impl ConnectionTrait) -> Result<Vec<CertificateRow>> {
    Ok(CertificateRow::find_by_statement(stmt(
        conn.get_database_backend(),
        &format!("SELECT {COLUMNS} FROM tls_certificates ORDER BY updated_at DESC"),
        vec![],
    ))
    .all(conn)
    .await?)
}

/// A newly issued certificate.
pub struct Issued<'a> {
    pub cert_pem: &'a str,
    pub key_pem_encrypted: &'a str,
    pub not_before: i64,
    pub not_after: i64,
    pub serial: &'a str,
    pub node: &'a str,
    /// When renewal is due.
    pub renew_at: i64,
}

pub async fn update_issued(
    conn: &impl ConnectionTrait,
    name: &str,
    c: &Issued<'_>,
    now: i64,
) -> Result<()> {
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO tls_certificates (name, cert_pem, key_pem, not_before, not_after, serial, \
         issued_at, issued_by_node, attempted_at, error, next_attempt_at, failures, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, NULL, $9, 0, $7) \
         ON CONFLICT (name) DO UPDATE SET cert_pem = excluded.cert_pem, key_pem = excluded.key_pem, \
         not_before = excluded.not_before, not_after = excluded.not_after, serial = excluded.serial, \
         issued_at = excluded.issued_at, issued_by_node = excluded.issued_by_node, \
         attempted_at = excluded.attempted_at, error = NULL, \
         next_attempt_at = excluded.next_attempt_at, failures = 0, updated_at = excluded.updated_at",
        vec![
            name.into(),
            c.cert_pem.into(),
            c.key_pem_encrypted.into(),
            c.not_before.into(),
            c.not_after.into(),
            c.serial.into(),
            now.into(),
            c.node.into(),
            c.renew_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Records a failed order; the certificate already stored stays.
pub async fn update_failed(
    conn: &impl ConnectionTrait,
    name: &str,
    error: &str,
    next_attempt_at: i64,
    now: i64,
) -> Result<()> {
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO tls_certificates (name, attempted_at, error, next_attempt_at, failures, updated_at) \
         VALUES ($1, $2, $3, $4, 1, $2) \
         ON CONFLICT (name) DO UPDATE SET attempted_at = excluded.attempted_at, \
         error = excluded.error, next_attempt_at = excluded.next_attempt_at, \
         failures = tls_certificates.failures + 1, updated_at = excluded.updated_at",
        vec![
            name.into(),
            now.into(),
            error.into(),
            next_attempt_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The stored account of a CA directory: `(email, encrypted credentials)`.
pub async fn find_account(
    conn: &impl ConnectionTrait,
    directory: &str,
) -> Result<Option<(String, String)>> {
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            "SELECT email, credentials FROM acme_accounts WHERE directory = $1",
            vec![directory.into()],
        ))
        .await?;
    Ok(match row {
        Some(r) => Some((r.try_get("", "email")?, r.try_get("", "credentials")?)),
        None => None,
    })
}

pub async fn upsert_account(
    conn: &impl ConnectionTrait,
    directory: &str,
    email: &str,
    credentials_encrypted: &str,
    now: i64,
) -> Result<()> {
    conn.execute(stmt(
        conn.get_database_backend(),
        "INSERT INTO acme_accounts (directory, email, credentials, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (directory) DO UPDATE SET email = excluded.email, \
         credentials = excluded.credentials, created_at = excluded.created_at",
        vec![
            directory.into(),
            email.into(),
            credentials_encrypted.into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn delete_account(conn: &impl ConnectionTrait, directory: &str) -> Result<()> {
    conn.execute(stmt(
        conn.get_database_backend(),
        "DELETE FROM acme_accounts WHERE directory = $1",
        vec![directory.into()],
    ))
    .await?;
    Ok(())
}

/// Stores an HTTP-01 answer; drops the expired ones.
pub async fn insert_challenge(
    conn: &impl ConnectionTrait,
    token: &str,
    key_authorization: &str,
    expires_at: i64,
    now: i64,
) -> Result<()> {
    let b = conn.get_database_backend();
    conn.execute(stmt(
        b,
        "DELETE FROM acme_challenges WHERE expires_at < $1",
        vec![now.into()],
    ))
    .await?;
    conn.execute(stmt(
        b,
        "INSERT INTO acme_challenges (token, key_authorization, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (token) DO UPDATE SET key_authorization = excluded.key_authorization, \
         expires_at = excluded.expires_at",
        vec![token.into(), key_authorization.into(), expires_at.into()],
    ))
    .await?;
    Ok(())
}

pub async fn find_challenge(
    conn: &impl ConnectionTrait,
    token: &str,
    now: i64,
) -> Result<Option<String>> {
    let row = conn
        .query_one(stmt(
            conn.get_database_backend(),
            "SELECT key_authorization FROM acme_challenges WHERE token = $1 AND expires_at >= $2",
            vec![token.into(), now.into()],
        ))
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get("", "key_authorization")?),
        None => None,
    })
}

pub async fn delete_challenge(conn: &impl ConnectionTrait, token: &str) -> Result<()> {
    conn.execute(stmt(
        conn.get_database_backend(),
        "DELETE FROM acme_challenges WHERE token = $1",
        vec![token.into()],
    ))
    .await?;
    Ok(())
}
