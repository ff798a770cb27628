//! Full: `len | seq | payload | crc32`, little endian, no tag.
//!
//! `len` counts the whole packet and `seq` counts packets in one direction
//! (so a connection's first packet has `seq` 0, which is how Telegram tells
//! this transport from an obfuscated2 init). There is no quick ack.

use bytes::{Buf, BytesMut};

use super::{Codec, Frame, FrameError, MAX_PACKET_LEN, le_u32};

/// `len`, `seq` and `crc32`: a packet with an empty payload.
const OVERHEAD: usize = 12;

#[derive(Default)]
pub struct Full {
    seq: i32,
}

impl Full {
    fn check_len(len: u32) -> Result<usize, FrameError> {
        match usize::try_from(len) {
            Ok(n) if (OVERHEAD + 4..=MAX_PACKET_LEN).contains(&n) && n.is_multiple_of(4) => Ok(n),
            _ => Err(FrameError::Length(i64::from(len as i32))),
        }
    }
}

impl Codec for Full {
    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buffer.len() < 4 {
            return Ok(None);
        }
        let len = Self::check_len(le_u32(buffer, 0))?;
        if buffer.len() < len {
            return Ok(None);
        }
        let body = &buffer[..len - 4];
        let got = le_u32(buffer, len - 4);
        let expected = crc32fast::hash(body);
        if got != expected {
            return Err(FrameError::Crc { expected, got });
        }
        let seq = le_u32(buffer, 4) as i32;
        if seq != self.seq {
            return Err(FrameError::Seq {
                expected: self.seq,
                got: seq,
            });
        }
        self.seq = self.seq.wrapping_add(1);
        buffer.advance(8);
        let payload = buffer.split_to(len - OVERHEAD).to_vec();
        buffer.advance(4);
        Ok(Some(Frame {
            payload,
            quick_ack: false,
        }))
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        // Callers keep payloads under MAX_PACKET_LEN, far below u32::MAX.
        out.extend_from_slice(&((payload.len() + OVERHEAD) as u32).to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(payload);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        self.seq = self.seq.wrapping_add(1);
    }

    /// `-code` in place of the length, then twice more where `seq` and the
    /// payload would be: what Telegram sends on this transport. grammers
    /// stops at the first int, Telethon reads all three.
    fn encode_error(&mut self, code: i32, out: &mut Vec<u8>) {
        for _ in 0..3 {
            out.extend_from_slice(&(-code).to_le_bytes());
        }
    }

    /// The full transport has no quick acks; nothing is sent.
    fn encode_quick_ack(&mut self, _token: u32, _out: &mut Vec<u8>) {}
}

#[cfg(test)]
mod tests {
    use grammers_crypto::DequeBuffer;
    use grammers_mtproto::transport::{self, Transport};

    use super::*;
    use crate::sandbox::dc::transport::tests::decode_bytewise;

    #[test]
    fn spec_vector() {
        // len 16, seq 0, payload 01020304, crc32 of the first 12 bytes.
        let mut out = Vec::new();
        Full::default().encode(&[1, 2, 3, 4], &mut out);
        let crc = crc32fast::hash(&[16, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        let mut expected = vec![16, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        expected.extend(crc.to_le_bytes());
        assert_eq!(out, expected);
    }

    #[test]
    fn packs_and_unpacks_as_grammers_does() {
        let mut client = transport::Full::new();
        let mut server_writer = Full::default();
        let mut wire = Vec::new();
        for seq in 0..3u8 {
            let payload: Vec<u8> = (0..128u8).map(|b| b.wrapping_mul(seq + 1)).collect();
            let mut buffer = DequeBuffer::with_capacity(payload.len(), 8);
            buffer.extend(payload.iter().copied());
            client.pack(&mut buffer);
            let mut ours = Vec::new();
            server_writer.encode(&payload, &mut ours);
            // Both directions number their packets alike.
            assert_eq!(ours, &buffer[..]);
            wire.extend_from_slice(&buffer[..]);
        }
        let frames = decode_bytewise(&mut Full::default(), &wire).unwrap();
        assert_eq!(frames.len(), 3);

        let mut out = Vec::new();
        Full::default().encode(&[9; 64], &mut out);
        let offset = transport::Full::new().unpack(&mut out).unwrap();
        assert_eq!(&out[offset.data_range], &[9; 64][..]);
    }

    #[test]
    fn rejects_bad_crc_seq_and_length() {
        let mut packet = Vec::new();
        Full::default().encode(&[1, 2, 3, 4], &mut packet);
        assert!(matches!(
            Full { seq: 1 }.decode(&mut BytesMut::from(&packet[..])),
            Err(FrameError::Seq {
                expected: 1,
                got: 0
            })
        ));
        let last = packet.len() - 1;
        packet[last] ^= 0xff;
        assert!(matches!(
            Full::default().decode(&mut BytesMut::from(&packet[..])),
            Err(FrameError::Crc { .. })
        ));
        for len in [-404i32, 0, 12, 13, i32::MAX] {
            let mut buffer = BytesMut::from(&len.to_le_bytes()[..]);
            assert!(matches!(
                Full::default().decode(&mut buffer),
                Err(FrameError::Length(_))
            ));
        }
    }

    #[test]
    fn errors_reach_grammers_as_bad_status() {
        let mut out = Vec::new();
        Full::default().encode_error(404, &mut out);
        assert_eq!(out.len(), 12);
        assert_eq!(
            transport::Full::new().unpack(&mut out),
            Err(transport::Error::BadStatus { status: 404 })
        );
    }
}
