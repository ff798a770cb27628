//! Abridged: the lightest framing (tag `0xef`).
//!
//! A packet is one length byte (payload length / 4, below 127) or `0x7f`
//! and three little-endian length bytes, then the payload. The client sets
//! the length byte's top bit to ask for a quick ack; the server's quick ack
//! is the 4-byte token sent big-endian, so its first byte has the top bit
//! set and cannot be mistaken for a length.

use bytes::{Buf, BytesMut};

use super::{Codec, Frame, FrameError, check_len};

const QUICK_ACK_BIT: u8 = 0x80;
const LONG_LENGTH: u8 = 0x7f;

pub struct Abridged;

impl Codec for Abridged {
    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(&first) = buffer.first() else {
            return Ok(None);
        };
        let quick_ack = first & QUICK_ACK_BIT != 0;
        let (header_len, words) = match first & !QUICK_ACK_BIT {
            LONG_LENGTH => {
                let Some(len) = buffer.get(1..4) else {
                    return Ok(None);
                };
                (4, u32::from_le_bytes([len[0], len[1], len[2], 0]))
            }
            short => (1, u32::from(short)),
        };
        let len = check_len(i64::from(words) * 4)?;
        if buffer.len() < header_len + len {
            return Ok(None);
        }
        buffer.advance(header_len);
        let payload = buffer.split_to(len).to_vec();
        Ok(Some(Frame { payload, quick_ack }))
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let words = payload.len() / 4;
        if words < usize::from(LONG_LENGTH) {
            out.push(words as u8);
        } else {
            out.push(LONG_LENGTH);
            out.extend_from_slice(&(words as u32).to_le_bytes()[..3]);
        }
        out.extend_from_slice(payload);
    }

    fn encode_error(&mut self, code: i32, out: &mut Vec<u8>) {
        self.encode(&(-code).to_le_bytes(), out);
    }

    fn encode_quick_ack(&mut self, token: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&(token | 0x8000_0000).to_be_bytes());
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
        // 8 bytes: one length byte, 2 words.
        let mut out = Vec::new();
        Abridged.encode(&[1, 2, 3, 4, 5, 6, 7, 8], &mut out);
        assert_eq!(out, [2, 1, 2, 3, 4, 5, 6, 7, 8]);
        // 127 words (508 bytes) need the long form: 0x7f, then 127 in 3 bytes LE.
        let mut out = Vec::new();
        Abridged.encode(&[0; 508], &mut out);
        assert_eq!(&out[..4], &[0x7f, 127, 0, 0]);
        assert_eq!(out.len(), 4 + 508);
        // 0x7fffff words in the long form: refused from the header alone.
        let mut buffer = BytesMut::from(&[0x7f, 0xff, 0xff, 0x7f][..]);
        assert_eq!(
            Abridged.decode(&mut buffer),
            Err(FrameError::Length(0x7f_ffff * 4))
        );
        // 515 words (2060 bytes), within the bound: waits for the rest.
        let mut buffer = BytesMut::from(&[0x7f, 0x03, 0x02, 0x00][..]);
        assert_eq!(Abridged.decode(&mut buffer), Ok(None));
    }

    #[test]
    fn quick_ack_bit_is_read_and_the_ack_is_big_endian() {
        // 0x81: one word, quick ack asked.
        let frames = decode_bytewise(&mut Abridged, &[0x81, 9, 9, 9, 9]).unwrap();
        assert_eq!(
            frames,
            [Frame {
                payload: vec![9; 4],
                quick_ack: true
            }]
        );
        // 0xff: long form with quick ack.
        let mut wire = vec![0xff, 127, 0, 0];
        wire.extend([7; 508]);
        let frames = decode_bytewise(&mut Abridged, &wire).unwrap();
        assert!(frames[0].quick_ack && frames[0].payload == [7; 508]);

        let mut out = Vec::new();
        Abridged.encode_quick_ack(0x1234_5678, &mut out);
        assert_eq!(out, [0x92, 0x34, 0x56, 0x78]);
    }

    #[test]
    fn errors_are_a_one_word_packet() {
        let mut out = Vec::new();
        Abridged.encode_error(404, &mut out);
        assert_eq!(out, [1, 0x6c, 0xfe, 0xff, 0xff]);
        assert_eq!(
            transport::Abridged::new().unpack(&mut out),
            Err(transport::Error::BadStatus { status: 404 })
        );
    }

    #[test]
    fn reads_what_grammers_packs_and_grammers_reads_ours() {
        let mut client = transport::Abridged::new();
        let mut wire = Vec::new();
        for len in [4usize, 64, 508, 4096] {
            let mut buffer = DequeBuffer::with_capacity(len, 8);
            buffer.extend((0..len).map(|i| i as u8));
            client.pack(&mut buffer);
            wire.extend_from_slice(&buffer[..]);
        }
        assert_eq!(wire[0], 0xef);
        let frames = decode_bytewise(&mut Abridged, &wire[1..]).unwrap();
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[3].payload.len(), 4096);

        let mut out = Vec::new();
        Abridged.encode(&[5; 600], &mut out);
        let offset = client.unpack(&mut out).unwrap();
        assert_eq!(&out[offset.data_range], &[5; 600][..]);
    }
}
