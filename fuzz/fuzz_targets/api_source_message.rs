//! The API source's inbound message body (`POST /hooks/api/{id}`), as `receive` reads it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chatter_core::api_source::check_body(data);
});
