//! The states a message, a conversation or a background job can be in, as enums. Each is stored as the same short
//! text it always was (`"in"`, `"pending"`, `"open"` …), so databases made before these types
//! existed read back unchanged; a text that is none of them is an error, not a silent default.
//!
//! With the `sea-orm` feature (the store turns it on) each enum is also a SeaORM active enum in a
//! text column, so the entities can hold it directly.

use std::fmt;
use std::str::FromStr;

/// A stored state text that is not one of the values its enum knows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}: {value:?}")]
pub struct UnknownState {
    /// Which enum was being read (`"message direction"`, …).
    pub what: &'static str,
    /// The text that did not match.
    pub value: String,
}

/// Declares a state enum stored as text: the variants with their texts, `as_str`, `ALL`,
/// `FromStr`, `TryFrom<&str>`, `Display`, serde with the same texts, comparison with `&str`,
/// and (with the `sea-orm` feature) the SeaORM active-enum impls for a text column.
macro_rules! text_state {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "sea-orm", derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum))]
        #[cfg_attr(feature = "sea-orm", sea_orm(rs_type = "String", db_type = "Text"))]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $text)]
                #[cfg_attr(feature = "sea-orm", sea_orm(string_value = $text))]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in the database and shown in JSON.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownState { what: $what, value: s.to_string() }),
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = UnknownState;

            fn try_from(s: &str) -> Result<Self, UnknownState> {
                s.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

text_state! {
    /// Which way a message went: from the customer to us, or from us to the customer.
    Direction, "message direction" {
        /// The customer wrote it.
        In = "in",
        /// A manager (or the API) wrote it to the customer.
        Out = "out",
    }
}

text_state! {
    /// Where a message is in its life. Incoming messages are `Received`; outgoing ones start
    /// `Pending` and move on to `Sent`, then possibly `Delivered` and `Read`, or end `Failed`.
    MessageStatus, "message status" {
        /// An incoming message, stored.
        Received = "received",
        /// An outgoing message waiting for its send job.
        Pending = "pending",
        /// The messenger accepted the outgoing message.
        Sent = "sent",
        /// The messenger reports it reached the customer.
        Delivered = "delivered",
        /// The messenger reports the customer read it.
        Read = "read",
        /// Sending failed (the error says why); a manager may retry it.
        Failed = "failed",
    }
}

text_state! {
    /// Whether a conversation waits for the team or is done with.
    ConversationStatus, "conversation status" {
        /// In the inbox's working list.
        Open = "open",
        /// Closed by a manager; a new customer message opens it again.
        Closed = "closed",
    }
}

text_state! {
    /// Where a background job is: waiting, being run by a worker, finished, or given up on.
    JobState, "job state" {
        /// Due at its `run_at`, waiting for a worker.
        Queued = "queued",
        /// Claimed by a worker holding its lease.
        Running = "running",
        /// Finished; never claimed again.
        Done = "done",
        /// Gave up after its attempts (an operator may requeue it).
        Dead = "dead",
    }
}

text_state! {
    /// Where a company's subscription is (issue 16): a trial, a plan being paid for, a payment
    /// overdue, paused or cancelled. Only `Trial` (until its end) and `Active` let it send.
    SubscriptionState, "subscription state" {
        /// The 14-day trial with every feature, no card needed.
        Trial = "trial",
        /// A plan whose period runs.
        Active = "active",
        /// The period ended unpaid.
        PastDue = "past_due",
        /// Paused by the company: data kept, nothing sent.
        Paused = "paused",
        /// Cancelled: read-only.
        Cancelled = "cancelled",
    }
}

impl Direction {
    /// Whether the customer wrote the message.
    pub fn is_in(self) -> bool {
        self == Direction::In
    }
}

impl MessageStatus {
    /// How far an outgoing message has got, for "never move back" checks: pending 0, sent 1,
    /// delivered 2, read 3. `None` for received and failed, which are not steps on that path.
    pub fn progress(self) -> Option<u8> {
        match self {
            MessageStatus::Pending => Some(0),
            MessageStatus::Sent => Some(1),
            MessageStatus::Delivered => Some(2),
            MessageStatus::Read => Some(3),
            MessageStatus::Received | MessageStatus::Failed => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip_through_from_str_and_serde() {
        for d in Direction::ALL {
            assert_eq!(d.as_str().parse::<Direction>(), Ok(*d));
            assert_eq!(
                serde_json::to_value(d).ok(),
                Some(serde_json::json!(d.as_str()))
            );
        }
        for s in MessageStatus::ALL {
            assert_eq!(MessageStatus::try_from(s.as_str()), Ok(*s));
            let back: MessageStatus =
                serde_json::from_value(serde_json::json!(s.as_str())).expect("serde");
            assert_eq!(back, *s);
        }
        for c in ConversationStatus::ALL {
            assert_eq!(c.to_string().parse::<ConversationStatus>(), Ok(*c));
        }
    }

    #[test]
    fn the_stored_texts_are_the_ones_databases_hold() {
        let texts = |all: &[&str]| all.join(",");
        let d: Vec<_> = Direction::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(texts(&d), "in,out");
        let s: Vec<_> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(texts(&s), "received,pending,sent,delivered,read,failed");
        let c: Vec<_> = ConversationStatus::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts(&c), "open,closed");
        let j: Vec<_> = JobState::ALL.iter().map(|j| j.as_str()).collect();
        assert_eq!(texts(&j), "queued,running,done,dead");
    }

    #[test]
    fn an_unknown_text_is_an_error_naming_it() {
        let e = "sending".parse::<MessageStatus>().expect_err("unknown");
        assert_eq!(e.to_string(), "unknown message status: \"sending\"");
        assert!(serde_json::from_str::<Direction>("\"IN\"").is_err());
        assert!(MessageStatus::Pending == "pending" && MessageStatus::Sent != "pending");
    }
}
