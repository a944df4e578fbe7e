//! A WhatsApp number as a live source. Meta's callback is set by hand in the app (the source's
//! page shows the URL and the verify token), so setting up checks the credentials still work
//! and records the URL; nothing is polled. Templates and media by link go out whole
//! (`send_special`). Meta does not say whether a customer blocked the business (131026 covers
//! that and "not on WhatsApp" alike), so no refusal is `Blocked`.

use super::{MediaKind, MediaRef, Template, WhatsAppClient, MAX_TEXT};
use crate::{
    BuildError, ChannelError, Connector, Credentials, FileToSend, HookSite, KindEnv, OutgoingFile,
    Part, SaveSettings, SourceSettings,
};
use std::sync::Arc;

/// The connector of one number, from its access token and the phone number id in
/// `settings.bot_id`.
pub(super) fn build(
    env: &KindEnv,
    creds: &Credentials,
    settings: &SourceSettings,
) -> Result<Arc<dyn Connector>, BuildError> {
    let cfg = &env.config.whatsapp;
    Ok(Arc::new(WhatsAppClient::new(
        env.http.clone(),
        &cfg.api_base,
        &cfg.api_version,
        &settings.bot_id,
        &creds.token,
    )))
}

#[async_trait::async_trait]
impl Connector for WhatsAppClient {
    fn max_text(&self) -> usize {
        MAX_TEXT
    }

    async fn send_part(&self, p: Part<'_>) -> Result<String, ChannelError> {
        self.send_text(p.chat, p.text, p.reply_to).await
    }

    async fn setup(
        &self,
        site: &HookSite<'_>,
        settings: &mut SourceSettings,
        _save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        self.phone_number().await?;
        settings.webhook_url = Some(site.public_hook_url("whatsapp"));
        settings.mode = "webhook".into();
        Ok(())
    }

    /// A template when `extra` is one (`{"type":"template","name","language","params"}`),
    /// else the first file by link, captioned with the text.
    async fn send_special(
        &self,
        chat: &str,
        text: Option<&str>,
        extra: Option<&str>,
        files: &[OutgoingFile],
    ) -> Option<Result<String, ChannelError>> {
        let extra: Option<serde_json::Value> = extra.and_then(|e| serde_json::from_str(e).ok());
        if let Some(t) = extra.filter(|e| e["type"] == "template") {
            let params: Vec<String> = t["params"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let name = t["name"].as_str().unwrap_or_default();
            let language = t["language"].as_str().unwrap_or_default();
            return Some(self.send_template(chat, name, language, &params).await);
        }
        let f = files.first()?;
        let caption = text.filter(|t| !t.trim().is_empty());
        let link = MediaRef::Link(&f.link);
        Some(match f.kind.as_str() {
            "document" => {
                let name = f.file_name.as_deref().unwrap_or("file");
                self.send_document(chat, link, name, caption).await
            }
            kind => {
                let kind = match kind {
                    "video" => MediaKind::Video,
                    "audio" => MediaKind::Audio,
                    _ => MediaKind::Image,
                };
                self.send_media(chat, kind, link, caption).await
            }
        })
    }

    /// Uploads the file (§5.2, `POST /{phone_number_id}/media`), then sends it by the media
    /// id: a picture as an image, anything else as a document under its name; captioned.
    async fn send_file(
        &self,
        chat: &str,
        file: &FileToSend,
        caption: Option<&str>,
        _reply_to: Option<&str>,
    ) -> Option<Result<String, ChannelError>> {
        let id = match self
            .upload_media(file.bytes.clone(), &file.mime_type, &file.file_name)
            .await
        {
            Ok(id) => id,
            Err(e) => return Some(Err(e)),
        };
        let media = MediaRef::Id(&id);
        Some(match file.as_image {
            true => {
                self.send_media(chat, MediaKind::Image, media, caption)
                    .await
            }
            false => {
                self.send_document(chat, media, &file.file_name, caption)
                    .await
            }
        })
    }

    /// The templates of the business account in `settings.waba_id`, when one is set.
    async fn templates(
        &self,
        settings: &SourceSettings,
    ) -> Option<Result<Vec<Template>, ChannelError>> {
        let waba = settings.waba_id.as_deref()?;
        Some(WhatsAppClient::templates(self, waba).await)
    }
}
