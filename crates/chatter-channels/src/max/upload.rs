//! A manager's file to a Max customer (§3.2 `/uploads`, §3.4 outgoing attachments):
//! `POST /uploads?type=image|file` names an upload URL (and for some types a token); the bytes
//! go there as multipart field `data`, whose answer is the attachment's payload (the `photos`
//! map of an image, the `token` of a file); then `POST /messages` carries
//! `attachments: [{type, payload}]`. A fresh upload may answer `attachment.not.ready`: the
//! message is tried again after 1, 2 and 4 s (the official client's backoff, §3.4, paused
//! through the client's `Sleeper`), and is then left to the send job's own retries.
//!
//! Max has no idempotency key for `POST /messages`. A retry whose earlier try may have been
//! taken (its answer lost: `FileToSend::retry`) first reads the chat's newest messages
//! (`GET /messages?chat_id=&count=`, §3.2, newest first) and takes as its own a message of the
//! bot carrying an attachment of the same type with the same text, sent since the first try and
//! not one Chatter recorded for another reply; only when there is none does it upload and send.

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{decode, MaxClient, SentMessage};
use crate::common::read_answer;
use crate::{ChannelError, EarlierTry, FileToSend};

/// Pauses before the tries of a message whose attachment is not ready yet (§3.4).
const NOT_READY_BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// How many of the chat's newest messages a retry reads looking for its earlier try.
const RECENT: i64 = 50;

#[derive(Deserialize)]
struct MessageList {
    #[serde(default)]
    messages: Vec<Value>,
}

#[derive(Deserialize)]
struct UploadSlot {
    url: String,
    token: Option<String>,
}

impl MaxClient {
    /// Uploads `file` (as `image` when it is a picture, as `file` otherwise) and sends it to
    /// chat `chat_id` with `caption`, answering `reply_to_mid`; returns the message's `mid`.
    pub async fn send_upload(
        &self,
        chat_id: &str,
        file: &FileToSend,
        caption: Option<&str>,
        reply_to_mid: Option<&str>,
    ) -> Result<String, ChannelError> {
        let chat_id: i64 = chat_id
            .trim()
            .parse()
            .map_err(|_| ChannelError::Permanent(format!("not a Max chat id: {chat_id:?}")))?;
        let kind = match file.as_image {
            true => "image",
            false => "file",
        };
        if let Some(earlier) = &file.retry {
            if let Some(mid) = self
                .find_sent(chat_id, kind, caption.unwrap_or_default(), earlier)
                .await?
            {
                return Ok(mid);
            }
        }
        let payload = self.upload(kind, file).await?;
        let mut body = json!({
            "text": caption.unwrap_or_default(),
            "attachments": [{ "type": kind, "payload": payload }],
            "notify": true,
        });
        if let Some(mid) = reply_to_mid {
            body["link"] = json!({ "type": "reply", "mid": mid });
        }
        let mut pauses = NOT_READY_BACKOFF.iter();
        loop {
            let req = self
                .request(Method::POST, "/messages")
                .query(&[("chat_id", chat_id)])
                .json(&body);
            let (status, retry_after, answer) = self.call_raw(req).await?;
            match decode::<SentMessage>(status, retry_after, &answer) {
                Ok(sent) => return Ok(sent.message.body.mid),
                Err(e) if not_ready(&answer) => match pauses.next() {
                    Some(pause) => self.sleeper.sleep(*pause).await,
                    None => return Err(self.scrub(e)),
                },
                Err(e) => return Err(self.scrub(e)),
            }
        }
    }

    /// The `mid` of a message an earlier try sent (see the module's note), if Max has one.
    async fn find_sent(
        &self,
        chat_id: i64,
        kind: &str,
        text: &str,
        earlier: &EarlierTry,
    ) -> Result<Option<String>, ChannelError> {
        let list: MessageList = self
            .call(
                self.request(Method::GET, "/messages")
                    .query(&[("chat_id", chat_id), ("count", RECENT)]),
            )
            .await?;
        Ok(list.messages.iter().find_map(|m| {
            let ours = m.pointer("/sender/is_bot").and_then(Value::as_bool) == Some(true)
                && m.get("timestamp").and_then(Value::as_i64) >= Some(earlier.since_ms)
                && m.pointer("/body/text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    == text
                && m.pointer("/body/attachments")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|a| a["type"] == kind));
            let mid = m.pointer("/body/mid").and_then(Value::as_str)?;
            (ours && !earlier.known.iter().any(|k| k == mid)).then(|| mid.to_owned())
        }))
    }

    /// `POST /uploads?type=` and the multipart POST of the bytes (field `data`); returns the
    /// payload an attachment of `kind` carries.
    async fn upload(&self, kind: &str, file: &FileToSend) -> Result<Value, ChannelError> {
        let slot: UploadSlot = self
            .call(
                self.request(Method::POST, "/uploads")
                    .query(&[("type", kind)]),
            )
            .await?;
        let part = Part::bytes(file.bytes.clone())
            .file_name(file.file_name.clone())
            .mime_str(&file.mime_type)
            .map_err(|_| ChannelError::Permanent(format!("not a MIME type: {}", file.mime_type)))?;
        // The upload URL carries its own signature (and may be on another host): no token.
        let req = self
            .http
            .post(&slot.url)
            .multipart(Form::new().part("data", part));
        let result = read_answer("Max upload", req).await;
        let (status, retry_after, answer) = result.map_err(|e| self.scrub_url(e, &slot.url))?;
        let uploaded: Value =
            decode(status, retry_after, &answer).map_err(|e| self.scrub_url(e, &slot.url))?;
        payload_of(uploaded, slot.token)
    }

    fn scrub_url(&self, e: ChannelError, url: &str) -> ChannelError {
        crate::common::scrub(e, &[&self.token, url])
    }
}

/// The attachment payload from the upload's answer: the answer itself when it names the
/// upload (`photos` or `token`), else the token `/uploads` gave.
fn payload_of(uploaded: Value, slot_token: Option<String>) -> Result<Value, ChannelError> {
    let names_it = uploaded.get("photos").is_some_and(Value::is_object)
        || uploaded.get("token").is_some_and(Value::is_string);
    match (names_it, slot_token) {
        (true, _) => Ok(uploaded),
        (false, Some(token)) => Ok(json!({ "token": token })),
        (false, None) => Err(ChannelError::Permanent(
            "Max upload: the answer names no photo or token".into(),
        )),
    }
}

/// Whether an error answer is `attachment.not.ready` (§3.4).
fn not_ready(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned))
        .is_some_and(|c| c == "attachment.not.ready")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_the_answer_or_the_slots_token() {
        let photos = json!({"photos": {"a1": {"token": "t1"}}});
        assert_eq!(payload_of(photos.clone(), None).ok(), Some(photos));
        assert_eq!(
            payload_of(json!({"fileId": 7}), Some("t2".into())).ok(),
            Some(json!({"token": "t2"}))
        );
        assert!(payload_of(json!({}), None).is_err());
    }

    #[test]
    fn only_its_code_means_not_ready() {
        assert!(not_ready(
            br#"{"code":"attachment.not.ready","message":"Key: errors.process.attachment.file.not.processed"}"#
        ));
        assert!(!not_ready(br#"{"code":"proto.payload","message":"x"}"#));
        assert!(!not_ready(b"<html>"));
    }
}
