//! Source kinds (requirement R1). The numeric ids are part of the data model and the API.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    TelegramBot,
    TelegramPrivate,
    VkBot,
    MaxBot,
    Avito,
    Api,
    Whatsapp,
    SipoutSms,
    TelegramParsing,
}

impl SourceKind {
    pub const ALL: [SourceKind; 9] = [
        SourceKind::TelegramBot,
        SourceKind::TelegramPrivate,
        SourceKind::VkBot,
        SourceKind::MaxBot,
        SourceKind::Avito,
        SourceKind::Api,
        SourceKind::Whatsapp,
        SourceKind::SipoutSms,
        SourceKind::TelegramParsing,
    ];

    /// The stable numeric id (there is no 9).
    pub fn id(self) -> i32 {
        match self {
            SourceKind::TelegramBot => 1,
            SourceKind::TelegramPrivate => 2,
            SourceKind::VkBot => 3,
            SourceKind::MaxBot => 4,
            SourceKind::Avito => 5,
            SourceKind::Api => 6,
            SourceKind::Whatsapp => 7,
            SourceKind::SipoutSms => 8,
            SourceKind::TelegramParsing => 10,
        }
    }

    pub fn from_id(id: i32) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.id() == id)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::TelegramBot => "telegram_bot",
            SourceKind::TelegramPrivate => "telegram_private",
            SourceKind::VkBot => "vk_bot",
            SourceKind::MaxBot => "max_bot",
            SourceKind::Avito => "avito",
            SourceKind::Api => "api",
            SourceKind::Whatsapp => "whatsapp",
            SourceKind::SipoutSms => "sipout_sms",
            SourceKind::TelegramParsing => "telegram_parsing",
        }
    }

    /// The name a CRM shows for this kind when no connector of it exists yet to say (Telegram
    /// private accounts and Telegram group parsing); `None` for the kinds whose connector names
    /// itself.
    pub fn fallback_crm_label(self) -> Option<&'static str> {
        match self {
            SourceKind::TelegramPrivate => Some("Telegram"),
            SourceKind::TelegramParsing => Some("Telegram-группы"),
            _ => None,
        }
    }

    /// The translation key of this kind's name (`kind.telegram_bot` …).
    pub fn label_key(self) -> &'static str {
        match self {
            SourceKind::TelegramBot => "kind.telegram_bot",
            SourceKind::TelegramPrivate => "kind.telegram_private",
            SourceKind::VkBot => "kind.vk_bot",
            SourceKind::MaxBot => "kind.max_bot",
            SourceKind::Avito => "kind.avito",
            SourceKind::Api => "kind.api",
            SourceKind::Whatsapp => "kind.whatsapp",
            SourceKind::SipoutSms => "kind.sipout_sms",
            SourceKind::TelegramParsing => "kind.telegram_parsing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_nine_is_unused() {
        for k in SourceKind::ALL {
            assert_eq!(SourceKind::from_id(k.id()), Some(k));
        }
        assert_eq!(SourceKind::from_id(9), None);
        assert_eq!(SourceKind::TelegramParsing.id(), 10);
    }

    #[test]
    fn only_kinds_without_a_connector_have_a_fallback_crm_label() {
        assert_eq!(
            SourceKind::TelegramPrivate.fallback_crm_label(),
            Some("Telegram")
        );
        assert_eq!(
            SourceKind::TelegramParsing.fallback_crm_label(),
            Some("Telegram-группы")
        );
        assert_eq!(SourceKind::TelegramBot.fallback_crm_label(), None);
    }

    #[test]
    fn every_label_key_is_kind_dot_its_name() {
        for k in SourceKind::ALL {
            assert_eq!(k.label_key(), format!("kind.{}", k.as_str()));
        }
    }
}
