//! `Kind`: what is fixed about a messenger kind (its `SourceKind`, URL segment, labels, lease
//! name) and how its webhook deliveries are verified and read, so core and web receive hooks
//! and label sources without naming a kind. One `impl Kind` per kind lives in the kind's
//! folder (`telegram/kind.rs` …); `KINDS` lists them all.
//!
//! A hook delivery reaches a kind as a `HookRequest` (the HTTP request, reduced to what a
//! provider can send) with the stored source's `HookCredentials`; the kind answers with the
//! events to store and the acknowledgement to give once they are stored (`HookOutcome`), or
//! with a refusal (`HookRefusal`) — nothing is stored then.

use crate::form::{FormField, FormRefusal, FormValues, Validated};
use crate::{
    BuildError, Connector, Credentials, Identity, InboundEvent, KindConfig, KindEnv, SourceSettings,
};
use chatter_domain::SourceKind;
use std::sync::Arc;

/// What a kind states about itself once, as a constant in its folder (`FACTS`); the `Kind`
/// methods of the same names read it.
pub struct KindFacts {
    /// The stored kind.
    pub kind: SourceKind,
    /// The URL segment of its hooks (`/hooks/{slug}/{source_id}`), which also names its
    /// poller's lease.
    pub slug: &'static str,
    /// The source name written to the CRM ("Telegram", "VK" …).
    pub crm_label: &'static str,
    /// Its add-source form; `None` when it has none (the API source is added on a page of
    /// its own).
    pub form: Option<KindForm>,
    /// The translation key of the advice shown when its credentials were revoked; `None` keeps
    /// the general advice.
    pub revoked_fix_key: Option<&'static str>,
    /// Builds the connector of one source (`Kind::build`); `None` for the API source, which
    /// its customer's system calls.
    pub connector: Option<BuildConnector>,
    /// How long after the customer's last message free-form replies may still go (WhatsApp's
    /// 24 hours; after that only a template may); `None`: always.
    pub reply_window: Option<std::time::Duration>,
    /// Whether managers may reply with a medium by public link (WhatsApp fetches it).
    pub sends_media_by_link: bool,
    /// The files managers may send from the reply box (`Connector::send_file`); `None`: the
    /// kind cannot send files (SMS), and the box says so.
    pub files: Option<FileRules>,
    /// Whether its accounts have message templates (`Connector::templates`).
    pub offers_templates: bool,
    /// Whether a source's page shows the provider account it is (WhatsApp's number, the SMS
    /// account) rather than a bot's `@username`.
    pub shows_account: bool,
    /// The translation key of the advice above the callback URLs a person pastes at the
    /// provider by hand (`Kind::manual_setup`); `None` when Chatter sets the provider up.
    pub setup_help_key: Option<&'static str>,
    /// How an account is connected in steps (a code the provider sends, then a password)
    /// rather than by one form; `None`: by its form, or not by people at all.
    pub login: Option<LoginFlow>,
}

impl KindFacts {
    /// A kind with no connector and no form, whose other facts are the common case; a kind
    /// states what differs with struct update syntax.
    pub const fn new(kind: SourceKind, slug: &'static str, crm_label: &'static str) -> Self {
        KindFacts {
            kind,
            slug,
            crm_label,
            form: None,
            revoked_fix_key: None,
            connector: None,
            reply_window: None,
            sends_media_by_link: false,
            files: None,
            offers_templates: false,
            shows_account: false,
            setup_help_key: None,
            login: None,
        }
    }
}

/// A kind connected in steps (`KindFacts::login`): each step shows its fields, and what the
/// person typed goes to `step` with what the earlier steps left (`LoginPending`, kept
/// encrypted by the caller between requests and across restarts). The last step gives what to
/// store, as a form would.
pub struct LoginFlow {
    /// The translation key of the help above step `step` (`""`: the first).
    pub help_key: fn(&str) -> &'static str,
    /// The fields of step `step` (`""`: the first).
    pub fields: fn(&str) -> &'static [FormField],
    /// The field errors about the whole login go to on step `step` (a provider that cannot be
    /// reached, an account connected elsewhere).
    pub main_field: fn(&str) -> &'static str,
    /// Takes the values of the step `pending.step` and moves on.
    pub step: LoginStep,
}

