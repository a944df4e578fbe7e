//! The API source's inbound message body (`POST /hooks/api/{id}`), as `receive` reads it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chatter_core::sources::api::check_body(data);
});
