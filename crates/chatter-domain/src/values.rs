//! Validated values, parsed once at the edge ("parse, don't validate"). Errors carry a
//! translation key, so the web layer can show them in the user's language.

use serde::Serialize;

/// A rejected field: which one, and a translation key for the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub key: &'static str,
}

impl FieldError {
    pub fn new(field: &'static str, key: &'static str) -> Self {
        Self { field, key }
    }
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
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
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
        if n > 256 {
            return Err(FieldError::new(field, "err.password_long"));
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

/// A required, trimmed, bounded text (names and titles).
pub fn required_text(field: &'static str, raw: &str, max: usize) -> Result<String, FieldError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(FieldError::new(field, "err.required"));
    }
    if s.chars().count() > max {
        return Err(FieldError::new(field, "err.too_long"));
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
