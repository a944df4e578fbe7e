//! The HTML fragments the inbox page and its live stream share: a conversation row of the list
//! and a message of the thread, with what they show in the reader's language (previews, times,
//! why a reply failed and where to fix it).

use askama::Template;
use chatter_core::attachments::{attachments_of, StoredAttachment};
use chatter_core::inbox::ConversationRow;
use chatter_domain::{ConversationId, ConversationStatus, Direction, MessageStatus};
use chatter_store::entity::{label, message};
use uuid::Uuid;

/// A conversation row as the list shows it.
#[derive(Template)]
#[template(path = "inbox/_row.html")]
pub struct RowTpl {
    pub r: ConversationRow,
    pub active: bool,
    pub lang: crate::i18n::Tr,
    pub assignee: String,
}

/// The open conversation's labels in its header: each with its remove button, and the form
/// that adds one of the others (shared with the live stream, which replaces it).
#[derive(Template)]
#[template(path = "inbox/_labels.html")]
pub struct HeadLabelsTpl {
    pub conversation: ConversationId,
    pub on: Vec<label::Model>,
    pub off: Vec<label::Model>,
    pub lang: crate::i18n::Tr,
    pub csrf: String,
    pub can_reply: bool,
}

impl HeadLabelsTpl {
    /// `on` the conversation's labels, out of the company's `all`.
    pub fn html(
        conversation: ConversationId,
        on: &[label::Model],
        all: &[label::Model],
        lang: crate::i18n::Tr,
        csrf: &str,
        can_reply: bool,
    ) -> String {
        HeadLabelsTpl {
            conversation,
            on: on.to_vec(),
            off: all
                .iter()
                .filter(|l| !on.iter().any(|o| o.id == l.id))
                .cloned()
                .collect(),
            lang,
            csrf: csrf.to_owned(),
            can_reply,
        }
        .render()
        .unwrap_or_default()
    }
}

/// One message in the thread.
#[derive(Template)]
#[template(path = "inbox/_message.html")]
pub struct MessageTpl {
    pub m: message::Model,
    pub atts: Vec<StoredAttachment>,
    pub lang: crate::i18n::Tr,
    pub csrf: String,
    pub can_reply: bool,
    /// Sent by this auto-reply rule (its name, and a badge, stand for the author).
    pub auto_rule: Option<String>,
}

/// An internal note in the thread: looks unlike any message and says only the team sees it.
#[derive(Template)]
#[template(path = "inbox/_note.html")]
pub struct NoteTpl {
    pub n: chatter_core::inbox::NoteView,
    pub lang: crate::i18n::Tr,
}

impl NoteTpl {
    pub fn time(&self) -> String {
        fmt_time(self.n.created_at)
    }
}

pub(crate) fn note_html(n: chatter_core::inbox::NoteView, lang: crate::i18n::Tr) -> String {
    NoteTpl { n, lang }.render().unwrap_or_default()
}