/// `LoginFlow::step`: a kind's login step, boxed so the flow can be a constant.
pub type LoginStep = for<'a> fn(
    &'a KindEnv,
    &'a LoginPending,
    &'a FormValues,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<LoginProgress, FormRefusal>> + Send + 'a>,
>;

/// Where a login in steps stands between two requests. `state` is the kind's own (the code's
/// token, the application pair) and secret; `Debug` shows the step only.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoginPending {
    /// The step to show next (`""`: the first).
    pub step: String,
    /// The kind's own memory of the earlier steps.
    pub state: String,
    /// Shown above the step's fields as is (the 2FA password's hint).
    #[serde(default)]
    pub hint: Option<String>,
}

impl std::fmt::Debug for LoginPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginPending")
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

/// What one login step led to.
#[derive(Debug)]
pub enum LoginProgress {
    /// Another step, with what to keep until then.
    Next(LoginPending),
    /// Connected: what to store, as a validated form.
    Done(Box<Validated>),
}

/// What a kind's provider takes as a file from the reply box (`KindFacts::files`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRules {
    /// The largest file the provider takes, in bytes (Telegram's 50 MB for a document).
    pub max_bytes: u64,
    /// The largest picture sent as a picture; a larger one goes as a document (Telegram's
    /// 10 MB for `sendPhoto`).
    pub max_image_bytes: u64,
    /// `Some(types)`: the provider takes nothing but pictures of these MIME types, each within
    /// `max_image_bytes` (Avito), and anything else is refused before it is stored; `None`: any
    /// file.
    pub only_images: Option<&'static [&'static str]>,
}

impl FileRules {
    /// Any file up to `max_bytes`, pictures as pictures up to `max_image_bytes`.
    pub const fn any(max_bytes: u64, max_image_bytes: u64) -> Self {
        FileRules {
            max_bytes,
            max_image_bytes,
            only_images: None,
        }
    }

    /// Whether a file whose bytes are a picture of `raster` (`None`: not a raster picture) and
    /// `size` bytes long is one the provider takes at all.
    pub fn takes(&self, raster: Option<&str>, size: u64) -> bool {
        match self.only_images {
            None => size <= self.max_bytes,
            Some(types) => {
                raster.is_some_and(|t| types.contains(&t)) && size <= self.max_image_bytes
            }
        }
    }
}

/// Megabytes, for `FileRules` limits.
pub const MB: u64 = 1024 * 1024;

/// A kind's add-source form: its fields, the help above it, the field errors about the
/// account go to, and the check of a filled-in form.
pub struct KindForm {
    /// The fields, in order.
    pub fields: &'static [FormField],
    /// The translation key of the help shown above the form.
    pub help_key: &'static str,
    /// The field that wrong credentials, an unreachable provider and a source added twice are
    /// reported on.
    pub main_field: &'static str,
    /// Checks the values' format first, then the credentials with the provider.
    pub validate: ValidateForm,
}

/// `KindFacts::connector`: builds the connector of one source from the process's `env`, the
/// source's decrypted `creds` and its stored `settings`.
pub type BuildConnector =
    fn(&KindEnv, &Credentials, &SourceSettings) -> Result<Arc<dyn Connector>, BuildError>;

/// `KindForm::validate`: a kind's `form::validate`, boxed so the form can be a constant.
pub type ValidateForm = for<'a> fn(
    &'a KindEnv,
    &'a FormValues,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Validated, FormRefusal>> + Send + 'a>,
>;

