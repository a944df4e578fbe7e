//! The inbox: the conversation list with filters and search, and a conversation with its
//! history and the reply box (per kind: WhatsApp's 24-hour window with its template picker and
//! media links, SMS's part count). What it is made of: `fragments` (a row, a message, shared with
//! the live stream), `reply` (the reply forms), `actions` (assignment, close/reopen, read,
//! retry), `bulk` (labels on a conversation, actions on a selection), `files` (attachments), `scheduled` (replies sent later), `search` (the results of a search, in place of the list) and `live` (the event stream, SSE, that keeps every open inbox
//! current without reloading).

mod actions;
mod bulk;
pub(crate) mod files;
mod fragments;
mod live;
mod notes;
mod reply;
mod scheduled;
mod search;

pub(crate) use fragments::fmt_time;
pub use fragments::{HeadLabelsTpl, MessageTpl, RowTpl};

use super::{render, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::AppState;
use actions::{assign, close, read, reopen, retry};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::accounts::team;
use chatter_core::inbox::{self, ConversationRow, ListFilter};
use chatter_core::Actor;
use chatter_domain::{ConversationId, ConversationStatus, MessageId, Permission, SourceId};
use chatter_store::entity::label;
use files::file;
use fragments::row_html;
use live::events;
use notes::add_note;
use reply::{reply, reply_file, reply_media, reply_template};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/inbox", get(list_page))
        .route("/app/inbox/{id}", get(show_page))
        .route("/app/inbox/{id}/reply", post(reply))
        .route("/app/inbox/{id}/notes", post(add_note))
        .route("/app/inbox/{id}/scheduled", post(scheduled::schedule))
        .route("/app/scheduled/{id}/cancel", post(scheduled::cancel))
        .route("/app/inbox/{id}/media", post(reply_media))
        .route("/app/inbox/{id}/template", post(reply_template))
        .route("/app/inbox/{id}/assign", post(assign))
        .route("/app/inbox/{id}/close", post(close))
        .route("/app/inbox/{id}/reopen", post(reopen))
        .route("/app/inbox/{id}/read", post(read))
        .route("/app/inbox/{id}/labels", post(bulk::label))
        .route("/app/inbox/bulk", post(bulk::bulk))
        .route("/app/inbox/{id}/messages/{mid}/retry", post(retry))
        .route("/app/files/{mid}/{index}", get(file))
        .route("/app/events", get(events))
}

/// The reply box's file form, which takes bodies up to `upload::upload_limit` (the kind's own
/// limit is checked while the file streams).
pub fn upload_routes() -> Router<AppState> {
    Router::new().route(
        "/app/inbox/{id}/files",
        post(reply_file).layer(axum::extract::DefaultBodyLimit::disable()),
    )
}

async fn names(st: &AppState, actor: &Actor) -> Result<Vec<(Uuid, String)>, AppError> {
    Ok(team::list_members(&st.core.read, actor)
        .await?
        .into_iter()
        .filter(|m| m.role.can(Permission::Reply))
        .map(|m| (m.user_id, m.name))
        .collect())
}

#[derive(Template)]
#[template(path = "inbox/list.html")]
struct ListTpl {
    p: Page,
    rows: Vec<String>,
    /// With `q`: the search results shown instead of the list.
    search: Option<search::SearchView>,
    sources: Vec<(SourceId, String)>,
    /// The company's labels (the filter, the bulk bar).
    labels: Vec<label::Model>,
    /// Who conversations can be assigned to (the bulk bar).
    members: Vec<(Uuid, String)>,
    /// What the last bulk action did, translated.
    bulk_done: Option<String>,
    f: ListFilter,
    thread: Option<ThreadView>,
    last_event: chatter_core::events::Position,
}

