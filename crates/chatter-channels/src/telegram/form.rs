//! The Telegram bot's add-source form: the token @BotFather gave, checked with `getMe`.

use super::TelegramClient;
use crate::common::new_secret_token;
use crate::form::{FormField, FormRefusal, FormValues, Validated};
use crate::kind::KindForm;
use crate::KindEnv;
use crate::{ChannelError, Credentials, Identity};

/// The form's one field.
pub(super) const FIELDS: &[FormField] = &[FormField {
    secret: true,
    placeholder: Some("123456789:AA…"),
    ..FormField::new("token", "sources.token")
}];

/// Where wrong tokens are reported.
pub(super) const MAIN_FIELD: &str = "token";

/// The help above the form.
pub(super) const HELP_KEY: &str = "sources.telegram_help";

/// The form as its kind states it.
pub(super) const FORM: KindForm = KindForm {
    fields: FIELDS,
    help_key: HELP_KEY,
    main_field: MAIN_FIELD,
    validate: |env, form| Box::pin(validate(env, form)),
};

/// `123456789:` and at least 20 more characters, as @BotFather issues them.
fn looks_like_a_token(token: &str) -> bool {
    token.split_once(':').is_some_and(|(id, rest)| {
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) && rest.len() >= 20
    })
}

/// Checks the token's shape, then asks Telegram whose it is.
pub(super) async fn validate(env: &KindEnv, form: &FormValues) -> Result<Validated, FormRefusal> {
    let token = form.trimmed("token");
    if !looks_like_a_token(token) {
        return Err(FormRefusal::field("token", "err.token_format"));
    }
    let client = TelegramClient::new(env.http.clone(), &env.config.telegram.api_base, token);
    let me = match client.get_me().await {
        Ok(me) => me,
        Err(ChannelError::Unauthorized(_)) => {
            return Err(FormRefusal::field("token", "err.token_rejected"))
        }
        Err(e) => return Err(FormRefusal::Unreachable(e)),
    };
    let credentials = Credentials {
        token: token.to_owned(),
        webhook_secret: Some(new_secret_token()),
        ..Credentials::default()
    };
    Ok(Validated::new(credentials, me))
}

/// `@username`, the bot's public handle.
pub(super) fn default_name(me: &Identity) -> Option<String> {
    me.username.as_ref().map(|u| format!("@{u}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_a_numeric_id_and_a_long_secret() {
        assert!(looks_like_a_token("123456789:AAbbccddeeffgghhiijjkk"));
        assert!(!looks_like_a_token("not a token"));
        assert!(!looks_like_a_token("12a:AAbbccddeeffgghhiijjkk"));
        assert!(!looks_like_a_token("123:short"));
    }
}
