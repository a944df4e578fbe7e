//! Search of a company's conversations: message texts through the full-text index (any form of
//! a word: «доставку» finds «доставка», on both databases; `chatter_store::search`), contact
//! names, usernames and phones by substring in any case. Each hit carries a snippet of the text
//! with the matched words marked (offsets, never markup: the page escapes the text itself), and
//! the message it came from, so the inbox can open the conversation at that message.

use super::list::{case_variants, rows_for, ConversationRow};
use crate::{Actor, Core, CoreError, Result};
use chatter_domain::{stem, ConversationId, FieldError, MessageId, Permission};
use chatter_store::entity::{contact, conversation, message};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use std::collections::HashSet;
use uuid::Uuid;

/// The longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Words of a query that count; the rest are ignored.
pub const MAX_WORDS: usize = 8;
/// Characters of text a snippet shows.
const SNIPPET_CHARS: usize = 160;
/// Contacts matched by name or phone that are listed.
const MAX_CONTACTS: u64 = 20;

/// What a person typed, read: the words searched for (lower case, ё → е) and their stems.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    /// The text as typed, trimmed.
    pub text: String,
    /// The words that are searched for; empty when the text has no letters or digits.
    pub words: Vec<String>,
    stems: HashSet<String>,
    /// The last word, also matched as the beginning of a word (long enough to be worth it).
    prefix: Option<(String, String)>,
}

impl SearchQuery {
    /// Reads a query: empty (or only spaces) and longer than [`MAX_QUERY_CHARS`] are refused
    /// with a field error on `q`; only punctuation reads as a query without words.
    pub fn parse(q: &str) -> Result<SearchQuery> {
        let text = q.trim();
        if text.is_empty() {
            return Err(CoreError::field("q", "err.required"));
        }
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(CoreError::Invalid(vec![FieldError::too_long(
                "q",
                MAX_QUERY_CHARS,
            )]));
        }
        let mut words: Vec<String> = Vec::new();
        for t in stem::tokenize(text) {
            if !words.contains(&t.word) && words.len() < MAX_WORDS {
                words.push(t.word);
            }
        }
        let stems = words.iter().map(|w| stem::stem(w)).collect();
        let prefix = words
            .last()
            .filter(|w| w.chars().count() >= chatter_store::search::PREFIX_CHARS)
            .map(|w| (w.clone(), stem::stem(w)));
        Ok(SearchQuery {
            text: text.to_owned(),
            words,
            stems,
            prefix,
        })
    }

    /// The character ranges of `text` holding a searched word in any form.
    pub fn marks(&self, text: &str) -> Vec<(usize, usize)> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut start: Option<usize> = None;
        for i in 0..=chars.len() {
            let in_word = chars.get(i).is_some_and(|c| c.is_alphanumeric());
            match (start, in_word) {
                (None, true) => start = Some(i),
                (Some(s), false) => {
                    let word: String = chars[s..i].iter().collect();
                    if self.matches(&word) {
                        out.push((s, i));
                    }
                    start = None;
                }
                _ => {}
            }
        }
        out
    }

    fn matches(&self, word: &str) -> bool {
        let stemmed = stem::stem(word);
        self.stems.contains(&stemmed)
            || self.prefix.as_ref().is_some_and(|(raw, stemmed_prefix)| {
                stem::fold(word).starts_with(raw.as_str())
                    || stemmed.starts_with(stemmed_prefix.as_str())
            })
    }

    /// A piece of `text` around its first matched word, with the matches marked.
    pub fn snippet(&self, text: &str) -> Snippet {
        // One character for one: line breaks and tabs become spaces, so offsets stay true.
        let chars: Vec<char> = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let flat: String = chars.iter().collect();
        let marks = self.marks(&flat);
        if chars.len() <= SNIPPET_CHARS {
            return Snippet { text: flat, marks };
        }
        let first = marks.first().map_or(0, |m| m.0);
        let begin = first
            .saturating_sub(SNIPPET_CHARS / 4)
            .min(chars.len() - SNIPPET_CHARS);
        let end = begin + SNIPPET_CHARS;
        let lead = usize::from(begin > 0);
        let mut out = String::new();
        if begin > 0 {
            out.push('…');
        }
        out.extend(&chars[begin..end]);
        if end < chars.len() {
            out.push('…');
        }
        let marks = marks
            .into_iter()
            .filter(|(s, e)| *s >= begin && *e <= end)
            .map(|(s, e)| (s - begin + lead, e - begin + lead))
            .collect();
        Snippet { text: out, marks }
    }
}

/// A short text with marked ranges (character offsets, end exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snippet {
    pub text: String,
    pub marks: Vec<(usize, usize)>,
}

