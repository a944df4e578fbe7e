//! Just enough HTML reading for the crawler: the product's own pages are well-formed askama
//! output (double-quoted attributes, escaped text), so a tag scanner finds every link, form,
//! field and text node without a parser dependency.

/// An element's start tag.
#[derive(Clone, Debug)]
pub struct El {
    pub name: String,
    pub attrs: Vec<(String, String)>,
}

impl El {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug)]
pub enum Node {
    Open(El),
    Close(String),
    Text(String),
}

const VOID: [&str; 14] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

pub fn is_void(name: &str) -> bool {
    VOID.contains(&name)
}

/// The page as start tags, end tags and (decoded) text; the insides of `script` and `style`
/// are left out, a `textarea`'s is one text node.
pub fn parse(html: &str) -> Vec<Node> {
    let mut out = Vec::new();
    let b = html.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            let end = html[i..].find('<').map_or(b.len(), |j| i + j);
            let text = decode(&html[i..end]);
            if !text.trim().is_empty() {
                out.push(Node::Text(text));
            }
            i = end;
            continue;
        }
        if html[i..].starts_with("<!--") {
            i = html[i..].find("-->").map_or(b.len(), |j| i + j + 3);
            continue;
        }
        if html[i..].starts_with("<!") || html[i..].starts_with("<?") {
            i = html[i..].find('>').map_or(b.len(), |j| i + j + 1);
            continue;
        }
        if html[i..].starts_with("</") {
            let end = html[i..].find('>').map_or(b.len(), |j| i + j);
            out.push(Node::Close(html[i + 2..end].trim().to_ascii_lowercase()));
            i = end + 1;
            continue;
        }
        if !b.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
            out.push(Node::Text("<".into()));
            i += 1;
            continue;
        }
        let (el, next) = start_tag(html, i + 1);
        i = next;
        let raw = matches!(el.name.as_str(), "script" | "style" | "textarea");
        let name = el.name.clone();
        out.push(Node::Open(el));
        if raw {
            let close = format!("</{name}");
            let end = html[i..].find(&close).map_or(b.len(), |j| i + j);
            if name == "textarea" {
                out.push(Node::Text(decode(&html[i..end])));
            }
            i = end;
        }
    }
    out
}

/// Reads `name attr="v" …>` from `i`; returns the element and where its `>` ends.
fn start_tag(html: &str, mut i: usize) -> (El, usize) {
    let b = html.as_bytes();
    let word_end = |i: usize| {
        html[i..]
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/' || c == '=')
            .map_or(b.len(), |j| i + j)
    };
    let end = word_end(i);
    let name = html[i..end].to_ascii_lowercase();
    i = end;
    let mut attrs = Vec::new();
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b'>' {
            i += 1;
            break;
        }
        let end = word_end(i).max(i + 1);
        let key = html[i..end].to_ascii_lowercase();
        i = end;
        let mut value = String::new();
        if b.get(i) == Some(&b'=') {
            i += 1;
            match b.get(i) {
                Some(q @ (b'"' | b'\'')) => {
                    let q = *q as char;
                    let close = html[i + 1..].find(q).map_or(b.len(), |j| i + 1 + j);
                    value = decode(&html[i + 1..close]);
                    i = (close + 1).min(b.len());
                }
                _ => {
                    let close = html[i..]
                        .find(|c: char| c.is_whitespace() || c == '>')
                        .map_or(b.len(), |j| i + j);
                    value = decode(&html[i..close]);
                    i = close;
                }
            }
        }
        attrs.push((key, value));
    }
    (El { name, attrs }, i)
}

/// Character references as askama and people write them.
pub fn decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(semi) = rest.find(';').filter(|j| *j <= 12) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..semi];
        let c = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            n if n.starts_with("#x") || n.starts_with("#X") => u32::from_str_radix(&n[2..], 16)
                .ok()
                .and_then(char::from_u32),
            n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A form field as the browser would send it by default.
#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    /// `text`, `hidden`, `password`, `email`, `url`, `number`, `date`, `time`, `search`,
    /// `select`, `textarea`, `checkbox`, `radio`.
    pub kind: String,
    /// The value sent by default (`None`: nothing is sent, as for an unchecked box).
    pub value: Option<String>,
    /// A select's option values.
    pub options: Vec<String>,
}

impl Field {
    /// Whether a person types into it (or could forge it: hidden fields and selects count).
    pub fn fillable(&self) -> bool {
        self.name != "_csrf" && !matches!(self.kind.as_str(), "checkbox" | "radio")
    }
}

#[derive(Clone, Debug)]
pub struct Form {
    pub method: String,
    pub action: String,
    pub fields: Vec<Field>,
}

impl Form {
    /// The pairs the browser sends by default.
    pub fn defaults(&self) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter_map(|f| f.value.clone().map(|v| (f.name.clone(), v)))
            .collect()
    }
}

