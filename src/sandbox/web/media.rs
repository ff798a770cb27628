//! `GET /media/{message_id}?user=ID&bot=ID|group=ID`: the photo or document
//! of a message in that user's chat (with the bot, or the group), as the sandbox's own bytes (the deterministic content
//! `upload.getFile` serves), streamed in chunks so a large file costs no
//! memory. The bytes are not a real image: the page links them rather than
//! showing a preview.

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::Value;

use super::{Viewer, Web, view, viewer};
use crate::sandbox::telegram::file_content;

const CHUNK: usize = 64 * 1024;

/// What a file-like media needs to be served.
struct File {
    id: i64,
    size: u64,
    mime_type: String,
    file_name: String,
}

impl File {
    fn of(media: &Value) -> Option<File> {
        let kind = media["kind"].as_str()?;
        let default_name = match kind {
            "photo" => "photo.jpg",
            "document" => "file",
            _ => return None,
        };
        Some(File {
            id: media["id"].as_i64()?,
            size: media["size"].as_u64()?,
            mime_type: media["mime_type"]
                .as_str()
                .unwrap_or("application/octet-stream")
                .to_owned(),
            file_name: media["file_name"]
                .as_str()
                .unwrap_or(default_name)
                .to_owned(),
        })
    }
}

pub(super) async fn download(
    State(web): State<Web>,
    UrlPath(message_id): UrlPath<i64>,
    Query(query): Query<Viewer>,
) -> Response {
    let not_found = |why: &str| (StatusCode::NOT_FOUND, format!("{why}\n")).into_response();
    if query.user.is_none() {
        return not_found("?user=ID is required");
    }
    let shown = viewer(&web, query);
    let chat = view::chat_of(&web.control, shown).filter(|_| shown.user == query.user);
    let Some(chat) = chat else {
        return not_found("no such user");
    };
    let media = chat["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"].as_i64() == Some(message_id))
        .map(|m| &m["media"]);
    let Some(file) = media.and_then(File::of) else {
        return not_found("no photo or document in that message of this chat");
    };
    let File {
        id,
        size,
        mime_type,
        file_name,
    } = file;
    let chunks = stream::unfold(0u64, move |offset| async move {
        (offset < size).then(|| {
            let len = usize::try_from((size - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
            let bytes = Bytes::from(file_content(id, offset, len));
            (
                Ok::<_, std::convert::Infallible>(bytes),
                offset + len as u64,
            )
        })
    });
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file_name.replace(['"', '\\', '\r', '\n'], "_")
    );
    (
        [
            (header::CONTENT_TYPE, mime_type),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}
