//! Validated values, parsed once at the edge ("parse, don't validate"). Errors carry a
//! translation key, so the web layer can show them in the user's language.

use serde::Serialize;

/// A rejected field: which one, a translation key for the message, and the limit the message
/// names (its `{n}`), when it names one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub key: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl FieldError {
    pub fn new(field: &'static str, key: &'static str) -> Self {
        Self {
            field,
            key,
            limit: None,
        }
    }

    /// Longer than `max` characters (`err.too_long`, whose message names `max`).
    pub fn too_long(field: &'static str, max: usize) -> Self {
        Self {
            field,
            key: "err.too_long",
            limit: Some(max),
        }
    }

    /// More than `max` items in a list field (`err.too_many`, whose message names `max`).
    pub fn too_many(field: &'static str, max: usize) -> Self {
        Self {
            field,
            key: "err.too_many",
            limit: Some(max),
        }
    }
}

/// The limits of stored text, in characters (`docs/limits.md` lists every field with its
/// limit; keep the two in step).
pub mod limits {
    /// A person's or a company's name.
    pub const NAME: usize = 120;
    /// A source's, an API source's or an API key's name.
    pub const SHORT_NAME: usize = 80;
    /// A routing rule's name.
    pub const RULE_NAME: usize = 120;
    /// A routing rule's regex.
    pub const REGEX: usize = 500;
    /// One keyword or exclusion of a rule.
    pub const KEYWORD: usize = 100;
    /// Keywords (or exclusions) of one rule.
    pub const KEYWORDS: usize = 50;
    /// One CRM tag.
    pub const TAG: usize = 50;
    /// Tags of one rule or of the CRM settings.
    pub const TAGS: usize = 20;
    /// A reply to a customer.
    pub const REPLY: usize = 20_000;
    /// An internal note in a conversation (seen by the team only).
    pub const NOTE: usize = 5_000;
    /// A caption of a medium sent by link.
    pub const CAPTION: usize = 1024;
    /// A URL (outgoing webhook, medium link).
    pub const URL: usize = 2000;
    /// A credential typed into a source's form (token, key, secret, account id).
    pub const CREDENTIAL: usize = 512;
    /// An email address.
    pub const EMAIL: usize = 254;
    /// A password.
    pub const PASSWORD: usize = 256;
    /// A template parameter of a WhatsApp template reply.
    pub const TEMPLATE_PARAM: usize = 1024;
}

