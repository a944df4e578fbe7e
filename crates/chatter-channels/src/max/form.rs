//! The Max bot's add-source form: the bot's token, checked with `GET /me`.

use super::{new_webhook_secret, MaxClient};
use crate::form::{token_like, FormField, FormRefusal, FormValues, Validated};
use crate::kind::KindForm;
use crate::KindEnv;
use crate::{ChannelError, Credentials, Identity};

/// The form's one field.
pub(super) const FIELDS: &[FormField] = &[FormField {
    secret: true,
    ..FormField::new("max_token", "sources.token")
}];

/// Where wrong tokens are reported.
pub(super) const MAIN_FIELD: &str = "max_token";

/// The help above the form.
pub(super) const HELP_KEY: &str = "sources.max_help";

/// The form as its kind states it.
pub(super) const FORM: KindForm = KindForm {
    fields: FIELDS,
    help_key: HELP_KEY,
    main_field: MAIN_FIELD,
    validate: |env, form| Box::pin(validate(env, form)),
};

/// Checks the token's shape, then asks Max whose bot it is (through the client that trusts
/// Max's root certificate).
pub(super) async fn validate(env: &KindEnv, form: &FormValues) -> Result<Validated, FormRefusal> {
    let token = form.trimmed("max_token");
    if !token_like(token, 10) {
        return Err(FormRefusal::field("max_token", "err.max_token_format"));
    }
    let client = MaxClient::new(env.max_http(), &env.config.max.api_base, token);
    let me = match client.me().await {
        Ok(me) => me,
        Err(ChannelError::Unauthorized(_)) | Err(ChannelError::Permanent(_)) => {
            return Err(FormRefusal::field("max_token", "err.max_token_rejected"))
        }
        Err(e) => return Err(FormRefusal::Unreachable(e)),
    };
    let credentials = Credentials {
        token: token.to_owned(),
        webhook_secret: Some(new_webhook_secret()),
        ..Credentials::default()
    };
    Ok(Validated::new(credentials, me))
}

/// `@username`, the bot's public handle.
pub(super) fn default_name(me: &Identity) -> Option<String> {
    me.username.as_ref().map(|u| format!("@{u}"))
}
