//! Avito chat list answer (the polling fallback's first call), and its error bodies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for status in [200, 402, 429, 500] {
        let _ = chatter_channels::avito::parse_chats(status, None, data, 94235311);
    }
});
