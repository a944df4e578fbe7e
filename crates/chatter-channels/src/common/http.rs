//! HTTP reading rules shared by every client: a provider's answer read whole (status,
//! `Retry-After`, body) and its JSON read back, the `Retry-After` header, bodies read with a size
//! limit (a provider's file is never trusted to be as small as it says), and plain media URLs.

use crate::common::{too_large, transport_error};
use crate::{ChannelError, Download};
use serde::de::DeserializeOwned;

/// `retry_after` for a media host's 429 without `Retry-After`.
const DOWNLOAD_RETRY_AFTER_SECS: u64 = 1;

/// Sends `req` and reads the whole answer: its HTTP status, `Retry-After` (seconds) and body.
/// `what` names the call in the message of a network failure (`transport_error`).
pub async fn read_answer(
    what: &str,
    req: reqwest::RequestBuilder,
) -> Result<(u16, Option<u64>, bytes::Bytes), ChannelError> {
    let resp = req.send().await.map_err(|e| transport_error(what, e))?;
    let status = resp.status().as_u16();
    let retry_after = retry_after_header(resp.headers());
    let body = resp.bytes().await.map_err(|e| transport_error(what, e))?;
    Ok((status, retry_after, body))
}

/// The JSON of a successful (2xx) answer from `provider`. A body that does not read is
/// `Permanent`, never retried: the call may well have taken effect (a message sent).
pub fn parse_success<T: DeserializeOwned>(provider: &str, body: &[u8]) -> Result<T, ChannelError> {
    serde_json::from_slice(body)
        .map_err(|e| ChannelError::Permanent(format!("unexpected answer from {provider}: {e}")))
}

/// `Retry-After` in seconds, when the server sent one.
pub fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads a successful download's body, refusing more than `limit` bytes: at once when
/// `Content-Length` says so, else as soon as the chunks read exceed it.
pub async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, ChannelError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport_error("download", e))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(bytes::Bytes::from(buf))
}

/// GETs a media URL with no credentials (the URL carries its own access key), refusing bodies
/// over `limit` bytes.
pub async fn download_url(
    http: &reqwest::Client,
    url: &str,
    limit: usize,
) -> Result<Download, ChannelError> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| transport_error("download", e))?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        return Err(match status {
            429 => ChannelError::RateLimited {
                retry_after_secs: retry_after_header(resp.headers())
                    .unwrap_or(DOWNLOAD_RETRY_AFTER_SECS),
                message: "download: HTTP 429".into(),
            },
            500..=599 => ChannelError::Transient(format!("download: HTTP {status}")),
            _ => ChannelError::Permanent(format!("download: HTTP {status} (link expired?)")),
        });
    }
    let mime_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(Download {
        bytes: read_limited(resp, limit).await?,
        mime_type,
        file_name: None,
    })
}
