//! Sources' connectors, kind-blind: the one place core turns a stored source into its kind's
//! `chatter_channels::Connector` (`connector_for`, through the registry's `Kind::build`, kept
//! per source while its credentials stay the same), and sets it up, stops it and polls it with
//! the source's stored settings and cursor. What differs by kind lives in the kind's folder in
//! `chatter-channels`; adding a kind needs no edit here.

pub mod model;

use crate::{Core, CoreConfig, CoreError, Result};
use chatter_channels::{
    kind_of, ChannelError, Connector, HookSite, InboundEvent, KindEnv, PollState, Polled,
    SaveSettings, SenderRef,
};
use chatter_domain::{SourceId, SourceKind};
use chatter_store::entity::source;
use model::SourceSettings;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use chatter_channels::hook_url;

/// Connectors that outlive one call, by source: built once per credentials (Avito's client
/// caches its access token; a fresh one per job would ask Avito for a token every time), over
/// the process's `KindEnv`.
pub struct ConnectorCache {
    env: KindEnv,
    by_source: Mutex<HashMap<SourceId, Cached>>,
    /// Senders' names the provider gave (`name_senders`), with when (ms): asked again at most
    /// once a day per sender.
    names: Mutex<HashMap<(SourceId, String), (String, i64)>>,
}

/// A source's connector with the stored (encrypted) credentials it was built from.
type Cached = (Option<String>, Arc<dyn Connector>);

impl ConnectorCache {
    pub(crate) fn new(http: reqwest::Client, cfg: &CoreConfig) -> Self {
        ConnectorCache {
            env: KindEnv::new(http, cfg.kinds.clone()),
            by_source: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
        }
    }

    /// Drops the cached connector of a source whose credentials changed.
    pub(crate) fn forget(&self, id: SourceId) {
        if let Ok(mut m) = self.by_source.lock() {
            m.remove(&id);
        }
    }
}

impl Core {
    /// The HTTP client for Max (with `max.extra_ca_pem` trusted when configured).
    pub fn max_http(&self) -> reqwest::Client {
        self.clients.env.max_http()
    }

    /// What kinds build connectors and check credentials with: the shared HTTP clients and
    /// every kind's configuration.
    pub fn kind_env(&self) -> &KindEnv {
        &self.clients.env
    }
}

/// The connector of `src`: its kind's, built from its decrypted credentials and settings, or
/// the one built before from the same credentials (a reconnect stores new ones, so they are
/// built afresh on every node).
pub fn connector_for(core: &Core, src: &source::Model) -> Result<Arc<dyn Connector>> {
    let cache = &core.clients;
    let poisoned = || CoreError::Internal("connector cache poisoned".into());
    if let Some((built_from, c)) = cache.by_source.lock().map_err(|_| poisoned())?.get(&src.id) {
        if *built_from == src.secret {
            return Ok(c.clone());
        }
    }
    let kind = kind_of(src.kind).ok_or_else(|| {
        CoreError::Internal(format!("no connector for source kind {}", src.kind.id()))
    })?;
    let creds = model::secret_of(core, src)?;
    let built = kind
        .build(&cache.env, &creds, &model::settings_of(src))
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    cache
        .by_source
        .lock()
        .map_err(|_| poisoned())?
        .insert(src.id, (src.secret.clone(), built.clone()));
    Ok(built)
}

/// The public base URL webhooks of `kind` go to, if any (Telegram keeps its own key).
pub fn webhook_base(cfg: &CoreConfig, kind: SourceKind) -> Option<&str> {
    match kind_of(kind) {
        Some(k) => k.webhook_base(&cfg.kinds),
        None => cfg.kinds.general_webhook_base(),
    }
}

/// Where people reach us from outside: the webhook base, else the public URL. WhatsApp and
/// SMS sources are configured by hand at the provider, so their pages show URLs on this base.
pub fn public_hook_base(cfg: &CoreConfig, kind: SourceKind) -> &str {
    webhook_base(cfg, kind).unwrap_or(&cfg.public_url)
}

fn internal(e: CoreError) -> ChannelError {
    ChannelError::Transient(e.to_string())
}

/// Stores a source's settings for a connector midway through its setup.
struct Saver<'a> {
    core: &'a Core,
    id: SourceId,
}

#[async_trait::async_trait]
impl SaveSettings for Saver<'_> {
    async fn save(&self, settings: &SourceSettings) -> std::result::Result<(), ChannelError> {
        model::save_settings(&self.core.db, self.id, settings)
            .await
            .map_err(internal)
    }
}

/// Sets a source up to receive: a webhook to us when a public base URL is configured, the
/// provider's polling otherwise. Returns the settings to store (mode included).
pub async fn setup(
    core: &Core,
    src: &source::Model,
    connector: &dyn Connector,
) -> std::result::Result<SourceSettings, ChannelError> {
    let mut settings = model::settings_of(src);
    let hook_secret = model::secret_of(core, src)
        .map_err(internal)?
        .webhook_secret
        .unwrap_or_default();
    let site = HookSite {
        source_id: src.id.0,
        webhook_base: webhook_base(&core.config, src.kind),
        public_url: &core.config.public_url,
        hook_secret: &hook_secret,
    };
    let saver = Saver { core, id: src.id };
    connector.setup(&site, &mut settings, &saver).await?;
    Ok(settings)
}

