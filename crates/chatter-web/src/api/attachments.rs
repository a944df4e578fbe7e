//! Files through the API: sending one to the customer, `POST
//! /api/v1/conversations/{id}/attachments`, the API side of the reply box's file
//! (`multipart/form-data`: `file`, optional `text` as its caption and `reply_to`), with the same
//! checks and messages; and downloading a message's kept file, `GET
//! /api/v1/messages/{id}/attachments/{index}` (the link an API source's webhook carries).

use super::conversations::message_out;
use super::{body, ApiActor, ApiError, ApiErrorBody, ApiPath, FieldErrorOut, MessageOut};
use crate::i18n::{Lang, Tr};
use crate::upload::{self, UploadError};
use crate::AppState;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter_core::{inbox, CoreError};
use chatter_domain::{ConversationId, MessageId};
use utoipa::ToSchema;
use uuid::Uuid;

/// The form of `POST /api/v1/conversations/{id}/attachments`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AttachmentIn {
    /// The file, with its name in the part's `filename`. Refused: empty, a program or script
    /// (`.exe`, `.bat`, `.sh`, `.msi`, `.apk` … or a Windows/ELF/Mach-O header), larger than
    /// the messenger's limit (413). Pictures (PNG, JPEG, GIF, WebP) within the messenger's
    /// picture limit go as pictures, anything else (SVG too) as a document.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// The caption, up to 1,024 characters.
    #[schema(max_length = 1024)]
    pub text: Option<String>,
    /// Our id of the message this answers (empty: none).
    #[schema(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    pub reply_to: Option<Uuid>,
}

/// Refusals with the English message of the reply box, naming the field.
fn refused(status: StatusCode, code: &str, e: &CoreError) -> Response {
    let CoreError::Invalid(fields) = e else {
        return body(status, code, "refused", Vec::new());
    };
    let tr = Tr(Lang::En);
    let message = fields
        .iter()
        .map(|f| format!("`{}`: {}", f.field, tr.field(f)))
        .collect::<Vec<_>>()
        .join(" ");
    let fields = fields
        .iter()
        .map(|f| FieldErrorOut {
            field: f.field.into(),
            code: f.key.trim_start_matches("err.").into(),
            limit: f.limit,
        })
        .collect();
    body(status, code, &message, fields)
}

