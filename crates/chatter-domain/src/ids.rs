//! Typed ids. Every entity id is a UUID v7 (time-ordered) wrapped in its own type, so a
//! `CompanyId` can never be passed where a `UserId` is expected.
//!
//! Each id is serde-transparent (JSON and path segments read and write the bare UUID, so an
//! axum `Path<SourceId>` refuses a malformed id the way `Path<Uuid>` does). With the `sea-orm`
//! feature each is also a SeaORM value type stored in the same UUID column as before, so the
//! entities hold typed ids and the database format does not change.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($($(#[$meta:meta])* $name:ident),* $(,)?) => {$(
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "sea-orm", derive(sea_orm::DeriveValueType))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The bare UUID, for the places that are not typed (URLs, other crates' APIs).
            pub const fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl PartialEq<Uuid> for $name {
            fn eq(&self, other: &Uuid) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for Uuid {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        // A primary key must say how it is made from an auto-incremented number; a UUID never is.
        #[cfg(feature = "sea-orm")]
        impl sea_orm::TryFromU64 for $name {
            fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
                Err(sea_orm::DbErr::ConvertFromU64(stringify!($name)))
            }
        }
    )*};
}

id_type!(
    /// A company (a tenant): every other row belongs to one.
    CompanyId,
    /// A person who can sign in.
    UserId,
    SessionId,
    /// A messenger source (a bot, an account, the API source).
    SourceId,
    JobId,
    InviteId,
    ApiKeyId,
    AuditId,
    /// One chat with a customer (or a group) on one source.
    ConversationId,
    /// One message in a conversation, either way.
    MessageId,
    /// A customer as one source knows them.
    ContactId,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bare_uuids_in_json_and_text() {
        let u = Uuid::now_v7();
        let id = SourceId(u);
        assert_eq!(
            serde_json::to_value(id).ok(),
            Some(serde_json::json!(u.to_string()))
        );
        let back: ConversationId =
            serde_json::from_value(serde_json::json!(u.to_string())).expect("uuid text");
        assert_eq!(back, u);
        assert_eq!(id.to_string().parse::<SourceId>(), Ok(id));
        assert!("not-a-uuid".parse::<MessageId>().is_err());
    }
}