struct ThreadView {
    /// The message being answered (`?reply_to=`), with a short quote.
    reply_to: Option<(Uuid, String)>,
    row: ConversationRow,
    /// Its labels with their buttons (`_labels.html`).
    labels_html: String,
    /// Its scheduled replies, and the reply box's «send later» (`_scheduled.html`).
    scheduled_list: String,
    scheduled_controls: String,
    messages: Vec<String>,
    members: Vec<(Uuid, String)>,
    can_reply: bool,
    source_status: String,
    /// The deal in the CRM and the routing rule that placed it.
    crm: Option<chatter_core::crm::sync::CrmLink>,
    /// The customer card beside the thread.
    card: super::contacts::CardView,
    /// The kind sends media by a link the manager gives (WhatsApp): the form for it is shown.
    media_by_link: bool,
    /// The largest file the kind sends, in MB, and the largest picture in bytes; `None`: the
    /// kind cannot send files and the box says so.
    files: Option<(u64, u64, u64)>,
    /// The kind takes nothing but pictures (Avito): their MIME types, comma-separated (the file
    /// input's `accept`), and the largest in MB; the box says so before a file is picked.
    images_only: Option<(String, u64)>,
    /// WhatsApp: the customer last wrote more than 24 hours ago; only templates may go.
    wa_window_closed: bool,
    /// WhatsApp, window closed: the approved templates (`None`: WhatsApp did not answer).
    wa_templates: Option<Vec<TemplateView>>,
    /// Kinds billed by the part (SMS): what the draft costs, e.g. «2 SMS · кириллица»; empty
    /// for the others (the counter is shown only when it is not).
    sms_parts: String,
    /// A refused reply: why (translated) and what was typed.
    refused: Option<String>,
    draft: String,
    /// The reply box shows the note tab (`?mode=note`, or a refused note).
    note_mode: bool,
    /// A refused note: why, and what was typed.
    note_refused: Option<String>,
    note_draft: String,
    /// Teammates `@` offers: (name).
    teammates: Vec<String>,
    /// A reply template inserted without the script (`?template=`): its id and file name.
    template: (Option<Uuid>, Option<String>),
}

/// A WhatsApp template as the picker shows it.
struct TemplateView {
    name: String,
    language: String,
    category: String,
    body: String,
    /// Inputs for `{{1}}` … `{{n}}`.
    params: Vec<usize>,
}

/// «N SMS · латиница/кириллица · used/limit»: the rule `static/app.js` mirrors while typing.
pub(crate) fn sms_parts_label(tr: crate::i18n::Tr, text: &str) -> String {
    use chatter_channels::sms::{sms_parts, SmsEncoding};
    let p = sms_parts(text);
    let enc = match p.encoding {
        SmsEncoding::Gsm7 => tr.t("inbox.sms_gsm"),
        SmsEncoding::Ucs2 => tr.t("inbox.sms_ucs2"),
    };
    format!(
        "{} SMS · {enc} · {}/{}",
        p.parts,
        p.chars,
        p.per_part() * p.parts.max(1) as usize
    )
}

/// A reply (or a note, `note`) the product refused: re-render the conversation with the
/// reason and the draft.
struct Refusal {
    message: String,
    draft: String,
    note: bool,
}

/// Where a live stream opened now starts (`events::newest`); the start of the log if it
/// cannot be read (the browser then gets a little more, never less).
async fn last_event_id(
    st: &AppState,
    company: chatter_domain::CompanyId,
) -> chatter_core::events::Position {
    chatter_core::events::newest(&st.core.read, company.0)
        .await
        .unwrap_or_default()
}

