//! The inbox: the conversation list with filters and search, a conversation with its history
//! and the reply box (per kind: WhatsApp's 24-hour window with its template picker and media
//! links, SMS's part count), assignment, close/reopen, retry of failed replies, files, and the live
//! event stream (SSE) that keeps every open inbox current without reloading.

use super::{render, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::accounts::team;
use chatter_core::attachments::{attachments_of, StoredAttachment};
use chatter_core::inbox::{self, ConversationRow, ListFilter};
use chatter_core::{Actor, CoreError};
use chatter_domain::{Permission, SourceKind};
use chatter_store::entity::{event, message};
use std::convert::Infallible;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/inbox", get(list_page))
        .route("/app/inbox/{id}", get(show_page))
        .route("/app/inbox/{id}/reply", post(reply))
        .route("/app/inbox/{id}/media", post(reply_media))
        .route("/app/inbox/{id}/template", post(reply_template))
        .route("/app/inbox/{id}/assign", post(assign))
        .route("/app/inbox/{id}/close", post(close))
        .route("/app/inbox/{id}/reopen", post(reopen))
        .route("/app/inbox/{id}/read", post(read))
        .route("/app/inbox/{id}/messages/{mid}/retry", post(retry))
        .route("/app/files/{mid}/{index}", get(file))
        .route("/app/events", get(events))
}

/// A conversation row as the list shows it.
#[derive(Template)]
#[template(path = "inbox/_row.html")]
pub struct RowTpl {
    pub r: ConversationRow,
    pub active: bool,
    pub lang: crate::i18n::Tr,
    pub assignee: String,
}

/// One message in the thread.
#[derive(Template)]
#[template(path = "inbox/_message.html")]
pub struct MessageTpl {
    pub m: message::Model,
    pub atts: Vec<StoredAttachment>,
    pub lang: crate::i18n::Tr,
    pub csrf: String,
    pub can_reply: bool,
}

impl MessageTpl {
    pub fn new(m: message::Model, lang: crate::i18n::Tr, csrf: &str, can_reply: bool) -> Self {
        Self {
            atts: attachments_of(&m),
            m,
            lang,
            csrf: csrf.to_string(),
            can_reply,
        }
    }
    pub fn time(&self) -> String {
        fmt_time(self.m.sent_at.unwrap_or(self.m.created_at))
    }
    pub fn extra_text(&self) -> String {
        let Some(e) = self
            .m
            .extra
            .as_deref()
            .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        else {
            return String::new();
        };
        match e.get("type").and_then(|t| t.as_str()) {
            Some("contact") => format!(
                "☎ {} {}",
                e["name"].as_str().unwrap_or(""),
                e["phone"].as_str().unwrap_or("")
            ),
            Some("location") => format!("📍 {}, {}", e["latitude"], e["longitude"]),
            Some("template") => format!(
                "📋 {} «{}»",
                self.lang.t("inbox.wa_template"),
                e["name"].as_str().unwrap_or("")
            ),
            _ => String::new(),
        }
    }
    /// Why a reply failed (or is being retried), in the reader's language, with the
    /// provider's own words kept for anything we do not recognise.
    pub fn error_text(&self) -> String {
        let Some(e) = self.m.error.as_deref() else {
            return String::new();
        };
        let t = |k| self.lang.t(k).to_string();
        if e.contains("blocked by the user") {
            t("inbox.err_blocked")
        } else if e.contains("token was revoked") || e.contains("Unauthorized") {
            t("inbox.err_revoked")
        } else if e.starts_with("retrying") {
            t("inbox.err_retrying")
        } else if e.contains("(code 131047)") || e.contains("24-hour window") {
            t("inbox.err_wa_window")
        } else if e.contains("source is turned off") {
            t("inbox.err_disabled")
        } else if e == chatter_core::sources::api::NO_WEBHOOK {
            t("inbox.err_api_no_webhook")
        } else if e.starts_with("gave up") {
            t("inbox.err_gave_up")
        } else {
            // The provider's own words stay in the tooltip: they are English.
            t("inbox.err_other")
        }
    }

    /// Where the person fixes what made the reply fail, with the link's text.
    pub fn fix_link(&self) -> Option<(String, &'static str)> {
        let e = self.m.error.as_deref()?;
        if self.m.status != "failed" {
            return None;
        }
        if e == chatter_core::sources::api::NO_WEBHOOK {
            Some((
                format!("/app/api-sources/{}#webhook", self.m.source_id),
                self.lang.t("inbox.fix_api_webhook"),
            ))
        } else if e.contains("token was revoked")
            || e.contains("Unauthorized")
            || e.contains("source is turned off")
        {
            Some((
                format!("/app/sources/{}", self.m.source_id),
                self.lang.t("inbox.fix_source"),
            ))
        } else {
            None
        }
    }