impl Snippet {
    /// The text cut at the marks: `(piece, marked)` in order, for a template to escape.
    pub fn parts(&self) -> Vec<(String, bool)> {
        let chars: Vec<char> = self.text.chars().collect();
        let mut out = Vec::new();
        let mut at = 0;
        for &(s, e) in &self.marks {
            if s > at {
                out.push((chars[at..s].iter().collect(), false));
            }
            out.push((chars[s..e].iter().collect(), true));
            at = e;
        }
        if at < chars.len() {
            out.push((chars[at..].iter().collect(), false));
        }
        out
    }
}

/// One result: a conversation, and the message that matched (none when the contact did).
#[derive(Clone, Debug)]
pub struct SearchHit {
    pub row: ConversationRow,
    pub message: Option<message::Model>,
    pub snippet: Snippet,
}

/// The results of one query.
#[derive(Clone, Debug)]
pub struct SearchResults {
    pub query: SearchQuery,
    pub hits: Vec<SearchHit>,
}

/// Searches the actor's company: contacts whose name, username or phone contain the query
/// (their conversations first), then messages with every word of it, newest first; at most
/// `limit` message hits.
pub async fn search(core: &Core, actor: &Actor, q: &str, limit: u64) -> Result<SearchResults> {
    actor.require(Permission::Read)?;
    let query = SearchQuery::parse(q)?;
    if query.words.is_empty() {
        return Ok(SearchResults {
            query,
            hits: Vec::new(),
        });
    }
    let mut hits = contact_hits(core, actor.company_id, &query).await?;
    let ids =
        chatter_store::search::find_messages(&core.read, actor.company_id, &query.words, limit)
            .await?;
    // By key only, the company checked on each row here: with `company_id = …` in the query
    // SQLite may walk the whole company instead of looking the hits up (see
    // `chatter_store::optimize`).
    let mut messages: Vec<message::Model> = message::Entity::find()
        .filter(message::Column::Id.is_in(ids))
        .all(&core.read)
        .await?
        .into_iter()
        .filter(|m| m.company_id == actor.company_id)
        .collect();
    messages.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let convs: Vec<conversation::Model> = conversation::Entity::find()
        .filter(conversation::Column::Id.is_in(messages.iter().map(|m| m.conversation_id)))
        .all(&core.read)
        .await?
        .into_iter()
        .filter(|c| c.company_id == actor.company_id)
        .collect();
    let rows = rows_for(core, convs).await?;
    for m in messages {
        let Some(row) = rows.iter().find(|r| r.conversation.id == m.conversation_id) else {
            continue;
        };
        hits.push(SearchHit {
            row: row.clone(),
            snippet: query.snippet(m.text.as_deref().unwrap_or_default()),
            message: Some(m),
        });
    }
    Ok(SearchResults { query, hits })
}

/// Conversations whose contact's name, username or phone contains the query.
async fn contact_hits(
    core: &Core,
    company: chatter_domain::CompanyId,
    query: &SearchQuery,
) -> Result<Vec<SearchHit>> {
    let needle = query.text.replace(['%', '_'], "");
    let mut any = Condition::any();
    for like in case_variants(&needle) {
        any = any
            .add(Expr::col(contact::Column::Name).like(&like))
            .add(Expr::col(contact::Column::Username).like(&like));
    }
    // Phones by their digits, however they were typed: «+7 (916) 123» finds +79161234….
    let digits: String = query.text.chars().filter(char::is_ascii_digit).collect();
    let phone_like = query
        .text
        .chars()
        .all(|c| c.is_ascii_digit() || " +-()".contains(c));
    if digits.len() >= 3 && phone_like {
        any = any.add(Expr::col(contact::Column::Phone).like(format!("%{digits}%")));
    }
    let contacts = contact::Entity::find()
        .filter(contact::Column::CompanyId.eq(company))
        .filter(any)
        .limit(MAX_CONTACTS)
        .all(&core.read)
        .await?;
    let convs = conversation::Entity::find()
        .filter(conversation::Column::CompanyId.eq(company))
        .filter(conversation::Column::ContactId.is_in(contacts.iter().map(|c| c.id)))
        .order_by_desc(conversation::Column::LastMessageAt)
        .limit(MAX_CONTACTS)
        .all(&core.read)
        .await?;
    Ok(rows_for(core, convs)
        .await?
        .into_iter()
        .map(|row| {
            let mut text = row.contact.name.clone();
            if let Some(p) = &row.contact.phone {
                text.push_str(" · ");
                text.push_str(p);
            }
            let mut snippet = query.snippet(&text);
            if snippet.marks.is_empty() {
                snippet.marks = substring_marks(&snippet.text, &query.text);
            }
            SearchHit {
                row,
                message: None,
                snippet,
            }
        })
        .collect())
}

/// Where `needle` occurs in `text`, ignoring case (character offsets).
fn substring_marks(text: &str, needle: &str) -> Vec<(usize, usize)> {
    let hay: Vec<char> = stem::fold(text).chars().collect();
    let needle: Vec<char> = stem::fold(needle).chars().collect();
    // Folding keeps one character for one in every alphabet the inbox sees; if it did not,
    // offsets would be wrong, so mark nothing.
    if needle.is_empty() || hay.len() != text.chars().count() {
        return Vec::new();
    }
    hay.windows(needle.len())
        .position(|w| w == needle.as_slice())
        .map(|s| vec![(s, s + needle.len())])
        .unwrap_or_default()
}

