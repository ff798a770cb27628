//! MTProto's "full" transport, the framing grammers speaks over TCP.
//!
//! Every packet is `len | seq | payload | crc32` (little endian), where `len`
//! counts the whole packet and `seq` counts packets in one direction. The
//! server checks each field a confused or hostile peer could get wrong and
//! bounds the length, so garbage closes the connection instead of allocating
//! without limit or waiting forever.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest packet either side may send. grammers reads at most 1 MiB +
/// 8 KiB at once and Telegram closes connections beyond about a megabyte.
pub const MAX_PACKET_LEN: usize = 1024 * 1024 + 8 * 1024;

/// `len`, `seq` and `crc32`: a packet with an empty payload.
const OVERHEAD: usize = 12;

/// How long the rest of a packet may take once its length has arrived.
const PACKET_TIMEOUT: Duration = Duration::from_secs(30);

/// A packet that breaks the transport's rules; the connection must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("packet length {0} is not a multiple of 4 in 12..={MAX_PACKET_LEN}")]
    Length(i32),
    #[error("packet sequence number is {got}, expected {expected}")]
    Seq { expected: i32, got: i32 },
    #[error("packet crc32 is {got:#010x}, its content gives {expected:#010x}")]
    Crc { expected: u32, got: u32 },
}

/// Why no packet could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("no packet for {0:?}")]
    Idle(Duration),
    #[error("packet of {0} bytes not complete after {PACKET_TIMEOUT:?}")]
    Stalled(usize),
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}

/// Wraps `payload` (a multiple of 4 bytes) into packet number `seq`.
pub fn pack(seq: i32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() + OVERHEAD;
    let mut packet = Vec::with_capacity(len);
    // Callers keep payloads under MAX_PACKET_LEN, far below i32::MAX.
    packet.extend_from_slice(&(len as i32).to_le_bytes());
    packet.extend_from_slice(&seq.to_le_bytes());
    packet.extend_from_slice(payload);
    let crc = crc32fast::hash(&packet);
    packet.extend_from_slice(&crc.to_le_bytes());
    packet
}

/// Checks the length prefix of a packet: the whole packet's size in bytes.
pub fn check_len(len: i32) -> Result<usize, FrameError> {
    match usize::try_from(len) {
        Ok(n) if (OVERHEAD..=MAX_PACKET_LEN).contains(&n) && n.is_multiple_of(4) => Ok(n),
        _ => Err(FrameError::Length(len)),
    }
}

/// Checks a whole packet (as [`check_len`] sized it) and returns its payload.
pub fn unpack(expected_seq: i32, packet: &[u8]) -> Result<&[u8], FrameError> {
    let len = i32::try_from(packet.len()).map_err(|_| FrameError::Length(i32::MAX))?;
    if check_len(len)? != packet.len() {
        return Err(FrameError::Length(len));
    }
    let (body, crc) = packet.split_at(packet.len() - 4);
    let got = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let expected = crc32fast::hash(body);
    if got != expected {
        return Err(FrameError::Crc { expected, got });
    }
    let seq = i32::from_le_bytes([body[4], body[5], body[6], body[7]]);
    if seq != expected_seq {
        return Err(FrameError::Seq {
            expected: expected_seq,
            got: seq,
        });
    }
    Ok(&body[8..])
}

/// The receiving end of one connection: yields payloads in order.
pub struct PacketReader<R> {
    inner: R,
    seq: i32,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    pub fn new(inner: R) -> Self {
        PacketReader { inner, seq: 0 }
    }

    /// Reads the next packet's payload; `Ok(None)` when the peer closed the
    /// connection between packets. A packet must start within `idle`.
    pub async fn next(&mut self, idle: Duration) -> Result<Option<Vec<u8>>, ReadError> {
        let mut len = [0u8; 4];
        match tokio::time::timeout(idle, self.inner.read_exact(&mut len)).await {
            Err(_) => return Err(ReadError::Idle(idle)),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Ok(result) => result?,
        };
        let size = check_len(i32::from_le_bytes(len))?;
        let mut packet = vec![0u8; size];
        packet[..4].copy_from_slice(&len);
        tokio::time::timeout(PACKET_TIMEOUT, self.inner.read_exact(&mut packet[4..]))
            .await
            .map_err(|_| ReadError::Stalled(size))??;
        let payload = unpack(self.seq, &packet)?.to_vec();
        self.seq = self.seq.wrapping_add(1);
        Ok(Some(payload))
    }
}

