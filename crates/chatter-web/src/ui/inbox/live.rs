//! The live event stream (SSE) that keeps every open inbox current without reloading: replay
//! from `Last-Event-ID`, then events as they are committed, rendered as row and message
//! fragments, with the session and membership checked again while the stream is open.

use super::fragments::{note_html, row_html, HeadLabelsTpl, MessageTpl};
use super::{last_event_id, names};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chatter_core::inbox::{self, ConversationRow};
use chatter_core::Actor;
use chatter_domain::{ConversationId, MessageId, Permission};
use chatter_store::entity::{event, message};
use std::convert::Infallible;
use uuid::Uuid;

/// What the browser receives for a batch of events: each event's JSON (conversation row and
/// message fragments), rendered from a few queries for the whole batch.
async fn render_events(
    st: &AppState,
    ctx: &Ctx,
    actor: &Actor,
    evs: &[event::Model],
    members: &[(Uuid, String)],
) -> Vec<(i64, String, String)> {
    let tr = crate::i18n::Tr(ctx.lang);
    let mut out = notification_events(st, actor, evs, tr).await;
    let parsed: Vec<(&event::Model, ConversationId, Option<MessageId>)> = evs
        .iter()
        .filter(|e| e.kind != chatter_core::notifications::EVENT)
        .filter_map(|e| {
            let p: serde_json::Value = serde_json::from_str(&e.payload).ok()?;
            let conv: ConversationId = p.get("conversation_id")?.as_str()?.parse().ok()?;
            let mid = p
                .get("message_id")
                .and_then(|m| m.as_str())
                .and_then(|m| m.parse().ok());
            Some((e, conv, mid))
        })
        .collect();
    let mut conv_ids: Vec<ConversationId> = parsed.iter().map(|p| p.1).collect();
    conv_ids.sort();
    conv_ids.dedup();
    let msg_ids: Vec<MessageId> = parsed.iter().filter_map(|p| p.2).collect();
    let rows: std::collections::HashMap<ConversationId, ConversationRow> =
        inbox::conversations_by_ids(&st.core, actor, &conv_ids)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.conversation.id, r))
            .collect();
    let msgs: std::collections::HashMap<MessageId, message::Model> =
        inbox::messages_by_ids(&st.core, actor, &msg_ids)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
    let note_ids: Vec<Uuid> = evs
        .iter()
        .filter(|e| e.kind == "note")
        .filter_map(|e| {
            let p: serde_json::Value = serde_json::from_str(&e.payload).ok()?;
            p.get("note_id")?.as_str()?.parse().ok()
        })
        .collect();
    let notes: std::collections::HashMap<Uuid, chatter_core::inbox::NoteView> =
        inbox::notes_by_ids(&st.core, actor, &note_ids)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|n| (n.id, n))
            .collect();
    let can_reply = actor.role.can(Permission::Reply);
    // The open conversation's header shows its labels with the others to add.
    let all_labels = inbox::labels::list_labels(&st.core, actor)
        .await
        .unwrap_or_default();
    let mut row_html_cache: std::collections::HashMap<ConversationId, String> =
        std::collections::HashMap::new();
    for (e, conv_id, mid) in parsed {
        let Some(row) = rows.get(&conv_id) else {
            continue;
        };
        let html = row_html_cache
            .entry(conv_id)
            .or_insert_with(|| row_html(row.clone(), false, tr, members))
            .clone();
        let mut data = serde_json::json!({
            "kind": e.kind,
            "conversation_id": conv_id,
            "status": row.conversation.status,
            "assignee_id": row.conversation.assignee_id,
            "row": html,
            "labels": HeadLabelsTpl::html(conv_id, &row.labels, &all_labels, tr, &ctx.csrf, can_reply),
        });
        if let Some(m) = mid.and_then(|m| msgs.get(&m)) {
            data["message_id"] = serde_json::json!(m.id);
            data["message"] =
                serde_json::json!(MessageTpl::new(m.clone(), tr, &ctx.csrf, can_reply)
                    .render()
                    .unwrap_or_default());
        }
        // Its scheduled replies changed (scheduled, cancelled, sent): the list above the box.
        if e.payload.contains("\"scheduled_id\"") {
            data["scheduled"] = serde_json::json!(
                super::scheduled::list_html(st, actor, conv_id, tr, &ctx.csrf, can_reply).await
            );
        }
        if e.kind == "note" {
            let note = serde_json::from_str::<serde_json::Value>(&e.payload)
                .ok()
                .and_then(|p| p.get("note_id")?.as_str()?.parse::<Uuid>().ok())
                .and_then(|id| notes.get(&id));
            if let Some(n) = note {
                data["note_id"] = serde_json::json!(n.id);
                data["note"] = serde_json::json!(note_html(n.clone(), tr));
            }
        }
        out.push((e.id, e.kind.clone(), data.to_string()));
    }
    out
}

