//! The Chats API (amojo, §4): every request's signature checked (§4.2), connect/disconnect,
//! chats, messages with amoCRM's side effects (contact + Unsorted lead), delivery status,
//! history, and the signed outgoing-message webhook a manager's answer produces (§4.6).

use super::{is_closed_status, is_method, status_code, Account, AmoState, Chat, Kind, Shared};
use crate::server::unix_secs;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sha1::Sha1;
use std::sync::Arc;

/// How far `Date` may be from now (§4.2: a signature is valid 15 minutes).
const DATE_SKEW: i64 = 15 * 60;

fn hmac_sha1_hex(secret: &str, message: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

fn md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// `X-Signature` of a request (§4.2).
fn request_signature(
    secret: &str,
    method: &str,
    md5: &str,
    content_type: &str,
    date: &str,
    path: &str,
) -> String {
    let to_sign = format!(
        "{}\n{md5}\n{content_type}\n{date}\n{path}",
        method.to_uppercase()
    );
    hmac_sha1_hex(secret, to_sign.as_bytes())
}

/// amojo's error object (§4.2).
fn amojo_error(status: u16, error_type: &str, description: &str) -> Response {
    (
        status_code(status),
        [(header::CONTENT_TYPE, "application/json")],
        json!({"status": 0, "error_code": status, "error_type": error_type, "error_description": description})
            .to_string(),
    )
        .into_response()
}

fn ok_json(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn bad_request(description: &str) -> Response {
    amojo_error(400, "INVALID_REQUEST", description)
}

/// Checks `Date`, `Content-MD5` and `X-Signature` exactly as amojo does.
fn signature_valid(
    secret: &str,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> bool {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (date, md5, content_type, signature) = (
        text("date"),
        text("content-md5"),
        text("content-type"),
        text("x-signature"),
    );
    let Ok(sent) = chrono::DateTime::parse_from_rfc2822(date) else {
        return false;
    };
    if (sent.timestamp() - unix_secs()).abs() > DATE_SKEW {
        return false;
    }
    if md5 != md5_hex(body) {
        return false;
    }
    let expected = request_signature(secret, method.as_str(), md5, content_type, date, path);
    // A fake needs no constant-time compare; the real receiver (our integration) does.
    signature == expected
}

pub(super) fn handle(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let mut st = shared.lock();
    if let Some(status) = st.take_failure(path) {
        return amojo_error(status, "INJECTED_FAILURE", "injected failure");
    }
    let rest = path.trim_start_matches("/v2/origin/custom/");
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let first = segments.first().copied().unwrap_or("");
    let channel_id = first.split('_').next().unwrap_or("");
    let Some(channel) = st.channels.get(channel_id) else {
        return amojo_error(404, "ORIGIN_NOT_FOUND", "channel not found");
    };
    if !signature_valid(&channel.secret, method, path, headers, body) {
        return amojo_error(403, "ORIGIN_INVALID_SIGNATURE", "invalid signature");
    }
    let json_body = || serde_json::from_slice::<Value>(body).ok();
    match segments.as_slice() {
        [_, "connect"] if is_method(method, "POST") => {
            let Some(req) = json_body() else {
                return bad_request("invalid json");
            };
            let Some(amojo_id) = req["account_id"].as_str() else {
                return bad_request("account_id is required");
            };
            let Some(account) = st.account_by_amojo(amojo_id) else {
                return amojo_error(404, "ACCOUNT_NOT_FOUND", "account not found");
            };
            let scope_id = format!("{channel_id}_{amojo_id}");
            if let Some(channel) = st.channels.get_mut(channel_id) {
                channel.connections.insert(scope_id.clone(), account);
            }
            ok_json(json!({"account_id": amojo_id, "scope_id": scope_id,
                           "title": req["title"].as_str().unwrap_or(channel_id),
                           "hook_api_version": req["hook_api_version"].as_str().unwrap_or("v1"),
                           "is_time_window_disabled": req["is_time_window_disabled"].as_bool().unwrap_or(false)}))
        }
        [_, "disconnect"] if is_method(method, "DELETE") => {
            let Some(amojo_id) =
                json_body().and_then(|r| r["account_id"].as_str().map(str::to_owned))
            else {
                return bad_request("account_id is required");
            };
            let scope_id = format!("{channel_id}_{amojo_id}");
            if let Some(channel) = st.channels.get_mut(channel_id) {
                channel.connections.remove(&scope_id);
            }
            StatusCode::OK.into_response()
        }
        [scope, tail @ ..] => {
            let Some(account) = st
                .channels
                .get(channel_id)
                .and_then(|c| c.connections.get(*scope).copied())
            else {
                return amojo_error(
                    404,
                    "SCOPE_NOT_FOUND",
                    "channel is not connected to the account",
                );
            };
            let Some(mut acc) = st.accounts.remove(&account) else {
                return amojo_error(404, "SCOPE_NOT_FOUND", "account not found");
            };
            let response = scoped(&mut st, &mut acc, scope, tail, method, query, json_body());
            st.accounts.insert(acc.id, acc);
            response
        }
        [] => amojo_error(404, "NOT_FOUND", "not found"),
    }
}

fn scoped(
    st: &mut AmoState,
    acc: &mut Account,
    scope: &str,
    tail: &[&str],
    method: &Method,
    query: &str,
    body: Option<Value>,
) -> Response {
    let post = is_method(method, "POST");
    match tail {
        [] if post => match body {
            Some(body) => message(st, acc, scope, &body),
            None => bad_request("invalid json"),
        },
        ["chats"] if post => match body {
            Some(body) => create_chat(acc, scope, &body),
            None => bad_request("invalid json"),
        },
        ["typing"] if post => StatusCode::NO_CONTENT.into_response(),
        ["react"] if post => StatusCode::OK.into_response(),
        [msg_id, "delivery_status"] if post => match body {
            Some(body) => delivery_status(acc, scope, msg_id, &body),
            None => bad_request("invalid json"),
        },
        ["chats", chat_id, "history"] if is_method(method, "GET") => {
            history(acc, scope, chat_id, query)
        }
        _ => amojo_error(404, "NOT_FOUND", "not found"),
    }
}

fn client_user(user: &Value, client_id: &Value) -> Value {
    json!({"id": uuid::Uuid::new_v4().to_string(), "client_id": client_id,
           "name": user["name"].as_str().unwrap_or(""), "avatar": user["avatar"].as_str().unwrap_or(""),
           "phone": user["profile"]["phone"].as_str().unwrap_or(""),
           "email": user["profile"]["email"].as_str().unwrap_or("")})
}

/// `POST /{scope_id}/chats` (§4.4): idempotent per `conversation_id`.
fn create_chat(acc: &mut Account, scope: &str, body: &Value) -> Response {
    let (Some(conversation), Some(user_id)) = (
        body["conversation_id"].as_str(),
        body["user"]["id"].as_str(),
    ) else {
        return bad_request("conversation_id and user.id are required");
    };
    let chat = match acc
        .chats
        .iter()
        .position(|c| c.scope_id == scope && c.conversation_id.as_deref() == Some(conversation))
    {
        Some(i) => &acc.chats[i],
        None => {
            acc.chats.push(Chat {
                id: uuid::Uuid::new_v4().to_string(),
                scope_id: scope.to_owned(),
                conversation_id: Some(conversation.to_owned()),
                user: client_user(&body["user"], &json!(user_id)),
                source_external_id: body["source"]["external_id"].as_str().map(str::to_owned),
                messages: Vec::new(),
            });
            let last = acc.chats.len() - 1;
            &acc.chats[last]
        }
    };
    ok_json(json!({"id": chat.id, "user": chat.user}))
}

/// `POST /{scope_id}` with `new_message` or `edit_message` (§4.5).
fn message(st: &mut AmoState, acc: &mut Account, scope: &str, body: &Value) -> Response {
    let payload = &body["payload"];
    match body["event_type"].as_str() {
        Some("new_message") => new_message(st, acc, scope, payload),
        Some("edit_message") => edit_message(acc, scope, payload),
        _ => bad_request("unknown event_type"),
    }
}

fn new_message(st: &mut AmoState, acc: &mut Account, scope: &str, p: &Value) -> Response {
    let conversation = p["conversation_id"].as_str();
    let conversation_ref = p["conversation_ref_id"].as_str();
    if conversation.is_none() && conversation_ref.is_none() {
        return bad_request("conversation_id is required");
    }
    if !p["sender"]["id"].is_string() && !p["sender"]["ref_id"].is_string() {
        return bad_request("sender is required");
    }
    if !p["message"]["type"].is_string() {
        return bad_request("message.type is required");
    }
    if let Err(e) = check_content(&p["message"]) {
        return bad_request(&e);
    }
    let incoming = p["receiver"].is_null();
    let client = if incoming {
        &p["sender"]
    } else {
        &p["receiver"]
    };
    let found = acc.chats.iter().position(|c| {
        c.scope_id == scope
            && (conversation.is_some() && c.conversation_id.as_deref() == conversation
                || conversation_ref.is_some_and(|r| c.id == r))
    });
    let index = match found {
        Some(i) => {
            // A chat started on amoCRM's side gets bound to our id by the first message with both.
            if acc.chats[i].conversation_id.is_none() {
                acc.chats[i].conversation_id = conversation.map(str::to_owned);
            }
            i
        }
        None => {
            if conversation_ref.is_some() && conversation.is_none() {
                return amojo_error(404, "CHAT_NOT_FOUND", "chat not found");
            }
            acc.chats.push(Chat {
                id: uuid::Uuid::new_v4().to_string(),
                scope_id: scope.to_owned(),
                conversation_id: conversation.map(str::to_owned),
                user: client_user(client, &client["id"]),
                source_external_id: p["source"]["external_id"].as_str().map(str::to_owned),
                messages: Vec::new(),
            });
            acc.chats.len() - 1
        }
    };
    let ref_id = p["msgid"].clone();
    let chat = &acc.chats[index];
    // `msgid` is the integration's idempotency key: a repeated send answers as the first did.
    if let Some(existing) = chat
        .messages
        .iter()
        .find(|m| !ref_id.is_null() && m["msgid"] == ref_id)
    {
        return ok_json(
            json!({"new_message": {"conversation_id": chat.id, "sender_id": existing["sender_id"],
            "receiver_id": existing["receiver_id"], "msgid": existing["id"], "ref_id": ref_id}}),
        );
    }
    let (sender_id, receiver_id) = if incoming {
        (chat.user["id"].clone(), Value::Null)
    } else {
        let sender = p["sender"]["ref_id"]
            .as_str()
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        (json!(sender), chat.user["id"].clone())
    };
    let msg_id = uuid::Uuid::new_v4().to_string();
    let now = st.now();
    let stored = json!({
        "id": msg_id, "msgid": ref_id, "chat_id": chat.id, "conversation_id": chat.conversation_id,
        "scope_id": scope, "direction": if incoming { "incoming" } else { "outgoing" },
        "sender": p["sender"], "receiver": p["receiver"], "sender_id": sender_id, "receiver_id": receiver_id,
        "message": p["message"], "timestamp": p["timestamp"].as_i64().unwrap_or(now),
        "msec_timestamp": p["msec_timestamp"].as_i64().unwrap_or(now * 1000),
        "silent": p["silent"].as_bool().unwrap_or(false), "source": p["source"],
        "delivery_status": null, "error_code": null, "error": null,
    });
    let chat_id = chat.id.clone();
    if let Some(url) = p["message"]["media"].as_str().filter(|u| !u.is_empty()) {
        st.to_fetch.push((acc.id, msg_id.clone(), url.to_owned()));
    }
    acc.chats[index].messages.push(stored);
    if incoming && !p["silent"].as_bool().unwrap_or(false) {
        unsorted_side_effects(st, acc, index);
    }
    ok_json(
        json!({"new_message": {"conversation_id": chat_id, "sender_id": sender_id,
        "receiver_id": receiver_id, "msgid": msg_id, "ref_id": ref_id}}),
    )
}

/// What amoCRM does with a non-silent incoming message (§4.5, §6): a chat without a contact gets
/// one (name, phone, email from the profile); a contact without an open lead gets an Unsorted
/// (`chats`) lead in the source's pipeline or the main one. amoCRM does this asynchronously; the
/// fake does it before answering so tests need not poll. Such contacts carry `is_unsorted: true`
/// and stay out of list/search results until a lead of theirs leaves Unsorted (§3.10).
fn unsorted_side_effects(st: &mut AmoState, acc: &mut Account, index: usize) {
    let chat_id = acc.chats[index].id.clone();
    let user = acc.chats[index].user.clone();
    let source = acc.chats[index].source_external_id.clone();
    let admin = acc.admin_id();
    let now = st.now();
    let contact = acc
        .chat_links
        .iter()
        .find(|l| l["chat_id"] == json!(chat_id))
        .and_then(|l| l["contact_id"].as_i64())
        .filter(|c| acc.entity(Kind::Contacts, *c).is_some());
    let contact = match contact {
        Some(c) => c,
        None => {
            let id = st.id();
            let mut fields = Vec::new();
            for (code, key) in [("PHONE", "phone"), ("EMAIL", "email")] {
                let Some(value) = user[key].as_str().filter(|v| !v.is_empty()) else {
                    continue;
                };
                if let Some(field) = acc
                    .custom_fields
                    .get(&Kind::Contacts)
                    .and_then(|fs| fs.iter().find(|f| f["code"] == json!(code)))
                {
                    let e = field["enums"]
                        .as_array()
                        .and_then(|e| e.first())
                        .cloned()
                        .unwrap_or(Value::Null);
                    fields.push(json!({"field_id": field["id"], "field_name": field["name"], "field_code": code,
                        "field_type": "multitext", "values": [{"value": value, "enum_id": e["id"], "enum_code": e["value"]}]}));
                }
            }
            let name = user["name"].as_str().unwrap_or("").to_owned();
            let contact = json!({"id": id, "name": name, "first_name": name, "last_name": "",
                "responsible_user_id": admin, "group_id": 0, "created_by": 0, "updated_by": 0,
                "created_at": now, "updated_at": now, "closest_task_at": null, "is_deleted": false,
                "is_unsorted": true, "custom_fields_values": if fields.is_empty() { Value::Null } else { json!(fields) },
                "account_id": acc.id, "_embedded": {"tags": []}});
            acc.entities
                .entry(Kind::Contacts)
                .or_default()
                .insert(id, contact);
            acc.chat_links
                .push(json!({"chat_id": chat_id, "contact_id": id, "id": st.id()}));
            id
        }
    };
    let has_open = acc
        .linked((Kind::Contacts, contact), Kind::Leads)
        .iter()
        .any(|(l, _)| {
            acc.entity(Kind::Leads, *l)
                .is_some_and(|lead| !is_closed_status(lead["status_id"].as_i64()))
        });
    if has_open {
        return;
    }
    let pipeline = source
        .and_then(|ext| acc.sources.iter().find(|s| s["external_id"] == json!(ext)))
        .and_then(|s| s["pipeline_id"].as_i64())
        .or_else(|| acc.main_pipeline().and_then(|p| p["id"].as_i64()));
    let Some(pipeline) = pipeline else {
        return;
    };
    let Some(status) = acc.unsorted_status(pipeline) else {
        return;
    };
    let id = st.id();
    let name = user["name"].as_str().unwrap_or("");
    let lead = json!({"id": id, "name": format!("Сделка #{id}"), "price": 0, "responsible_user_id": admin,
        "group_id": 0, "status_id": status, "pipeline_id": pipeline, "loss_reason_id": null, "created_by": 0,
        "updated_by": 0, "created_at": now, "updated_at": now, "closed_at": null, "closest_task_at": null,
        "is_deleted": false, "custom_fields_values": null, "score": null, "account_id": acc.id,
        "labor_cost": null, "_embedded": {"tags": []}, "unsorted": {"category": "chats", "client": {"name": name}}});
    acc.entities
        .entry(Kind::Leads)
        .or_default()
        .insert(id, lead);
    acc.link((Kind::Leads, id), (Kind::Contacts, contact), true);
}

fn find_message<'a>(
    acc: &'a mut Account,
    scope: &str,
    id: Option<&str>,
    msgid: Option<&str>,
) -> Option<&'a mut Value> {
    acc.chats
        .iter_mut()
        .filter(|c| c.scope_id == scope)
        .flat_map(|c| c.messages.iter_mut())
        .find(|m| {
            id.is_some_and(|id| m["id"] == json!(id))
                || msgid.is_some_and(|msgid| m["msgid"] == json!(msgid))
        })
}

fn edit_message(acc: &mut Account, scope: &str, p: &Value) -> Response {
    let Some(m) = find_message(acc, scope, p["id"].as_str(), p["msgid"].as_str()) else {
        return amojo_error(404, "MESSAGE_NOT_FOUND", "message not found");
    };
    if let Some(text) = p["message"]["text"].as_str() {
        m["message"]["text"] = json!(text);
    }
    if let Some(status) = p["message"]
        .get("delivery_status")
        .filter(|s| s.is_object())
    {
        m["delivery_status"] = status["status_code"].clone();
        m["error_code"] = status["error_code"].clone();
        m["error"] = status["error"].clone();
    }
    ok_json(
        json!({"edit_message": {"conversation_id": m["chat_id"], "msgid": m["id"], "ref_id": m["msgid"]}}),
    )
}

/// `POST /{scope_id}/{msg_id}/delivery_status` (§4.7): both key names accepted.
fn delivery_status(acc: &mut Account, scope: &str, msg_id: &str, body: &Value) -> Response {
    let status = body["delivery_status"]
        .as_i64()
        .or_else(|| body["status_code"].as_i64());
    let Some(status) = status.filter(|s| matches!(s, 1 | 2 | -1)) else {
        return bad_request("delivery_status must be 1, 2 or -1");
    };
    if status == -1 && body["error"].as_str().is_none_or(str::is_empty) {
        return bad_request("error is required with delivery_status -1");
    }
    let Some(m) = find_message(acc, scope, Some(msg_id), None) else {
        return amojo_error(404, "MESSAGE_NOT_FOUND", "message not found");
    };
    m["delivery_status"] = json!(status);
    if status == -1 {
        m["error_code"] = json!(body["error_code"].as_i64().unwrap_or(905));
        m["error"] = body["error"].clone();
    }
    StatusCode::OK.into_response()
}

/// `GET /{scope_id}/chats/{chat_id}/history` (§4.8).
fn history(acc: &Account, scope: &str, chat_id: &str, query: &str) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let number = |key: &str, default: usize| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(default)
    };
    let (offset, limit) = (number("offset", 0), number("limit", 50).clamp(1, 50));
    let Some(chat) = acc
        .chats
        .iter()
        .find(|c| c.scope_id == scope && c.id == chat_id)
    else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let messages: Vec<Value> = chat
        .messages
        .iter()
        .rev()
        .skip(offset)
        .take(limit)
        .map(|m| {
            json!({"timestamp": m["timestamp"], "msec_timestamp": m["msec_timestamp"],
                   "sender": {"id": m["sender_id"], "name": m["sender"]["name"], "client_id": m["sender"]["id"]},
                   "receiver": {"id": m["receiver_id"]},
                   "message": {"id": m["id"], "client_id": m["msgid"], "type": m["message"]["type"],
                               "text": m["message"]["text"].as_str().unwrap_or(""), "media": m["message"]["media"].as_str().unwrap_or(""),
                               "thumbnail": "", "file_name": m["message"]["file_name"].as_str().unwrap_or(""),
                               "file_size": m["message"]["file_size"].as_i64().unwrap_or(0)}})
        })
        .collect();
    if messages.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    ok_json(json!({"messages": messages}))
}

