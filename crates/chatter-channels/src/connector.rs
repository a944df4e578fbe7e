//! `Connector`: what a live source of any kind does, asked the same way of every kind, so core
//! never matches on the kind: setting the source up to receive (a webhook at the provider, or
//! polling), stopping it, polling it once, and sending a reply (in parts, or whole when the kind
//! has something special to send). A kind builds its connector in `Kind::build`; the
//! implementation lives in the kind's folder (`telegram/connector.rs` …).

use crate::{Channel, ChannelError, InboundEvent, SourceSettings};
use std::any::Any;
use std::time::Duration;
use uuid::Uuid;

/// One part of a reply, as `Connector::send_part` sends it.
#[derive(Clone, Copy, Debug)]
pub struct Part<'a> {
    /// The provider's chat.
    pub chat: &'a str,
    /// The part's text, within the kind's `max_text`.
    pub text: &'a str,
    /// The provider's id of the message answered, as inbound messages of this kind carry it;
    /// the caller gives it to the first part only.
    pub reply_to: Option<&'a str>,
    /// Our message's id, the same on every retry.
    pub key: &'a str,
    /// Which part of the message this is, from 0.
    pub index: usize,
}

/// One live source's client, seen kind-blind. `Channel` (identify, send, download) comes with it.
#[async_trait::async_trait]
pub trait Connector: Channel {
    /// Longest text of one message; longer replies go out in parts of at most this many
    /// characters (`common::split_text`).
    fn max_text(&self) -> usize;

    /// Sends one part of a reply (`Part`). Returns the provider's id of what was sent, in the
    /// form inbound messages of this kind carry. Kinds that deduplicate sends derive their key
    /// from the part's `key` and `index`, so a retry after a lost answer sends nothing twice. A
    /// refusal that means the customer blocked us is `ChannelError::Blocked`.
    async fn send_part(&self, part: Part<'_>) -> Result<String, ChannelError>;

    /// Sets the source up to receive: a webhook to `site` when it has a webhook base, the
    /// provider's polling otherwise (or checks that the credentials still work, for kinds whose
    /// callbacks are set by hand). Writes what it set up into `settings` (`mode` included);
    /// the caller stores them afterwards, `save` stores them midway when the provider needs
    /// the stored value before setup ends (VK's confirmation code).
    async fn setup(
        &self,
        site: &HookSite<'_>,
        settings: &mut SourceSettings,
        save: &dyn SaveSettings,
    ) -> Result<(), ChannelError>;

    /// Stops the provider's deliveries to a turned-off source as far as the provider allows
    /// (webhooks deleted, subscriptions removed). Settings it changes are stored through
    /// `save`. The default does nothing: callbacks configured by hand stay at the provider.
    async fn stop(
        &self,
        _site: &HookSite<'_>,
        _settings: &mut SourceSettings,
        _save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        Ok(())
    }

    /// Polls once from the stored `cursor`, waiting at most about `wait_secs` for something
    /// new where the provider long-polls. `state` is this poller's own memory between polls
    /// (reset after a failure). The default brings nothing: kinds that only call us back.
    async fn poll(
        &self,
        _cursor: Option<&str>,
        _state: &mut PollState,
        _wait_secs: u32,
    ) -> Result<Polled, ChannelError> {
        Ok(Polled::default())
    }

    /// Pause between two polls for kinds without a long poll (Avito); `None` otherwise.
    fn poll_pause(&self) -> Option<Duration> {
        None
    }

    /// Sends what is not plain text as one message (a WhatsApp template named by `extra`, a
    /// medium by link from `files`). `None`: nothing special, the text goes out in parts.
    async fn send_special(
        &self,
        _chat: &str,
        _text: Option<&str>,
        _extra: Option<&str>,
        _files: &[OutgoingFile],
    ) -> Option<Result<String, ChannelError>> {
        None
    }

    /// Sends one file a manager attached (`file`, its bytes from our blob store) with the typed
    /// `caption` where the provider takes one, answering `reply_to` where it can. Returns the
    /// provider's id of what was sent. `None`: the kind cannot send files (its
    /// `KindFacts::files` is `None` too).
    async fn send_file(
        &self,
        _chat: &str,
        _file: &FileToSend,
        _caption: Option<&str>,
        _reply_to: Option<&str>,
    ) -> Option<Result<String, ChannelError>> {
        None
    }

    /// The message templates the source's account may send (WhatsApp), as the provider lists
    /// them; `None` when the kind (or the source, per its `settings`) has none.
    async fn templates(
        &self,
        _settings: &SourceSettings,
    ) -> Option<Result<Vec<crate::Template>, ChannelError>> {
        None
    }

    /// The display names of senders whose events carry none (VK's `users.get`, the people of
    /// an Avito chat), by the sender's external id, as far as the provider names them; asked
    /// once for a whole batch. `None`: the kind's events name their senders themselves.
    async fn sender_names(
        &self,
        _who: &[SenderRef],
    ) -> Option<Result<std::collections::HashMap<String, String>, ChannelError>> {
        None
    }

    /// The provider's own view of our webhook, for the source's page, where the provider
    /// reports one (Telegram's `getWebhookInfo`); `None` elsewhere.
    async fn hook_status(&self) -> Option<Result<HookStatus, ChannelError>> {
        None
    }
}

/// The provider's view of a source's webhook (`Connector::hook_status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookStatus {
    /// Where the provider delivers; empty when no webhook is set.
    pub url: String,
    /// Deliveries the provider still holds.
    pub pending: i64,
    /// The provider's last delivery error, if it reports one.
    pub last_error: Option<String>,
}

