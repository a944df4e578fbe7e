use sea_orm::entity::prelude::*;

/// An inbound event that could not be stored for a reason a retry will not fix (a data or
/// constraint error): acknowledged to the provider and parked here, with the normalised event
/// (what a retry ingests again) and the provider's raw body when there was one.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dead_letters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub source_id: Uuid,
    /// The source's kind (`telegram`, `vk`, …).
    pub kind: String,
    /// Why it could not be stored (the database's or our own refusal).
    pub reason: String,
    /// The normalised `InboundEvent` as JSON.
    pub event: String,
    /// What the provider sent (a webhook body, a polled update), when known.
    pub raw: Option<String>,
    pub attempts: i32,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