/// Stops receiving for a turned-off source, as far as the provider allows: Telegram's webhook
/// is deleted, VK's callback server and Max's and Avito's subscriptions removed (the provider
/// keeps what arrives meanwhile where it can). Whatever still reaches a turned-off source's
/// hook is answered 410 and stored nowhere.
pub async fn stop(core: &Core, src: &source::Model, connector: &dyn Connector) {
    let mut settings = model::settings_of(src);
    let hook_secret = model::secret_of(core, src)
        .ok()
        .and_then(|s| s.webhook_secret)
        .unwrap_or_default();
    let site = HookSite {
        source_id: src.id.0,
        webhook_base: webhook_base(&core.config, src.kind),
        public_url: &core.config.public_url,
        hook_secret: &hook_secret,
    };
    let saver = Saver { core, id: src.id };
    if let Err(e) = connector.stop(&site, &mut settings, &saver).await {
        tracing::info!(error = %e, source = %src.id, "could not stop the provider's deliveries");
    }
}

/// One poll of `src` from its stored cursor.
pub async fn poll_once(
    core: &Core,
    src: &source::Model,
    connector: &dyn Connector,
    state: &mut PollState,
) -> std::result::Result<Polled, ChannelError> {
    connector
        .poll(
            src.cursor.as_deref(),
            state,
            core.config.kinds.poll_timeout_secs,
        )
        .await
}

/// How long a sender's name from the provider is used before it is asked for again.
pub const NAME_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// How long a batch waits for the provider to name its senders; past it they keep their
/// username or id (`normalize`), and the next message asks again.
const NAME_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Names the senders of `events` that came without a name, for kinds whose events do not
/// carry one (VK's user ids, Avito's webhook deliveries): from this node's cache when asked
/// within the last day, else from the provider in one request for the whole batch
/// (`Connector::sender_names`). Best effort: a provider that fails or is slow leaves the
/// sender as `normalize` names them; nothing is refused for it.
pub async fn name_senders(core: &Core, src: &source::Model, events: &mut [InboundEvent]) {
    let unnamed = |ev: &InboundEvent| match ev {
        InboundEvent::Message(m) if m.sender.name.trim().is_empty() => Some(SenderRef {
            sender: m.sender.external_id.clone(),
            chat: m.chat.external_id.clone(),
        }),
        _ => None,
    };
    let wanted: Vec<SenderRef> = events.iter().filter_map(unnamed).collect();
    if wanted.is_empty() || !kind_of(src.kind).is_some_and(|k| k.has_connector()) {
        return;
    }
    let now = core.now();
    let cached = |who: &SenderRef| -> Option<String> {
        let names = core.clients.names.lock().ok()?;
        let (name, at) = names.get(&(src.id, who.sender.clone()))?;
        (now - at < NAME_TTL_MS).then(|| name.clone())
    };
    let mut names: HashMap<String, String> = HashMap::new();
    let mut ask: Vec<SenderRef> = Vec::new();
    for who in wanted {
        match cached(&who) {
            // Asked today and the provider had no name (a deleted account): not again today.
            Some(name) if name.is_empty() => {}
            Some(name) => {
                names.insert(who.sender, name);
            }
            None if !ask.contains(&who) => ask.push(who),
            None => {}
        }
    }
    if !ask.is_empty() {
        let asked = match connector_for(core, src) {
            Ok(c) => tokio::time::timeout(NAME_WAIT, c.sender_names(&ask))
                .await
                .unwrap_or_else(|_| {
                    Some(Err(ChannelError::Transient(
                        "the provider did not name the senders in time".into(),
                    )))
                }),
            Err(e) => Some(Err(ChannelError::Transient(e.to_string()))),
        };
        match asked {
            Some(Ok(fresh)) => {
                if let Ok(mut cache) = core.clients.names.lock() {
                    for who in &ask {
                        let name = fresh.get(&who.sender).cloned().unwrap_or_default();
                        cache.insert((src.id, who.sender.clone()), (name, now));
                    }
                }
                names.extend(fresh);
            }
            Some(Err(e)) => {
                tracing::info!(error = %e, source = %src.id, "could not name the senders; they keep their ids");
            }
            None => {}
        }
    }
    for ev in events.iter_mut() {
        if let InboundEvent::Message(m) = ev {
            if m.sender.name.trim().is_empty() {
                if let Some(name) = names.get(&m.sender.external_id) {
                    m.sender.name = name.clone();
                }
            }
        }
    }
}

/// Makes every string of the event storable on both databases (a NUL from the provider would
/// otherwise fail the whole batch on PostgreSQL, forever) and gives every sender a name to
/// show: providers that send none (VK, Avito webhooks) get their username or id, so the inbox
/// never lists a blank conversation.
pub fn normalize(ev: &mut InboundEvent) {
    ev.for_each_text_mut(&mut chatter_domain::text::clean_in_place);
    let sender = match ev {
        InboundEvent::Message(m) | InboundEvent::Mirrored(m) => &mut m.sender,
        InboundEvent::Blocked { sender, .. } => sender,
        _ => return,
    };
    if sender.name.trim().is_empty() {
        sender.name = sender
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| format!("#{}", sender.external_id));
    }
}