/// One messenger kind's static facts and its webhook.
#[async_trait::async_trait]
pub trait Kind: Send + Sync {
    /// The facts stated once in the kind's folder.
    fn facts(&self) -> &'static KindFacts;

    /// The stored kind.
    fn source_kind(&self) -> SourceKind {
        self.facts().kind
    }

    /// The URL segment of its hooks: `/hooks/{slug}/{source_id}`.
    fn slug(&self) -> &'static str {
        self.facts().slug
    }

    /// The translation key of its name (`kind.telegram_bot` …).
    fn label_key(&self) -> &'static str {
        self.source_kind().label_key()
    }

    /// The translation key of the advice shown when its credentials were revoked; `None` keeps
    /// the general advice.
    fn revoked_fix_key(&self) -> Option<&'static str> {
        self.facts().revoked_fix_key
    }

    /// The source name written to the CRM ("Telegram", "VK" …).
    fn crm_label(&self) -> &'static str {
        self.facts().crm_label
    }

    /// A link that opens a chat with the customer known by `username` in the messenger, where
    /// the messenger has public usernames (`https://t.me/<username>`); `None` elsewhere.
    fn profile_url(&self, _username: &str) -> Option<String> {
        None
    }

    /// The lease the poller of source `source` holds (`telegram-poll:{source id}` …), so one
    /// node polls a given source.
    fn lease_name(&self, source: uuid::Uuid) -> String {
        format!("{}-poll:{source}", self.slug())
    }

    /// Builds the connector of one source of this kind from the process's `env`, the source's
    /// decrypted `creds` and its stored `settings`. Core keeps it while the credentials stay
    /// the same (Avito's client caches its access token).
    fn build(
        &self,
        env: &KindEnv,
        creds: &Credentials,
        settings: &SourceSettings,
    ) -> Result<Arc<dyn Connector>, BuildError> {
        match self.facts().connector {
            Some(build) => build(env, creds, settings),
            None => Err(BuildError::NoConnector(self.source_kind().id())),
        }
    }

    /// The public base URL this kind's webhooks go to, if any: the general `webhook_base` unless
    /// the kind has its own (Telegram's overrides it).
    fn webhook_base<'a>(&self, cfg: &'a KindConfig) -> Option<&'a str> {
        cfg.general_webhook_base()
    }

    /// Whether sources of this kind talk to a provider through a connector (`build`); `false`
    /// for the API source, which its customer's system calls.
    fn has_connector(&self) -> bool {
        self.facts().connector.is_some()
    }

    /// How long after the customer's last message free-form replies may still go (WhatsApp's
    /// 24 hours; after that only a template may); `None`: always.
    fn reply_window(&self) -> Option<std::time::Duration> {
        self.facts().reply_window
    }

    /// Whether managers may reply with a medium by public link (WhatsApp fetches it).
    fn sends_media_by_link(&self) -> bool {
        self.facts().sends_media_by_link
    }

    /// The files managers may send from the reply box; `None`: the kind cannot send files.
    fn files(&self) -> Option<FileRules> {
        self.facts().files
    }

    /// Whether the kind's accounts have message templates (`Connector::templates`).
    fn offers_templates(&self) -> bool {
        self.facts().offers_templates
    }

    /// Checks that `req` comes from the provider for the source `creds` belong to and reads
    /// it. Called only for a source of this kind that is turned on.
    fn verify_and_parse(
        &self,
        req: &HookRequest,
        creds: &HookCredentials,
    ) -> Result<HookOutcome, HookRefusal>;

    /// How an account of this kind is connected in steps, if it is.
    fn login(&self) -> Option<&'static LoginFlow> {
        self.facts().login.as_ref()
    }

    /// The fields of its add-source form, in order; empty when it has no such form.
    fn fields(&self) -> &'static [FormField] {
        self.facts().form.as_ref().map_or(&[], |f| f.fields)
    }

    /// The translation key of the help shown above its add-source form.
    fn form_help_key(&self) -> Option<&'static str> {
        self.facts().form.as_ref().map(|f| f.help_key)
    }

    /// The form field that wrong credentials, an unreachable provider and a source added twice
    /// are reported on.
    fn main_field(&self) -> &'static str {
        self.facts().form.as_ref().map_or("kind", |f| f.main_field)
    }

    /// Checks a filled-in form: the values' format first, then the credentials with the
    /// provider. Values are already bounded to one line of `limits::CREDENTIAL` by the caller.
    /// A kind without a form refuses every one.
    async fn validate(&self, env: &KindEnv, form: &FormValues) -> Result<Validated, FormRefusal> {
        match &self.facts().form {
            Some(f) => (f.validate)(env, form).await,
            None => Err(FormRefusal::field("kind", "err.kind_unsupported")),
        }
    }

    /// The name a new source gets when the form leaves it blank (`@username` for bots with a
    /// public username); `None`: the account's name, else the kind and the account's id.
    fn default_name(&self, _identity: &Identity) -> Option<String> {
        None
    }

    /// Whether a source's page shows the provider account it is (WhatsApp's number, the SMS
    /// account) rather than a bot's `@username`.
    fn shows_account(&self) -> bool {
        self.facts().shows_account
    }

    /// The translation key of the advice above the callback URLs a person pastes at the
    /// provider by hand; `None` when the provider is set up by Chatter.
    fn setup_help_key(&self) -> Option<&'static str> {
        self.facts().setup_help_key
    }

    /// What a person pastes at the provider by hand for the source `source_id` whose hooks
    /// arrive on `base`, as (translation key of the label, value): callback URLs, and the
    /// source's hook secret where it is one of them (`secret` is `None` for people who may
    /// not see it). Empty when Chatter sets the provider up itself.
    fn manual_setup(
        &self,
        _base: &str,
        _source_id: uuid::Uuid,
        _secret: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// How many billed parts `text` goes out as, where the provider bills by the part (SMS);
    /// `None` elsewhere.
    fn text_parts(&self, _text: &str) -> Option<usize> {
        None
    }
}

