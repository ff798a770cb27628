//! Files users sent, fetched from Telegram on demand.
//!
//! Inbound events do not carry file bytes: their `mediaUrl` is
//! `/api/v1/media/{chat}:{message_id}`. Resolving it reads the message
//! again (`messages.getMessages`, or `channels.getMessages` in a channel),
//! which also yields a fresh `file_reference` and the DC the file lives on,
//! and streams the photo or document with `upload.getFile` chunk by chunk,
//! so nothing is held in memory or on disk beyond one chunk.
//!
//! Users' files live on every DC, not only the bot's. telegate asks the
//! file's DC (the message says which), follows `FILE_MIGRATE_X`, and on
//! `AUTH_KEY_UNREGISTERED` there copies the bot's authorization over once
//! (`auth.exportAuthorization` at home, `auth.importAuthorization` there)
//! — what grammers' download iterator does too. That iterator is not used:
//! it cannot go on after a failed chunk, and at the home DC it answers
//! `AUTH_KEY_UNREGISTERED` (a revoked session) by retrying without end.
//! A file reference that expires mid-way is fetched again (by reading the
//! message again) and the download goes on at the same offset, a chunk
//! that takes too long is asked again, and any part of a file can be asked
//! for (a `Range`).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use grammers_client::Client;
use grammers_mtsender::InvocationError;
use grammers_tl_types as tl;
use http_body_util::channel::{Channel, Sender};

use crate::chat::{ChatId, Peer};

/// `upload.getFile` chunk size: a multiple of 4 KiB that divides 1 MiB, so a
/// chunk at a multiple of it never crosses a 1 MiB boundary (Telegram's
/// rule for non-`precise` requests).
const CHUNK: i32 = 512 * 1024;
/// The longest one chunk may take (its DC may need a connection, a key and
/// an imported authorization first).
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries at a chunk that timed out or whose fresh file reference expired
/// again before the download gives up.
const CHUNK_TRIES: u32 = 3;
/// `FILE_MIGRATE_X` redirects followed for one chunk at most.
const MAX_MIGRATIONS: u32 = 4;

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
    #[error("Telegram did not answer for chunk at byte {offset} of {media} in time")]
    TimedOut { media: MediaId, offset: i64 },
    #[error("the file reference of {0} kept expiring")]
    ReferenceExpired(MediaId),
    #[error("Telegram ended {media} at byte {at}, before its {size} bytes")]
    Short { media: MediaId, at: i64, size: i64 },
    #[error("Telegram redirected {0} to a CDN, which telegate does not fetch from")]
    CdnRedirect(MediaId),
    #[error("Telegram kept moving {0} to another DC")]
    Migrating(MediaId),
}

/// A file ready to stream.
#[derive(Debug, Clone)]
pub struct File {
    pub content_type: String,
    pub filename: Option<String>,
    pub size: i64,
    /// The DC the file lives on.
    pub dc_id: i32,
    location: tl::enums::InputFileLocation,
}

/// The bytes `start..start + len` of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub len: u64,
}

impl Span {
    /// All of a `size`-byte file.
    pub fn whole(size: i64) -> Span {
        Span {
            start: 0,
            len: u64::try_from(size).unwrap_or(0),
        }
    }
}

/// Fetches files through the bot's connection.
#[derive(Clone)]
pub struct Downloads {
    client: Client,
    /// DCs the bot's authorization was copied to.
    authorized: Arc<tokio::sync::Mutex<HashSet<i32>>>,
}

