//! amoCRM Chats API (amojo) hook body (`POST /hooks/amojo/{scope_id}`): the `X-Signature`
//! check over the raw bytes, then the hook parser (as if signed).
#![no_main]
use chatter_crm::amocrm::chats::{parse_webhook, verify_webhook};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = verify_webhook("channel-secret", data, "0123456789abcdef0123456789abcdef01234567");
    let _ = parse_webhook(data);
});
