//! Connecting a personal account, in three steps: the company's api_id and api_hash with the
//! phone (Telegram sends a code), the code, and the 2FA password when the account has one (its
//! hint shown). What the next step needs (the pair, the phone, the code's token) is kept in
//! `LoginPending::state`, which the caller stores encrypted. Every refusal is a field error
//! whose text says what to do; nothing is stored until the last step succeeds.

use super::connector::identity;
use super::{gateway, ApiCredentials, GatewayError, Me, Session, SignIn, TelegramGateway};
use crate::form::{FormField, FormRefusal, FormValues, Validated};
use crate::kind::{LoginFlow, LoginPending, LoginProgress};
use crate::{ChannelError, Credentials, KindEnv};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const API_ID: &str = "tgp_api_id";
const API_HASH: &str = "tgp_api_hash";
const PHONE: &str = "tgp_phone";
const CODE: &str = "tgp_code";
const PASSWORD: &str = "tgp_password";

const FIRST: &[FormField] = &[
    FormField {
        numeric: true,
        max_len: 12,
        placeholder: Some("1234567"),
        hint_key: Some("sources.tgp_api_id_hint"),
        ..FormField::new(API_ID, "sources.tgp_api_id")
    },
    FormField {
        secret: true,
        max_len: 64,
        ..FormField::new(API_HASH, "sources.tgp_api_hash")
    },
    FormField {
        max_len: 32,
        placeholder: Some("+7 999 123-45-67"),
        ..FormField::new(PHONE, "sources.tgp_phone")
    },
];

const CODE_FIELDS: &[FormField] = &[FormField {
    numeric: true,
    max_len: 10,
    hint_key: Some("sources.tgp_code_hint"),
    ..FormField::new(CODE, "sources.tgp_code")
}];

const PASSWORD_FIELDS: &[FormField] = &[FormField {
    secret: true,
    masked: true,
    max_len: 256,
    ..FormField::new(PASSWORD, "sources.tgp_password")
}];

/// The login as the kind states it.
pub(super) const FLOW: LoginFlow = LoginFlow {
    help_key,
    fields,
    main_field,
    step: |env, pending, values| Box::pin(step(env, pending, values)),
};

fn fields(step: &str) -> &'static [FormField] {
    match step {
        "code" => CODE_FIELDS,
        "password" => PASSWORD_FIELDS,
        _ => FIRST,
    }
}

fn help_key(step: &str) -> &'static str {
    match step {
        "code" => "sources.tgp_code_lead",
        "password" => "sources.tgp_password_lead",
        _ => "sources.tgp_help",
    }
}

fn main_field(step: &str) -> &'static str {
    match step {
        "code" => CODE,
        "password" => PASSWORD,
        _ => PHONE,
    }
}

/// What the steps after the first remember.
#[derive(Serialize, Deserialize)]
struct Kept {
    api: ApiCredentials,
    phone: String,
    /// The code's token, then the password's.
    token: String,
}

async fn step(
    env: &KindEnv,
    pending: &LoginPending,
    values: &FormValues,
) -> Result<LoginProgress, FormRefusal> {
    let gw = gateway(env).ok_or(FormRefusal::field(
        main_field(&pending.step),
        "err.tgp_no_gateway",
    ))?;
    match pending.step.as_str() {
        "" => first(gw, values).await,
        "code" => code(gw, kept(pending)?, values).await,
        "password" => password(gw, kept(pending)?, values).await,
        _ => Err(FormRefusal::field(PHONE, "err.tgp_start_again")),
    }
}

fn kept(pending: &LoginPending) -> Result<Kept, FormRefusal> {
    serde_json::from_str(&pending.state)
        .map_err(|_| FormRefusal::field(main_field(&pending.step), "err.tgp_start_again"))
}

fn next(step: &str, kept: &Kept, hint: Option<String>) -> Result<LoginProgress, FormRefusal> {
    let state = serde_json::to_string(kept)
        .map_err(|e| FormRefusal::Unreachable(ChannelError::Permanent(e.to_string())))?;
    Ok(LoginProgress::Next(LoginPending {
        step: step.to_owned(),
        state,
        hint,
    }))
}

