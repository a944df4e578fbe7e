//! Reply templates' text (requirement R5.3): `{client_name}` and the other variables, each with
//! an optional fallback (`{client_name|клиент}`), and `{{` / `}}` for a literal brace. `parse`
//! reads a text into parts or says where it is wrong (an unclosed `{`, a stray `}`, a variable
//! that does not exist); `render` fills the parts from a lookup. A variable without a value and
//! without a fallback renders as nothing: raw braces never reach a customer.

/// The variables a template may use, as written between braces.
pub const VARIABLES: [&str; 10] = [
    "client_name",
    "company_name",
    "manager_name",
    "source_name",
    "deal_id",
    // Synced with amoCRM: the contact's phone and e-mail (edited on the card, sent to its
    // amoCRM contact) and the deal's pipeline, stage and responsible (as the card shows them).
    "client_phone",
    "client_email",
    "deal_pipeline",
    "deal_stage",
    "deal_responsible",
];

/// The longest fallback, in characters.
pub const FALLBACK_MAX: usize = 100;

/// One piece of a template's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Text as it is (escaped braces already single).
    Text(String),
    /// A variable (one of [`VARIABLES`]) and its fallback, if any.
    Var {
        name: &'static str,
        fallback: Option<String>,
    },
}

/// Why a text is not a template; `at` is the 1-based character position of the brace at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// A `{` without its `}` (or with another `{` or a line break before it).
    Unclosed { at: usize },
    /// A `}` that closes nothing (write `}}` for a brace).
    Stray { at: usize },
    /// `{name}` where `name` is not one of [`VARIABLES`] (empty too).
    Unknown { at: usize, name: String },
    /// A fallback longer than [`FALLBACK_MAX`].
    LongFallback { at: usize },
}

impl TemplateError {
    /// The translation key of the refusal (its message names the position as `{n}`).
    pub fn key(&self) -> &'static str {
        match self {
            TemplateError::Unclosed { .. } => "err.template_unclosed",
            TemplateError::Stray { .. } => "err.template_stray",
            TemplateError::Unknown { .. } => "err.template_unknown_var",
            TemplateError::LongFallback { .. } => "err.template_fallback_long",
        }
    }

    /// The 1-based character position of the brace at fault.
    pub fn at(&self) -> usize {
        match self {
            TemplateError::Unclosed { at }
            | TemplateError::Stray { at }
            | TemplateError::Unknown { at, .. }
            | TemplateError::LongFallback { at } => *at,
        }
    }

    /// The refusal as a field error on `field`, its position as the limit the message names.
    pub fn field_error(&self, field: &'static str) -> crate::FieldError {
        let mut e = crate::FieldError::new(field, self.key());
        e.limit = Some(self.at());
        e
    }
}

/// Reads `text` into parts, or the first fault in it.
pub fn parse(text: &str) -> Result<Vec<Part>, TemplateError> {
    let chars: Vec<char> = text.chars().collect();
    let mut parts = Vec::new();
    let mut plain = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' if chars.get(i + 1) == Some(&'{') => {
                plain.push('{');
                i += 2;
            }
            '}' if chars.get(i + 1) == Some(&'}') => {
                plain.push('}');
                i += 2;
            }
            '}' => return Err(TemplateError::Stray { at: i + 1 }),
            '{' => {
                let at = i + 1;
                let close = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '}' || c == '{' || c == '\n')
                    .map(|p| p + i + 1)
                    .filter(|&p| chars[p] == '}')
                    .ok_or(TemplateError::Unclosed { at })?;
                let inner: String = chars[i + 1..close].iter().collect();
                let (name, fallback) = match inner.split_once('|') {
                    Some((n, f)) => (n.trim(), Some(f.to_owned())),
                    None => (inner.trim(), None),
                };
                let Some(name) = VARIABLES.iter().copied().find(|v| *v == name) else {
                    return Err(TemplateError::Unknown {
                        at,
                        name: name.to_owned(),
                    });
                };
                if fallback
                    .as_ref()
                    .is_some_and(|f| f.chars().count() > FALLBACK_MAX)
                {
                    return Err(TemplateError::LongFallback { at });
                }
                if !plain.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut plain)));
                }
                parts.push(Part::Var { name, fallback });
                i = close + 1;
            }
            c => {
                plain.push(c);
                i += 1;
            }
        }
    }
    if !plain.is_empty() {
        parts.push(Part::Text(plain));
    }
    Ok(parts)
}

