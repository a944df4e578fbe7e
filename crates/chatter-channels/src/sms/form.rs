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
    FormField {
        required: false,
        max_len: 8,
        placeholder: Some("3.50"),
        ..FormField::new("sms_part_price", "sources.sms_part_price")
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
    let price = part_price(form.trimmed("sms_part_price"));
    if price.is_err() {
        errs.push(("sms_part_price", "err.sms_part_price"));
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
    v.settings.sms_part_price_kopecks = price.unwrap_or_default();
    Ok(v)
}

/// The most one part may be said to cost: 1000 roubles, in kopecks.
pub const PART_PRICE_MAX_KOPECKS: u32 = 100_000;

/// The refusal of a price that does not read.
const BAD_PRICE: &str = "err.sms_part_price";

/// A price of one part as typed, in roubles with up to two decimals after a point or a comma
/// (`3,50`), as kopecks; empty: none. Refused (with the error's key): anything else, or over
/// 1000 roubles.
pub fn part_price(typed: &str) -> Result<Option<u32>, &'static str> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Ok(None);
    }
    let (whole, frac) = typed.split_once(['.', ',']).unwrap_or((typed, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 4 || frac.len() > 2 || !digits(whole) || !digits(frac) {
        return Err(BAD_PRICE);
    }
    let whole: u32 = whole.parse().map_err(|_| BAD_PRICE)?;
    let frac: u32 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u32>().map_err(|_| BAD_PRICE)? * 10,
        _ => frac.parse().map_err(|_| BAD_PRICE)?,
    };
    let k = whole * 100 + frac;
    match k <= PART_PRICE_MAX_KOPECKS {
        true => Ok(Some(k)),
        false => Err(BAD_PRICE),
    }
}

/// How many SMS `text` is billed as.
pub(super) fn text_parts(text: &str) -> usize {
    sms_parts(text).parts as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_price_is_roubles_with_kopecks() {
        assert_eq!(part_price(""), Ok(None));
        assert_eq!(part_price("3,50"), Ok(Some(350)));
        assert_eq!(part_price("3.5"), Ok(Some(350)));
        assert_eq!(part_price("4"), Ok(Some(400)));
        assert_eq!(part_price("1000"), Ok(Some(100_000)));
        for bad in ["1000.01", "-1", "3,505", "три", ".5", "1e3", "3,5,0"] {
            assert!(part_price(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sender_names_are_short_and_latin() {
        assert!(sender_ok(""));
        assert!(sender_ok("Romashka"));
        assert!(sender_ok("Shop-1.ru"));
        assert!(!sender_ok("Ромашка"));
        assert!(!sender_ok("TwelveLetter"));
    }
}
