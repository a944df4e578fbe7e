//! The API source as a `Kind`, for its static facts only. Its hook has its own documented route,
//! `POST /hooks/api/{source_id}` (JSON answers, idempotency keys, a signed timestamp), served
//! by `chatter_core::sources::api::receive`; the generic hook route refuses it.

use crate::kind::{
    FileRules, HookCredentials, HookOutcome, HookRefusal, HookRequest, Kind, KindFacts, MB,
};
use chatter_domain::SourceKind;

/// API sources (kind 6).
pub struct ApiKind;

/// Its customer's system calls us: no connector, so its poller lease (`api-poll:…`) is never taken.
/// A manager's file reaches it in the outgoing webhook as a link the integrator downloads
/// with its API key; the limit is ours.
const FACTS: KindFacts = KindFacts {
    files: Some(FileRules::any(50 * MB, 50 * MB)),
    ..KindFacts::new(SourceKind::Api, "api", "API")
};

impl Kind for ApiKind {
    fn facts(&self) -> &'static KindFacts {
        &FACTS
    }

    /// Not through the generic route: `/hooks/api/{source_id}` is served on its own.
    fn verify_and_parse(
        &self,
        _req: &HookRequest,
        _creds: &HookCredentials,
    ) -> Result<HookOutcome, HookRefusal> {
        Err(HookRefusal::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::testing::{creds, post};

    #[test]
    fn the_generic_route_does_not_take_api_messages() {
        let req = post("more", &[], br#"{"message_id":"1"}"#);
        assert_eq!(
            ApiKind.verify_and_parse(&req, &creds("s3cr3t")),
            Err(HookRefusal::NotFound)
        );
    }
}
