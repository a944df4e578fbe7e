//! Telegram `getUpdates` answer (long polling): the envelope, then every update in it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for status in [200, 409, 429, 502] {
        if let Ok(updates) = chatter_channels::telegram::parse_get_updates(status, data) {
            for u in &updates {
                let _ = chatter_channels::telegram::parse_update(&u.raw);
            }
        }
    }
});
