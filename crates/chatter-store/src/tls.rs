//! Rows of the ACME certificates every node shares: the certificate per domain set (its key
//! already encrypted by the caller) with the last order's outcome, the ACME account per CA
//! directory, and the HTTP-01 challenge answers any node may be asked for.

use crate::entity::{acme_account, acme_challenge, tls_certificate};
use crate::{stmt, Result};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

/// One domain set's certificate and the state of its renewal (a `tls_certificates` row).
pub type CertificateRow = tls_certificate::Model;

/// The certificate row of one domain set (`name`: the sorted names, comma-separated).
pub async fn find_certificate(
    conn: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<CertificateRow>> {
    Ok(tls_certificate::Entity::find_by_id(name).one(conn).await?)
}

/// Every domain set's row (the health page of an instance whose names changed shows both).
pub async fn list_certificates(conn: &impl ConnectionTrait) -> Result<Vec<CertificateRow>> {
    Ok(tls_certificate::Entity::find()
        .order_by_desc(tls_certificate::Column::UpdatedAt)
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
    Ok(acme_account::Entity::find_by_id(directory)
        .one(conn)
        .await?
        .map(|a| (a.email, a.credentials)))
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
    Ok(acme_challenge::Entity::find_by_id(token)
        .filter(acme_challenge::Column::ExpiresAt.gte(now))
        .one(conn)
        .await?
        .map(|c| c.key_authorization))
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
