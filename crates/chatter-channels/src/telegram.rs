//! TEMPORARY signatures (replaced by the real client from helper-f at merge).
#![allow(unused_variables, clippy::unused_async)]
use crate::*;
pub const MAX_TEXT: usize = 4096;
pub struct TelegramClient;
pub struct Update { pub update_id: i64, pub raw: serde_json::Value }
pub struct WebhookInfo { pub url: String, pub pending_update_count: i64, pub last_error_date: Option<i64>, pub last_error_message: Option<String> }
pub struct FileInfo { pub file_id: String, pub file_path: Option<String>, pub file_size: Option<i64> }
fn x<T>() -> Result<T, ChannelError> { Err(ChannelError::Permanent(String::new())) }
impl TelegramClient {
    pub fn new(http: reqwest::Client, base_url: &str, token: &str) -> Self { TelegramClient }
    pub fn bot_id(&self) -> Option<i64> { None }
    pub async fn get_me(&self) -> Result<Identity, ChannelError> { x() }
    pub async fn get_updates(&self, offset: Option<i64>, timeout_secs: u32, limit: u32) -> Result<Vec<Update>, ChannelError> { x() }
    pub async fn set_webhook(&self, url: &str, secret_token: &str) -> Result<(), ChannelError> { x() }
    pub async fn delete_webhook(&self, drop_pending: bool) -> Result<(), ChannelError> { x() }
    pub async fn get_webhook_info(&self) -> Result<WebhookInfo, ChannelError> { x() }
    pub async fn send(&self, m: &OutboundMessage) -> Result<Sent, ChannelError> { x() }
    pub async fn send_text_part(&self, chat_id: &str, text: &str, reply_to_message_id: Option<i64>) -> Result<i64, ChannelError> { x() }
    pub async fn get_file(&self, file_id: &str) -> Result<FileInfo, ChannelError> { x() }
    pub async fn download(&self, file_path: &str) -> Result<bytes::Bytes, ChannelError> { x() }
}
pub fn parse_update(raw: &serde_json::Value) -> InboundEvent { InboundEvent::Ignored { reason: String::new() } }
pub fn secret_matches(header: Option<&str>, expected: &str) -> bool { false }
pub fn new_secret_token() -> String { String::new() }
pub fn split_text(text: &str, max_chars: usize) -> Vec<String> { vec![] }
