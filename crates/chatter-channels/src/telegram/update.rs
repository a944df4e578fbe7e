//! Telegram `Update` objects (spec §1.2) turned into provider-neutral `InboundEvent`s.

use serde::Deserialize;
use serde_json::Value;

use crate::{Attachment, ChatKind, ChatRef, Extra, InboundEvent, InboundMessage, Sender};

/// Service-message fields (spec §1.2): a message carrying one of these is a chat event, not
/// something a customer wrote.
const SERVICE_FIELDS: &[&str] = &[
    "new_chat_members",
    "left_chat_member",
    "new_chat_title",
    "new_chat_photo",
    "delete_chat_photo",
    "group_chat_created",
    "supergroup_chat_created",
    "channel_chat_created",
    "migrate_to_chat_id",
    "migrate_from_chat_id",
    "pinned_message",
    "message_auto_delete_timer_changed",
    "forum_topic_created",
    "forum_topic_edited",
    "forum_topic_closed",
    "forum_topic_reopened",
    "video_chat_started",
    "video_chat_ended",
    "video_chat_scheduled",
    "video_chat_participants_invited",
    "users_shared",
    "chat_shared",
    "write_access_allowed",
    "boost_added",
];

/// Content we cannot show; named in the `Ignored` reason so the cursor log says why.
const UNSUPPORTED_CONTENT: &[&str] = &["poll", "dice", "game", "story", "invoice", "giveaway"];

#[derive(Deserialize)]
struct User {
    id: i64,
    #[serde(default)]
    first_name: String,
    last_name: Option<String>,
    username: Option<String>,
    language_code: Option<String>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    title: Option<String>,
}

#[derive(Deserialize)]
struct FileRef {
    file_id: String,
    file_size: Option<i64>,
    file_name: Option<String>,
    mime_type: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    #[serde(default)]
    is_animated: bool,
    #[serde(default)]
    is_video: bool,
}

#[derive(Deserialize)]
struct Contact {
    phone_number: String,
    #[serde(default)]
    first_name: String,
    last_name: Option<String>,
    user_id: Option<i64>,
}

#[derive(Deserialize)]
struct Location {
    latitude: f64,
    longitude: f64,
}

#[derive(Deserialize)]
struct ReplyTo {
    message_id: i64,
    forum_topic_created: Option<Value>,
}

#[derive(Deserialize)]
struct Message {
    message_id: i64,
    date: i64,
    edit_date: Option<i64>,
    from: Option<User>,
    sender_chat: Option<Value>,
    chat: Chat,
    reply_to_message: Option<Box<ReplyTo>>,
    text: Option<String>,
    caption: Option<String>,
    photo: Option<Vec<FileRef>>,
    document: Option<FileRef>,
    voice: Option<FileRef>,
    audio: Option<FileRef>,
    video: Option<FileRef>,
    video_note: Option<FileRef>,
    sticker: Option<FileRef>,
    contact: Option<Contact>,
    location: Option<Location>,
}

#[derive(Deserialize)]
struct ChatMember {
    status: String,
}

#[derive(Deserialize)]
struct ChatMemberUpdated {
    chat: Chat,
    from: User,
    date: i64,
    new_chat_member: ChatMember,
}

