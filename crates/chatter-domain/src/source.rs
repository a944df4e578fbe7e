//! Source kinds (MISSION R1). The numeric ids are part of the data model and the API.

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
}
