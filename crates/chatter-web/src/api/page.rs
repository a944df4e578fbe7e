//! Cursor pagination of the API's lists: `?cursor=…&limit=…`.
//!
//! A client that sends `cursor` walks the list in pages, each answered as
//! `{"items": […], "next_cursor": "…"}` (`null` after the last page); an empty `cursor` asks for
//! the first page. A client that sends no `cursor` gets the answer it always got: the list as a
//! bare array (its first page, `limit` items when given).
//!
//! A cursor is opaque to clients: the hex of the last item's sort key (8 bytes, big-endian) and
//! id (16 bytes), always 48 characters, so every string of that shape is a position in the list
//! and the schema's pattern says exactly what is accepted. Each list is
//! ordered by a key that never changes (when a conversation began, when a message was stored…)
//! then by id, and a page starts strictly after the cursor's item: items added while a client
//! walks never shift the pages, so no item is seen twice and none is skipped.

use super::{body, FieldErrorOut};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

/// The most items a page holds.
pub const MAX_LIMIT: u64 = 500;
/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 100;

/// A position in a list: the sort key and id of the last item a page held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub key: i64,
    pub id: Uuid,
}

impl Position {
    /// The position of the item sorted by `key` whose id is `id` (any typed id).
    pub fn new(key: i64, id: impl Into<Uuid>) -> Position {
        Position { key, id: id.into() }
    }

    pub fn encode(&self) -> String {
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&self.key.to_be_bytes());
        bytes[8..].copy_from_slice(self.id.as_bytes());
        hex::encode(bytes)
    }

    fn decode(s: &str) -> Option<Position> {
        if s.len() != 48 {
            return None;
        }
        let bytes = hex::decode(s).ok()?;
        let key = i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let id = Uuid::from_slice(bytes.get(8..24)?).ok()?;
        Some(Position { key, id })
    }
}

/// What a list request asked for, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// No `cursor`: the list as before, as a bare array (at most `limit` when given).
    Legacy { limit: Option<u64> },
    /// A page of `limit` items after `after` (from the start when `None`).
    Page { after: Option<Position>, limit: u64 },
}

impl Paging {
    /// Checks `cursor` and `limit` (1 to [`MAX_LIMIT`]).
    pub fn parse(cursor: Option<&str>, limit: Option<u64>) -> Result<Paging, Refused> {
        if let Some(l) = limit {
            if !(1..=MAX_LIMIT).contains(&l) {
                return Err(Refused::Limit);
            }
        }
        Ok(match cursor {
            None => Paging::Legacy { limit },
            Some("") => Paging::Page {
                after: None,
                limit: limit.unwrap_or(DEFAULT_LIMIT),
            },
            Some(c) => Paging::Page {
                after: Some(Position::decode(c).ok_or(Refused::Cursor)?),
                limit: limit.unwrap_or(DEFAULT_LIMIT),
            },
        })
    }

    /// The rows to read: one more than a page, to know whether another follows.
    pub fn fetch(&self, legacy_default: u64) -> u64 {
        match *self {
            Paging::Legacy { limit } => limit.unwrap_or(legacy_default),
            Paging::Page { limit, .. } => limit + 1,
        }
    }

    pub fn after(&self) -> Option<Position> {
        match *self {
            Paging::Page { after, .. } => after,
            Paging::Legacy { .. } => None,
        }
    }
}

/// A page answer: the items and the cursor of the next page.
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Paged<T> {
    /// Cuts `rows` (read with [`Paging::fetch`], in list order) to the page and sets the next
    /// cursor from the last item kept when more rows were read.
    pub fn cut(mut rows: Vec<T>, limit: u64, position: impl Fn(&T) -> Position) -> Paged<T> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = match more {
            true => rows.last().map(|r| position(r).encode()),
            false => None,
        };
        Paged {
            items: rows,
            next_cursor,
        }
    }
}

/// A whole list already in memory (small by nature: members, sources), as `paging` asks:
/// without a cursor in its own order, as before; a page is the items after the cursor by
/// `position`, ascending.
pub fn in_memory<T>(
    mut all: Vec<T>,
    paging: Paging,
    position: impl Fn(&T) -> Position,
) -> Listed<T> {
    if let Paging::Page { .. } = paging {
        all.sort_by_key(|t| position(t));
    }
    match paging {
        Paging::Legacy { limit } => {
            if let Some(l) = limit {
                all.truncate(usize::try_from(l).unwrap_or(usize::MAX));
            }
            Listed::All(all)
        }
        Paging::Page { after, limit } => {
            let rest: Vec<T> = match after {
                Some(a) => all.into_iter().filter(|t| position(t) > a).collect(),
                None => all,
            };
            let rows: Vec<T> = rest
                .into_iter()
                .take(usize::try_from(limit + 1).unwrap_or(usize::MAX))
                .collect();
            Listed::Page(Paged::cut(rows, limit, position))
        }
    }
}

