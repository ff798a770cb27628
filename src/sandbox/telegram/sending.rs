//! Posting, editing and deleting messages, with Telegram's rules: who may
//! write where (a started chat, not blocked, a member of the group, an admin
//! of a channel), `random_id` de-duplication, length limits, injected chat
//! errors and flood limits — checked in that order, so a refused send
//! changes nothing — and who sees a group message (privacy mode).

use std::time::Instant;

use grammers_tl_types as tl;

use super::accounts::AccountId;
use super::boxes::{BoxEvent, Role};
use super::limits::ChatKind;
use super::render;
use super::updates;
use super::world::{GroupKind, Place, ServiceAction, ShownAs, StoredMedia, StoredMessage, World};
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
    Voice {
        duration: i32,
        size: i64,
    },
    Video {
        duration: f64,
        width: i32,
        height: i32,
        size: i64,
    },
    Sticker {
        emoji: String,
    },
    Venue {
        latitude: f64,
        longitude: f64,
        title: String,
        address: String,
    },
    /// A music file (not a voice note).
    Audio {
        duration: i32,
        title: Option<String>,
        performer: Option<String>,
        size: i64,
    },
    /// A round video message.
    VideoNote {
        duration: f64,
        length: i32,
        size: i64,
    },
    /// A GIF (Telegram keeps them as silent MP4s).
    Animation {
        duration: f64,
        width: i32,
        height: i32,
        size: i64,
    },
    Poll {
        question: String,
        options: Vec<String>,
    },
    /// An animated emoji with a random value (🎲 1-6, 🎯, 🏀, ...).
    Dice {
        emoji: String,
        value: i32,
    },
}

impl UserMessage {
    pub(super) fn into_draft(self, sender: AccountId, reply_to: Option<i32>) -> Draft {
        let (text, media) = match self {
            UserMessage::Text(text) => (text, None),
            other => (String::new(), other.media(sender)),
        };
        Draft {
            text,
            media,
            reply_to,
            ..Draft::default()
        }
    }

    /// The media a message carries (a text: none).
    fn media(self, sender: AccountId) -> Option<StoredMedia> {
        let document = |name: &str, mime: &str, size, shown_as| {
            StoredMedia::shown_as(None, name.into(), mime.into(), size, Some(shown_as))
        };
        Some(match self {
            UserMessage::Text(_) => return None,
            UserMessage::Location {
                latitude,
                longitude,
            } => StoredMedia::Location {
                latitude,
                longitude,
            },
            UserMessage::Contact {
                phone_number,
                first_name,
            } => StoredMedia::Contact {
                phone_number,
                first_name,
                last_name: String::new(),
                user_id: sender,
            },
            UserMessage::Photo {
                mime_type,
                size,
                dc_id,
                content,
            } => StoredMedia::photo(None, mime_type, size).stored_on(dc_id, content),
            UserMessage::Document {
                file_name,
                mime_type,
                size,
                dc_id,
                content,
            } => StoredMedia::document(None, file_name, mime_type, size).stored_on(dc_id, content),
            UserMessage::Voice { duration, size } => {
                document("voice.ogg", "audio/ogg", size, ShownAs::Voice { duration })
            }
            UserMessage::Video {
                duration,
                width,
                height,
                size,
            } => document(
                "video.mp4",
                "video/mp4",
                size,
                ShownAs::Video {
                    duration,
                    width,
                    height,
                },
            ),
            UserMessage::Sticker { emoji } => document(
                "sticker.webp",
                "image/webp",
                20_480,
                ShownAs::Sticker { emoji },
            ),
            UserMessage::Venue {
                latitude,
                longitude,
                title,
                address,
            } => StoredMedia::Venue {
                latitude,
                longitude,
                title,
                address,
            },
            UserMessage::Audio {
                duration,
                title,
                performer,
                size,
            } => document(
                "audio.mp3",
                "audio/mpeg",
                size,
                ShownAs::Audio {
                    duration,
                    title,
                    performer,
                },
            ),
            UserMessage::VideoNote {
                duration,
                length,
                size,
            } => document(
                "video_note.mp4",
                "video/mp4",
                size,
                ShownAs::VideoNote { duration, length },
            ),
            UserMessage::Animation {
                duration,
                width,
                height,
                size,
            } => document(
                "animation.mp4",
                "video/mp4",
                size,
                ShownAs::Animation {
                    duration,
                    width,
                    height,
                },
            ),
            UserMessage::Poll { question, options } => StoredMedia::Poll {
                id: rand::random(),
                question,
                options,
            },
            UserMessage::Dice { emoji, value } => StoredMedia::Dice { emoji, value },
        })
    }
}

