//! Sign-up, sign-in (with the 2FA step and Telegram), sign-out, forgotten passwords,
//! and accepting an invitation.

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::{accounts, team, CoreError};
use chatter_domain::FieldError;
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sign-up", get(sign_up_page).post(sign_up))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-in/2fa", get(two_factor_page).post(two_factor))
        .route("/auth/telegram", post(telegram))
        .route("/sign-out", post(sign_out))
        .route("/sign-out-everywhere", post(sign_out_everywhere))
        .route("/forgot-password", get(forgot_page).post(forgot))
        .route("/reset-password/{token}", get(reset_page).post(reset))
        .route("/invites/{token}", get(invite_page).post(accept_invite))
}

fn with_cookie(cookie: String, to: &str) -> Response {
    ([(header::SET_COOKIE, cookie)], Redirect::to(to)).into_response()
}

#[derive(Template)]
#[template(path = "auth/sign_up.html")]
struct SignUpTpl {
    p: Page,
    company_name: String,
    name: String,
    email: String,
}

async fn sign_up_page(Extension(ctx): Extension<Ctx>) -> Response {
    if ctx.session.is_some() {
        return Redirect::to("/app").into_response();
    }
    render(SignUpTpl {
        p: Page::new(&ctx, ""),
        company_name: String::new(),
        name: String::new(),
        email: String::new(),
    })
}

async fn sign_up(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<accounts::SignUp>,
) -> Result<Response, AppError> {
    match accounts::sign_up(&st.core, &f, &ctx.meta).await {
        Ok((s, _, _)) => Ok(with_cookie(ctx.session_cookie(&s.token), "/app")),
        Err(CoreError::Invalid(errs)) => Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            SignUpTpl {
                p: Page::new(&ctx, "").errors(errs),
                company_name: f.company_name,
                name: f.name,
                email: f.email,
            },
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "auth/sign_in.html")]
struct SignInTpl {
    p: Page,
    email: String,
    message: &'static str,
    telegram_bot: Option<String>,
}

async fn sign_in_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Response {
    if ctx.session.is_some() {
        return Redirect::to("/app").into_response();
    }
    render(SignInTpl {
        p: Page::new(&ctx, "").flash(&q),
        email: String::new(),
        message: "",
        telegram_bot: st.core.config.telegram_login_bot_username.clone(),
    })
}

#[derive(serde::Deserialize)]
struct SignInForm {
    email: String,
    password: String,
}

