//! Chat ids as clients write them, and the MTProto peers they stand for.
//!
//! Clients address chats in the Bot API form they already keep on file: a user
//! is a positive id, a basic group `-id`, a supergroup or channel
//! `-100` followed by the channel id. MTProto wants a typed `InputPeer`, so this
//! module is the one place that knows the encoding.

use std::fmt;
use std::str::FromStr;

use grammers_tl_types as tl;
use serde::{Deserialize, Serialize};

/// Bot API offset of channel ids: `-100xxxxxxxxxx` is `-(1e12 + channel_id)`.
const CHANNEL_OFFSET: i64 = 1_000_000_000_000;

/// A chat id in the Bot API form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ChatId(i64);

/// What kind of chat a [`ChatId`] names, with the MTProto id of that peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    User(i64),
    Group(i64),
    Channel(i64),
}

/// Why a string is not a chat id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChatIdError(&'static str);

impl ChatId {
    /// Wraps a Bot API chat id; zero names no chat.
    pub fn new(id: i64) -> Result<Self, ChatIdError> {
        if id == 0 {
            return Err(ChatIdError("a chat id cannot be 0"));
        }
        Ok(ChatId(id))
    }

    /// A private chat with a user.
    pub fn user(user_id: i64) -> Self {
        ChatId(user_id)
    }

    /// The id as the Bot API writes it.
    pub fn get(self) -> i64 {
        self.0
    }

    /// The MTProto peer this id names.
    pub fn peer(self) -> Peer {
        match self.0 {
            id if id > 0 => Peer::User(id),
            id if id < -CHANNEL_OFFSET => Peer::Channel(-id - CHANNEL_OFFSET),
            id => Peer::Group(-id),
        }
    }

    /// The Bot API id of an MTProto peer.
    pub fn from_peer(peer: Peer) -> Self {
        match peer {
            Peer::User(id) => ChatId(id),
            Peer::Group(id) => ChatId(-id),
            Peer::Channel(id) => ChatId(-(id + CHANNEL_OFFSET)),
        }
    }

    /// Whether this is a private chat (Telegram's per-chat limits differ).
    pub fn is_private(self) -> bool {
        matches!(self.peer(), Peer::User(_))
    }

    /// The `InputPeer` to address this chat with, given the access hash known
    /// for it (bots may use 0 when none is cached).
    pub fn input_peer(self, access_hash: i64) -> tl::enums::InputPeer {
        match self.peer() {
            Peer::User(user_id) => tl::types::InputPeerUser {
                user_id,
                access_hash,
            }
            .into(),
            Peer::Group(chat_id) => tl::types::InputPeerChat { chat_id }.into(),
            Peer::Channel(channel_id) => tl::types::InputPeerChannel {
                channel_id,
                access_hash,
            }
            .into(),
        }
    }
}

impl FromStr for ChatId {
    type Err = ChatIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix('-').unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ChatIdError(
                "a chat id is a string of digits, with a leading `-` for groups",
            ));
        }
        let id = s
            .parse::<i64>()
            .map_err(|_| ChatIdError("a chat id must fit in a signed 64-bit integer"))?;
        ChatId::new(id)
    }
}

impl fmt::Display for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<ChatId> for String {
    fn from(id: ChatId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for ChatId {
    type Error = ChatIdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bot_api_forms() {
        assert_eq!(
            "987654321".parse::<ChatId>().unwrap().peer(),
            Peer::User(987654321)
        );
        assert_eq!("-4567".parse::<ChatId>().unwrap().peer(), Peer::Group(4567));
        assert_eq!(
            "-1001234567890".parse::<ChatId>().unwrap().peer(),
            Peer::Channel(1234567890)
        );
    }

    #[test]
    fn peer_round_trips() {
        for id in [1, 987654321, -1, -4567, -1001234567890, i64::MAX] {
            let chat = ChatId::new(id).unwrap();
            assert_eq!(ChatId::from_peer(chat.peer()), chat);
        }
    }

    #[test]
    fn rejects_what_is_not_a_chat_id() {
        for bad in [
            "",
            "-",
            "0",
            "-0",
            "12a",
            " 12",
            "+12",
            "1.5",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<ChatId>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn input_peer_carries_the_access_hash() {
        let peer = ChatId::user(42).input_peer(7);
        assert_eq!(
            peer,
            tl::types::InputPeerUser {
                user_id: 42,
                access_hash: 7
            }
            .into()
        );
    }
}