/// Every `href` of an `a` element.
pub fn links(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| match n {
            Node::Open(e) if e.name == "a" => e.attr("href").map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// Every form with its fields; `page` is the action of a form without one.
pub fn forms(nodes: &[Node], page: &str) -> Vec<Form> {
    let mut out = Vec::new();
    let mut form: Option<Form> = None;
    let mut select: Option<Field> = None;
    let mut option: Option<(Option<String>, bool, String)> = None;
    let mut textarea: Option<Field> = None;
    for n in nodes {
        match n {
            Node::Open(e) if e.name == "form" => {
                let action = e.attr("action").filter(|a| !a.is_empty()).unwrap_or(page);
                form = Some(Form {
                    method: e.attr("method").unwrap_or("get").to_ascii_lowercase(),
                    action: action.to_owned(),
                    fields: Vec::new(),
                });
            }
            Node::Close(name) if name == "form" => out.extend(form.take()),
            Node::Open(e) if e.name == "input" => {
                let (Some(f), Some(name)) = (form.as_mut(), e.attr("name")) else {
                    continue;
                };
                let kind = e.attr("type").unwrap_or("text").to_ascii_lowercase();
                if matches!(
                    kind.as_str(),
                    "submit" | "button" | "image" | "reset" | "file"
                ) {
                    continue;
                }
                let checked = e.attr("checked").is_some();
                let value = e.attr("value").unwrap_or("").to_owned();
                let value = match kind.as_str() {
                    "checkbox" | "radio" if !checked => None,
                    "checkbox" | "radio" if e.attr("value").is_none() => Some("on".into()),
                    _ => Some(value),
                };
                f.fields.push(Field {
                    name: name.to_owned(),
                    kind,
                    value,
                    options: Vec::new(),
                });
            }
            Node::Open(e) if e.name == "select" => {
                select = e.attr("name").map(|name| Field {
                    name: name.to_owned(),
                    kind: "select".into(),
                    value: None,
                    options: Vec::new(),
                });
            }
            Node::Open(e) if e.name == "option" => {
                option = Some((
                    e.attr("value").map(str::to_owned),
                    e.attr("selected").is_some(),
                    String::new(),
                ));
            }
            Node::Text(t) if option.is_some() => {
                if let Some(o) = option.as_mut() {
                    o.2.push_str(t);
                }
            }
            Node::Close(name) if name == "option" || (name == "select" && option.is_some()) => {
                if let (Some((value, selected, text)), Some(s)) = (option.take(), select.as_mut()) {
                    let v = value.unwrap_or_else(|| text.trim().to_owned());
                    if selected || s.value.is_none() {
                        s.value = Some(v.clone());
                    }
                    s.options.push(v);
                }
                if name == "select" {
                    if let (Some(s), Some(f)) = (select.take(), form.as_mut()) {
                        f.fields.push(s);
                    }
                }
            }
            Node::Close(name) if name == "select" => {
                if let (Some(s), Some(f)) = (select.take(), form.as_mut()) {
                    f.fields.push(s);
                }
            }
            Node::Open(e) if e.name == "textarea" => {
                textarea = e.attr("name").map(|name| Field {
                    name: name.to_owned(),
                    kind: "textarea".into(),
                    value: Some(String::new()),
                    options: Vec::new(),
                });
            }
            Node::Text(t) if textarea.is_some() => {
                if let Some(ta) = textarea.as_mut() {
                    // The browser drops one leading line break.
                    ta.value = Some(t.strip_prefix('\n').unwrap_or(t).to_owned());
                }
            }
            Node::Close(name) if name == "textarea" => {
                if let (Some(t), Some(f)) = (textarea.take(), form.as_mut()) {
                    f.fields.push(t);
                }
            }
            _ => {}
        }
    }
    out
}

/// Where a text node sits: the names (and classes) of the elements around it.
pub struct Text<'a> {
    pub text: &'a str,
    pub around: Vec<&'a El>,
}

impl Text<'_> {
    pub fn inside(&self, name: &str) -> bool {
        self.around.iter().any(|e| e.name == name)
    }
}

/// Every text node with the elements it is inside.
pub fn texts(nodes: &[Node]) -> Vec<Text<'_>> {
    let mut stack: Vec<&El> = Vec::new();
    let mut out = Vec::new();
    for n in nodes {
        match n {
            Node::Open(e) if !is_void(&e.name) => stack.push(e),
            Node::Close(name) => {
                if let Some(at) = stack.iter().rposition(|e| &e.name == name) {
                    stack.truncate(at);
                }
            }
            Node::Text(t) => out.push(Text {
                text: t,
                around: stack.clone(),
            }),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_links_and_texts_are_read() {
        let html = r#"<nav class="side"><a href="/app">Главная &amp; всё</a></nav>
<form method="post" action="/x"><input type="hidden" name="_csrf" value="t">
<input name="name" value="a&quot;b"><select name="role"><option value="manager">Менеджер</option>
<option value="admin" selected>Админ</option></select><textarea name="text">
hi</textarea><input type="checkbox" name="on"><button>Сохранить</button></form>
<form><select name="s"><option value="">Все</option><option>one</option></select></form>
<script>if (a < b) {}</script>"#;
        let nodes = parse(html);
        assert_eq!(links(&nodes), vec!["/app"]);
        let f = forms(&nodes, "/page");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].action, "/x");
        let d = f[0].defaults();
        assert!(d.contains(&("name".into(), "a\"b".into())));
        assert!(d.contains(&("role".into(), "admin".into())));
        assert!(d.contains(&("text".into(), "hi".into())));
        assert!(!d.iter().any(|(k, _)| k == "on"));
        assert_eq!(f[1].action, "/page");
        assert_eq!(f[1].fields[0].options, vec!["", "one"]);
        let t = texts(&nodes);
        assert!(t
            .iter()
            .any(|t| t.text == "Главная & всё" && t.inside("nav")));
        assert!(!t.iter().any(|t| t.text.contains("a < b")));
    }
}