/// Telegram's refusal at a step whose own field is `field`, as the person's next move.
fn refused(field: &'static str, e: GatewayError) -> FormRefusal {
    let key = match e {
        GatewayError::ApiIdInvalid => return FormRefusal::field(API_ID, "err.tgp_api_rejected"),
        GatewayError::PhoneNumberInvalid => {
            return FormRefusal::field(PHONE, "err.tgp_phone_rejected")
        }
        GatewayError::PhoneNumberBanned | GatewayError::Banned => "err.tgp_banned",
        GatewayError::PhoneCodeInvalid => "err.tgp_code_invalid",
        GatewayError::PhoneCodeExpired => "err.tgp_code_expired",
        GatewayError::PasswordHashInvalid => "err.tgp_password_invalid",
        GatewayError::FloodWait(_) | GatewayError::PeerFlood => "err.tgp_flood_wait",
        GatewayError::SessionRevoked => "err.tgp_start_again",
        GatewayError::Network(m) => return FormRefusal::Unreachable(ChannelError::Transient(m)),
        GatewayError::PeerRefused(_) | GatewayError::Other(_) => "err.tgp_refused",
    };
    FormRefusal::field(field, key)
}

async fn first(
    gw: Arc<dyn TelegramGateway>,
    values: &FormValues,
) -> Result<LoginProgress, FormRefusal> {
    let mut errs = Vec::new();
    let api_id = values
        .trimmed(API_ID)
        .parse::<i32>()
        .ok()
        .filter(|id| *id > 0);
    if api_id.is_none() {
        errs.push((API_ID, "err.tgp_api_id"));
    }
    let hash = values.trimmed(API_HASH).to_ascii_lowercase();
    if hash.len() != 32 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        errs.push((API_HASH, "err.tgp_api_hash"));
    }
    let phone = chatter_domain::normalize_phone(values.trimmed(PHONE));
    if phone.is_none() {
        errs.push((PHONE, "err.tgp_phone"));
    }
    FormRefusal::check(errs)?;
    let (Some(api_id), Some(phone)) = (api_id, phone) else {
        return Err(FormRefusal::field(PHONE, "err.tgp_phone"));
    };
    let api = ApiCredentials {
        api_id,
        api_hash: hash,
    };
    let token = gw
        .send_code(&api, &phone)
        .await
        .map_err(|e| refused(PHONE, e))?;
    next("code", &Kept { api, phone, token }, None)
}

async fn code(
    gw: Arc<dyn TelegramGateway>,
    kept: Kept,
    values: &FormValues,
) -> Result<LoginProgress, FormRefusal> {
    let code: String = values
        .trimmed(CODE)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if !(4..=8).contains(&code.len()) || !code.chars().all(|c| c.is_ascii_digit()) {
        return Err(FormRefusal::field(CODE, "err.tgp_code_format"));
    }
    match gw
        .sign_in(&kept.api, &kept.phone, &kept.token, &code)
        .await
        .map_err(|e| refused(CODE, e))?
    {
        SignIn::Done(me, session) => Ok(done(&kept.api, &me, session)),
        SignIn::PasswordNeeded { hint, token } => next("password", &Kept { token, ..kept }, hint),
    }
}

async fn password(
    gw: Arc<dyn TelegramGateway>,
    kept: Kept,
    values: &FormValues,
) -> Result<LoginProgress, FormRefusal> {
    let typed = values.get(PASSWORD);
    if typed.is_empty() {
        return Err(FormRefusal::field(PASSWORD, "err.tgp_password_empty"));
    }
    let (me, session) = gw
        .check_password(&kept.api, &kept.token, typed)
        .await
        .map_err(|e| refused(PASSWORD, e))?;
    Ok(done(&kept.api, &me, session))
}

/// Signed in: the session and the pair to store (encrypted), and who the account is.
fn done(api: &ApiCredentials, me: &Me, session: Session) -> LoginProgress {
    let credentials = Credentials {
        token: session.0,
        webhook_secret: None,
        client_id: Some(api.api_id.to_string()),
        app_secret: Some(api.api_hash.clone()),
    };
    LoginProgress::Done(Box::new(Validated::new(credentials, identity(me))))
}