/// Where a source's webhook deliveries are to arrive.
#[derive(Clone, Copy, Debug)]
pub struct HookSite<'a> {
    /// The source's id (the last segment of its hook URL).
    pub source_id: Uuid,
    /// The public base URL the provider can reach (`Kind::webhook_base`); `None`: poll.
    pub webhook_base: Option<&'a str>,
    /// The installation's public URL, shown for callbacks set by hand when no webhook base is
    /// configured.
    pub public_url: &'a str,
    /// What the provider must present on every delivery (`Credentials::webhook_secret`),
    /// empty when none is stored.
    pub hook_secret: &'a str,
}

impl HookSite<'_> {
    /// `{base}/hooks/{slug}/{source_id}` on the webhook base, if there is one.
    pub fn hook_url(&self, slug: &str) -> Option<String> {
        self.webhook_base
            .map(|base| crate::hook_url(base, slug, self.source_id))
    }

    /// The hook URL on the webhook base, else on the public URL.
    pub fn public_hook_url(&self, slug: &str) -> String {
        crate::hook_url(
            self.webhook_base.unwrap_or(self.public_url),
            slug,
            self.source_id,
        )
    }
}

/// Stores a source's settings while a connector sets it up (implemented by core).
#[async_trait::async_trait]
pub trait SaveSettings: Send + Sync {
    /// Stores `settings` as the source's settings now.
    async fn save(&self, settings: &SourceSettings) -> Result<(), ChannelError>;
}

/// What one poller keeps between polls of one source, opaque to the poller: each kind puts
/// its own value in (VK its Long Poll session).
#[derive(Default)]
pub struct PollState(Option<Box<dyn Any + Send>>);

impl PollState {
    /// Forgets in-memory positions, so the next poll starts from the stored cursor.
    pub fn reset(&mut self) {
        self.0 = None;
    }

    /// The kept value, if one of type `T` is kept.
    pub fn get_mut<T: Any + Send>(&mut self) -> Option<&mut T> {
        self.0.as_mut().and_then(|b| b.downcast_mut::<T>())
    }

