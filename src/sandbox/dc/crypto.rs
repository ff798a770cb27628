//! MTProto 2.0 message encryption, seen from the server.
//!
//! grammers-crypto only implements the client's half (it encrypts with
//! x = 0 and decrypts with x = 8); a server needs the mirror image. The
//! derivation is short, so it lives here on top of grammers' AES-IGE, and
//! the tests pin it against the client's own code in both directions.

use std::fmt;

use grammers_crypto::aes;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::sandbox::AuthKeyBytes;

/// `auth_key_id` (8 bytes) and `msg_key` (16 bytes) before the ciphertext.
const HEADER_LEN: usize = 24;

/// Which way a message travels; selects the key material (`x` in the spec).
#[derive(Clone, Copy)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    fn x(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 8,
        }
    }
}

/// Why an encrypted message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("encrypted message of {0} bytes is not 24 + a multiple of 16")]
    BadLength(usize),
    #[error("message is for auth key {got}, the connection uses {expected}")]
    WrongKey { expected: i64, got: i64 },
    #[error("msg_key does not match the decrypted content")]
    BadMsgKey,
}

/// The id Telegram derives from an auth key: the low 64 bits of its SHA-1.
pub fn auth_key_id(key: &AuthKeyBytes) -> i64 {
    let sha: [u8; 20] = Sha1::digest(key).into();
    i64::from_le_bytes(sha[12..20].try_into().expect("8 bytes"))
}

/// The `auth_key_id` an encrypted message starts with (0: unencrypted).
pub fn peek_auth_key_id(message: &[u8]) -> Option<i64> {
    let id = message.get(..8)?;
    Some(i64::from_le_bytes(id.try_into().ok()?))
}

/// One auth key, ready to decrypt what its client sends and encrypt replies.
#[derive(Clone)]
pub struct ServerKey {
    data: AuthKeyBytes,
    id: i64,
}

impl fmt::Debug for ServerKey {
    // The key itself is a secret: only its public id is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKey").field("id", &self.id).finish()
    }
}

impl ServerKey {
    pub fn new(data: AuthKeyBytes) -> Self {
        let id = auth_key_id(&data);
        ServerKey { data, id }
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    /// Decrypts a client's message (`auth_key_id | msg_key | ciphertext`) in
    /// place and returns the plaintext, padding included.
    pub fn decrypt<'m>(&self, message: &'m mut [u8]) -> Result<&'m [u8], DecryptError> {
        if message.len() < HEADER_LEN + 16 || !(message.len() - HEADER_LEN).is_multiple_of(16) {
            return Err(DecryptError::BadLength(message.len()));
        }
        let got = peek_auth_key_id(message).unwrap_or_default();
        if got != self.id {
            return Err(DecryptError::WrongKey {
                expected: self.id,
                got,
            });
        }
        let (header, body) = message.split_at_mut(HEADER_LEN);
        let msg_key: [u8; 16] = header[8..].try_into().expect("16 bytes");
        let (key, iv) = self.aes_key_iv(&msg_key, Direction::ClientToServer);
        aes::ige_decrypt(body, &key, &iv);
        if self.msg_key(body, Direction::ClientToServer) != msg_key {
            return Err(DecryptError::BadMsgKey);
        }
        Ok(body)
    }

    /// Encrypts a plaintext (`salt | session_id | message`) for the client,
    /// adding the random padding MTProto 2.0 requires.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        // 12..=1024 bytes of padding, to a multiple of 16: 16..=31 here.
        let padding = 16 + (16 - plaintext.len() % 16) % 16;
        let mut message = Vec::with_capacity(HEADER_LEN + plaintext.len() + padding);
        message.extend_from_slice(&self.id.to_le_bytes());
        message.extend_from_slice(&[0; 16]);
        message.extend_from_slice(plaintext);
        let start = message.len();
        message.resize(start + padding, 0);
        rand::fill(&mut message[start..]);

        let (header, body) = message.split_at_mut(HEADER_LEN);
        let msg_key = self.msg_key(body, Direction::ServerToClient);
        header[8..].copy_from_slice(&msg_key);
        let (key, iv) = self.aes_key_iv(&msg_key, Direction::ServerToClient);
        aes::ige_encrypt(body, &key, &iv);
        message
    }

    /// The quick ack a client asked for with a packet (MTProto 2.0): the
    /// first 32 bits of `msg_key_large` of its decrypted message.
    pub fn quick_ack_token(&self, padded_plaintext: &[u8]) -> u32 {
        let large = self.msg_key_large(padded_plaintext, Direction::ClientToServer);
        u32::from_le_bytes(large[..4].try_into().expect("4 bytes"))
    }

    /// `msg_key_large = SHA256(substr(auth_key, 88+x, 32) + plaintext)`
    fn msg_key_large(&self, padded_plaintext: &[u8], direction: Direction) -> [u8; 32] {
        let x = direction.x();
        Sha256::new()
            .chain_update(&self.data[88 + x..88 + x + 32])
            .chain_update(padded_plaintext)
            .finalize()
            .into()
    }

    /// `msg_key = substr(msg_key_large, 8, 16)`
    fn msg_key(&self, padded_plaintext: &[u8], direction: Direction) -> [u8; 16] {
        self.msg_key_large(padded_plaintext, direction)[8..24]
            .try_into()
            .expect("16 bytes")
    }

    /// The AES-256-IGE key and iv for one message, per MTProto 2.0.
    fn aes_key_iv(&self, msg_key: &[u8; 16], direction: Direction) -> ([u8; 32], [u8; 32]) {
        let x = direction.x();
        let a: [u8; 32] = Sha256::new()
            .chain_update(msg_key)
            .chain_update(&self.data[x..x + 36])
            .finalize()
            .into();
        let b: [u8; 32] = Sha256::new()
            .chain_update(&self.data[40 + x..40 + x + 36])
            .chain_update(msg_key)
            .finalize()
            .into();
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&a[..8]);
        key[8..24].copy_from_slice(&b[8..24]);
        key[24..].copy_from_slice(&a[24..]);
        let mut iv = [0u8; 32];
        iv[..8].copy_from_slice(&b[..8]);
        iv[8..24].copy_from_slice(&a[8..24]);
        iv[24..].copy_from_slice(&b[24..]);
        (key, iv)
    }
}

