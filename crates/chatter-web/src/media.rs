//! Signed links to stored files (`chatter_core::media_links`): `GET /media/{message id}/{index}
//! ?expires=…&sig=…`, opened without a session by amoCRM (which downloads customers' files from
//! them), by whoever follows a deal note's link, and by an SMS customer. A changed or unsigned
//! link answers 403, an expired one 410, a file that is gone 404: each in plain words saying
//! what to do. The file goes with its real type (pictures by their bytes; anything a browser
//! could run as opaque bytes to download), its name, and the sandboxing CSP of every kept file.

use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chatter_core::media_links::{self, Refusal};
use chatter_domain::MessageId;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new().route("/media/{message_id}/{index}", get(file))
}

#[derive(Deserialize)]
struct Signed {
    expires: Option<String>,
    sig: Option<String>,
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        text,
    )
        .into_response()
}

fn bad_signature() -> Response {
    plain(
        StatusCode::FORBIDDEN,
        "Ссылка на файл недействительна: она изменена или неполна. Откройте файл в Chatter или попросите новую ссылку.\n\
         This file link is not valid: it was changed or cut short. Open the file in Chatter or ask for a new link.\n"
            .to_owned(),
    )
}

async fn file(
    State(st): State<AppState>,
    Path((message_id, index)): Path<(String, String)>,
    Query(q): Query<Signed>,
) -> Response {
    let (Ok(message_id), Ok(index), Some(Ok(expires)), Some(sig)) = (
        message_id.parse::<uuid::Uuid>(),
        index.parse::<usize>(),
        q.expires.as_deref().map(str::parse::<i64>),
        q.sig.as_deref(),
    ) else {
        return bad_signature();
    };
    match media_links::open(&st.core, MessageId(message_id), index, expires, sig).await {
        Ok(f) => {
            let name = f.attachment.file_name.clone().unwrap_or_else(|| {
                format!("{}-{index}", f.attachment.kind)
            });
            let kind = if f.inline { "inline" } else { "attachment" };
            (
                [
                    (header::CONTENT_TYPE, f.content_type.clone()),
                    (
                        header::CONTENT_DISPOSITION,
                        crate::ui::inbox::files::content_disposition(kind, &name),
                    ),
                    (
                        header::CONTENT_SECURITY_POLICY,
                        crate::security::FILE_CSP.to_owned(),
                    ),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                    (header::CACHE_CONTROL, "private, max-age=3600".to_owned()),
                ],
                f.bytes,
            )
                .into_response()
        }
        Err(Refusal::BadSignature) => bad_signature(),
        Err(Refusal::Expired { at }) => {
            let when = chrono::DateTime::from_timestamp(at, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            plain(
                StatusCode::GONE,
                format!(
                    "Срок действия ссылки на файл истёк ({when}). Откройте файл в Chatter или попросите новую ссылку.\n\
                     This file link expired ({when}). Open the file in Chatter or ask for a new link.\n"
                ),
            )
        }
        Err(Refusal::Missing) => plain(
            StatusCode::NOT_FOUND,
            "Файла больше нет в Chatter (сообщение удалено или файл ещё не скачан у мессенджера).\n\
             The file is not in Chatter (the message was deleted, or the file is not fetched from the messenger yet).\n"
                .to_owned(),
        ),
    }
}