/// A message about to be posted.
#[derive(Debug, Default)]
pub(super) struct Draft {
    pub text: String,
    pub media: Option<StoredMedia>,
    /// A validated, serialized boxed `ReplyMarkup`.
    pub reply_markup: Option<Vec<u8>>,
    /// A serialized `Vector<MessageEntity>`.
    pub entities: Option<Vec<u8>>,
    pub reply_to: Option<i32>,
    pub random_id: Option<i64>,
    pub flags: SendFlags,
    pub action: Option<ServiceAction>,
}

/// The send flags Telegram keeps on a message.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SendFlags {
    pub silent: bool,
    pub noforwards: bool,
    pub no_webpage: bool,
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

/// Where a message goes: the private chat of a user and a bot, or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Private {
        user: AccountId,
        bot: AccountId,
    },
    /// A group by its bare id.
    Group(i64),
}

impl Target {
    /// The peer part of `sender`'s `random_id` de-duplication key.
    fn dedup_peer(self, sender: AccountId) -> i64 {
        match self {
            Target::Private { user, bot } if sender == user => bot,
            Target::Private { user, .. } => user,
            Target::Group(group) => -group,
        }
    }
}

/// Whether `bot`, in privacy mode, is addressed by `message`: a command
/// (for it, if it names a bot), a mention, or a reply to one of its own.
fn addresses_bot(world: &World, bot: AccountId, message: &StoredMessage) -> bool {
    let username = world
        .profile(bot)
        .and_then(|p| p.username.as_deref())
        .unwrap_or_default();
    let text = message.text.trim_start();
    let command = text.strip_prefix('/').is_some_and(|rest| {
        let word = rest.split_whitespace().next().unwrap_or_default();
        match word.split_once('@') {
            Some((_, name)) => name.eq_ignore_ascii_case(username),
            None => !word.is_empty(),
        }
    });
    let mention = !username.is_empty()
        && message
            .text
            .to_ascii_lowercase()
            .contains(&format!("@{}", username.to_ascii_lowercase()));
    let reply = message.reply_to.is_some_and(|id| {
        world
            .message(World::place_of(message), id)
            .is_some_and(|m| m.from == bot)
    });
    command || mention || reply
}

impl Inner {
    /// The message a repeated `random_id` created, if it is a repeat.
    fn repeated(&mut self, sender: AccountId, target: Target, draft: &Draft) -> Option<Posted> {
        let key = World::dedup_key(sender, target.dedup_peer(sender), draft.random_id?);
        let id = *self.world.random_ids.get(&key)?;
        let place = match target {
            Target::Group(group) if self.world.groups.get(&group)?.kind.is_channel() => {
                Place::Channel(group)
            }
            _ => Place::Common,
        };
        let message = self.world.message(place, id)?.clone();
        self.stats.duplicates_suppressed += 1;
        let sender_pts = self
            .world
            .update_box(sender, place)
            .pts_of(|e| *e == BoxEvent::NewMessage { message_id: id })
            .unwrap_or(0);
        Some(Posted {
            message,
            sender_pts,
        })
    }