    /// Shown as a picture: only a file whose bytes were found to be PNG, JPEG, GIF or WebP
    /// when it was downloaded, whatever the provider called it.
    pub fn is_image(a: &StoredAttachment) -> bool {
        a.raster.is_some()
    }
}

impl RowTpl {
    /// The list preview: the stored text, or for a message without text (stored as `[photo]`,
    /// `[contact/location]`…) its kind in the reader's language.
    pub fn preview(&self) -> String {
        let t = self.r.conversation.last_text.as_str();
        let key = match t {
            "[photo]" => "preview.photo",
            "[document]" => "preview.document",
            "[voice]" => "preview.voice",
            "[audio]" => "preview.audio",
            "[video]" => "preview.video",
            "[video_note]" => "preview.video_note",
            "[sticker]" => "preview.sticker",
            "[animation]" => "preview.animation",
            "[contact/location]" => "preview.contact_location",
            _ => return t.to_owned(),
        };
        self.lang.t(key).to_owned()
    }

    pub fn time(&self) -> String {
        fmt_time(self.r.conversation.last_message_at)
    }
}

fn fmt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono_tz::Europe::Moscow)
                .format("%d.%m %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

async fn names(st: &AppState, actor: &Actor) -> Result<Vec<(Uuid, String)>, AppError> {
    Ok(team::list_members(&st.core.db, actor)
        .await?
        .into_iter()
        .filter(|m| m.role.can(Permission::Reply))
        .map(|m| (m.user_id, m.name))
        .collect())
}

fn row_html(
    r: ConversationRow,
    active: bool,
    ctx_lang: crate::i18n::Tr,
    members: &[(Uuid, String)],
) -> String {
    let assignee = r
        .conversation
        .assignee_id
        .and_then(|a| members.iter().find(|m| m.0 == a).map(|m| m.1.clone()))
        .unwrap_or_default();
    RowTpl {
        r,
        active,
        lang: ctx_lang,
        assignee,
    }
    .render()
    .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "inbox/list.html")]
struct ListTpl {
    p: Page,
    rows: Vec<String>,
    sources: Vec<(Uuid, String)>,
    f: ListFilter,
    thread: Option<ThreadView>,
    last_event: i64,
}

