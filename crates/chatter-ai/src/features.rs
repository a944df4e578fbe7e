//! What the embedded model sees of a message: hashed sparse features (word stems, stem bigrams,
//! character trigrams inside words) and named intent features (question form, first person,
//! "нужен", a phone number, a price, a seller's or an employer's wording), each remembering
//! where it came from so a verdict can say which words and intents decided it.
//!
//! Features are hashed (FNV-1a) into a fixed table of `2^bits` weights: no vocabulary to keep,
//! and a model learns words it has never seen in the prior.

use chatter_domain::stem::{fold, stem};

/// Bits of the weight table of new models: 2^18 weights (1 MiB of `f32`).
pub const DEFAULT_BITS: u8 = 18;

/// A named feature about the intent of a message, with the Russian words a reason uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Question,
    WhoCan,
    AnyoneKnows,
    FirstPerson,
    Need,
    Advice,
    Budget,
    Offer,
    Experience,
    Phone,
    Price,
    Exclaim,
    Emoji,
    Link,
    Vacancy,
    JobSeeker,
    Spam,
    Short,
    Long,
}

impl Intent {
    /// The phrase a reason shows for it.
    pub fn label(self) -> &'static str {
        match self {
            Intent::Question => "вопрос",
            Intent::WhoCan => "вопрос «кто сделает»",
            Intent::AnyoneKnows => "вопрос «кто знает»",
            Intent::FirstPerson => "от первого лица",
            Intent::Need => "«нужен/требуется»",
            Intent::Advice => "просьба посоветовать",
            Intent::Budget => "вопрос о цене или бюджет",
            Intent::Offer => "слова продавца услуг",
            Intent::Experience => "«опыт N лет»",
            Intent::Phone => "номер телефона",
            Intent::Price => "цена",
            Intent::Exclaim => "восклицания",
            Intent::Emoji => "эмодзи",
            Intent::Link => "ссылка",
            Intent::Vacancy => "слова вакансии",
            Intent::JobSeeker => "ищет работу",
            Intent::Spam => "слова спама",
            Intent::Short => "короткое сообщение",
            Intent::Long => "длинное сообщение",
        }
    }

    fn key(self) -> u8 {
        self as u8
    }
}

/// Where a feature came from, for the reason of a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Intent(Intent),
    /// The stem or a character trigram of the n-th word.
    Word(u16),
    /// The stems of the n-th and the next word.
    Bigram(u16),
}

/// One non-zero entry of a message's feature vector.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    pub index: u32,
    pub value: f32,
    pub origin: Origin,
}

/// A message as features, with its words (folded) to name them in a reason.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    pub words: Vec<String>,
    pub features: Vec<Feature>,
}

const STEM_WEIGHT: f32 = 1.0;
const BIGRAM_WEIGHT: f32 = 0.7;
const TRIGRAM_WEIGHT: f32 = 0.25;
const INTENT_WEIGHT: f32 = 1.2;

/// The features of a text for a table of `2^bits` weights; the vector has unit length.
pub fn extract(text: &str, bits: u8) -> Extracted {
    let mask = (1u64 << bits) - 1;
    let folded = fold(text);
    let words: Vec<&str> = folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let stems: Vec<String> = words.iter().map(|w| stem(w)).collect();
    let mut features = Vec::with_capacity(words.len() * 8 + 8);
    let mut push = |hash: u64, value: f32, origin: Origin| {
        features.push(Feature {
            index: (hash & mask) as u32,
            value,
            origin,
        })
    };
    for (i, s) in stems.iter().enumerate() {
        let at = i.min(u16::MAX as usize) as u16;
        push(fnv(b'w', &[s.as_bytes()]), STEM_WEIGHT, Origin::Word(at));
        if let Some(next) = stems.get(i + 1) {
            push(
                fnv(b'b', &[s.as_bytes(), b" ", next.as_bytes()]),
                BIGRAM_WEIGHT,
                Origin::Bigram(at),
            );
        }
        trigrams(words[i], |gram| {
            push(fnv(b'c', &[gram]), TRIGRAM_WEIGHT, Origin::Word(at))
        });
    }
    for intent in intents(text, &folded, &words, &stems) {
        push(
            fnv(b'i', &[&[intent.key()]]),
            INTENT_WEIGHT,
            Origin::Intent(intent),
        );
    }
    let norm = features
        .iter()
        .map(|f| f.value * f.value)
        .sum::<f32>()
        .sqrt();
    if norm > 0.0 {
        for f in &mut features {
            f.value /= norm;
        }
    }
    Extracted {
        words: words.into_iter().map(str::to_owned).collect(),
        features,
    }
}