    /// The injected error for a send to `user` (its chat's, else the
    /// bot-wide one), used up if it was for a number of sends.
    fn take_chat_fault(&mut self, user: Option<AccountId>) -> Result<(), TgError> {
        let scope = if user.is_some() && self.chat_faults.contains_key(&user) {
            user
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

    /// Why `bot` may not post in `group` now, if it may not.
    fn bot_may_post(&self, bot: AccountId, group: i64) -> Result<(), TgError> {
        let Some(record) = self.world.groups.get(&group) else {
            return Err(TgError::bad_request("PEER_ID_INVALID"));
        };
        let role = record.role(bot);
        match (record.kind, role) {
            (GroupKind::Group, Some(role)) if role.is_in() => Ok(()),
            (GroupKind::Group, _) => Err(TgError::named("CHAT_WRITE_FORBIDDEN")),
            (_, Some(role)) if !role.is_in() => Err(TgError::bad_request("CHANNEL_PRIVATE")),
            (_, None) => Err(TgError::bad_request("CHANNEL_PRIVATE")),
            (GroupKind::Channel, Some(role)) if !role.is_admin() => {
                Err(TgError::named("CHAT_ADMIN_REQUIRED"))
            }
            _ => Ok(()),
        }
    }

    /// `bot` posts `draft` to its private chat with a user, or a group.
    pub(super) fn post_from_bot(
        &mut self,
        outbox: &Outbox,
        bot: AccountId,
        target: Target,
        draft: Draft,
        caller_key: Option<i64>,
    ) -> Result<Posted, TgError> {
        match target {
            Target::Private { user, .. } => {
                let chat = self.world.users.get(&user).map(|u| u.chat(bot));
                let Some(chat) = chat.filter(|c| c.started) else {
                    return Err(TgError::bad_request("PEER_ID_INVALID"));
                };
                if chat.blocked {
                    return Err(TgError::bad_request("USER_IS_BLOCKED"));
                }
            }
            Target::Group(group) => self.bot_may_post(bot, group)?,
        }
        if let Some(posted) = self.repeated(bot, target, &draft) {
            return Ok(posted);
        }
        self.take_chat_fault(match target {
            Target::Private { user, .. } => Some(user),
            Target::Group(_) => None,
        })?;
        check_content(&draft.text, draft.media.is_some())?;
        let meter = match target {
            Target::Private { user, .. } => ChatKind::Private(user),
            Target::Group(group) => ChatKind::Group(group),
        };
        if let Err(seconds) = self.flood.take(bot, meter, Instant::now()) {
            self.stats.flood_waits += 1;
            return Err(TgError::flood_wait(seconds));
        }
        let posted = self.post(outbox, bot, target, draft, caller_key);
        self.stats.messages_from_bot += 1;
        if let Target::Private { user, .. } = target
            && let Some(chat) = self.world.users.get_mut(&user).map(|u| u.chat_mut(bot))
        {
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

    /// `user` posts `draft` to a bot, or to a group it is in.
    pub(super) fn post_from_user(
        &mut self,
        outbox: &Outbox,
        user: AccountId,
        target: Target,
        draft: Draft,
        caller_key: Option<i64>,
    ) -> Result<Posted, TgError> {
        if !self.world.users.contains_key(&user) {
            return Err(TgError::bad_request("USER_ID_INVALID"));
        }
        if let Target::Group(group) = target {
            let Some(record) = self.world.groups.get(&group) else {
                return Err(TgError::bad_request("PEER_ID_INVALID"));
            };
            match (record.kind, record.role(user)) {
                (GroupKind::Group, role) if !role.is_some_and(Role::is_in) => {
                    return Err(TgError::named("CHAT_WRITE_FORBIDDEN"));
                }
                (_, Some(Role::Banned)) => {
                    return Err(TgError::bad_request("USER_BANNED_IN_CHANNEL"));
                }
                (_, role) if !role.is_some_and(Role::is_in) => {
                    return Err(TgError::bad_request("CHANNEL_PRIVATE"));
                }
                (GroupKind::Channel, role) if !role.is_some_and(Role::is_admin) => {
                    return Err(TgError::named("CHAT_ADMIN_REQUIRED"));
                }
                _ => {}
            }
        }
        if let Some(posted) = self.repeated(user, target, &draft) {
            return Ok(posted);
        }
        check_content(&draft.text, draft.media.is_some())?;
        if let (Target::Private { bot, .. }, Some(record)) =
            (target, self.world.users.get_mut(&user))
        {
            let chat = record.chat_mut(bot);
            chat.started = true;
            chat.force_reply = None;
        }
        self.stats.messages_from_users += 1;
        Ok(self.post(outbox, user, target, draft, caller_key))
    }

    /// Who gets a message `from` posts in `group`: every member in it, a
    /// bot only if its privacy mode lets it see the message.
    fn audience(&self, group: i64, message: &StoredMessage) -> Vec<AccountId> {
        let Some(record) = self.world.groups.get(&group) else {
            return Vec::new();
        };
        let sees = |member: AccountId| match self.world.bot(member) {
            None => true,
            Some(bot) => {
                message.from == member
                    || !bot.privacy
                    || record.role(member).is_some_and(Role::is_admin)
                    || message.action.is_some()
                    || addresses_bot(&self.world, member, message)
            }
        };
        record.current_members().filter(|&m| sees(m)).collect()
    }

    /// Stores a message and pushes it to everyone who gets it (the
    /// sender's calling connection excepted: it gets the message as its
    /// RPC result).
    pub(super) fn post(
        &mut self,
        outbox: &Outbox,
        from: AccountId,
        target: Target,
        draft: Draft,
        caller_key: Option<i64>,
    ) -> Posted {
        let random_id = draft.random_id;
        let mut message = StoredMessage {
            from,
            date: render::now(),
            text: draft.text,
            media: draft.media,
            reply_markup: draft.reply_markup,
            entities: draft.entities,
            reply_to: draft.reply_to,
            random_id,
            silent: draft.flags.silent,
            noforwards: draft.flags.noforwards,
            no_webpage: draft.flags.no_webpage,
            action: draft.action,
            ..StoredMessage::default()
        };
        match target {
            Target::Private { user, bot } => message.to = if from == user { bot } else { user },
            Target::Group(group) => {
                message.chat = Some(group);
                message.in_channel = self
                    .world
                    .groups
                    .get(&group)
                    .is_some_and(|g| g.kind.is_channel());
                message.seen_by = self.audience(group, &message);
            }
        }
        let place = World::place_of(&message);
        let (message, pts) = self.world.insert_message(message);
        if let Some(random_id) = random_id {
            let key = World::dedup_key(from, target.dedup_peer(from), random_id);
            self.world.random_ids.insert(key, message.id);
        }
        let event = BoxEvent::NewMessage {
            message_id: message.id,
        };
        let caller = caller_key.map(|key| (from, key));
        updates::deliver_each(outbox, &mut self.world, place, &event, &pts, caller);
        let sender_pts = pts_in(&pts, from);
        Posted {
            message,
            sender_pts,
        }
    }

    /// The stored message `id` that `target`'s chat holds, and its place.
    pub(super) fn find(&self, target: Target, id: i32) -> Option<(Place, &StoredMessage)> {
        match target {
            Target::Private { user, bot } => self
                .world
                .messages
                .get(&id)
                .filter(|m| m.visible_to(user) && m.peer_of(user) == bot)
                .map(|m| (Place::Common, m)),
            Target::Group(group) => {
                let record = self.world.groups.get(&group)?;
                let place = if record.kind.is_channel() {
                    Place::Channel(group)
                } else {
                    Place::Common
                };
                self.world
                    .message(place, id)
                    .filter(|m| m.chat == Some(group))
                    .map(|m| (place, m))
            }
        }
    }

    /// `author` edits its message `id` in `target`'s chat: new text (if
    /// given) and inline keyboard (bots only; none: removed). Returns the
    /// message and the author's pts.
    pub(super) fn edit(
        &mut self,
        outbox: &Outbox,
        author: AccountId,
        target: Target,
        id: i32,
        change: Edit,
        caller_key: Option<i64>,
    ) -> Result<(StoredMessage, i32), TgError> {
        let Some((place, old)) = self.find(target, id) else {
            return Err(TgError::bad_request("MESSAGE_ID_INVALID"));
        };
        if old.from != author {
            return Err(TgError::new(403, "MESSAGE_AUTHOR_REQUIRED"));
        }
        let mut edited = old.clone();
        if let Some(text) = change.text {
            check_content(&text, edited.media.is_some())?;
            edited.text = text;
        }
        if change.entities.is_some() {
            edited.entities = change.entities;
        }
        let old_is_inline = matches!(
            edited
                .reply_markup
                .as_deref()
                .and_then(render::reply_markup),
            None | Some(tl::enums::ReplyMarkup::ReplyInlineMarkup(_))
        );
        if self.world.is_bot(author) {
            if old_is_inline {
                edited.reply_markup = change.markup;
            } else if change.markup.is_some() {
                return Err(TgError::bad_request("REPLY_MARKUP_INVALID"));
            }
        }
        if edited.text == old.text
            && edited.reply_markup == old.reply_markup
            && edited.entities == old.entities
        {
            return Err(TgError::bad_request("MESSAGE_NOT_MODIFIED"));
        }
        edited.edit_date = Some(render::now());
        let pts = self.world.record_edit(place, edited.clone());
        let event = BoxEvent::EditMessage { message_id: id };
        let caller = caller_key.map(|key| (author, key));
        updates::deliver_each(outbox, &mut self.world, place, &event, &pts, caller);
        Ok((edited, pts_in(&pts, author)))
    }

    /// `who` deletes messages of `place` (unknown ids are skipped, as
    /// Telegram does); returns `(pts, pts_count)` of `who`'s box.
    pub(super) fn delete(
        &mut self,
        outbox: &Outbox,
        who: AccountId,
        place: Place,
        ids: &[i32],
        caller_key: Option<i64>,
    ) -> Result<(i32, i32), TgError> {
        let is_bot = self.world.is_bot(who);
        let mut found = Vec::new();
        for &id in ids {
            let Some(message) = self.world.message(place, id) else {
                continue;
            };
            let admin = message
                .chat
                .and_then(|g| self.world.groups.get(&g))
                .is_some_and(|g| g.role(who).is_some_and(Role::is_admin));
            // Anyone deletes their own; in a private chat the bot deletes
            // both sides, in a group an admin deletes anyone's.
            let allowed = message.from == who
                || (message.chat.is_none() && is_bot && message.visible_to(who))
                || admin;
            let has_it = message.audience().contains(&who);
            if !has_it {
                continue;
            }
            if !allowed {
                return Err(TgError::new(403, "MESSAGE_DELETE_FORBIDDEN"));
            }
            found.push(id);
        }
        let deleted = self.world.delete_messages(place, &found);
        let mut result = (self.world.update_box(who, place).pts, 0);
        for (account, message_ids, pts) in deleted {
            let event = BoxEvent::DeleteMessages { message_ids };
            if account == who {
                result = (pts, event.count());
            }
            let mut batch = updates::Batch::new();
            batch.event(&self.world, account, place, pts, &event);
            let except = caller_key.filter(|_| account == who);
            updates::deliver(outbox, &mut self.world, account, except, &batch);
        }
        Ok(result)
    }
}

/// The pts `account` got, among what an event gave each account.
fn pts_in(pts: &[(AccountId, i32)], account: AccountId) -> i32 {
    pts.iter()
        .find(|(who, _)| *who == account)
        .map_or(0, |(_, pts)| *pts)
}

/// What an edit changes.
#[derive(Debug, Default)]
pub(super) struct Edit {
    pub text: Option<String>,
    pub markup: Option<Vec<u8>>,
    pub entities: Option<Vec<u8>>,
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
