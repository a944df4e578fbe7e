use sea_orm::entity::prelude::*;

/// A sign-up started at an outside provider, waiting for its form. `Debug` hides the payload.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pending_signups")]
pub struct Model {
    /// SHA-256 of the handle kept in the browser's cookie.
    #[sea_orm(primary_key, auto_increment = false)]
    pub handle_hash: String,
    pub provider: String,
    /// Encrypted JSON: who signed in there and the tokens obtained.
    pub payload: String,
    pub expires_at: i64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignup")
            .field("provider", &self.provider)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
