//! SMS gateway (Sipout) status callback (`POST /hooks/sms/{id}/{token}/status`), as a form, as
//! JSON and without a content type.
#![no_main]
use chatter_channels::sms::{SmsClient, SmsGatewayConfig};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn client() -> &'static SmsClient {
    static CLIENT: OnceLock<SmsClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        SmsClient::new(
            reqwest::Client::new(),
            SmsGatewayConfig::sipout("http://127.0.0.1:9", "key", None),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    for ct in [
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=utf-8"),
        None,
    ] {
        let _ = client().parse_status_callback(ct, data, 1767225600000);
    }
});
