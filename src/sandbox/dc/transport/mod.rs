//! MTProto's TCP transports: how encrypted payloads are framed on a stream.
//!
//! Telegram accepts five framings and tells them apart by a connection's
//! first bytes ([`detect`]): abridged (`0xef`), intermediate (`0xeeeeeeee`),
//! padded intermediate (`0xdddddddd`), full (no tag: the second int, the
//! packet's sequence number, is 0) and obfuscated2 (64 random bytes whose
//! AES-256-CTR decryption names one of the first three). Each framing is a
//! [`Codec`] in its own module; the connection loop only sees the trait. A
//! codec checks every field a confused or hostile peer could get wrong and
//! refuses a declared length above [`MAX_PACKET_LEN`] before buffering it.

mod abridged;
mod full;
mod intermediate;
mod obfuscated;
mod padded;

use bytes::BytesMut;

pub use abridged::Abridged;
pub use full::Full;
pub use intermediate::Intermediate;
pub use obfuscated::Obfuscated;
pub use padded::PaddedIntermediate;

/// The largest packet either side may send. grammers reads at most 1 MiB +
/// 8 KiB at once and Telegram closes connections beyond about a megabyte.
pub const MAX_PACKET_LEN: usize = 1024 * 1024 + 8 * 1024;

/// Bytes of the obfuscated2 init a client sends first.
pub const OBFUSCATED_INIT_LEN: usize = 64;

/// One packet's payload, and whether the client asked for a quick ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub payload: Vec<u8>,
    pub quick_ack: bool,
}

/// A packet that breaks its transport's rules; the connection must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("packet length {0} is not a multiple of 4 in 4..={MAX_PACKET_LEN}")]
    Length(i64),
    #[error("packet sequence number is {got}, expected {expected}")]
    Seq { expected: i32, got: i32 },
    #[error("packet crc32 is {got:#010x}, its content gives {expected:#010x}")]
    Crc { expected: u32, got: u32 },
    #[error("first bytes {0:02x?} are reserved (HTTP, TLS or a bare tag): refused")]
    Reserved([u8; 4]),
    #[error("obfuscated2 init names protocol {0:#010x}, not abridged, intermediate or padded")]
    ObfuscationTag(u32),
}

/// One framing of MTProto payloads. A connection uses one instance per
/// direction: reading calls [`Codec::decode`], writing the `encode`s.
pub trait Codec: Send {
    /// Takes the next whole packet off the front of `buffer`; `Ok(None)`
    /// while it is incomplete. Never allocates beyond what has arrived.
    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, FrameError>;

    /// Appends `payload` (a multiple of 4 bytes) framed as one packet.
    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>);

    /// Appends transport error `code` (404: unknown auth key, 429: too many
    /// connections) the way this transport carries it: `-code` as a packet.
    fn encode_error(&mut self, code: i32, out: &mut Vec<u8>);

    /// Appends the quick ack `token` (its top bit set) for a packet that
    /// asked for one.
    fn encode_quick_ack(&mut self, token: u32, out: &mut Vec<u8>);
}

/// The framing under any obfuscation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Framing {
    Abridged,
    Intermediate,
    PaddedIntermediate,
    Full,
}

/// What a connection speaks, as `GET /stats` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportKind {
    pub framing: Framing,
    pub obfuscated: bool,
}

impl TransportKind {
    pub fn name(self) -> &'static str {
        match (self.obfuscated, self.framing) {
            (false, Framing::Abridged) => "abridged",
            (false, Framing::Intermediate) => "intermediate",
            (false, Framing::PaddedIntermediate) => "padded_intermediate",
            (false, Framing::Full) => "full",
            (true, Framing::Abridged) => "obfuscated_abridged",
            (true, Framing::Intermediate) => "obfuscated_intermediate",
            (true, Framing::PaddedIntermediate) => "obfuscated_padded_intermediate",
            (true, Framing::Full) => "obfuscated_full",
        }
    }
}