/// The bell's events among `evs`: those meant for this person, each with their unread count
/// and their newest notification (none when the event says some were read).
async fn notification_events(
    st: &AppState,
    actor: &Actor,
    evs: &[event::Model],
    tr: crate::i18n::Tr,
) -> Vec<(i64, String, String)> {
    let Some(me) = actor.user_id.map(chatter_domain::UserId::uuid) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in evs
        .iter()
        .filter(|e| e.kind == chatter_core::notifications::EVENT)
    {
        let Ok(p) = serde_json::from_str::<serde_json::Value>(&e.payload) else {
            continue;
        };
        let for_me = p
            .get("user_ids")
            .and_then(|u| u.as_array())
            .is_some_and(|u| u.iter().any(|x| x.as_str() == Some(&me.to_string())));
        if !for_me {
            continue;
        }
        let unread = chatter_core::notifications::unread_count(&st.core.read, actor.company_id, me)
            .await
            .unwrap_or(0);
        let read = p.get("read").and_then(|r| r.as_bool()).unwrap_or(false);
        let newest = if read {
            None
        } else {
            chatter_core::notifications::list(&st.core, actor, me, None, 1)
                .await
                .ok()
                .and_then(|l| l.into_iter().next())
        };
        let data = serde_json::json!({
            "kind": e.kind,
            "unread": unread,
            "read": read,
            "notification_id": newest.as_ref().map(|n| n.id),
            "title": newest.as_ref().map(|n| n.conversation_title.clone()),
            "href": newest.as_ref().map(|n| format!("/app/inbox/{}", n.conversation_id)),
            "item": newest.map(|n| crate::ui::notifications::item_html(n, tr)),
        });
        out.push((e.id, e.kind.clone(), data.to_string()));
    }
    out
}

/// How often an open event stream checks that its session and membership still hold.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the stream's session is still signed in and its person still a member of the
/// company with the same role (a database error counts as no: the browser reconnects).
async fn still_allowed(st: &AppState, token: &str, actor: &Actor) -> bool {
    chatter_core::accounts::session_still_member(&st.core, token, actor.company_id, actor.role)
        .await
        .unwrap_or(false)
}

#[derive(serde::Deserialize)]
pub(super) struct After {
    /// A position (`events::Position`) or, from an older page, a plain event id.
    after: Option<String>,
}