async fn page(
    st: &AppState,
    ctx: &Ctx,
    f: ListFilter,
    open: Option<ConversationId>,
    at: Opened,
    refusal: Option<Refusal>,
    bulk_done: Option<String>,
) -> Result<Response, AppError> {
    let Opened {
        reply_to,
        m: target,
        mode,
        template,
    } = at;
    let actor = ctx.actor()?;
    // Everything below reads through the read pool, except marking the conversation read.
    let writer = &st.core;
    let reading = AppState {
        core: st.core.reader(),
        ..st.clone()
    };
    let st = &reading;
    let last_event = last_event_id(st, actor.company_id).await;
    let members = names(st, &actor).await?;
    let tr = crate::i18n::Tr(ctx.lang);
    // The open conversation is read: its own row never shows a badge, and it is marked read
    // once its messages are read below (anything arriving later comes through the live stream,
    // which starts from `last_event`, taken first).
    let open_row = match open {
        Some(id) => Some(inbox::get_conversation(&st.core, &actor, id).await?),
        None => None,
    };
    let query = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let (rows, search) = match query {
        Some(q) => (
            Vec::new(),
            Some(search::view(&st.core, &actor, q, tr).await?),
        ),
        None => (
            inbox::list_conversations(&st.core, &actor, &f, 200)
                .await?
                .into_iter()
                .map(|r| {
                    let active = Some(r.conversation.id) == open;
                    row_html(r, active, tr, &members)
                })
                .collect(),
            None,
        ),
    };
    let labels = inbox::labels::list_labels(&st.core, &actor).await?;
    let sources = chatter_core::sources::list(&st.core, &actor)
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    let thread = match open_row {
        Some(row) => {
            let id = row.conversation.id;
            let can_reply = actor.role.can(Permission::Reply);
            let messages = match target {
                // Opened from a search hit: the window that holds the message.
                Some(mid) => inbox::search::messages_at(&st.core, &actor, id, mid, 300).await?,
                None => inbox::messages(&st.core, &actor, id, 300).await?,
            };
            inbox::mark_read(writer, &actor, id).await?;
            chatter_core::notifications::read_conversation(writer, &actor, id).await?;
            // Notes sit among the messages by time (within the window shown).
            let span = match (messages.first(), messages.last(), target) {
                (Some(a), Some(b), Some(_)) => Some((a.created_at, b.created_at)),
                _ => None,
            };
            let mut thread: Vec<(i64, String)> = inbox::list_notes(&st.core, &actor, id, None, 500)
                .await?
                .into_iter()
                .filter(|n| span.is_none_or(|(a, b)| n.created_at >= a && n.created_at <= b))
                .map(|n| (n.created_at, fragments::note_html(n, tr)))
                .collect();
            let (lines, automatic) = super::auto_replies::thread_lines(st, &actor, id, tr).await?;
            thread.extend(messages.into_iter().map(|m| {
                let mut tpl = MessageTpl::new(m, tr, &ctx.csrf, can_reply);
                tpl.auto_rule = automatic.get(&tpl.m.id).cloned();
                (tpl.m.created_at, tpl.render().unwrap_or_default())
            }));
            // After the messages, so a line follows the reply it tells of (same time).
            thread.extend(lines);
            thread.sort_by_key(|t| t.0);
            let messages = thread.into_iter().map(|t| t.1).collect();
            let source_status =
                chatter_core::sources::get(&st.core, &actor, row.conversation.source_id)
                    .await?
                    .status;
            let reply_to = match reply_to {
                Some(mid) => inbox::get_message(&st.core, &actor, mid)
                    .await
                    .ok()
                    .filter(|m| m.conversation_id == id)
                    .map(|m| {
                        (
                            m.id.0,
                            m.text.unwrap_or_default().chars().take(120).collect(),
                        )
                    }),
                None => None,
            };
            let crm = chatter_core::crm::sync::link_of(&st.core, &actor, id).await?;
            let card = super::contacts::card(st, &actor, id).await?;
            let kind = row.source_kind;
            let facts = chatter_channels::kind_of(kind);
            // Replies outside the kind's window (WhatsApp's 24 h) go out as templates only.
            let window_closed = facts.and_then(|k| k.reply_window()).is_some()
                && !inbox::reply_window_open(&st.core.read, id, st.core.now()).await?;
            let wa_templates = if window_closed && can_reply {
                let listed = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    inbox::message_templates(writer, &actor, id),
                )
                .await;
                match listed {
                    Ok(Ok(ts)) => Some(
                        ts.into_iter()
                            .map(|t| TemplateView {
                                params: (1..=t.body_params()).collect(),
                                body: t.body_text().unwrap_or_default().to_owned(),
                                name: t.name,
                                language: t.language,
                                category: t.category,
                            })
                            .collect(),
                    ),
                    _ => None,
                }
            } else {
                Some(Vec::new())
            };
            let (refused, mut draft, note_refused, note_draft) = match refusal {
                Some(r) if r.note => (None, String::new(), Some(r.message), r.draft),
                Some(r) => (Some(r.message), r.draft, None, String::new()),
                None => (None, String::new(), None, String::new()),
            };
            // A template chosen on the templates page becomes the draft, rendered for this
            // conversation.
            let template = match template.filter(|_| draft.is_empty() && can_reply) {
                Some(tid) => {
                    let r = inbox::templates::render_for(writer, &actor, id, tid).await?;
                    draft = r.text;
                    (Some(tid), r.template.file_name)
                }
                None => (None, None),
            };
            let note_mode = note_refused.is_some() || mode.as_deref() == Some("note");
            let teammates = chatter_core::notifications::teammates(&st.core.read, actor.company_id)
                .await?
                .into_iter()
                .filter(|t| Some(t.user_id) != actor.user_id.map(chatter_domain::UserId::uuid))
                .map(|t| t.name)
                .collect();
            // Kinds billed by the part (SMS) show how many parts the draft makes.
            let sms_parts = if facts.and_then(|k| k.text_parts(&draft)).is_some() {
                sms_parts_label(tr, &draft)
            } else {
                String::new()
            };
            let labels_html =
                HeadLabelsTpl::html(id, &row.labels, &labels, tr, &ctx.csrf, can_reply);
            let (scheduled_list, scheduled_controls) =
                scheduled::views(st, &actor, id, tr, &ctx.csrf, can_reply).await?;
            Some(ThreadView {
                reply_to,
                labels_html,
                scheduled_list,
                scheduled_controls,
                row,
                messages,
                members: members.clone(),
                can_reply,
                source_status,
                crm,
                card,
                media_by_link: facts.is_some_and(|k| k.sends_media_by_link()),
                files: facts.and_then(|k| k.files()).map(|r| {
                    (
                        r.max_bytes / chatter_channels::MB,
                        r.max_bytes,
                        r.max_image_bytes,
                    )
                }),
                images_only: facts.and_then(|k| k.files()).and_then(|r| {
                    r.only_images
                        .map(|types| (types.join(","), r.max_image_bytes / chatter_channels::MB))
                }),
                wa_window_closed: window_closed,
                wa_templates,
                sms_parts,
                refused,
                draft,
                note_mode,
                note_refused,
                note_draft,
                teammates,
                template,
            })
        }
        None => None,
    };
    let p = Page::new(ctx, "inbox");
    Ok(render(ListTpl {
        p,
        rows,
        search,
        sources,
        labels,
        members,
        bulk_done,
        f,
        thread,
        last_event,
    }))
}

async fn list_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(f): Query<ListFilter>,
    Query(done): Query<bulk::Done>,
) -> Result<Response, AppError> {
    let done = done.text(crate::i18n::Tr(ctx.lang));
    page(&st, &ctx, f, None, Opened::default(), None, done).await
}

/// Where a conversation is opened: answering a message (`reply_to`), or at a message found by
/// a search (`m`).
#[derive(Default, serde::Deserialize)]
struct Opened {
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    reply_to: Option<MessageId>,
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    m: Option<MessageId>,
    /// `note`: the reply box opens on the note tab.
    #[serde(default)]
    mode: Option<String>,
    /// A reply template whose text becomes the draft.
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    template: Option<Uuid>,
}

async fn show_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
    Query(f): Query<ListFilter>,
    Query(r): Query<Opened>,
) -> Result<Response, AppError> {
    page(&st, &ctx, f, Some(id), r, None, None).await
}
