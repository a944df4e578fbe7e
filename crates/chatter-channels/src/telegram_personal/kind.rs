//! Telegram personal accounts as a `Kind`: connected by a login in steps (`login::FLOW`), run by
//! core's poller (no webhooks: a hook for this kind is 404), answering through the account.

use super::{connector, login};
use crate::kind::{
    FileRules, HookCredentials, HookOutcome, HookRefusal, HookRequest, Kind, KindFacts, MB,
};
use crate::Identity;
use chatter_domain::SourceKind;

/// Telegram personal accounts (kind 2).
pub struct TelegramPersonalKind;

const FACTS: KindFacts = KindFacts {
    login: Some(login::FLOW),
    connector: Some(connector::build),
    revoked_fix_key: Some("sources.revoked_fix_tgp"),
    // What Chatter holds in memory per file, as for bots: a photo up to 10 MB, a document up
    // to 50 MB (an account could send up to 2 GB).
    files: Some(FileRules::any(50 * MB, 10 * MB)),
    shows_account: true,
    ..KindFacts::new(SourceKind::TelegramPrivate, "telegram-personal", "Telegram")
};

#[async_trait::async_trait]
impl Kind for TelegramPersonalKind {
    fn facts(&self) -> &'static KindFacts {
        &FACTS
    }

    fn profile_url(&self, username: &str) -> Option<String> {
        Some(format!("https://t.me/{username}"))
    }

    /// Updates are pulled by the account's runner; nothing is delivered to us.
    fn verify_and_parse(
        &self,
        _req: &HookRequest,
        _creds: &HookCredentials,
    ) -> Result<HookOutcome, HookRefusal> {
        Err(HookRefusal::NotFound)
    }

    /// The person's name, else `@username`.
    fn default_name(&self, identity: &Identity) -> Option<String> {
        match (&identity.name, &identity.username) {
            (n, _) if !n.trim().is_empty() => None,
            (_, Some(u)) => Some(format!("@{u}")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::testing::post;

    #[test]
    fn hooks_are_not_taken() {
        let r = TelegramPersonalKind
            .verify_and_parse(&post("", &[], b"{}"), &HookCredentials::default());
        assert_eq!(r, Err(HookRefusal::NotFound));
        assert_eq!(
            TelegramPersonalKind.lease_name(uuid::Uuid::nil()),
            format!("telegram-personal-poll:{}", uuid::Uuid::nil())
        );
    }
}
