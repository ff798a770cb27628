//! Intermediate: a 4-byte length before each payload (tag `0xeeeeeeee`).
//!
//! The length is little endian and counts the payload; the client sets its
//! top bit to ask for a quick ack, and the server's quick ack is the token,
//! top bit set, sent alone in place of a length.

use bytes::{Buf, BytesMut};

use super::{Codec, Frame, FrameError, check_len, le_u32};

const QUICK_ACK_BIT: u32 = 0x8000_0000;

pub struct Intermediate;

/// Reads one length-prefixed packet, quick-ack bit and all; the padded
/// variant shares it.
pub(super) fn decode_prefixed(buffer: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    if buffer.len() < 4 {
        return Ok(None);
    }
    let word = le_u32(buffer, 0);
    let quick_ack = word & QUICK_ACK_BIT != 0;
    let len = usize::try_from(word & !QUICK_ACK_BIT).unwrap_or(usize::MAX);
    if !(4..=super::MAX_PACKET_LEN + 15).contains(&len) {
        return Err(FrameError::Length(i64::from(word & !QUICK_ACK_BIT)));
    }
    if buffer.len() < 4 + len {
        return Ok(None);
    }
    buffer.advance(4);
    let payload = buffer.split_to(len).to_vec();
    Ok(Some(Frame { payload, quick_ack }))
}

pub(super) fn encode_prefixed(payload: &[u8], padding: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&((payload.len() + padding.len()) as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(padding);
}

impl Codec for Intermediate {
    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        // Unpadded: the length itself must be a valid payload length.
        if buffer.len() >= 4 {
            check_len(i64::from(le_u32(buffer, 0) & !QUICK_ACK_BIT))?;
        }
        decode_prefixed(buffer)
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        encode_prefixed(payload, &[], out);
    }

    fn encode_error(&mut self, code: i32, out: &mut Vec<u8>) {
        encode_prefixed(&(-code).to_le_bytes(), &[], out);
    }

    fn encode_quick_ack(&mut self, token: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&(token | QUICK_ACK_BIT).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use grammers_crypto::DequeBuffer;
    use grammers_mtproto::transport::{self, Transport};

    use super::*;
    use crate::sandbox::dc::transport::tests::decode_bytewise;

    #[test]
    fn spec_vectors() {
        let mut out = Vec::new();
        Intermediate.encode(&[1, 2, 3, 4], &mut out);
        assert_eq!(out, [4, 0, 0, 0, 1, 2, 3, 4]);
        // Quick ack asked: length 4 with the top bit set.
        let frames = decode_bytewise(&mut Intermediate, &[4, 0, 0, 0x80, 9, 9, 9, 9]).unwrap();
        assert!(frames[0].quick_ack && frames[0].payload == [9; 4]);
        let mut out = Vec::new();
        Intermediate.encode_quick_ack(0x0102_0304, &mut out);
        assert_eq!(out, [4, 3, 2, 0x81]);
        let mut out = Vec::new();
        Intermediate.encode_error(429, &mut out);
        assert_eq!(out, [4, 0, 0, 0, 0x53, 0xfe, 0xff, 0xff]);
        assert_eq!(
            transport::Intermediate::new().unpack(&mut out),
            Err(transport::Error::BadStatus { status: 429 })
        );
    }

    #[test]
    fn refuses_bad_lengths_from_the_prefix_alone() {
        for prefix in [[0u8, 0, 0, 0], [6, 0, 0, 0], [0xff, 0xff, 0xff, 0x7f]] {
            let mut buffer = BytesMut::from(&prefix[..]);
            assert!(matches!(
                Intermediate.decode(&mut buffer),
                Err(FrameError::Length(_))
            ));
        }
    }

    #[test]
    fn reads_what_grammers_packs_and_grammers_reads_ours() {
        let mut client = transport::Intermediate::new();
        let mut buffer = DequeBuffer::with_capacity(64, 8);
        buffer.extend([3u8; 64]);
        client.pack(&mut buffer);
        assert_eq!(&buffer[..4], &[0xee; 4]);
        let frames = decode_bytewise(&mut Intermediate, &buffer[4..]).unwrap();
        assert_eq!(frames[0].payload, [3; 64]);

        let mut out = Vec::new();
        Intermediate.encode(&[5; 64], &mut out);
        let offset = client.unpack(&mut out).unwrap();
        assert_eq!(&out[offset.data_range], &[5; 64][..]);
    }
}