pub(super) fn chat_json(acc: &Account, chat: &Chat) -> Value {
    let contact = acc
        .chat_links
        .iter()
        .find(|l| l["chat_id"] == json!(chat.id))
        .map(|l| l["contact_id"].clone())
        .unwrap_or(Value::Null);
    json!({"id": chat.id, "scope_id": chat.scope_id, "conversation_id": chat.conversation_id,
           "user": chat.user, "source": {"external_id": chat.source_external_id}, "contact_id": contact})
}

/// Stores a manager's answer and POSTs the v2 hook (§4.6) to the channel's webhook URL.
pub(super) async fn manager_replies(
    shared: &Arc<Shared>,
    account: i64,
    chat_ref: &str,
    text: &str,
) -> Result<u16, String> {
    let content =
        json!({"type": "text", "text": text, "media": "", "file_name": "", "file_size": 0});
    manager_sends(shared, account, chat_ref, content).await
}

/// Keeps a manager's file where amojo serves chat files and POSTs the hook carrying its URL.
pub(super) async fn manager_sends_file(
    shared: &Arc<Shared>,
    account: i64,
    chat_ref: &str,
    file: super::ManagerFile<'_>,
) -> Result<u16, String> {
    let id = uuid::Uuid::new_v4().to_string();
    let url = {
        let mut st = shared.lock();
        st.files
            .insert(id.clone(), (file.mime.to_owned(), file.bytes.to_vec()));
        let name: String =
            url::form_urlencoded::byte_serialize(file.file_name.as_bytes()).collect();
        format!("{}/attachments/{id}/{name}", shared.base_url)
    };
    let content = json!({"type": file.kind, "text": file.caption, "media": url,
                         "file_name": file.file_name, "file_size": file.bytes.len()});
    check_content(&content)?;
    manager_sends(shared, account, chat_ref, content).await
}

