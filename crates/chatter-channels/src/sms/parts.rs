//! How many SMS a text costs (GSM 03.38 default alphabet or UCS-2), shown before sending.

use serde::Serialize;

/// The GSM 7-bit default alphabet (one septet each); ESC (0x1B) is left out.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: ESC + one septet, so each counts as two.
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

const GSM7_SINGLE: usize = 160;
const GSM7_PART: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_PART: usize = 67;

/// How the text is encoded on the air.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsEncoding {
    /// The GSM default alphabet: Latin letters, digits, common punctuation.
    Gsm7,
    /// Anything else (Cyrillic, emoji): UTF-16 code units.
    Ucs2,
}

/// The cost of a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SmsParts {
    pub encoding: SmsEncoding,
    /// Messages billed (0 for an empty text).
    pub parts: u32,
    /// Length in the encoding's units: GSM-7 septets (extension characters count two) or
    /// UTF-16 code units (an emoji counts two).
    pub chars: usize,
}

impl SmsParts {
    /// Units that fit one message of this text's kind: 160/153 (GSM-7) or 70/67 (UCS-2).
    pub fn per_part(&self) -> usize {
        match (self.encoding, self.parts > 1) {
            (SmsEncoding::Gsm7, false) => GSM7_SINGLE,
            (SmsEncoding::Gsm7, true) => GSM7_PART,
            (SmsEncoding::Ucs2, false) => UCS2_SINGLE,
            (SmsEncoding::Ucs2, true) => UCS2_PART,
        }
    }
}

/// Counts the parts of `text`: one message up to 160 GSM-7 septets or 70 UCS-2 units, else
/// parts of 153 or 67 (the rest carries the concatenation header). A character never straddles
/// two parts (an extension pair or a surrogate pair moves whole to the next part).
pub fn sms_parts(text: &str) -> SmsParts {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm7_width).collect();
    let (encoding, widths, single, part) = match gsm {
        Some(widths) => (SmsEncoding::Gsm7, widths, GSM7_SINGLE, GSM7_PART),
        None => (
            SmsEncoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
            UCS2_SINGLE,
            UCS2_PART,
        ),
    };
    let chars: usize = widths.iter().sum();
    let parts = if chars == 0 {
        0
    } else if chars <= single {
        1
    } else {
        let (mut parts, mut used) = (1u32, 0usize);
        for w in widths {
            if used + w > part {
                parts += 1;
                used = 0;
            }
            used += w;
        }
        parts
    };
    SmsParts {
        encoding,
        parts,
        chars,
    }
}

fn gsm7_width(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}
