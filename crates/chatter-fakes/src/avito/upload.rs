//! The fake Avito's pictures from the account (§4.2): `uploadImages` takes one image as
//! multipart `uploadfile[]` (JPEG, HEIC, GIF, BMP or PNG by its bytes, at most 24 MB) and
//! answers `{"<image_id>": {"<W>x<H>": url, …}}`; `…/chats/{chat_id}/messages/image` with
//! `{"image_id"}` sends it as an `image` message. Anything else is refused as Avito does.

use super::{error, gate, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;

/// Avito's limit for one image.
const MAX_IMAGE: usize = 24 * 1024 * 1024;
/// The largest body `uploadImages` reads.
pub(super) const MAX_UPLOAD_BODY: usize = MAX_IMAGE + 1024 * 1024;

/// A picture the account uploaded, as the buyer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentImage {
    /// The uploaded part's file name.
    pub name: String,
    /// The uploaded part's `Content-Type`.
    pub mime: String,
    pub bytes: Vec<u8>,
}

/// Whether the bytes are a picture `uploadImages` takes: JPEG, PNG, GIF, BMP or HEIC.
fn is_image(b: &[u8]) -> bool {
    b.starts_with(&[0xff, 0xd8, 0xff])
        || b.starts_with(b"\x89PNG\r\n\x1a\n")
        || b.starts_with(b"GIF8")
        || b.starts_with(b"BM")
        || (b.len() >= 12
            && &b[4..8] == b"ftyp"
            && matches!(&b[8..12], b"heic" | b"heix" | b"mif1"))
}

/// `POST /messenger/v1/accounts/{uid}/uploadImages`.
pub(super) async fn upload_images(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
    body: Bytes,
) -> Response {
    let client_id = match gate(&shared, &headers, Some(&uid)).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let fields = crate::sms::multipart_fields(content_type, &body).unwrap_or_default();
    let mut images = fields.into_iter().filter(|f| f.name == "uploadfile[]");
    let (Some(image), None) = (images.next(), images.next()) else {
        return error(400, "uploadfile[]: exactly one image is required");
    };
    if image.bytes.len() > MAX_IMAGE {
        return error(400, "uploadfile[]: the image is larger than 24 MB");
    }
    if !is_image(&image.bytes) {
        return error(
            400,
            "uploadfile[]: only JPEG, HEIC, GIF, BMP and PNG images are accepted",
        );
    }
    let id = format!("{}.{:x}", rand::random::<u32>(), rand::random::<u64>());
    let mut state = shared.lock();
    state.files.insert(id.clone(), image.bytes.clone());
    let Some(account) = state.accounts.get_mut(&client_id) else {
        return error(401, "invalid access token");
    };
    account.images.insert(
        id.clone(),
        SentImage {
            name: image.file_name.unwrap_or_default(),
            mime: image.mime,
            bytes: image.bytes,
        },
    );
    let url = format!("{}/files/{id}", shared.base_url);
    axum::Json(json!({ id: {"1280x960": url, "140x105": url} })).into_response()
}

/// `POST /messenger/v1/accounts/{uid}/chats/{chat_id}/messages/image` with `{"image_id"}`.
pub(super) async fn send_image(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((uid, chat_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let client_id = match gate(&shared, &headers, Some(&uid)).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "invalid JSON");
    };
    let image_id = body["image_id"].as_str().unwrap_or("").to_owned();
    let base = shared.base_url.clone();
    let mut state = shared.lock();
    let Some(a) = state.accounts.get_mut(&client_id) else {
        return error(401, "invalid access token");
    };
    let Some(image) = a.images.get(&image_id).cloned() else {
        return error(400, "image_id: no such uploaded image");
    };
    if !a.chats.contains_key(&chat_id) {
        return error(404, "chat not found");
    }
    let url = format!("{base}/files/{image_id}");
    let content = json!({"image": {"sizes": {"1280x960": url, "140x105": url}}});
    let uid = a.user_id;
    let message = a.add_message(&chat_id, uid, "image", content.clone());
    let id = message["id"].as_str().unwrap_or_default().to_owned();
    a.sent.push(super::SentMessage {
        chat_id,
        id: id.clone(),
        text: String::new(),
        image: Some(image),
    });
    if a.answer_lost() {
        return error(504, "Gateway Time-out");
    }
    axum::Json(
        json!({"id": id, "created": message["created"], "direction": "out",
                      "type": "image", "content": content}),
    )
    .into_response()
}
