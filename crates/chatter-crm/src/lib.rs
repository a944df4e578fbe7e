//! CRMs. The provider-neutral `Crm` trait is what core needs from a CRM (find or create the
//! contact, find its open deal or create one, notes, the CRM's own chat, account metadata);
//! each provider module speaks its API exactly as `docs/providers/` describes, with base URLs from
//! configuration so tests point them at fakes. Nothing here touches the database: tokens come in
//! and new tokens go out, and the caller stores them.

pub mod amocrm;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A CRM's numeric id of a contact, deal, user, pipeline, status, field… (amoCRM and Bitrix24
/// both use integers).
pub type CrmId = i64;

/// What went wrong talking to a CRM, classified by what the caller should do
/// (mirrors `chatter_channels::ChannelError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrmError {
    /// Network trouble, timeouts, 5xx: retry with backoff.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// The CRM asked us to slow down; wait this many seconds.
    #[error("rate limited, retry after {retry_after_secs} s: {message}")]
    RateLimited {
        retry_after_secs: u64,
        message: String,
    },
    /// The access token is expired or revoked: refresh once, then ask for re-authorization.
    #[error("credentials rejected: {0}")]
    Unauthorized(String),
    /// Retrying will not help: validation failed, no rights, not found, not paid…
    #[error("refused: {message}")]
    Permanent {
        message: String,
        /// Field-level problems the CRM reported (amoCRM `validation-errors`).
        fields: Vec<FieldProblem>,
    },
}

impl CrmError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, CrmError::Transient(_) | CrmError::RateLimited { .. })
    }

    /// A `Permanent` error without field details.
    pub fn permanent(message: impl Into<String>) -> Self {
        CrmError::Permanent {
            message: message.into(),
            fields: Vec::new(),
        }
    }
}

/// One field the CRM refused, as it reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    /// Our `request_id` of the batch item it belongs to, when the CRM says.
    pub request_id: Option<String>,
    /// The CRM's error code (`NotSupportedChoice`, …).
    pub code: String,
    /// Where in the item (`custom_fields_values.0.field_id`).
    pub path: String,
    pub detail: String,
}

/// An OAuth token pair. `Debug` never shows the tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    /// When the access token expires (unix seconds, by our clock).
    pub expires_at: i64,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access", &"<redacted>")
            .field("refresh", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The time source (core adapts its own `Clock`; tests pass a fixed one).
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

// ---- account metadata ----

/// The connected account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmAccount {
    pub id: CrmId,
    pub name: String,
    /// amoCRM subdomain (it can change; `id` is the stable key).
    pub subdomain: String,
    /// The user who owns the token.
    pub current_user_id: CrmId,
    pub country: Option<String>,
    pub is_unsorted_on: bool,
    /// The account's id in the CRM's chat service (amoCRM `amojo_id`).
    pub chat_account_id: Option<String>,
    pub timezone: Option<String>,
}

/// A sales pipeline and its stages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: CrmId,
    pub name: String,
    pub sort: i64,
    pub is_main: bool,
    pub is_archive: bool,
    pub statuses: Vec<Stage>,
}

/// A pipeline stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub id: CrmId,
    pub name: String,
    pub sort: i64,
    pub kind: StageKind,
    pub color: Option<String>,
}

/// What a stage means to us: only `Won` and `Lost` close a deal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Incoming, not yet accepted (amoCRM "Неразобранное").
    Unsorted,
    Regular,
    Won,
    Lost,
}

impl StageKind {
    pub fn is_closed(self) -> bool {
        matches!(self, StageKind::Won | StageKind::Lost)
    }
}

/// A CRM user (a possible responsible manager).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmUser {
    pub id: CrmId,
    pub name: String,
    pub email: Option<String>,
    pub is_admin: bool,
    pub is_active: bool,
    /// A free (read-only) seat: not offered as responsible.
    pub is_free: bool,
    /// The user's id in the CRM's chat service (amoCRM user `amojo_id`).
    pub chat_user_id: Option<String>,
}

impl CrmUser {
    /// Whether the user can be made responsible for a deal.
    pub fn can_be_responsible(&self) -> bool {
        self.is_active && !self.is_free
    }
}

/// Which entity a custom field belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Deals,
    Contacts,
    Companies,
}

/// A custom field definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomField {
    pub id: CrmId,
    pub name: String,
    /// A predefined field's code (`PHONE`, `EMAIL`), if any.
    pub code: Option<String>,
    /// The provider's type name (`text`, `select`, `multitext`, …).
    pub field_type: String,
    pub entity: EntityKind,
    pub enums: Vec<FieldEnum>,
}

/// One choice of a select-like field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldEnum {
    pub id: CrmId,
    pub value: String,
}

