//! The Avito account's add-source form: the API client id and secret, checked by reading the
//! account they open.

use super::AvitoClient;
use crate::common::new_hex_secret;
use crate::form::{FormField, FormRefusal, FormValues, Validated};
use crate::kind::KindForm;
use crate::KindEnv;
use crate::{ChannelError, Credentials};

/// The client id, then its secret.
pub(super) const FIELDS: &[FormField] = &[
    FormField::new("avito_client_id", "sources.avito_client_id"),
    FormField {
        secret: true,
        masked: true,
        ..FormField::new("avito_client_secret", "sources.avito_client_secret")
    },
];

/// Where wrong credentials are reported.
pub(super) const MAIN_FIELD: &str = "avito_client_secret";

/// The help above the form.
pub(super) const HELP_KEY: &str = "sources.avito_help";

/// The form as its kind states it.
pub(super) const FORM: KindForm = KindForm {
    fields: FIELDS,
    help_key: HELP_KEY,
    main_field: MAIN_FIELD,
    validate: |env, form| Box::pin(validate(env, form)),
};

/// Checks both are there, then asks Avito for the account.
pub(super) async fn validate(env: &KindEnv, form: &FormValues) -> Result<Validated, FormRefusal> {
    let client_id = form.trimmed("avito_client_id");
    let client_secret = form.trimmed("avito_client_secret");
    let mut errs = Vec::new();
    if client_id.is_empty() {
        errs.push(("avito_client_id", "err.required"));
    }
    if client_secret.is_empty() {
        errs.push(("avito_client_secret", "err.required"));
    }
    FormRefusal::check(errs)?;
    let client = AvitoClient::new(
        env.http.clone(),
        &env.config.avito.api_base,
        client_id,
        client_secret,
    );
    let me = match client.account().await {
        Ok(me) => me,
        Err(ChannelError::Unauthorized(_)) => {
            return Err(FormRefusal::field(MAIN_FIELD, "err.avito_rejected"))
        }
        Err(ChannelError::Permanent(_)) => {
            return Err(FormRefusal::field(MAIN_FIELD, "err.avito_no_access"))
        }
        Err(e) => return Err(FormRefusal::Unreachable(e)),
    };
    let credentials = Credentials {
        token: client_secret.to_owned(),
        webhook_secret: Some(new_hex_secret(64)),
        client_id: Some(client_id.to_owned()),
        ..Credentials::default()
    };
    Ok(Validated::new(credentials, me))
}
