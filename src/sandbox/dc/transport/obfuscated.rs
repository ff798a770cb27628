//! Obfuscated2: any of the tagged framings under AES-256-CTR.
//!
//! The client opens with 64 random bytes. Bytes 8..40 are the key and 40..56
//! the IV of its sending stream; the same bytes reversed give the server's.
//! Decrypting the init with the client's stream yields, at 56..60, the tag
//! of the framing inside (abridged, intermediate or padded) and at 60..62
//! the DC id. After the init both directions are encrypted end to end, so
//! the codec decrypts bytes as they arrive and the inner codec reads them.
//! The cipher is grammers-crypto's (RustCrypto `aes` + `ctr`), built from
//! the reversed init so that its "encrypt" and "decrypt" are the server's.

use bytes::BytesMut;
use grammers_crypto::ObfuscatedCipher;

use super::{
    ABRIDGED_TAG, Codec, Frame, FrameError, Framing, INTERMEDIATE_TAG, OBFUSCATED_INIT_LEN,
    PADDED_TAG, codec,
};

/// The inner framing, wrapped in the stream cipher.
pub struct Obfuscated {
    inner: Box<dyn Codec>,
    cipher: ObfuscatedCipher,
    /// Bytes at the front of the buffer already decrypted (and not yet
    /// taken by the inner codec).
    decrypted: usize,
}

/// Reads an init; returns the framing, the DC id it names and the codecs
/// for reading and writing.
pub fn accept(
    init: &[u8; OBFUSCATED_INIT_LEN],
) -> Result<(Framing, i16, Obfuscated, Obfuscated), FrameError> {
    let mut reversed = *init;
    reversed.reverse();
    let mut reader = ObfuscatedCipher::new(&reversed);
    let mut plain = *init;
    reader.decrypt(&mut plain);
    let tag: [u8; 4] = plain[56..60].try_into().expect("4 bytes");
    let framing = match tag {
        [ABRIDGED_TAG, ABRIDGED_TAG, ABRIDGED_TAG, ABRIDGED_TAG] => Framing::Abridged,
        INTERMEDIATE_TAG => Framing::Intermediate,
        PADDED_TAG => Framing::PaddedIntermediate,
        _ => return Err(FrameError::ObfuscationTag(u32::from_le_bytes(tag))),
    };
    let dc_id = i16::from_le_bytes([plain[60], plain[61]]);
    let wrap = |cipher| Obfuscated {
        inner: codec(framing),
        cipher,
        decrypted: 0,
    };
    Ok((
        framing,
        dc_id,
        wrap(reader),
        wrap(ObfuscatedCipher::new(&reversed)),
    ))
}

impl Codec for Obfuscated {
    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let decrypted = self.decrypted;
        self.cipher.decrypt(&mut buffer[decrypted..]);
        let frame = self.inner.decode(buffer)?;
        // What the inner codec left is decrypted already.
        self.decrypted = buffer.len();
        Ok(frame)
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        self.inner.encode(payload, out);
        self.cipher.encrypt(&mut out[start..]);
    }

    fn encode_error(&mut self, code: i32, out: &mut Vec<u8>) {
        let start = out.len();
        self.inner.encode_error(code, out);
        self.cipher.encrypt(&mut out[start..]);
    }

    fn encode_quick_ack(&mut self, token: u32, out: &mut Vec<u8>) {
        let start = out.len();
        self.inner.encode_quick_ack(token, out);
        self.cipher.encrypt(&mut out[start..]);
    }
}

#[cfg(test)]
mod tests {
    use grammers_crypto::DequeBuffer;
    use grammers_mtproto::transport::{self, Transport};

    use super::*;
    use crate::sandbox::dc::transport::tests::decode_bytewise;
    use crate::sandbox::dc::transport::{Detection, detect};

    /// What a grammers `Obfuscated<T>` client writes for these payloads.
    fn client_wire<T: Transport + transport::Tagged>(
        client: &mut transport::Obfuscated<T>,
        payloads: &[Vec<u8>],
    ) -> Vec<u8> {
        let mut wire = Vec::new();
        for payload in payloads {
            let mut buffer = DequeBuffer::with_capacity(payload.len(), 64 + 8);
            buffer.extend(payload.iter().copied());
            client.pack(&mut buffer);
            wire.extend_from_slice(&buffer[..]);
        }
        wire
    }

    fn detected(wire: &[u8]) -> super::super::Detected {
        match detect(wire) {
            Ok(Detection::Found {
                header_len: 64,
                detected,
            }) => detected,
            _ => panic!("not an obfuscated2 init"),
        }
    }

    #[test]
    fn talks_with_grammers_obfuscated_abridged_and_intermediate() {
        let payloads = vec![vec![1u8; 40], vec![2u8; 1000], vec![3u8; 8]];
        let mut abridged = transport::Obfuscated::new(transport::Abridged::new());
        let mut intermediate = transport::Obfuscated::new(transport::Intermediate::new());
        for (wire, framing, client) in [
            (
                client_wire(&mut abridged, &payloads),
                Framing::Abridged,
                &mut abridged as &mut dyn Transport,
            ),
            (
                client_wire(&mut intermediate, &payloads),
                Framing::Intermediate,
                &mut intermediate as &mut dyn Transport,
            ),
        ] {
            let mut found = detected(&wire);
            assert_eq!(found.kind.framing, framing);
            assert!(found.kind.obfuscated);
            let frames = decode_bytewise(found.reader.as_mut(), &wire[64..]).unwrap();
            let got: Vec<Vec<u8>> = frames.into_iter().map(|f| f.payload).collect();
            assert_eq!(got, payloads);

            // And the client decrypts what the server sends back.
            for payload in &payloads {
                let mut out = Vec::new();
                found.writer.encode(payload, &mut out);
                let offset = client.unpack(&mut out).unwrap();
                assert_eq!(&out[offset.data_range], &payload[..]);
            }
        }
    }

    #[test]
    fn a_wrong_tag_is_refused() {
        // Random-looking init whose decrypted tag is whatever it is: not a
        // valid one for this fixed pattern.
        let init: [u8; 64] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
        assert!(matches!(detect(&init), Err(FrameError::ObfuscationTag(_))));
    }

    #[test]
    fn the_dc_id_is_read_from_the_init() {
        // Build an init by hand as a client does: tag and DC id at 56..62,
        // encrypted in place with the client's own stream.
        let mut init: [u8; 64] = std::array::from_fn(|i| (i as u8).wrapping_mul(13) | 1);
        init[56..60].copy_from_slice(&[0xdd; 4]);
        init[60..62].copy_from_slice(&(-4i16).to_le_bytes());
        let mut client = ObfuscatedCipher::new(&init);
        let mut encrypted = init;
        client.encrypt(&mut encrypted);
        init[56..64].copy_from_slice(&encrypted[56..64]);
        let found = detected(&init);
        assert_eq!(found.kind.framing, Framing::PaddedIntermediate);
        assert_eq!(found.dc_id, Some(-4));
    }
}
