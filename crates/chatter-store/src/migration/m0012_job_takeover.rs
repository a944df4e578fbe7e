//! Who held a job before it was claimed again: the claim copies the old `locked_by` of a job
//! whose lease had expired into `prev_locked_by`, so the node that takes over a dead node's
//! work can say whose work it took (logs and metrics), in the same statement as the claim.

use super::cols::text_null;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("jobs"))
                .add_column(text_null("prev_locked_by"))
                .to_owned(),
        )
        .await
    }
}
