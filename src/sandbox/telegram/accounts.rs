//! Accounts and the auth keys that identify them.
//!
//! The sandbox cannot run the DH key exchange with grammers (the client only
//! trusts Telegram's RSA keys), so every auth key is minted here and handed
//! to the client out of band: the bot's goes into the worker's session file,
//! a user client's is answered by `POST /users`. A key is bound to an account
//! (the bot after `auth.importBotAuthorization`, a user at once); the MTProto
//! server asks [`KeyRecord::key_id`] to find the key of a connection.

use std::fmt;

use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::sandbox::AuthKeyBytes;

/// Telegram's account id (a bare user id; bots are users too).
pub type AccountId = i64;

/// A display profile, the part of a `user` object the sandbox keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub id: AccountId,
    pub access_hash: i64,
    pub first_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The language the user's app runs in (`lang_code` on `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// A Telegram Premium subscriber (`premium` on `user`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub premium: bool,
}

/// An auth key minted by the sandbox, and who it is signed in as (`None`:
/// not signed in yet; RPCs other than sign-in get `401`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "StoredKey", into = "StoredKey")]
pub struct KeyRecord {
    pub key: AuthKeyBytes,
    pub account: Option<AccountId>,
    /// The DC the key was made with (keys are per DC, as in Telegram).
    pub dc_id: i32,
    /// `key_id(key)`, computed once: every RPC looks keys up by it.
    id: i64,
}

/// A key as the state file holds it.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    #[serde(with = "hex_key")]
    key: AuthKeyBytes,
    account: Option<AccountId>,
    #[serde(default = "home_dc")]
    dc_id: i32,
}

/// The DC of keys saved before there were several.
fn home_dc() -> i32 {
    super::DC_ID
}

impl From<StoredKey> for KeyRecord {
    fn from(stored: StoredKey) -> Self {
        KeyRecord::new(stored.key, stored.account, stored.dc_id)
    }
}

impl From<KeyRecord> for StoredKey {
    fn from(record: KeyRecord) -> Self {
        StoredKey {
            key: record.key,
            account: record.account,
            dc_id: record.dc_id,
        }
    }
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("key_id", &self.id)
            .field("account", &self.account)
            .field("dc_id", &self.dc_id)
            .finish_non_exhaustive()
    }
}

impl KeyRecord {
    fn new(key: AuthKeyBytes, account: Option<AccountId>, dc_id: i32) -> Self {
        KeyRecord {
            id: key_id(&key),
            key,
            account,
            dc_id,
        }
    }

    /// A new key on the home DC.
    pub fn mint(account: Option<AccountId>) -> Self {
        KeyRecord::mint_on(super::DC_ID, account)
    }

    /// A new key on DC `dc_id`.
    pub fn mint_on(dc_id: i32, account: Option<AccountId>) -> Self {
        let mut key = [0u8; 256];
        rand::rng().fill(&mut key[..]);
        KeyRecord::new(key, account, dc_id)
    }

    pub fn key_id(&self) -> i64 {
        self.id
    }
}

/// MTProto's `auth_key_id`: the low 64 bits of SHA-1 of the key.
pub fn key_id(key: &AuthKeyBytes) -> i64 {
    use sha1::{Digest, Sha1};
    let sha: [u8; 20] = Sha1::digest(key).into();
    let mut low = [0u8; 8];
    low.copy_from_slice(&sha[12..20]);
    i64::from_le_bytes(low)
}

/// The sandbox bot's token, `"{bot_id}:{secret}"`. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotToken(String);

impl BotToken {
    pub fn mint(bot_id: AccountId) -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
        let mut rng = rand::rng();
        let secret: String = (0..35)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect();
        BotToken(format!("{bot_id}:{secret}"))
    }

    /// The token as the bot sends it; for writing the worker's config only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in constant time, as a token check should.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BotToken(<redacted>)")
    }
}

/// Lowercase hex, as auth keys travel in JSON.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    out
}

/// Parses hex (either case); `None` on odd length or a non-hex digit.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Parses a 512-digit hex auth key.
pub fn auth_key_from_hex(text: &str) -> Option<AuthKeyBytes> {
    from_hex(text)?.try_into().ok()
}

mod hex_key {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::sandbox::AuthKeyBytes;

    pub fn serialize<S: Serializer>(key: &AuthKeyBytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(key))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AuthKeyBytes, D::Error> {
        let text = String::deserialize(d)?;
        super::auth_key_from_hex(&text)
            .ok_or_else(|| D::Error::custom("auth key must be 512 hex digits"))
    }
}

/// Serde for TL bytes kept in the state file as hex.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        super::from_hex(&text).ok_or_else(|| D::Error::custom("expected hex bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_matches_grammers() {
        let record = KeyRecord::mint(None);
        let grammers = grammers_crypto::AuthKey::from_bytes(record.key);
        let shown = format!("{grammers:?}");
        let expected = u64::from_le_bytes(record.key_id().to_le_bytes());
        assert!(shown.contains(&format!("key_id: {expected}")), "{shown}");
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_hex("0001ABff"), Some(bytes.to_vec()));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert!(auth_key_from_hex(&"00".repeat(255)).is_none());
        assert!(auth_key_from_hex(&"0f".repeat(256)).is_some());
    }

    #[test]
    fn token_debug_hides_the_secret() {
        let token = BotToken::mint(42);
        assert!(token.expose().starts_with("42:"));
        assert!(token.matches(token.expose()));
        assert!(!token.matches("42:nope"));
        assert_eq!(format!("{token:?}"), "BotToken(<redacted>)");
    }
}