/// Normalises one update (spec §1.2).
///
/// - Message external ids are `"{chat_id}:{message_id}"` (Telegram numbers messages per chat);
///   `sent_at` is Unix ms (`edit_date` for an `edited_message`, which keeps the same external id).
/// - Photo → its largest `PhotoSize`; document, voice, audio, video (and video notes), sticker →
///   attachments; a caption becomes the text; contact / location → `Extra`.
/// - Private chats → `ChatKind::Private` with the chat id; groups and supergroups → `Group` with
///   the title.
/// - `my_chat_member` in a private chat: `kicked` → `Blocked { blocked: true }`, `member` →
///   `Blocked { blocked: false }`, `at` in Unix ms.
/// - Channel posts, callback queries, service messages, group membership changes of the bot and
///   anything unknown → `Ignored` with a reason (the raw update stays with the caller).
pub fn parse_update(raw: &Value) -> InboundEvent {
    let Some(obj) = raw.as_object() else {
        return ignored("the update is not a JSON object");
    };
    // An Update carries exactly one optional field besides update_id.
    let Some((kind, body)) = obj.iter().find(|(k, _)| k.as_str() != "update_id") else {
        return ignored("the update carries no payload");
    };
    match kind.as_str() {
        "message" => parse_message(body, false),
        "edited_message" => parse_message(body, true),
        "my_chat_member" => parse_my_chat_member(body),
        "channel_post" | "edited_channel_post" => ignored("channel post"),
        "callback_query" => ignored("callback query"),
        other => ignored(&format!("update type {other} is not handled")),
    }
}

fn ignored(reason: &str) -> InboundEvent {
    InboundEvent::Ignored {
        reason: reason.to_owned(),
    }
}

fn full_name(first: &str, last: Option<&str>) -> String {
    format!("{} {}", first, last.unwrap_or(""))
        .trim()
        .to_owned()
}

fn sender_of(user: &User) -> Sender {
    Sender {
        external_id: user.id.to_string(),
        name: full_name(&user.first_name, user.last_name.as_deref()),
        username: user.username.clone(),
        phone: None,
        language: user.language_code.clone(),
    }
}

fn chat_ref(chat: &Chat) -> Option<ChatRef> {
    let kind = match chat.kind.as_str() {
        "private" => ChatKind::Private,
        "group" | "supergroup" => ChatKind::Group,
        _ => return None,
    };
    Some(ChatRef {
        external_id: chat.id.to_string(),
        kind,
        title: if kind == ChatKind::Group {
            chat.title.clone()
        } else {
            None
        },
    })
}

fn attachment(kind: &str, f: &FileRef, mime: Option<String>) -> Attachment {
    Attachment {
        kind: kind.to_owned(),
        file_ref: f.file_id.clone(),
        file_name: f.file_name.clone(),
        mime_type: mime.or_else(|| f.mime_type.clone()),
        size: f.file_size,
    }
}

fn sticker_mime(f: &FileRef) -> &'static str {
    if f.is_animated {
        "application/x-tgsticker"
    } else if f.is_video {
        "video/webm"
    } else {
        "image/webp"
    }
}

