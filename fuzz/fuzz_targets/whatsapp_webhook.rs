//! WhatsApp notification body (`POST /hooks/whatsapp/{id}`): the signature check over the raw
//! bytes, then the notification parser (as if signed).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use chatter_channels::whatsapp::{parse_notification_routed, verify_signature};
    let _ = verify_signature("app-secret", data, Some("sha256=00ff"));
    let _ = parse_notification_routed(data);
});
