//! The inbox's search results: with `q` the list pane shows the hits instead of the
//! conversation list — who, where, when, and the matching piece of text with the matched words
//! marked (each piece escaped by the template, the marks are `<mark>` elements of our own), and
//! a link that opens the conversation at that message (`#msg-…`, so the browser scrolls there
//! and `:target` highlights it, without JavaScript).

use super::fragments::fmt_time;
use crate::i18n::Tr;
use chatter_core::inbox::search::{self, SearchHit};
use chatter_core::{Actor, Core, CoreError};

/// Message hits shown on the page.
const LIMIT: u64 = 50;

/// The list pane in search mode: one row per conversation.
pub(super) struct SearchView {
    pub hits: Vec<HitView>,
    /// Why there is nothing to show, in the reader's language, when there is nothing.
    pub notice: Option<String>,
}

pub(super) struct HitView {
    pub id: String,
    pub href: String,
    pub who: String,
    pub source: String,
    pub when: String,
    /// Matched the contact (name, phone), not a message.
    pub contact: bool,
    pub parts: Vec<(String, bool)>,
}

/// Runs the search of `q` for the page; refusals become the notice, not an error page.
pub(super) async fn view(
    core: &Core,
    actor: &Actor,
    q: &str,
    tr: Tr,
) -> Result<SearchView, CoreError> {
    let results = match search::search(core, actor, q, LIMIT).await {
        Ok(r) => r,
        Err(CoreError::Invalid(errs)) => {
            let notice = errs
                .iter()
                .map(|e| tr.field(e))
                .collect::<Vec<_>>()
                .join(" ");
            return Ok(SearchView {
                hits: Vec::new(),
                notice: Some(notice),
            });
        }
        Err(e) => return Err(e),
    };
    let query =
        serde_urlencoded::to_string([("q", results.query.text.as_str())]).unwrap_or_default();
    let notice = if results.query.words.is_empty() {
        Some(tr.t("search.no_words").to_owned())
    } else if results.hits.is_empty() {
        Some(tr.t("search.nothing").to_owned())
    } else {
        None
    };
    // One row per conversation: its first hit (the contact, else the newest message).
    let mut seen = std::collections::HashSet::new();
    let hits = results
        .hits
        .into_iter()
        .filter(|h| seen.insert(h.row.conversation.id))
        .map(|h| hit_view(h, &query))
        .collect();
    Ok(SearchView { hits, notice })
}

fn hit_view(h: SearchHit, query: &str) -> HitView {
    let conv = h.row.conversation.id;
    let who = h
        .row
        .conversation
        .title
        .clone()
        .unwrap_or_else(|| h.row.contact.name.clone());
    let (href, when) = match &h.message {
        Some(m) => (
            format!("/app/inbox/{conv}?{query}&m={}#msg-{}", m.id, m.id),
            fmt_time(m.sent_at.unwrap_or(m.created_at)),
        ),
        None => (
            format!("/app/inbox/{conv}?{query}"),
            fmt_time(h.row.conversation.last_message_at),
        ),
    };
    HitView {
        id: format!("conv-{conv}"),
        href,
        who,
        source: h.row.source_name,
        when,
        contact: h.message.is_none(),
        parts: h.snippet.parts(),
    }
}