fn parse_message(body: &Value, edited: bool) -> InboundEvent {
    let m: Message = match Message::deserialize(body) {
        Ok(m) => m,
        Err(e) => return ignored(&format!("malformed message: {e}")),
    };
    let Some(chat) = chat_ref(&m.chat) else {
        return ignored(&format!("message in a {} chat", m.chat.kind));
    };
    if let Some(field) = SERVICE_FIELDS.iter().find(|f| body.get(**f).is_some()) {
        return ignored(&format!("service message: {field}"));
    }
    // Anonymous group admins and channels writing into a group: no person to answer.
    if m.sender_chat.is_some() {
        return ignored("message sent on behalf of a chat");
    }
    let Some(from) = &m.from else {
        return ignored("message without a sender");
    };

    let mut attachments = Vec::new();
    if let Some(largest) = m.photo.as_ref().and_then(|sizes| {
        // Ascending by size per the docs; compare areas anyway, the last wins a tie.
        sizes
            .iter()
            .max_by_key(|p| p.width.unwrap_or(0).saturating_mul(p.height.unwrap_or(0)))
    }) {
        attachments.push(attachment("photo", largest, None));
    }
    // An animation message also carries `document`, so GIFs arrive as documents.
    if let Some(f) = &m.document {
        attachments.push(attachment("document", f, None));
    }
    if let Some(f) = &m.voice {
        attachments.push(attachment("voice", f, None));
    }
    if let Some(f) = &m.audio {
        attachments.push(attachment("audio", f, None));
    }
    if let Some(f) = &m.video {
        attachments.push(attachment("video", f, None));
    }
    if let Some(f) = &m.video_note {
        attachments.push(attachment("video", f, Some("video/mp4".into())));
    }
    if let Some(f) = &m.sticker {
        attachments.push(attachment("sticker", f, Some(sticker_mime(f).into())));
    }

    let mut sender = sender_of(from);
    let extra = if let Some(c) = &m.contact {
        // A customer sharing their own contact tells us their phone.
        if c.user_id == Some(from.id) {
            sender.phone = Some(c.phone_number.clone());
        }
        Some(Extra::Contact {
            phone: c.phone_number.clone(),
            name: full_name(&c.first_name, c.last_name.as_deref()),
        })
    } else {
        m.location.as_ref().map(|l| Extra::Location {
            latitude: l.latitude,
            longitude: l.longitude,
        })
    };

    let text = m.text.or(m.caption);
    if text.is_none() && attachments.is_empty() && extra.is_none() {
        let what = UNSUPPORTED_CONTENT
            .iter()
            .find(|f| body.get(**f).is_some())
            .copied()
            .unwrap_or("unknown");
        return ignored(&format!("unsupported message content: {what}"));
    }

    // In forum groups every topic message "replies" to the topic's creation message.
    let reply_to_external_id = m
        .reply_to_message
        .filter(|r| r.forum_topic_created.is_none())
        .map(|r| format!("{}:{}", m.chat.id, r.message_id));

    let at = if edited {
        m.edit_date.unwrap_or(m.date)
    } else {
        m.date
    };
    InboundEvent::Message(InboundMessage {
        external_id: format!("{}:{}", m.chat.id, m.message_id),
        chat,
        sender,
        text,
        attachments,
        extra,
        reply_to_external_id,
        sent_at: at.saturating_mul(1000),
        edited,
    })
}

