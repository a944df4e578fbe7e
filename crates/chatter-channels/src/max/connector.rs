//! A Max bot as a live source: a webhook subscription with our secret when a base URL is
//! configured, `GET /updates` long polling otherwise (which works only without
//! subscriptions); the stored cursor is the marker.

use super::{MaxClient, MAX_TEXT};
use crate::{
    BuildError, ChannelError, Connector, Credentials, FileToSend, HookSite, KindEnv, Part,
    PollState, Polled, SaveSettings, SourceSettings,
};
use std::sync::Arc;

/// The connector of one bot, from its token, over Max's HTTP client (`KindEnv::max_http`).
pub(super) fn build(
    env: &KindEnv,
    creds: &Credentials,
    _settings: &SourceSettings,
) -> Result<Arc<dyn Connector>, BuildError> {
    Ok(Arc::new(
        MaxClient::new(env.max_http(), &env.config.max.api_base, &creds.token)
            .with_sleeper(env.sleeper.clone()),
    ))
}

#[async_trait::async_trait]
impl Connector for MaxClient {
    fn max_text(&self) -> usize {
        MAX_TEXT
    }

    async fn send_part(&self, p: Part<'_>) -> Result<String, ChannelError> {
        self.send_text_part(p.chat, p.text, p.reply_to).await
    }

    /// Uploads the file and sends it as an `image` or `file` attachment (`send_upload`).
    async fn send_file(
        &self,
        chat: &str,
        file: &FileToSend,
        caption: Option<&str>,
        reply_to: Option<&str>,
    ) -> Option<Result<String, ChannelError>> {
        Some(self.send_upload(chat, file, caption, reply_to).await)
    }

    async fn setup(
        &self,
        site: &HookSite<'_>,
        settings: &mut SourceSettings,
        _save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        match site.hook_url("max") {
            Some(url) => {
                self.subscribe(&url, Some(site.hook_secret)).await?;
                settings.webhook_url = Some(url);
                settings.mode = "webhook".into();
            }
            None => {
                // Polling works only without subscriptions (as Telegram's deleteWebhook).
                for sub in self.subscriptions().await? {
                    self.unsubscribe(&sub.url).await?;
                }
                settings.webhook_url = None;
                settings.mode = "polling".into();
            }
        }
        Ok(())
    }

    async fn stop(
        &self,
        _site: &HookSite<'_>,
        settings: &mut SourceSettings,
        _save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        match &settings.webhook_url {
            Some(url) => self.unsubscribe(url).await,
            None => Ok(()),
        }
    }

    async fn poll(
        &self,
        cursor: Option<&str>,
        _state: &mut PollState,
        wait_secs: u32,
    ) -> Result<Polled, ChannelError> {
        let marker = cursor.and_then(|c| c.parse::<i64>().ok());
        let (events, next) = self.updates(marker, wait_secs).await?;
        let cursor = next.filter(|n| Some(*n) != marker).map(|n| n.to_string());
        Ok(Polled::new(events, cursor))
    }
}