/// The variables `parts` use, each once, in order of first use.
pub fn used(parts: &[Part]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for p in parts {
        if let Part::Var { name, .. } = p {
            if !out.contains(name) {
                out.push(name);
            }
        }
    }
    out
}

/// Fills `parts`: a variable takes its value when `value` gives a non-blank one, else its
/// fallback, else nothing.
pub fn render_parts(parts: &[Part], value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Var { name, fallback } => match value(name).filter(|v| !v.trim().is_empty()) {
                Some(v) => out.push_str(&v),
                None => out.push_str(fallback.as_deref().unwrap_or_default()),
            },
        }
    }
    out
}

/// Renders `text` with `value`. A text that is not a valid template (stored before a rule
/// changed, say) still never shows braces: they are dropped and the rest is kept.
pub fn render(text: &str, value: impl Fn(&str) -> Option<String>) -> String {
    match parse(text) {
        Ok(parts) => render_parts(&parts, value),
        Err(_) => text.chars().filter(|c| *c != '{' && *c != '}').collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(name: &str) -> Option<String> {
        match name {
            "client_name" => Some("Мария".into()),
            "company_name" => Some("Ромашка".into()),
            "deal_id" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_take_their_values_and_text_stays() {
        assert_eq!(
            render("Здравствуйте, {client_name}! Это {company_name}.", values),
            "Здравствуйте, Мария! Это Ромашка."
        );
        assert_eq!(render("{ client_name }", values), "Мария");
        assert_eq!(render("Без переменных", values), "Без переменных");
        assert_eq!(render("", values), "");
    }

    #[test]
    fn a_missing_or_blank_value_takes_the_fallback_or_nothing() {
        assert_eq!(
            render("Менеджер: {manager_name|ваш менеджер}", values),
            "Менеджер: ваш менеджер"
        );
        assert_eq!(render("Менеджер: {manager_name}.", values), "Менеджер: .");
        assert_eq!(render("Сделка {deal_id|—}", values), "Сделка —");
        assert_eq!(render("Сделка {deal_id}", values), "Сделка ");
        assert_eq!(render("{client_name|клиент}", values), "Мария");
        assert_eq!(render("{source_name|}", values), "");
    }

    #[test]
    fn doubled_braces_are_literal_braces() {
        assert_eq!(render("{{client_name}}", values), "{client_name}");
        assert_eq!(render("a {{ b }} c", values), "a { b } c");
        assert_eq!(
            parse("{{{client_name}}}").expect("valid"),
            vec![
                Part::Text("{".into()),
                Part::Var {
                    name: "client_name",
                    fallback: None
                },
                Part::Text("}".into())
            ]
        );
    }

    #[test]
    fn faults_say_what_and_where() {
        assert_eq!(
            parse("Привет, {client_name"),
            Err(TemplateError::Unclosed { at: 9 })
        );
        assert_eq!(
            parse("{client_name\n}"),
            Err(TemplateError::Unclosed { at: 1 })
        );
        assert_eq!(
            parse("{a {client_name}"),
            Err(TemplateError::Unclosed { at: 1 })
        );
        assert_eq!(parse("ок }"), Err(TemplateError::Stray { at: 4 }));
        assert_eq!(
            parse("Здравствуйте, {clent_name}"),
            Err(TemplateError::Unknown {
                at: 15,
                name: "clent_name".into()
            })
        );
        assert_eq!(
            parse("{}"),
            Err(TemplateError::Unknown {
                at: 1,
                name: String::new()
            })
        );
        let long = format!("{{client_name|{}}}", "я".repeat(FALLBACK_MAX + 1));
        assert_eq!(parse(&long), Err(TemplateError::LongFallback { at: 1 }));
        let e = parse("x {nope}").expect_err("unknown").field_error("text");
        assert_eq!(
            (e.field, e.key, e.limit),
            ("text", "err.template_unknown_var", Some(3))
        );
    }

    #[test]
    fn a_broken_text_never_renders_braces() {
        assert_eq!(
            render("Привет, {client_name", values),
            "Привет, client_name"
        );
        assert_eq!(render("{nope} и }", values), "nope и ");
    }

    #[test]
    fn used_lists_each_variable_once() {
        let parts = parse("{client_name} {deal_id} {client_name|x}").expect("valid");
        assert_eq!(used(&parts), vec!["client_name", "deal_id"]);
    }
}
