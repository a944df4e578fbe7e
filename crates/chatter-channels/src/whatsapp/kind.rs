//! WhatsApp numbers as a `Kind`: Meta's GET subscription handshake (§5.4), answered with the
//! challenge when the verify token is the source's, then notifications (§5.5) signed with the
//! app secret (`X-Hub-Signature-256`, checked before parsing), answered `ok` once stored.

use super::form;
use super::{parse_notification_routed, verify_signature, verify_subscription};
use crate::kind::{
    FileRules, HookAck, HookCredentials, HookMethod, HookOutcome, HookRefusal, HookRequest, Kind,
    KindFacts, MB,
};
use chatter_domain::SourceKind;

/// The header Meta signs notifications in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// WhatsApp Business numbers (kind 7).
pub struct WhatsAppKind;

const FACTS: KindFacts = KindFacts {
    form: Some(form::FORM),
    connector: Some(super::connector::build),
    revoked_fix_key: Some("sources.revoked_fix_whatsapp"),
    reply_window: Some(std::time::Duration::from_millis(
        super::WINDOW_MS.unsigned_abs(),
    )),
    sends_media_by_link: true,
    // Meta's media limits: pictures up to 5 MB, documents up to 100 MB.
    files: Some(FileRules::any(100 * MB, 5 * MB)),
    offers_templates: true,
    shows_account: true,
    setup_help_key: Some(form::SETUP_HELP_KEY),
    ..KindFacts::new(SourceKind::Whatsapp, "whatsapp", "WhatsApp")
};

#[async_trait::async_trait]
impl Kind for WhatsAppKind {
    fn facts(&self) -> &'static KindFacts {
        &FACTS
    }

    /// `creds.webhook_secret` is the verify token, `creds.signing_secret` the app secret and
    /// `creds.account_id` the phone number id: one Meta app may serve several numbers, so
    /// only what is addressed to this one (or to none) is kept.
    fn verify_and_parse(
        &self,
        req: &HookRequest,
        creds: &HookCredentials,
    ) -> Result<HookOutcome, HookRefusal> {
        if !req.tail.is_empty() {
            return Err(HookRefusal::NotFound);
        }
        if req.method == HookMethod::Get {
            let q = |name| req.query_param(name);
            return match verify_subscription(
                q("hub.mode").as_deref(),
                q("hub.verify_token").as_deref(),
                q("hub.challenge").as_deref(),
                &creds.webhook_secret,
            ) {
                Ok(challenge) => Ok(HookOutcome::answer(HookAck {
                    status: 200,
                    content_type: "text/plain",
                    body: challenge,
                })),
                Err(_) => Err(HookRefusal::Forbidden("verify token mismatch")),
            };
        }
        if verify_signature(
            &creds.signing_secret,
            &req.body,
            req.header(SIGNATURE_HEADER),
        )
        .is_err()
        {
            return Err(HookRefusal::Forged("bad X-Hub-Signature-256"));
        }
        let routed = parse_notification_routed(&req.body).map_err(|_| {
            HookRefusal::Malformed(
                "malformed body: expected a whatsapp_business_account notification",
            )
        })?;
        let number = &creds.account_id;
        let events = routed
            .into_iter()
            .filter(|r| r.phone_number_id.is_empty() || &r.phone_number_id == number)
            .map(|r| r.event)
            .collect();
        Ok(HookOutcome::stored(events, "ok"))
    }

    /// Meta's callback URL and the verify token of its subscription handshake.
    fn manual_setup(
        &self,
        base: &str,
        source_id: uuid::Uuid,
        secret: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let mut v = vec![(
            "sources.wa_callback_url",
            crate::hook_url(base, self.slug(), source_id),
        )];
        if let Some(t) = secret {
            v.push(("sources.wa_verify_token", t.to_string()));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::testing::{get, post};
    use crate::InboundEvent;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    fn creds() -> HookCredentials {
        HookCredentials {
            webhook_secret: "verify-me".into(),
            signing_secret: "app-s3cr3t".into(),
            account_id: "111".into(),
            confirmation: None,
        }
    }

    fn sign(body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"app-s3cr3t").expect("key");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn notification(number: &str, text: &str) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages",
            "value":{{"messaging_product":"whatsapp","metadata":{{"phone_number_id":"{number}"}},
            "contacts":[{{"wa_id":"79990000001","profile":{{"name":"Ann"}}}}],
            "messages":[{{"from":"79990000001","id":"wamid.{text}","timestamp":"1700000000",
            "type":"text","text":{{"body":"{text}"}}}}]}}}}]}}]}}"#
        )
    }

    fn hook(body: &[u8], signature: Option<&str>) -> Result<HookOutcome, HookRefusal> {
        let headers: Vec<(&str, &str)> = signature
            .map(|s| ("X-Hub-Signature-256", s))
            .into_iter()
            .collect();
        WhatsAppKind.verify_and_parse(&post("", &headers, body), &creds())
    }

    #[test]
    fn a_signed_notification_keeps_only_this_numbers_events() {
        let ours = notification("111", "hi");
        let out = hook(ours.as_bytes(), Some(&sign(ours.as_bytes()))).expect("accepted");
        assert!(
            matches!(&out.events[..], [InboundEvent::Message(m)] if m.text.as_deref() == Some("hi"))
        );
        assert_eq!((out.ack.status, out.ack.body.as_str()), (200, "ok"));
        let theirs = notification("222", "hi");
        let out = hook(theirs.as_bytes(), Some(&sign(theirs.as_bytes()))).expect("accepted");
        assert!(out.events.is_empty(), "{:?}", out.events);
    }

    #[test]
    fn a_forged_signature_is_401_before_the_body_is_read() {
        let body = notification("111", "hi");
        for sig in [None, Some("sha256=00"), Some(sign(b"other").as_str())] {
            assert_eq!(
                hook(body.as_bytes(), sig),
                Err(HookRefusal::Forged("bad X-Hub-Signature-256"))
            );
        }
    }

    #[test]
    fn malformed_bodies_are_400() {
        let body = br#"{"object":"page","entry":[]}"#;
        assert_eq!(
            hook(body, Some(&sign(body))),
            Err(HookRefusal::Malformed(
                "malformed body: expected a whatsapp_business_account notification"
            ))
        );
    }

    #[test]
    fn the_handshake_echoes_the_challenge_for_the_right_token_only() {
        let ok = get("hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=12345");
        let out = WhatsAppKind
            .verify_and_parse(&ok, &creds())
            .expect("verified");
        assert!(out.events.is_empty());
        assert_eq!(
            out.ack,
            HookAck {
                status: 200,
                content_type: "text/plain",
                body: "12345".into()
            }
        );
        for q in [
            "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
            "hub.mode=unsubscribe&hub.verify_token=verify-me&hub.challenge=1",
            "hub.mode=subscribe&hub.verify_token=verify-me",
            "",
        ] {
            let r = WhatsAppKind.verify_and_parse(&get(q), &creds());
            assert_eq!(
                r,
                Err(HookRefusal::Forbidden("verify token mismatch")),
                "{q}"
            );
        }
    }
}
