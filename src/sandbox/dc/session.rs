//! The server's half of one MTProto session: numbering and sealing what it
//! sends.
//!
//! Each reply becomes a message with a fresh server `msg_id` (increasing,
//! `≡ 1 mod 4` for answers, `≡ 3` for pushed updates, as Telegram does) and
//! a `seqno` (odd for content-related messages), in the client's own
//! `session_id`. Replies ready together go out as one `msg_container`.

use std::time::{SystemTime, UNIX_EPOCH};

use super::codec::{self, Envelope, Message};
use super::crypto::ServerKey;

/// Container payloads stay below this so the client's 1 MiB + 8 KiB read
/// buffer always holds a whole packet.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024 - 4096;
/// Telegram refuses containers of more than about a hundred messages.
pub const MAX_BATCH_LEN: usize = 100;

/// Why the server sends a message; decides the low bits of its `msg_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMessageKind {
    /// An answer to something the client sent (`rpc_result`, `pong`).
    Answer,
    /// Something the server sends on its own (pushed updates).
    Push,
}

/// One message waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    pub body: Vec<u8>,
    pub kind: ServerMessageKind,
}

impl ServerMessage {
    pub fn answer(body: Vec<u8>) -> Self {
        ServerMessage {
            body,
            kind: ServerMessageKind::Answer,
        }
    }

    pub fn push(body: Vec<u8>) -> Self {
        ServerMessage {
            body,
            kind: ServerMessageKind::Push,
        }
    }

    /// The bytes it takes inside a container.
    pub fn batch_len(&self) -> usize {
        16 + self.body.len()
    }
}

/// The sending state of one session on one connection.
pub struct ServerSession {
    key: ServerKey,
    session_id: i64,
    last_msg_id: i64,
    content_related_sent: i32,
}

impl ServerSession {
    pub fn new(key: ServerKey, session_id: i64) -> Self {
        ServerSession {
            key,
            session_id,
            last_msg_id: 0,
            content_related_sent: 0,
        }
    }

    /// Encrypts a batch (at most [`MAX_BATCH_LEN`] messages, about
    /// [`MAX_BATCH_BYTES`]) into one transport payload.
    pub fn seal(&mut self, batch: Vec<ServerMessage>) -> Vec<u8> {
        let mut messages: Vec<Message> = batch
            .into_iter()
            .map(|outgoing| Message {
                msg_id: self.next_msg_id(outgoing.kind),
                // Everything the server sends from here is content-related:
                // answers and updates (containers are numbered below).
                seqno: self.next_seqno(true),
                body: outgoing.body,
            })
            .collect();
        let message = if messages.len() == 1 {
            messages.remove(0)
        } else {
            Message {
                msg_id: self.next_msg_id(ServerMessageKind::Answer),
                seqno: self.next_seqno(false),
                body: codec::container(&messages),
            }
        };
        let envelope = Envelope {
            session_id: self.session_id,
            message,
        };
        self.key.encrypt(&envelope.encode())
    }

    /// `(unix_time << 32) | counter * 4 + kind`, strictly increasing.
    fn next_msg_id(&mut self, kind: ServerMessageKind) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64);
        let base = (now << 32).max((self.last_msg_id | 3) + 1);
        self.last_msg_id = base
            | match kind {
                ServerMessageKind::Answer => 1,
                ServerMessageKind::Push => 3,
            };
        self.last_msg_id
    }

    /// Twice the content-related messages sent before, plus one if this
    /// one is content-related.
    fn next_seqno(&mut self, content_related: bool) -> i32 {
        let seqno = self.content_related_sent * 2;
        if content_related {
            self.content_related_sent += 1;
            seqno + 1
        } else {
            seqno
        }
    }
}

#[cfg(test)]
mod tests {
    use grammers_crypto::DequeBuffer;
    use grammers_mtproto::MsgId;
    use grammers_mtproto::mtp::{Deserialization, Encrypted, Mtp};
    use grammers_tl_types::{self as tl, Deserializable, Serializable};

    use super::*;
    use crate::sandbox::dc::codec::{pong, rpc_error, rpc_result};

