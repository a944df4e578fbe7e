//! amoCRM "integration disabled" hook query (`GET /hooks/amocrm/disabled?…`), and the OAuth
//! redirect's query parser next to it.
#![no_main]
use chatter_crm::amocrm::oauth::{parse_callback, OAuthApp};
use chatter_crm::SystemClock;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

fn app() -> &'static OAuthApp {
    static APP: OnceLock<OAuthApp> = OnceLock::new();
    APP.get_or_init(|| {
        OAuthApp::new(
            reqwest::Client::new(),
            "0b0832f6-d123-4123-9123-e73f236833c0",
            "client-secret",
            "https://chatter.example/amocrm/callback",
            "https://www.amocrm.ru/oauth",
            Arc::new(SystemClock),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let _ = app().verify_disabled_hook(&query);
    let _ = parse_callback(&query);
});
