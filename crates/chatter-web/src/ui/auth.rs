//! Sign-up, sign-in (with the 2FA step, Telegram and amoCRM), sign-out, forgotten passwords,
//! and accepting an invitation.

use super::{render, render_status, Flash, Page};
use crate::ctx::{cookie, read_cookie, Ctx};
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::accounts::signup;
use chatter_core::accounts::team;
use chatter_core::crm::signin::{self as crm_signin, SignInOutcome};
use chatter_core::{accounts, CoreError};
use chatter_domain::FieldError;
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sign-up", get(sign_up_page).post(sign_up))
        .route("/sign-up/confirm/{token}", get(confirm_page).post(confirm))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-in/2fa", get(two_factor_page).post(two_factor))
        .route("/sign-in/amocrm", post(amocrm_start))
        .route(
            "/sign-up/amocrm",
            get(amocrm_sign_up_page).post(amocrm_sign_up),
        )
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
    /// The answer for an e-mail that already has an account: "check your mail".
    check_mail: bool,
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
        check_mail: false,
    })
}

async fn sign_up(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<accounts::SignUp>,
) -> Result<Response, AppError> {
    match accounts::sign_up_or_notify(&st.core, &f, ctx.lang.code(), &ctx.meta).await {
        Ok(accounts::SignUpOutcome::Created { session, .. }) => {
            Ok(with_cookie(ctx.session_cookie(&session.token), "/app"))
        }
        // The same answer for a new address and a known one: the mail says which it was.
        Ok(accounts::SignUpOutcome::CheckMail) => Ok(render(SignUpTpl {
            p: Page::new(&ctx, ""),
            company_name: String::new(),
            name: String::new(),
            email: f.email,
            check_mail: true,
        })),
        Err(CoreError::Invalid(errs)) => Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            SignUpTpl {
                p: Page::new(&ctx, "").errors(errs),
                company_name: f.company_name,
                name: f.name,
                email: f.email,
                check_mail: false,
            },
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "auth/sign_up_confirm.html")]
struct ConfirmTpl {
    p: Page,
    token: String,
    pending: signup::PendingSignUp,
}

/// The page behind a mailed sign-up link: what is about to be created, and one button (a link
/// that created the company by itself would do so for every mail scanner that opens it).
async fn confirm_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let pending = signup::pending_sign_up(&st.core, &token).await?;
    Ok(render(ConfirmTpl {
        p: Page::new(&ctx, ""),
        token,
        pending,
    }))
}

async fn confirm(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(token): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let (session, _, _) = signup::confirm_sign_up(&st.core, &token, &ctx.meta).await?;
    Ok(with_cookie(ctx.session_cookie(&session.token), "/app"))
}

#[derive(Template)]
#[template(path = "auth/sign_in.html")]
struct SignInTpl {
    p: Page,
    email: String,
    message: &'static str,
    telegram_bot: Option<String>,
    /// Show «Войти через amoCRM».
    amocrm: bool,
}

impl SignInTpl {
    fn new(st: &AppState, p: Page, email: String, message: &'static str) -> Self {
        SignInTpl {
            p,
            email,
            message,
            telegram_bot: st.core.config.telegram_login_bot_username.clone(),
            amocrm: st.core.config.amocrm.is_some(),
        }
    }
}

async fn sign_in_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Response {
    if ctx.session.is_some() {
        return Redirect::to("/app").into_response();
    }
    render(SignInTpl::new(
        &st,
        Page::new(&ctx, "").flash(&q),
        String::new(),
        "",
    ))
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
            SignInTpl::new(&st, Page::new(&ctx, ""), f.email.clone(), message),
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
        Err(CoreError::Throttled(secs)) => {
            let mut r = render_status(
                StatusCode::TOO_MANY_REQUESTS,
                TwoFactorTpl {
                    p: Page::new(&ctx, ""),
                    message: "err.two_factor_locked",
                },
            );
            if let Ok(v) = secs.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Ok(r)
        }
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
            SignInTpl::new(
                &st,
                Page::new(&ctx, ""),
                String::new(),
                "err.telegram_not_linked",
            ),
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
    /// Signed in as someone other than the person invited: say whom to sign in as instead.
    other_person: bool,
}

async fn invite_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let invite = team::find_invite(&st.core, &token).await?;
    let other_person = ctx
        .session
        .as_ref()
        .is_some_and(|info| !team::invite_is_for(&invite, info));
    let status = if other_person {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    };
    Ok(render_status(
        status,
        InviteTpl {
            p: Page::new(&ctx, ""),
            token,
            invite,
            name: String::new(),
            other_person,
        },
    ))
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
        let invite = team::find_invite(&st.core, &token).await?;
        if !team::invite_is_for(&invite, info) {
            return Ok(render_status(
                StatusCode::FORBIDDEN,
                InviteTpl {
                    p: Page::new(&ctx, ""),
                    token,
                    invite,
                    name: String::new(),
                    other_person: true,
                },
            ));
        }
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
                    other_person: false,
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
                    other_person: false,
                },
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The state of a Sign in with amoCRM in progress: only the browser that started it may finish.
const AMO_STATE_COOKIE: &str = "chatter_amocrm_state";
/// The handle of a sign-up waiting for its form (its tokens stay on the server).
const AMO_SIGNUP_COOKIE: &str = "chatter_amocrm_signup";
/// Both live as long as what they point at: 15 minutes.
const AMO_COOKIE_SECS: i64 = 15 * 60;

