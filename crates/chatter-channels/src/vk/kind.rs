//! VK communities as a `Kind`: Callback API requests (§2.2). VK's `confirmation` request is
//! answered with the community's code; every other event must carry our secret and is answered
//! `ok` (`CALLBACK_OK`) once stored.

use super::form;
use super::{parse_callback, CallbackError, CallbackOutcome, CALLBACK_OK};
use crate::kind::{
    FileRules, HookAck, HookCredentials, HookMethod, HookOutcome, HookRefusal, HookRequest, Kind,
    KindFacts, MB,
};
use chatter_domain::SourceKind;

/// VK communities (kind 3).
pub struct VkKind;

const FACTS: KindFacts = KindFacts {
    form: Some(form::FORM),
    connector: Some(super::connector::build),
    revoked_fix_key: Some("sources.revoked_fix_vk"),
    // VK's documented upload limits (dev.vk.com/ru/api/upload): a photo in a message up to
    // 50 MB, a document up to 200 MB (§2 is silent on both).
    files: Some(FileRules::any(200 * MB, 50 * MB)),
    ..KindFacts::new(SourceKind::VkBot, "vk", "VK")
};

#[async_trait::async_trait]
impl Kind for VkKind {
    fn facts(&self) -> &'static KindFacts {
        &FACTS
    }

    /// `creds.account_id` is the community id; `creds.confirmation` the code VK's
    /// `confirmation` request is answered with (`NotReady` until it is stored).
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
        let group_id = creds.account_id.parse().unwrap_or(0);
        match parse_callback(&req.body, &creds.webhook_secret, group_id) {
            Ok(CallbackOutcome::Confirmation { .. }) => match &creds.confirmation {
                Some(code) => Ok(HookOutcome::answer(HookAck::text(code.clone()))),
                None => Err(HookRefusal::NotReady("not set up yet")),
            },
            Ok(CallbackOutcome::Events { events, .. }) => {
                Ok(HookOutcome::stored(events, CALLBACK_OK))
            }
            Err(CallbackError::Unauthenticated) => Err(HookRefusal::Forged("secret mismatch")),
            Err(CallbackError::Malformed(_)) => Err(HookRefusal::Malformed(
                "malformed body: expected a VK Callback API event",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::testing::post;
    use crate::InboundEvent;
    use serde_json::json;

    fn creds(confirmation: Option<&str>) -> HookCredentials {
        HookCredentials {
            webhook_secret: "s3cr3t".into(),
            account_id: "77".into(),
            confirmation: confirmation.map(str::to_owned),
            ..HookCredentials::default()
        }
    }

    fn hook(body: serde_json::Value, c: &HookCredentials) -> Result<HookOutcome, HookRefusal> {
        VkKind.verify_and_parse(&post("", &[], body.to_string().as_bytes()), c)
    }

    fn message(secret: &str) -> serde_json::Value {
        json!({"type": "message_new", "group_id": 77, "event_id": "e1", "secret": secret,
            "object": {"message": {"date": 1, "from_id": 5, "peer_id": 5, "text": "привет",
                "conversation_message_id": 3}}})
    }

    #[test]
    fn a_signed_event_is_stored_then_acknowledged_ok() {
        let out = hook(message("s3cr3t"), &creds(None)).expect("accepted");
        assert!(
            matches!(&out.events[..], [InboundEvent::Message(m)] if m.text.as_deref() == Some("привет"))
        );
        assert_eq!((out.ack.status, out.ack.body.as_str()), (200, "ok"));
    }

    #[test]
    fn forged_secrets_and_other_communities_are_401() {
        assert_eq!(
            hook(message("wrong!"), &creds(None)),
            Err(HookRefusal::Forged("secret mismatch"))
        );
        let other = HookCredentials {
            account_id: "78".into(),
            ..creds(None)
        };
        assert_eq!(
            hook(message("s3cr3t"), &other).map_err(|e| e.status()),
            Err(401)
        );
    }

    #[test]
    fn malformed_bodies_are_400() {
        let r = VkKind.verify_and_parse(&post("", &[], b"[1]"), &creds(None));
        assert_eq!(
            r,
            Err(HookRefusal::Malformed(
                "malformed body: expected a VK Callback API event"
            ))
        );
    }

    #[test]
    fn confirmation_is_answered_with_the_code_once_known() {
        let confirm = json!({"type": "confirmation", "group_id": 77});
        let out = hook(confirm.clone(), &creds(Some("a1b2c3"))).expect("answered");
        assert!(out.events.is_empty());
        assert_eq!((out.ack.status, out.ack.body.as_str()), (200, "a1b2c3"));
        assert_eq!(
            hook(confirm, &creds(None)),
            Err(HookRefusal::NotReady("not set up yet"))
        );
    }
}
