//! Writing an internal note from the reply box's note tab: 201 JSON to the page's script, or
//! back to the conversation on the note tab; a refused note (only spaces, too long) comes back
//! as the conversation with the reason beside the note box and the draft kept (422).

use super::{page, Opened, Refusal};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chatter_core::inbox::{self, ListFilter, NewNote};
use chatter_core::CoreError;
use chatter_domain::ConversationId;

#[derive(serde::Deserialize)]
pub(super) struct NoteForm {
    text: String,
}

pub(super) async fn add_note(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
    headers: HeaderMap,
    CsrfForm(f): CsrfForm<NoteForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let new = NewNote {
        text: &f.text,
        mentions: &[],
        author: None,
    };
    let tr = crate::i18n::Tr(ctx.lang);
    match inbox::add_note(&st.core, &actor, id, new).await {
        Ok(n) if super::reply::wants_json(&headers) => Ok((
            StatusCode::CREATED,
            axum::Json(serde_json::json!({"id": n.id})),
        )
            .into_response()),
        Ok(_) => Ok(Redirect::to(&format!("/app/inbox/{id}?mode=note")).into_response()),
        Err(CoreError::Invalid(e)) if super::reply::wants_json(&headers) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(serde_json::json!({"error": e.first().map(|e| tr.field(e))})),
        )
            .into_response()),
        Err(CoreError::Invalid(e)) => {
            let message = e.iter().map(|e| tr.field(e)).collect::<Vec<_>>().join(" ");
            let refusal = Refusal {
                message,
                draft: f.text,
                note: true,
            };
            let mut resp = page(
                &st,
                &ctx,
                ListFilter::default(),
                Some(id),
                Opened::default(),
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
