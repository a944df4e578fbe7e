//! Blobs in the database (issue 15, item 7): `blobs.store = "postgres"` keeps the files
//! customers send in this table, so every node of a PostgreSQL installation serves them.
//! Content-addressed (the SHA-256 of `bytes`, hex, is the key) and written once: a row is
//! never updated, only inserted when its hash is new.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        m.create_table(
            Table::create()
                .table(a("blobs"))
                .if_not_exists()
                .col(ColumnDef::new(a("hash")).string().not_null().primary_key())
                .col(ColumnDef::new(a("bytes")).blob().not_null())
                .col(ColumnDef::new(a("size")).big_integer().not_null())
                .col(ColumnDef::new(a("created_at")).big_integer().not_null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("blobs")).to_owned())
            .await
    }
}
