//! A Telegram bot as a live source: a webhook with our secret token when a base URL is
//! configured, `getUpdates` long polling otherwise (its cursor is the next update id).

use super::{parse_update, TelegramClient, MAX_TEXT};
use crate::{
    BuildError, ChannelError, Connector, Credentials, FileToSend, HookSite, HookStatus, KindEnv,
    Part, PollState, Polled, SaveSettings, SourceSettings,
};
use std::sync::Arc;

/// The connector of one bot, from its token.
pub(super) fn build(
    env: &KindEnv,
    creds: &Credentials,
    _settings: &SourceSettings,
) -> Result<Arc<dyn Connector>, BuildError> {
    let cfg = &env.config.telegram;
    Ok(Arc::new(
        TelegramClient::new(env.http.clone(), &cfg.api_base, &creds.token)
            .with_poll_timeout(cfg.poll_timeout_secs),
    ))
}

#[async_trait::async_trait]
impl Connector for TelegramClient {
    fn max_text(&self) -> usize {
        MAX_TEXT
    }

    /// Inbound ids are `{chat}:{message_id}`; Telegram replies by the message id alone.
    async fn send_part(&self, p: Part<'_>) -> Result<String, ChannelError> {
        let reply = p
            .reply_to
            .and_then(|r| r.rsplit(':').next())
            .and_then(|x| x.parse::<i64>().ok());
        let mid = self.send_text_part(p.chat, p.text, reply).await?;
        Ok(format!("{}:{mid}", p.chat))
    }

    /// `sendPhoto` or `sendDocument` as a multipart upload, with the caption (≤ 1024
    /// characters, as core bounds it).
    async fn send_file(
        &self,
        chat: &str,
        file: &FileToSend,
        caption: Option<&str>,
        reply_to: Option<&str>,
    ) -> Option<Result<String, ChannelError>> {
        let reply = reply_to
            .and_then(|r| r.rsplit(':').next())
            .and_then(|x| x.parse::<i64>().ok());
        Some(
            self.send_upload(chat, file, caption, reply)
                .await
                .map(|mid| format!("{chat}:{mid}")),
        )
    }

    async fn setup(
        &self,
        site: &HookSite<'_>,
        settings: &mut SourceSettings,
        _save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        match site.hook_url("telegram") {
            Some(url) => {
                self.set_webhook(&url, site.hook_secret).await?;
                settings.mode = "webhook".into();
            }
            None => {
                self.delete_webhook(false).await?;
                settings.mode = "polling".into();
            }
        }
        Ok(())
    }

    async fn stop(
        &self,
        _site: &HookSite<'_>,
        _settings: &mut SourceSettings,
        _save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        self.delete_webhook(false).await
    }

    /// Waits `Config::poll_timeout_secs` (Telegram's own), not `wait_secs`.
    async fn poll(
        &self,
        cursor: Option<&str>,
        _state: &mut PollState,
        _wait_secs: u32,
    ) -> Result<Polled, ChannelError> {
        let offset = cursor.and_then(|c| c.parse::<i64>().ok());
        let updates = self
            .get_updates(offset, self.poll_timeout_secs, 100)
            .await?;
        let cursor = updates.last().map(|u| (u.update_id + 1).to_string());
        Ok(Polled {
            events: updates.iter().map(|u| parse_update(&u.raw)).collect(),
            raws: updates.iter().map(|u| Some(u.raw.to_string())).collect(),
            cursor,
        })
    }

    async fn hook_status(&self) -> Option<Result<HookStatus, ChannelError>> {
        Some(self.get_webhook_info().await.map(|w| HookStatus {
            url: w.url,
            pending: w.pending_update_count,
            last_error: w.last_error_message,
        }))
    }
}