/// An HTTP method a provider uses for hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookMethod {
    Get,
    Post,
}

/// One webhook delivery as a provider sent it.
#[derive(Clone, Debug)]
pub struct HookRequest {
    pub method: HookMethod,
    /// The path after `/hooks/{slug}/{source_id}`, without its leading `/` (Avito's token,
    /// the SMS gateway's `{token}/status`); empty when there is none.
    pub tail: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Headers with lower-case names, in the order sent (values that are not text are left
    /// out).
    pub headers: Vec<(String, String)>,
    pub body: bytes::Bytes,
    /// When it arrived, Unix milliseconds.
    pub now: i64,
}

impl HookRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// What a kind needs from the stored source to check and read its hooks. Each field's meaning
/// is the kind's; a kind ignores what it does not use.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HookCredentials {
    /// What the provider presents on every delivery: a header secret (Telegram, Max), a body
    /// field (VK), the unguessable path token (Avito, the SMS gateway), the verify token of a
    /// subscription handshake (WhatsApp). Empty: not set up, every delivery is refused.
    pub webhook_secret: String,
    /// The key the provider signs bodies with (WhatsApp's app secret); empty when none.
    pub signing_secret: String,
    /// The provider's id of the account the source is (bot, community, phone number id).
    pub account_id: String,
    /// The answer to the provider's confirmation request (VK), once it is known.
    pub confirmation: Option<String>,
}

impl std::fmt::Debug for HookCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookCredentials")
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

/// `text/plain` with its charset, what every acknowledgement but one is sent as.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The answer a provider gets once the events are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookAck {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl HookAck {
    /// 200 with `body` as plain text.
    pub fn text(body: impl Into<String>) -> Self {
        HookAck {
            status: 200,
            content_type: TEXT_PLAIN,
            body: body.into(),
        }
    }
}

