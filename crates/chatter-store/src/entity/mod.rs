//! SeaORM entities, one module per table. Times are Unix milliseconds (`i64`) everywhere, so
//! they compare the same way on both databases and in raw SQL.

pub mod api_inbound;
pub mod api_key;
pub mod api_webhook_delivery;
pub mod audit;
pub mod backup;
pub mod company;
pub mod company_export;
pub mod contact;
pub mod conversation;
pub mod crm_integration;
pub mod dead_letter;
pub mod event;
pub mod invite;
pub mod job;
pub mod membership;
pub mod message;
pub mod oauth_state;
pub mod operator;
pub mod password_reset;
pub mod pending_signup;
pub mod recovery_code;
pub mod session;
pub mod signup_confirmation;
pub mod source;
pub mod throttle;
pub mod user;
pub mod user_identity;
