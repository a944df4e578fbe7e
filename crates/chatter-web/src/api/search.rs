//! `GET /api/v1/search`: the inbox's search through the API — hits with the conversation, the
//! message (none when the contact's name or phone matched), and a snippet with the matched
//! words as character ranges, so a client marks them up itself.

use super::{ApiActor, ApiError, ApiErrorBody, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chatter_core::inbox::search::{self, SearchHit};
use chatter_core::CoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQueryIn {
    /// What to look for: words of messages (any form: «доставку» finds «доставка»), or part of
    /// a contact's name, username or phone. Up to 200 characters, at least one that is not a
    /// space; a query of punctuation only finds nothing (`words` is empty).
    #[param(min_length = 1, max_length = 200, pattern = r"\S")]
    pub q: String,
    /// Message hits at most, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchOut {
    /// The words searched for, lower-cased (ё as е); empty when the query has no letters or
    /// digits.
    pub words: Vec<String>,
    /// Contact matches first, then messages, newest first.
    pub hits: Vec<SearchHitOut>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchHitOut {
    pub conversation_id: Uuid,
    /// The message that matched; null when the contact did.
    pub message_id: Option<Uuid>,
    pub contact_name: String,
    pub source_name: String,
    /// When the message was stored (or the conversation's last message), Unix ms.
    pub at: i64,
    /// The matching piece of text (at most about 160 characters, «…» where it was cut).
    pub snippet: String,
    /// The matched words in `snippet`.
    pub highlights: Vec<HighlightOut>,
    /// Where the inbox shows this hit (the conversation opened at the message).
    pub url: String,
}

/// A range of `snippet`, counted in Unicode characters (code points), end exclusive.
#[derive(Serialize, ToSchema)]
pub struct HighlightOut {
    pub start: usize,
    pub end: usize,
}

/// Searches the company's messages, contact names and phones.
#[utoipa::path(get, path = "/api/v1/search", tag = "conversations", params(SearchQueryIn),
    responses((status = 200, body = SearchOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "the query string does not parse or lacks `q` (`invalid_query`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`q` is empty, only spaces or longer than 200 characters; `limit` is not between 1 and 100")))]
pub async fn search_messages(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiQuery(q): ApiQuery<SearchQueryIn>,
) -> Result<Json<SearchOut>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError(CoreError::field("limit", "err.out_of_range")));
    }
    let results = search::search(&st.core, &a, &q.q, limit).await?;
    Ok(Json(SearchOut {
        words: results.query.words,
        hits: results.hits.into_iter().map(hit_out).collect(),
    }))
}

fn hit_out(h: SearchHit) -> SearchHitOut {
    let conv = h.row.conversation.id;
    let (message_id, at, url) = match &h.message {
        Some(m) => (
            Some(m.id),
            m.created_at,
            format!("/app/inbox/{conv}?m={}#msg-{}", m.id, m.id),
        ),
        None => (
            None,
            h.row.conversation.last_message_at,
            format!("/app/inbox/{conv}"),
        ),
    };
    SearchHitOut {
        conversation_id: conv.0,
        message_id: message_id.map(|m| m.0),
        contact_name: h.row.contact.name,
        source_name: h.row.source_name,
        at,
        highlights: h
            .snippet
            .marks
            .iter()
            .map(|&(start, end)| HighlightOut { start, end })
            .collect(),
        snippet: h.snippet.text,
        url,
    }
}
