//! Source kinds (requirement R1). The numeric ids are part of the data model and the API.
//!
//! With the `sea-orm` feature the enum is a SeaORM active enum over the integer column
//! `sources.kind`, stored as the same numbers as always; a number that is no kind fails the read
//! loudly instead of turning into some default.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum)
)]
#[cfg_attr(feature = "sea-orm", sea_orm(rs_type = "i32", db_type = "Integer"))]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    #[cfg_attr(feature = "sea-orm", sea_orm(num_value = 1))]
    TelegramBot,
    #[cfg_attr(feature = "sea-orm", sea_orm(num_value = 2))]
    TelegramPrivate,
    #[cfg_attr(feature = "sea-orm", sea_orm(num_value = 3))]
    VkBot,
    #[cfg_attr(feature = "sea-orm", sea_orm(num_value = 4))]
    MaxBot,
    #[cfg_attr(feature = "sea-orm", sea_orm(num_value = 5))]
    Avito,
    #[cfg_attr(feature = "sea-orm", sea_orm(num_value = 6))]
    Api,
    #[cfg_attr(feature = "sea-orm", sea_orm(num_value = 7))]
    Whatsapp,
    #[cfg_attr(feature = "sea-orm", sea_orm(num_value = 8))]
    SipoutSms,
    #[cfg_attr(feature = "sea-orm", sea_orm(num_value = 10))]
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

    /// The stable numeric id (there is no 9); the same number the `sea-orm` feature stores.
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

    /// The kind of a number from outside (a form, a query string); `None` for no kind.
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

#[cfg(all(test, feature = "sea-orm"))]
mod stored {
    use super::SourceKind;
    use sea_orm::ActiveEnum;

    #[test]
    fn the_column_holds_the_kind_numbers_and_refuses_others() {
        for k in SourceKind::ALL {
            assert_eq!(k.to_value(), k.id());
            assert_eq!(SourceKind::try_from_value(&k.id()).ok(), Some(k));
        }
        let e = SourceKind::try_from_value(&9).expect_err("9 is no kind");
        assert!(e.to_string().contains('9'), "{e}");
    }
}
