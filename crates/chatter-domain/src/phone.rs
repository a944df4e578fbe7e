//! Phone numbers as Chatter stores and compares them: E.164 (`+79991234567`). One rule serves
//! every place a number enters (an SMS recipient, a messenger contact, a CRM contact's field),
//! so the same person's number is the same string wherever it came from.

/// Normalises a phone number a person typed to E.164, or `None` when it cannot be one.
///
/// Spaces, dashes, dots and parentheses are dropped; `00` becomes `+`. Russian forms become
/// `+7…`: `8XXXXXXXXXX` (11 digits), `7XXXXXXXXXX` and the 10-digit mobile `9XXXXXXXXX`. Other
/// numbers need their country code (with or without `+`): 11–15 digits. Anything else in the
/// text (letters, an extension) makes it not a number rather than a different one.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let mut s = String::with_capacity(raw.len());
    for (i, c) in raw.trim().chars().enumerate() {
        match c {
            '0'..='9' => s.push(c),
            '+' if i == 0 => s.push(c),
            ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
            _ => return None,
        }
    }
    let (plus, digits) = match s.strip_prefix('+') {
        Some(d) => (true, d.to_owned()),
        None => match s.strip_prefix("00") {
            Some(d) => (true, d.to_owned()),
            None => (false, s),
        },
    };
    if digits.is_empty() || digits.starts_with('0') {
        return None;
    }
    let len = digits.len();
    let e164 = if plus {
        digits
    } else if len == 11 && (digits.starts_with('8') || digits.starts_with('7')) {
        format!("7{}", &digits[1..])
    } else if len == 10 && digits.starts_with('9') {
        format!("7{digits}")
    } else if len >= 11 {
        digits
    } else {
        return None;
    };
    // E.164: at most 15 digits; Russian numbers exactly 11.
    let ok = (8..=15).contains(&e164.len()) && (!e164.starts_with('7') || e164.len() == 11);
    ok.then(|| format!("+{e164}"))
}
