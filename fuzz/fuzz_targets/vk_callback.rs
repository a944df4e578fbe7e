//! VK Callback API body (`POST /hooks/vk/{id}`) for community 214167102 with secret `s3cr3t`
//! (the seeds carry both, so the event parser is reached), and the event parser on its own.
#![no_main]
use libfuzzer_sys::fuzz_target;

const GROUP: i64 = 214167102;

fuzz_target!(|data: &[u8]| {
    let _ = chatter_channels::vk::parse_callback(data, "s3cr3t", GROUP);
    if let Ok(raw) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = chatter_channels::vk::parse_event(&raw, GROUP);
    }
});
