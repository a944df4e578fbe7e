//! Word stems for keyword matching: the Snowball Russian algorithm, Porter's step 1 for English,
//! and the tokenizer that folds case (ё = е) before stemming.
//!
//! The Russian stemmer follows the published Snowball description
//! (<https://snowballstem.org/algorithms/russian/stemmer.html>): regions RV and R2; step 1
//! (perfective gerund, else reflexive then adjectival / verb / noun), step 2 (final «и»),
//! step 3 (derivational «ост(ь)» in R2), step 4 (undouble «нн», superlative «ейш(е)», final «ь»).
//! Every ending is the longest one of its class lying in RV; a class-1 ending must follow «а» or
//! «я» that is itself in RV, and when it does not, that class fails (no shorter ending is tried),
//! exactly as Snowball's `among` does.
//!
//! The stemmer is deliberately not a lemmatiser: derivational forms keep their suffixes, so
//! «доставочная» → «доставочн» does not match «доставка» → «доставк».

/// A word of a text as written (lower-cased, ё → е) and its stem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The word as it appears in the text, lower-cased with ё folded to е.
    pub word: String,
    /// What [`stem`] makes of it.
    pub stem: String,
}

/// Lower-cases, folds ё to е, and stems one word: Russian words (Cyrillic letters only) with the
/// Snowball Russian algorithm, English ones (ASCII letters only) with Porter's step 1; anything
/// else (digits, mixed scripts) is returned folded but unstemmed.
pub fn stem(word: &str) -> String {
    let folded = fold(word);
    if !folded.is_empty() && folded.chars().all(is_cyrillic) {
        russian(&folded)
    } else if !folded.is_empty() && folded.chars().all(|c| c.is_ascii_lowercase()) {
        english(&folded)
    } else {
        folded
    }
}

/// Splits a text on everything that is not a letter or a digit and stems each word.
pub fn tokens(text: &str) -> Vec<String> {
    tokenize(text).into_iter().map(|t| t.stem).collect()
}

/// Like [`tokens`], keeping each word as written next to its stem (for explanations).
pub fn tokenize(text: &str) -> Vec<Token> {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| Token {
            word: w.to_owned(),
            stem: stem(w),
        })
        .collect()
}

/// Lower case with ё folded to е: the one case folding used by keywords, exclusions and regexes.
pub fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ё' { 'е' } else { c })
        .collect()
}

fn is_cyrillic(c: char) -> bool {
    matches!(c, 'а'..='я' | 'ё')
}

// ---------------------------------------------------------------------------------------------
// Russian (Snowball)

const PERFECTIVE_GERUND_1: &[&str] = &["в", "вши", "вшись"];
const PERFECTIVE_GERUND_2: &[&str] = &["ив", "ивши", "ившись", "ыв", "ывши", "ывшись"];
const ADJECTIVE: &[&str] = &[
    "ее", "ие", "ые", "ое", "ими", "ыми", "ей", "ий", "ый", "ой", "ем", "им", "ым", "ом", "его",
    "ого", "ему", "ому", "их", "ых", "ую", "юю", "ая", "яя", "ою", "ею",
];
const PARTICIPLE_1: &[&str] = &["ем", "нн", "вш", "ющ", "щ"];
const PARTICIPLE_2: &[&str] = &["ивш", "ывш", "ующ"];
const REFLEXIVE: &[&str] = &["ся", "сь"];
const VERB_1: &[&str] = &[
    "ла", "на", "ете", "йте", "ли", "й", "л", "ем", "н", "ло", "но", "ет", "ют", "ны", "ть", "ешь",
    "нно",
];
const VERB_2: &[&str] = &[
    "ила", "ыла", "ена", "ейте", "уйте", "ите", "или", "ыли", "ей", "уй", "ил", "ыл", "им", "ым",
    "ен", "ило", "ыло", "ено", "ят", "ует", "уют", "ит", "ыт", "ены", "ить", "ыть", "ишь", "ую",
    "ю",
];
const NOUN: &[&str] = &[
    "а", "ев", "ов", "ие", "ье", "е", "иями", "ями", "ами", "еи", "ии", "и", "ией", "ей", "ой",
    "ий", "й", "иям", "ям", "ием", "ем", "ам", "ом", "о", "у", "ах", "иях", "ях", "ы", "ь", "ию",
    "ью", "ю", "ия", "ья", "я",
];
const SUPERLATIVE: &[&str] = &["ейш", "ейше"];
const DERIVATIONAL: &[&str] = &["ост", "ость"];

