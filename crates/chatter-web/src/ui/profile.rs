//! Profile and security: name and language, password, two-factor sign-in, Telegram and
//! amoCRM links, signing out everywhere.

use super::{render, render_status, Flash, Page};
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::forms::CsrfForm;
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chatter_core::crm::signin as crm_signin;
use chatter_core::{accounts, CoreError};
use chatter_domain::FieldError;
use chatter_store::entity::user_identity;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/profile", get(profile_page).post(update_profile))
        .route("/app/profile/password", post(change_password))
        .route("/app/profile/notifications", post(save_notifications))
        .route("/app/profile/2fa/start", post(start_2fa))
        .route("/app/profile/2fa/enable", post(enable_2fa))
        .route("/app/profile/2fa/disable", post(disable_2fa))
        .route("/app/profile/amocrm/link", post(link_amocrm))
        .route("/app/profile/amocrm/unlink", post(unlink_amocrm))
}

#[derive(Template)]
#[template(path = "app/profile.html")]
struct ProfileTpl {
    p: Page,
    name: String,
    email: String,
    locale: String,
    totp_enabled: bool,
    /// (base32 secret, otpauth URI) while 2FA is being set up.
    totp_setup: Option<(String, String)>,
    /// The otpauth URI as a QR code (inline SVG made here, nothing fetched from elsewhere).
    totp_qr: Option<String>,
    recovery_codes: Vec<String>,
    telegram_linked: bool,
    telegram_bot: Option<String>,
    /// amoCRM is set up on this server (the link button shows).
    amocrm: bool,
    amocrm_links: Vec<user_identity::Model>,
    /// Notification settings in the current company (none without one).
    notify: Option<chatter_core::notifications::Settings>,
}

/// `text` as a QR code in SVG, to put inline in a page (no XML declaration).
fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    let start = svg.find("<svg")?;
    Some(svg[start..].to_owned())
}

async fn tpl(st: &AppState, ctx: &Ctx, p: Page) -> Result<ProfileTpl, AppError> {
    let info = ctx.signed()?;
    let notify = match &info.company {
        Some((c, _)) => {
            Some(chatter_core::notifications::settings(&st.core.db, c.id, info.user.id).await?)
        }
        None => None,
    };
    Ok(ProfileTpl {
        notify,
        amocrm: st.core.config.amocrm.is_some(),
        amocrm_links: crm_signin::links_of(&st.core, info.user.id).await?,
        name: info.user.name.clone(),
        email: info.user.email.clone(),
        // The language in use (an EN/RU switch in the header included): saving keeps it.
        locale: ctx.lang.code().to_owned(),
        totp_enabled: info.user.totp_enabled,
        totp_setup: accounts::pending_totp(&st.core, info),
        totp_qr: accounts::pending_totp(&st.core, info).and_then(|(_, uri)| qr_svg(&uri)),
        recovery_codes: Vec::new(),
        telegram_linked: info.user.telegram_id.is_some(),
        telegram_bot: st.core.config.telegram_login_bot_username.clone(),
        p,
    })
}

async fn profile_page(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<Flash>,
) -> Result<Response, AppError> {
    Ok(render(
        tpl(&st, &ctx, Page::new(&ctx, "profile").flash(&q)).await?,
    ))
}

#[derive(serde::Deserialize)]
struct ProfileForm {
    name: String,
    locale: String,
}

