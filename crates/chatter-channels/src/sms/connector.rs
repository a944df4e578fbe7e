//! An SMS gateway account as a live source. The gateway's callbacks are set by hand (the
//! source's page shows the URLs), so setting up checks the credentials still work (the balance
//! call); nothing is polled. Gateways report blocked numbers per message, so no refusal is
//! `Blocked`.

use super::{SmsClient, SmsGatewayConfig, MAX_TEXT};
use crate::{
    BuildError, ChannelError, Connector, Credentials, HookSite, KindEnv, Part, SaveSettings,
    SourceSettings,
};
use std::sync::Arc;

/// The connector of one account, from its API key and the sender in `settings.sms_sender`.
pub(super) fn build(
    env: &KindEnv,
    creds: &Credentials,
    settings: &SourceSettings,
) -> Result<Arc<dyn Connector>, BuildError> {
    Ok(Arc::new(SmsClient::new(
        env.http.clone(),
        SmsGatewayConfig::sipout(
            &env.config.sms.api_base,
            &creds.token,
            settings.sms_sender.as_deref(),
        ),
    )))
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
        _site: &HookSite<'_>,
        settings: &mut SourceSettings,
        _save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        self.balance().await?;
        settings.mode = "webhook".into();
        Ok(())
    }
}
