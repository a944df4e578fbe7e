//! Word stems for keyword matching: Snowball's Russian and English (Porter2) stemmers from the
//! `rust-stemmers` crate, and the tokenizer that folds case (ё = е) before stemming. Keywords and
//! message texts go through the same function, so only equality of stems matters here.
//!
//! The crate replaced a 490-line hand-written Snowball Russian stemmer (last in commit f2029d4's
//! parent). Measured before deleting it for good (issue 10, item 8): over the 1,939 distinct
//! Russian words of the seed FAQ, the routing-rule tests and every Russian text in the repository
//! (8,002 running words), the two gave the same stem for every word (0 differences); the crate
//! took 125–210 ns a word against 780–880 ns for the hand-written one (release build, 3 rounds).
//!
//! The stemmer is deliberately not a lemmatiser: derivational forms keep their suffixes, so
//! «доставочная» → «доставочн» does not match «доставка» → «доставк».

use rust_stemmers::{Algorithm, Stemmer};
use std::sync::LazyLock;

static RUSSIAN: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::Russian));
static ENGLISH: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// A word of a text as written (lower-cased, ё → е) and its stem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The word as it appears in the text, lower-cased with ё folded to е.
    pub word: String,
    /// What [`stem`] makes of it.
    pub stem: String,
}

/// Lower-cases, folds ё to е, and stems one word: Russian words (Cyrillic letters only) with the
/// Snowball Russian algorithm, English ones (ASCII letters only) with Snowball English (Porter2);
/// anything else (digits, mixed scripts) is returned folded but unstemmed.
pub fn stem(word: &str) -> String {
    let folded = fold(word);
    if !folded.is_empty() && folded.chars().all(is_cyrillic) {
        RUSSIAN.stem(&folded).into_owned()
    } else if !folded.is_empty() && folded.chars().all(|c| c.is_ascii_lowercase()) {
        ENGLISH.stem(&folded).into_owned()
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
    fn english_words_share_stems_across_forms() {
        let pairs = [
            ("deliveries", "deliveri"),
            ("delivery", "deliveri"),
            ("shipping", "ship"),
            ("shipped", "ship"),
            ("ships", "ship"),
            ("prices", "price"),
            ("pricing", "price"),
            ("caresses", "caress"),
            ("agreed", "agre"),
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
