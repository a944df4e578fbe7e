//! The team page: members, roles, invitations.

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::accounts::team;
use chatter_core::{Actor, CoreError};
use chatter_domain::{FieldError, Permission, Role, UserId};
use chatter_store::entity::invite;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/team", get(team_page))
        .route("/app/team/invite", post(invite))
        .route("/app/team/invites/{id}/revoke", post(revoke_invite))
        .route("/app/team/members/{id}/role", post(change_role))
        .route("/app/team/members/{id}/remove", post(remove))
}

#[derive(Template)]
#[template(path = "app/team.html")]
struct TeamTpl {
    p: Page,
    members: Vec<team::Member>,
    invites: Vec<invite::Model>,
    roles: Vec<Role>,
    me: Uuid,
    email: String,
    role: String,
    link: Option<String>,
}

impl TeamTpl {
    fn can_change(&self, m: &team::Member) -> bool {
        m.user_id != self.me
            && self
                .p
                .role
                .is_some_and(|r| r.can(Permission::Manage) && r.can_assign(m.role))
    }
}

async fn load(st: &AppState, ctx: &Ctx, actor: &Actor, p: Page) -> Result<TeamTpl, AppError> {
    let members = team::list_members(&st.core.db, actor).await?;
    let invites = if actor.role.can(Permission::Manage) {
        team::list_invites(&st.core.db, actor, st.core.now()).await?
    } else {
        Vec::new()
    };
    let roles = Role::ALL
        .into_iter()
        .filter(|r| actor.role.can_assign(*r))
        .collect();
    Ok(TeamTpl {
        p,
        members,
        invites,
        roles,
        me: ctx.signed()?.user.id,
        email: String::new(),
        role: "manager".into(),
        link: None,
    })
}

async fn team_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let tpl = load(&st, &ctx, &actor, Page::new(&ctx, "team").flash(&q)).await?;
    Ok(render(tpl))
}

#[derive(serde::Deserialize)]
struct InviteForm {
    email: String,
    role: String,
}

async fn invite(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<InviteForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    match team::invite(&st.core, &actor, &f.email, &f.role, ctx.lang.code()).await {
        Ok(link) => {
            let mut tpl = load(&st, &ctx, &actor, Page::new(&ctx, "team")).await?;
            tpl.p.flash = Some("flash.invited");
            tpl.link = Some(link);
            Ok(render(tpl))
        }
        Err(CoreError::Invalid(errs)) => {
            let mut tpl = load(&st, &ctx, &actor, Page::new(&ctx, "team").errors(errs)).await?;
            tpl.email = f.email;
            tpl.role = f.role;
            Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, tpl))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn revoke_invite(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    team::revoke_invite(&st.core, &ctx.actor()?, id).await?;
    Ok(Redirect::to("/app/team?ok=revoked").into_response())
}

#[derive(serde::Deserialize)]
struct RoleForm {
    role: String,
}

async fn change_role(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(f): CsrfForm<RoleForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    match team::change_role(&st.core, &actor, UserId(id), &f.role).await {
        Ok(()) => Ok(Redirect::to("/app/team?ok=role_changed").into_response()),
        Err(CoreError::Conflict("last_owner")) => {
            let tpl = load(
                &st,
                &ctx,
                &actor,
                Page::new(&ctx, "team").errors(vec![FieldError::new("members", "err.last_owner")]),
            )
            .await?;
            Ok(render_status(StatusCode::CONFLICT, tpl))
        }
        Err(e) => Err(e.into()),
    }
}

async fn remove(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    match team::remove_member(&st.core, &actor, UserId(id)).await {
        Ok(()) => Ok(Redirect::to("/app/team?ok=removed").into_response()),
        Err(CoreError::Conflict("last_owner")) => {
            let tpl = load(
                &st,
                &ctx,
                &actor,
                Page::new(&ctx, "team").errors(vec![FieldError::new("members", "err.last_owner")]),
            )
            .await?;
            Ok(render_status(StatusCode::CONFLICT, tpl))
        }
        Err(e) => Err(e.into()),
    }
}