    /// Keeps `value` (replacing what was kept) and returns it.
    pub fn insert<T: Any + Send>(&mut self, value: T) -> &mut T {
        let kept = self.0.insert(Box::new(value));
        match kept.downcast_mut::<T>() {
            Some(v) => v,
            None => unreachable!("the value was just stored with this type"),
        }
    }
}

/// What one poll brought: the events in order, what the provider sent for each when the kind
/// keeps it (kept if an event has to be parked), and the cursor to store with them in the
/// same transaction (`None`: nothing to store).
#[derive(Debug, Default)]
pub struct Polled {
    /// The events, in the order the provider gave them.
    pub events: Vec<InboundEvent>,
    /// The provider's raw text of each event, where the kind keeps it (empty otherwise).
    pub raws: Vec<Option<String>>,
    /// The cursor to store after these events (`None`: unchanged).
    pub cursor: Option<String>,
}

impl Polled {
    /// `events` with `cursor`, without raw texts.
    pub fn new(events: Vec<InboundEvent>, cursor: Option<String>) -> Self {
        Polled {
            events,
            raws: Vec::new(),
            cursor,
        }
    }
}

/// A file going out with a reply, by link (what core stored for the outgoing attachment).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutgoingFile {
    /// image | video | audio | document
    pub kind: String,
    /// Where the provider fetches it from.
    pub link: String,
    /// The name shown with a document.
    pub file_name: Option<String>,
}

/// A sender to name (`Connector::sender_names`): their external id and the chat they wrote in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SenderRef {
    pub sender: String,
    pub chat: String,
}

/// A file a manager attached, going out as an upload (`Connector::send_file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileToSend {
    pub bytes: Vec<u8>,
    /// The name the customer sees.
    pub file_name: String,
    /// What the bytes are (checked by their first bytes for pictures).
    pub mime_type: String,
    /// The bytes are a picture (by their first bytes) within the kind's
    /// `FileRules::max_image_bytes`: the kind sends it as a picture, otherwise as a document.
    pub as_image: bool,
    /// Our id of the message, the same on every try: a provider that deduplicates sends keys
    /// on it (VK's `random_id`).
    pub key: String,
    /// `Some` when an earlier try of this send may have reached the provider although its
    /// answer was lost (a retry): kinds without a dedup key look for that message first.
    pub retry: Option<EarlierTry>,
}