/// A recognised connection: the codec for each direction.
pub struct Detected {
    pub kind: TransportKind,
    /// The DC id an obfuscated2 init names (bytes 60..62), if any.
    pub dc_id: Option<i16>,
    pub reader: Box<dyn Codec>,
    pub writer: Box<dyn Codec>,
}

/// What the first bytes of a connection say.
pub enum Detection {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// Consume this many header bytes; packets follow.
    Found {
        header_len: usize,
        detected: Detected,
    },
}

/// First ints Telegram refuses: HTTP verbs and a TLS handshake (served by
/// other front ends), the same ones an obfuscated2 client must avoid.
const RESERVED_FIRST_INTS: [[u8; 4]; 5] = [
    *b"HEAD",
    *b"POST",
    *b"GET ",
    *b"OPTI",
    [0x16, 0x03, 0x01, 0x02],
];

const ABRIDGED_TAG: u8 = 0xef;
const INTERMEDIATE_TAG: [u8; 4] = [0xee; 4];
const PADDED_TAG: [u8; 4] = [0xdd; 4];

/// Tells the transport from a connection's first bytes, as Telegram does.
pub fn detect(head: &[u8]) -> Result<Detection, FrameError> {
    let Some(&first) = head.first() else {
        return Ok(Detection::NeedMore);
    };
    if first == ABRIDGED_TAG {
        return Ok(plain(1, Framing::Abridged));
    }
    let Some(word) = head.get(..4) else {
        return Ok(Detection::NeedMore);
    };
    let word: [u8; 4] = word.try_into().expect("4 bytes");
    match word {
        INTERMEDIATE_TAG => return Ok(plain(4, Framing::Intermediate)),
        PADDED_TAG => return Ok(plain(4, Framing::PaddedIntermediate)),
        _ if RESERVED_FIRST_INTS.contains(&word) => return Err(FrameError::Reserved(word)),
        _ => {}
    }
    let Some(seq) = head.get(4..8) else {
        return Ok(Detection::NeedMore);
    };
    if seq == [0; 4] {
        // Full: a length, then sequence number 0. No header to consume.
        return Ok(plain(0, Framing::Full));
    }
    let Some(init) = head.get(..OBFUSCATED_INIT_LEN) else {
        return Ok(Detection::NeedMore);
    };
    let init: &[u8; OBFUSCATED_INIT_LEN] = init.try_into().expect("64 bytes");
    let (framing, dc_id, reader, writer) = obfuscated::accept(init)?;
    Ok(Detection::Found {
        header_len: OBFUSCATED_INIT_LEN,
        detected: Detected {
            kind: TransportKind {
                framing,
                obfuscated: true,
            },
            dc_id: Some(dc_id),
            reader: Box::new(reader),
            writer: Box::new(writer),
        },
    })
}

fn plain(header_len: usize, framing: Framing) -> Detection {
    Detection::Found {
        header_len,
        detected: Detected {
            kind: TransportKind {
                framing,
                obfuscated: false,
            },
            dc_id: None,
            reader: codec(framing),
            writer: codec(framing),
        },
    }
}

/// A fresh codec for `framing`.
fn codec(framing: Framing) -> Box<dyn Codec> {
    match framing {
        Framing::Abridged => Box::new(Abridged),
        Framing::Intermediate => Box::new(Intermediate),
        Framing::PaddedIntermediate => Box::new(PaddedIntermediate),
        Framing::Full => Box::new(Full::default()),
    }
}

/// Checks a declared packet length (payload bytes) against the bound.
fn check_len(len: i64) -> Result<usize, FrameError> {
    match usize::try_from(len) {
        Ok(n) if (4..=MAX_PACKET_LEN).contains(&n) && n.is_multiple_of(4) => Ok(n),
        _ => Err(FrameError::Length(len)),
    }
}

