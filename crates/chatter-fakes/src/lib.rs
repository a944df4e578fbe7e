//! Stateful fake servers of the external APIs Chatter talks to, each listening on loopback, for
//! tests, browser tests and `chatter demo`.

pub mod amocrm;
pub mod smtp;
pub mod telegram;

pub use amocrm::{AccountId, FakeAmo, RecordedRequest};
pub use smtp::{CapturedMail, SmtpCapture};
pub use telegram::{
    CustomerMessage, Delivery, Failure, FakeTelegram, GroupChat, SentMessage, WebhookConfig,
};