// ---- contacts and deals ----

/// A value to write into a custom field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldValue {
    pub field_id: CrmId,
    pub values: Vec<FieldScalar>,
}

/// One value of a custom field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldScalar {
    /// text, numeric, textarea, url, price (numbers as text, as amoCRM accepts).
    Text(String),
    Flag(bool),
    /// date, date_time, birthday: unix seconds.
    Date(i64),
    /// select, multiselect, radiobutton: the choice's id.
    Choice(CrmId),
}

/// How to recognise an existing contact. Every list is tried; any match wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactQuery {
    /// Phones in E.164 (`+79991234567`).
    pub phones: Vec<String>,
    /// Lower-cased addresses.
    pub emails: Vec<String>,
    /// Messenger ids or usernames we stored in a contact field (`tg:12345`, `@ivan`).
    pub messenger_keys: Vec<MessengerKey>,
}

impl ContactQuery {
    pub fn is_empty(&self) -> bool {
        self.phones.is_empty() && self.emails.is_empty() && self.messenger_keys.is_empty()
    }
}

/// A messenger id or username stored in a contact's custom field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessengerKey {
    /// The field that holds it; `None` accepts a match in any text field.
    pub field_id: Option<CrmId>,
    pub value: String,
}

/// A contact found in the CRM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmContact {
    pub id: CrmId,
    pub name: String,
    pub responsible_user_id: Option<CrmId>,
    /// E.164 where the stored value could be normalised, else as stored.
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub company_id: Option<CrmId>,
    pub deal_ids: Vec<CrmId>,
}

/// A contact to create.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewContact {
    pub name: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// E.164 phones.
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub responsible_user_id: Option<CrmId>,
    pub fields: Vec<FieldValue>,
    pub tags: Vec<String>,
    /// Creates this company and links the contact to it.
    pub company: Option<NewCompany>,
}

/// What the team changed about a contact: its name and the whole lists of phones and e-mails
/// (amoCRM replaces a multitext field's values; an empty list clears the field).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactChange {
    pub name: String,
    /// E.164 phones.
    pub phones: Vec<String>,
    pub emails: Vec<String>,
}

/// A company to create with a contact.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewCompany {
    pub name: String,
    pub responsible_user_id: Option<CrmId>,
}

/// What `create_contact` made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactCreated {
    pub contact_id: CrmId,
    pub company_id: Option<CrmId>,
}

/// A deal as the CRM holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmDeal {
    pub id: CrmId,
    pub name: String,
    pub pipeline_id: CrmId,
    pub status_id: CrmId,
    pub responsible_user_id: Option<CrmId>,
    pub created_at: i64,
    pub closed: bool,
}

/// A deal to create.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewDeal {
    /// Our idempotency key for this item, echoed back by the CRM (amoCRM `request_id`).
    pub request_id: String,
    pub name: String,
    /// `None`: the CRM's default (amoCRM: first stage of the main pipeline).
    pub pipeline_id: Option<CrmId>,
    pub status_id: Option<CrmId>,
    pub responsible_user_id: Option<CrmId>,
    pub tags: Vec<String>,
    pub fields: Vec<FieldValue>,
    /// Links an existing contact as the deal's main contact.
    pub contact_id: Option<CrmId>,
    /// Put the deal into Неразобранное (amoCRM Unsorted, category `forms`) under this form
    /// name instead of a regular stage; managers accept or decline it there.
    pub unsorted_form: Option<String>,
}

/// A deal with its contact, for batch creation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DealDraft {
    /// `contact_id` is ignored; `contact` says which contact to link.
    pub deal: NewDeal,
    pub contact: DraftContact,
}

/// The contact of a batch item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DraftContact {
    Existing(CrmId),
    /// Created with the deal (its `company`, if any, too).
    New(Box<NewContact>),
}

/// What the CRM created for one deal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealCreated {
    pub deal_id: CrmId,
    pub contact_id: Option<CrmId>,
    pub company_id: Option<CrmId>,
    /// The CRM's duplicate control merged the item into an existing deal.
    pub merged: bool,
}

/// The result of one batch item, keyed by our `request_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchItem {
    pub request_id: String,
    pub result: Result<DealCreated, CrmError>,
}

// ---- the CRM's chat ----

/// A person in a chat, by our ids.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatParty {
    /// Our id of the person (`tg-u-987654321`).
    pub id: String,
    /// The CRM chat service's id of them (a manager's or bot's id for outgoing messages).
    pub ref_id: Option<String>,
    pub name: String,
    pub avatar: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub profile_link: Option<String>,
}

