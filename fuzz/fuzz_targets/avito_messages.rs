//! Avito message page answer (the polling fallback's second call) for a chat with a buyer.
#![no_main]
use chatter_channels::avito::{ChatInfo, PollCursor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let chat = ChatInfo {
        id: "u2i-abc123".into(),
        updated: 1767225600,
        item: Some((1768287444, "Велосипед".into())),
        users: vec![(141906442, "Покупатель".into())],
    };
    let cursor = PollCursor {
        since: 1767225000,
        seen: vec!["seen-1".into()],
    };
    for status in [200, 404] {
        let _ = chatter_channels::avito::parse_messages(status, None, data, 94235311, &chat, &cursor);
    }
});