/// A refused `cursor` or `limit`: 422 naming the parameter.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Cursor,
    Limit,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (field, code, message) = match self {
            Refused::Cursor => (
                "cursor",
                "cursor_invalid",
                "`cursor` is not a cursor of this list: pass the `next_cursor` of the previous page unchanged, or an empty `cursor` for the first page".to_owned(),
            ),
            Refused::Limit => (
                "limit",
                "out_of_range",
                format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"),
            ),
        };
        body(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            &message,
            vec![FieldErrorOut {
                field: field.into(),
                code: code.into(),
                limit: None,
            }],
        )
    }
}

/// The query parameters of a paged list.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Send it to get pages (`{"items", "next_cursor"}`): empty for the first page, then the
    /// `next_cursor` of the previous one. Without it the answer is the list as a bare array,
    /// as before.
    #[param(pattern = "^([0-9a-fA-F]{48})?$")]
    pub cursor: Option<String>,
    /// Items per page, 1 to 500 (default 100; without `cursor`, at most this many).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
}

impl PageQuery {
    pub fn paging(&self) -> Result<Paging, Refused> {
        Paging::parse(self.cursor.as_deref(), self.limit)
    }
}

/// A list as the client asked for it: the bare array of a client that sent no `cursor`, or
/// one page.
pub enum Listed<T> {
    All(Vec<T>),
    Page(Paged<T>),
}

impl<T> Listed<T> {
    /// The same list or page with its items turned into `f`'s.
    pub fn map_items<U>(self, f: impl FnOnce(Vec<T>) -> Vec<U>) -> Listed<U> {
        match self {
            Listed::All(v) => Listed::All(f(v)),
            Listed::Page(p) => Listed::Page(Paged {
                items: f(p.items),
                next_cursor: p.next_cursor,
            }),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for Listed<T> {
    fn into_response(self) -> Response {
        match self {
            Listed::All(list) => axum::Json(list).into_response(),
            Listed::Page(p) => axum::Json(serde_json::json!({
                "items": p.items,
                "next_cursor": p.next_cursor,
            }))
            .into_response(),
        }
    }
}

/// Declares a list's page type for the OpenAPI document and its either-shape answer.
macro_rules! page_types {
    ($page:ident, $either:ident, $item:ty, $what:literal) => {
        #[doc = concat!("A page of ", $what, ".")]
        #[derive(serde::Serialize, utoipa::ToSchema)]
        pub struct $page {
            pub items: Vec<$item>,
            /// The `cursor` of the next page; `null` on the last page.
            pub next_cursor: Option<String>,
        }

        #[doc = concat!("The ", $what, ": a bare array without `cursor`")]
        #[doc = "(as before), a page with it."]
        #[derive(serde::Serialize, utoipa::ToSchema)]
        #[serde(untagged)]
        pub enum $either {
            List(Vec<$item>),
            Page($page),
        }
    };
}
pub(crate) use page_types;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_is_not_one() {
        let p = Position::new(-5, Uuid::now_v7());
        let c = p.encode();
        assert_eq!(c.len(), 48);
        assert!(c.chars().all(|ch| ch.is_ascii_hexdigit()));
        assert_eq!(Position::decode(&c), Some(p));
        assert_eq!(
            Paging::parse(Some("nope"), None),
            Err(Refused::Cursor),
            "too short"
        );
        assert_eq!(
            Paging::parse(Some(&"g".repeat(48)), None),
            Err(Refused::Cursor)
        );
        assert_eq!(Paging::parse(None, Some(0)), Err(Refused::Limit));
        assert_eq!(Paging::parse(Some(""), Some(501)), Err(Refused::Limit));
        assert_eq!(
            Paging::parse(Some(""), None),
            Ok(Paging::Page {
                after: None,
                limit: DEFAULT_LIMIT
            })
        );
        assert_eq!(
            Paging::parse(None, None),
            Ok(Paging::Legacy { limit: None })
        );
        // Every 48 hex digits are a position.
        assert!(Position::decode(&"F".repeat(48)).is_some());
        assert!(Position::decode(&"0".repeat(48)).is_some());
    }

    #[test]
    fn pages_in_memory_cover_the_list_once_with_items_added_between() {
        let mut all: Vec<(i64, Uuid)> = (0..7).map(|k| (k * 10, Uuid::now_v7())).collect();
        let pos = |t: &(i64, Uuid)| Position::new(t.0, t.1);
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let Listed::Page(page) = in_memory(all.clone(), Paging::Page { after, limit: 3 }, pos)
            else {
                panic!("a cursor asks for a page");
            };
            seen.extend(page.items.iter().copied());
            // Added before the cursor: never seen; the rest of the walk is not shifted.
            all.push((-1, Uuid::now_v7()));
            match page.next_cursor {
                Some(c) => after = Position::decode(&c),
                None => break,
            }
        }
        let keys: Vec<i64> = seen.iter().map(|t| t.0).collect();
        assert_eq!(keys, vec![0, 10, 20, 30, 40, 50, 60]);
    }
}
