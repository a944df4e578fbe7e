use sea_orm::entity::prelude::*;

/// One domain set's ACME certificate and the state of its renewal, shared by every node.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tls_certificates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    /// The sorted domain list, comma-separated: one row per set of names.
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
    /// Orders failed in a row (backs off the next attempt).
    pub failures: i32,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
