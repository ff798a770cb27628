//! `GET /api/v1/media/{chat}:{message_id}`: the photo or document of an
//! inbound message, streamed from Telegram (the `mediaUrl` of its event).
//!
//! The first chunk is fetched before the answer starts, so a file Telegram
//! will not serve is a JSON error, never a `200` cut short. A `Range:
//! bytes=…` header (one range) gets `206` with exactly those bytes; a range
//! that cannot be served gets `416` saying why.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::answer::Failure;
use super::query::Query;
use super::request_id::RequestId;
use crate::bots::Caller;
use crate::download::{DownloadError, MediaId, Span};
use crate::error::ApiError;

pub async fn get_media(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    match fetch(&api, &caller, raw.as_deref(), &id, &headers).await {
        Ok(response) => response,
        Err(Refusal::Failure(failure)) => failure.answer(&request_id),
        Err(Refusal::Range { reason, size }) => {
            let failure = Failure::Protocol {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                message: reason,
            };
            let mut response = failure.answer(&request_id);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
    }
}

/// Why no file is sent.
enum Refusal {
    Failure(Failure),
    /// 416, with the file's size for `Content-Range`.
    Range {
        reason: String,
        size: i64,
    },
}

impl<F: Into<Failure>> From<F> for Refusal {
    fn from(failure: F) -> Self {
        Refusal::Failure(failure.into())
    }
}

async fn fetch(
    api: &ApiState,
    caller: &Caller,
    raw: Option<&str>,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    let media = MediaId::parse(id).map_err(ApiError::invalid)?;
    // Through the bot's own connection: it reaches its own chats only.
    let bot = caller.bot(&api.bots, &Query::parse(raw, &[])?)?;
    let Some(downloads) = &bot.downloads() else {
        return Err(
            Failure::Unavailable("no Telegram connection to fetch files with".into()).into(),
        );
    };
    let file = downloads.locate(media).await.map_err(refused)?;
    let size = file.size;
    let asked = match headers.get(header::RANGE) {
        None => None,
        Some(value) => {
            let value = value.to_str().unwrap_or("");
            Some(requested(value, size).map_err(|reason| Refusal::Range { reason, size })?)
        }
    };
    let span = asked.unwrap_or_else(|| Span::whole(size));
    let content_type = HeaderValue::from_str(&file.content_type).ok();
    let disposition = file.filename.as_deref().and_then(disposition);
    let download = downloads.open(media, file, span).await.map_err(refused)?;
    let status = if asked.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = (status, Body::new(download.into_body())).into_response();
    let headers = response.headers_mut();
    if let Some(value) = content_type {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(span.len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if asked.is_some()
        && let Ok(value) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{size}",
            span.start,
            span.start + span.len - 1
        ))
    {
        headers.insert(header::CONTENT_RANGE, value);
    }
    if let Some(value) = disposition {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The answer to a file that cannot be fetched.
fn refused(error: DownloadError) -> Refusal {
    match error {
        DownloadError::NoMedia(_) => Failure::NotFound(error.to_string()).into(),
        _ => Failure::Unavailable(error.to_string()).into(),
    }
}

/// The bytes of a `size`-byte file a `Range` header value asks for: one
/// range of bytes, `A-B`, `A-` or `-N` (the last N); the error says why
/// it cannot be served.
fn requested(range: &str, size: i64) -> Result<Span, String> {
    let size = u64::try_from(size).unwrap_or(0);
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Err(format!(
            "the Range header must be `bytes=START-END` (got `{range}`)"
        ));
    };
    if spec.contains(',') {
        return Err("the Range header may name one range only".into());
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Err(format!(
            "the Range header must be `bytes=START-END` (got `{range}`)"
        ));
    };
    let number = |text: &str| {
        text.trim()
            .parse::<u64>()
            .map_err(|_| format!("the Range header's `{text}` is not a byte position"))
    };
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => return Err("the Range header names no bytes".into()),
        // The last N bytes.
        (true, false) => {
            let suffix = number(last)?;
            if suffix == 0 || size == 0 {
                return Err(format!("the range `{spec}` is empty in a {size}-byte file"));
            }
            (size.saturating_sub(suffix), size - 1)
        }
        (false, true) => (number(first)?, size.saturating_sub(1)),
        (false, false) => {
            let (start, end) = (number(first)?, number(last)?);
            if end < start {
                return Err(format!("the range `{spec}` ends before it starts"));
            }
            (start, end.min(size.saturating_sub(1)))
        }
    };
    if start >= size {
        return Err(format!(
            "the range `{spec}` starts beyond the {size}-byte file"
        ));
    }
    Ok(Span {
        start,
        len: end - start + 1,
    })
}

/// `inline; filename="..."` when the name is plain enough for a header.
fn disposition(filename: &str) -> Option<HeaderValue> {
    let safe = filename
        .chars()
        .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ');
    safe.then(|| HeaderValue::from_str(&format!("inline; filename=\"{filename}\"")).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_http_says() {
        let span = |start, len| Ok(Span { start, len });
        assert_eq!(requested("bytes=0-99", 1000), span(0, 100));
        assert_eq!(requested("bytes=900-", 1000), span(900, 100));
        assert_eq!(requested("bytes=-10", 1000), span(990, 10));
        assert_eq!(requested("bytes=-5000", 1000), span(0, 1000));
        assert_eq!(requested("bytes=990-5000", 1000), span(990, 10));
        assert_eq!(requested(" bytes=5-5", 1000), span(5, 1));
    }

    #[test]
    fn unservable_ranges_say_why() {
        let why = |range, size| requested(range, size).unwrap_err();
        assert!(why("bytes=1000-", 1000).contains("beyond the 1000-byte file"));
        assert!(why("bytes=5-4", 1000).contains("ends before it starts"));
        assert!(why("bytes=0-1,5-6", 1000).contains("one range only"));
        assert!(why("items=0-1", 1000).contains("bytes=START-END"));
        assert!(why("bytes=x-1", 1000).contains("`x` is not a byte position"));
        assert!(why("bytes=-0", 1000).contains("empty"));
        assert!(why("bytes=0-0", 0).contains("beyond the 0-byte file"));
        assert!(why("bytes=-", 1000).contains("names no bytes"));
    }
}