/// Who wrote a message we put into the CRM's chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatDirection {
    /// The customer wrote it (`sender` is the customer).
    FromCustomer,
    /// We answered (web inbox, auto-reply): `sender` is the manager or bot, this is the customer.
    ToCustomer { customer: ChatParty },
}

/// A message to mirror into the CRM's chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Our conversation id (stable per conversation).
    pub conversation_id: String,
    /// The CRM's chat id, when known (binds a chat the CRM started to ours).
    pub conversation_ref: Option<String>,
    /// Our message id: the idempotency key.
    pub msgid: String,
    pub sender: ChatParty,
    pub direction: ChatDirection,
    pub text: String,
    /// Unix milliseconds.
    pub sent_at_ms: i64,
    /// Selects the CRM source (and so the pipeline of a deal the CRM creates itself).
    pub source_external_id: Option<String>,
    /// No notification and no unsorted deal (history import).
    pub silent: bool,
    /// A file the message carries (its `text` is then the caption).
    pub media: Option<ChatMedia>,
}

/// What kind of file a chat message carries, as the Chats API names it (§4.5 `message.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatMediaKind {
    Picture,
    File,
    Voice,
    Video,
    Audio,
}

impl ChatMediaKind {
    /// The Chats API's `message.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatMediaKind::Picture => "picture",
            ChatMediaKind::File => "file",
            ChatMediaKind::Voice => "voice",
            ChatMediaKind::Video => "video",
            ChatMediaKind::Audio => "audio",
        }
    }
}

/// A file in a chat message: a URL the CRM downloads it from without any session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMedia {
    pub kind: ChatMediaKind,
    pub url: String,
    pub file_name: String,
    pub file_size: i64,
}

/// The CRM's ids for a message it accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSent {
    /// The CRM's chat id (amojo chat uuid).
    pub conversation_ref: String,
    /// The CRM's message id (amojo message uuid).
    pub message_ref: String,
}

/// What happened to a manager's reply we delivered (or failed to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    Delivered,
    Read,
    Failed {
        reason: DeliveryFailure,
        text: String,
    },
}

/// Why a reply could not be delivered (amoCRM codes 901–905).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryFailure {
    /// The customer deleted the conversation or blocked us.
    ConversationDeleted,
    /// The channel is disabled on our side.
    ChannelDisabled,
    Internal,
    /// The customer cannot be reached on this messenger.
    CannotCreateConversation,
    Other,
}

/// A manager's answer written inside the CRM, to deliver to the customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmReply {
    /// The CRM chat service's account id (amoCRM `amojo_id`).
    pub account_ref: String,
    /// The CRM's chat id.
    pub conversation_ref: String,
    /// Our conversation id; `None` for a chat the manager started by phone ("Write first").
    pub conversation_id: Option<String>,
    /// Our id of the customer, when the chat is ours.
    pub customer_id: Option<String>,
    pub customer_name: String,
    /// Where to deliver a "Write first" message.
    pub customer_phone: Option<String>,
    /// The CRM's message id (what delivery statuses refer to).
    pub msgid: String,
    /// `text`, `picture`, `file`, …
    pub kind: String,
    pub text: String,
    /// A downloadable URL of an attachment.
    pub media: Option<String>,
    pub file_name: Option<String>,
    pub manager_ref: String,
    pub manager_name: String,
    pub source_external_id: Option<String>,
    /// Unix milliseconds.
    pub sent_at_ms: i64,
}

/// A deal found by the marker Chatter wrote into one of its fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkedDeal {
    pub deal_id: CrmId,
    /// Its main contact.
    pub contact_id: Option<CrmId>,
    /// The whole value of the field that holds the marker.
    pub value: String,
}

/// What core needs from a CRM. One value talks to one account with one set of credentials;
/// the caller refreshes tokens on `Unauthorized` and builds a new value.
#[async_trait]
pub trait Crm: Send + Sync {
    /// The account the credentials belong to.
    async fn account(&self) -> Result<CrmAccount, CrmError>;
    async fn pipelines(&self) -> Result<Vec<Pipeline>, CrmError>;
    async fn users(&self) -> Result<Vec<CrmUser>, CrmError>;
    async fn custom_fields(&self, entity: EntityKind) -> Result<Vec<CustomField>, CrmError>;