/// «Войти через amoCRM»: off to amoCRM's consent page.
async fn amocrm_start(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let (url, state) = crm_signin::signin_url(&st.core).await?;
    let c = cookie(AMO_STATE_COOKIE, &state, AMO_COOKIE_SECS, "Lax", ctx.secure);
    Ok(([(header::SET_COOKIE, c)], Redirect::to(&url)).into_response())
}

/// amoCRM's redirect for a sign-in consent (dispatched from the one callback route).
pub(super) async fn amocrm_signed_in(
    st: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    query: &str,
) -> Result<Response, AppError> {
    // Someone else's callback link opened in this browser must not sign it in.
    let kept = read_cookie(headers, AMO_STATE_COOKIE);
    let given = crm_signin::callback_state(query);
    let same = matches!((&kept, &given), (Some(k), Some(g)) if chatter_core::ct_eq(k.as_bytes(), g.as_bytes()));
    if !same {
        return Err(CoreError::LinkExpired.into());
    }
    let clear_state = cookie(AMO_STATE_COOKIE, "", 0, "Lax", ctx.secure);
    match crm_signin::finish_signin(&st.core, query, &ctx.meta).await {
        Ok(SignInOutcome::SignedIn(s)) => {
            let to = if s.pending_2fa {
                "/sign-in/2fa"
            } else {
                "/app"
            };
            Ok((
                AppendHeaders([
                    (header::SET_COOKIE, ctx.session_cookie(&s.token)),
                    (header::SET_COOKIE, clear_state),
                ]),
                Redirect::to(to),
            )
                .into_response())
        }
        Ok(SignInOutcome::NotMember { account_name }) => {
            let mut r = render_status(
                StatusCode::FORBIDDEN,
                NotMemberTpl {
                    p: Page::new(ctx, ""),
                    account_name,
                },
            );
            if let Ok(v) = clear_state.parse() {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(r)
        }
        Ok(SignInOutcome::NewCompany { handle }) => Ok((
            AppendHeaders([
                (
                    header::SET_COOKIE,
                    cookie(
                        AMO_SIGNUP_COOKIE,
                        &handle,
                        AMO_COOKIE_SECS,
                        "Lax",
                        ctx.secure,
                    ),
                ),
                (header::SET_COOKIE, clear_state),
            ]),
            Redirect::to("/sign-up/amocrm"),
        )
            .into_response()),
        Err(CoreError::Invalid(errs)) => {
            let message = errs.first().map_or("err.crm_callback_invalid", |e| e.key);
            Ok(render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                SignInTpl::new(st, Page::new(ctx, ""), String::new(), message),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "auth/amocrm_not_member.html")]
struct NotMemberTpl {
    p: Page,
    account_name: String,
}

#[derive(Template)]
#[template(path = "auth/amocrm_sign_up.html")]
struct AmoSignUpTpl {
    p: Page,
    account_name: String,
    subdomain: String,
    company_name: String,
    name: String,
    email: String,
    message: &'static str,
}

fn signup_handle(headers: &HeaderMap) -> Result<String, AppError> {
    read_cookie(headers, AMO_SIGNUP_COOKIE).ok_or_else(|| CoreError::LinkExpired.into())
}

/// The "create a company linked to this amoCRM account" form, prefilled from amoCRM.
async fn amocrm_sign_up_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let handle = signup_handle(&headers)?;
    let f = crm_signin::signup_prefill(&st.core, &handle).await?;
    Ok(render(AmoSignUpTpl {
        p: Page::new(&ctx, ""),
        company_name: f.account_name.clone(),
        account_name: f.account_name,
        subdomain: f.subdomain,
        name: f.name,
        email: f.email,
        message: if f.email_taken {
            "amocrm.account_exists"
        } else {
            ""
        },
    }))
}

async fn amocrm_sign_up(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    CsrfForm(f): CsrfForm<accounts::SignUp>,
) -> Result<Response, AppError> {
    let handle = signup_handle(&headers)?;
    let (status, errs, message) =
        match crm_signin::create_company(&st.core, &handle, &f, &ctx.meta).await {
            Ok(s) => {
                let clear = cookie(AMO_SIGNUP_COOKIE, "", 0, "Lax", ctx.secure);
                return Ok((
                    AppendHeaders([
                        (header::SET_COOKIE, ctx.session_cookie(&s.token)),
                        (header::SET_COOKIE, clear),
                    ]),
                    Redirect::to("/app"),
                )
                    .into_response());
            }
            Err(CoreError::Invalid(errs)) => (StatusCode::UNPROCESSABLE_ENTITY, errs, ""),
            Err(CoreError::Conflict("amocrm_account_exists")) => {
                (StatusCode::CONFLICT, Vec::new(), "amocrm.account_exists")
            }
            Err(e) => return Err(e.into()),
        };
    let prefill = crm_signin::signup_prefill(&st.core, &handle).await?;
    Ok(render_status(
        status,
        AmoSignUpTpl {
            p: Page::new(&ctx, "").errors(errs),
            account_name: prefill.account_name,
            subdomain: prefill.subdomain,
            company_name: f.company_name,
            name: f.name,
            email: f.email,
            message,
        },
    ))
}
