//! Stateful fake servers of the external APIs Chatter talks to, each listening on loopback, for
//! tests, browser tests and `chatter demo`.

pub mod amocrm;
pub mod avito;
pub mod llm;
pub mod mail_page;
pub mod max;
pub mod phone_page;
mod server;
pub mod sms;
pub mod sms_gateways;
pub mod smtp;
pub mod telegram;
pub mod telegram_personal;
pub mod vk;
pub mod website;
pub mod whatsapp;

pub use amocrm::{AccountId, FakeAmo, ManagerFile, RecordedRequest};
pub use avito::FakeAvito;
pub use llm::{FakeLlm, LlmCall, LlmFault};
pub use max::FakeMax;
pub use sms::{FakeSms, SmsCallback, SmsFailure, SmsSent};
pub use sms_gateways::{
    FakeSmsGateways, Gateway, GatewayAccount, GatewayFailure, GwCallback, GwSent, GwStatus,
};
pub use smtp::{CapturedMail, SmtpCapture};
pub use telegram::{
    CustomerMessage, Delivery, Failure, FakeTelegram, GroupChat, SentFile, SentMessage,
    WebhookConfig,
};
pub use telegram_personal::{FakeTelegramPersonal, TgpSent};
pub use vk::{
    FakeVk, VkCallbackServer, VkCustomerMessage, VkDelivery, VkFailure, VkGroup, VkSentFile,
    VkSentMessage,
};
pub use whatsapp::{
    FakeWhatsApp, WaCustomerContent, WaDelivery, WaFailure, WaMedia, WaNumber, WaSentMessage,
};