/// A verified delivery: the events to store, in order, then the acknowledgement.
#[derive(Clone, Debug, PartialEq)]
pub struct HookOutcome {
    pub events: Vec<InboundEvent>,
    pub ack: HookAck,
}

impl HookOutcome {
    /// `events`, acknowledged 200 with `body`.
    pub fn stored(events: Vec<InboundEvent>, body: &str) -> Self {
        HookOutcome {
            events,
            ack: HookAck::text(body),
        }
    }

    /// Nothing to store; the provider gets `ack` at once (a handshake, a confirmation).
    pub fn answer(ack: HookAck) -> Self {
        HookOutcome {
            events: Vec::new(),
            ack,
        }
    }
}

/// Why a delivery is refused; nothing is stored. The message is the whole plain-text body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookRefusal {
    /// Not from the provider (missing or wrong secret, token or signature): 401.
    #[error("{0}")]
    Forged(&'static str),
    /// From the provider, as far as we can tell, but unreadable: 400.
    #[error("{0}")]
    Malformed(&'static str),
    /// A handshake with the wrong verify token: 403.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The kind takes no hook at this path: 404.
    #[error("no such source")]
    NotFound,
    /// The kind takes no hook with this method: 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The source is not set up far enough to answer (VK's confirmation code unknown): 503.
    #[error("{0}")]
    NotReady(&'static str),
}

impl HookRefusal {
    /// The HTTP status the provider gets.
    pub fn status(&self) -> u16 {
        match self {
            HookRefusal::Forged(_) => 401,
            HookRefusal::Malformed(_) => 400,
            HookRefusal::Forbidden(_) => 403,
            HookRefusal::NotFound => 404,
            HookRefusal::MethodNotAllowed => 405,
            HookRefusal::NotReady(_) => 503,
        }
    }
}

/// `{base}/hooks/{slug}/{source_id}`: where a provider posts a source's events.
pub fn hook_url(base: &str, slug: &str, source_id: uuid::Uuid) -> String {
    format!("{}/hooks/{slug}/{source_id}", base.trim_end_matches('/'))
}

/// Every kind Chatter connects, one line each.
pub static KINDS: &[&dyn Kind] = &[
    &crate::telegram::TelegramKind,
    &crate::telegram_personal::TelegramPersonalKind,
    &crate::vk::VkKind,
    &crate::max::MaxKind,
    &crate::avito::AvitoKind,
    &crate::api::ApiKind,
    &crate::whatsapp::WhatsAppKind,
    &crate::sms::SmsKind,
];

/// The stored kinds that run as sources talking to a provider (the API source's customer
/// system calls us instead), in registry order.
pub fn connected_kinds() -> impl Iterator<Item = SourceKind> {
    KINDS
        .iter()
        .filter(|k| k.has_connector())
        .map(|k| k.source_kind())
}

/// The kind of stored kind `kind`, if Chatter connects it.
pub fn kind_of(kind: SourceKind) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.source_kind() == kind)
}

/// The kind whose hooks live under `/hooks/{slug}/…`.
pub fn kind_by_slug(slug: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.slug() == slug)
}

/// The kind of a stored numeric kind id, if Chatter connects it.
pub fn kind_of_id(id: i32) -> Option<&'static dyn Kind> {
    SourceKind::from_id(id).and_then(kind_of)
}

