//! Stateful fake servers of the external APIs Chatter talks to, each listening on loopback, for
//! tests, browser tests and `chatter demo`.

pub mod smtp;
pub mod telegram;

pub use smtp::{CapturedMail, SmtpCapture};
pub use telegram::{
    CustomerMessage, Delivery, Failure, FakeTelegram, GroupChat, SentMessage, WebhookConfig,
};
