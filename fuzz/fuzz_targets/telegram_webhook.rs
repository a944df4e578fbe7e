//! Telegram webhook body (`POST /hooks/telegram/{id}`): one Update, read as the hook reads it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if raw.get("update_id").and_then(|v| v.as_i64()).is_none() {
        return;
    }
    let _ = chatter_channels::telegram::parse_update(&raw);
});
