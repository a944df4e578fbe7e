//! The fake Max's uploads (§3.2 `/uploads`, §3.4): `POST /uploads?type=image|video|audio|file`
//! hands out a one-use URL (`/upload/{id}`, no token needed there, as Max's upload host needs
//! none); a multipart POST of field `data` keeps the bytes and answers the attachment payload
//! (`{"photos": {…: {"token"}}}` for an image, `{"token"}` otherwise); `POST /messages` then
//! takes `attachments: [{type, payload}]` naming those tokens. Tests can make the next sends
//! with an attachment answer `attachment.not.ready`. Limits are Max's documented ones: an image
//! up to 50 MB, a file up to 4 GB (the fake takes at most 64 MB in one body).

use super::{error, gate, Bot, Shared};
use crate::server::{random_string, URL_SAFE};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The largest body the upload URL reads.
pub(super) const MAX_UPLOAD_BODY: usize = 64 * 1024 * 1024;
/// Max's limit for one image.
const MAX_IMAGE: usize = 50 * 1024 * 1024;

/// A file the bot uploaded and sent, as the customer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFile {
    /// The attachment's type: `image`, `video`, `audio` or `file`.
    pub kind: String,
    /// The uploaded part's file name.
    pub name: String,
    /// The uploaded part's `Content-Type`.
    pub mime: String,
    pub bytes: Vec<u8>,
}

/// One upload URL handed out, and what was posted to it.
pub(super) struct Slot {
    kind: String,
    /// The token the attachment names once the bytes are in.
    token: String,
    file: Option<SentFile>,
}

/// A bot's uploads: URLs handed out, uploaded files by token, and how many sends with an
/// attachment still answer `attachment.not.ready`.
#[derive(Default)]
pub(super) struct Uploads {
    slots: HashMap<String, Slot>,
    by_token: HashMap<String, SentFile>,
    pub(super) not_ready: usize,
}

/// `POST /uploads?type=`: an upload URL, and for video and audio the token up front (§3.2).
pub(super) async fn new_upload(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let token = match gate(&shared, &headers).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    let kind = q.get("type").map(String::as_str).unwrap_or("");
    if !matches!(kind, "image" | "video" | "audio" | "file") {
        return error(
            400,
            "proto.payload",
            "type: must be image, video, audio or file",
        );
    }
    let id = random_string(URL_SAFE, 32);
    let slot_token = random_string(URL_SAFE, 40);
    let mut bots = shared.lock();
    let Some(bot) = bots.get_mut(&token) else {
        return super::unauthorized();
    };
    bot.uploads.slots.insert(
        id.clone(),
        Slot {
            kind: kind.to_owned(),
            token: slot_token.clone(),
            file: None,
        },
    );
    let mut answer = json!({ "url": format!("{}/upload/{id}", shared.base_url) });
    if matches!(kind, "video" | "audio") {
        answer["token"] = json!(slot_token);
    }
    axum::Json(answer).into_response()
}

/// `POST /upload/{id}`: the bytes as multipart field `data`.
pub(super) async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let data = crate::sms::multipart_fields(content_type, &body)
        .and_then(|fs| fs.into_iter().find(|f| f.name == "data"));
    let mut bots = shared.lock();
    let Some(slot) = bots.values_mut().find_map(|b| {
        b.uploads
            .slots
            .get_mut(&id)
            .map(|s| (s, &mut b.uploads.by_token))
    }) else {
        return error(404, "not.found", "Upload URL not found or expired");
    };
    let (slot, by_token) = slot;
    if slot.file.is_some() {
        return error(
            400,
            "upload.used",
            "Only one file can be uploaded to this URL",
        );
    }
    let Some(data) = data else {
        return error(400, "proto.payload", "data: the file is required");
    };
    if slot.kind == "image" && data.bytes.len() > MAX_IMAGE {
        return error(400, "file.too.big", "The image is larger than 50 MB");
    }
    let file = SentFile {
        kind: slot.kind.clone(),
        name: data.file_name.unwrap_or_default(),
        mime: data.mime,
        bytes: data.bytes,
    };
    slot.file = Some(file.clone());
    by_token.insert(slot.token.clone(), file);
    let answer = match slot.kind.as_str() {
        "image" => json!({"photos": {random_string(URL_SAFE, 12): {"token": slot.token}}}),
        "file" => json!({"fileId": rand::random::<u32>(), "token": slot.token}),
        _ => json!({}),
    };
    axum::Json(answer).into_response()
}

/// The uploaded files a message's `attachments` name, in order: `Err` with the answer when one
/// is unknown, or when the bot was told the next attachment is not ready yet.
pub(super) fn attached(bot: &mut Bot, body: &Value) -> Result<Vec<SentFile>, Box<Response>> {
    let Some(list) = body["attachments"].as_array().filter(|l| !l.is_empty()) else {
        return Ok(Vec::new());
    };
    if bot.uploads.not_ready > 0 {
        bot.uploads.not_ready -= 1;
        return Err(Box::new(error(
            400,
            "attachment.not.ready",
            "Key: errors.process.attachment.file.not.processed",
        )));
    }
    let mut files = Vec::new();
    for a in list {
        let payload = &a["payload"];
        let token = payload["token"].as_str().or_else(|| {
            payload["photos"]
                .as_object()
                .and_then(|m| m.values().next())
                .and_then(|p| p["token"].as_str())
        });
        let file = token.and_then(|t| bot.uploads.by_token.get(t));
        match file {
            Some(f) if a["type"].as_str() == Some(f.kind.as_str()) => files.push(f.clone()),
            _ => {
                return Err(Box::new(error(
                    400,
                    "attachment.invalid",
                    "attachments: unknown or mismatched upload token",
                )))
            }
        }
    }
    Ok(files)
}
