//! Posting and editing messages, with Telegram's rules: who may write to
//! whom, `random_id` de-duplication, length limits, injected chat errors and
//! flood limits — checked in that order, so a refused send changes nothing.

use std::time::Instant;

use grammers_tl_types as tl;

use super::accounts::AccountId;
use super::limits::ChatKind;
use super::render;
use super::updates;
use super::world::{BoxEvent, StoredMedia, StoredMessage, World};
use super::{Inner, TgError};
use crate::sandbox::Outbox;

const MAX_TEXT: usize = 4096;
const MAX_CAPTION: usize = 1024;

/// What a simulated user sends through the control API.
#[derive(Debug, Clone, PartialEq)]
pub enum UserMessage {
    Text(String),
    Location {
        latitude: f64,
        longitude: f64,
    },
    Contact {
        phone_number: String,
        first_name: String,
    },
    /// `dc_id`: where the file lives; `content`: its bytes (else
    /// generated, `size` long).
    Photo {
        mime_type: String,
        size: i64,
        dc_id: i32,
        content: Option<Vec<u8>>,
    },
    Document {
        file_name: String,
        mime_type: String,
        size: i64,
        dc_id: i32,
        content: Option<Vec<u8>>,
    },
}

impl UserMessage {
    pub(super) fn into_draft(self, sender: AccountId, reply_to: Option<i32>) -> Draft {
        let (text, media) = match self {
            UserMessage::Text(text) => (text, None),
            UserMessage::Location {
                latitude,
                longitude,
            } => (
                String::new(),
                Some(StoredMedia::Location {
                    latitude,
                    longitude,
                }),
            ),
            UserMessage::Contact {
                phone_number,
                first_name,
            } => (
                String::new(),
                Some(StoredMedia::Contact {
                    phone_number,
                    first_name,
                    last_name: String::new(),
                    user_id: sender,
                }),
            ),
            UserMessage::Photo {
                mime_type,
                size,
                dc_id,
                content,
            } => (
                String::new(),
                Some(StoredMedia::photo(None, mime_type, size).stored_on(dc_id, content)),
            ),
            UserMessage::Document {
                file_name,
                mime_type,
                size,
                dc_id,
                content,
            } => (
                String::new(),
                Some(
                    StoredMedia::document(None, file_name, mime_type, size)
                        .stored_on(dc_id, content),
                ),
            ),
        };
        Draft {
            text,
            media,
            reply_markup: None,
            reply_to,
            random_id: None,
        }
    }
}

/// A message about to be posted.
pub(super) struct Draft {
    pub text: String,
    pub media: Option<StoredMedia>,
    /// A validated, serialized boxed `ReplyMarkup`.
    pub reply_markup: Option<Vec<u8>>,
    pub reply_to: Option<i32>,
    pub random_id: Option<i64>,
}

/// A posted message and the pts it got in the sender's box.
pub(super) struct Posted {
    pub message: StoredMessage,
    pub sender_pts: i32,
}

/// Telegram counts lengths in UTF-16 code units.
fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

pub(super) fn check_content(text: &str, has_media: bool) -> Result<(), TgError> {
    if has_media {
        if utf16_len(text) > MAX_CAPTION {
            return Err(TgError::bad_request("MEDIA_CAPTION_TOO_LONG"));
        }
    } else if text.trim().is_empty() {
        return Err(TgError::bad_request("MESSAGE_EMPTY"));
    } else if utf16_len(text) > MAX_TEXT {
        return Err(TgError::bad_request("MESSAGE_TOO_LONG"));
    }
    Ok(())
}

/// Turns an `InputMedia` from `sendMedia` into stored media. External URLs
/// are recorded, never downloaded.
pub(super) fn media_from_input(input: &tl::enums::InputMedia) -> Result<StoredMedia, TgError> {
    match input {
        tl::enums::InputMedia::PhotoExternal(photo) => {
            let url = external_url(&photo.url)?;
            Ok(StoredMedia::photo(Some(url), "image/jpeg".into(), 10_240))
        }
        tl::enums::InputMedia::DocumentExternal(document) => {
            let url = external_url(&document.url)?;
            let file_name = url
                .rsplit('/')
                .next()
                .filter(|name| !name.is_empty())
                .unwrap_or("file")
                .to_string();
            let mime_type = mime_for(&file_name).to_string();
            Ok(StoredMedia::document(
                Some(url),
                file_name,
                mime_type,
                10_240,
            ))
        }
        tl::enums::InputMedia::GeoPoint(geo) => match &geo.geo_point {
            tl::enums::InputGeoPoint::Point(point) => Ok(StoredMedia::Location {
                latitude: point.lat,
                longitude: point.long,
            }),
            tl::enums::InputGeoPoint::Empty => Err(TgError::bad_request("MEDIA_EMPTY")),
        },
        tl::enums::InputMedia::Contact(contact) => Ok(StoredMedia::Contact {
            phone_number: contact.phone_number.clone(),
            first_name: contact.first_name.clone(),
            last_name: contact.last_name.clone(),
            user_id: 0,
        }),
        other => Err(TgError::bad_request(format!(
            "MEDIA_NOT_SUPPORTED_IN_SANDBOX: {}",
            super::markup::tl_name(other)
        ))),
    }
}

