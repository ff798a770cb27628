//! Padded intermediate (tag `0xdddddddd`): intermediate with 0–15 random
//! bytes after each payload, counted in the length, so packet sizes do not
//! give the protocol away.
//!
//! The padding is not marked: an encrypted MTProto message is
//! `24 + 16·k` bytes long, so what exceeds that is padding.

use bytes::BytesMut;

use super::intermediate::{decode_prefixed, encode_prefixed};
use super::{Codec, Frame, FrameError};

pub struct PaddedIntermediate;

/// `auth_key_id` and `msg_key`: an encrypted message is this plus 16·k.
const ENCRYPTED_HEADER: usize = 24;

impl Codec for PaddedIntermediate {
    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(mut frame) = decode_prefixed(buffer)? else {
            return Ok(None);
        };
        let len = frame.payload.len();
        if len >= ENCRYPTED_HEADER {
            frame.payload.truncate(len - (len - ENCRYPTED_HEADER) % 16);
        }
        Ok(Some(frame))
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let mut padding = [0u8; 15];
        let len = usize::from(rand::random::<u8>() % 16);
        rand::fill(&mut padding[..len]);
        encode_prefixed(payload, &padding[..len], out);
    }

    fn encode_error(&mut self, code: i32, out: &mut Vec<u8>) {
        encode_prefixed(&(-code).to_le_bytes(), &[], out);
    }

    fn encode_quick_ack(&mut self, token: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&(token | 0x8000_0000).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::dc::transport::tests::decode_bytewise;

    #[test]
    fn padding_is_counted_and_stripped() {
        // A 40-byte "encrypted message" (24 + 16) with 7 bytes of padding.
        let mut wire = vec![47, 0, 0, 0];
        wire.extend([1u8; 40]);
        wire.extend([0xaa; 7]);
        let frames = decode_bytewise(&mut PaddedIntermediate, &wire).unwrap();
        assert_eq!(frames[0].payload, [1; 40]);

        for _ in 0..32 {
            let mut out = Vec::new();
            PaddedIntermediate.encode(&[2; 40], &mut out);
            let declared = u32::from_le_bytes(out[..4].try_into().unwrap()) as usize;
            assert_eq!(declared, out.len() - 4);
            assert!((40..=55).contains(&declared));
            let frames = decode_bytewise(&mut PaddedIntermediate, &out).unwrap();
            assert_eq!(frames[0].payload, [2; 40]);
        }
    }

    #[test]
    fn errors_are_unpadded() {
        let mut out = Vec::new();
        PaddedIntermediate.encode_error(404, &mut out);
        assert_eq!(out, [4, 0, 0, 0, 0x6c, 0xfe, 0xff, 0xff]);
    }
}