async fn sign_in(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<SignInForm>,
) -> Result<Response, AppError> {
    let fail = |status, message| {
        render_status(
            status,
            SignInTpl {
                p: Page::new(&ctx, ""),
                email: f.email.clone(),
                message,
                telegram_bot: st.core.config.telegram_login_bot_username.clone(),
            },
        )
    };
    match accounts::sign_in(&st.core, &f.email, &f.password, &ctx.meta).await {
        Ok(s) if s.pending_2fa => Ok(with_cookie(ctx.session_cookie(&s.token), "/sign-in/2fa")),
        Ok(s) => Ok(with_cookie(ctx.session_cookie(&s.token), "/app")),
        Err(CoreError::BadCredentials) => Ok(fail(StatusCode::UNAUTHORIZED, "err.bad_credentials")),
        Err(CoreError::Throttled(secs)) => {
            let mut r = fail(StatusCode::TOO_MANY_REQUESTS, "err.throttled");
            if let Ok(v) = secs.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "auth/two_factor.html")]
struct TwoFactorTpl {
    p: Page,
    message: &'static str,
}

async fn two_factor_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, AppError> {
    let pending = match &ctx.session_token {
        Some(t) => accounts::pending_2fa(&st.core, t).await?,
        None => false,
    };
    if !pending {
        return Ok(Redirect::to("/sign-in").into_response());
    }
    Ok(render(TwoFactorTpl {
        p: Page::new(&ctx, ""),
        message: "",
    }))
}

#[derive(serde::Deserialize)]
struct CodeForm {
    code: String,
}

async fn two_factor(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<CodeForm>,
) -> Result<Response, AppError> {
    let token = ctx.session_token.clone().ok_or(AppError::SignIn)?;
    match accounts::sign_in_2fa(&st.core, &token, &f.code, &ctx.meta).await {
        Ok(s) => Ok(with_cookie(ctx.session_cookie(&s.token), "/app")),
        Err(CoreError::BadCode) => Ok(render_status(
            StatusCode::UNAUTHORIZED,
            TwoFactorTpl {
                p: Page::new(&ctx, ""),
                message: "err.code_wrong",
            },
        )),
        Err(CoreError::Throttled(_)) => Ok(render_status(
            StatusCode::TOO_MANY_REQUESTS,
            TwoFactorTpl {
                p: Page::new(&ctx, ""),
                message: "err.throttled",
            },
        )),
        Err(e) => Err(e.into()),
    }
}

/// The Telegram Login Widget's data, posted by our page's `onauth` callback with the CSRF token.
async fn telegram(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(mut f): CsrfForm<BTreeMap<String, String>>,
) -> Result<Response, AppError> {
    f.remove("_csrf");
    let link = f.remove("_link").is_some();
    if link {
        let info = ctx.signed()?;
        accounts::link_telegram(&st.core, info, &f, &ctx.meta).await?;
        return Ok(Redirect::to("/app/profile?ok=telegram_linked").into_response());
    }
    match accounts::sign_in_telegram(&st.core, &f, &ctx.meta).await {
        Ok(s) if s.pending_2fa => Ok(with_cookie(ctx.session_cookie(&s.token), "/sign-in/2fa")),
        Ok(s) => Ok(with_cookie(ctx.session_cookie(&s.token), "/app")),
        Err(CoreError::NotFound) => Ok(render_status(
            StatusCode::UNAUTHORIZED,
            SignInTpl {
                p: Page::new(&ctx, ""),
                email: String::new(),
                message: "err.telegram_not_linked",
                telegram_bot: st.core.config.telegram_login_bot_username.clone(),
            },
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn sign_out(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    if let Some(info) = &ctx.session {
        accounts::sign_out(&st.core, info, &ctx.meta).await?;
    }
    Ok(with_cookie(ctx.clear_session_cookie(), "/sign-in"))
}

async fn sign_out_everywhere(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let info = ctx.signed()?;
    accounts::sign_out_everywhere(&st.core, info, &ctx.meta).await?;
    Ok(with_cookie(
        ctx.clear_session_cookie(),
        "/sign-in?ok=signed_out_everywhere",
    ))
}

#[derive(Template)]
#[template(path = "auth/forgot.html")]
struct ForgotTpl {
    p: Page,
    email: String,
    sent: bool,
}

async fn forgot_page(Extension(ctx): Extension<Ctx>) -> Response {
    render(ForgotTpl {
        p: Page::new(&ctx, ""),
        email: String::new(),
        sent: false,
    })
}

#[derive(serde::Deserialize)]
struct EmailForm {
    email: String,
}

async fn forgot(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<EmailForm>,
) -> Result<Response, AppError> {
    match accounts::request_password_reset(&st.core, &f.email, ctx.lang.code(), &ctx.meta).await {
        Ok(()) => Ok(render(ForgotTpl {
            p: Page::new(&ctx, ""),
            email: f.email,
            sent: true,
        })),
        Err(CoreError::Invalid(errs)) => Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            ForgotTpl {
                p: Page::new(&ctx, "").errors(errs),
                email: f.email,
                sent: false,
            },
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "auth/reset.html")]
struct ResetTpl {
    p: Page,
    token: String,
}

async fn reset_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    if !accounts::reset_link_valid(&st.core, &token).await? {
        return Err(CoreError::LinkExpired.into());
    }
    Ok(render(ResetTpl {
        p: Page::new(&ctx, ""),
        token,
    }))
}

#[derive(serde::Deserialize)]
struct ResetForm {
    password: String,
}

async fn reset(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(token): Path<String>,
    CsrfForm(f): CsrfForm<ResetForm>,
) -> Result<Response, AppError> {
    match accounts::reset_password(&st.core, &token, &f.password, &ctx.meta).await {
        Ok(()) => Ok(with_cookie(
            ctx.clear_session_cookie(),
            "/sign-in?ok=password_reset",
        )),
        Err(CoreError::Invalid(errs)) => Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            ResetTpl {
                p: Page::new(&ctx, "").errors(errs),
                token,
            },
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "auth/invite.html")]
struct InviteTpl {
    p: Page,
    token: String,
    invite: team::InviteView,
    name: String,
}

async fn invite_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let invite = team::find_invite(&st.core, &token).await?;
    Ok(render(InviteTpl {
        p: Page::new(&ctx, ""),
        token,
        invite,
        name: String::new(),
    }))
}

#[derive(serde::Deserialize)]
struct AcceptForm {
    name: Option<String>,
    password: Option<String>,
}

async fn accept_invite(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(token): Path<String>,
    CsrfForm(f): CsrfForm<AcceptForm>,
) -> Result<Response, AppError> {
    if let Some(info) = &ctx.session {
        team::accept_invite(&st.core, info, &token, &ctx.meta).await?;
        return Ok(Redirect::to("/app?ok=joined").into_response());
    }
    let name = f.name.unwrap_or_default();
    match team::accept_invite_new_account(
        &st.core,
        &token,
        &name,
        &f.password.unwrap_or_default(),
        &ctx.meta,
    )
    .await
    {
        Ok(s) => Ok(with_cookie(ctx.session_cookie(&s.token), "/app?ok=joined")),
        Err(CoreError::Invalid(errs)) => {
            let invite = team::find_invite(&st.core, &token).await?;
            Ok(render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                InviteTpl {
                    p: Page::new(&ctx, "").errors(errs),
                    token,
                    invite,
                    name,
                },
            ))
        }
        Err(CoreError::Conflict(_)) => {
            let invite = team::find_invite(&st.core, &token).await?;
            let errs = vec![FieldError::new("name", "err.account_exists")];
            Ok(render_status(
                StatusCode::CONFLICT,
                InviteTpl {
                    p: Page::new(&ctx, "").errors(errs),
                    token,
                    invite,
                    name,
                },
            ))
        }
        Err(e) => Err(e.into()),
    }
}