/// What §4.5 requires of a message's content: a known type, a text for `text`, a media URL
/// for every file type, and `file_name` and `file_size` for files, videos and pictures.
fn check_content(m: &Value) -> Result<(), String> {
    let kind = m["type"].as_str().unwrap_or("");
    let media = m["media"].as_str().unwrap_or("");
    match kind {
        "text" => {
            if !m["text"].is_string() {
                return Err("message.text is required for type text".into());
            }
        }
        "contact" | "location" | "sticker" => {}
        "file" | "video" | "picture" | "voice" | "audio" => {
            let url = url::Url::parse(media)
                .map_err(|_| format!("message.media must be a downloadable URL for type {kind}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "message.media must be an http(s) URL for type {kind}"
                ));
            }
            if matches!(kind, "file" | "video" | "picture") {
                if m["file_name"].as_str().is_none_or(str::is_empty) {
                    return Err(format!("message.file_name is required for type {kind}"));
                }
                if !m["file_size"].is_i64() && !m["file_size"].is_u64() {
                    return Err(format!("message.file_size is required for type {kind}"));
                }
            }
        }
        other => return Err(format!("unknown message.type {other}")),
    }
    Ok(())
}

/// `GET /attachments/{id}/{name}`: a file a manager sent, as amojo serves it (no session).
pub(super) fn serve_file(shared: &Shared, method: &Method, rest: &str) -> Response {
    if !is_method(method, "GET") {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let id = rest.split('/').next().unwrap_or("");
    match shared.lock().files.get(id) {
        Some((mime, bytes)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, mime.clone())],
            bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Downloads the files of accepted messages as amoCRM does, without cookies or session, and
/// records on each message `media_fetch`: `{status, content_type, content_disposition, size,
/// sha256}` or `{error}`.
pub(super) async fn fetch_media(shared: &Arc<Shared>) {
    let queued = std::mem::take(&mut shared.lock().to_fetch);
    for (account, msg_id, url) in queued {
        // A client of its own: nothing of Chatter's (a cookie, a header) comes along.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        let got = match client.get(&url).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let header_of = |n: header::HeaderName| {
                    r.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let content_type = header_of(header::CONTENT_TYPE);
                let disposition = header_of(header::CONTENT_DISPOSITION);
                match r.bytes().await {
                    Ok(b) => json!({"status": status, "content_type": content_type,
                                   "content_disposition": disposition, "size": b.len(),
                                   "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&b))}),
                    Err(e) => json!({"status": status, "error": e.to_string()}),
                }
            }
            Err(e) => json!({"error": e.to_string()}),
        };
        let mut st = shared.lock();
        if let Some(m) = st
            .accounts
            .get_mut(&account)
            .into_iter()
            .flat_map(|a| a.chats.iter_mut())
            .flat_map(|c| c.messages.iter_mut())
            .find(|m| m["id"] == json!(msg_id))
        {
            m["media_fetch"] = got;
        }
    }
}

/// Stores a manager's message (`content`: the hook's `message.message` without its id) and
/// POSTs the v2 hook (§4.6) to the channel's webhook URL.
async fn manager_sends(
    shared: &Arc<Shared>,
    account: i64,
    chat_ref: &str,
    content: Value,
) -> Result<u16, String> {
    let (url, secret, body) = {
        let mut st = shared.lock();
        let now = st.now();
        let channels = &st.channels;
        let acc = st.accounts.get(&account).ok_or("unknown account")?;
        let chat = acc
            .chats
            .iter()
            .position(|c| c.id == chat_ref || c.conversation_id.as_deref() == Some(chat_ref))
            .ok_or("unknown chat")?;
        let scope = acc.chats[chat].scope_id.clone();
        let channel_id = scope.split('_').next().unwrap_or("");
        let channel = channels.get(channel_id).ok_or("unknown channel")?;
        if !channel.connections.contains_key(&scope) {
            return Err("the channel is disconnected from the account".to_owned());
        }
        let url = channel
            .webhook_url
            .as_deref()
            .ok_or("the channel has no webhook URL")?
            .replace(":scope_id", &scope);
        let secret = channel.secret.clone();
        let manager = acc
            .users
            .get(1)
            .or_else(|| acc.users.first())
            .cloned()
            .unwrap_or(Value::Null);
        let amojo_id = acc.amojo_id.clone();
        let Some(acc) = st.accounts.get_mut(&account) else {
            return Err("unknown account".to_owned());
        };
        let chat = &mut acc.chats[chat];
        let msg_id = uuid::Uuid::new_v4().to_string();
        let msec = now * 1000 + i64::from(rand::random::<u16>() % 1000);
        let sender = json!({"id": manager["amojo_id"], "name": manager["name"]});
        let receiver = json!({"id": chat.user["id"], "client_id": chat.user["client_id"], "name": chat.user["name"],
                              "phone": chat.user["phone"], "email": chat.user["email"]});
        let hook = json!({
            "account_id": amojo_id, "time": now,
            "message": {
                "receiver": receiver, "sender": sender,
                "conversation": {"id": chat.id, "client_id": chat.conversation_id},
                "source": {"external_id": chat.source_external_id},
                "timestamp": now, "msec_timestamp": msec,
                "message": {"id": msg_id, "type": content["type"], "text": content["text"], "tag": "", "markup": null,
                            "media": content["media"], "thumbnail": "", "file_name": content["file_name"],
                            "file_size": content["file_size"]},
            },
        });
        chat.messages.push(json!({
            "id": msg_id, "msgid": null, "chat_id": chat.id, "conversation_id": chat.conversation_id,
            "scope_id": scope, "direction": "outgoing", "sender": sender, "receiver": receiver,
            "sender_id": manager["amojo_id"], "receiver_id": chat.user["id"],
            "message": content, "timestamp": now, "msec_timestamp": msec,
            "silent": false, "source": {"external_id": chat.source_external_id},
            "delivery_status": null, "error_code": null, "error": null,
        }));
        (url, secret, hook.to_string().into_bytes())
    };
    let signature = hmac_sha1_hex(&secret, &body);
    let response = shared
        .http
        .post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "amoCRM amoJo/1.0")
        .header("X-Signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("webhook delivery failed: {e}"))?;
    Ok(response.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "5a44c5dff55f3c15a4cce8d7c4cc27e207c7e189";

    #[test]
    fn signs_the_spec_vectors() {
        let body = r#"{"account_id":"af9945ff-1490-4cad-807d-945c15d88bec","title":"ScopeTitle","hook_api_version":"v2"}"#;
        let md5 = md5_hex(body.as_bytes());
        assert_eq!(md5, "a5e8ae04332a6d0aac15f01ad05d40e3");
        let post = request_signature(
            SECRET,
            "POST",
            &md5,
            "application/json",
            "Thu, 29 Oct 2020 11:59:55 +0000",
            "/v2/origin/custom/f90ba33d-c9d9-44da-b76c-c349b0ecbe41/connect",
        );
        assert_eq!(post, "e0dcc1936d766a7d5f53fe19887fafa50bef92e0");
        let get = request_signature(
            SECRET,
            "get",
            &md5_hex(b""),
            "application/json",
            "Thu, 29 Oct 2020 12:00:00 +0000",
            "/v2/origin/custom/f90ba33d-c9d9-44da-b76c-c349b0ecbe41_af9945ff-1490-4cad-807d-945c15d88bec/chats/6cbab3d5-c4c1-46ff-b710-ad59ad10805f/history",
        );
        assert_eq!(get, "45f62b19780e133526d67e7506b9db514abc33d5");
    }
}
