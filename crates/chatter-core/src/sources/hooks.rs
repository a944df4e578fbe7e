//! Inbound webhooks of every messenger kind, kind-blind: `receive_hook` finds the source (its
//! credentials cached for a few seconds, so a delivery rarely waits for a database read),
//! lets the source's `Kind` verify and read the delivery, stores the events through the group
//! commit (`inbox::ingest`, the raw body kept for any that has to be parked) and only then
//! gives the provider the kind's acknowledgement.
//!
//! What a provider gets: an unknown source, or one of another kind → 404 `no such source`; a
//! source turned off → 410 and nothing stored (its webhook was removed at the provider when it
//! was turned off; this is for deliveries already under way); the kind's refusal (forged 401,
//! malformed 400 …) with nothing stored; a delivery report for a reply still being sent → 503,
//! so the provider sends it again once the send is recorded; a storage failure → 500
//! `not stored; retry`, so the provider delivers it again.
//!
//! The API source (kind 6) has its own route and receive, `sources::api`.

use crate::inbox::ingest::Ingester;
use crate::inbox::Ingested;
use crate::sources::{self, DISABLED};
use crate::Core;
use chatter_channels::{kind_by_slug, HookCredentials, HookRefusal, InboundEvent};
pub use chatter_channels::{HookMethod, HookRequest};
use chatter_domain::SourceId;
use chatter_store::entity::source;
use sea_orm::EntityTrait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a source's credentials are trusted from the cache.
const CACHE_MS: i64 = 5_000;

/// Entries kept before the cache starts afresh.
const CACHE_MAX: usize = 10_000;

/// The answer to give the provider: status, content type and the whole body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl HookAnswer {
    fn text(status: u16, body: impl Into<String>) -> Self {
        HookAnswer {
            status,
            content_type: chatter_channels::kind::TEXT_PLAIN,
            body: body.into(),
        }
    }
}

fn no_such_source() -> HookAnswer {
    HookAnswer::text(404, "no such source")
}

fn gone() -> HookAnswer {
    HookAnswer::text(
        410,
        "this source is turned off in Chatter; nothing was stored",
    )
}

fn not_stored() -> HookAnswer {
    HookAnswer::text(500, "not stored; retry")
}

/// Webhook sources with what their kind needs to check a delivery, cached for a few seconds.
#[derive(Clone, Default)]
pub struct SourceCache(Arc<Mutex<HashMap<SourceId, Cached>>>);

/// A source, its hook credentials, and when they were read.
type Cached = (source::Model, HookCredentials, i64);

impl SourceCache {
    /// The source `id` and its hook credentials: from the cache when read less than
    /// `CACHE_MS` ago and `fresh` is not asked for, else from the database. `None` when there
    /// is no such source, it has no readable credentials, or the database cannot be read.
    async fn get(
        &self,
        core: &Core,
        id: SourceId,
        fresh: bool,
    ) -> Option<(source::Model, HookCredentials)> {
        let now = core.now();
        if !fresh {
            if let Ok(m) = self.0.lock() {
                if let Some((s, creds, at)) = m.get(&id) {
                    if now - at < CACHE_MS {
                        return Some((s.clone(), creds.clone()));
                    }
                }
            }
        }
        let s = source::Entity::find_by_id(id).one(&core.db).await.ok()??;
        let creds = credentials(core, &s).ok()?;
        if let Ok(mut m) = self.0.lock() {
            if m.len() > CACHE_MAX {
                m.clear();
            }
            m.insert(id, (s.clone(), creds.clone(), now));
        }
        Some((s, creds))
    }
}

/// What a source's kind needs to check its hooks, from its stored secret and settings.
fn credentials(core: &Core, s: &source::Model) -> crate::Result<HookCredentials> {
    let secret = sources::secret_of(core, s)?;
    let settings = sources::settings_of(s);
    Ok(HookCredentials {
        webhook_secret: secret.webhook_secret.unwrap_or_default(),
        signing_secret: secret.app_secret.unwrap_or_default(),
        account_id: settings.bot_id,
        confirmation: settings.vk_confirmation,
    })
}

/// Receives one delivery to `/hooks/{slug}/{source_id}[/{tail}]` and says what to answer.
pub async fn receive_hook(
    core: &Core,
    ingester: &Ingester,
    cache: &SourceCache,
    slug: &str,
    source_id: &str,
    req: HookRequest,
) -> HookAnswer {
    let (Some(kind), Ok(id)) = (kind_by_slug(slug), source_id.parse::<SourceId>()) else {
        return no_such_source();
    };
    let Some((src, creds)) = cache.get(core, id, false).await else {
        return no_such_source();
    };
    if src.kind != kind.source_kind() {
        return no_such_source();
    }
    if src.status == DISABLED {
        return gone();
    }
    let mut verdict = kind.verify_and_parse(&req, &creds);
    if matches!(verdict, Err(HookRefusal::NotReady(_))) {
        // What the kind lacks is written while the provider is being set up (VK's
        // confirmation code): read it afresh rather than trust the cache.
        if let Some((_, creds)) = cache.get(core, id, true).await {
            verdict = kind.verify_and_parse(&req, &creds);
        }
    }
    match verdict {
        Ok(outcome) => match store(core, ingester, src, outcome.events, &req.body).await {
            Ok(()) => HookAnswer {
                status: outcome.ack.status,
                content_type: outcome.ack.content_type,
                body: outcome.ack.body,
            },
            Err(answer) => answer,
        },
        Err(refusal) => HookAnswer::text(refusal.status(), refusal.to_string()),
    }
}

/// Stores `events` of `src`, each committed before the next (`body`, what the provider sent,
/// is kept with any that has to be parked). `Err` is the answer to give instead of the
/// acknowledgement.
async fn store(
    core: &Core,
    ingester: &Ingester,
    src: source::Model,
    events: Vec<InboundEvent>,
    body: &[u8],
) -> Result<(), HookAnswer> {
    let id = src.id;
    let mut events = events;
    crate::connectors::name_senders(core, &src, &mut events).await;
    for ev in &events {
        if let InboundEvent::Status { external_id, .. } = ev {
            match crate::inbox::status_ready(core, &src, external_id).await {
                Ok(true) => {}
                // Nothing stored: the provider sends the report again once the send is recorded.
                Ok(false) => return Err(HookAnswer::text(503, "reply still being sent; retry")),
                Err(e) => {
                    tracing::error!(error = %e, source = %id, "cannot look up a delivery report");
                    return Err(not_stored());
                }
            }
        }
    }
    if events.is_empty() {
        return Ok(());
    }
    let raw = String::from_utf8_lossy(body).into_owned();
    for ev in events {
        match ingester
            .submit_raw(src.clone(), ev, Some(raw.clone()))
            .await
        {
            Ok(Ingested::SourceOff) => return Err(gone()),
            Ok(_) => {}
            Err(e) => {
                // Not stored, so not acknowledged: the provider delivers it again.
                tracing::error!(error = %e, source = %id, "cannot store a webhook event");
                return Err(not_stored());
            }
        }
    }
    Ok(())
}
