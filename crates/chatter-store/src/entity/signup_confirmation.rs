use sea_orm::entity::prelude::*;

/// A sign-up waiting for the link mailed to its address (see migration m0014).
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signup_confirmations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: String,
    pub email: String,
    pub name: String,
    pub company_name: String,
    pub password_hash: String,
    pub locale: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupConfirmation")
            .field("email", &self.email)
            .field("company_name", &self.company_name)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
