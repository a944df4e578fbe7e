//! Telegram bots as a `Kind`: one Update per webhook POST, proven by the secret token Telegram
//! echoes in `X-Telegram-Bot-Api-Secret-Token` (Bot API §1.4), answered `ok` once stored.

use super::form;
use super::parse_update;
use crate::common::secret_matches;
use crate::kind::{
    FileRules, HookCredentials, HookMethod, HookOutcome, HookRefusal, HookRequest, Kind, KindFacts,
    MB,
};
use crate::Identity;
use chatter_domain::SourceKind;

/// The header Telegram sends our secret token in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Telegram bots (kind 1).
pub struct TelegramKind;

const FACTS: KindFacts = KindFacts {
    form: Some(form::FORM),
    connector: Some(super::connector::build),
    // Bot API §1.7: uploads up to 10 MB as a photo, 50 MB as a document.
    files: Some(FileRules::any(50 * MB, 10 * MB)),
    ..KindFacts::new(SourceKind::TelegramBot, "telegram", "Telegram")
};

#[async_trait::async_trait]
impl Kind for TelegramKind {
    fn facts(&self) -> &'static KindFacts {
        &FACTS
    }

    fn profile_url(&self, username: &str) -> Option<String> {
        let ok = !username.is_empty()
            && username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        ok.then(|| format!("https://t.me/{username}"))
    }

    /// Telegram's own `telegram.webhook_base` overrides the general one.
    fn webhook_base<'a>(&self, cfg: &'a crate::KindConfig) -> Option<&'a str> {
        cfg.telegram
            .webhook_base
            .as_deref()
            .or(cfg.general_webhook_base())
    }

    fn verify_and_parse(
        &self,
        req: &HookRequest,
        creds: &HookCredentials,
    ) -> Result<HookOutcome, HookRefusal> {
        if !req.tail.is_empty() {
            return Err(HookRefusal::NotFound);
        }
        if req.method != HookMethod::Post {
            return Err(HookRefusal::MethodNotAllowed);
        }
        let secret = &creds.webhook_secret;
        if secret.is_empty() || !secret_matches(req.header(SECRET_HEADER), secret) {
            return Err(HookRefusal::Forged("secret token mismatch"));
        }
        let raw: serde_json::Value = serde_json::from_slice(&req.body).map_err(|_| {
            HookRefusal::Malformed("malformed JSON: expected one Telegram Update object")
        })?;
        if raw.get("update_id").and_then(|v| v.as_i64()).is_none() {
            return Err(HookRefusal::Malformed(
                "not a Telegram Update: update_id missing",
            ));
        }
        Ok(HookOutcome::stored(vec![parse_update(&raw)], "ok"))
    }

    fn default_name(&self, identity: &Identity) -> Option<String> {
        form::default_name(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::testing::{creds, get, post};
    use crate::InboundEvent;

    const UPDATE: &[u8] = br#"{"update_id":7,"message":{"message_id":1,"date":1700000000,
        "chat":{"id":42,"type":"private"},"from":{"id":42,"first_name":"Ann"},"text":"hi"}}"#;

    fn hook(secret: Option<&str>, body: &[u8]) -> Result<HookOutcome, HookRefusal> {
        let headers: Vec<(&str, &str)> = secret
            .map(|s| ("X-Telegram-Bot-Api-Secret-Token", s))
            .into_iter()
            .collect();
        TelegramKind.verify_and_parse(&post("", &headers, body), &creds("s3cr3t"))
    }

    #[test]
    fn a_username_links_to_its_chat_and_nothing_else_does() {
        let k = TelegramKind;
        assert_eq!(
            k.profile_url("olga_s").as_deref(),
            Some("https://t.me/olga_s")
        );
        assert_eq!(k.profile_url(""), None);
        assert_eq!(k.profile_url("a/../b"), None);
        assert_eq!(crate::vk::VkKind.profile_url("olga_s"), None);
    }

    #[test]
    fn a_signed_update_is_one_event_acknowledged_ok() {
        let out = hook(Some("s3cr3t"), UPDATE).expect("accepted");
        assert_eq!(out.events.len(), 1);
        assert!(
            matches!(&out.events[0], InboundEvent::Message(m) if m.text.as_deref() == Some("hi"))
        );
        assert_eq!((out.ack.status, out.ack.body.as_str()), (200, "ok"));
    }

    #[test]
    fn forged_and_unset_secrets_are_refused_before_parsing() {
        for secret in [None, Some("wrong!"), Some("")] {
            assert_eq!(
                hook(secret, b"not json"),
                Err(HookRefusal::Forged("secret token mismatch"))
            );
        }
        let unset =
            TelegramKind.verify_and_parse(&post("", &[(SECRET_HEADER, "")], UPDATE), &creds(""));
        assert_eq!(unset.map_err(|e| e.status()), Err(401));
    }

    #[test]
    fn malformed_bodies_are_400_with_todays_words() {
        assert_eq!(
            hook(Some("s3cr3t"), b"{not json"),
            Err(HookRefusal::Malformed(
                "malformed JSON: expected one Telegram Update object"
            ))
        );
        assert_eq!(
            hook(Some("s3cr3t"), br#"{"message":{}}"#),
            Err(HookRefusal::Malformed(
                "not a Telegram Update: update_id missing"
            ))
        );
    }

    #[test]
    fn other_paths_and_methods_are_not_hooks() {
        let c = creds("s3cr3t");
        let tail = post("x", &[(SECRET_HEADER, "s3cr3t")], UPDATE);
        assert_eq!(
            TelegramKind.verify_and_parse(&tail, &c),
            Err(HookRefusal::NotFound)
        );
        assert_eq!(
            TelegramKind.verify_and_parse(&get(""), &c),
            Err(HookRefusal::MethodNotAllowed)
        );
    }
}
