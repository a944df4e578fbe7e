//! Scheduled replies in the inbox: «send later» in the reply box (at a time in the working
//! hours' zone, or when they next open) and the conversation's scheduled replies above it, each
//! with «cancel». Both come from `inbox/_scheduled.html`; the list is also sent by the live
//! stream, so colleagues with the conversation open see it change.

use super::reply::wants_json;
use super::{page, Refusal};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::i18n::Tr;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chatter_core::inbox::ListFilter;
use chatter_core::scheduled::{self, Scheduled, Timing, When};
use chatter_core::{Actor, CoreError};
use chatter_domain::hours::Now;
use chatter_domain::ConversationId;
use uuid::Uuid;

/// One scheduled reply as the list shows it.
pub(crate) struct ItemView {
    id: Uuid,
    text: String,
    when: String,
    /// Resolved from «when working hours start».
    hours: bool,
    author: String,
    failed: bool,
    /// Why it failed, translated.
    error: String,
}

/// `_scheduled.html`: the list (`list`) or the reply box's «send later».
#[derive(Template)]
#[template(path = "inbox/_scheduled.html")]
pub(crate) struct ScheduledTpl {
    list: bool,
    items: Vec<ItemView>,
    lang: Tr,
    csrf: String,
    can_reply: bool,
    conversation: ConversationId,
    zone: String,
    /// Whether the working hours are open now, or when they start.
    hours_line: String,
    /// When «when working hours start» would send (`None`: open now, or no hours).
    opens: Option<String>,
    open: bool,
    send_at: String,
    /// The earliest the picker offers: now, local.
    min: String,
}

fn local_input(t: &Timing, ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&t.zone)
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

fn item(s: Scheduled, t: &Timing, tr: Tr) -> ItemView {
    ItemView {
        id: s.id,
        when: t.local(s.send_at),
        hours: s.mode == "hours_open",
        failed: s.status == scheduled::FAILED,
        error: s
            .error
            .as_deref()
            .map(|k| tr.t(k).to_owned())
            .unwrap_or_default(),
        author: s.author_name,
        text: s.text,
    }
}

/// The conversation's scheduled-replies list and the reply box's «send later», as HTML.
pub(super) async fn views(
    st: &AppState,
    actor: &Actor,
    id: ConversationId,
    tr: Tr,
    csrf: &str,
    can_reply: bool,
) -> Result<(String, String), AppError> {
    let t = scheduled::timing(&st.core, actor, id).await?;
    let now = st.core.now();
    let items = scheduled::list_for_conversation(&st.core, actor, id)
        .await?
        .into_iter()
        .map(|s| item(s, &t, tr))
        .collect();
    let (hours_line, opens) = match t.now {
        None => (tr.t("scheduled.no_hours").to_owned(), None),
        Some(Now::Open { .. }) => (tr.t("scheduled.open_now").to_owned(), None),
        Some(Now::Closed { until: Some(at) }) => {
            let at = t.local(at.timestamp_millis());
            (format!("{} {at}.", tr.t("scheduled.opens_at")), Some(at))
        }
        Some(Now::Closed { until: None }) => (tr.t("hours.closed_always").to_owned(), None),
    };
    let mut tpl = ScheduledTpl {
        list: true,
        items,
        lang: tr,
        csrf: csrf.to_owned(),
        can_reply,
        conversation: id,
        zone: t.zone.name().to_owned(),
        hours_line,
        opens,
        open: false,
        send_at: String::new(),
        min: local_input(&t, now),
    };
    let list = tpl.render().unwrap_or_default();
    tpl.list = false;
    tpl.items = Vec::new();
    Ok((list, tpl.render().unwrap_or_default()))
}

/// The list alone, for the live stream.
pub(crate) async fn list_html(
    st: &AppState,
    actor: &Actor,
    id: ConversationId,
    tr: Tr,
    csrf: &str,
    can_reply: bool,
) -> String {
    match views(st, actor, id, tr, csrf, can_reply).await {
        Ok((list, _)) => list,
        Err(_) => String::new(),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct ScheduleForm {
    text: String,
    /// `at` (with `send_at`) or `hours_open`.
    #[serde(default)]
    when: String,
    #[serde(default)]
    send_at: String,
}

/// «Send later» from the reply box (the form's buttons post here): back to the conversation,
/// or the conversation again with why and the draft kept (422).
pub(super) async fn schedule(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
    headers: HeaderMap,
    CsrfForm(f): CsrfForm<ScheduleForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let when = match f.when.as_str() {
        "hours_open" => When::HoursOpen,
        _ => When::At(&f.send_at),
    };
    let tr = Tr(ctx.lang);
    match scheduled::schedule(&st.core, &actor, id, &f.text, when).await {
        Ok(s) if wants_json(&headers) => Ok((
            StatusCode::CREATED,
            axum::Json(serde_json::json!({"id": s.id})),
        )
            .into_response()),
        Ok(_) => Ok(Redirect::to(&format!("/app/inbox/{id}")).into_response()),
        Err(CoreError::Invalid(e)) => {
            let refusal = Refusal {
                message: e.iter().map(|e| tr.field(e)).collect::<Vec<_>>().join(" "),
                draft: f.text,
                note: false,
            };
            let mut resp = page(
                &st,
                &ctx,
                ListFilter::default(),
                Some(id),
                Default::default(),
                Some(refusal),
                None,
            )
            .await?;
            *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct Empty {}

/// «Cancel» (or, for a failed one, «dismiss») on a scheduled reply: back to its conversation.
pub(super) async fn cancel(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let s = scheduled::cancel(&st.core, &ctx.actor()?, id).await?;
    Ok(Redirect::to(&format!("/app/inbox/{}", s.conversation_id)).into_response())
}