impl MessageTpl {
    pub fn new(m: message::Model, lang: crate::i18n::Tr, csrf: &str, can_reply: bool) -> Self {
        Self {
            atts: attachments_of(&m),
            m,
            lang,
            csrf: csrf.to_string(),
            can_reply,
            auto_rule: None,
        }
    }
    pub fn time(&self) -> String {
        fmt_time(self.m.sent_at.unwrap_or(self.m.created_at))
    }
    pub fn extra_text(&self) -> String {
        let Some(e) = self
            .m
            .extra
            .as_deref()
            .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        else {
            return String::new();
        };
        match e.get("type").and_then(|t| t.as_str()) {
            Some("contact") => format!(
                "☎ {} {}",
                e["name"].as_str().unwrap_or(""),
                e["phone"].as_str().unwrap_or("")
            ),
            Some("location") => format!("📍 {}, {}", e["latitude"], e["longitude"]),
            Some("template") => format!(
                "📋 {} «{}»",
                self.lang.t("inbox.wa_template"),
                e["name"].as_str().unwrap_or("")
            ),
            _ => String::new(),
        }
    }
    /// Why a reply failed (or is being retried), in the reader's language, with the
    /// provider's own words kept for anything we do not recognise.
    pub fn error_text(&self) -> String {
        let Some(e) = self.m.error.as_deref() else {
            return String::new();
        };
        let t = |k| self.lang.t(k).to_string();
        if e == chatter_core::billing::gate::PAUSED {
            t("inbox.err_billing_paused")
        } else if e.contains("blocked by the user") {
            t("inbox.err_blocked")
        } else if e.contains("token was revoked") || e.contains("Unauthorized") {
            t("inbox.err_revoked")
        } else if e.starts_with("retrying") {
            t("inbox.err_retrying")
        } else if e.contains("(code 131047)") || e.contains("24-hour window") {
            t("inbox.err_wa_window")
        } else if e.contains("source is turned off") {
            t("inbox.err_disabled")
        } else if e == chatter_core::sources::api::NO_WEBHOOK {
            t("inbox.err_api_no_webhook")
        } else if e.starts_with("gave up") {
            t("inbox.err_gave_up")
        } else {
            // The provider's own words stay in the tooltip: they are English.
            t("inbox.err_other")
        }
    }

    /// Where the person fixes what made the reply fail, with the link's text.
    pub fn fix_link(&self) -> Option<(String, &'static str)> {
        let e = self.m.error.as_deref()?;
        if e == chatter_core::billing::gate::PAUSED && self.m.status == MessageStatus::Pending {
            return Some(("/app/billing".into(), self.lang.t("inbox.fix_billing")));
        }
        if self.m.status != MessageStatus::Failed {
            return None;
        }
        if e == chatter_core::sources::api::NO_WEBHOOK {
            Some((
                format!("/app/api-sources/{}#webhook", self.m.source_id),
                self.lang.t("inbox.fix_api_webhook"),
            ))
        } else if e.contains("token was revoked")
            || e.contains("Unauthorized")
            || e.contains("source is turned off")
        {
            Some((
                format!("/app/sources/{}", self.m.source_id),
                self.lang.t("inbox.fix_source"),
            ))
        } else {
            None
        }
    }

    /// Shown as a picture: only a file whose bytes were found to be PNG, JPEG, GIF or WebP
    /// when it was downloaded, whatever the provider called it.
    pub fn is_image(a: &StoredAttachment) -> bool {
        a.raster.is_some()
    }
}

impl RowTpl {
    /// The list preview: the stored text, or for a message without text (stored as `[photo]`,
    /// `[contact/location]`…) its kind in the reader's language.
    pub fn preview(&self) -> String {
        let t = self.r.conversation.last_text.as_str();
        let key = match t {
            "[photo]" => "preview.photo",
            "[document]" => "preview.document",
            "[voice]" => "preview.voice",
            "[audio]" => "preview.audio",
            "[video]" => "preview.video",
            "[video_note]" => "preview.video_note",
            "[sticker]" => "preview.sticker",
            "[animation]" => "preview.animation",
            "[contact/location]" => "preview.contact_location",
            _ => return t.to_owned(),
        };
        self.lang.t(key).to_owned()
    }

    pub fn time(&self) -> String {
        fmt_time(self.r.conversation.last_message_at)
    }
}

pub(crate) fn fmt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono_tz::Europe::Moscow)
                .format("%d.%m %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

pub(super) fn row_html(
    r: ConversationRow,
    active: bool,
    ctx_lang: crate::i18n::Tr,
    members: &[(Uuid, String)],
) -> String {
    let assignee = r
        .conversation
        .assignee_id
        .and_then(|a| members.iter().find(|m| m.0 == a).map(|m| m.1.clone()))
        .unwrap_or_default();
    RowTpl {
        r,
        active,
        lang: ctx_lang,
        assignee,
    }
    .render()
    .unwrap_or_default()
}