fn external_url(text: &str) -> Result<String, TgError> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Ok(url.to_string())
        }
        _ => Err(TgError::bad_request("WEBPAGE_CURL_FAILED")),
    }
}

fn mime_for(file_name: &str) -> &'static str {
    let extension = file_name
        .rsplit('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match extension.as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "tgs" => "application/x-tgsticker",
        "mpeg" | "mpg" => "video/mpeg",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "zip" => "application/zip",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

/// The pts at which `message_id` entered `account`'s box.
fn pts_of(world: &World, account: AccountId, message_id: i32) -> i32 {
    world
        .boxes
        .get(&account)
        .and_then(|b| {
            b.log
                .iter()
                .find(|(_, e)| *e == BoxEvent::NewMessage(message_id))
        })
        .map_or(0, |(pts, _)| *pts)
}

impl Inner {
    /// The message a repeated `random_id` created, if it is a repeat.
    fn repeated(&mut self, sender: AccountId, peer: AccountId, draft: &Draft) -> Option<Posted> {
        let key = World::dedup_key(sender, peer, draft.random_id?);
        let id = *self.world.random_ids.get(&key)?;
        let message = self.world.messages.get(&id)?.clone();
        self.stats.duplicates_suppressed += 1;
        Some(Posted {
            sender_pts: pts_of(&self.world, sender, id),
            message,
        })
    }

    /// The injected error for a send to `user` (its chat's, else the
    /// bot-wide one), used up if it was for a number of sends.
    fn take_chat_fault(&mut self, user: AccountId) -> Result<(), TgError> {
        let scope = if self.chat_faults.contains_key(&Some(user)) {
            Some(user)
        } else {
            None
        };
        let Some(fault) = self.chat_faults.get_mut(&scope) else {
            return Ok(());
        };
        let error = fault.error.clone();
        if let Some(remaining) = &mut fault.remaining {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                self.chat_faults.remove(&scope);
            }
        }
        Err(error)
    }

    /// The bot posts `draft` to `user`'s private chat.
    pub(super) fn post_from_bot(
        &mut self,
        outbox: &Outbox,
        user: AccountId,
        draft: Draft,
        caller_key: Option<i64>,
    ) -> Result<Posted, TgError> {
        let started = self.world.users.get(&user).is_some_and(|u| u.chat.started);
        if !started {
            return Err(TgError::bad_request("PEER_ID_INVALID"));
        }
        let bot = self.world.bot.id;
        if let Some(posted) = self.repeated(bot, user, &draft) {
            return Ok(posted);
        }
        self.take_chat_fault(user)?;
        check_content(&draft.text, draft.media.is_some())?;
        if let Err(seconds) = self.limits.take(ChatKind::Private(user), Instant::now()) {
            self.stats.flood_waits += 1;
            return Err(TgError::flood_wait(seconds));
        }
        let posted = self.post(outbox, bot, user, draft, caller_key);
        self.stats.messages_from_bot += 1;
        if let Some(chat) = self.world.users.get_mut(&user).map(|u| &mut u.chat) {
            let markup = posted.message.reply_markup.as_deref();
            match markup.and_then(render::reply_markup) {
                Some(tl::enums::ReplyMarkup::ReplyKeyboardMarkup(_)) => {
                    chat.reply_keyboard = Some(posted.message.id);
                }
                Some(tl::enums::ReplyMarkup::ReplyKeyboardHide(_)) => chat.reply_keyboard = None,
                Some(tl::enums::ReplyMarkup::ReplyKeyboardForceReply(_)) => {
                    chat.force_reply = Some(posted.message.id);
                }
                _ => {}
            }
        }
        Ok(posted)
    }

    /// `user` posts `draft` to the bot.
    pub(super) fn post_from_user(
        &mut self,
        outbox: &Outbox,
        user: AccountId,
        draft: Draft,
        caller_key: Option<i64>,
    ) -> Result<Posted, TgError> {
        let bot = self.world.bot.id;
        if let Some(posted) = self.repeated(user, bot, &draft) {
            return Ok(posted);
        }
        check_content(&draft.text, draft.media.is_some())?;
        let Some(record) = self.world.users.get_mut(&user) else {
            return Err(TgError::bad_request("USER_ID_INVALID"));
        };
        record.chat.started = true;
        record.chat.force_reply = None;
        self.stats.messages_from_users += 1;
        Ok(self.post(outbox, user, bot, draft, caller_key))
    }

    /// Stores a message and pushes it to both sides (the sender's calling
    /// connection excepted: it gets the message as its RPC result).
    fn post(
        &mut self,
        outbox: &Outbox,
        from: AccountId,
        to: AccountId,
        draft: Draft,
        caller_key: Option<i64>,
    ) -> Posted {
        let random_id = draft.random_id;
        let (message, sender_pts, receiver_pts) = self.world.insert_message(StoredMessage {
            id: 0,
            from,
            to,
            date: render::now(),
            text: draft.text,
            media: draft.media,
            reply_markup: draft.reply_markup,
            reply_to: draft.reply_to,
            edit_date: None,
            random_id,
        });
        if let Some(random_id) = random_id {
            let key = World::dedup_key(from, to, random_id);
            self.world.random_ids.insert(key, message.id);
        }
        let world = &self.world;
        let chat = [from, to];
        let to_receiver = updates::new_message(&message, to, receiver_pts);
        updates::deliver_update(outbox, world, to, to_receiver, chat, None);
        let to_sender = updates::new_message(&message, from, sender_pts);
        updates::deliver_update(outbox, world, from, to_sender, chat, caller_key);
        Posted {
            message,
            sender_pts,
        }
    }

    /// The bot edits its message `id` in `user`'s chat: new text (if given)
    /// and inline keyboard (none: removed). Returns the message and the bot's pts.
    pub(super) fn edit_from_bot(
        &mut self,
        outbox: &Outbox,
        user: AccountId,
        id: i32,
        text: Option<String>,
        markup: Option<Vec<u8>>,
        caller_key: Option<i64>,
    ) -> Result<(StoredMessage, i32), TgError> {
        let bot = self.world.bot.id;
        let Some(old) = self.world.messages.get(&id).filter(|m| m.visible_to(user)) else {
            return Err(TgError::bad_request("MESSAGE_ID_INVALID"));
        };
        if old.from != bot {
            return Err(TgError::new(403, "MESSAGE_AUTHOR_REQUIRED"));
        }
        let mut edited = old.clone();
        if let Some(text) = text {
            check_content(&text, edited.media.is_some())?;
            edited.text = text;
        }
        let old_is_inline = matches!(
            edited
                .reply_markup
                .as_deref()
                .and_then(render::reply_markup),
            None | Some(tl::enums::ReplyMarkup::ReplyInlineMarkup(_))
        );
        if old_is_inline {
            edited.reply_markup = markup;
        } else if markup.is_some() {
            return Err(TgError::bad_request("REPLY_MARKUP_INVALID"));
        }
        if edited.text == old.text && edited.reply_markup == old.reply_markup {
            return Err(TgError::bad_request("MESSAGE_NOT_MODIFIED"));
        }
        edited.edit_date = Some(render::now());
        self.world.messages.insert(id, edited.clone());
        let Some((bot_pts, user_pts)) = self.world.record_edit(id) else {
            return Err(TgError::bad_request("MESSAGE_ID_INVALID"));
        };
        let world = &self.world;
        let chat = [bot, user];
        let to_user = updates::edit_message(&edited, user, user_pts);
        updates::deliver_update(outbox, world, user, to_user, chat, None);
        let to_bot = updates::edit_message(&edited, bot, bot_pts);
        updates::deliver_update(outbox, world, bot, to_bot, chat, caller_key);
        Ok((edited, bot_pts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_utf16_units() {
        assert_eq!(check_content(&"a".repeat(4096), false), Ok(()));
        assert_eq!(
            check_content(&"a".repeat(4097), false),
            Err(TgError::bad_request("MESSAGE_TOO_LONG"))
        );
        // One emoji is two UTF-16 units: 2049 of them are too long.
        assert!(check_content(&"😀".repeat(2048), false).is_ok());
        assert!(check_content(&"😀".repeat(2049), false).is_err());
        assert_eq!(
            check_content("  ", false),
            Err(TgError::bad_request("MESSAGE_EMPTY"))
        );
        assert_eq!(check_content("", true), Ok(()));
        assert_eq!(
            check_content(&"a".repeat(1025), true),
            Err(TgError::bad_request("MEDIA_CAPTION_TOO_LONG"))
        );
    }

    #[test]
    fn external_documents_get_name_and_type_from_the_url() {
        let input: tl::enums::InputMedia = tl::types::InputMediaDocumentExternal {
            spoiler: false,
            url: "https://example.com/files/report.pdf".into(),
            ttl_seconds: None,
            video_cover: None,
            video_timestamp: None,
        }
        .into();
        let StoredMedia::Document {
            file_name,
            mime_type,
            url,
            ..
        } = media_from_input(&input).unwrap()
        else {
            panic!("not a document")
        };
        assert_eq!(file_name, "report.pdf");
        assert_eq!(mime_type, "application/pdf");
        assert_eq!(url.as_deref(), Some("https://example.com/files/report.pdf"));
        let bad: tl::enums::InputMedia = tl::types::InputMediaPhotoExternal {
            spoiler: false,
            url: "file:///etc/passwd".into(),
            ttl_seconds: None,
        }
        .into();
        assert_eq!(
            media_from_input(&bad),
            Err(TgError::bad_request("WEBPAGE_CURL_FAILED"))
        );
    }
}
