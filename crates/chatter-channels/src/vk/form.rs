//! The VK community's add-source form: a community token and the community's id, checked
//! with `groups.getById`.

use super::VkClient;
use crate::common::new_hex_secret;
use crate::form::{token_like, FormField, FormRefusal, FormValues, Validated};
use crate::kind::KindForm;
use crate::KindEnv;
use crate::{ChannelError, Credentials};

/// The token, then the community.
pub(super) const FIELDS: &[FormField] = &[
    FormField {
        secret: true,
        placeholder: Some("vk1.a.…"),
        ..FormField::new("vk_token", "sources.vk_token")
    },
    FormField {
        placeholder: Some("club214167102"),
        ..FormField::new("vk_group_id", "sources.vk_group_id")
    },
];

/// Where wrong tokens are reported.
pub(super) const MAIN_FIELD: &str = "vk_token";

/// The help above the form.
pub(super) const HELP_KEY: &str = "sources.vk_help";

/// The form as its kind states it.
pub(super) const FORM: KindForm = KindForm {
    fields: FIELDS,
    help_key: HELP_KEY,
    main_field: MAIN_FIELD,
    validate: |env, form| Box::pin(validate(env, form)),
};

/// Reads a VK community id as people paste it: `214167102`, `club214167102`,
/// `public214167102`, `-214167102` or a `vk.com/club214167102` link.
pub fn parse_vk_group_id(raw: &str) -> Option<i64> {
    let last = raw.trim().trim_end_matches('/').rsplit('/').next()?;
    let digits = last
        .strip_prefix("club")
        .or_else(|| last.strip_prefix("public"))
        .or_else(|| last.strip_prefix('-'))
        .unwrap_or(last);
    digits.parse::<i64>().ok().filter(|id| *id > 0)
}

/// Checks the token's shape and the community id, then asks VK whose community it is.
pub(super) async fn validate(env: &KindEnv, form: &FormValues) -> Result<Validated, FormRefusal> {
    let token = form.trimmed("vk_token");
    let mut errs = Vec::new();
    if !token_like(token, 20) {
        errs.push(("vk_token", "err.vk_token_format"));
    }
    let group = parse_vk_group_id(form.get("vk_group_id"));
    if group.is_none() {
        errs.push(("vk_group_id", "err.vk_group_id"));
    }
    FormRefusal::check(errs)?;
    let group = group.unwrap_or_default();
    let client = VkClient::new(env.http.clone(), &env.config.vk.api_base, token, group);
    let me = match client.get_group().await {
        Ok(me) => me,
        Err(ChannelError::Unauthorized(m)) if m.contains("belongs to community") => {
            return Err(FormRefusal::field("vk_group_id", "err.vk_group_mismatch"))
        }
        Err(ChannelError::Unauthorized(_)) | Err(ChannelError::Permanent(_)) => {
            return Err(FormRefusal::field("vk_token", "err.vk_token_rejected"))
        }
        Err(e) => return Err(FormRefusal::Unreachable(e)),
    };
    let credentials = Credentials {
        token: token.to_owned(),
        webhook_secret: Some(new_hex_secret(40)),
        ..Credentials::default()
    };
    Ok(Validated::new(credentials, me))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn community_ids_are_read_as_people_paste_them() {
        for raw in [
            "214167102",
            "club214167102",
            "public214167102",
            "-214167102",
            "https://vk.com/club214167102/",
            " vk.com/public214167102 ",
        ] {
            assert_eq!(parse_vk_group_id(raw), Some(214167102), "{raw}");
        }
        for raw in ["", "x", "club", "0", "vk.com/durov"] {
            assert_eq!(parse_vk_group_id(raw), None, "{raw}");
        }
    }
}
