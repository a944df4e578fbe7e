//! Every user-visible string, in Russian (the default) and English.

use std::collections::HashMap;
use std::sync::LazyLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Ru,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Lang {
        if s.trim().eq_ignore_ascii_case("en") {
            Lang::En
        } else {
            Lang::Ru
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }
}

/// A translator bound to one language.
#[derive(Clone, Copy, Debug)]
pub struct Tr(pub Lang);

impl Tr {
    /// The text for `key`; an unknown key shows as itself (and a test keeps that from happening).
    pub fn t(&self, key: &str) -> &'static str {
        match TABLE.get(key) {
            Some((ru, en)) => match self.0 {
                Lang::Ru => ru,
                Lang::En => en,
            },
            None => {
                tracing::warn!(key, "missing translation");
                "?"
            }
        }
    }
}

impl Tr {
    /// The message of a refused field, with the limit it names filled in.
    pub fn field(&self, e: &chatter_domain::FieldError) -> String {
        let text = self.t(e.key);
        match e.limit {
            Some(n) => text.replace("{n}", &n.to_string()),
            None => text.to_owned(),
        }
    }
}

/// Whether a key is in the table (for tests).
pub fn has(key: &str) -> bool {
    TABLE.contains_key(key)
}

/// Flash codes allowed in `?ok=` map to these keys.
pub fn flash_key(code: &str) -> Option<&'static str> {
    let key: &'static str = match code {
        "saved" => "flash.saved",
        "invited" => "flash.invited",
        "password_changed" => "flash.password_changed",
        "password_reset" => "flash.password_reset",
        "reset_sent" => "flash.reset_sent",
        "signed_out_everywhere" => "flash.signed_out_everywhere",
        "twofa_disabled" => "flash.twofa_disabled",
        "role_changed" => "flash.role_changed",
        "removed" => "flash.removed",
        "revoked" => "flash.revoked",
        "backup_done" => "flash.backup_done",
        "joined" => "flash.joined",
        "switched" => "flash.switched",
        "company_created" => "flash.company_created",
        "crm_connect_first" => "flash.crm_connect_first",
        "telegram_linked" => "flash.telegram_linked",
        "job_retried" => "flash.job_retried",
        "crm_connected" => "flash.crm_connected",
        "crm_import_started" => "flash.crm_import_started",
        "retrying" => "flash.retrying",
        "dead_retried" => "flash.dead_retried",
        "dead_still_refused" => "flash.dead_still_refused",
        "dead_deleted" => "flash.dead_deleted",
        "export_started" => "flash.export_started",
        "hours_reset" => "flash.hours_reset",
        "label_deleted" => "flash.label_deleted",
        "template_deleted" => "flash.template_deleted",
        "billing_changed" => "flash.billing_changed",
        "plan_saved" => "flash.plan_saved",
        _ => return None,
    };
    Some(key)
}

/// Every table of (key, Russian, English).
const TABLES: &[&[(&str, &str, &str)]] = &[
    crate::i18n_table::ENTRIES,
    crate::i18n_sources::ENTRIES,
    crate::i18n_automation::ENTRIES,
    crate::i18n_auto_replies::ENTRIES,
    crate::i18n_card::ENTRIES,
    crate::i18n_notes::ENTRIES,
    crate::i18n_labels::ENTRIES,
    crate::i18n_scheduled::ENTRIES,
    crate::i18n_billing::ENTRIES,
    crate::i18n_files::ENTRIES,
    crate::i18n_templates::ENTRIES,
    crate::i18n_sms15::ENTRIES,
    crate::i18n_tgp::ENTRIES,
    crate::i18n_crm15::ENTRIES,
    crate::i18n_auto14::ENTRIES,
];

static TABLE: LazyLock<HashMap<&'static str, (&'static str, &'static str)>> = LazyLock::new(|| {
    TABLES
        .iter()
        .flat_map(|t| t.iter())
        .map(|(k, ru, en)| (*k, (*ru, *en)))
        .collect()
});

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn no_key_is_in_two_tables_or_twice() {
        let mut seen = HashSet::new();
        let twice: Vec<&str> = super::TABLES
            .iter()
            .flat_map(|t| t.iter())
            .filter(|(k, _, _)| !seen.insert(*k))
            .map(|(k, _, _)| *k)
            .collect();
        assert!(twice.is_empty(), "translated twice: {twice:?}");
        assert!(seen.contains("kind.telegram_bot") && seen.contains("auth.sign_in"));
    }
}