/// Server-sent events for the actor's company. `Last-Event-ID` (or `?after=`) replays what the
/// browser missed from the event log before going live.
pub(super) async fn events(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    Query(q): Query<After>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    actor.require(Permission::Read)?;
    let given = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(chatter_core::events::Given::parse)
        .or_else(|| {
            q.after
                .as_deref()
                .and_then(chatter_core::events::Given::parse)
        });
    let start = match given {
        Some(g) => chatter_core::events::resolve(&st.core.read, actor.company_id.0, g).await?,
        None => last_event_id(&st, actor.company_id).await,
    };
    // Subscribe before reading the backlog, so nothing falls between the two.
    let reader = chatter_core::events::Reader::new(&st.core.events, actor.company_id, start);
    let members = names(&st, &actor).await?;
    let token = ctx.session_token.clone().ok_or(AppError::SignIn)?;
    struct S {
        st: AppState,
        ctx: Ctx,
        actor: Actor,
        /// The session the stream was opened with, checked again every `RECHECK` and before
        /// each batch of events: a removed member, a signed-out or password-changed session
        /// gets nothing more and the stream ends.
        token: String,
        next_check: tokio::time::Instant,
        members: Vec<(Uuid, String)>,
        /// The log in commit order from the stream's position (`events::Reader`).
        reader: chatter_core::events::Reader,
        ready: std::collections::VecDeque<Event>,
        /// The node's stop signal; `ended` once the final `reconnect` event went out.
        stop: tokio::sync::watch::Receiver<bool>,
        ended: bool,
        /// Counts the stream in `/metrics` while it is open.
        _open: OpenStream,
    }
    struct OpenStream(std::sync::Arc<std::sync::atomic::AtomicI64>);
    impl Drop for OpenStream {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    st.live_streams
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let open = OpenStream(st.live_streams.clone());
    let stop = st.stop.clone();
    let state = S {
        stop,
        ended: false,
        _open: open,
        st,
        ctx,
        actor,
        token,
        next_check: tokio::time::Instant::now() + RECHECK,
        members,
        reader,
        ready: Default::default(),
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.ended {
                return None;
            }
            if *s.stop.borrow() {
                // This node is stopping: tell the page to reconnect (to another node, from
                // its last event) and end, so the stop does not wait on open pages.
                s.ended = true;
                let bye = Event::default()
                    .event("reconnect")
                    .retry(std::time::Duration::from_millis(500))
                    .data("{}");
                return Some((Ok::<Event, Infallible>(bye), s));
            }
            if let Some(ev) = s.ready.pop_front() {
                return Some((Ok::<Event, Infallible>(ev), s));
            }
            let changed = tokio::select! {
                r = s.reader.changed() => match r {
                    Ok(()) => true,
                    Err(_) => return None,
                },
                r = s.stop.changed() => {
                    // The server is gone without a stop: nothing more will come.
                    if r.is_err() {
                        s.ended = true;
                    }
                    false
                }
                _ = tokio::time::sleep_until(s.next_check) => {
                    if !still_allowed(&s.st, &s.token, &s.actor).await {
                        return None;
                    }
                    s.next_check = tokio::time::Instant::now() + RECHECK;
                    false
                }
            };
            if !changed {
                continue;
            }
            let evs = match s.reader.read(&s.st.core.read).await {
                Ok(v) => v,
                Err(_) => return None,
            };
            if evs.is_empty() {
                continue;
            }
            if !still_allowed(&s.st, &s.token, &s.actor).await {
                return None;
            }
            s.next_check = tokio::time::Instant::now() + RECHECK;
            let at: std::collections::HashMap<i64, chatter_core::events::Position> =
                evs.iter().map(|(p, e)| (e.id, *p)).collect();
            let evs: Vec<event::Model> = evs.into_iter().map(|(_, e)| e).collect();
            let mut out: Vec<(chatter_core::events::Position, String, String)> =
                render_events(&s.st, &s.ctx, &s.actor, &evs, &s.members)
                    .await
                    .into_iter()
                    .filter_map(|(id, kind, data)| Some((*at.get(&id)?, kind, data)))
                    .collect();
            out.sort_by_key(|o| o.0);
            for (pos, kind, data) in out {
                s.ready
                    .push_back(Event::default().id(pos.to_string()).event(kind).data(data));
            }
        }
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    // A proxy must pass events on as they come (nginx buffers unless told).
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(response)
}
