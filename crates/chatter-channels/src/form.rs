//! The add-source form, kind-blind: the fields a kind asks for (`FormField`), the values a
//! person sent (`FormValues`), what a kind needs to check them with its provider (`FormEnv`)
//! and what the check gives back (`Validated`, or a `FormRefusal`). Each kind describes and
//! checks its own form in `<kind>/form.rs`; core bounds every value and stores the result,
//! web renders the fields.

use crate::{ChannelError, Credentials, Identity, SourceSettings};
use std::collections::BTreeMap;

/// One input of a kind's add-source form, in the order the form shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormField {
    /// The form field's name, also the key of its errors (`vk_token`).
    pub name: &'static str,
    /// The translation key of its label.
    pub label_key: &'static str,
    /// The translation key of a hint shown under it, if any.
    pub hint_key: Option<&'static str>,
    /// A credential: its value is never sent back to the page, not even after an error.
    pub secret: bool,
    /// Shown as a password input (dots instead of characters).
    pub masked: bool,
    /// The form cannot be sent without it.
    pub required: bool,
    /// The most characters the input takes.
    pub max_len: u32,
    /// An example of what to type, shown greyed in the empty input (not translated).
    pub placeholder: Option<&'static str>,
    /// Digits only: phones and tablets offer their number keyboard.
    pub numeric: bool,
    /// A choice among these (value, label shown as is); empty: a text input. The first is the
    /// default, and an absent value means it.
    pub choices: &'static [(&'static str, &'static str)],
}

impl FormField {
    /// A required, plain, 512-character field named `name` labelled `label_key`; the other
    /// facts are set with struct update syntax.
    pub const fn new(name: &'static str, label_key: &'static str) -> Self {
        FormField {
            name,
            label_key,
            hint_key: None,
            secret: false,
            masked: false,
            required: true,
            max_len: 512,
            placeholder: None,
            numeric: false,
            choices: &[],
        }
    }
}

/// The values a person typed into a kind's form, by field name (fields not sent read empty).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FormValues(pub BTreeMap<String, String>);

impl FormValues {
    /// The value of field `name` as typed (empty when it was not sent).
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }

    /// The value of field `name` without the spaces around it.
    pub fn trimmed(&self, name: &str) -> &str {
        self.get(name).trim()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for FormValues {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        FormValues(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl std::fmt::Debug for FormValues {
    /// Names only: the values are credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A form the provider accepted: what to store.
#[derive(Clone, Debug)]
pub struct Validated {
    /// The credentials to store, with a fresh webhook secret.
    pub credentials: Credentials,
    /// Whom the credentials belong to (its `id` is what duplicates are found by).
    pub identity: Identity,
    /// Settings taken from the form rather than from the provider (WhatsApp's business
    /// account, the SMS sender name); the caller adds the identity's.
    pub settings: SourceSettings,
}

impl Validated {
    /// `credentials` of `identity`, no settings from the form.
    pub fn new(credentials: Credentials, identity: Identity) -> Self {
        Validated {
            credentials,
            identity,
            settings: SourceSettings::default(),
        }
    }
}

/// Why a form was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormRefusal {
    /// The values are wrong: (field name, error translation key) for each wrong field.
    Fields(Vec<(&'static str, &'static str)>),
    /// The provider could not be asked (network trouble, 5xx, rate limit): the caller reports
    /// `err.provider_unreachable` on the kind's main field.
    Unreachable(ChannelError),
}

impl FormRefusal {
    /// One wrong field.
    pub fn field(name: &'static str, key: &'static str) -> Self {
        FormRefusal::Fields(vec![(name, key)])
    }

    /// `errs` when there are any.
    pub fn check(errs: Vec<(&'static str, &'static str)>) -> Result<(), Self> {
        if errs.is_empty() {
            Ok(())
        } else {
            Err(FormRefusal::Fields(errs))
        }
    }
}

/// A value that is at least `min` characters long with no spaces inside: the format check of
/// most tokens.
pub fn token_like(value: &str, min: usize) -> bool {
    value.len() >= min && !value.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_empty_when_missing_and_never_show_themselves() {
        let v: FormValues = [("vk_token", " abc "), ("name", "x")].into_iter().collect();
        assert_eq!(v.get("vk_token"), " abc ");
        assert_eq!(v.trimmed("vk_token"), "abc");
        assert_eq!(v.get("other"), "");
        let shown = format!("{v:?}");
        assert!(
            shown.contains("vk_token") && !shown.contains("abc"),
            "{shown}"
        );
    }

    #[test]
    fn refusals_collect_fields() {
        assert_eq!(FormRefusal::check(Vec::new()), Ok(()));
        assert_eq!(
            FormRefusal::check(vec![("a", "err.x")]),
            Err(FormRefusal::field("a", "err.x"))
        );
        assert!(token_like("abcdefghij", 10));
        assert!(!token_like("abcde fghij", 10));
        assert!(!token_like("abc", 10));
    }
}
