//! Max `GET /updates` answer (long polling), and the error bodies of failed polls.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for status in [200, 405, 429, 503] {
        let _ = chatter_channels::max::parse_updates(status, Some(1), data, Some(7));
    }
});