/// A syntactically valid, lower-cased email address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &'static str, raw: &str) -> Result<Email, FieldError> {
        let s = raw.trim().to_lowercase();
        let bad = || FieldError::new(field, "err.email_invalid");
        if s.is_empty() {
            return Err(FieldError::new(field, "err.required"));
        }
        if s.chars().count() > limits::EMAIL {
            return Err(FieldError::too_long(field, limits::EMAIL));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(bad());
        }
        if domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(bad());
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new password that meets the policy. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_LEN: usize = 8;

    pub fn parse(field: &'static str, raw: &str) -> Result<Password, FieldError> {
        let n = raw.chars().count();
        if n == 0 {
            return Err(FieldError::new(field, "err.required"));
        }
        if n < Self::MIN_LEN {
            return Err(FieldError::new(field, "err.password_short"));
        }
        if n > limits::PASSWORD {
            return Err(FieldError::too_long(field, limits::PASSWORD));
        }
        Ok(Password(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A company's URL-safe short name: lower-case latin letters, digits and dashes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    pub fn parse(field: &'static str, raw: &str) -> Result<Slug, FieldError> {
        let s = raw.trim();
        if s.len() < 2 || s.len() > 48 {
            return Err(FieldError::new(field, "err.slug_invalid"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || s.starts_with('-')
            || s.ends_with('-')
        {
            return Err(FieldError::new(field, "err.slug_invalid"));
        }
        Ok(Slug(s.to_string()))
    }

    /// Derives a slug from a company name (transliterating Cyrillic), for a default.
    pub fn suggest(name: &str) -> String {
        let mut out = String::new();
        for c in name.to_lowercase().chars() {
            let t: &str = match c {
                'a'..='z' | '0'..='9' => {
                    out.push(c);
                    continue;
                }
                'а' => "a",
                'б' => "b",
                'в' => "v",
                'г' => "g",
                'д' => "d",
                'е' | 'ё' | 'э' => "e",
                'ж' => "zh",
                'з' => "z",
                'и' | 'й' => "i",
                'к' => "k",
                'л' => "l",
                'м' => "m",
                'н' => "n",
                'о' => "o",
                'п' => "p",
                'р' => "r",
                'с' => "s",
                'т' => "t",
                'у' => "u",
                'ф' => "f",
                'х' => "h",
                'ц' => "ts",
                'ч' => "ch",
                'ш' => "sh",
                'щ' => "sch",
                'ы' => "y",
                'ю' => "yu",
                'я' => "ya",
                'ъ' | 'ь' => "",
                _ => "-",
            };
            out.push_str(t);
        }
        let mut slug = String::new();
        for part in out.split('-').filter(|p| !p.is_empty()) {
            if !slug.is_empty() {
                slug.push('-');
            }
            slug.push_str(part);
        }
        slug.truncate(40);
        let slug = slug.trim_end_matches('-').to_string();
        if slug.len() < 2 {
            "company".to_string()
        } else {
            slug
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A required, trimmed, one-line text of at most `max` characters (names and titles): control
/// characters (line breaks included) are refused, and so are the bidi embeddings, overrides and
/// isolates that would turn the text after it around (see [`crate::text::is_bidi_control`]).
pub fn required_text(field: &'static str, raw: &str, max: usize) -> Result<String, FieldError> {
    optional_text(field, raw, max)?.ok_or(FieldError::new(field, "err.required"))
}

/// As [`required_text`], but empty (after trimming) is `None`.
pub fn optional_text(
    field: &'static str,
    raw: &str,
    max: usize,
) -> Result<Option<String>, FieldError> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.chars().count() > max {
        return Err(FieldError::too_long(field, max));
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::new(field, "err.control_chars"));
    }
    if s.chars().any(crate::text::is_bidi_control) {
        return Err(FieldError::new(field, "err.bidi_chars"));
    }
    Ok(Some(s.to_string()))
}

/// A required multi-line text of at most `max` characters (a reply): trimmed, with control
/// characters other than line feed and tab removed (see [`crate::text::strip_controls`]).
pub fn multi_line_text(field: &'static str, raw: &str, max: usize) -> Result<String, FieldError> {
    let s = crate::text::strip_controls(raw);
    let s = s.trim();
    if s.is_empty() {
        return Err(FieldError::new(field, "err.required"));
    }
    if s.chars().count() > max {
        return Err(FieldError::too_long(field, max));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse("e", " Anna@Example.RU ").map(|e| e.0),
            Ok("anna@example.ru".into())
        );
        assert!(Email::parse("e", "anna@").is_err());
        assert!(Email::parse("e", "anna example@x.ru").is_err());
        assert_eq!(Email::parse("e", "").unwrap_err().key, "err.required");
    }

    #[test]
    fn password_policy_and_debug_redaction() {
        assert_eq!(
            Password::parse("p", "short").unwrap_err().key,
            "err.password_short"
        );
        let p = Password::parse("p", "long enough secret").expect("valid");
        assert_eq!(format!("{p:?}"), "Password(***)");
    }

    #[test]
    fn one_line_text_is_bounded_and_refuses_controls_and_bidi() {
        assert_eq!(required_text("n", "  Анна ", 10), Ok("Анна".into()));
        assert_eq!(
            required_text("n", &"я".repeat(11), 10),
            Err(FieldError::too_long("n", 10))
        );
        assert_eq!(required_text("n", " ", 10).unwrap_err().key, "err.required");
        for bad in ["a\u{1}b", "a\u{1b}[31m", "a\nb", "a\u{85}b"] {
            assert_eq!(
                required_text("n", bad, 99).unwrap_err().key,
                "err.control_chars"
            );
        }
        for bad in ["a\u{202e}b", "\u{2066}x", "x\u{2069}"] {
            assert_eq!(
                required_text("n", bad, 99).unwrap_err().key,
                "err.bidi_chars"
            );
        }
        assert_eq!(required_text("n", "שלום 👋", 99), Ok("שלום 👋".into()));
        assert_eq!(optional_text("n", "  ", 9), Ok(None));
    }

    #[test]
    fn multi_line_text_keeps_lines_and_tabs_only() {
        assert_eq!(
            multi_line_text("t", " a\r\n\tb\u{1}\u{1b}[31m\u{7f} ", 99),
            Ok("a\n\tb[31m".into())
        );
        assert_eq!(
            multi_line_text("t", "\u{1}", 9).unwrap_err().key,
            "err.required"
        );
        assert_eq!(
            multi_line_text("t", &"я".repeat(10), 9),
            Err(FieldError::too_long("t", 9))
        );
    }

    #[test]
    fn slugs() {
        assert_eq!(Slug::suggest("Рога и Копыта"), "roga-i-kopyta");
        assert_eq!(Slug::suggest("!!"), "company");
        assert!(Slug::parse("s", "Bad Slug").is_err());
        assert!(Slug::parse("s", "good-slug-1").is_ok());
    }
}

/// For `#[serde(default, deserialize_with = "blank_as_none")]` on an optional query or form
/// field: an empty value (a select's «all» option, a cleared input) means "not given" instead of
/// a parse error; anything else must parse.
pub fn blank_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let raw: Option<String> = serde::Deserialize::deserialize(d)?;
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod blank_tests {
    use super::blank_as_none;

    #[derive(serde::Deserialize)]
    struct Q {
        #[serde(default, deserialize_with = "blank_as_none")]
        n: Option<u32>,
    }

    #[test]
    fn an_empty_value_is_none_and_a_bad_one_is_an_error() {
        let q: Q = serde_json::from_str(r#"{"n":""}"#).expect("empty");
        assert_eq!(q.n, None);
        let q: Q = serde_json::from_str(r#"{}"#).expect("missing");
        assert_eq!(q.n, None);
        let q: Q = serde_json::from_str(r#"{"n":" 7 "}"#).expect("seven");
        assert_eq!(q.n, Some(7));
        assert!(serde_json::from_str::<Q>(r#"{"n":"x"}"#).is_err());
    }
}