/// The little-endian `u32` at `at` (the caller checked the length).
fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Feeds `wire` to `codec` one byte at a time (the worst split a
    /// socket can produce) and collects the frames.
    pub fn decode_bytewise(codec: &mut dyn Codec, wire: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut buffer = BytesMut::new();
        let mut frames = Vec::new();
        for &byte in wire {
            buffer.extend_from_slice(&[byte]);
            while let Some(frame) = codec.decode(&mut buffer)? {
                frames.push(frame);
            }
        }
        assert!(buffer.is_empty(), "{} bytes left over", buffer.len());
        Ok(frames)
    }

    fn found(head: &[u8]) -> (usize, TransportKind) {
        match detect(head) {
            Ok(Detection::Found {
                header_len,
                detected,
            }) => (header_len, detected.kind),
            Ok(Detection::NeedMore) => panic!("needs more"),
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn detects_each_tag_from_the_fewest_bytes() {
        assert!(matches!(detect(&[]), Ok(Detection::NeedMore)));
        assert_eq!(found(&[0xef]).0, 1);
        assert_eq!(found(&[0xef]).1.framing, Framing::Abridged);
        assert!(matches!(
            detect(&[0xee, 0xee, 0xee]),
            Ok(Detection::NeedMore)
        ));
        assert_eq!(found(&[0xee; 4]), (4, plain_kind(Framing::Intermediate)));
        assert_eq!(
            found(&[0xdd; 4]),
            (4, plain_kind(Framing::PaddedIntermediate))
        );
        // Full: length 16, seq 0.
        assert_eq!(
            found(&[16, 0, 0, 0, 0, 0, 0, 0]),
            (0, plain_kind(Framing::Full))
        );
        // Neither: an obfuscated2 init, which needs all 64 bytes.
        assert!(matches!(
            detect(&[1, 2, 3, 4, 5, 6, 7, 8]),
            Ok(Detection::NeedMore)
        ));
    }

    fn plain_kind(framing: Framing) -> TransportKind {
        TransportKind {
            framing,
            obfuscated: false,
        }
    }

    proptest::proptest! {
        /// Whatever arrives, in whatever pieces: no panic, and no frame or
        /// leftover beyond what arrived and the packet bound.
        #[test]
        fn random_bytes_never_panic_any_codec(
            wire in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
            split in 1usize..64,
        ) {
            let framings = [
                Framing::Abridged,
                Framing::Intermediate,
                Framing::PaddedIntermediate,
                Framing::Full,
            ];
            let mut codecs: Vec<Box<dyn Codec>> = framings.into_iter().map(codec).collect();
            if let Ok(Detection::Found { detected, .. }) = detect(&wire) {
                codecs.push(detected.reader);
            }
            for codec in &mut codecs {
                let mut buffer = BytesMut::new();
                'feed: for piece in wire.chunks(split) {
                    buffer.extend_from_slice(piece);
                    loop {
                        match codec.decode(&mut buffer) {
                            Ok(Some(frame)) => {
                                proptest::prop_assert!(frame.payload.len() <= MAX_PACKET_LEN + 15)
                            }
                            Ok(None) => break,
                            Err(_) => break 'feed,
                        }
                    }
                    proptest::prop_assert!(buffer.len() <= wire.len());
                }
            }
        }
    }

    #[test]
    fn refuses_http_and_tls() {
        for head in [&b"GET / HTTP/1.1"[..], b"POST /x", b"HEAD /", b"OPTIONS *"] {
            assert!(matches!(detect(head), Err(FrameError::Reserved(_))));
        }
        assert!(matches!(
            detect(&[0x16, 0x03, 0x01, 0x02, 0, 0, 0, 0]),
            Err(FrameError::Reserved(_))
        ));
    }

    #[test]
    fn lengths_are_bounded_before_anything_is_buffered() {
        for len in [
            -404,
            0,
            2,
            13,
            i64::from(i32::MAX),
            (MAX_PACKET_LEN + 4) as i64,
        ] {
            assert_eq!(check_len(len), Err(FrameError::Length(len)));
        }
        assert_eq!(check_len(4), Ok(4));
        assert_eq!(check_len(MAX_PACKET_LEN as i64), Ok(MAX_PACKET_LEN));
    }
}
