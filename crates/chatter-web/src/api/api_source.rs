//! The API source's bodies (kind 6), documented in the OpenAPI document here and served by
//! `hooks::api_message`: what your system posts to an API source, what Chatter answers, and the
//! webhook events Chatter posts back.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A customer's message sent by your system to an API source.
#[derive(serde::Deserialize, ToSchema)]
#[schema(example = json!({
    "message_id": "42",
    "chat_id": "client-7",
    "sender": {"id": "client-7", "name": "Иван Петров", "phone": "+79990001122", "email": "ivan@example.ru"},
    "text": "Здравствуйте! Есть ли доставка в Казань?",
    "sent_at": 1767225600000_i64,
    "utm": {"source": "yandex", "medium": "cpc", "campaign": "spring"}
}))]
pub struct ApiSourceMessageIn {
    /// Your id of the message, unique per source: a repeat with the same id stores nothing new.
    #[schema(min_length = 1, max_length = 200)]
    pub message_id: String,
    /// Your id of the conversation; answers are addressed to it.
    #[schema(min_length = 1, max_length = 200)]
    pub chat_id: String,
    pub sender: ApiSourceSenderIn,
    /// The message (up to 20,000 characters, not only spaces).
    #[schema(min_length = 1, max_length = 20000, pattern = r"\S")]
    pub text: String,
    /// When it was written, Unix milliseconds (default: when received).
    #[schema(minimum = 1)]
    pub sent_at: Option<i64>,
    /// Advertising tags, kept for the CRM.
    pub utm: Option<ApiSourceUtmIn>,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ApiSourceSenderIn {
    /// Your stable id of the person: one contact per id.
    #[schema(min_length = 1, max_length = 200)]
    pub id: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    #[schema(max_length = 50)]
    pub phone: Option<String>,
    #[schema(max_length = 200)]
    pub email: Option<String>,
    #[schema(max_length = 200)]
    pub username: Option<String>,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ApiSourceUtmIn {
    #[schema(max_length = 500)]
    pub source: Option<String>,
    #[schema(max_length = 500)]
    pub medium: Option<String>,
    #[schema(max_length = 500)]
    pub campaign: Option<String>,
    #[schema(max_length = 500)]
    pub content: Option<String>,
    #[schema(max_length = 500)]
    pub term: Option<String>,
}

/// What Chatter stored: the same answer for every repeat of the message.
#[derive(Serialize, ToSchema)]
pub struct ApiSourceReceivedOut {
    /// Chatter's id of the message.
    pub message_id: Uuid,
    pub conversation_id: Uuid,
}

/// An outgoing webhook Chatter posts to an API source's URL, signed like inbound calls
/// (`X-Chatter-Timestamp`, `X-Chatter-Signature`; also `X-Chatter-Event` and `X-Chatter-Delivery`).
/// `type` is `message.created` (`data.message.direction` `in` or `out` — a manager's answer to
/// deliver to `data.chat_id`), `message.status_changed`, `conversation.status_changed`
/// (`data.status` `open` | `closed`) or `conversation.assigned` (`data.assignee`). Answer 2xx;
/// anything else is retried with backoff (15 attempts), the same `id` each time.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": "01950f2e-8c4b-7d1e-9a51-3f0c2b7e4d10",
    "type": "message.created",
    "created_at": 1767225660000_i64,
    "data": {
        "source_id": "01950f2e-0000-7000-8000-000000000001",
        "conversation_id": "01950f2e-0000-7000-8000-000000000002",
        "chat_id": "client-7",
        "message": {"id": "01950f2e-0000-7000-8000-000000000003", "direction": "out",
                    "text": "Да, доставляем за 2 дня.", "status": "pending", "sender_name": "Анна"}
    }
}))]
pub struct WebhookEventOut {
    /// The delivery's id (the same on retries and replays: dedupe by it).
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix milliseconds.
    pub created_at: i64,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}
