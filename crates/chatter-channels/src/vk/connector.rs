//! A VK community as a live source: our Callback API server when a base URL is configured
//! (reused while VK still has it), the Bots Long Poll otherwise. The poller keeps its Long Poll
//! session (whose key is never stored) in its `PollState`; the stored cursor is `ts`. Until a
//! cursor is stored, the poller starts at the position taken when the community was connected
//! (`SourceSettings::vk_poll_ts`), not at the one of its own first call.

use super::{random_id_for, LongPollServer, ReplyTo, VkClient, MAX_TEXT};
use crate::{
    BuildError, ChannelError, Connector, Credentials, FileToSend, HookSite, KindEnv, Part,
    PollState, Polled, SaveSettings, SenderRef, SourceSettings,
};
use std::sync::Arc;

/// The connector of one community, from its token and the community id in `settings.bot_id`.
pub(super) fn build(
    env: &KindEnv,
    creds: &Credentials,
    settings: &SourceSettings,
) -> Result<Arc<dyn Connector>, BuildError> {
    let group_id = settings
        .bot_id
        .parse()
        .map_err(|_| BuildError::Settings("VK source without a community id"))?;
    Ok(Arc::new(
        VkClient::new(
            env.http.clone(),
            &env.config.vk.api_base,
            &creds.token,
            group_id,
        )
        .with_start_ts(settings.vk_poll_ts.clone()),
    ))
}

#[async_trait::async_trait]
impl Connector for VkClient {
    fn max_text(&self) -> usize {
        MAX_TEXT
    }

    /// Deduplicated by a `random_id` derived from the part's key and index (`random_id_for`).
    async fn send_part(&self, p: Part<'_>) -> Result<String, ChannelError> {
        let peer: i64 = p
            .chat
            .parse()
            .map_err(|_| ChannelError::Permanent(format!("not a VK peer id: {:?}", p.chat)))?;
        let reply = p.reply_to.and_then(|r| ReplyTo::parse(peer, r));
        let id = self
            .send_text_part(peer, p.text, random_id_for(p.key, p.index), reply)
            .await?;
        Ok(id.to_string())
    }

    /// Uploads the file for the peer and sends it as a photo or a document (`send_upload`).
    async fn send_file(
        &self,
        chat: &str,
        file: &FileToSend,
        caption: Option<&str>,
        reply_to: Option<&str>,
    ) -> Option<Result<String, ChannelError>> {
        let Ok(peer) = chat.parse::<i64>() else {
            return Some(Err(ChannelError::Permanent(format!(
                "not a VK peer id: {chat:?}"
            ))));
        };
        let reply = reply_to.and_then(|r| ReplyTo::parse(peer, r));
        Some(
            self.send_upload(peer, file, caption, reply)
                .await
                .map(|id| id.to_string()),
        )
    }

    /// `users.get` for the users among them (a community or a group chat is no user).
    async fn sender_names(
        &self,
        who: &[SenderRef],
    ) -> Option<Result<std::collections::HashMap<String, String>, ChannelError>> {
        let mut ids: Vec<i64> = who
            .iter()
            .filter_map(|w| w.sender.parse::<i64>().ok())
            .filter(|id| *id > 0)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Some(Ok(Default::default()));
        }
        Some(self.user_names(&ids).await)
    }

    async fn setup(
        &self,
        site: &HookSite<'_>,
        settings: &mut SourceSettings,
        save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        let Some(url) = site.hook_url("vk") else {
            self.set_long_poll_settings(true).await?;
            // The position now: the first poll starts here, whenever and on whichever node it
            // runs, so what customers write in between is not missed (a stored cursor wins).
            let now = self.get_long_poll_server().await?;
            settings.vk_poll_ts = Some(now.ts.clone());
            self.set_start_ts(Some(now.ts));
            settings.mode = "polling".into();
            return Ok(());
        };
        // Reuse our callback server when VK still has it; add one otherwise.
        let reused = match settings.vk_server_id {
            Some(id) => match self.set_callback_settings(id).await {
                Ok(()) => true,
                Err(ChannelError::Permanent(_)) => false,
                Err(e) => return Err(e),
            },
            None => false,
        };
        settings.mode = "webhook".into();
        if !reused {
            let id = self
                .add_callback_server(&url, "Chatter", site.hook_secret)
                .await?;
            settings.vk_server_id = Some(id);
        }
        // VK confirms the server right away with the code current after the change; the hook
        // answers from the stored code, and VK retries until it matches.
        settings.vk_confirmation = Some(self.get_callback_confirmation_code().await?);
        save.save(settings).await?;
        if let (false, Some(id)) = (reused, settings.vk_server_id) {
            self.set_callback_settings(id).await?;
        }
        Ok(())
    }

    /// Deletes our callback server (gone already, deleted in VK by hand: nothing more to stop);
    /// the Long Poll stops with our poller.
    async fn stop(
        &self,
        _site: &HookSite<'_>,
        settings: &mut SourceSettings,
        save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        let Some(id) = settings.vk_server_id.take() else {
            return Ok(());
        };
        match self.delete_callback_server(id).await {
            Ok(()) | Err(ChannelError::Permanent(_)) => save.save(settings).await,
            Err(e) => Err(e),
        }
    }

    async fn poll(
        &self,
        cursor: Option<&str>,
        state: &mut PollState,
        wait_secs: u32,
    ) -> Result<Polled, ChannelError> {
        if state.get_mut::<LongPollServer>().is_none() {
            let mut fresh = self.get_long_poll_server().await?;
            let from = cursor
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .or_else(|| self.start_ts());
            if let Some(ts) = from {
                fresh.ts = ts;
            }
            state.insert(fresh);
        }
        let Some(session) = state.get_mut::<LongPollServer>() else {
            return Err(ChannelError::Transient("long poll: no session".into()));
        };
        let events = self.poll(session, wait_secs).await?;
        let changed = cursor != Some(session.ts.as_str());
        Ok(Polled::new(events, changed.then(|| session.ts.clone())))
    }
}
