//! The WhatsApp number's add-source form: the number's id (not the number itself), the
//! business account for templates, a system-user access token and the Meta app's secret,
//! checked by reading the number.

use super::WhatsAppClient;
use crate::common::new_hex_secret;
use crate::form::{token_like, FormField, FormRefusal, FormValues, Validated};
use crate::kind::KindForm;
use crate::KindEnv;
use crate::{Channel, ChannelError, Credentials, Identity};

/// The number, the business account, the token and the app secret.
pub(super) const FIELDS: &[FormField] = &[
    FormField {
        numeric: true,
        ..FormField::new("wa_phone_number_id", "sources.wa_phone_number_id")
    },
    FormField {
        numeric: true,
        ..FormField::new("wa_waba_id", "sources.wa_waba_id")
    },
    FormField {
        secret: true,
        masked: true,
        placeholder: Some("EAAG…"),
        ..FormField::new("wa_access_token", "sources.wa_access_token")
    },
    FormField {
        secret: true,
        masked: true,
        ..FormField::new("wa_app_secret", "sources.wa_app_secret")
    },
];

/// Where wrong tokens are reported.
pub(super) const MAIN_FIELD: &str = "wa_access_token";

/// The help above the form.
pub(super) const HELP_KEY: &str = "sources.wa_help";

/// The form as its kind states it.
pub(super) const FORM: KindForm = KindForm {
    fields: FIELDS,
    help_key: HELP_KEY,
    main_field: MAIN_FIELD,
    validate: |env, form| Box::pin(validate(env, form)),
};

/// The advice above the callback URL and verify token to paste at Meta.
pub(super) const SETUP_HELP_KEY: &str = "sources.wa_setup_help";

fn digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

/// Checks every value's shape, then asks Meta for the number.
pub(super) async fn validate(env: &KindEnv, form: &FormValues) -> Result<Validated, FormRefusal> {
    let (number, waba) = (
        form.trimmed("wa_phone_number_id"),
        form.trimmed("wa_waba_id"),
    );
    let token = form.trimmed("wa_access_token");
    let app_secret = form.trimmed("wa_app_secret");
    let mut errs = Vec::new();
    if !digits(number) {
        errs.push(("wa_phone_number_id", "err.wa_id_format"));
    }
    if !digits(waba) {
        errs.push(("wa_waba_id", "err.wa_id_format"));
    }
    if !token_like(token, 20) {
        errs.push(("wa_access_token", "err.wa_token_format"));
    }
    if app_secret.len() < 16 || !app_secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        errs.push(("wa_app_secret", "err.wa_app_secret_format"));
    }
    FormRefusal::check(errs)?;
    let cfg = &env.config.whatsapp;
    let client = WhatsAppClient::new(
        env.http.clone(),
        &cfg.api_base,
        &cfg.api_version,
        number,
        token,
    );
    let me = match client.identify().await {
        Ok(me) => me,
        Err(ChannelError::Unauthorized(_)) => {
            return Err(FormRefusal::field("wa_access_token", "err.wa_rejected"))
        }
        Err(ChannelError::Permanent(_)) => {
            return Err(FormRefusal::field("wa_phone_number_id", "err.wa_no_number"))
        }
        Err(e) => return Err(FormRefusal::Unreachable(e)),
    };
    let credentials = Credentials {
        token: token.to_owned(),
        webhook_secret: Some(new_hex_secret(32)),
        app_secret: Some(app_secret.to_owned()),
        ..Credentials::default()
    };
    // The number's id is what notifications are routed by.
    let me = Identity {
        id: number.to_owned(),
        ..me
    };
    let mut v = Validated::new(credentials, me);
    v.settings.waba_id = Some(waba.to_owned());
    Ok(v)
}
