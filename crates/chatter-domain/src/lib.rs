//! Chatter's vocabulary: ids, validated values, roles and pure rules. No IO lives here.

pub mod auto_reply;
pub mod hours;
pub mod ids;
pub mod phone;
pub mod role;
pub mod routing;
pub mod source;
pub mod states;
pub mod stem;
pub mod template;
pub mod text;
pub mod totp;
pub mod values;

pub use ids::*;
pub use phone::normalize_phone;
pub use role::{Permission, Role};
pub use source::SourceKind;
pub use states::{
    ConversationStatus, Direction, JobState, MessageStatus, SubscriptionState, UnknownState,
};
pub use values::{Email, FieldError, Password, Slug};
