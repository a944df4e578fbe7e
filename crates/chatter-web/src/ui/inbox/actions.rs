//! What a person does to a conversation besides replying: assign it, close and reopen it, mark
//! it read, retry a failed reply.

use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chatter_core::inbox;
use chatter_core::CoreError;
use chatter_domain::{ConversationId, MessageId};

#[derive(serde::Deserialize)]
pub(super) struct AssignForm {
    /// A member's id, "me", or "" for nobody.
    assignee: String,
}

pub(super) async fn assign(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
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
pub(super) struct Empty {}

pub(super) async fn close(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    inbox::set_open(&st.core, &ctx.actor()?, id, false).await?;
    Ok(Redirect::to(&format!("/app/inbox/{id}")).into_response())
}

pub(super) async fn reopen(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    inbox::set_open(&st.core, &ctx.actor()?, id, true).await?;
    Ok(Redirect::to(&format!("/app/inbox/{id}")).into_response())
}

pub(super) async fn read(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<ConversationId>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    inbox::mark_read(&st.core, &ctx.actor()?, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn retry(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((id, mid)): Path<(ConversationId, MessageId)>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    inbox::retry_message(&st.core, &ctx.actor()?, mid).await?;
    Ok(Redirect::to(&format!("/app/inbox/{id}")).into_response())
}