/// The conversations of `company` with a message containing every word of `text` (at most
/// `limit`), for the conversation list's `q`.
pub(super) async fn conversations_matching(
    core: &Core,
    company: chatter_domain::CompanyId,
    text: &str,
    limit: u64,
) -> Result<Vec<Uuid>> {
    let Ok(query) = SearchQuery::parse(text) else {
        return Ok(Vec::new());
    };
    let ids =
        chatter_store::search::find_messages(&core.read, company, &query.words, limit).await?;
    // By key, the company checked here (as in `search`).
    let rows: Vec<(Uuid, Uuid)> = message::Entity::find()
        .filter(message::Column::Id.is_in(ids))
        .select_only()
        .column(message::Column::ConversationId)
        .column(message::Column::CompanyId)
        .distinct()
        .into_tuple()
        .all(&core.read)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, c)| *c == company.0)
        .map(|(conv, _)| conv)
        .collect())
}

/// The messages of a conversation to show when opening it at `target`: the last `limit`
/// when the target is among them, otherwise a window of `limit` starting a few messages
/// before it (older ones first either way).
pub async fn messages_at(
    core: &Core,
    actor: &Actor,
    conversation_id: ConversationId,
    target: MessageId,
    limit: u64,
) -> Result<Vec<message::Model>> {
    let latest = super::messages(core, actor, conversation_id, limit).await?;
    if latest.iter().any(|m| m.id == target) {
        return Ok(latest);
    }
    let Some(t) = message::Entity::find_by_id(target)
        .filter(message::Column::CompanyId.eq(actor.company_id))
        .filter(message::Column::ConversationId.eq(conversation_id))
        .one(&core.read)
        .await?
    else {
        return Ok(latest);
    };
    let mut before = message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation_id))
        .filter(message::Column::CreatedAt.lt(t.created_at))
        .order_by_desc(message::Column::CreatedAt)
        .order_by_desc(message::Column::Id)
        .limit(5)
        .all(&core.read)
        .await?;
    before.reverse();
    let after = message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation_id))
        .filter(message::Column::CreatedAt.gte(t.created_at))
        .order_by_asc(message::Column::CreatedAt)
        .order_by_asc(message::Column::Id)
        .limit(limit.saturating_sub(before.len() as u64))
        .all(&core.read)
        .await?;
    before.extend(after);
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_its_words_and_refuses_nothing_to_search() {
        let q = SearchQuery::parse("  Доставку, «NEAR» \"x\" * - : ' ").expect("parses");
        assert_eq!(q.words, ["доставку", "near", "x"]);
        assert!(SearchQuery::parse("?!…").expect("parses").words.is_empty());
        assert!(SearchQuery::parse("   ").is_err());
        assert!(SearchQuery::parse(&"а".repeat(MAX_QUERY_CHARS + 1)).is_err());
    }

    #[test]
    fn any_form_of_a_word_is_marked() {
        let q = SearchQuery::parse("доставку").expect("parses");
        let s = q.snippet("Когда Доставка? Про доставочную не спрашиваю");
        // A derived word is another word (the stemmer is no lemmatiser).
        assert_eq!(s.marks, [(6, 14)]);
        assert_eq!(
            s.parts(),
            [
                ("Когда ".to_string(), false),
                ("Доставка".to_string(), true),
                ("? Про доставочную не спрашиваю".to_string(), false)
            ]
        );
    }

    #[test]
    fn the_last_word_also_matches_as_typed_so_far() {
        let q = SearchQuery::parse("нужна дос").expect("parses");
        assert_eq!(q.snippet("Нужна доставка").marks, [(0, 5), (6, 14)]);
        // Two letters are too few to mean anything as a beginning.
        let q = SearchQuery::parse("до").expect("parses");
        assert!(q.snippet("доставка").marks.is_empty());
    }

    #[test]
    fn a_long_text_is_cut_around_the_first_match() {
        let q = SearchQuery::parse("гарантия").expect("parses");
        let text = format!("{} гарантии {}", "слово ".repeat(100), "ещё ".repeat(100));
        let s = q.snippet(&text);
        assert!(
            s.text.starts_with('…') && s.text.ends_with('…'),
            "{}",
            s.text
        );
        let (a, b) = s.marks[0];
        let marked: String = s.text.chars().skip(a).take(b - a).collect();
        assert_eq!(marked, "гарантии");
    }

    #[test]
    fn substrings_are_marked_in_any_case() {
        assert_eq!(substring_marks("Ольга Смирнова", "смир"), [(6, 10)]);
        assert!(substring_marks("Ольга", "x").is_empty());
    }
}