#[cfg(test)]
mod tests {
    use grammers_crypto::{AuthKey, DequeBuffer, decrypt_data_v2, encrypt_data_v2};

    use super::*;

    fn test_key() -> AuthKeyBytes {
        std::array::from_fn(|i| (i * 7 + 3) as u8)
    }

    fn client_encrypt(key: &AuthKeyBytes, plaintext: &[u8]) -> Vec<u8> {
        let mut buffer = DequeBuffer::with_capacity(plaintext.len(), 24);
        buffer.extend(plaintext.iter().copied());
        encrypt_data_v2(&mut buffer, &AuthKey::from_bytes(*key));
        buffer[..].to_vec()
    }

    #[test]
    fn key_id_matches_what_grammers_sends() {
        let key = test_key();
        let message = client_encrypt(&key, &[0; 32]);
        assert_eq!(peek_auth_key_id(&message), Some(auth_key_id(&key)));
    }

    #[test]
    fn decrypts_what_the_client_encrypts() {
        let key = test_key();
        for len in [16, 32, 48, 1024] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut message = client_encrypt(&key, &plaintext);
            let decrypted = ServerKey::new(key).decrypt(&mut message).unwrap();
            assert_eq!(&decrypted[..len], &plaintext[..]);
        }
    }

    #[test]
    fn the_client_decrypts_what_we_encrypt() {
        let key = test_key();
        for len in [16, 20, 48, 1000] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut message = ServerKey::new(key).encrypt(&plaintext);
            let decrypted = decrypt_data_v2(&mut message, &AuthKey::from_bytes(key)).unwrap();
            assert_eq!(&decrypted[..len], &plaintext[..]);
            assert!((12..=1024).contains(&(decrypted.len() - len)));
        }
    }

    #[test]
    fn refuses_tampering_and_other_keys() {
        let key = test_key();
        let server = ServerKey::new(key);
        let mut message = client_encrypt(&key, &[5; 48]);
        let last = message.len() - 1;
        message[last] ^= 1;
        assert_eq!(server.decrypt(&mut message), Err(DecryptError::BadMsgKey));

        let mut other = test_key();
        other[0] ^= 1;
        let mut message = client_encrypt(&other, &[5; 48]);
        assert!(matches!(
            server.decrypt(&mut message),
            Err(DecryptError::WrongKey { .. })
        ));
        assert_eq!(
            server.decrypt(&mut [0; 30]),
            Err(DecryptError::BadLength(30))
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let key = [0xab; 256];
        let shown = format!("{:?}", ServerKey::new(key));
        assert_eq!(shown, format!("ServerKey {{ id: {} }}", auth_key_id(&key)));
    }
}