impl Downloads {
    pub fn new(client: Client) -> Self {
        Downloads {
            client,
            authorized: Arc::default(),
        }
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

    /// Starts fetching `span` of `file` (of `media`): its first chunk is
    /// fetched before this returns, so a file Telegram will not serve fails
    /// here, before anything of an answer is sent.
    pub async fn open(
        &self,
        media: MediaId,
        file: File,
        span: Span,
    ) -> Result<Download, DownloadError> {
        let mut fetch = Fetch::new(self.clone(), media, file, span);
        let first = fetch.next().await?;
        Ok(Download { first, fetch })
    }

    /// One chunk, asked at DC `dc` first; `dc` follows `FILE_MIGRATE_X`.
    async fn chunk(
        &self,
        media: MediaId,
        dc: &mut i32,
        request: &tl::functions::upload::GetFile,
    ) -> Result<Vec<u8>, DownloadError> {
        let mut authorized_now = false;
        for _ in 0..MAX_MIGRATIONS {
            match self.client.invoke_in_dc(*dc, request).await {
                Ok(tl::enums::upload::File::File(file)) => return Ok(file.bytes),
                Ok(tl::enums::upload::File::CdnRedirect(_)) => {
                    return Err(DownloadError::CdnRedirect(media));
                }
                Err(InvocationError::Rpc(rpc)) if rpc.code == 303 && rpc.value.is_some() => {
                    let to = rpc.value.and_then(|to| i32::try_from(to).ok());
                    *dc = to.ok_or(DownloadError::Migrating(media))?;
                }
                Err(InvocationError::Rpc(rpc))
                    if rpc.name == "AUTH_KEY_UNREGISTERED" && !authorized_now =>
                {
                    self.authorize(*dc).await?;
                    authorized_now = true;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(DownloadError::Migrating(media))
    }

    /// Copies the bot's authorization to DC `dc` (once per DC; at the
    /// home DC, `auth.exportAuthorization` refuses: the session itself is
    /// not signed in).
    async fn authorize(&self, dc: i32) -> Result<(), InvocationError> {
        let mut authorized = self.authorized.lock().await;
        if authorized.contains(&dc) {
            return Ok(());
        }
        let tl::enums::auth::ExportedAuthorization::Authorization(exported) = self
            .client
            .invoke(&tl::functions::auth::ExportAuthorization { dc_id: dc })
            .await?;
        let import = tl::functions::auth::ImportAuthorization {
            id: exported.id,
            bytes: exported.bytes,
        };
        self.client.invoke_in_dc(dc, &import).await?;
        authorized.insert(dc);
        tracing::debug!(dc, "the bot's authorization is copied to the file's DC");
        Ok(())
    }
}

/// A download whose first chunk is in hand.
pub struct Download {
    first: Option<Bytes>,
    fetch: Fetch,
}

impl Download {
    /// The rest as an HTTP body, fetched chunk by chunk as it is read; a
    /// failure mid-way ends the body with an error (never a short body
    /// that looks complete).
    pub fn into_body(self) -> Channel<Bytes, std::io::Error> {
        let (tx, body) = Channel::new(2);
        tokio::spawn(feed(self, tx));
        body
    }
}

async fn feed(download: Download, mut tx: Sender<Bytes, std::io::Error>) {
    let Download { first, mut fetch } = download;
    let mut next = first;
    loop {
        let Some(bytes) = next else {
            return;
        };
        if tx.send_data(bytes).await.is_err() {
            return; // the client went away
        }
        next = match fetch.next().await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(%error, "file download failed");
                tx.abort(std::io::Error::other(error.to_string()));
                return;
            }
        };
    }
}

/// Where a download is, and how it goes on after a chunk failed.
struct Fetch {
    downloads: Downloads,
    media: MediaId,
    file: File,
    /// Where the chunks are asked for (the file's DC, or where Telegram
    /// moved it).
    dc: i32,
    /// The next chunk's offset, a multiple of [`CHUNK`].
    offset: i64,
    /// Bytes of the next chunk before the span starts.
    skip: usize,
    /// Bytes of the span not yet handed out.
    left: u64,
    /// Failed tries at the chunk at `offset`.
    tries: u32,
}

impl Fetch {
    fn new(downloads: Downloads, media: MediaId, file: File, span: Span) -> Fetch {
        let chunk = u64::from(CHUNK.unsigned_abs());
        let aligned = span.start - span.start % chunk;
        Fetch {
            downloads,
            media,
            dc: file.dc_id,
            file,
            offset: i64::try_from(aligned).unwrap_or(i64::MAX),
            skip: usize::try_from(span.start - aligned).unwrap_or(0),
            left: span.len,
            tries: 0,
        }
    }

    /// The span's next bytes (`None`: all handed out).
    async fn next(&mut self) -> Result<Option<Bytes>, DownloadError> {
        while self.left > 0 {
            let request = tl::functions::upload::GetFile {
                precise: false,
                cdn_supported: false,
                location: self.file.location.clone(),
                offset: self.offset,
                limit: CHUNK,
            };
            let asked = self.downloads.chunk(self.media, &mut self.dc, &request);
            let failure = match tokio::time::timeout(CHUNK_TIMEOUT, asked).await {
                Ok(Ok(bytes)) if bytes.is_empty() => {
                    return Err(DownloadError::Short {
                        media: self.media,
                        at: self.offset,
                        size: self.file.size,
                    });
                }
                Ok(Ok(bytes)) => return Ok(Some(self.take(bytes))),
                Ok(Err(DownloadError::Telegram(InvocationError::Rpc(rpc))))
                    if rpc.name.starts_with("FILE_REFERENCE_") =>
                {
                    DownloadError::ReferenceExpired(self.media)
                }
                Ok(Err(error)) => return Err(error),
                Err(_elapsed) => DownloadError::TimedOut {
                    media: self.media,
                    offset: self.offset,
                },
            };
            self.tries += 1;
            if self.tries >= CHUNK_TRIES {
                return Err(failure);
            }
            if let DownloadError::ReferenceExpired(_) = failure {
                tracing::debug!(media = %self.media, offset = self.offset, "file reference expired: reading the message again");
                self.file = self.downloads.locate(self.media).await?;
                self.dc = self.file.dc_id;
            }
        }
        Ok(None)
    }

    /// The part of the chunk at `offset` that is in the span.
    fn take(&mut self, chunk: Vec<u8>) -> Bytes {
        self.tries = 0;
        self.offset += i64::from(CHUNK);
        let mut bytes = Bytes::from(chunk);
        let skip = std::mem::take(&mut self.skip).min(bytes.len());
        let _ = bytes.split_to(skip);
        let len = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        bytes.truncate(len);
        self.left -= len as u64;
        bytes
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
                    dc_id: photo.dc_id,
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
                dc_id: document.dc_id,
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