fn parse_my_chat_member(body: &Value) -> InboundEvent {
    let u: ChatMemberUpdated = match ChatMemberUpdated::deserialize(body) {
        Ok(u) => u,
        Err(e) => return ignored(&format!("malformed my_chat_member: {e}")),
    };
    if u.chat.kind != "private" {
        return ignored(&format!(
            "the bot's membership in a {} chat changed to {}",
            u.chat.kind, u.new_chat_member.status
        ));
    }
    let blocked = match u.new_chat_member.status.as_str() {
        "kicked" => true,
        "member" => false,
        other => return ignored(&format!("my_chat_member status {other} in a private chat")),
    };
    let Some(chat) = chat_ref(&u.chat) else {
        return ignored("my_chat_member without a usable chat");
    };
    InboundEvent::Blocked {
        chat,
        sender: sender_of(&u.from),
        blocked,
        at: u.date.saturating_mul(1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ivan() -> Value {
        json!({"id": 123456789, "is_bot": false, "first_name": "Иван", "last_name": "Петров",
               "username": "ivan", "language_code": "ru"})
    }

    fn private_chat() -> Value {
        json!({"id": 123456789, "type": "private", "first_name": "Иван", "username": "ivan"})
    }

    fn message(extra: Value) -> Value {
        let mut m = json!({"message_id": 42, "date": 1767225600, "from": ivan(),
                           "chat": private_chat()});
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                m.insert(k.clone(), v.clone());
            }
        }
        json!({"update_id": 880001, "message": m})
    }

    fn msg(ev: InboundEvent) -> InboundMessage {
        match ev {
            InboundEvent::Message(m) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn reason(ev: InboundEvent) -> String {
        match ev {
            InboundEvent::Ignored { reason } => reason,
            other => panic!("expected Ignored, got {other:?}"),
        }
    }

    #[test]
    fn private_text_message() {
        let m = msg(parse_update(&message(json!({"text": "Здравствуйте!"}))));
        assert_eq!(m.external_id, "123456789:42");
        assert_eq!(
            m.chat,
            ChatRef {
                external_id: "123456789".into(),
                kind: ChatKind::Private,
                title: None
            }
        );
        assert_eq!(
            m.sender,
            Sender {
                external_id: "123456789".into(),
                name: "Иван Петров".into(),
                username: Some("ivan".into()),
                phone: None,
                language: Some("ru".into()),
            }
        );
        assert_eq!(m.text.as_deref(), Some("Здравствуйте!"));
        assert_eq!(m.sent_at, 1_767_225_600_000);
        assert!(!m.edited);
        assert!(m.attachments.is_empty());
        assert_eq!(m.extra, None);
        assert_eq!(m.reply_to_external_id, None);
    }

    #[test]
    fn sender_name_without_last_name_is_trimmed() {
        let raw = json!({"update_id": 1, "message": {"message_id": 1, "date": 1,
            "from": {"id": 5, "is_bot": false, "first_name": "Ivan"},
            "chat": {"id": 5, "type": "private", "first_name": "Ivan"}, "text": "hi"}});
        let m = msg(parse_update(&raw));
        assert_eq!(m.sender.name, "Ivan");
        assert_eq!(m.sender.username, None);
    }

    #[test]
    fn group_and_supergroup_messages() {
        for (id, kind) in [(-4001234567_i64, "group"), (-1001234567890, "supergroup")] {
            let raw = json!({"update_id": 2, "message": {"message_id": 7, "date": 1767225600,
                "from": ivan(),
                "chat": {"id": id, "type": kind, "title": "Клиенты ООО Ромашка"},
                "text": "Добрый день, у кого можно уточнить цену?"}});
            let m = msg(parse_update(&raw));
            assert_eq!(m.external_id, format!("{id}:7"));
            assert_eq!(m.chat.kind, ChatKind::Group);
            assert_eq!(m.chat.external_id, id.to_string());
            assert_eq!(m.chat.title.as_deref(), Some("Клиенты ООО Ромашка"));
            assert_eq!(m.sender.external_id, "123456789");
        }
    }

    #[test]
    fn photo_with_caption_takes_the_largest_size() {
        let m = msg(parse_update(&message(json!({
            "photo": [
                {"file_id": "AgAC-small", "file_unique_id": "s", "file_size": 1200, "width": 90, "height": 67},
                {"file_id": "AgAC-medium", "file_unique_id": "m", "file_size": 15000, "width": 320, "height": 240},
                {"file_id": "AgAC-large", "file_unique_id": "l", "file_size": 98000, "width": 1280, "height": 960}
            ],
            "caption": "Вот фото поломки"
        }))));
        assert_eq!(m.text.as_deref(), Some("Вот фото поломки"));
        assert_eq!(
            m.attachments,
            vec![Attachment {
                kind: "photo".into(),
                file_ref: "AgAC-large".into(),
                file_name: None,
                mime_type: None,
                size: Some(98000),
            }]
        );
    }

    #[test]
    fn document_keeps_name_and_mime() {
        let m = msg(parse_update(&message(json!({
            "document": {"file_id": "BQAC-doc", "file_unique_id": "d", "file_name": "договор.pdf",
                         "mime_type": "application/pdf", "file_size": 52344}
        }))));
        assert_eq!(m.text, None);
        assert_eq!(
            m.attachments,
            vec![Attachment {
                kind: "document".into(),
                file_ref: "BQAC-doc".into(),
                file_name: Some("договор.pdf".into()),
                mime_type: Some("application/pdf".into()),
                size: Some(52344),
            }]
        );
    }

    #[test]
    fn voice_audio_video_sticker_are_attachments() {
        let m = msg(parse_update(&message(json!({
            "voice": {"file_id": "AwAC-voice", "file_unique_id": "v", "duration": 4,
                      "mime_type": "audio/ogg", "file_size": 9120}
        }))));
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].kind, "voice");
        assert_eq!(m.attachments[0].file_ref, "AwAC-voice");
        assert_eq!(m.attachments[0].mime_type.as_deref(), Some("audio/ogg"));

        let m = msg(parse_update(&message(json!({
            "audio": {"file_id": "CQAC", "file_unique_id": "a", "duration": 180,
                      "file_name": "song.mp3", "mime_type": "audio/mpeg"}
        }))));
        assert_eq!(m.attachments[0].kind, "audio");
        assert_eq!(m.attachments[0].file_name.as_deref(), Some("song.mp3"));

        let m = msg(parse_update(&message(json!({
            "video": {"file_id": "BAAC", "file_unique_id": "vi", "duration": 10, "width": 640,
                      "height": 480, "mime_type": "video/mp4"}, "caption": "видео"
        }))));
        assert_eq!(m.attachments[0].kind, "video");
        assert_eq!(m.text.as_deref(), Some("видео"));

        let m = msg(parse_update(&message(json!({
            "sticker": {"file_id": "CAAC", "file_unique_id": "st", "type": "regular",
                        "width": 512, "height": 512, "is_animated": false, "is_video": false,
                        "emoji": "👍"}
        }))));
        assert_eq!(m.attachments[0].kind, "sticker");
        assert_eq!(m.attachments[0].mime_type.as_deref(), Some("image/webp"));
    }

    #[test]
    fn own_contact_becomes_extra_and_the_senders_phone() {
        let m = msg(parse_update(&message(json!({
            "contact": {"phone_number": "+79161234567", "first_name": "Иван",
                        "last_name": "Петров", "user_id": 123456789}
        }))));
        assert_eq!(
            m.extra,
            Some(Extra::Contact {
                phone: "+79161234567".into(),
                name: "Иван Петров".into()
            })
        );
        assert_eq!(m.sender.phone.as_deref(), Some("+79161234567"));
        assert_eq!(m.text, None);
    }

    #[test]
    fn someone_elses_contact_does_not_set_the_senders_phone() {
        let m = msg(parse_update(&message(json!({
            "contact": {"phone_number": "+79990000000", "first_name": "Мария"}
        }))));
        assert_eq!(
            m.extra,
            Some(Extra::Contact {
                phone: "+79990000000".into(),
                name: "Мария".into()
            })
        );
        assert_eq!(m.sender.phone, None);
    }

    #[test]
    fn location_becomes_extra() {
        let m = msg(parse_update(&message(json!({
            "location": {"latitude": 55.751244, "longitude": 37.618423}
        }))));
        assert_eq!(
            m.extra,
            Some(Extra::Location {
                latitude: 55.751244,
                longitude: 37.618423
            })
        );
    }

    #[test]
    fn reply_points_at_the_replied_message_in_the_same_chat() {
        let m = msg(parse_update(&message(json!({
            "text": "Да, именно этот",
            "reply_to_message": {"message_id": 40, "date": 1767225500, "from": ivan(),
                                 "chat": private_chat(), "text": "Какой заказ?"}
        }))));
        assert_eq!(m.reply_to_external_id.as_deref(), Some("123456789:40"));
    }

    #[test]
    fn edited_message_keeps_the_id_and_uses_edit_date() {
        let raw = json!({"update_id": 880002, "edited_message": {"message_id": 42,
            "date": 1767225600, "edit_date": 1767225660, "from": ivan(),
            "chat": private_chat(), "text": "Здравствуйте! (исправлено)"}});
        let m = msg(parse_update(&raw));
        assert!(m.edited);
        assert_eq!(m.external_id, "123456789:42");
        assert_eq!(m.sent_at, 1_767_225_660_000);
        assert_eq!(m.text.as_deref(), Some("Здравствуйте! (исправлено)"));
    }

    fn my_chat_member(chat: Value, old: &str, new: &str) -> Value {
        json!({"update_id": 880003, "my_chat_member": {
            "chat": chat, "from": ivan(), "date": 1767226000,
            "old_chat_member": {"status": old, "user": {"id": 777, "is_bot": true, "first_name": "Shop bot", "username": "shop_bot"}},
            "new_chat_member": {"status": new, "user": {"id": 777, "is_bot": true, "first_name": "Shop bot", "username": "shop_bot"}, "until_date": 0}
        }})
    }

    #[test]
    fn my_chat_member_kicked_and_member_in_private_chat() {
        let ev = parse_update(&my_chat_member(private_chat(), "member", "kicked"));
        let InboundEvent::Blocked {
            chat,
            sender,
            blocked,
            at,
        } = ev
        else {
            panic!("expected Blocked, got {ev:?}");
        };
        assert!(blocked);
        assert_eq!(chat.external_id, "123456789");
        assert_eq!(chat.kind, ChatKind::Private);
        assert_eq!(sender.external_id, "123456789");
        assert_eq!(at, 1_767_226_000_000);

        let ev = parse_update(&my_chat_member(private_chat(), "kicked", "member"));
        assert!(matches!(ev, InboundEvent::Blocked { blocked: false, .. }));
    }

    #[test]
    fn my_chat_member_in_a_group_is_ignored() {
        let group = json!({"id": -4001234567_i64, "type": "group", "title": "Клиенты"});
        let r = reason(parse_update(&my_chat_member(group, "member", "left")));
        assert!(r.contains("group"), "{r}");
    }

    #[test]
    fn channel_post_is_ignored() {
        let raw = json!({"update_id": 880004, "channel_post": {"message_id": 3,
            "date": 1767225600, "sender_chat": {"id": -1009876543210_i64, "type": "channel",
            "title": "Новости"}, "chat": {"id": -1009876543210_i64, "type": "channel",
            "title": "Новости"}, "text": "Акция!"}});
        assert_eq!(reason(parse_update(&raw)), "channel post");
    }

    #[test]
    fn callback_query_is_ignored() {
        let raw = json!({"update_id": 880005, "callback_query": {"id": "4382bfdwdsb323b2d9",
            "from": ivan(), "chat_instance": "-123", "data": "order:1",
            "message": {"message_id": 50, "date": 1767225600, "chat": private_chat(), "text": "Выберите"}}});
        assert_eq!(reason(parse_update(&raw)), "callback query");
    }

    #[test]
    fn service_messages_are_ignored() {
        let raw = json!({"update_id": 880006, "message": {"message_id": 8, "date": 1767225600,
            "from": ivan(), "chat": {"id": -4001234567_i64, "type": "group", "title": "Клиенты"},
            "new_chat_members": [{"id": 555, "is_bot": false, "first_name": "Пётр"}]}});
        assert_eq!(
            reason(parse_update(&raw)),
            "service message: new_chat_members"
        );
    }

    #[test]
    fn unknown_and_malformed_updates_are_ignored() {
        assert!(reason(parse_update(&json!({"update_id": 9, "poll": {}}))).contains("poll"));
        assert!(reason(parse_update(&json!({"update_id": 9}))).contains("no payload"));
        assert!(reason(parse_update(&json!([1, 2]))).contains("not a JSON object"));
        assert!(reason(parse_update(
            &json!({"update_id": 9, "message": {"text": "x"}})
        ))
        .contains("malformed"));
        assert!(reason(parse_update(&message(
            json!({"dice": {"emoji": "🎲", "value": 3}})
        )))
        .contains("dice"));
    }

    /// Found by fuzzing (`telegram_webhook`): sizes whose area overflows an i64 panicked.
    #[test]
    fn photo_sizes_whose_area_overflows_still_pick_one() {
        let m = msg(parse_update(&message(json!({"photo": [
            {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 67},
            {"file_id": "huge", "file_unique_id": "h", "width": 4611686018427387904_i64, "height": 4}
        ]}))));
        assert_eq!(m.attachments[0].file_ref, "huge");
    }
}
