//! Replying from the inbox: text (optionally quoting a message), a file (`multipart/form-data`,
//! the kind's limit checked while it streams), a WhatsApp medium by link, an approved WhatsApp
//! template; each answers 201 JSON to the page's script or redirects back, and
//! a refusal re-renders the conversation with the reason and the draft kept.

use super::{page, Refusal};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use axum::extract::multipart::Multipart;
use axum::extract::{FromRequest, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chatter_core::inbox::{self, ListFilter};
use chatter_core::CoreError;
use chatter_domain::ConversationId;
use chatter_store::entity::message;

#[derive(serde::Deserialize)]
pub(super) struct ReplyForm {
    text: String,
    reply_to: Option<String>,
    /// The reply template inserted into the box: its file, if it has one, goes with the text.
    template_id: Option<String>,
}

pub(super) fn wants_json(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

pub(super) async fn reply(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
    headers: HeaderMap,
    CsrfForm(f): CsrfForm<ReplyForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let reply_to = f.reply_to.as_deref().and_then(|r| r.parse().ok());
    let template = f.template_id.as_deref().and_then(|t| t.parse().ok());
    let r = match template {
        Some(tid) => {
            inbox::templates::reply_with_template(&st.core, &actor, id, tid, &f.text, reply_to)
                .await
        }
        None => inbox::reply(&st.core, &actor, id, &f.text, reply_to).await,
    };
    answer(&st, &ctx, id, &headers, r, f.text).await
}

/// The answer to a reply of any form: 201 JSON or back to the conversation; a refusal comes
/// back as the conversation with the reason at the reply box and the draft kept (422).
async fn answer(
    st: &AppState,
    ctx: &Ctx,
    id: ConversationId,
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
            let refusal = Refusal {
                message,
                draft,
                note: false,
            };
            let mut resp = page(
                st,
                ctx,
                ListFilter::default(),
                Some(id),
                Default::default(),
                Some(refusal),
                None,
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

/// A file from the reply box (`file`, `text` its caption, `reply_to`), by the form's file
/// input without JavaScript or by the page's script (button, paste, drop). The CSRF token
/// comes in `X-CSRF-Token` or in `_csrf` (before the file, as the form puts it).
pub(super) async fn reply_file(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, AppError> {
    let csrf_ok = |given: Option<&str>| {
        !ctx.csrf.is_empty()
            && given.is_some_and(|g| chatter_core::ct_eq(g.as_bytes(), ctx.csrf.as_bytes()))
    };
    let header_csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        // A form without its file (or a forged post): the token decides, then «choose a file».
        let body = axum::body::to_bytes(req.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        let given = header_csrf.or_else(|| {
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
                .unwrap_or_default()
                .into_iter()
                .find(|(k, _)| k == "_csrf")
                .map(|(_, v)| v)
        });
        if !csrf_ok(given.as_deref()) {
            return Err(AppError::Csrf);
        }
        let actor = ctx.actor()?;
        let r = match inbox::file_rules(&st.core, &actor, id).await {
            Ok(_) => Err(CoreError::field("file", "err.file_required")),
            Err(e) => Err(e),
        };
        return answer(&st, &ctx, id, &headers, r, String::new()).await;
    }
    let actor = match ctx.actor() {
        Ok(a) => a,
        Err(_) if !csrf_ok(header_csrf.as_deref()) => return Err(AppError::Csrf),
        Err(e) => return Err(e),
    };
    // A kind that cannot send files is refused before the body is read (nothing changes).
    let rules = match inbox::file_rules(&st.core, &actor, id).await {
        Ok(r) => r,
        Err(e) => return answer(&st, &ctx, id, &headers, Err(e), String::new()).await,
    };
    let malformed = |m: String| (StatusCode::BAD_REQUEST, format!("malformed form: {m}"));
    let mp = match Multipart::from_request(req, &()).await {
        Ok(mp) => mp,
        Err(e) => return Ok(malformed(e.body_text()).into_response()),
    };
    let form = match crate::upload::read(mp, &rules).await {
        Ok(f) => f,
        Err(crate::upload::UploadError::TooLarge) => {
            if !csrf_ok(header_csrf.as_deref()) {
                return Err(AppError::Csrf);
            }
            let e = inbox::file_too_large(&rules);
            return answer(&st, &ctx, id, &headers, Err(e), String::new()).await;
        }
        Err(crate::upload::UploadError::Malformed(m)) => return Ok(malformed(m).into_response()),
    };
    if !csrf_ok(header_csrf.as_deref().or(form.csrf.as_deref())) {
        return Err(AppError::Csrf);
    }
    let reply_to = form.reply_to.as_deref().and_then(|r| r.parse().ok());
    let r = match form.file {
        Some(upload) => inbox::reply_file(&st.core, &actor, id, upload, &form.text, reply_to).await,
        None => Err(CoreError::field("file", "err.file_required")),
    };
    answer(&st, &ctx, id, &headers, r, form.text).await
}

#[derive(serde::Deserialize)]
pub(super) struct MediaForm {
    media_url: String,
    #[serde(default)]
    caption: String,
}

/// A WhatsApp medium by link.
pub(super) async fn reply_media(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
    headers: HeaderMap,
    CsrfForm(f): CsrfForm<MediaForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let r = inbox::reply_media(&st.core, &actor, id, &f.media_url, &f.caption).await;
    answer(&st, &ctx, id, &headers, r, f.caption).await
}

/// An approved WhatsApp template; `p1` … `p9` fill its body's `{{1}}` … `{{9}}`.
#[derive(serde::Deserialize)]
pub(super) struct TemplateForm {
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

pub(super) async fn reply_template(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
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
