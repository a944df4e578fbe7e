//! The SMS gateway account's add-source form (the Sipout preset): the API key from the
//! cabinet and an optional sender name, checked by reading the account.

use super::{new_callback_token, sms_parts, SmsClient, SmsGatewayConfig};
use crate::form::{token_like, FormField, FormRefusal, FormValues, Validated};
use crate::kind::KindForm;
use crate::KindEnv;
use crate::{Channel, ChannelError, Credentials, Identity};

/// The key, then the sender name.
pub(super) const FIELDS: &[FormField] = &[
    FormField {
        secret: true,
        masked: true,
        ..FormField::new("sms_api_key", "sources.sms_api_key")
    },
    FormField {
        required: false,
        max_len: 11,
        placeholder: Some("Romashka"),
        ..FormField::new("sms_sender", "sources.sms_sender")
    },
];

/// Where wrong keys are reported.
pub(super) const MAIN_FIELD: &str = "sms_api_key";

/// The help above the form.
pub(super) const HELP_KEY: &str = "sources.sms_help";

/// The form as its kind states it.
pub(super) const FORM: KindForm = KindForm {
    fields: FIELDS,
    help_key: HELP_KEY,
    main_field: MAIN_FIELD,
    validate: |env, form| Box::pin(validate(env, form)),
};

/// The advice above the callback URLs to paste in the gateway's cabinet.
pub(super) const SETUP_HELP_KEY: &str = "sources.sms_setup_help";

/// Operators register alphanumeric sender names of at most 11 Latin characters; empty means
/// the gateway's default.
fn sender_ok(sender: &str) -> bool {
    sender.is_empty()
        || (sender.len() <= 11
            && sender
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._ ".contains(&b)))
}

/// Checks the key's and the sender's shape, then asks the gateway for the account.
pub(super) async fn validate(env: &KindEnv, form: &FormValues) -> Result<Validated, FormRefusal> {
    let (key, sender) = (form.trimmed("sms_api_key"), form.trimmed("sms_sender"));
    let mut errs = Vec::new();
    if !token_like(key, 8) {
        errs.push(("sms_api_key", "err.sms_key_format"));
    }
    if !sender_ok(sender) {
        errs.push(("sms_sender", "err.sms_sender_format"));
    }
    FormRefusal::check(errs)?;
    let client = SmsClient::new(
        env.http.clone(),
        SmsGatewayConfig::sipout(&env.config.sms.api_base, key, Some(sender)),
    );
    let me = match client.identify().await {
        Ok(me) => me,
        Err(ChannelError::Unauthorized(_)) | Err(ChannelError::Permanent(_)) => {
            return Err(FormRefusal::field("sms_api_key", "err.sms_rejected"))
        }
        Err(e) => return Err(FormRefusal::Unreachable(e)),
    };
    let credentials = Credentials {
        token: key.to_owned(),
        webhook_secret: Some(new_callback_token()),
        ..Credentials::default()
    };
    // One account may send under several sender names: each is its own source.
    let me = Identity {
        id: format!("{}:{sender}", me.id),
        ..me
    };
    let mut v = Validated::new(credentials, me);
    v.settings.sms_sender = Some(sender.to_owned()).filter(|s| !s.is_empty());
    Ok(v)
}

/// How many SMS `text` is billed as.
pub(super) fn text_parts(text: &str) -> usize {
    sms_parts(text).parts as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_names_are_short_and_latin() {
        assert!(sender_ok(""));
        assert!(sender_ok("Romashka"));
        assert!(sender_ok("Shop-1.ru"));
        assert!(!sender_ok("Ромашка"));
        assert!(!sender_ok("TwelveLetter"));
    }
}