    const KEY: [u8; 256] = [7; 256];

    /// A client that sent one request; returns it with that request's
    /// msg_id and the session id the server must echo.
    fn client_with_request(request: &[u8]) -> (Encrypted, MsgId, i64) {
        let mut client = Encrypted::build().finish(KEY);
        let mut buffer = DequeBuffer::with_capacity(0, 64);
        let msg_id = client.push(&mut buffer, request).unwrap();
        client.finalize(&mut buffer);
        let mut wire = buffer[..].to_vec();
        let plaintext = ServerKey::new(KEY).decrypt(&mut wire).unwrap();
        let session_id = Envelope::decode(plaintext).unwrap().session_id;
        (client, msg_id, session_id)
    }

    fn req_msg_id(msg_id: MsgId) -> i64 {
        // grammers keeps MsgId's field private; its Debug shows the number.
        format!("{msg_id:?}")
            .trim_start_matches("MsgId(")
            .trim_end_matches(')')
            .parse()
            .unwrap()
    }

    #[test]
    fn the_client_reads_our_answers_in_a_container() {
        let request = tl::functions::updates::GetState {}.to_bytes();
        let (mut client, msg_id, session_id) = client_with_request(&request);
        let id = req_msg_id(msg_id);
        let state = tl::enums::updates::State::State(tl::types::updates::State {
            pts: 1,
            qts: 2,
            date: 3,
            seq: 4,
            unread_count: 5,
        });
        let update = tl::enums::Updates::TooLong.to_bytes();
        let mut server = ServerSession::new(ServerKey::new(KEY), session_id);
        let mut wire = server.seal(vec![
            ServerMessage::answer(rpc_result(id, &state.to_bytes())),
            ServerMessage::push(update.clone()),
        ]);

        let results = client.deserialize(&mut wire).unwrap();
        assert_eq!(results.len(), 2);
        let Deserialization::RpcResult(result) = &results[0] else {
            panic!("expected an rpc result first");
        };
        assert_eq!(result.msg_id, msg_id);
        assert_eq!(
            tl::enums::updates::State::from_bytes(&result.body),
            Ok(state)
        );
        assert!(matches!(&results[1], Deserialization::Update(body) if *body == update));
    }

    #[test]
    fn the_client_reads_errors_and_pongs() {
        let ping = tl::functions::Ping { ping_id: 3 }.to_bytes();
        let (mut client, msg_id, session_id) = client_with_request(&ping);
        let id = req_msg_id(msg_id);
        let mut server = ServerSession::new(ServerKey::new(KEY), session_id);

        let mut wire = server.seal(vec![ServerMessage::answer(pong(id, 3))]);
        let results = client.deserialize(&mut wire).unwrap();
        assert!(matches!(&results[..], [Deserialization::RpcResult(r)] if r.msg_id == msg_id));

        let mut wire = server.seal(vec![ServerMessage::answer(rpc_error(
            id,
            420,
            "FLOOD_WAIT_3",
        ))]);
        let results = client.deserialize(&mut wire).unwrap();
        let [Deserialization::RpcError(error)] = &results[..] else {
            panic!("expected one rpc error");
        };
        assert_eq!(error.msg_id, msg_id);
        assert_eq!(error.error.error_code, 420);
        assert_eq!(error.error.error_message, "FLOOD_WAIT_3");
    }

    #[test]
    fn msg_ids_increase_with_the_right_low_bits_and_seqnos_count() {
        let mut server = ServerSession::new(ServerKey::new(KEY), 1);
        let mut last = 0;
        for kind in [
            ServerMessageKind::Answer,
            ServerMessageKind::Push,
            ServerMessageKind::Push,
            ServerMessageKind::Answer,
        ] {
            let id = server.next_msg_id(kind);
            assert!(id > last);
            assert_eq!(
                id & 3,
                if kind == ServerMessageKind::Answer {
                    1
                } else {
                    3
                }
            );
            last = id;
        }
        assert_eq!(server.next_seqno(true), 1);
        assert_eq!(server.next_seqno(false), 2);
        assert_eq!(server.next_seqno(true), 3);
    }
}
