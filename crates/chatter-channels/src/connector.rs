//! `Connector`: what a live source of any kind does once it is set up, asked the same way of
//! every kind, so the message path (sending a reply in parts, classifying a refusal, naming a
//! poller's lease) never matches on the kind. Setting a source up, stopping it and polling it
//! keep per-kind code in core for now: they read and write the source's stored settings.

use crate::{Channel, ChannelError};

/// One live source's client, seen kind-blind. `Channel` (identify, send, download) comes with it.
#[async_trait::async_trait]
pub trait Connector: Channel {
    /// Longest text of one message; longer replies go out in parts of at most this many
    /// characters (`common::split_text`).
    fn max_text(&self) -> usize;

    /// Prefix of the lease a source's poller holds (`telegram-poll:{source id}` …), so one
    /// node polls a given source.
    fn lease_prefix(&self) -> &'static str;

    /// Sends part `part` of our message `key` into `chat`; the caller gives only the first part
    /// a `reply_to` (the provider's id of the message answered, as inbound messages of this
    /// kind carry it). Returns the provider's id of what was sent, in the same form. Kinds that
    /// deduplicate sends derive their key from `key` and `part`, so a retry after a lost answer
    /// sends nothing twice.
    async fn send_part(
        &self,
        chat: &str,
        text: &str,
        reply_to: Option<&str>,
        key: &str,
        part: usize,
    ) -> Result<String, ChannelError>;

    /// Whether a `Permanent` refusal of a send (its message) means the customer blocked us or
    /// disallowed messages: the conversation is marked blocked and nothing is retried. Kinds
    /// whose provider does not tell keep the default, `false`.
    fn is_blocked(&self, _error: &str) -> bool {
        false
    }
}