/// Character trigrams of a word padded with spaces ("сан", " са", "ик "); words of one or two
/// letters and very long tokens give none.
fn trigrams(word: &str, mut each: impl FnMut(&[u8])) {
    let mut bounds: [usize; 40] = [0; 40];
    let padded_len = word.chars().count() + 2;
    if !(4..=bounds.len() - 1).contains(&padded_len) {
        return;
    }
    let mut buf = [0u8; 160];
    buf[0] = b' ';
    let mut len = 1;
    let mut n = 1;
    for (offset, c) in word.char_indices() {
        bounds[n] = 1 + offset;
        n += 1;
        len = 1 + offset + c.len_utf8();
    }
    if len + 1 > buf.len() {
        return;
    }
    buf[1..len].copy_from_slice(word.as_bytes());
    buf[len] = b' ';
    bounds[n] = len;
    bounds[n + 1] = len + 1;
    for start in 0..n - 1 {
        each(&buf[bounds[start]..bounds[start + 3]]);
    }
}

/// FNV-1a over a namespace byte and the parts.
fn fnv(namespace: u8, parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    eat(namespace);
    for part in parts {
        for &b in *part {
            eat(b);
        }
    }
    h
}

const FIRST_PERSON: &[&str] = &[
    "я",
    "мне",
    "меня",
    "мы",
    "нам",
    "нас",
    "мой",
    "моя",
    "мою",
    "наш",
    "наша",
    "нашу",
    "ищу",
    "ищем",
    "сниму",
    "куплю",
    "хочу",
    "хотим",
    "нужен",
    "нужна",
    "нужно",
    "нужны",
];
const NEED: &[&str] = &["нужен", "нужна", "нужно", "нужны", "надо", "требуется"];
const ADVICE: &[&str] = &[
    "посоветуйте",
    "подскажите",
    "порекомендуйте",
    "дайте",
    "скиньте",
    "поделитесь",
];
const BUDGET: &[&str] = &["бюджет", "сколько", "цена", "расценки", "стоит", "возьмете"];
/// Stems of a seller's nouns and adverbs ("скидка", "гарантия", "недорого").
const OFFER_STEMS: &[&str] = &[
    "предлага",
    "звон",
    "скидк",
    "акц",
    "гарант",
    "недорог",
    "выезд",
    "портфол",
    "записыва",
    "приглаша",
    "услуг",
    "бесплатн",
    "прайс",
    "отзыв",
    "договор",
    "качествен",
];
/// A seller's verbs in the first person: "сделаем", not the buyer's "кто сделает".
const OFFER_WORDS: &[&str] = &[
    "сделаем",
    "сделаю",
    "выполним",
    "выполню",
    "помогу",
    "поможем",
    "решу",
    "решим",
    "создаю",
    "создаем",
    "делаем",
    "готовлю",
    "работаем",
    "приеду",
    "подъеду",
    "уберу",
    "взыщем",
    "продаю",
    "сдам",
    "сдается",
    "сдаю",
];
const VACANCY: &[&str] = &[
    "вакансия",
    "требуются",
    "зарплата",
    "график",
    "штат",
    "команду",
    "приглашает",
    "сдельная",
    "ежедневно",
    "смену",
    "процент",
    "проживание",
    "обучим",
    "обучение",
];
const JOB_SEEKER_STEMS: &[&str] = &["резюм", "рассмотр", "стажировк", "подработк"];
const SPAM_STEMS: &[&str] = &[
    "заработок",
    "доход",
    "казин",
    "крипт",
    "подписыва",
    "подпиш",
    "займ",
    "депозит",
    "вебинар",
    "бонус",
    "выигра",
    "оптом",
];

