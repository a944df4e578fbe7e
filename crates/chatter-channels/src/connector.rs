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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avito::AvitoClient;
    use crate::max::MaxClient;
    use crate::sms::{SmsClient, SmsGatewayConfig};
    use crate::telegram::TelegramClient;
    use crate::vk::VkClient;
    use crate::whatsapp::WhatsAppClient;

    /// Every kind as core sees it, with the facts core used to match on per kind.
    fn kinds() -> Vec<(Box<dyn Connector>, usize, &'static str)> {
        let http = reqwest::Client::new;
        let base = "http://127.0.0.1:9";
        vec![
            (
                Box::new(TelegramClient::new(http(), base, "1:t")),
                4096,
                "telegram-poll",
            ),
            (
                Box::new(VkClient::new(http(), base, "t", 1)),
                4096,
                "vk-poll",
            ),
            (
                Box::new(MaxClient::new(http(), base, "t")),
                4000,
                "max-poll",
            ),
            (
                Box::new(AvitoClient::new(http(), base, "id", "s")),
                1000,
                "avito-poll",
            ),
            (
                Box::new(WhatsAppClient::new(http(), base, "v23.0", "1", "t")),
                4096,
                "whatsapp-poll",
            ),
            (
                Box::new(SmsClient::new(
                    http(),
                    SmsGatewayConfig::sipout(base, "k", None),
                )),
                2000,
                "sms-poll",
            ),
        ]
    }

    #[test]
    fn every_kind_names_its_text_limit_and_lease() {
        for (c, max_text, lease) in kinds() {
            assert_eq!((c.max_text(), c.lease_prefix()), (max_text, lease));
        }
    }

    #[test]
    fn blocked_refusals_are_recognised_per_kind() {
        let blocked = |i: usize, e: &str| kinds()[i].0.is_blocked(e);
        assert!(blocked(0, "Forbidden: bot was blocked by the user"));
        assert!(!blocked(0, "Bad Request: chat not found"));
        assert!(blocked(
            1,
            "messages.send: VK error 901: Can't send messages"
        ));
        assert!(blocked(1, "VK error 902: privacy settings"));
        assert!(!blocked(1, "VK error 100: one of the parameters"));
        for e in [
            "user blocked the bot",
            "chat.denied: no",
            "dialog.suspended",
        ] {
            assert!(blocked(2, e), "{e}");
        }
        assert!(blocked(3, "the user is blocked"));
        // WhatsApp and SMS never say so: a refusal there is only a failed message.
        assert!(!blocked(4, "blocked (code 131026)"));
        assert!(!blocked(5, "blocked"));
    }
}
