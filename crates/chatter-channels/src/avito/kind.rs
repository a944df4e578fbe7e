//! Avito accounts as a `Kind`: webhook v3 deliveries (§4.3) to `/hooks/avito/{source}/{token}`.
//! Avito signs nothing, so the unguessable path token stands in for a signature; a delivery is
//! answered `{"ok":true}` once stored.

use super::form;
use super::{parse_webhook, HookError};
use crate::common::secret_matches;
use crate::kind::{
    FileRules, HookCredentials, HookMethod, HookOutcome, HookRefusal, HookRequest, Kind, KindFacts,
};
use chatter_domain::SourceKind;

/// Avito accounts (kind 5).
pub struct AvitoKind;

const FACTS: KindFacts = KindFacts {
    form: Some(form::FORM),
    connector: Some(super::connector::build),
    revoked_fix_key: Some("sources.revoked_fix_avito"),
    // §4.2: `uploadImages` takes one picture up to 24 MB; Avito's messenger sends no other
    // file, so the reply box refuses anything else before it is stored.
    files: Some(FileRules {
        max_bytes: super::upload::MAX_IMAGE_BYTES,
        max_image_bytes: super::upload::MAX_IMAGE_BYTES,
        only_images: Some(super::upload::IMAGE_TYPES),
    }),
    ..KindFacts::new(SourceKind::Avito, "avito", "Avito")
};

#[async_trait::async_trait]
impl Kind for AvitoKind {
    fn facts(&self) -> &'static KindFacts {
        &FACTS
    }

    /// `req.tail` is the path token, `creds.webhook_secret` the source's.
    fn verify_and_parse(
        &self,
        req: &HookRequest,
        creds: &HookCredentials,
    ) -> Result<HookOutcome, HookRefusal> {
        let token = req.tail.as_str();
        if token.is_empty() || token.contains('/') {
            return Err(HookRefusal::NotFound);
        }
        if req.method != HookMethod::Post {
            return Err(HookRefusal::MethodNotAllowed);
        }
        let secret = &creds.webhook_secret;
        if secret.is_empty() || !secret_matches(Some(token), secret) {
            return Err(HookRefusal::Forged("unknown hook token"));
        }
        match parse_webhook(&req.body) {
            Ok(events) => Ok(HookOutcome::stored(events, "{\"ok\":true}")),
            Err(HookError::Malformed(_)) => Err(HookRefusal::Malformed(
                "malformed body: expected an Avito webhook v3 payload",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::testing::{creds, post};
    use crate::InboundEvent;

    const HOOK: &[u8] = br#"{"id":"4a5c2f","version":"v3.0.0","timestamp":1767225600,
        "payload":{"type":"message","value":{"id":"m1","chat_id":"u2i-abc123","user_id":1,
        "author_id":2,"created":1767225600,"type":"text","chat_type":"u2i",
        "content":{"text":"Is it available?"}}}}"#;

    fn hook(tail: &str, body: &[u8]) -> Result<HookOutcome, HookRefusal> {
        AvitoKind.verify_and_parse(&post(tail, &[], body), &creds("tok3n"))
    }

    #[test]
    fn a_delivery_with_the_path_token_is_stored_then_acknowledged() {
        let out = hook("tok3n", HOOK).expect("accepted");
        assert!(
            matches!(&out.events[..], [InboundEvent::Message(_)]),
            "{:?}",
            out.events
        );
        assert_eq!(
            (out.ack.status, out.ack.body.as_str()),
            (200, "{\"ok\":true}")
        );
    }

    #[test]
    fn a_wrong_token_is_401_before_the_body_is_read() {
        assert_eq!(
            hook("tok3m", b"{"),
            Err(HookRefusal::Forged("unknown hook token"))
        );
        let unset = AvitoKind.verify_and_parse(&post("x", &[], HOOK), &creds(""));
        assert_eq!(unset, Err(HookRefusal::Forged("unknown hook token")));
    }

    #[test]
    fn malformed_bodies_are_400() {
        assert_eq!(
            hook("tok3n", b"{}"),
            Err(HookRefusal::Malformed(
                "malformed body: expected an Avito webhook v3 payload"
            ))
        );
    }

    #[test]
    fn only_one_path_segment_is_a_token() {
        assert_eq!(hook("", HOOK), Err(HookRefusal::NotFound));
        assert_eq!(hook("tok3n/more", HOOK), Err(HookRefusal::NotFound));
    }
}
