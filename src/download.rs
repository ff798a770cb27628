//! Files users sent, fetched from Telegram on demand.
//!
//! Inbound events do not carry file bytes: their `mediaUrl` is
//! `/api/v1/media/{chat}:{message_id}`. Resolving it reads the message
//! again (`messages.getMessages`, or `channels.getMessages` in a channel),
//! which also yields a fresh `file_reference`, and streams the photo or
//! document with `upload.getFile` chunk by chunk, so nothing is held in
//! memory or on disk beyond one chunk.

use std::fmt;

use bytes::Bytes;
use grammers_client::Client;
use grammers_mtsender::InvocationError;
use grammers_tl_types as tl;
use http_body_util::channel::{Channel, Sender};

use crate::chat::{ChatId, Peer};

/// `upload.getFile` chunk size: a multiple of 4 KiB that divides 1 MiB.
const CHUNK: i32 = 512 * 1024;

/// A message's media, as named in a `mediaUrl`: `{chat}:{message_id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaId {
    pub chat: ChatId,
    pub message_id: i32,
}

impl MediaId {
    /// Parses `{chat}:{message_id}`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (chat, message) = text
            .split_once(':')
            .ok_or_else(|| format!("media id `{text}` must be CHAT:MESSAGE_ID"))?;
        let chat = chat
            .parse::<i64>()
            .ok()
            .and_then(|chat| ChatId::new(chat).ok())
            .ok_or_else(|| format!("media id `{text}`: `{chat}` is not a chat id"))?;
        let message_id = message
            .parse::<i32>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("media id `{text}`: `{message}` is not a message id"))?;
        Ok(MediaId { chat, message_id })
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.chat.get(), self.message_id)
    }
}

/// Why a file cannot be fetched.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("message {0} has no photo or document")]
    NoMedia(MediaId),
    #[error("Telegram: {0}")]
    Telegram(#[from] InvocationError),
}

/// A file ready to stream.
#[derive(Debug, Clone)]
pub struct File {
    pub content_type: String,
    pub filename: Option<String>,
    pub size: i64,
    location: tl::enums::InputFileLocation,
}

/// Fetches files through the bot's connection.
#[derive(Clone)]
pub struct Downloads {
    client: Client,
}

impl Downloads {
    pub fn new(client: Client) -> Self {
        Downloads { client }
    }

    /// Finds the photo or document of `media` (with a fresh file reference).
    pub async fn locate(&self, media: MediaId) -> Result<File, DownloadError> {
        let id = vec![tl::enums::InputMessage::Id(tl::types::InputMessageId {
            id: media.message_id,
        })];
        let messages = match media.chat.peer() {
            Peer::Channel(channel_id) => {
                let channel = tl::types::InputChannel {
                    channel_id,
                    access_hash: 0,
                }
                .into();
                self.client
                    .invoke(&tl::functions::channels::GetMessages { channel, id })
                    .await?
            }
            Peer::User(_) | Peer::Group(_) => {
                self.client
                    .invoke(&tl::functions::messages::GetMessages { id })
                    .await?
            }
        };
        let list = match messages {
            tl::enums::messages::Messages::Messages(m) => m.messages,
            tl::enums::messages::Messages::Slice(m) => m.messages,
            tl::enums::messages::Messages::ChannelMessages(m) => m.messages,
            tl::enums::messages::Messages::NotModified(_) => Vec::new(),
        };
        list.into_iter()
            .find_map(|message| match message {
                tl::enums::Message::Message(m) if m.id == media.message_id => file_of(m.media?),
                _ => None,
            })
            .ok_or(DownloadError::NoMedia(media))
    }

    /// The file's bytes as an HTTP body, fetched chunk by chunk as it is
    /// read; a failure mid-way ends the body with an error.
    pub fn stream(&self, file: &File) -> Channel<Bytes, std::io::Error> {
        let (tx, body) = Channel::new(2);
        tokio::spawn(feed(self.client.clone(), file.location.clone(), tx));
        body
    }
}

async fn feed(
    client: Client,
    location: tl::enums::InputFileLocation,
    mut tx: Sender<Bytes, std::io::Error>,
) {
    let mut offset = 0i64;
    loop {
        let request = tl::functions::upload::GetFile {
            precise: false,
            cdn_supported: false,
            location: location.clone(),
            offset,
            limit: CHUNK,
        };
        let bytes = match client.invoke(&request).await {
            Ok(tl::enums::upload::File::File(file)) => file.bytes,
            Ok(tl::enums::upload::File::CdnRedirect(_)) => {
                tx.abort(std::io::Error::other("Telegram redirected to a CDN"));
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "file download failed");
                tx.abort(std::io::Error::other(error.to_string()));
                return;
            }
        };
        let len = bytes.len();
        if len > 0 && tx.send_data(Bytes::from(bytes)).await.is_err() {
            return; // the client went away
        }
        if len < CHUNK as usize {
            return;
        }
        offset += i64::from(CHUNK);
    }
}

fn file_of(media: tl::enums::MessageMedia) -> Option<File> {
    match media {
        tl::enums::MessageMedia::Photo(photo) => match photo.photo? {
            tl::enums::Photo::Photo(photo) => {
                let (thumb_size, size) = largest(&photo.sizes)?;
                Some(File {
                    content_type: "image/jpeg".into(),
                    filename: None,
                    size,
                    location: tl::types::InputPhotoFileLocation {
                        id: photo.id,
                        access_hash: photo.access_hash,
                        file_reference: photo.file_reference,
                        thumb_size,
                    }
                    .into(),
                })
            }
            tl::enums::Photo::Empty(_) => None,
        },
        tl::enums::MessageMedia::Document(document) => match document.document? {
            tl::enums::Document::Document(document) => Some(File {
                content_type: document.mime_type.clone(),
                filename: document.attributes.iter().find_map(|a| match a {
                    tl::enums::DocumentAttribute::Filename(f) => Some(f.file_name.clone()),
                    _ => None,
                }),
                size: document.size,
                location: tl::types::InputDocumentFileLocation {
                    id: document.id,
                    access_hash: document.access_hash,
                    file_reference: document.file_reference,
                    thumb_size: String::new(),
                }
                .into(),
            }),
            tl::enums::Document::Empty(_) => None,
        },
        _ => None,
    }
}

/// The type and byte size of a photo's largest size.
fn largest(sizes: &[tl::enums::PhotoSize]) -> Option<(String, i64)> {
    sizes
        .iter()
        .filter_map(|size| match size {
            tl::enums::PhotoSize::Size(s) => Some((s.r#type.clone(), i64::from(s.size))),
            tl::enums::PhotoSize::Progressive(s) => {
                Some((s.r#type.clone(), i64::from(*s.sizes.iter().max()?)))
            }
            _ => None,
        })
        .max_by_key(|(_, size)| *size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_name_what_is_wrong() {
        let id = MediaId::parse("42:7").unwrap();
        assert_eq!((id.chat.get(), id.message_id), (42, 7));
        assert_eq!(id.to_string(), "42:7");
        assert_eq!(MediaId::parse("-1001234:9").unwrap().chat.get(), -1001234);
        assert!(
            MediaId::parse("42")
                .unwrap_err()
                .contains("CHAT:MESSAGE_ID")
        );
        assert!(MediaId::parse("x:7").unwrap_err().contains("chat id"));
        assert!(MediaId::parse("42:0").unwrap_err().contains("message id"));
    }
}