    /// The first contact matching the query (phones, then emails, then messenger keys), each
    /// candidate re-checked exactly on our side.
    async fn find_contact(&self, query: &ContactQuery) -> Result<Option<CrmContact>, CrmError>;
    async fn create_contact(&self, contact: &NewContact) -> Result<ContactCreated, CrmError>;
    /// Sets a contact's name, phones and e-mails (`PATCH /contacts/{id}`).
    async fn update_contact(
        &self,
        contact_id: CrmId,
        change: &ContactChange,
    ) -> Result<(), CrmError>;
    /// Links a contact to a deal (the deal keeps its other contacts).
    async fn link_deal_contact(&self, deal_id: CrmId, contact_id: CrmId) -> Result<(), CrmError>;
    /// The contact's newest deal that is not won or lost.
    async fn find_open_deal(&self, contact_id: CrmId) -> Result<Option<CrmDeal>, CrmError>;
    async fn create_deal(&self, deal: &NewDeal) -> Result<DealCreated, CrmError>;
    /// Most items `create_deals` takes in one call.
    fn max_batch(&self) -> usize;
    /// Creates up to `max_batch()` deals with their contacts in one call. `Err` when the call as
    /// a whole failed (nothing was created); otherwise one `BatchItem` per request id.
    async fn create_deals(&self, drafts: &[DealDraft]) -> Result<Vec<BatchItem>, CrmError>;
    /// The deals carrying `marker` in a custom field, found in one search (`query=`, a
    /// substring search over the deals' fields): what a batch whose answer was lost may have
    /// created. Each with the field value that holds the marker.
    async fn find_marked_deals(&self, marker: &str) -> Result<Vec<MarkedDeal>, CrmError>;
    /// The account's most recently changed deals, newest change first, at most `limit` (one
    /// request): how a change made in the CRM (a new responsible, say) is seen.
    async fn recently_changed_deals(&self, limit: usize) -> Result<Vec<CrmDeal>, CrmError>;
    /// Adds a text note to a deal; returns the note's id.
    async fn add_note(&self, deal_id: CrmId, text: &str) -> Result<CrmId, CrmError>;
    /// Adds up to `max_batch()` text notes in one call: `(deal_id, text)` each; the note ids in
    /// the same order.
    async fn add_notes(&self, notes: &[(CrmId, String)]) -> Result<Vec<CrmId>, CrmError>;
    /// Makes `user_id` responsible for the deal (the first manager who answered, say).
    async fn set_deal_responsible(&self, deal_id: CrmId, user_id: CrmId) -> Result<(), CrmError>;
    /// Moves the deal to `status_id` (of `pipeline_id`, else of its own pipeline): an
    /// auto-reply's "move the deal" action.
    async fn move_deal(
        &self,
        deal_id: CrmId,
        pipeline_id: Option<CrmId>,
        status_id: CrmId,
    ) -> Result<(), CrmError>;

    /// Whether this CRM has a chat we can post into (else core falls back to notes).
    fn supports_chat(&self) -> bool;
    async fn send_chat_message(&self, message: &ChatMessage) -> Result<ChatSent, CrmError>;
    /// Shows the chat on the contact's card.
    async fn link_chat(&self, contact_id: CrmId, conversation_ref: &str) -> Result<(), CrmError>;
    /// Links up to `max_batch()` chats to their contacts in one call: `(contact_id, chat)`.
    async fn link_chats(&self, links: &[(CrmId, String)]) -> Result<(), CrmError>;
    /// Reports what happened to a manager's reply (`message_ref` = `CrmReply::msgid`).
    async fn update_delivery_status(
        &self,
        message_ref: &str,
        status: &DeliveryStatus,
    ) -> Result<(), CrmError>;
}

/// Phone numbers are compared in E.164 by the one rule every crate uses (Chatter's own
/// contacts, SMS recipients and CRM contacts must agree on what the same number is).
pub use chatter_domain::normalize_phone;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_debug_is_redacted() {
        let t = Tokens {
            access: "eyJ.access.secret".into(),
            refresh: "def-refresh-secret".into(),
            expires_at: 1_700_000_000,
        };
        let s = format!("{t:?}");
        assert!(!s.contains("secret"), "{s}");
        assert!(s.contains("1700000000"));
    }

    #[test]
    fn phones_normalise_to_e164() {
        assert_eq!(
            normalize_phone("8 (999) 123-45-67").as_deref(),
            Some("+79991234567")
        );
        assert_eq!(
            normalize_phone("+7 999 123 45 67").as_deref(),
            Some("+79991234567")
        );
        assert_eq!(
            normalize_phone("9991234567").as_deref(),
            Some("+79991234567")
        );
        assert_eq!(
            normalize_phone("+44 20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(normalize_phone("12-34"), None);
    }

    #[test]
    fn only_transient_and_rate_limited_retry() {
        assert!(CrmError::Transient("x".into()).is_retryable());
        assert!(CrmError::RateLimited {
            retry_after_secs: 1,
            message: "x".into()
        }
        .is_retryable());
        assert!(!CrmError::Unauthorized("x".into()).is_retryable());
        assert!(!CrmError::permanent("x").is_retryable());
    }
}
