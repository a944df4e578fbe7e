//! The floor every messenger kind stands on, written once: keeping credentials out of error
//! text (`scrub`), turning network failures into `ChannelError` (`transport_error`), reading a
//! `Retry-After` and reading a provider's answer, bounded downloads, splitting long texts and
//! sending them in parts, webhook secrets compared in constant time, and phone numbers in E.164.
//! A kind imports from here, never from a sibling kind.

mod errors;
mod http;
mod secret;
mod send;
mod text;

pub use chatter_domain::normalize_phone;
pub use errors::{blocked_if, error_chain, scrub, too_large, transport_error};
pub use http::{download_url, parse_success, read_answer, read_limited, retry_after_header};
pub use secret::{new_hex_secret, new_secret_token, secret_matches};
pub use send::send_in_parts;
pub use text::split_text;
