//! One connected personal account as a live source. It has no webhook: its runner is core's
//! poller (one per source across the nodes, under the source's lease), which calls `poll` to
//! pull the account's updates from the stored position; the position advances only with the
//! stored events, so a restart neither loses nor repeats a message. Private chats with people
//! become conversations; groups, channels and (unless configured) other businesses' bots do
//! not. What the person writes from their phone is mirrored as outgoing.

use super::{
    gateway, random_id, Account, ApiCredentials, Me, OutFile, PeerKind, Session, TelegramGateway,
    TgMessage, TgUser, MAX_TEXT,
};
use crate::common::send_in_parts;
use crate::{
    Attachment, BuildError, ChannelError, ChatKind, ChatRef, Connector, Credentials, Download,
    FileToSend, HookSite, Identity, InboundEvent, InboundMessage, KindEnv, OutboundMessage, Part,
    PollState, Polled, SaveSettings, Sender, Sent, SourceSettings,
};
use std::sync::Arc;

/// The live source of one account.
pub(super) struct PersonalClient {
    gateway: Arc<dyn TelegramGateway>,
    account: Account,
    include_bots: bool,
}

/// The connector of one account from its stored credentials: the session in `token`, the
/// api_id in `client_id`, the api_hash in `app_secret`.
pub(super) fn build(
    env: &KindEnv,
    creds: &Credentials,
    _settings: &SourceSettings,
) -> Result<Arc<dyn Connector>, BuildError> {
    let gateway = gateway(env).ok_or(BuildError::Settings(
        "no Telegram gateway is configured ([telegram_personal] gateway_url)",
    ))?;
    let api_id = creds
        .client_id
        .as_deref()
        .and_then(|id| id.parse().ok())
        .ok_or(BuildError::Settings("the account's api_id is missing"))?;
    Ok(Arc::new(PersonalClient {
        gateway,
        account: Account {
            api: ApiCredentials {
                api_id,
                api_hash: creds.app_secret.clone().unwrap_or_default(),
            },
            session: Session(creds.token.clone()),
        },
        include_bots: env.config.telegram_personal.include_bots,
    }))
}

/// The person an account is, as the Sources page names it.
pub(super) fn identity(me: &Me) -> Identity {
    Identity {
        id: me.id.to_string(),
        name: me.full_name(),
        username: me.username.clone(),
    }
}

fn peer_of(chat: &str) -> Result<i64, ChannelError> {
    chat.parse()
        .map_err(|_| ChannelError::Permanent(format!("not a Telegram chat id: {chat}")))
}

/// What one message of the account's updates becomes: a customer's message in a private chat,
/// the person's own message from their phone (mirrored), or a position to skip.
pub(super) fn event_of(m: &TgMessage, include_bots: bool) -> InboundEvent {
    let skip = |reason: &str| InboundEvent::Ignored {
        reason: reason.to_owned(),
    };
    match m.peer.kind {
        PeerKind::Group | PeerKind::Channel => {
            return skip("a group or channel: not a conversation of a personal account")
        }
        PeerKind::Bot if !include_bots => return skip("a chat with a bot (ignored by setting)"),
        _ => {}
    }
    // In a private chat the other side is the peer, whoever wrote; the person's own messages
    // carry no name of the customer (core keeps the one it has).
    let from = if m.out {
        TgUser {
            id: m.peer.id,
            ..TgUser::default()
        }
    } else {
        m.from.clone().unwrap_or_default()
    };
    let name = match &from.last_name {
        Some(l) if !l.is_empty() => format!("{} {l}", from.first_name),
        _ => from.first_name.clone(),
    };
    let message = InboundMessage {
        external_id: m.id.to_string(),
        chat: ChatRef {
            external_id: m.peer.id.to_string(),
            kind: ChatKind::Private,
            title: None,
        },
        sender: Sender {
            external_id: m.peer.id.to_string(),
            name,
            username: from.username,
            phone: from.phone,
            language: None,
        },
        text: m.text.clone().filter(|t| !t.is_empty()),
        attachments: m
            .media
            .iter()
            .map(|md| Attachment {
                kind: md.kind.clone(),
                file_ref: md.media_ref.clone(),
                file_name: md.file_name.clone(),
                mime_type: md.mime_type.clone(),
                size: md.size,
            })
            .collect(),
        extra: None,
        reply_to_external_id: m.reply_to.map(|r| r.to_string()),
        sent_at: m.date.saturating_mul(1000),
        edited: false,
    };
    if m.out {
        InboundEvent::Mirrored(message)
    } else {
        InboundEvent::Message(message)
    }
}

