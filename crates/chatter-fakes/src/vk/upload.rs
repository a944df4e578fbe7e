//! The fake VK's uploads for messages: `photos.getMessagesUploadServer` /
//! `docs.getMessagesUploadServer` hand out a one-use upload URL (`/upload/{photo|doc}/{id}`);
//! a multipart POST there (`photo` / `file`) keeps the bytes and answers as VK's upload servers
//! do (`{server, photo, hash}`, `{file}`, or `{error, error_descr}` with HTTP 200);
//! `photos.saveMessagesPhoto` / `docs.save` turn an upload into a saved photo or document the
//! community owns, which `messages.send` then takes as `attachment`. Limits are VK's documented
//! ones: a photo up to 50 MB in JPEG, PNG or GIF; a document up to 200 MB.

use super::{invalid, missing, unix_secs, Params, Reply, Shared, World, MAX_BODY};
use crate::server::random_hex;
use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// VK's limit for a photo in a message.
const MAX_PHOTO: usize = 50 * 1024 * 1024;
/// VK's limit for a document.
const MAX_DOC: usize = 200 * 1024 * 1024;

/// A file a community uploaded and saved, as the customer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VkSentFile {
    /// `photo` or `doc`.
    pub kind: String,
    /// The uploaded part's file name (a document's title when it was saved with one).
    pub name: String,
    /// The uploaded part's `Content-Type`.
    pub mime: String,
    pub bytes: Vec<u8>,
}

/// One upload URL handed out, and what was posted to it.
pub(super) struct Slot {
    group_id: i64,
    kind: &'static str,
    hash: String,
    file: Option<VkSentFile>,
}

/// A saved photo or document: `{kind}{owner_id}_{id}` → (access key, file).
pub(super) type Saved = (String, VkSentFile);

/// The upload methods; `None` for any other method.
pub(super) fn method(
    shared: &Shared,
    group_id: i64,
    method: &str,
    params: &Params,
) -> Option<Result<Value, Reply>> {
    Some(match method {
        "photos.getMessagesUploadServer" => upload_server(shared, group_id, "photo"),
        "docs.getMessagesUploadServer" => match params.text("type").unwrap_or("doc") {
            "doc" | "audio_message" | "graffiti" => match params.int("peer_id") {
                Ok(Some(_)) => upload_server(shared, group_id, "doc"),
                Ok(None) => Err(missing("peer_id")),
                Err(e) => Err(e),
            },
            _ => Err(invalid("type")),
        },
        "photos.saveMessagesPhoto" => save_photo(shared, group_id, params),
        "docs.save" => save_doc(shared, group_id, params),
        _ => return None,
    })
}

fn upload_server(shared: &Shared, group_id: i64, kind: &'static str) -> Result<Value, Reply> {
    let id = random_hex(24);
    let mut world = shared.lock();
    world.uploads.insert(
        id.clone(),
        Slot {
            group_id,
            kind,
            hash: random_hex(32),
            file: None,
        },
    );
    let upload_url = format!("{}/upload/{kind}/{id}", shared.base_url);
    Ok(match kind {
        "photo" => json!({"upload_url": upload_url, "album_id": -64, "group_id": group_id}),
        _ => json!({ "upload_url": upload_url }),
    })
}

/// `POST /upload/{kind}/{id}`: the upload server. Always HTTP 200, as VK's are.
pub(super) async fn receive(shared: &Shared, path: &str, request: Request) -> Response {
    let answer = |v: Value| axum::Json(v).into_response();
    let refuse = |error: &str, descr: &str| answer(json!({"error": error, "error_descr": descr}));
    let Some((kind, id)) = path.split_once('/') else {
        return refuse("ERR_UPLOAD_BAD_URL", "bad upload URL");
    };
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let Ok(body) = to_bytes(request.into_body(), MAX_DOC + MAX_BODY).await else {
        return refuse("ERR_UPLOAD_FILE_TOO_BIG", "the file is larger than 200 MB");
    };
    let field = if kind == "photo" { "photo" } else { "file" };
    let file = crate::sms::multipart_fields(&content_type, &body).and_then(|fs| {
        fs.into_iter()
            .find(|f| f.name == field && f.file_name.is_some())
    });
    let mut world = shared.lock();
    let Some(slot) = world.uploads.get_mut(id).filter(|s| s.kind == kind) else {
        return refuse(
            "ERR_UPLOAD_BAD_SIGNATURE",
            "the upload URL is unknown or used",
        );
    };
    if slot.file.is_some() {
        return refuse(
            "ERR_UPLOAD_BAD_SIGNATURE",
            "the upload URL was used already",
        );
    }
    let Some(file) = file else {
        return refuse("no_file", &format!("no file in the field {field}"));
    };
    let limit = if kind == "photo" { MAX_PHOTO } else { MAX_DOC };
    if file.bytes.len() > limit {
        return refuse(
            "ERR_UPLOAD_FILE_TOO_BIG",
            &format!("the file is larger than {} MB", limit / 1024 / 1024),
        );
    }
    let picture = file.bytes.starts_with(&[0xff, 0xd8, 0xff])
        || file.bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        || file.bytes.starts_with(b"GIF8");
    slot.file = Some(VkSentFile {
        kind: slot.kind.to_owned(),
        name: file.file_name.unwrap_or_default(),
        mime: file.mime,
        bytes: file.bytes,
    });
    match kind {
        // VK's photo server answers an empty list for what is not a picture it takes.
        "photo" if !picture => answer(json!({"server": 850_120, "photo": "[]", "hash": ""})),
        "photo" => answer(json!({"server": 850_120, "photo": id, "hash": slot.hash})),
        _ => answer(json!({ "file": format!("{id}|{}", slot.hash) })),
    }
}

