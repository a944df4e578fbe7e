//! VK Bots Long Poll `a_check` answer for community 214167102.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chatter_channels::vk::parse_long_poll(200, data, 214167102);
});