/// What a retried file send knows about its earlier tries (`FileToSend::retry`), to find the
/// message the provider took although its answer was lost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EarlierTry {
    /// Unix milliseconds, a little before the first try: a message sent before it is not ours.
    pub since_ms: i64,
    /// Provider ids of the other messages Chatter sent in this chat since then: never ours.
    pub known: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kind_of, Credentials, KindConfig, KindEnv};
    use std::sync::Arc;

    /// Every kind with a connector, built as core builds it, with the facts core used to match
    /// on per kind.
    fn connectors() -> Vec<(Arc<dyn Connector>, usize, chatter_domain::SourceKind)> {
        let base = "http://127.0.0.1:9";
        let mut cfg = KindConfig::default();
        cfg.telegram.api_base = base.into();
        cfg.vk.api_base = base.into();
        cfg.max.api_base = base.into();
        cfg.avito.api_base = base.into();
        cfg.whatsapp.api_base = base.into();
        cfg.sms.api_base = base.into();
        let env = KindEnv::new(reqwest::Client::new(), cfg);
        let creds = Credentials {
            token: "1:t".into(),
            client_id: Some("id".into()),
            ..Credentials::default()
        };
        let settings = SourceSettings {
            bot_id: "1".into(),
            ..SourceSettings::default()
        };
        let build = |k| {
            kind_of(k)
                .expect("registered")
                .build(&env, &creds, &settings)
                .expect("builds")
        };
        use chatter_domain::SourceKind as K;
        vec![
            (build(K::TelegramBot), 4096, K::TelegramBot),
            (build(K::VkBot), 4096, K::VkBot),
            (build(K::MaxBot), 4000, K::MaxBot),
            (build(K::Avito), 1000, K::Avito),
            (build(K::Whatsapp), 4096, K::Whatsapp),
            (build(K::SipoutSms), 2000, K::SipoutSms),
        ]
    }

    #[test]
    fn every_kind_names_its_text_limit() {
        for (c, max_text, kind) in connectors() {
            assert_eq!(c.max_text(), max_text, "{kind:?}");
        }
    }

    #[test]
    fn only_avito_pauses_between_polls() {
        let built = connectors();
        for (c, _, kind) in &built {
            let pause = c.poll_pause();
            assert_eq!(
                pause.is_some(),
                *kind == chatter_domain::SourceKind::Avito,
                "{kind:?}"
            );
        }
        assert_eq!(built[3].0.poll_pause(), Some(Duration::from_secs(15)));
    }

    #[test]
    fn a_vk_source_without_a_community_id_does_not_build() {
        let env = KindEnv::new(reqwest::Client::new(), KindConfig::default());
        let vk = kind_of(chatter_domain::SourceKind::VkBot).expect("registered");
        let built = vk.build(&env, &Credentials::default(), &SourceSettings::default());
        assert!(built.is_err());
        let api = kind_of(chatter_domain::SourceKind::Api).expect("registered");
        assert!(api
            .build(&env, &Credentials::default(), &SourceSettings::default())
            .is_err());
    }

    #[test]
    fn blocked_refusals_are_classified_per_kind() {
        let blocked = |e: ChannelError| matches!(e, ChannelError::Blocked(_));
        let tg = |d: &str| crate::telegram::classify(403, Some(403), d, None);
        assert!(blocked(tg("Forbidden: bot was blocked by the user")));
        assert!(!blocked(tg("Bad Request: chat not found")));
        assert!(blocked(crate::vk::classify(901, "Can't send messages")));
        assert!(blocked(crate::vk::classify(902, "privacy settings")));
        assert!(!blocked(crate::vk::classify(100, "one of the parameters")));
        for (code, m) in [
            (None, "user blocked the bot"),
            (Some("chat.denied"), "no"),
            (Some("dialog.suspended"), "x"),
        ] {
            assert!(blocked(crate::max::classify(403, code, m, None)), "{m}");
        }
        assert!(!blocked(crate::max::classify(
            404,
            None,
            "chat.not.found",
            None
        )));
        assert!(blocked(crate::avito::classify(
            403,
            "the user is blocked",
            None
        )));
        assert!(!blocked(crate::avito::classify(403, "no access", None)));
        // WhatsApp never says so: a refusal there is only a failed message.
        assert!(!blocked(crate::whatsapp::classify(
            400,
            Some(131026),
            "blocked",
            None
        )));
    }

    #[test]
    fn poll_state_keeps_one_value_until_reset() {
        let mut s = PollState::default();
        assert!(s.get_mut::<u32>().is_none());
        *s.insert(1u32) += 1;
        assert_eq!(s.get_mut::<u32>().copied(), Some(2));
        assert!(s.get_mut::<String>().is_none());
        s.reset();
        assert!(s.get_mut::<u32>().is_none());
    }

    #[test]
    fn hook_urls_go_to_the_webhook_base_else_the_public_url() {
        let id = Uuid::nil();
        let mut site = HookSite {
            source_id: id,
            webhook_base: Some("https://hooks.example/"),
            public_url: "https://chatter.example",
            hook_secret: "",
        };
        assert_eq!(
            site.hook_url("vk").as_deref(),
            Some(format!("https://hooks.example/hooks/vk/{id}").as_str())
        );
        site.webhook_base = None;
        assert_eq!(site.hook_url("vk"), None);
        assert_eq!(
            site.public_hook_url("whatsapp"),
            format!("https://chatter.example/hooks/whatsapp/{id}")
        );
    }
}
