//! Certificates obtained by ACME, shared by every node of the database: the certificate (its
//! key encrypted with the master key), its expiry and the last order's outcome for the health
//! page; the ACME account per CA directory (its key encrypted); and the HTTP-01 challenge
//! answers, so whichever node the CA reaches can answer. Only adds tables.

use super::cols::{ms, ms_null, text, text_null};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        m.create_table(
            Table::create()
                .table(a("tls_certificates"))
                // The sorted domain list, comma-separated: one row per set of names.
                .col(ColumnDef::new(a("name")).text().not_null().primary_key())
                .col(text_null("cert_pem"))
                .col(text_null("key_pem"))
                .col(ms_null("not_before"))
                .col(ms_null("not_after"))
                .col(text_null("serial"))
                .col(ms_null("issued_at"))
                .col(text_null("issued_by_node"))
                .col(ms_null("attempted_at"))
                .col(text_null("error"))
                .col(ms("next_attempt_at"))
                .col(
                    ColumnDef::new(a("failures"))
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(ms("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("acme_accounts"))
                .col(
                    ColumnDef::new(a("directory"))
                        .text()
                        .not_null()
                        .primary_key(),
                )
                .col(text("email"))
                .col(text("credentials"))
                .col(ms("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("acme_challenges"))
                .col(ColumnDef::new(a("token")).text().not_null().primary_key())
                .col(text("key_authorization"))
                .col(ms("expires_at"))
                .to_owned(),
        )
        .await
    }
}