fn is_vowel(c: char) -> bool {
    matches!(c, 'а' | 'е' | 'и' | 'о' | 'у' | 'ы' | 'э' | 'ю' | 'я')
}

/// An ending class split by Snowball's condition: class 1 needs «а»/«я» before it.
struct Classes<'a> {
    one: &'a [&'a str],
    two: &'a [&'a str],
}

/// The Russian word being stemmed, with RV's start (`rv`) and R2's start (`r2`) in characters.
struct Word {
    chars: Vec<char>,
    rv: usize,
    r2: usize,
}

impl Word {
    fn new(text: &str) -> Word {
        let chars: Vec<char> = text.chars().collect();
        let n = chars.len();
        // RV: after the first vowel. R1: after the first non-vowel following a vowel; R2 the same
        // again inside R1.
        let after_vowel =
            |from: usize| (from..n).find(|&i| is_vowel(chars[i])).map_or(n, |i| i + 1);
        let after_consonant = |from: usize| {
            (from..n)
                .find(|&i| !is_vowel(chars[i]))
                .map_or(n, |i| i + 1)
        };
        let rv = after_vowel(0);
        let r1 = after_consonant(rv);
        let r2 = after_consonant(after_vowel(r1));
        Word { chars, rv, r2 }
    }

    fn ends_with(&self, ending: &str) -> bool {
        let len = ending.chars().count();
        len <= self.chars.len().saturating_sub(self.rv)
            && self.chars[self.chars.len() - len..]
                .iter()
                .copied()
                .eq(ending.chars())
    }

    /// The longest ending of `list` lying wholly in RV.
    fn longest<'a>(&self, list: &[&'a str]) -> Option<&'a str> {
        list.iter()
            .copied()
            .filter(|e| self.ends_with(e))
            .max_by_key(|e| e.chars().count())
    }

    fn cut(&mut self, ending: &str) {
        let len = ending.chars().count();
        self.chars.truncate(self.chars.len() - len);
    }

    /// Removes the longest ending of either class; a class-1 ending only after «а»/«я» in RV.
    /// False (and the word unchanged) when there is none or the longest one fails its condition.
    fn remove(&mut self, classes: &Classes) -> bool {
        let one = self.longest(classes.one);
        let two = self.longest(classes.two);
        let len = |e: Option<&str>| e.map_or(0, |e| e.chars().count());
        match (one, two) {
            (Some(e), _) if len(Some(e)) > len(two) => {
                let at = self.chars.len() - e.chars().count();
                if at > self.rv && matches!(self.chars[at - 1], 'а' | 'я') {
                    self.cut(e);
                    true
                } else {
                    false
                }
            }
            (_, Some(e)) => {
                self.cut(e);
                true
            }
            _ => false,
        }
    }

    fn remove_any(&mut self, list: &[&str]) -> bool {
        match self.longest(list) {
            Some(e) => {
                self.cut(e);
                true
            }
            None => false,
        }
    }

    fn adjectival(&mut self) -> bool {
        if !self.remove_any(ADJECTIVE) {
            return false;
        }
        self.remove(&Classes {
            one: PARTICIPLE_1,
            two: PARTICIPLE_2,
        });
        true
    }

    fn undouble_n(&mut self) {
        if self.ends_with("нн") {
            self.chars.pop();
        }
    }
}