/// Takes the uploaded file of slot `id` if it is this community's, of `kind`, with `hash`.
fn take(
    world: &mut World,
    group_id: i64,
    kind: &str,
    id: &str,
    hash: &str,
) -> Result<VkSentFile, Reply> {
    match world.uploads.get(id) {
        Some(s) if s.group_id == group_id && s.kind == kind && s.file.is_some() => {
            if s.hash != hash {
                return Err(Reply::Error(121, "Invalid hash".into()));
            }
        }
        _ => return Err(invalid(if kind == "photo" { "photo" } else { "file" })),
    }
    world
        .uploads
        .remove(id)
        .and_then(|s| s.file)
        .ok_or_else(|| invalid("file"))
}

/// Keeps a saved file under its attachment name; returns (id, owner_id, access key).
fn keep(world: &mut World, group_id: i64, file: VkSentFile) -> (u64, i64, String) {
    world.next_file += 1;
    let id = 457_239_000 + world.next_file;
    let owner = -group_id;
    let key = random_hex(18);
    let name = format!("{}/{}-{id}", file.kind, owner.unsigned_abs());
    world
        .files
        .insert(name, (file.bytes.clone(), file.mime.clone()));
    world
        .saved
        .insert(format!("{}{owner}_{id}", file.kind), (key.clone(), file));
    (id, owner, key)
}

fn save_photo(shared: &Shared, group_id: i64, params: &Params) -> Result<Value, Reply> {
    let photo = params.text("photo").ok_or_else(|| missing("photo"))?;
    if photo == "[]" {
        return Err(Reply::Error(
            100,
            "One of the parameters specified was missing or invalid: photos_list is invalid".into(),
        ));
    }
    params.int("server")?.ok_or_else(|| missing("server"))?;
    let hash = params.text("hash").ok_or_else(|| missing("hash"))?;
    let mut world = shared.lock();
    let file = take(&mut world, group_id, "photo", photo, hash)?;
    let (id, owner, key) = keep(&mut world, group_id, file);
    let url = format!(
        "{}/files/photo/{}-{id}",
        shared.base_url,
        owner.unsigned_abs()
    );
    Ok(
        json!([{"id": id, "owner_id": owner, "access_key": key, "album_id": -64,
               "date": unix_secs(), "sizes": [{"type": "x", "url": url, "width": 1, "height": 1}],
               "text": ""}]),
    )
}

fn save_doc(shared: &Shared, group_id: i64, params: &Params) -> Result<Value, Reply> {
    let file = params.text("file").ok_or_else(|| missing("file"))?;
    let (id, hash) = file.split_once('|').ok_or_else(|| invalid("file"))?;
    let mut world = shared.lock();
    let mut saved = take(&mut world, group_id, "doc", id, hash)?;
    if let Some(title) = params.text("title").filter(|t| !t.trim().is_empty()) {
        saved.name = title.to_owned();
    }
    let title = saved.name.clone();
    let size = saved.bytes.len();
    let (id, owner, key) = keep(&mut world, group_id, saved);
    let ext = title
        .rsplit_once('.')
        .map(|(_, e)| e)
        .unwrap_or("")
        .to_owned();
    let url = format!(
        "{}/files/doc/{}-{id}",
        shared.base_url,
        owner.unsigned_abs()
    );
    Ok(
        json!({"type": "doc", "doc": {"id": id, "owner_id": owner, "access_key": key,
              "title": title, "size": size, "ext": ext, "url": url, "date": unix_secs(),
              "type": 1}}),
    )
}

/// The saved files `messages.send` names in `attachment` (`photo-1_2[_key],doc-1_3`), as its
/// attachments; an unknown one is error 100.
pub(super) fn attachments(world: &World, list: &str) -> Result<Vec<(Value, VkSentFile)>, Reply> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut parts = item.splitn(3, '_');
        let (Some(head), Some(id)) = (parts.next(), parts.next()) else {
            return Err(invalid("attachment"));
        };
        let name = format!("{head}_{id}");
        let (key, file) = world
            .saved
            .get(&name)
            .ok_or_else(|| invalid("attachment"))?;
        if parts.next().is_some_and(|k| k != key) {
            return Err(invalid("attachment"));
        }
        let (owner, id) = (
            head.trim_start_matches(char::is_alphabetic)
                .parse::<i64>()
                .unwrap_or(0),
            id.parse::<i64>().unwrap_or(0),
        );
        let object = json!({"type": file.kind, file.kind.clone(): {"id": id, "owner_id": owner,
            "title": file.name, "size": file.bytes.len()}});
        out.push((object, file.clone()));
    }
    Ok(out)
}
