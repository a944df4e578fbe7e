//! The demo's Telegram personal accounts (kind 2), in the fake Telegram for personal accounts:
//! one connected at start through the same login steps as the Sources page, with a customer
//! who wrote to it, and one more (with a 2FA password) left for the newcomer to connect on the
//! Sources page with the api pair, phone, code and password the demo prints.

use super::Fakes;
use anyhow::bail;
use chatter_channels::FormValues;
use chatter_core::sources::{self, login};
use chatter_core::{Actor, Core};
use chatter_domain::SourceKind;

const API_ID: i64 = 2_345_678;
const API_HASH: &str = "5d41402abc4b2a76b9719d911017c592";
const CONNECTED_PHONE: &str = "+79990000101";
const FREE_PHONE: &str = "+79990000202";
const CODE: &str = "24680";
const PASSWORD: &str = "roga-i-kopyta";
const HINT: &str = "название компании латиницей";

/// What the newcomer types to connect the second account.
pub(super) fn how_to_connect() -> String {
    format!(
        "Telegram personal account to connect (Sources → Add → «Личный Telegram»): api_id {API_ID}, api_hash {API_HASH}, phone {FREE_PHONE}, code {CODE}, password {PASSWORD} (hint: {HINT})"
    )
}

/// Registers the accounts in the fake and connects the first one (a personal account left
/// from an earlier run on the same data directory is turned off: its session was in the
/// previous run's fake).
pub(super) async fn connect_personal(
    core: &Core,
    actor: &Actor,
    fakes: &Fakes,
) -> anyhow::Result<()> {
    let tgp = &fakes.tgp;
    tgp.register_app(API_ID, API_HASH);
    tgp.add_account(CONNECTED_PHONE, "Анна Рогова", Some("anna_roga"), None);
    tgp.add_account(
        FREE_PHONE,
        "Борис Копытов",
        Some("boris_kopyta"),
        Some((PASSWORD, HINT)),
    );
    tgp.set_code(CONNECTED_PHONE, CODE);
    tgp.set_code(FREE_PHONE, CODE);
    for s in sources::list(core, actor).await? {
        if s.kind == SourceKind::TelegramPrivate && s.status != sources::DISABLED {
            sources::set_enabled(core, actor, s.id, false).await?;
        }
    }
    login::restart(core, actor, SourceKind::TelegramPrivate).await?;
    let first: FormValues = [
        ("tgp_api_id", API_ID.to_string()),
        ("tgp_api_hash", API_HASH.to_owned()),
        ("tgp_phone", CONNECTED_PHONE.to_owned()),
    ]
    .into_iter()
    .collect();
    let kind = SourceKind::TelegramPrivate;
    login::step(core, actor, kind, &first).await?;
    let code: FormValues = [("tgp_code", CODE)].into_iter().collect();
    match login::step(core, actor, kind, &code).await? {
        login::LoginOutcome::Connected(_) => {}
        login::LoginOutcome::Next(v) => bail!("the demo account asked for step {}", v.step),
    }
    tgp.customer_writes(
        CONNECTED_PHONE,
        900_001,
        "Ирина",
        "Здравствуйте! Пишу вам в личный Telegram: можно заказать торт на субботу?",
    );
    Ok(())
}
