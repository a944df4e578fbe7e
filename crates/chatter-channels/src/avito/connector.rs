//! An Avito account as a live source: a webhook subscription to a URL whose last segment is
//! our secret token when a base URL is configured, polling the chat list every
//! `poll_interval_secs` otherwise (Avito has no long poll); the stored cursor is a
//! `PollCursor` as JSON. The client caches its access token, so core keeps the connector.

use super::{AvitoClient, PollCursor, MAX_TEXT};
use crate::{
    BuildError, ChannelError, Connector, Credentials, FileToSend, HookSite, KindEnv, Part,
    PollState, Polled, SaveSettings, SenderRef, SourceSettings,
};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The connector of one account, from its client id and secret.
pub(super) fn build(
    env: &KindEnv,
    creds: &Credentials,
    _settings: &SourceSettings,
) -> Result<Arc<dyn Connector>, BuildError> {
    let cfg = &env.config.avito;
    Ok(Arc::new(
        AvitoClient::new(
            env.http.clone(),
            &cfg.api_base,
            creds.client_id.as_deref().unwrap_or_default(),
            &creds.token,
        )
        .with_poll_interval(cfg.poll_interval_secs),
    ))
}

/// The Avito hook URL: the path token is the only proof a delivery comes from Avito.
pub fn hook_url(base: &str, source_id: Uuid, token: &str) -> String {
    format!("{}/{token}", crate::hook_url(base, "avito", source_id))
}

#[async_trait::async_trait]
impl Connector for AvitoClient {
    fn max_text(&self) -> usize {
        MAX_TEXT
    }

    /// Avito has no replies to a message: `reply_to` is dropped.
    async fn send_part(&self, p: Part<'_>) -> Result<String, ChannelError> {
        self.send_text_part(p.chat, p.text).await
    }

    /// Pictures only (`send_image`); the kind's `FileRules` refuse anything else beforehand.
    /// Avito has no replies to a message: `reply_to` is dropped.
    async fn send_file(
        &self,
        chat: &str,
        file: &FileToSend,
        caption: Option<&str>,
        _reply_to: Option<&str>,
    ) -> Option<Result<String, ChannelError>> {
        Some(self.send_image(chat, file, caption).await)
    }

    /// A webhook delivery names no buyer (§4.3): the people of each chat, one `GET` of the
    /// chat (`chat`) per chat in the batch.
    async fn sender_names(
        &self,
        who: &[SenderRef],
    ) -> Option<Result<std::collections::HashMap<String, String>, ChannelError>> {
        let mut chats: Vec<&str> = who.iter().map(|w| w.chat.as_str()).collect();
        chats.sort_unstable();
        chats.dedup();
        let mut names = std::collections::HashMap::new();
        for chat in chats {
            let info = match self.chat(chat).await {
                Ok(info) => info,
                Err(e) => return Some(Err(e)),
            };
            for (id, name) in info.users {
                let id = id.to_string();
                let asked = who.iter().any(|w| w.chat == chat && w.sender == id);
                if asked && !name.trim().is_empty() {
                    names.insert(id, name.trim().to_owned());
                }
            }
        }
        Some(Ok(names))
    }

    /// Polling removes only our own subscriptions (the account may feed other systems).
    async fn setup(
        &self,
        site: &HookSite<'_>,
        settings: &mut SourceSettings,
        _save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        match site.webhook_base {
            Some(base) => {
                self.subscribe(&hook_url(base, site.source_id, site.hook_secret))
                    .await?;
                settings.mode = "webhook".into();
            }
            None => {
                let ours = format!("/hooks/avito/{}/", site.source_id);
                for sub in self.subscriptions().await? {
                    if sub.url.contains(&ours) {
                        self.unsubscribe(&sub.url).await?;
                    }
                }
                settings.mode = "polling".into();
            }
        }
        Ok(())
    }

    async fn stop(
        &self,
        site: &HookSite<'_>,
        _settings: &mut SourceSettings,
        _save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        match site.webhook_base {
            Some(base) if !site.hook_secret.is_empty() => {
                self.unsubscribe(&hook_url(base, site.source_id, site.hook_secret))
                    .await
            }
            _ => Ok(()),
        }
    }

    async fn poll(
        &self,
        cursor: Option<&str>,
        _state: &mut PollState,
        _wait_secs: u32,
    ) -> Result<Polled, ChannelError> {
        let cursor = read_cursor(cursor);
        let (events, next) = AvitoClient::poll(self, &cursor).await?;
        let stored = (next != cursor)
            .then(|| serde_json::to_string(&next).ok())
            .flatten();
        Ok(Polled::new(events, stored))
    }

    fn poll_pause(&self) -> Option<Duration> {
        Some(self.poll_pause)
    }
}

/// The stored cursor; an unreadable one is logged and polling starts afresh.
fn read_cursor(stored: Option<&str>) -> PollCursor {
    let Some(text) = stored.filter(|t| !t.trim().is_empty()) else {
        return PollCursor::default();
    };
    serde_json::from_str(text).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the stored Avito cursor cannot be read; polling starts afresh");
        PollCursor::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_and_bad_ones_start_afresh() {
        let c = PollCursor {
            since: 5,
            seen: vec!["m1".into()],
        };
        let text = serde_json::to_string(&c).expect("serialises");
        assert_eq!(read_cursor(Some(&text)), c);
        assert_eq!(read_cursor(Some("{")), PollCursor::default());
        assert_eq!(read_cursor(None), PollCursor::default());
    }

    #[test]
    fn the_hook_url_ends_in_the_token() {
        let id = Uuid::nil();
        assert_eq!(
            hook_url("https://h.example/", id, "tok"),
            format!("https://h.example/hooks/avito/{id}/tok")
        );
    }
}