fn russian(word: &str) -> String {
    let mut w = Word::new(word);

    // Step 1.
    let gerund = w.remove(&Classes {
        one: PERFECTIVE_GERUND_1,
        two: PERFECTIVE_GERUND_2,
    });
    if !gerund {
        w.remove_any(REFLEXIVE);
        let _ = w.adjectival()
            || w.remove(&Classes {
                one: VERB_1,
                two: VERB_2,
            })
            || w.remove_any(NOUN);
    }

    // Step 2.
    if w.ends_with("и") {
        w.chars.pop();
    }

    // Step 3: the derivational ending must lie in R2.
    if let Some(e) = w.longest(DERIVATIONAL) {
        if w.chars.len() - e.chars().count() >= w.r2 {
            w.cut(e);
        }
    }

    // Step 4: one of undouble «нн», superlative (then undouble), final «ь» — whichever ending
    // is longest, as in Snowball's `tidy_up`.
    if let Some(e) = w.longest(SUPERLATIVE) {
        w.cut(e);
        w.undouble_n();
    } else if w.ends_with("н") {
        w.undouble_n();
    } else if w.ends_with("ь") {
        w.chars.pop();
    }

    w.chars.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// English: Porter's step 1 (plurals, -ed, -ing, final y), enough for keywords to meet their forms.

fn english(word: &str) -> String {
    if word.len() <= 2 {
        return word.to_owned();
    }
    let mut w: Vec<u8> = word.as_bytes().to_vec();

    // Step 1a.
    if w.ends_with(b"sses") || w.ends_with(b"ies") {
        w.truncate(w.len() - 2);
    } else if w.ends_with(b"s") && !w.ends_with(b"ss") {
        w.pop();
    }

    // Step 1b.
    let mut tidy = false;
    if w.ends_with(b"eed") {
        if measure(&w[..w.len() - 3]) > 0 {
            w.pop();
        }
    } else {
        for suffix in [&b"ed"[..], &b"ing"[..]] {
            if w.ends_with(suffix) && has_vowel(&w[..w.len() - suffix.len()]) {
                w.truncate(w.len() - suffix.len());
                tidy = true;
                break;
            }
        }
    }
    if tidy {
        if w.ends_with(b"at") || w.ends_with(b"bl") || w.ends_with(b"iz") {
            w.push(b'e');
        } else if ends_with_double_consonant(&w) && !matches!(w.last(), Some(b'l' | b's' | b'z')) {
            w.pop();
        } else if measure(&w) == 1 && ends_cvc(&w) {
            w.push(b'e');
        }
    }

    // Step 1c.
    if w.ends_with(b"y") && has_vowel(&w[..w.len() - 1]) {
        let last = w.len() - 1;
        w[last] = b'i';
    }

    String::from_utf8(w).expect("only ASCII letters were removed or added")
}

fn is_consonant(w: &[u8], i: usize) -> bool {
    match w[i] {
        b'a' | b'e' | b'i' | b'o' | b'u' => false,
        b'y' => i == 0 || !is_consonant(w, i - 1),
        _ => true,
    }
}

fn has_vowel(w: &[u8]) -> bool {
    (0..w.len()).any(|i| !is_consonant(w, i))
}

/// Porter's m: the number of vowel-consonant sequences in [C](VC)^m[V].
fn measure(w: &[u8]) -> usize {
    let mut m = 0;
    let mut previous_vowel = false;
    for i in 0..w.len() {
        let consonant = is_consonant(w, i);
        if consonant && previous_vowel {
            m += 1;
        }
        previous_vowel = !consonant;
    }
    m
}

fn ends_with_double_consonant(w: &[u8]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], b'w' | b'x' | b'y')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sales words, worked through the published algorithm by hand.
    #[test]
    fn russian_sales_words() {
        let pairs = [
            ("доставка", "доставк"),
            ("доставки", "доставк"),
            ("доставку", "доставк"),
            ("доставкой", "доставк"),
            ("красивая", "красив"),
            ("красивейший", "красив"),
            ("бегущий", "бегущ"),
            ("книгами", "книг"),
            ("длинный", "длин"),
            ("достопримечательность", "достопримечательн"),
            ("прочитавши", "прочита"),
            ("ходить", "ход"),
            ("писать", "писа"),
            ("говорила", "говор"),
            ("стоимость", "стоимост"),
            ("стоит", "сто"),
            ("москву", "москв"),
            ("делающий", "дела"),
            ("ключи", "ключ"),
            ("заказ", "заказ"),
            ("заказать", "заказа"),
        ];
        assert_stems(&pairs);
    }

    /// Lines of Snowball's published sample output (snowball-data, `russian/diffs.txt`), chosen
    /// to cover every step: gerunds, reflexives, participles, verbs of both classes, nouns,
    /// «и», «ость» in R2, superlatives, «нн» and «ь».
    #[test]
    fn russian_matches_the_snowball_sample_output() {
        let pairs = [
            ("абонировался", "абонирова"),
            ("абонируйся", "абонир"),
            ("авиация", "авиац"),
            ("авось", "ав"),
            ("автомобили", "автомоб"),
            ("автомобиль", "автомобил"),
            ("аи", "а"),
            ("алена", "ал"),
            ("алексеев", "алексе"),
            ("аллея", "алле"),
            ("аллее", "алл"),
            ("анализирующей", "анализир"),
            ("апельсинничаешь", "апельсиннича"),
            ("аплодируя", "аплодиру"),
            ("арестуйте", "арест"),
            ("замечательнейшая", "замечательн"),
            ("заносчивость", "заносчив"),
            ("запачканная", "запачка"),
            ("замасленной", "замаслен"),
            ("залившись", "зал"),
            ("запах", "зап"),
            ("запахе", "запах"),
            ("заметьте", "заметьт"),
            ("занимающаяся", "занима"),
            ("запершись", "заперш"),
            ("записыванья", "записыван"),
            ("запенившимися", "запен"),
            ("заломившаяся", "залом"),
            ("замечаемый", "замеча"),
            ("заманчивей", "заманчив"),
            ("замешательством", "замешательств"),
            ("зальюсь", "зал"),
            ("замрут", "замрут"),
        ];
        assert_stems(&pairs);
    }

    fn assert_stems(pairs: &[(&str, &str)]) {
        let wrong: Vec<String> = pairs
            .iter()
            .filter(|(word, want)| stem(word) != *want)
            .map(|(word, want)| format!("{word}: got {}, want {want}", stem(word)))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn class_one_endings_need_a_or_ya_inside_rv() {
        // «взять»: the «я» before «ть» is not in RV (RV starts after it), so the verb class fails
        // and only the noun ending «ь» goes.
        assert_eq!(stem("взять"), "взят");
        // «читала»: «ла» follows «а» in RV.
        assert_eq!(stem("читала"), "чита");
    }

    #[test]
    fn derivational_forms_keep_their_suffix() {
        // The decision documented at the top: a stemmer, not a lemmatiser.
        assert_eq!(stem("доставочная"), "доставочн");
        assert_ne!(stem("доставочная"), stem("доставка"));
    }

    #[test]
    fn case_and_yo_are_folded() {
        assert_eq!(stem("ДОСТАВКА"), "доставк");
        assert_eq!(stem("Ёлка"), stem("елка"));
        assert_eq!(stem("зелёный"), stem("зеленый"));
    }

    #[test]
    fn english_porter_step_one() {
        let pairs = [
            ("deliveries", "deliveri"),
            ("delivery", "deliveri"),
            ("shipping", "ship"),
            ("shipped", "ship"),
            ("ships", "ship"),
            ("prices", "price"),
            ("pricing", "price"),
            ("caresses", "caress"),
            ("agreed", "agree"),
            ("hopping", "hop"),
            ("filing", "file"),
            ("as", "as"),
        ];
        for (word, want) in pairs {
            assert_eq!(stem(word), want, "{word}");
        }
    }

    #[test]
    fn other_words_are_folded_but_left_alone() {
        assert_eq!(stem("iPhone15"), "iphone15");
        assert_eq!(stem("2024"), "2024");
    }

    #[test]
    fn tokens_split_on_punctuation_and_stem_each_word() {
        assert_eq!(
            tokens("Сколько стоит доставка в Москву?"),
            ["скольк", "сто", "доставк", "в", "москв"]
        );
        assert_eq!(
            tokens("интернет-магазин, 5 кг!"),
            ["интернет", "магазин", "5", "кг"]
        );
        let t = tokenize("Доставку ЗАКАЗАЛИ");
        assert_eq!(t[0].word, "доставку");
        assert_eq!(t[0].stem, "доставк");
        assert_eq!(t[1].stem, "заказа");
    }
}
