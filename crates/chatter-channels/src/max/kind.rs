//! Max bots as a `Kind`: one Update per webhook POST (§3.3), proven by `X-Max-Bot-Api-Secret`,
//! answered `ok` once stored.

use super::form;
use super::{parse_webhook, HookError, SECRET_HEADER};
use crate::kind::{
    FileRules, HookCredentials, HookMethod, HookOutcome, HookRefusal, HookRequest, Kind, KindFacts,
    MB,
};
use crate::Identity;
use chatter_domain::SourceKind;

/// Max bots (kind 4).
pub struct MaxKind;

const FACTS: KindFacts = KindFacts {
    form: Some(form::FORM),
    connector: Some(super::connector::build),
    revoked_fix_key: Some("sources.revoked_fix_max"),
    // Max's documented limits (dev.max.ru, "attachment types"; §3 is silent): an image up to
    // 50 MB, a file up to 4 GB. A file is held in memory while it is sent, so Chatter keeps
    // files to 200 MB, the largest any other kind takes.
    files: Some(FileRules::any(200 * MB, 50 * MB)),
    ..KindFacts::new(SourceKind::MaxBot, "max", "Max")
};

#[async_trait::async_trait]
impl Kind for MaxKind {
    fn facts(&self) -> &'static KindFacts {
        &FACTS
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
        match parse_webhook(&req.body, req.header(SECRET_HEADER), &creds.webhook_secret) {
            Ok(events) => Ok(HookOutcome::stored(events, "ok")),
            Err(HookError::Forged) => Err(HookRefusal::Forged("secret mismatch")),
            Err(HookError::Malformed(_)) => Err(HookRefusal::Malformed(
                "malformed body: expected one Max Update object",
            )),
        }
    }

    fn default_name(&self, identity: &Identity) -> Option<String> {
        form::default_name(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::testing::{creds, post};
    use crate::InboundEvent;

    const UPDATE: &[u8] = br#"{"update_type":"message_created","timestamp":1700000000000,
        "message":{"sender":{"user_id":5,"name":"Ann"},"recipient":{"chat_id":9,"chat_type":"dialog"},
        "timestamp":1700000000000,"body":{"mid":"m1","seq":1,"text":"hi"}}}"#;

    fn hook(secret: Option<&str>, body: &[u8]) -> Result<HookOutcome, HookRefusal> {
        let headers: Vec<(&str, &str)> = secret.map(|s| (SECRET_HEADER, s)).into_iter().collect();
        MaxKind.verify_and_parse(&post("", &headers, body), &creds("s3cr3t"))
    }

    #[test]
    fn a_signed_update_is_stored_then_acknowledged_ok() {
        let out = hook(Some("s3cr3t"), UPDATE).expect("accepted");
        assert!(
            matches!(&out.events[..], [InboundEvent::Message(_)]),
            "{:?}",
            out.events
        );
        assert_eq!((out.ack.status, out.ack.body.as_str()), (200, "ok"));
    }

    #[test]
    fn forged_secrets_are_401_before_the_body_is_read() {
        for secret in [None, Some("wrong!")] {
            assert_eq!(
                hook(secret, b"{"),
                Err(HookRefusal::Forged("secret mismatch"))
            );
        }
    }

    #[test]
    fn malformed_bodies_are_400() {
        for body in [&b"{"[..], br#"{"message":{}}"#] {
            assert_eq!(
                hook(Some("s3cr3t"), body),
                Err(HookRefusal::Malformed(
                    "malformed body: expected one Max Update object"
                ))
            );
        }
    }
}
