//! The web application: server-rendered pages (`ui`), the REST API (`api`), operations
//! endpoints (`ops`), and the request context every handler gets (session, language, CSRF).

pub mod api;
pub mod clean;
pub mod ctx;
pub mod error;
pub mod forms;
pub mod front;
pub mod hooks;
pub mod i18n;
mod i18n_auto14;
mod i18n_auto_replies;
mod i18n_automation;
mod i18n_billing;
mod i18n_card;
mod i18n_crm15;
mod i18n_files;
mod i18n_labels;
mod i18n_notes;
mod i18n_scheduled;
mod i18n_sms15;
mod i18n_sources;
mod i18n_table;
mod i18n_templates;
mod i18n_tgp;
pub mod media;
pub mod ops;
pub mod redirect;
pub mod security;
pub mod server;
pub mod ui;
pub mod upload;

use axum::{middleware, Router};
use chatter_core::Core;
use std::sync::Arc;

/// Web-layer settings.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Mark cookies `Secure` (when served over TLS, directly or behind a proxy).
    pub secure_cookies: bool,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
    /// The database URL, for backups made from Settings.
    pub database_url: String,
    /// Trust `X-Forwarded-For` for the client's address (behind a reverse proxy).
    pub trust_proxy: bool,
    /// The proxies whose `X-Forwarded-For` entries are believed (default: loopback).
    pub trusted_proxies: Vec<ctx::Cidr>,
    /// This node's certificate when it serves HTTPS itself (for the health page).
    pub tls: Option<std::sync::Arc<chatter_tls::CertSlot>>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            body_limit: 1024 * 1024,
            database_url: String::new(),
            trust_proxy: false,
            trusted_proxies: ctx::Cidr::loopback(),
            tls: None,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub core: Core,
    pub cfg: Arc<WebConfig>,
    /// Group-commit writer for webhook deliveries.
    pub ingester: chatter_core::inbox::ingest::Ingester,
    /// Webhook sources by id, so a delivery does not wait for a database read.
    pub hook_sources: chatter_core::sources::hooks::SourceCache,
    /// Set when this node starts stopping: `/readyz` answers 503 so a balancer stops first.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Turns true when this node stops: live streams send a final `reconnect` event and end.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// Live streams (`/app/events`) open on this node now, for `/metrics`.
    pub live_streams: Arc<std::sync::atomic::AtomicI64>,
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let limit = state.cfg.body_limit;
    Router::new()
        .merge(ui::routes())
        .merge(api::routes())
        .merge(ops::routes())
        .merge(hooks::routes())
        .merge(media::routes())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
        .merge(ui::upload_routes().merge(api::upload_routes()).layer(
            tower_http::limit::RequestBodyLimitLayer::new(upload::upload_limit().max(limit)),
        ))
        .layer(middleware::from_fn(clean::strip_refused))
        .layer(middleware::from_fn_with_state(state.clone(), ctx::context))
        .layer(middleware::from_fn(ops::count_requests))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security::headers,
        ))
        .with_state(state)
}
