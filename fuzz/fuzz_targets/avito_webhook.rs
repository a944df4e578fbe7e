//! Avito webhook v3 body (`POST /hooks/avito/{id}/{token}`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chatter_channels::avito::parse_webhook(data);
});