fn intents(raw: &str, folded: &str, words: &[&str], stems: &[String]) -> Vec<Intent> {
    let mut out = Vec::with_capacity(8);
    let has_word = |list: &[&str]| words.iter().any(|w| list.contains(w));
    let has_stem = |list: &[&str]| stems.iter().any(|s| list.contains(&s.as_str()));
    if raw.contains('?') {
        out.push(Intent::Question);
    }
    let mut who = false;
    let mut knows = false;
    for (i, w) in words.iter().enumerate() {
        if *w == "кто" {
            match words.get(i + 1) {
                Some(&"нибудь") | Some(&"то") | Some(&"знает") | Some(&"пробовал") => {
                    knows = true
                }
                Some(_) => who = true,
                None => {}
            }
        }
    }
    if who {
        out.push(Intent::WhoCan);
    }
    if knows || folded.contains("знает") {
        out.push(Intent::AnyoneKnows);
    }
    if has_word(FIRST_PERSON) {
        out.push(Intent::FirstPerson);
    }
    if has_word(NEED) {
        out.push(Intent::Need);
    }
    if has_word(ADVICE) {
        out.push(Intent::Advice);
    }
    if has_word(BUDGET) {
        out.push(Intent::Budget);
    }
    if has_stem(OFFER_STEMS) || has_word(OFFER_WORDS) {
        out.push(Intent::Offer);
    }
    if experience(words) {
        out.push(Intent::Experience);
    }
    if phone(raw) {
        out.push(Intent::Phone);
    }
    if price(raw, words) {
        out.push(Intent::Price);
    }
    if raw.contains('!') {
        out.push(Intent::Exclaim);
    }
    if raw.chars().any(|c| c as u32 >= 0x1F300) {
        out.push(Intent::Emoji);
    }
    if folded.contains("t.me/") || folded.contains("http") || folded.contains("ссылк") {
        out.push(Intent::Link);
    }
    if has_word(VACANCY) || folded.contains("з/п") {
        out.push(Intent::Vacancy);
    }
    let seeks_work = words
        .windows(2)
        .any(|p| matches!(p[0], "ищу" | "ищет") && matches!(p[1], "работу" | "место"));
    if seeks_work || has_stem(JOB_SEEKER_STEMS) {
        out.push(Intent::JobSeeker);
    }
    if has_stem(SPAM_STEMS) {
        out.push(Intent::Spam);
    }
    if words.len() < 5 {
        out.push(Intent::Short);
    } else if words.len() > 25 {
        out.push(Intent::Long);
    }
    out
}

/// "опыт 10 лет", "10 лет опыта", "с опытом".
fn experience(words: &[&str]) -> bool {
    words.iter().enumerate().any(|(i, w)| {
        w.starts_with("опыт")
            && words[i.saturating_sub(3)..(i + 4).min(words.len())]
                .iter()
                .any(|n| n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with("лет"))
    })
}

/// Ten or more digits in a run that only spaces, dashes, brackets and a plus interrupt.
fn phone(raw: &str) -> bool {
    let mut digits = 0;
    for c in raw.chars() {
        if c.is_ascii_digit() {
            digits += 1;
            if digits >= 10 {
                return true;
            }
        } else if !matches!(c, ' ' | '-' | '(' | ')' | '+') {
            digits = 0;
        }
    }
    false
}

/// A sum of money: "₽", "5 000 руб", "10к", "25 тыс".
fn price(raw: &str, words: &[&str]) -> bool {
    if raw.contains('₽') {
        return true;
    }
    words.iter().enumerate().any(|(i, w)| {
        let digits = w.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        let rest = &w[digits..];
        matches!(rest, "к" | "р" | "т" | "руб" | "тыс" | "тр")
            || (rest.is_empty()
                && words
                    .get(i + 1)
                    .is_some_and(|n| n.starts_with("руб") || n.starts_with("тыс") || *n == "р"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intents_of(text: &str) -> Vec<Intent> {
        extract(text, 12)
            .features
            .iter()
            .filter_map(|f| match f.origin {
                Origin::Intent(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn requests_and_ads_show_their_intents() {
        let request = intents_of("Кто сделает лендинг за неделю? Бюджет 30к");
        for i in [
            Intent::Question,
            Intent::WhoCan,
            Intent::Budget,
            Intent::Price,
        ] {
            assert!(request.contains(&i), "{i:?} in {request:?}");
        }
        let ad = intents_of("Сантехник с опытом 10 лет. Звоните +7 916 204-18-33!");
        for i in [
            Intent::Experience,
            Intent::Phone,
            Intent::Offer,
            Intent::Exclaim,
        ] {
            assert!(ad.contains(&i), "{i:?} in {ad:?}");
        }
        assert!(!ad.contains(&Intent::Question));
        let knows = intents_of("Кто-нибудь знает, когда дадут воду?");
        assert!(knows.contains(&Intent::AnyoneKnows) && !knows.contains(&Intent::WhoCan));
        assert!(intents_of("Ищу работу бухгалтером").contains(&Intent::JobSeeker));
    }

    #[test]
    fn the_vector_has_unit_length_and_trigrams_stay_inside_words() {
        let e = extract("Нужен сантехник, ёлки!", DEFAULT_BITS);
        let norm: f32 = e.features.iter().map(|f| f.value * f.value).sum();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        assert_eq!(e.words, ["нужен", "сантехник", "елки"]);
        let mut grams = Vec::new();
        trigrams("кот", |g| {
            grams.push(String::from_utf8_lossy(g).into_owned())
        });
        assert_eq!(grams, [" ко", "кот", "от "]);
        let empty = extract("", DEFAULT_BITS);
        assert_eq!(empty.features.len(), 1, "only the short-message intent");
        assert_eq!(empty.features[0].origin, Origin::Intent(Intent::Short));
    }
}
