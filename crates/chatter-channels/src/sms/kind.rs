//! SMS gateway accounts as a `Kind`: delivery reports to `/hooks/sms/{source}/{token}/status`
//! and incoming SMS to `…/{token}/inbound` (§6.3). Gateways sign nothing, so the unguessable
//! path token is the only proof; a callback is answered with the gateway's own acknowledgement
//! (Sipout: `ok`) once stored.

use super::form;
use super::{callback_token_matches, SmsClient, SmsGateway, SmsGatewayConfig};
use crate::kind::{
    HookAck, HookCredentials, HookMethod, HookOutcome, HookRefusal, HookRequest, Kind, KindFacts,
};
use chatter_domain::SourceKind;
use std::sync::LazyLock;

/// SMS gateway accounts (kind 8: Sipout, SMSC.ru, SMS.ru, SMS Aero).
pub struct SmsKind;

/// The callback readers, one per gateway (in `SmsGateway::ALL` order). Reading a callback needs
/// neither the account's key nor its base URL, and the client sends nothing from here; they
/// are built once.
static CALLBACKS: LazyLock<Vec<SmsClient>> = LazyLock::new(|| {
    SmsGateway::ALL
        .into_iter()
        .map(|g| {
            SmsClient::new(
                reqwest::Client::new(),
                SmsGatewayConfig::of(g, "http://127.0.0.1/", "", "", None),
            )
        })
        .collect()
});

/// The callback reader of `gateway`.
fn callbacks(gateway: SmsGateway) -> &'static SmsClient {
    let i = SmsGateway::ALL
        .iter()
        .position(|g| *g == gateway)
        .unwrap_or(0);
    &CALLBACKS[i]
}

const FACTS: KindFacts = KindFacts {
    form: Some(form::FORM),
    connector: Some(super::connector::build),
    revoked_fix_key: Some("sources.revoked_fix_sms"),
    shows_account: true,
    setup_help_key: Some(form::SETUP_HELP_KEY),
    ..KindFacts::new(SourceKind::SipoutSms, "sms", "SMS")
};

#[async_trait::async_trait]
impl Kind for SmsKind {
    fn facts(&self) -> &'static KindFacts {
        &FACTS
    }

    /// `req.tail` is `{token}/status` or `{token}/inbound`; `creds.webhook_secret` the
    /// source's callback token.
    fn verify_and_parse(
        &self,
        req: &HookRequest,
        creds: &HookCredentials,
    ) -> Result<HookOutcome, HookRefusal> {
        let inbound = match req.tail.split_once('/') {
            Some((_, "status")) => false,
            Some((_, "inbound")) => true,
            _ => return Err(HookRefusal::NotFound),
        };
        let token = req.tail.split('/').next().unwrap_or_default();
        if token.is_empty() {
            return Err(HookRefusal::NotFound);
        }
        if req.method != HookMethod::Post {
            return Err(HookRefusal::MethodNotAllowed);
        }
        let secret = &creds.webhook_secret;
        if secret.is_empty() || !callback_token_matches(token, secret) {
            return Err(HookRefusal::Forged("unknown callback token"));
        }
        let gateway = callbacks(SmsGateway::of_account(&creds.account_id));
        if inbound && !gateway.has_inbound_url() {
            return Err(HookRefusal::NotFound);
        }
        let content_type = req.header("content-type");
        let parsed = if inbound {
            gateway.parse_inbound_callback(content_type, &req.body, req.now)
        } else {
            gateway.parse_status_callback(content_type, &req.body, req.now)
        };
        let events = parsed.map_err(|_| {
            HookRefusal::Malformed("malformed body: expected the gateway's callback fields")
        })?;
        Ok(HookOutcome {
            events,
            ack: HookAck::text(gateway.callback_ack().1),
        })
    }

    /// The gateway's two callback URLs (delivery reports, incoming SMS); the path token in
    /// them is the only proof a callback comes from the gateway, so without it there is none.
    fn manual_setup(
        &self,
        base: &str,
        source_id: uuid::Uuid,
        secret: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let Some(token) = secret else {
            return Vec::new();
        };
        let at = format!("{}/{token}", crate::hook_url(base, self.slug(), source_id));
        vec![
            ("sources.sms_status_url", format!("{at}/status")),
            ("sources.sms_inbound_url", format!("{at}/inbound")),
        ]
    }

    fn text_parts(&self, text: &str) -> Option<usize> {
        Some(form::text_parts(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::testing::{creds, post};
    use crate::{DeliveryState, InboundEvent};

    const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

    fn hook(tail: &str, body: &[u8]) -> Result<HookOutcome, HookRefusal> {
        SmsKind.verify_and_parse(&post(tail, &[FORM], body), &creds("tok3n"))
    }

    #[test]
    fn an_incoming_sms_is_a_message_acknowledged_the_gateways_way() {
        let out = hook("tok3n/inbound", b"from=%2B79991234567&text=hello&id=s1").expect("ok");
        let [InboundEvent::Message(m)] = &out.events[..] else {
            panic!("{:?}", out.events);
        };
        assert_eq!(
            (m.chat.external_id.as_str(), m.text.as_deref()),
            ("+79991234567", Some("hello"))
        );
        assert_eq!((out.ack.status, out.ack.body.as_str()), (200, "ok"));
    }

    #[test]
    fn a_delivery_report_is_a_status() {
        let out = hook(
            "tok3n/status",
            br#"{"id":"m1","status":"delivered","time":1700000000}"#,
        )
        .expect("ok");
        assert!(matches!(
            &out.events[..],
            [InboundEvent::Status { external_id, state: DeliveryState::Delivered, at: 1_700_000_000_000, .. }]
                if external_id == "m1"
        ));
    }

    #[test]
    fn a_wrong_token_is_401_before_the_body_is_read() {
        assert_eq!(
            hook("tok3m/status", b"{"),
            Err(HookRefusal::Forged("unknown callback token"))
        );
        let unset = SmsKind.verify_and_parse(&post("x/inbound", &[FORM], b"from=1"), &creds(""));
        assert_eq!(unset, Err(HookRefusal::Forged("unknown callback token")));
    }

    #[test]
    fn malformed_bodies_are_400() {
        for (tail, body) in [
            ("tok3n/inbound", &b"text=no+sender"[..]),
            ("tok3n/status", b""),
        ] {
            assert_eq!(
                hook(tail, body),
                Err(HookRefusal::Malformed(
                    "malformed body: expected the gateway's callback fields"
                )),
                "{tail}"
            );
        }
    }

    #[test]
    fn only_the_two_callback_paths_exist() {
        for tail in ["", "tok3n", "tok3n/other", "tok3n/status/more", "/status"] {
            assert_eq!(hook(tail, b"id=1"), Err(HookRefusal::NotFound), "{tail}");
        }
    }
}
