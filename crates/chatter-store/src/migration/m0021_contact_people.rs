//! One person behind several messenger identities, and what the team knows about them: a
//! contact merged into another points at it (`merged_into`, the kept contact is the person),
//! the e-mail a manager typed, and when a manager last set the name (then the messenger's name
//! no longer overwrites it). Only adds nullable columns and an index, so a node of the previous
//! release keeps writing contacts as before.

use super::cols::{big_null, text_null, uuid_null};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        // One column per statement: SQLite alters one at a time.
        for col in [
            uuid_null("merged_into"),
            text_null("email"),
            big_null("edited_at"),
        ] {
            m.alter_table(
                Table::alter()
                    .table(a("contacts"))
                    .add_column(col)
                    .to_owned(),
            )
            .await?;
        }
        // The identities of a person.
        m.create_index(
            Index::create()
                .name("ix_contacts_merged_into")
                .table(a("contacts"))
                .col(a("merged_into"))
                .to_owned(),
        )
        .await
    }
}