/// The sending end of one connection.
pub struct PacketWriter<W> {
    inner: W,
    seq: i32,
}

impl<W: AsyncWrite + Unpin> PacketWriter<W> {
    pub fn new(inner: W) -> Self {
        PacketWriter { inner, seq: 0 }
    }

    pub async fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        let packet = pack(self.seq, payload);
        self.seq = self.seq.wrapping_add(1);
        self.inner.write_all(&packet).await
    }

    /// Sends transport error `code` (404: unknown auth key) the way Telegram
    /// does: its negation in place of a packet length.
    pub async fn send_status(&mut self, code: i32) -> io::Result<()> {
        self.inner.write_all(&(-code).to_le_bytes()).await?;
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use grammers_crypto::DequeBuffer;
    use grammers_mtproto::transport::{self, Full, Transport};

    use super::*;

    #[test]
    fn packs_as_grammers_does() {
        let mut client = Full::new();
        for seq in 0..3 {
            let payload: Vec<u8> = (0..128u8).map(|b| b.wrapping_mul(seq as u8 + 1)).collect();
            let mut buffer = DequeBuffer::with_capacity(payload.len(), 8);
            buffer.extend(payload.iter().copied());
            client.pack(&mut buffer);
            assert_eq!(pack(seq, &payload), &buffer[..]);
        }
    }

    #[test]
    fn grammers_unpacks_what_we_pack() {
        let mut client = Full::new();
        for seq in 0..3 {
            let payload = vec![seq as u8; 64];
            let mut packet = pack(seq, &payload);
            let offset = client.unpack(&mut packet).expect("valid packet");
            assert_eq!(&packet[offset.data_range], &payload[..]);
        }
    }

    #[test]
    fn rejects_bad_crc_and_seq() {
        let mut packet = pack(0, &[1, 2, 3, 4]);
        assert_eq!(unpack(0, &packet), Ok(&[1, 2, 3, 4][..]));
        assert!(matches!(
            unpack(1, &packet),
            Err(FrameError::Seq {
                expected: 1,
                got: 0
            })
        ));
        let last = packet.len() - 1;
        packet[last] ^= 0xff;
        assert!(matches!(unpack(0, &packet), Err(FrameError::Crc { .. })));
    }

    #[test]
    fn rejects_bad_lengths() {
        for len in [-404, 0, 8, 13, i32::MAX, (MAX_PACKET_LEN + 4) as i32] {
            assert_eq!(check_len(len), Err(FrameError::Length(len)));
        }
        assert_eq!(check_len(12), Ok(12));
    }

    #[test]
    fn status_reaches_grammers_as_bad_status() {
        let mut client = Full::new();
        let mut status = (-404i32).to_le_bytes();
        assert_eq!(
            client.unpack(&mut status),
            Err(transport::Error::BadStatus { status: 404 })
        );
    }

    #[tokio::test]
    async fn reader_yields_payloads_then_eof() {
        let mut wire = pack(0, &[7; 8]);
        wire.extend(pack(1, &[9; 4]));
        let mut reader = PacketReader::new(&wire[..]);
        let idle = Duration::from_secs(5);
        assert_eq!(reader.next(idle).await.unwrap(), Some(vec![7; 8]));
        assert_eq!(reader.next(idle).await.unwrap(), Some(vec![9; 4]));
        assert!(reader.next(idle).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn reader_refuses_a_huge_length_without_allocating_it() {
        let wire = (i32::MAX - 3).to_le_bytes();
        let mut reader = PacketReader::new(&wire[..]);
        let error = reader.next(Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(error, ReadError::Frame(FrameError::Length(_))));
    }

    #[tokio::test]
    async fn reader_reports_a_truncated_packet() {
        let wire = pack(0, &[1; 16]);
        let mut reader = PacketReader::new(&wire[..wire.len() - 2]);
        let error = reader.next(Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(error, ReadError::Io(_)));
    }
}