/// Requests and credentials for the kinds' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A POST of `body` with `headers` (names as given) and path `tail`.
    pub(crate) fn post(tail: &str, headers: &[(&str, &str)], body: &[u8]) -> HookRequest {
        HookRequest {
            method: HookMethod::Post,
            tail: tail.to_owned(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
                .collect(),
            body: bytes::Bytes::copy_from_slice(body),
            now: 1_700_000_000_000,
        }
    }

    /// A GET with `query`.
    pub(crate) fn get(query: &str) -> HookRequest {
        HookRequest {
            method: HookMethod::Get,
            query: query.to_owned(),
            ..post("", &[], b"")
        }
    }

    /// Credentials with `secret` as the webhook secret.
    pub(crate) fn creds(secret: &str) -> HookCredentials {
        HookCredentials {
            webhook_secret: secret.to_owned(),
            ..HookCredentials::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_kind_with_a_hook_is_registered_once() {
        // Kind 10 (Telegram parsing) is not connectable yet.
        let expected: HashSet<SourceKind> = SourceKind::ALL
            .into_iter()
            .filter(|k| !matches!(k, SourceKind::TelegramParsing))
            .collect();
        let registered: Vec<SourceKind> = KINDS.iter().map(|k| k.source_kind()).collect();
        assert_eq!(registered.len(), expected.len(), "{registered:?}");
        assert_eq!(registered.into_iter().collect::<HashSet<_>>(), expected);
        for k in expected {
            let kind = kind_of(k).expect("registered");
            assert_eq!(kind.source_kind(), k);
            assert_eq!(kind_of_id(k.id()).map(|k| k.slug()), Some(kind.slug()));
            assert_eq!(kind_by_slug(kind.slug()).map(|k| k.source_kind()), Some(k));
        }
    }

    #[test]
    fn every_kind_but_sms_sends_files_and_avito_only_pictures() {
        let rules = |k| kind_of(k).and_then(|k| k.files());
        for k in [
            SourceKind::TelegramBot,
            SourceKind::VkBot,
            SourceKind::MaxBot,
            SourceKind::Whatsapp,
            SourceKind::Api,
        ] {
            let r = rules(k).expect("sends files");
            assert_eq!(r.only_images, None, "{k:?}");
            assert!(
                r.takes(None, r.max_bytes) && !r.takes(None, r.max_bytes + 1),
                "{k:?}"
            );
        }
        assert_eq!(rules(SourceKind::SipoutSms), None);
        let avito = rules(SourceKind::Avito).expect("sends pictures");
        assert_eq!((avito.max_bytes, avito.max_image_bytes), (24 * MB, 24 * MB));
        assert!(avito.takes(Some("image/png"), 24 * MB));
        assert!(!avito.takes(Some("image/png"), 24 * MB + 1));
        assert!(!avito.takes(Some("image/webp"), 10));
        assert!(!avito.takes(None, 10), "a PDF");
    }

    #[test]
    /// The facts web and core matched on per kind before the registry, leases named as before.
    fn static_facts_are_distinct_and_as_before() {
        let slugs: HashSet<&str> = KINDS.iter().map(|k| k.slug()).collect();
        let labels: HashSet<&str> = KINDS.iter().map(|k| k.label_key()).collect();
        let id = uuid::Uuid::nil();
        let leases: HashSet<String> = KINDS.iter().map(|k| k.lease_name(id)).collect();
        assert_eq!(slugs.len(), KINDS.len());
        assert_eq!(labels.len(), KINDS.len());
        assert_eq!(leases.len(), KINDS.len());
        for k in KINDS {
            assert_eq!(k.label_key(), format!("kind.{}", k.source_kind().as_str()));
        }
        let lease = |slug: &str| format!("{slug}-poll:{}", uuid::Uuid::nil());
        let facts: Vec<_> = KINDS
            .iter()
            .map(|k| {
                (
                    k.slug(),
                    k.crm_label(),
                    k.revoked_fix_key(),
                    k.lease_name(uuid::Uuid::nil()),
                )
            })
            .collect();
        assert_eq!(
            facts,
            [
                ("telegram", "Telegram", None, lease("telegram")),
                (
                    "telegram-personal",
                    "Telegram",
                    Some("sources.revoked_fix_tgp"),
                    lease("telegram-personal")
                ),
                ("vk", "VK", Some("sources.revoked_fix_vk"), lease("vk")),
                ("max", "Max", Some("sources.revoked_fix_max"), lease("max")),
                (
                    "avito",
                    "Avito",
                    Some("sources.revoked_fix_avito"),
                    lease("avito")
                ),
                ("api", "API", None, lease("api")),
                (
                    "whatsapp",
                    "WhatsApp",
                    Some("sources.revoked_fix_whatsapp"),
                    lease("whatsapp")
                ),
                ("sms", "SMS", Some("sources.revoked_fix_sms"), lease("sms")),
            ]
        );
        assert_eq!(kind_by_slug("amojo").map(|k| k.slug()), None);
    }

    #[test]
    /// The add form's facts as the pages had them per kind before the registry.
    fn forms_report_on_their_own_fields() {
        let with_form: Vec<i32> = KINDS
            .iter()
            .filter(|k| !k.fields().is_empty())
            .map(|k| k.source_kind().id())
            .collect();
        assert_eq!(with_form, [1, 3, 4, 5, 7, 8]);
        // Personal Telegram accounts connect by a login in steps instead.
        let with_login: Vec<i32> = KINDS
            .iter()
            .filter(|k| k.login().is_some())
            .map(|k| k.source_kind().id())
            .collect();
        assert_eq!(with_login, [2]);
        for k in KINDS.iter().filter(|k| !k.fields().is_empty()) {
            let names: HashSet<&str> = k.fields().iter().map(|f| f.name).collect();
            assert_eq!(names.len(), k.fields().len(), "{}", k.slug());
            assert!(names.contains(k.main_field()), "{}", k.slug());
            assert!(k.form_help_key().is_some(), "{}", k.slug());
            assert!(!names.contains("name") && !names.contains("kind"));
        }
        let accounts: Vec<&str> = KINDS
            .iter()
            .filter(|k| k.shows_account())
            .map(|k| k.slug())
            .collect();
        assert_eq!(accounts, ["telegram-personal", "whatsapp", "sms"]);
        let whatsapp = kind_by_slug("whatsapp").expect("whatsapp");
        assert_eq!(
            whatsapp.reply_window(),
            Some(std::time::Duration::from_secs(24 * 3600))
        );
        let sms = kind_by_slug("sms").expect("sms");
        assert_eq!(sms.text_parts("привет"), Some(1));
        assert_eq!(whatsapp.text_parts("привет"), None);
        let me = Identity {
            id: "1".into(),
            name: "Bot".into(),
            username: Some("shop_bot".into()),
        };
        let names: Vec<Option<String>> = KINDS.iter().map(|k| k.default_name(&me)).collect();
        let at = Some("@shop_bot".to_owned());
        // A personal account is named after its person (the name is there).
        assert_eq!(names, [at.clone(), None, None, at, None, None, None, None]);
    }

    #[test]
    fn requests_read_headers_in_any_case_and_decode_the_query() {
        let req = HookRequest {
            method: HookMethod::Get,
            tail: String::new(),
            query: "hub.mode=subscribe&hub.challenge=a%20b&hub.mode=other".into(),
            headers: vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())],
            body: bytes::Bytes::new(),
            now: 0,
        };
        assert_eq!(req.header("X-A"), Some("1"));
        assert_eq!(req.header("x-b"), None);
        assert_eq!(req.query_param("hub.mode").as_deref(), Some("subscribe"));
        assert_eq!(req.query_param("hub.challenge").as_deref(), Some("a b"));
        assert_eq!(req.query_param("hub.verify_token"), None);
    }

    #[test]
    fn credentials_never_show_their_secrets() {
        let c = HookCredentials {
            webhook_secret: "s3cr3t".into(),
            signing_secret: "app".into(),
            account_id: "42".into(),
            confirmation: Some("code".into()),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("42"), "{shown}");
        for secret in ["s3cr3t", "app", "code"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
