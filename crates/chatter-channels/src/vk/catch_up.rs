//! What a VK event does not carry, read by method calls: the customers' messages the long poll
//! lost (`missed_since`, after `failed: 1` or `3`) from the conversations, and the names of
//! users (`user_names`), whom events name only by id.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_event, VkClient};
use crate::{ChannelError, InboundEvent};

/// Most ids one `users.get` takes.
const USERS_PER_CALL: usize = 1000;

/// One user of `users.get`.
#[derive(Deserialize)]
struct VkUser {
    id: i64,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    /// `deleted` or `banned` for an account that is gone.
    deactivated: Option<String>,
}

/// Conversations, and messages per conversation, read after a gap (VK's most per call).
const CATCH_UP_PAGE: usize = 200;

/// `{count, items}`, as `messages.getConversations` and `messages.getHistory` answer.
#[derive(Deserialize)]
struct ItemList {
    #[serde(default)]
    items: Vec<Value>,
}

impl VkClient {
    /// The customers' messages dated `since` or later, oldest first, read from the
    /// conversations rather than the long poll: `messages.getConversations {count: 200}` (newest
    /// first, each with its `last_message`), then `messages.getHistory {peer_id, count: 200}`
    /// of each conversation whose last message is that new (dev.vk.com/method/messages.*).
    /// What the long poll returned as well has the same `external_id`, so storing it again
    /// changes nothing. At most 200 conversations and 200 messages each are read.
    pub async fn missed_since(&self, since: i64) -> Result<Vec<InboundEvent>, ChannelError> {
        let list: ItemList = self
            .call(
                "messages.getConversations",
                &[
                    ("count", CATCH_UP_PAGE.to_string()),
                    ("group_id", self.group_id.to_string()),
                ],
            )
            .await?;
        let mut found: Vec<(i64, InboundEvent)> = Vec::new();
        for item in list.items {
            let fresh = item
                .pointer("/last_message/date")
                .and_then(Value::as_i64)
                .is_some_and(|d| d >= since);
            let Some(peer) = item
                .pointer("/conversation/peer/id")
                .and_then(Value::as_i64)
            else {
                continue;
            };
            if !fresh {
                continue;
            }
            let history: ItemList = self
                .call(
                    "messages.getHistory",
                    &[
                        ("peer_id", peer.to_string()),
                        ("count", CATCH_UP_PAGE.to_string()),
                        ("group_id", self.group_id.to_string()),
                    ],
                )
                .await?;
            for m in history.items {
                let date = m.get("date").and_then(Value::as_i64).unwrap_or(0);
                if date < since {
                    continue;
                }
                let ev = parse_event(
                    &json!({"type": "message_new", "object": {"message": m}}),
                    self.group_id,
                );
                if matches!(ev, InboundEvent::Message(_)) {
                    found.push((date, ev));
                }
            }
        }
        found.sort_by_key(|(date, _)| *date);
        Ok(found.into_iter().map(|(_, ev)| ev).collect())
    }

    /// `users.get {user_ids}` (dev.vk.com/method/users.get; at most 1000 ids a call): the
    /// names of users, `"First Last"`, by id as a string. A deactivated (deleted or banned)
    /// account has no name to show and is left out, as are ids that are not users'.
    pub async fn user_names(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<String, String>, ChannelError> {
        let mut names = std::collections::HashMap::new();
        for chunk in ids.chunks(USERS_PER_CALL) {
            let list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let users: Vec<VkUser> = self.call("users.get", &[("user_ids", list)]).await?;
            for u in users {
                if u.deactivated.is_some() {
                    continue;
                }
                let name = format!("{} {}", u.first_name.trim(), u.last_name.trim());
                let name = name.trim();
                if !name.is_empty() {
                    names.insert(u.id.to_string(), name.to_owned());
                }
            }
        }
        Ok(names)
    }
}
