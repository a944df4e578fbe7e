//! The SMS gateway account's add-source form: the gateway (Sipout, SMSC.ru, SMS.ru, SMS Aero),
//! its credentials (Sipout and SMS.ru: one key; SMSC.ru: login and password; SMS Aero: e-mail
//! and API key) and an optional sender name, checked by reading the account's balance.

use super::{new_callback_token, sms_parts, SmsClient, SmsGateway, SmsGatewayConfig};
use crate::form::{token_like, FormField, FormRefusal, FormValues, Validated};
use crate::kind::KindForm;
use crate::KindEnv;
use crate::{Channel, ChannelError, Credentials, Identity};

/// The gateway, its login (where it has one), the key or password, then the sender name.
pub(super) const FIELDS: &[FormField] = &[
    FormField {
        required: false,
        max_len: 16,
        hint_key: Some("sources.sms_gateway_hint"),
        choices: &[
            ("sipout", "Sipout"),
            ("smsc", "SMSC.ru"),
            ("smsru", "SMS.ru"),
            ("smsaero", "SMS Aero"),
        ],
        ..FormField::new("sms_gateway", "sources.sms_gateway")
    },
    FormField {
        required: false,
        max_len: 254,
        hint_key: Some("sources.sms_login_hint"),
        ..FormField::new("sms_login", "sources.sms_login")
    },
    FormField {
        secret: true,
        masked: true,
        hint_key: Some("sources.sms_secret_hint"),
        ..FormField::new("sms_api_key", "sources.sms_secret")
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
pub(super) const HELP_KEY: &str = "sources.sms_gateways_help";

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

/// An e-mail address's shape: something@domain.tld, no spaces.
fn email_like(s: &str) -> bool {
    let Some((user, domain)) = s.split_once('@') else {
        return false;
    };
    !user.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
        && !domain.contains('@')
}

/// The error keys of a gateway's refusals: (bad key shape, rejected).
fn keys(gateway: SmsGateway) -> (&'static str, &'static str) {
    match gateway {
        SmsGateway::Sipout => ("err.sms_key_format", "err.sms_rejected"),
        SmsGateway::Smsc => ("err.smsc_password_format", "err.smsc_rejected"),
        SmsGateway::SmsRu => ("err.smsru_key_format", "err.smsru_rejected"),
        SmsGateway::SmsAero => ("err.smsaero_key_format", "err.smsaero_rejected"),
    }
}

/// Checks the fields' shapes for the chosen gateway, then asks it for the account's balance.
pub(super) async fn validate(env: &KindEnv, form: &FormValues) -> Result<Validated, FormRefusal> {
    let slug = form.trimmed("sms_gateway");
    let Some(gateway) = (if slug.is_empty() {
        Some(SmsGateway::Sipout)
    } else {
        SmsGateway::from_slug(slug)
    }) else {
        return Err(FormRefusal::field("sms_gateway", "err.sms_gateway_unknown"));
    };
    let (login, key, sender) = (
        form.trimmed("sms_login"),
        form.trimmed("sms_api_key"),
        form.trimmed("sms_sender"),
    );
    let (format_key, rejected_key) = keys(gateway);
    let mut errs = Vec::new();
    let key_ok = match gateway {
        SmsGateway::Sipout | SmsGateway::SmsRu => token_like(key, 8),
        SmsGateway::Smsc => !key.is_empty() && key.len() <= 128,
        SmsGateway::SmsAero => token_like(key, 16) && key.len() <= 64,
    };
    if !key_ok {
        errs.push(("sms_api_key", format_key));
    }
    match gateway {
        SmsGateway::Smsc if !token_like(login, 1) || login.len() > 64 => {
            errs.push(("sms_login", "err.smsc_login_format"));
        }
        SmsGateway::SmsAero if !email_like(login) => {
            errs.push(("sms_login", "err.smsaero_email_format"));
        }
        _ => {}
    }
    if !sender_ok(sender) {
        errs.push(("sms_sender", "err.sms_sender_format"));
    }
    let price = part_price(form.trimmed("sms_part_price"));
    if price.is_err() {
        errs.push(("sms_part_price", "err.sms_part_price"));
    }
    FormRefusal::check(errs)?;
    let login = match gateway {
        SmsGateway::Smsc | SmsGateway::SmsAero => login,
        SmsGateway::Sipout | SmsGateway::SmsRu => "",
    };
    let client = SmsClient::new(
        env.http.clone(),
        SmsGatewayConfig::of(
            gateway,
            gateway.base_url(&env.config.sms),
            login,
            key,
            Some(sender),
        ),
    );
    let me = match client.identify().await {
        Ok(me) => me,
        Err(ChannelError::Unauthorized(_)) | Err(ChannelError::Permanent(_)) => {
            return Err(FormRefusal::field("sms_api_key", rejected_key))
        }
        Err(e) => return Err(FormRefusal::Unreachable(e)),
    };
    let credentials = Credentials {
        token: key.to_owned(),
        webhook_secret: Some(new_callback_token()),
        client_id: Some(login.to_owned()).filter(|l| !l.is_empty()),
        ..Credentials::default()
    };
    // One account may send under several sender names: each is its own source. The id names
    // the gateway (except Sipout's, kept as it was), which is how callbacks are read.
    let id = match gateway {
        SmsGateway::Sipout => format!("{}:{sender}", me.id),
        SmsGateway::SmsRu => format!("smsru@{}:{sender}", key_fingerprint(key)),
        SmsGateway::Smsc | SmsGateway::SmsAero => {
            format!("{}@{}:{sender}", gateway.slug(), login.to_lowercase())
        }
    };
    let name = match gateway {
        SmsGateway::Sipout => me.name,
        SmsGateway::SmsRu => gateway.title().to_owned(),
        SmsGateway::Smsc | SmsGateway::SmsAero => format!("{} {login}", gateway.title()),
    };
    let me = Identity { id, name, ..me };
    let mut v = Validated::new(credentials, me);
    v.settings.sms_sender = Some(sender.to_owned()).filter(|s| !s.is_empty());
    v.settings.sms_part_price_kopecks = price.unwrap_or_default();
    Ok(v)
}

/// SMS.ru accounts are known by their key alone: a short, stable, non-reversible name for it
/// (FNV-1a), so two keys are two sources and the key itself is never shown.
fn key_fingerprint(key: &str) -> String {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{:08x}", h >> 32)
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

    #[test]
    fn emails_have_a_user_and_a_domain() {
        assert!(email_like("shop@example.ru"));
        assert!(!email_like("shop@localhost"));
        assert!(!email_like("@example.ru"));
        assert!(!email_like("shop example@ex.ru"));
    }

    #[test]
    fn the_gateway_is_in_the_account_id() {
        assert_eq!(
            SmsGateway::of_account("7701234567:Romashka"),
            SmsGateway::Sipout
        );
        assert_eq!(SmsGateway::of_account("smsc@shop:"), SmsGateway::Smsc);
        assert_eq!(
            SmsGateway::of_account("smsru@0a1b2c3d:X"),
            SmsGateway::SmsRu
        );
        assert_eq!(
            SmsGateway::of_account("smsaero@a@b.ru:X"),
            SmsGateway::SmsAero
        );
    }
}