struct ThreadView {
    /// The message being answered (`?reply_to=`), with a short quote.
    reply_to: Option<(Uuid, String)>,
    row: ConversationRow,
    messages: Vec<String>,
    members: Vec<(Uuid, String)>,
    can_reply: bool,
    source_status: String,
    /// The deal in the CRM and the routing rule that placed it.
    crm: Option<chatter_core::crm::sync::CrmLink>,
    /// The source's kind (7: WhatsApp, 8: SMS change the reply box).
    kind: i32,
    /// WhatsApp: the customer last wrote more than 24 hours ago; only templates may go.
    wa_window_closed: bool,
    /// WhatsApp, window closed: the approved templates (`None`: WhatsApp did not answer).
    wa_templates: Option<Vec<TemplateView>>,
    /// SMS: what the draft costs, e.g. «2 SMS · кириллица».
    sms_parts: String,
    /// A refused reply: why (translated) and what was typed.
    refused: Option<String>,
    draft: String,
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
fn sms_parts_label(tr: crate::i18n::Tr, text: &str) -> String {
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

/// A reply the product refused: re-render the conversation with the reason and the draft.
struct Refusal {
    message: String,
    draft: String,
}

async fn last_event_id(st: &AppState, company: Uuid) -> i64 {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    event::Entity::find()
        .filter(event::Column::CompanyId.eq(company))
        .order_by_desc(event::Column::Id)
        .select_only()
        .column(event::Column::Id)
        .into_tuple::<i64>()
        .one(&st.core.db)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

async fn page(
    st: &AppState,
    ctx: &Ctx,
    f: ListFilter,
    open: Option<Uuid>,
    reply_to: Option<Uuid>,
    refusal: Option<Refusal>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
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
    let rows = inbox::list_conversations(&st.core, &actor, &f, 200).await?;
    let rows = rows
        .into_iter()
        .map(|r| {
            let active = Some(r.conversation.id) == open;
            row_html(r, active, tr, &members)
        })
        .collect();
    let sources = chatter_core::sources::list(&st.core, &actor)
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    let thread = match open_row {
        Some(row) => {
            let id = row.conversation.id;
            let can_reply = actor.role.can(Permission::Reply);
            let messages = inbox::messages(&st.core, &actor, id, 300).await?;
            inbox::mark_read(&st.core, &actor, id).await?;
            let messages = messages
                .into_iter()
                .map(|m| {
                    MessageTpl::new(m, tr, &ctx.csrf, can_reply)
                        .render()
                        .unwrap_or_default()
                })
                .collect();
            let source_status =
                chatter_core::sources::get(&st.core, &actor, row.conversation.source_id)
                    .await?
                    .status;
            let reply_to = match reply_to {
                Some(mid) => inbox::get_message(&st.core, &actor, mid)
                    .await
                    .ok()
                    .filter(|m| m.conversation_id == id)
                    .map(|m| (m.id, m.text.unwrap_or_default().chars().take(120).collect())),
                None => None,
            };
            let crm = chatter_core::crm::sync::link_of(&st.core, &actor, id).await?;
            let kind = row.source_kind;
            let wa_window_closed = kind == SourceKind::Whatsapp.id()
                && !inbox::whatsapp_window_open(&st.core.db, id, st.core.now()).await?;
            let wa_templates = if wa_window_closed && can_reply {
                let listed = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    inbox::whatsapp_templates(&st.core, &actor, id),
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
            let (refused, draft) = match refusal {
                Some(r) => (Some(r.message), r.draft),
                None => (None, String::new()),
            };
            let sms_parts = if kind == SourceKind::SipoutSms.id() {
                sms_parts_label(tr, &draft)
            } else {
                String::new()
            };
            Some(ThreadView {
                reply_to,
                row,
                messages,
                members: members.clone(),
                can_reply,
                source_status,
                crm,
                kind,
                wa_window_closed,
                wa_templates,
                sms_parts,
                refused,
                draft,
            })
        }
        None => None,
    };
    let p = Page::new(ctx, "inbox");
    Ok(render(ListTpl {
        p,
        rows,
        sources,
        f,
        thread,
        last_event,
    }))
}

async fn list_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(f): Query<ListFilter>,
) -> Result<Response, AppError> {
    page(&st, &ctx, f, None, None, None).await
}

#[derive(serde::Deserialize)]
struct ReplyTo {
    #[serde(default, deserialize_with = "chatter_domain::values::blank_as_none")]
    reply_to: Option<Uuid>,
}

async fn show_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    Query(f): Query<ListFilter>,
    Query(r): Query<ReplyTo>,
) -> Result<Response, AppError> {
    page(&st, &ctx, f, Some(id), r.reply_to, None).await
}

#[derive(serde::Deserialize)]
struct ReplyForm {
    text: String,
    reply_to: Option<String>,
}

fn wants_json(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

async fn reply(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    CsrfForm(f): CsrfForm<ReplyForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let reply_to = f.reply_to.as_deref().and_then(|r| r.parse().ok());
    let r = inbox::reply(&st.core, &actor, id, &f.text, reply_to).await;
    answer(&st, &ctx, id, &headers, r, f.text).await
}

/// The answer to a reply of any form: 201 JSON or back to the conversation; a refusal comes
/// back as the conversation with the reason at the reply box and the draft kept (422).
async fn answer(
    st: &AppState,
    ctx: &Ctx,
    id: Uuid,
    headers: &HeaderMap,
    r: Result<message::Model, CoreError>,
    draft: String,
) -> Result<Response, AppError> {
    let tr = crate::i18n::Tr(ctx.lang);
    match r {
        Ok(m) if wants_json(headers) => Ok((
            StatusCode::CREATED,
            axum::Json(serde_json::json!({"id": m.id})),
        )
            .into_response()),
        Ok(_) => Ok(Redirect::to(&format!("/app/inbox/{id}")).into_response()),
        Err(CoreError::Invalid(e)) if wants_json(headers) => Ok((
            refusal_status(&e),
            axum::Json(serde_json::json!({"error": e.first().map(|e| tr.field(e))})),
        )
            .into_response()),
        Err(CoreError::Invalid(e)) => {
            let status = refusal_status(&e);
            let message = e.iter().map(|e| tr.field(e)).collect::<Vec<_>>().join(" ");
            let refusal = Refusal { message, draft };
            let mut resp = page(
                st,
                ctx,
                ListFilter::default(),
                Some(id),
                None,
                Some(refusal),
            )
            .await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}

/// 400 for a `reply_to` that is not a message of the conversation (a forged request: the
/// page only offers the conversation's own messages), 422 for what a person can correct.
fn refusal_status(e: &[chatter_domain::FieldError]) -> StatusCode {
    if e.iter().any(|f| f.field == "reply_to") {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

#[derive(serde::Deserialize)]
struct MediaForm {
    media_url: String,
    #[serde(default)]
    caption: String,
}

/// A WhatsApp medium by link.
async fn reply_media(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    CsrfForm(f): CsrfForm<MediaForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let r = inbox::reply_media(&st.core, &actor, id, &f.media_url, &f.caption).await;
    answer(&st, &ctx, id, &headers, r, f.caption).await
}

/// An approved WhatsApp template; `p1` … `p9` fill its body's `{{1}}` … `{{9}}`.
#[derive(serde::Deserialize)]
struct TemplateForm {
    name: String,
    language: String,
    p1: Option<String>,
    p2: Option<String>,
    p3: Option<String>,
    p4: Option<String>,
    p5: Option<String>,
    p6: Option<String>,
    p7: Option<String>,
    p8: Option<String>,
    p9: Option<String>,
}

async fn reply_template(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    CsrfForm(f): CsrfForm<TemplateForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let params: Vec<String> = [f.p1, f.p2, f.p3, f.p4, f.p5, f.p6, f.p7, f.p8, f.p9]
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    let r = inbox::reply_template(&st.core, &actor, id, &f.name, &f.language, &params).await;
    answer(&st, &ctx, id, &headers, r, String::new()).await
}

#[derive(serde::Deserialize)]
struct AssignForm {
    /// A member's id, "me", or "" for nobody.
    assignee: String,
}

async fn assign(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(f): CsrfForm<AssignForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let who = match f.assignee.as_str() {
        "" => None,
        "me" => actor.user_id,
        s => Some(
            s.parse()
                .map_err(|_| CoreError::field("assignee", "err.assignee_invalid"))?,
        ),
    };
    inbox::assign(&st.core, &actor, id, who).await?;
    Ok(Redirect::to(&format!("/app/inbox/{id}")).into_response())
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn close(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    inbox::set_open(&st.core, &ctx.actor()?, id, false).await?;
    Ok(Redirect::to(&format!("/app/inbox/{id}")).into_response())
}

async fn reopen(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    inbox::set_open(&st.core, &ctx.actor()?, id, true).await?;
    Ok(Redirect::to(&format!("/app/inbox/{id}")).into_response())
}

async fn read(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    inbox::mark_read(&st.core, &ctx.actor()?, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn retry(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((id, mid)): Path<(Uuid, Uuid)>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    inbox::retry_message(&st.core, &ctx.actor()?, mid).await?;
    Ok(Redirect::to(&format!("/app/inbox/{id}")).into_response())
}

async fn file(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((mid, index)): Path<(Uuid, usize)>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let m = inbox::get_message(&st.core, &actor, mid).await?;
    let atts = attachments_of(&m);
    let a = atts.get(index).ok_or(CoreError::NotFound)?;
    let blob = a.blob.as_deref().ok_or(CoreError::NotFound)?;
    let bytes = chatter_core::blobs::get(&st.core.config.data_dir, blob)
        .await
        .ok_or(CoreError::NotFound)?;
    // Never trust the provider's type: only bytes that are a raster picture are shown inline
    // (with the type they really are); everything else is a download of opaque bytes.
    let fallback = format!("{}-{}", a.kind, index);
    let name = a.file_name.as_deref().unwrap_or(&fallback);
    let (mime, disposition) = match chatter_core::blobs::raster_type(&bytes) {
        Some(t) => (t, content_disposition("inline", name)),
        None => (
            "application/octet-stream",
            content_disposition("attachment", name),
        ),
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::CONTENT_SECURITY_POLICY,
                crate::security::FILE_CSP.to_string(),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        bytes,
    )
        .into_response())
}

/// `inline` or `attachment` with the file's name (RFC 6266): a plain-ASCII `filename=` for old
/// clients and the exact name as UTF-8 in `filename*=`. Path separators, quotes and control
/// characters never get through.
fn content_disposition(kind: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | '"') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let clean = clean.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let clean = if clean.is_empty() { "file" } else { clean };
    let ascii: String = clean
        .chars()
        .map(|c| if c.is_ascii() { c } else { '_' })
        .collect();
    let mut encoded = String::new();
    for b in clean.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// What the browser receives for a batch of events: each event's JSON (conversation row and
/// message fragments), rendered from a few queries for the whole batch.
async fn render_events(
    st: &AppState,
    ctx: &Ctx,
    actor: &Actor,
    evs: &[event::Model],
    members: &[(Uuid, String)],
) -> Vec<(i64, String, String)> {
    let parsed: Vec<(&event::Model, Uuid, Option<Uuid>)> = evs
        .iter()
        .filter_map(|e| {
            let p: serde_json::Value = serde_json::from_str(&e.payload).ok()?;
            let conv: Uuid = p.get("conversation_id")?.as_str()?.parse().ok()?;
            let mid = p
                .get("message_id")
                .and_then(|m| m.as_str())
                .and_then(|m| m.parse().ok());
            Some((e, conv, mid))
        })
        .collect();
    let mut conv_ids: Vec<Uuid> = parsed.iter().map(|p| p.1).collect();
    conv_ids.sort();
    conv_ids.dedup();
    let msg_ids: Vec<Uuid> = parsed.iter().filter_map(|p| p.2).collect();
    let rows: std::collections::HashMap<Uuid, ConversationRow> =
        inbox::conversations_by_ids(&st.core, actor, &conv_ids)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.conversation.id, r))
            .collect();
    let msgs: std::collections::HashMap<Uuid, message::Model> =
        inbox::messages_by_ids(&st.core, actor, &msg_ids)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
    let tr = crate::i18n::Tr(ctx.lang);
    let can_reply = actor.role.can(Permission::Reply);
    let mut row_html_cache: std::collections::HashMap<Uuid, String> =
        std::collections::HashMap::new();
    let mut out = Vec::with_capacity(parsed.len());
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
        });
        if let Some(m) = mid.and_then(|m| msgs.get(&m)) {
            data["message_id"] = serde_json::json!(m.id);
            data["message"] =
                serde_json::json!(MessageTpl::new(m.clone(), tr, &ctx.csrf, can_reply)
                    .render()
                    .unwrap_or_default());
        }
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
struct After {
    after: Option<i64>,
}

/// Server-sent events for the actor's company. `Last-Event-ID` (or `?after=`) replays what the
/// browser missed from the event log before going live.
async fn events(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    Query(q): Query<After>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    actor.require(Permission::Read)?;
    let from_header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let start = match from_header.or(q.after) {
        Some(id) => id,
        None => last_event_id(&st, actor.company_id).await,
    };
    // Subscribe before reading the backlog, so nothing falls between the two.
    let rx = st.core.events.subscribe();
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
        rx: tokio::sync::broadcast::Receiver<chatter_core::events::Published>,
        cursor: chatter_core::events::Cursor,
        backlog: Vec<event::Model>,
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
    let backlog = chatter_core::events::since(&st.core.db, actor.company_id, start, 1000).await?;
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
        rx,
        cursor: chatter_core::events::Cursor::new(start),
        backlog,
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
            if !s.backlog.is_empty() {
                if !still_allowed(&s.st, &s.token, &s.actor).await {
                    return None;
                }
                s.next_check = tokio::time::Instant::now() + RECHECK;
                let evs: Vec<event::Model> = std::mem::take(&mut s.backlog)
                    .into_iter()
                    .filter(|e| s.cursor.fresh(e.id))
                    .collect();
                s.cursor.settle(s.st.core.now());
                for (id, kind, data) in
                    render_events(&s.st, &s.ctx, &s.actor, &evs, &s.members).await
                {
                    s.ready
                        .push_back(Event::default().id(id.to_string()).event(kind).data(data));
                }
                if !s.ready.is_empty() {
                    continue;
                }
            }
            // With a hole below what was sent, look again shortly even without a notification.
            let wake = if s.cursor.waiting() { 200 } else { 3_600_000 };
            let catch_up = tokio::select! {
                r = s.rx.recv() => match r {
                    Ok(p) => p.company_id == s.actor.company_id,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(_) => return None,
                },
                _ = tokio::time::sleep(std::time::Duration::from_millis(wake)) => s.cursor.waiting(),
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
            if catch_up {
                // Read everything after our position: covers events committed out of order
                // and several notifications folded into one read.
                while s.rx.try_recv().is_ok() {}
                match chatter_core::events::since(
                    &s.st.core.db,
                    s.actor.company_id,
                    s.cursor.after(),
                    2000,
                )
                .await
                {
                    Ok(v) => {
                        s.backlog = v;
                        s.cursor.settle(s.st.core.now());
                    }
                    Err(_) => return None,
                }
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