async fn update_profile(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<ProfileForm>,
) -> Result<Response, AppError> {
    let info = ctx.signed()?;
    match accounts::update_profile(&st.core, info, &f.name, &f.locale, &ctx.meta).await {
        Ok(()) => {
            // The language the person chose wins over an earlier switch in the header.
            let c = crate::ctx::cookie(
                crate::ctx::LANG_COOKIE,
                &f.locale,
                365 * 24 * 3600,
                "Lax",
                ctx.secure,
            );
            Ok((
                [(axum::http::header::SET_COOKIE, c)],
                Redirect::to("/app/profile?ok=saved"),
            )
                .into_response())
        }
        Err(CoreError::Invalid(errs)) => {
            let mut t = tpl(&st, &ctx, Page::new(&ctx, "profile").errors(errs)).await?;
            t.name = f.name;
            Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, t))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct NotifyForm {
    browser: Option<String>,
    digest: Option<String>,
}

/// Browser notifications and the daily digest, on or off (an unticked box is not sent).
async fn save_notifications(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<NotifyForm>,
) -> Result<Response, AppError> {
    let actor = ctx.actor()?;
    let s = chatter_core::notifications::Settings {
        browser: f.browser.is_some(),
        digest: f.digest.is_some(),
    };
    chatter_core::notifications::save_settings(&st.core, &actor, s).await?;
    Ok(Redirect::to("/app/profile?ok=saved#notifications").into_response())
}

#[derive(serde::Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<PasswordForm>,
) -> Result<Response, AppError> {
    let info = ctx.signed()?;
    match accounts::change_password(
        &st.core,
        info,
        &f.current_password,
        &f.new_password,
        &ctx.meta,
    )
    .await
    {
        Ok(()) => Ok(Redirect::to("/app/profile?ok=password_changed").into_response()),
        Err(CoreError::Invalid(errs)) => Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            tpl(&st, &ctx, Page::new(&ctx, "profile").errors(errs)).await?,
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn start_2fa(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let info = ctx.signed()?;
    accounts::begin_totp(&st.core, info).await?;
    Ok(Redirect::to("/app/profile#twofa").into_response())
}

#[derive(serde::Deserialize)]
struct CodeForm {
    code: String,
}

async fn enable_2fa(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<CodeForm>,
) -> Result<Response, AppError> {
    let info = ctx.signed()?;
    match accounts::enable_totp(&st.core, info, &f.code, &ctx.meta).await {
        Ok(codes) => {
            let mut t = tpl(&st, &ctx, Page::new(&ctx, "profile")).await?;
            t.totp_enabled = true;
            t.totp_setup = None;
            t.recovery_codes = codes;
            Ok(render(t))
        }
        Err(CoreError::Invalid(errs)) => Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            tpl(&st, &ctx, Page::new(&ctx, "profile").errors(errs)).await?,
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct DisableForm {
    password: String,
}

async fn disable_2fa(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<DisableForm>,
) -> Result<Response, AppError> {
    let info = ctx.signed()?;
    match accounts::disable_totp(&st.core, info, &f.password, &ctx.meta).await {
        Ok(()) => Ok(Redirect::to("/app/profile?ok=twofa_disabled").into_response()),
        Err(CoreError::Invalid(errs)) => {
            let errs = errs
                .into_iter()
                .map(|e| FieldError {
                    field: "disable_password",
                    ..e
                })
                .collect();
            Ok(render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                tpl(&st, &ctx, Page::new(&ctx, "profile").errors(errs)).await?,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// «Привязать amoCRM»: off to amoCRM's consent page; the callback links the amoCRM user.
async fn link_amocrm(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, AppError> {
    let info = ctx.signed()?;
    let url = crm_signin::link_url(&st.core, info).await?;
    Ok(Redirect::to(&url).into_response())
}

/// amoCRM's redirect for a link consent (dispatched from the one callback route).
pub(super) async fn amocrm_linked(
    st: &AppState,
    ctx: &Ctx,
    query: &str,
) -> Result<Response, AppError> {
    let info = ctx.signed()?;
    let (status, key) = match crm_signin::finish_link(&st.core, info, query, &ctx.meta).await {
        Ok(()) => return Ok(Redirect::to("/app/profile?ok=saved").into_response()),
        Err(CoreError::Invalid(errs)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            errs.first().map_or("err.crm_callback_invalid", |e| e.key),
        ),
        Err(CoreError::Conflict(_)) => (StatusCode::CONFLICT, "amocrm.linked_elsewhere"),
        Err(e) => return Err(e.into()),
    };
    let errs = vec![FieldError::new("amocrm", key)];
    Ok(render_status(
        status,
        tpl(st, ctx, Page::new(ctx, "profile").errors(errs)).await?,
    ))
}

#[derive(serde::Deserialize)]
struct UnlinkForm {
    subject: String,
}

async fn unlink_amocrm(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CsrfForm(f): CsrfForm<UnlinkForm>,
) -> Result<Response, AppError> {
    let info = ctx.signed()?;
    crm_signin::unlink(&st.core, info, &f.subject, &ctx.meta).await?;
    Ok(Redirect::to("/app/profile?ok=saved").into_response())
}