#[async_trait::async_trait]
impl crate::Channel for PersonalClient {
    async fn identify(&self) -> Result<Identity, ChannelError> {
        Ok(identity(&self.gateway.get_me(&self.account).await?))
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError> {
        send_in_parts(self, m).await
    }

    async fn download(&self, file_ref: &str) -> Result<Download, ChannelError> {
        Ok(self.gateway.download_media(&self.account, file_ref).await?)
    }
}

#[async_trait::async_trait]
impl Connector for PersonalClient {
    fn max_text(&self) -> usize {
        MAX_TEXT
    }

    async fn send_part(&self, p: Part<'_>) -> Result<String, ChannelError> {
        let peer = peer_of(p.chat)?;
        let reply_to = p.reply_to.and_then(|r| r.parse().ok());
        let id = self
            .gateway
            .send_text(
                &self.account,
                peer,
                p.text,
                reply_to,
                random_id(p.key, p.index),
            )
            .await?;
        Ok(id.to_string())
    }

    async fn send_file(
        &self,
        chat: &str,
        file: &FileToSend,
        caption: Option<&str>,
        _reply_to: Option<&str>,
    ) -> Option<Result<String, ChannelError>> {
        let peer = match peer_of(chat) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let out = OutFile {
            bytes: &file.bytes,
            file_name: &file.file_name,
            mime_type: &file.mime_type,
            as_photo: file.as_image,
        };
        let sent = self
            .gateway
            .send_file(&self.account, peer, out, caption, random_id(&file.key, 0))
            .await;
        Some(sent.map(|id| id.to_string()).map_err(ChannelError::from))
    }

    /// Checks the session is alive and names the account; updates are always pulled.
    async fn setup(
        &self,
        _site: &HookSite<'_>,
        settings: &mut SourceSettings,
        _save: &dyn SaveSettings,
    ) -> Result<(), ChannelError> {
        let me = self.gateway.get_me(&self.account).await?;
        let who = identity(&me);
        settings.bot_id = who.id;
        settings.bot_name = who.name;
        settings.bot_username = who.username;
        settings.webhook_url = None;
        settings.mode = "polling".into();
        Ok(())
    }

    async fn poll(
        &self,
        cursor: Option<&str>,
        _state: &mut PollState,
        wait_secs: u32,
    ) -> Result<Polled, ChannelError> {
        let u = self
            .gateway
            .updates(&self.account, cursor, wait_secs)
            .await?;
        let events = u
            .messages
            .iter()
            .map(|m| event_of(m, self.include_bots))
            .collect();
        let moved = (Some(u.state.as_str()) != cursor && !u.state.is_empty()).then_some(u.state);
        Ok(Polled::new(events, moved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telegram_personal::{Media, Peer};

    fn msg(kind: PeerKind, out: bool) -> TgMessage {
        TgMessage {
            id: 41,
            peer: Peer { id: 7, kind },
            out,
            from: Some(TgUser {
                id: 7,
                first_name: "Ольга".into(),
                last_name: Some("Смирнова".into()),
                username: Some("olga".into()),
                phone: None,
            }),
            text: Some("Здравствуйте".into()),
            date: 1_700_000_000,
            media: Some(Media {
                kind: "photo".into(),
                media_ref: "m1".into(),
                ..Media::default()
            }),
            reply_to: Some(40),
        }
    }

    #[test]
    fn a_customer_in_a_private_chat_becomes_a_message() {
        let InboundEvent::Message(m) = event_of(&msg(PeerKind::User, false), false) else {
            panic!("a message");
        };
        assert_eq!(
            (m.external_id.as_str(), m.chat.external_id.as_str()),
            ("41", "7")
        );
        assert_eq!(m.sender.name, "Ольга Смирнова");
        assert_eq!(m.sent_at, 1_700_000_000_000);
        assert_eq!(m.attachments[0].file_ref, "m1");
        assert_eq!(m.reply_to_external_id.as_deref(), Some("40"));
    }

    #[test]
    fn the_persons_own_message_is_mirrored_in_the_customers_chat() {
        let InboundEvent::Mirrored(m) = event_of(&msg(PeerKind::User, true), false) else {
            panic!("mirrored");
        };
        assert_eq!(m.sender.external_id, "7");
        assert_eq!(m.sender.name, "", "the customer's name is not the person's");
        assert_eq!(m.text.as_deref(), Some("Здравствуйте"));
    }

    #[test]
    fn groups_channels_and_bots_are_skipped() {
        for (kind, out, bots) in [
            (PeerKind::Group, false, true),
            (PeerKind::Channel, true, true),
            (PeerKind::Bot, false, false),
        ] {
            assert!(
                matches!(
                    event_of(&msg(kind, out), bots),
                    InboundEvent::Ignored { .. }
                ),
                "{kind:?} {out}"
            );
        }
        assert!(matches!(
            event_of(&msg(PeerKind::Bot, false), true),
            InboundEvent::Message(_)
        ));
    }
}
