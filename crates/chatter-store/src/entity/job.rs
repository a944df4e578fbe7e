use chatter_domain::JobState;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Option<Uuid>,
    pub kind: String,
    pub payload: String,
    /// Stored as `queued` | `running` | `done` | `dead`.
    pub status: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: i64,
    pub lease_until: Option<i64>,
    /// The claim token of the worker that holds the job.
    pub locked_by: Option<String>,
    #[sea_orm(unique)]
    pub dedup_key: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
