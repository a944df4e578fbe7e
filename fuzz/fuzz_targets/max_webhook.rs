//! Max webhook body (`POST /hooks/max/{id}`) with the right `X-Max-Bot-Api-Secret`.
#![no_main]
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz_secret_0123456789";

fuzz_target!(|data: &[u8]| {
    let _ = chatter_channels::max::parse_webhook(data, Some(SECRET), SECRET);
});
