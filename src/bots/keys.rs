//! API keys: which bot (or the operator) a request's key names.
//!
//! Only SHA-256 digests of the keys are kept, in a map by digest: a lookup
//! hashes the presented key and finds its digest, then compares the two
//! digests in constant time. What the time of a lookup could tell is about
//! the digest (how a randomly keyed map buckets it), which says nothing of
//! a key (finding a key from its digest is a SHA-256 preimage), and a
//! lookup costs the same with one key or a thousand bots' keys. No log line
//! names a key.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{BotName, Config};

/// Who a key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    Bot(BotName),
    /// `[api] admin_keys`: every bot.
    Operator,
}

/// Whether a key is still to be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Current,
    /// Recognised, and refused with `error_code` 6.
    Deprecated,
}

struct Entry {
    holder: Holder,
    status: KeyStatus,
}

/// Every configured key, as digests.
#[derive(Default)]
pub struct Keyring {
    entries: HashMap<[u8; 32], Entry>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} keys)", self.entries.len())
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

impl Keyring {
    /// The keys of `config`'s bots and operators (already checked to name
    /// one holder each).
    pub fn from_config(config: &Config) -> Self {
        let mut entries = HashMap::new();
        for bot in &config.bots {
            let keys = bot
                .api_keys
                .iter()
                .map(|key| (key, KeyStatus::Current))
                .chain(
                    bot.deprecated_api_keys
                        .iter()
                        .map(|key| (key, KeyStatus::Deprecated)),
                );
            for (key, status) in keys {
                let holder = Holder::Bot(bot.name.clone());
                entries.insert(digest(key.expose().as_bytes()), Entry { holder, status });
            }
        }
        for key in &config.api.admin_keys {
            let entry = Entry {
                holder: Holder::Operator,
                status: KeyStatus::Current,
            };
            entries.insert(digest(key.expose().as_bytes()), entry);
        }
        Keyring { entries }
    }

    /// No key configured anywhere: requests need none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Who `key` belongs to, if anyone.
    pub fn find(&self, key: &[u8]) -> Option<(&Holder, KeyStatus)> {
        let wanted = digest(key);
        let (stored, entry) = self.entries.get_key_value(&wanted)?;
        if !bool::from(stored.ct_eq(&wanted)) {
            return None;
        }
        Some((&entry.holder, entry.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_bot_operator_or_nobody() {
        let config = Config::parse(
            "[api]\nadmin_keys = [\"op\"]\n\
             [[bots]]\nname = \"a\"\napi_keys = [\"ka\"]\ndeprecated_api_keys = [\"old\"]\n\
             [[bots]]\nname = \"b\"\napi_keys = [\"kb\"]\n",
        )
        .unwrap();
        let keys = Keyring::from_config(&config);
        let bot = |name: &str| Holder::Bot(BotName::new(name).unwrap());
        assert_eq!(keys.find(b"ka"), Some((&bot("a"), KeyStatus::Current)));
        assert_eq!(keys.find(b"kb"), Some((&bot("b"), KeyStatus::Current)));
        assert_eq!(keys.find(b"old"), Some((&bot("a"), KeyStatus::Deprecated)));
        assert_eq!(
            keys.find(b"op"),
            Some((&Holder::Operator, KeyStatus::Current))
        );
        assert_eq!(keys.find(b"k"), None);
        assert_eq!(keys.find(b""), None);
        assert!(!keys.is_empty());
        assert!(Keyring::default().is_empty());
        assert!(!format!("{keys:?}").contains("ka"));
    }
}
