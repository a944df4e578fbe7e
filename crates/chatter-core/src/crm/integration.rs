//! The amoCRM integration's record as the rest of core reads it: its status and the account
//! metadata fetched at the last sync. A leaf (no calls into the CRM or the sync), so the outbox
//! can check a company's integration without depending on the rest of `crm`.

use serde::{Deserialize, Serialize};

/// The integration works.
pub const CONNECTED: &str = "connected";
/// amoCRM refused our tokens: work is held until the account is connected again.
pub const TOKEN_INVALID: &str = "token_invalid";
/// Disconnected by a member; nothing is queued.
pub const DISCONNECTED: &str = "disconnected";
/// An admin switched the integration off in amoCRM (§1.7): tokens are gone, reconnect to fix.
pub const DISABLED: &str = "disabled";

/// What the CRM page shows after a sync.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Metadata {
    pub subdomain: String,
    pub pipelines: Vec<chatter_crm::Pipeline>,
    pub users: Vec<chatter_crm::CrmUser>,
    pub lead_fields: Vec<chatter_crm::CustomField>,
    pub contact_fields: Vec<chatter_crm::CustomField>,
}
