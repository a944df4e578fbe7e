//! An SMS gateway account as a live source. The gateway's callbacks are set by hand (the
//! source's page shows the URLs), so setting up checks the credentials still work (the balance
//! call); nothing is polled. Gateways report blocked numbers per message, so no refusal is
//! `Blocked`.

use super::{SmsClient, SmsGateway, SmsGatewayConfig, MAX_TEXT};
use crate::{
    BuildError, ChannelError, Connector, Credentials, HookSite, KindEnv, Part, SaveSettings,
    SourceSettings,
};
use std::sync::Arc;

/// The connector of one account: its gateway (named by `settings.bot_id`), its key or
/// password (`creds.token`) with the login or e-mail (`creds.client_id`) where the gateway has
/// one, and the sender in `settings.sms_sender`.
pub(super) fn build(
    env: &KindEnv,
    creds: &Credentials,
    settings: &SourceSettings,
) -> Result<Arc<dyn Connector>, BuildError> {
    let gateway = SmsGateway::of_account(&settings.bot_id);
    let mut config = SmsGatewayConfig::of(
        gateway,
        gateway.base_url(&env.config.sms),
        creds.client_id.as_deref().unwrap_or_default(),
        &creds.token,
        settings.sms_sender.as_deref(),
    );
    config.callback_url = settings.webhook_url.clone();
    Ok(Arc::new(SmsClient::new(env.http.clone(), config)))
}

/// The delivery-report URL of the source (what `SmsKind::manual_setup` shows as
/// `sources.sms_status_url`).
pub(super) fn status_url(site: &HookSite<'_>) -> Option<String> {
    (!site.hook_secret.is_empty()).then(|| {
        format!(
            "{}/{}/status",
            site.public_hook_url("sms"),
            site.hook_secret
        )
    })
}

#[async_trait::async_trait]
impl Connector for SmsClient {
    fn max_text(&self) -> usize {
        MAX_TEXT
    }

    /// `key` goes out as the gateway's client reference. Delivery reports name the first id
    /// (gateways that answer one id per part report the message by its first part).
    async fn send_part(&self, p: Part<'_>) -> Result<String, ChannelError> {
        self.send_sms(p.chat, p.text, Some(p.key))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ChannelError::Permanent("send: no message id".into()))
    }

    async fn setup(
        &self,
        site: &HookSite<'_>,
        settings: &mut SourceSettings,
        _save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        self.balance().await?;
        settings.mode = "webhook".into();
        // Gateways that take the report URL with each message (SMS Aero) learn it here.
        if self.config().api.callback_url_param.is_some() {
            let url = status_url(site);
            self.set_callback_url(url.clone());
            settings.webhook_url = url;
        }
        Ok(())
    }
}