/// Sends a file to the customer: kept, stored as a `pending` message with the attachment and
/// delivered by a job like a text reply (poll the messages to see it become `sent`).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/attachments", tag = "conversations",
    params(("id" = Uuid, Path, description = "conversation id")),
    request_body(content = AttachmentIn, content_type = "multipart/form-data"),
    responses((status = 201, body = MessageOut), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID (`invalid_path`), or the body is not well-formed multipart (`invalid_body`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 403, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such conversation (or `reply_to` message) in this company"), (status = 413, body = ApiErrorBody, content_type = "application/problem+json", description = "`file` is larger than the messenger's limit (`file_too_large`, `limit` in MB)"), (status = 415, body = ApiErrorBody, content_type = "application/problem+json", description = "the body is not `multipart/form-data`"), (status = 422, body = ApiErrorBody, content_type = "application/problem+json", description = "`file` missing, empty, a program, not a picture the messenger takes (`file_images_only`: Avito takes only JPEG, PNG, GIF, BMP and HEIC pictures, known by their first bytes), or the messenger cannot send files; `text` too long; `reply_to` not a UUID")))]
pub async fn upload_attachment(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath(id): ApiPath<ConversationId>,
    headers: HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let mp = match mp {
        Ok(mp) if multipart => mp,
        Err(_) if multipart => {
            return Ok(body(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "the multipart body has no valid boundary",
                Vec::new(),
            ))
        }
        _ => {
            return Ok(body(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the file as `multipart/form-data` with the field `file`",
                Vec::new(),
            ))
        }
    };
    let rules = match inbox::file_rules(&st.core, &a, id).await {
        Ok(r) => r,
        Err(e @ CoreError::Invalid(_)) => {
            return Ok(refused(StatusCode::UNPROCESSABLE_ENTITY, "invalid", &e))
        }
        Err(e) => return Err(e.into()),
    };
    let form = match upload::read(mp, &rules).await {
        Ok(f) => f,
        Err(UploadError::TooLarge) => {
            let e = inbox::file_too_large(&rules);
            return Ok(refused(StatusCode::PAYLOAD_TOO_LARGE, "too_large", &e));
        }
        Err(UploadError::Malformed(m)) => {
            return Ok(body(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                &format!("the multipart body cannot be read: {m}"),
                Vec::new(),
            ))
        }
    };
    let reply_to = match form.reply_to.as_deref().map(|r| r.trim().parse::<Uuid>()) {
        None => None,
        Some(Ok(r)) => Some(MessageId(r)),
        Some(Err(_)) => {
            let e = CoreError::field("reply_to", "err.invalid");
            return Ok(refused(StatusCode::UNPROCESSABLE_ENTITY, "invalid", &e));
        }
    };
    let Some(file) = form.file else {
        let e = CoreError::field("file", "err.file_required");
        return Ok(refused(StatusCode::UNPROCESSABLE_ENTITY, "invalid", &e));
    };
    match inbox::reply_file(&st.core, &a, id, file, &form.text, reply_to).await {
        Ok(m) => Ok((StatusCode::CREATED, Json(message_out(m))).into_response()),
        Err(CoreError::Invalid(f)) if f.iter().any(|e| e.field == "reply_to") => Ok(body(
            StatusCode::NOT_FOUND,
            "not_found",
            "`reply_to` is not a message of this conversation; use the `id` of one of its messages (GET /api/v1/conversations/{id}/messages)",
            vec![FieldErrorOut {
                field: "reply_to".into(),
                code: "reply_to_foreign".into(),
                limit: None,
            }],
        )),
        Err(e) if inbox::is_too_large(&e) => {
            Ok(refused(StatusCode::PAYLOAD_TOO_LARGE, "too_large", &e))
        }
        Err(e @ CoreError::Invalid(_)) => {
            Ok(refused(StatusCode::UNPROCESSABLE_ENTITY, "invalid", &e))
        }
        Err(e) => Err(e.into()),
    }
}

/// Downloads a message's kept file (a customer's, once fetched from the messenger, or one a
/// manager sent): its bytes as `application/octet-stream` under its name.
#[utoipa::path(get, path = "/api/v1/messages/{id}/attachments/{index}", tag = "conversations",
    params(("id" = Uuid, Path, description = "message id"), ("index" = u32, Path, description = "the attachment's place in the message's `attachments`, from 0")),
    responses((status = 200, description = "the file", content_type = "application/octet-stream", body = Vec<u8>), (status = 400, body = ApiErrorBody, content_type = "application/problem+json", description = "`id` is not a UUID or `index` not a number (`invalid_path`)"), (status = 401, body = ApiErrorBody, content_type = "application/problem+json"), (status = 404, body = ApiErrorBody, content_type = "application/problem+json", description = "no such message in this company, no such attachment, or the file is not kept yet")))]
pub async fn download_attachment(
    State(st): State<AppState>,
    ApiActor(a): ApiActor,
    ApiPath((id, index)): ApiPath<(MessageId, u32)>,
) -> Result<Response, ApiError> {
    let m = inbox::get_message(&st.core, &a, id).await?;
    let index = usize::try_from(index).unwrap_or(usize::MAX);
    let atts = chatter_core::attachments::attachments_of(&m);
    let att = atts.get(index).ok_or(CoreError::NotFound)?;
    let blob = att.blob.as_deref().ok_or(CoreError::NotFound)?;
    let bytes = chatter_core::blobs::get(&st.core.blobs, blob)
        .await
        .ok_or(CoreError::NotFound)?;
    Ok(crate::ui::inbox::files::served(att, index, bytes, None))
}
