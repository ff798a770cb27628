//! `GET /api/v1/media/{chat}:{message_id}`: the photo or document of an
//! inbound message, streamed from Telegram (the `mediaUrl` of its event).

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::answer::Failure;
use super::query::Query;
use super::request_id::RequestId;
use crate::bots::Caller;
use crate::download::{DownloadError, MediaId};
use crate::error::ApiError;

pub async fn get_media(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    match fetch(&api, &caller, raw.as_deref(), &id).await {
        Ok(response) => response,
        Err(failure) => failure.answer(&request_id),
    }
}

async fn fetch(
    api: &ApiState,
    caller: &Caller,
    raw: Option<&str>,
    id: &str,
) -> Result<Response, Failure> {
    let media = MediaId::parse(id).map_err(ApiError::invalid)?;
    // Through the bot's own connection: it reaches its own chats only.
    let bot = caller.bot(&api.bots, &Query::parse(raw, &[])?)?;
    let Some(downloads) = &bot.downloads() else {
        return Err(Failure::Unavailable(
            "no Telegram connection to fetch files with".into(),
        ));
    };
    let file = downloads.locate(media).await.map_err(|error| match error {
        DownloadError::NoMedia(_) => Failure::NotFound(error.to_string()),
        DownloadError::Telegram(_) => Failure::Unavailable(error.to_string()),
    })?;
    let mut response = (StatusCode::OK, Body::new(downloads.stream(&file))).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&file.content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    if let Some(value) = file.filename.as_deref().and_then(disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `inline; filename="..."` when the name is plain enough for a header.
fn disposition(filename: &str) -> Option<HeaderValue> {
    let safe = filename
        .chars()
        .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ');
    safe.then(|| HeaderValue::from_str(&format!("inline; filename=\"{filename}\"")).ok())
        .flatten()
}
