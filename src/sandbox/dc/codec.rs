//! MTProto's own TL layer: what lies between decryption and the API call.
//!
//! A decrypted payload is an envelope (`salt | session_id | message`); its
//! message may be a `msg_container` of several, any of them `gzip_packed`,
//! and the API call inside may sit in `invokeWithLayer(initConnection(..))`
//! wrappers. This module unpacks all that into [`Request`]s, and builds the
//! service objects the server answers with (`rpc_result`, `rpc_error`,
//! `pong`, `msg_container`), which grammers does not export.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use grammers_tl_types::{self as tl, Cursor, Deserializable, Identifiable, Serializable};

use super::transport::MAX_PACKET_LEN;

const MSG_CONTAINER: u32 = 0x73f1f8dc;
const GZIP_PACKED: u32 = 0x3072cfa1;
const RPC_RESULT: u32 = 0xf35c6d01;

/// `msg_id`, `seqno` and `bytes` before each message body.
const MESSAGE_HEADER_LEN: usize = 16;
/// `salt` and `session_id` before the message in an envelope.
const ENVELOPE_HEADER_LEN: usize = 16;
/// More messages than this in one container is a broken client.
const MAX_CONTAINER_LEN: usize = 1024;
/// Wrappers around one API call; real clients use two or three.
const MAX_WRAPPERS: usize = 8;
/// Nesting allowed in `initConnection.params` (a JSON value): parsing it
/// recursively without a bound would let a client overflow the stack.
const MAX_JSON_DEPTH: usize = 32;
/// `vector#1cb5c415`, the boxed vector constructor.
const VECTOR: u32 = 0x1cb5c415;

/// Why a decrypted payload is not valid MTProto.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload of {0} bytes is shorter than an envelope")]
    Short(usize),
    #[error("message body of {len} bytes does not fit the {available} bytes left")]
    BadBodyLength { len: i32, available: usize },
    #[error("{0} bytes of padding, MTProto 2.0 wants 12..=1024")]
    BadPadding(usize),
    #[error("msg_container with {0} messages")]
    BadContainerLength(i32),
    #[error("msg_container nested inside another")]
    NestedContainer,
    #[error("gzip_packed content is not valid gzip")]
    BadGzip,
    #[error("gzip_packed content expands beyond {MAX_PACKET_LEN} bytes")]
    GzipTooLarge,
    #[error("more than {MAX_WRAPPERS} invoke wrappers")]
    TooManyWrappers,
    #[error("initConnection params nested deeper than {MAX_JSON_DEPTH}")]
    JsonTooDeep,
    #[error("malformed TL: {0}")]
    Tl(String),
}

impl From<tl::deserialize::Error> for DecodeError {
    fn from(error: tl::deserialize::Error) -> Self {
        DecodeError::Tl(error.to_string())
    }
}

/// `message msg_id:long seqno:int bytes:int body:Object`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub msg_id: i64,
    pub seqno: i32,
    pub body: Vec<u8>,
}

impl Message {
    /// Reads one message, its length checked against what is left.
    fn read(cursor: &mut Cursor, available: usize) -> Result<Message, DecodeError> {
        let msg_id = i64::deserialize(cursor)?;
        let seqno = i32::deserialize(cursor)?;
        let len = i32::deserialize(cursor)?;
        let left = available.saturating_sub(MESSAGE_HEADER_LEN);
        let size = usize::try_from(len)
            .ok()
            .filter(|&size| size <= left && size.is_multiple_of(4))
            .ok_or(DecodeError::BadBodyLength {
                len,
                available: left,
            })?;
        let mut body = vec![0; size];
        cursor.read_exact(&mut body)?;
        Ok(Message {
            msg_id,
            seqno,
            body,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        self.msg_id.serialize(out);
        self.seqno.serialize(out);
        (self.body.len() as i32).serialize(out);
        out.extend_from_slice(&self.body);
    }

    /// The bytes this message takes inside a container.
    pub fn encoded_len(&self) -> usize {
        MESSAGE_HEADER_LEN + self.body.len()
    }
}

/// A decrypted payload: `salt | session_id | message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub session_id: i64,
    pub message: Message,
}

impl Envelope {
    /// Reads a decrypted payload, padding included (and checked).
    pub fn decode(plaintext: &[u8]) -> Result<Envelope, DecodeError> {
        if plaintext.len() < ENVELOPE_HEADER_LEN + MESSAGE_HEADER_LEN {
            return Err(DecodeError::Short(plaintext.len()));
        }
        let mut cursor = Cursor::from_slice(plaintext);
        let _salt = i64::deserialize(&mut cursor)?;
        let session_id = i64::deserialize(&mut cursor)?;
        let message = Message::read(&mut cursor, plaintext.len() - ENVELOPE_HEADER_LEN)?;
        let padding = plaintext.len() - cursor.pos();
        if !(12..=1024).contains(&padding) {
            return Err(DecodeError::BadPadding(padding));
        }
        Ok(Envelope {
            session_id,
            message,
        })
    }

    /// Writes the payload to encrypt. The salt is always 0: grammers starts
    /// with 0 and a non-zero salt sends it asking for future salts.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENVELOPE_HEADER_LEN + self.message.encoded_len());
        0i64.serialize(&mut out);
        self.session_id.serialize(&mut out);
        self.message.write(&mut out);
        out
    }
}

/// What one client message asks of the DC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// An API call, wrappers peeled: for the [`Service`](crate::sandbox::Service).
    Call(Vec<u8>),
    /// `ping` or `ping_delay_disconnect`; the latter asks the server to
    /// close the connection after `disconnect_delay` seconds of silence.
    Ping {
        ping_id: i64,
        disconnect_delay: Option<i32>,
    },
    /// Something to answer with `rpc_error 400 INPUT_FETCH_FAIL`.
    Malformed(DecodeError),
    /// Needs no answer (`msgs_ack`, `http_wait`, status requests).
    Notice,
}

/// Unpacks a client's message into its requests, each with the `msg_id`
/// its answer refers to. Errors here are fatal to the connection: the
/// message boundaries themselves cannot be trusted.
pub fn unpack(message: Message) -> Result<Vec<(i64, Request)>, DecodeError> {
    if constructor(&message.body) != Some(MSG_CONTAINER) {
        return Ok(vec![(message.msg_id, classify(message.body))]);
    }
    let body = &message.body;
    let mut cursor = Cursor::from_slice(&body[4..]);
    let count = i32::deserialize(&mut cursor)?;
    if !(0..=MAX_CONTAINER_LEN as i32).contains(&count) {
        return Err(DecodeError::BadContainerLength(count));
    }
    let mut requests = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let available = body.len() - 4 - cursor.pos();
        let inner = Message::read(&mut cursor, available)?;
        if constructor(&inner.body) == Some(MSG_CONTAINER) {
            return Err(DecodeError::NestedContainer);
        }
        requests.push((inner.msg_id, classify(inner.body)));
    }
    Ok(requests)
}

fn classify(body: Vec<u8>) -> Request {
    let body = match constructor(&body) {
        Some(GZIP_PACKED) => match gunzip(&body[4..]) {
            Ok(unpacked) => unpacked,
            Err(error) => return Request::Malformed(error),
        },
        _ => body,
    };
    let Some(id) = constructor(&body) else {
        return Request::Malformed(DecodeError::Tl("empty message body".into()));
    };
    let mut cursor = Cursor::from_slice(&body[4..]);
    match id {
        tl::functions::Ping::CONSTRUCTOR_ID => {
            match tl::functions::Ping::deserialize(&mut cursor) {
                Ok(ping) => Request::Ping {
                    ping_id: ping.ping_id,
                    disconnect_delay: None,
                },
                Err(error) => Request::Malformed(error.into()),
            }
        }
        tl::functions::PingDelayDisconnect::CONSTRUCTOR_ID => {
            match tl::functions::PingDelayDisconnect::deserialize(&mut cursor) {
                Ok(ping) => Request::Ping {
                    ping_id: ping.ping_id,
                    disconnect_delay: Some(ping.disconnect_delay),
                },
                Err(error) => Request::Malformed(error.into()),
            }
        }
        tl::types::MsgsAck::CONSTRUCTOR_ID
        | tl::types::HttpWait::CONSTRUCTOR_ID
        | tl::types::MsgsStateReq::CONSTRUCTOR_ID
        | tl::types::MsgResendReq::CONSTRUCTOR_ID => Request::Notice,
        _ => match peel_wrappers(body) {
            Ok(call) => Request::Call(call),
            Err(error) => Request::Malformed(error),
        },
    }
}

/// The constructor id a TL object starts with.
fn constructor(body: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(body.get(..4)?.try_into().ok()?))
}

/// Inflates a `gzip_packed` body (after its constructor id), bounded.
fn gunzip(packed: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let data = Vec::<u8>::from_bytes(packed)?;
    let mut unpacked = Vec::new();
    GzDecoder::new(&data[..])
        .take(MAX_PACKET_LEN as u64 + 1)
        .read_to_end(&mut unpacked)
        .map_err(|_| DecodeError::BadGzip)?;
    if unpacked.len() > MAX_PACKET_LEN {
        return Err(DecodeError::GzipTooLarge);
    }
    Ok(unpacked)
}

/// Packs `data` as `gzip_packed`, for results too large to send plainly.
pub fn gzip_packed(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .map(|packed| {
            let mut out = GZIP_PACKED.to_le_bytes().to_vec();
            packed.serialize(&mut out);
            out
        })
        // Writing to memory cannot fail.
        .unwrap_or_default()
}

/// Stands for a wrapper's `query:!X`: reads nothing, so that after the
/// wrapper's own fields the cursor sits where the wrapped call starts.
struct Query;

impl Deserializable for Query {
    fn deserialize(_: &mut Cursor) -> tl::deserialize::Result<Self> {
        Ok(Query)
    }
}

/// Strips `invokeWithLayer`, `initConnection`, `invokeWithoutUpdates` and
/// `invokeAfterMsg(s)` off an API call, in any order and nesting.
pub fn peel_wrappers(mut body: Vec<u8>) -> Result<Vec<u8>, DecodeError> {
    use tl::functions::{InitConnection, InvokeAfterMsg, InvokeAfterMsgs};
    use tl::functions::{InvokeWithLayer, InvokeWithoutUpdates};

    for _ in 0..MAX_WRAPPERS {
        let mut cursor = Cursor::from_slice(body.get(4..).unwrap_or_default());
        match constructor(&body) {
            Some(InvokeWithLayer::<Query>::CONSTRUCTOR_ID) => {
                InvokeWithLayer::<Query>::deserialize(&mut cursor)?;
            }
            Some(InitConnection::<Query>::CONSTRUCTOR_ID) => skip_init_connection(&mut cursor)?,
            Some(InvokeWithoutUpdates::<Query>::CONSTRUCTOR_ID) => {
                InvokeWithoutUpdates::<Query>::deserialize(&mut cursor)?;
            }
            Some(InvokeAfterMsg::<Query>::CONSTRUCTOR_ID) => {
                InvokeAfterMsg::<Query>::deserialize(&mut cursor)?;
            }
            Some(InvokeAfterMsgs::<Query>::CONSTRUCTOR_ID) => {
                InvokeAfterMsgs::<Query>::deserialize(&mut cursor)?;
            }
            _ => return Ok(body),
        }
        body.drain(..4 + cursor.pos());
    }
    Err(DecodeError::TooManyWrappers)
}

/// Reads past `initConnection`'s own fields. Done by hand rather than with
/// the generated type so that its JSON `params` are read with a depth bound.
fn skip_init_connection(cursor: &mut Cursor) -> Result<(), DecodeError> {
    let flags = u32::deserialize(cursor)?;
    let _api_id = i32::deserialize(cursor)?;
    // device_model, system_version, app_version, system_lang_code,
    // lang_pack, lang_code
    for _ in 0..6 {
        Vec::<u8>::deserialize(cursor)?;
    }
    if flags & 1 != 0 {
        tl::enums::InputClientProxy::deserialize(cursor)?;
    }
    if flags & 2 != 0 {
        skip_json_value(cursor, 0)?;
    }
    Ok(())
}

/// Reads past one boxed `JSONValue`, refusing deep nesting.
fn skip_json_value(cursor: &mut Cursor, depth: usize) -> Result<(), DecodeError> {
    use tl::types::{JsonArray, JsonBool, JsonNull, JsonNumber};
    use tl::types::{JsonObject, JsonObjectValue, JsonString};

    if depth > MAX_JSON_DEPTH {
        return Err(DecodeError::JsonTooDeep);
    }
    match u32::deserialize(cursor)? {
        JsonNull::CONSTRUCTOR_ID => {}
        JsonBool::CONSTRUCTOR_ID => {
            bool::deserialize(cursor)?;
        }
        JsonNumber::CONSTRUCTOR_ID => {
            f64::deserialize(cursor)?;
        }
        JsonString::CONSTRUCTOR_ID => {
            Vec::<u8>::deserialize(cursor)?;
        }
        JsonArray::CONSTRUCTOR_ID => {
            for _ in 0..vector_len(cursor)? {
                skip_json_value(cursor, depth + 1)?;
            }
        }
        JsonObject::CONSTRUCTOR_ID => {
            for _ in 0..vector_len(cursor)? {
                expect_constructor(cursor, JsonObjectValue::CONSTRUCTOR_ID)?;
                let _key = Vec::<u8>::deserialize(cursor)?;
                skip_json_value(cursor, depth + 1)?;
            }
        }
        id => return Err(tl::deserialize::Error::UnexpectedConstructor { id }.into()),
    }
    Ok(())
}

/// Reads a boxed vector's header; its items follow.
fn vector_len(cursor: &mut Cursor) -> Result<u32, DecodeError> {
    expect_constructor(cursor, VECTOR)?;
    Ok(u32::deserialize(cursor)?)
}

fn expect_constructor(cursor: &mut Cursor, expected: u32) -> Result<(), DecodeError> {
    match u32::deserialize(cursor)? {
        id if id == expected => Ok(()),
        id => Err(tl::deserialize::Error::UnexpectedConstructor { id }.into()),
    }
}

/// `rpc_result#f35c6d01 req_msg_id:long result:Object`
pub fn rpc_result(req_msg_id: i64, result: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + result.len());
    RPC_RESULT.serialize(&mut out);
    req_msg_id.serialize(&mut out);
    out.extend_from_slice(result);
    out
}

/// `rpc_result` carrying `rpc_error#2144ca19 error_code:int error_message:string`
pub fn rpc_error(req_msg_id: i64, code: i32, message: &str) -> Vec<u8> {
    let error = tl::enums::RpcError::Error(tl::types::RpcError {
        error_code: code,
        error_message: message.to_owned(),
    });
    rpc_result(req_msg_id, &error.to_bytes())
}

/// `pong#347773c5 msg_id:long ping_id:long`, sent bare (not in `rpc_result`).
pub fn pong(msg_id: i64, ping_id: i64) -> Vec<u8> {
    tl::enums::Pong::Pong(tl::types::Pong { msg_id, ping_id }).to_bytes()
}

/// `msg_container#73f1f8dc messages:vector<message>`
pub fn container(messages: &[Message]) -> Vec<u8> {
    let len = messages.iter().map(Message::encoded_len).sum::<usize>();
    let mut out = Vec::with_capacity(8 + len);
    MSG_CONTAINER.serialize(&mut out);
    (messages.len() as i32).serialize(&mut out);
    for message in messages {
        message.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use grammers_crypto::DequeBuffer;
    use grammers_mtproto::mtp::{Encrypted, Mtp};
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::sandbox::dc::crypto::ServerKey;

    const KEY: [u8; 256] = [42; 256];

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(bytes in vec(any::<u8>(), 0..4096)) {
            let _ = Envelope::decode(&bytes);
            let _ = peel_wrappers(bytes.clone());
            let _ = unpack(Message { msg_id: 1, seqno: 1, body: bytes });
        }

        #[test]
        fn corrupted_containers_never_panic(
            position in 0usize..200,
            value in any::<u8>(),
        ) {
            let inner = |msg_id, body: Vec<u8>| Message { msg_id, seqno: 1, body };
            let mut body = container(&[
                inner(4, tl::functions::Ping { ping_id: 1 }.to_bytes()),
                inner(8, gzip_packed(&tl::functions::help::GetConfig {}.to_bytes())),
            ]);
            let position = position % body.len();
            body[position] = value;
            let _ = unpack(inner(12, body));
        }
    }

    fn call(body: &[u8]) -> Request {
        Request::Call(body.to_vec())
    }

    /// What grammers' client-side MTP sends for these requests, decrypted.
    fn client_sends(client: &mut Encrypted, requests: &[Vec<u8>]) -> Envelope {
        let mut buffer = DequeBuffer::with_capacity(0, 64);
        for request in requests {
            client.push(&mut buffer, request).expect("fits");
        }
        client.finalize(&mut buffer).expect("non-empty");
        let mut wire = buffer[..].to_vec();
        let plaintext = ServerKey::new(KEY).decrypt(&mut wire).unwrap();
        Envelope::decode(plaintext).unwrap()
    }

    #[test]
    fn unpacks_a_single_call_from_grammers() {
        let mut client = Encrypted::build().finish(KEY);
        let request = tl::functions::updates::GetState {}.to_bytes();
        let envelope = client_sends(&mut client, std::slice::from_ref(&request));
        assert_eq!(envelope.message.seqno, 1);
        let requests = unpack(envelope.message.clone()).unwrap();
        assert_eq!(requests, vec![(envelope.message.msg_id, call(&request))]);
    }

    #[test]
    fn unpacks_a_container_and_gzip_from_grammers() {
        let mut client = Encrypted::build().finish(KEY);
        let small = tl::functions::updates::GetState {}.to_bytes();
        let large = tl::functions::contacts::Search {
            bots: false,
            broadcasts: false,
            q: "x".repeat(2000),
            limit: 1,
        }
        .to_bytes();
        let envelope = client_sends(&mut client, &[small.clone(), large.clone()]);
        let message = envelope.message;
        assert_eq!(constructor(&message.body), Some(MSG_CONTAINER));
        // grammers compresses requests of 512 bytes or more.
        assert!(message.body.len() < large.len());
        let requests: Vec<Request> = unpack(message).unwrap().into_iter().map(|r| r.1).collect();
        assert_eq!(requests, vec![call(&small), call(&large)]);
    }

    #[test]
    fn peels_the_connection_wrappers() {
        let inner = tl::functions::help::GetConfig {};
        let wrapped = tl::functions::InvokeWithLayer {
            layer: tl::LAYER,
            query: tl::functions::InitConnection {
                api_id: 1,
                device_model: "sandbox".into(),
                system_version: "1".into(),
                app_version: "1".into(),
                system_lang_code: "en".into(),
                lang_pack: String::new(),
                lang_code: "en".into(),
                proxy: None,
                params: Some(json_params()),
                query: tl::functions::InvokeWithoutUpdates {
                    query: tl::functions::InvokeAfterMsg {
                        msg_id: 5,
                        query: inner.clone(),
                    },
                },
            },
        };
        assert_eq!(peel_wrappers(wrapped.to_bytes()), Ok(inner.to_bytes()));
    }

    /// `{"tz": [1.5, true, null, "x"]}`
    fn json_params() -> tl::enums::Jsonvalue {
        use tl::enums::{JsonobjectValue, Jsonvalue};
        Jsonvalue::JsonObject(tl::types::JsonObject {
            value: vec![JsonobjectValue::JsonObjectValue(
                tl::types::JsonObjectValue {
                    key: "tz".into(),
                    value: Jsonvalue::JsonArray(tl::types::JsonArray {
                        value: vec![
                            Jsonvalue::JsonNumber(tl::types::JsonNumber { value: 1.5 }),
                            Jsonvalue::JsonBool(tl::types::JsonBool { value: true }),
                            Jsonvalue::JsonNull,
                            Jsonvalue::JsonString(tl::types::JsonString { value: "x".into() }),
                        ],
                    }),
                },
            )],
        })
    }

    #[test]
    fn deeply_nested_params_are_refused_without_recursing() {
        // initConnection with flags.1 (params) set, empty strings, then
        // 100 000 nested single-item JSON arrays: ~1.2 MB, as a client could send.
        let mut body = tl::functions::InitConnection::<Query>::CONSTRUCTOR_ID
            .to_le_bytes()
            .to_vec();
        2u32.serialize(&mut body);
        1i32.serialize(&mut body);
        for _ in 0..6 {
            String::new().serialize(&mut body);
        }
        for _ in 0..100_000 {
            tl::types::JsonArray::CONSTRUCTOR_ID.serialize(&mut body);
            VECTOR.serialize(&mut body);
            1u32.serialize(&mut body);
        }
        assert_eq!(peel_wrappers(body), Err(DecodeError::JsonTooDeep));
    }

    #[test]
    fn too_many_wrappers_are_refused() {
        let mut body = tl::functions::help::GetConfig {}.to_bytes();
        for _ in 0..=MAX_WRAPPERS {
            let mut wrapped = tl::functions::InvokeWithoutUpdates::<Query>::CONSTRUCTOR_ID
                .to_le_bytes()
                .to_vec();
            wrapped.extend(body);
            body = wrapped;
        }
        assert_eq!(peel_wrappers(body), Err(DecodeError::TooManyWrappers));
    }

    #[test]
    fn pings_and_acks_are_recognised() {
        let ping = tl::functions::PingDelayDisconnect {
            ping_id: 9,
            disconnect_delay: 75,
        };
        assert_eq!(
            classify(ping.to_bytes()),
            Request::Ping {
                ping_id: 9,
                disconnect_delay: Some(75)
            }
        );
        let ack = tl::enums::MsgsAck::Ack(tl::types::MsgsAck {
            msg_ids: vec![1, 2],
        });
        assert_eq!(classify(ack.to_bytes()), Request::Notice);
    }

    #[test]
    fn bad_gzip_and_truncated_wrappers_are_malformed_requests() {
        let mut bogus = GZIP_PACKED.to_le_bytes().to_vec();
        vec![1u8, 2, 3, 4, 5, 6, 7].serialize(&mut bogus);
        assert_eq!(classify(bogus), Request::Malformed(DecodeError::BadGzip));

        let truncated = tl::functions::InvokeWithLayer::<Query>::CONSTRUCTOR_ID
            .to_le_bytes()
            .to_vec();
        assert!(matches!(
            classify(truncated),
            Request::Malformed(DecodeError::Tl(_))
        ));
    }

    #[test]
    fn gzip_bombs_are_refused() {
        let huge = vec![0u8; MAX_PACKET_LEN + 16];
        let packed = gzip_packed(&huge);
        assert!(packed.len() < 16 * 1024);
        assert_eq!(
            classify(packed),
            Request::Malformed(DecodeError::GzipTooLarge)
        );
    }

    #[test]
    fn broken_containers_are_fatal() {
        let inner = Message {
            msg_id: 4,
            seqno: 1,
            body: container(&[]),
        };
        let nested = Message {
            msg_id: 8,
            seqno: 2,
            body: container(&[inner]),
        };
        assert_eq!(unpack(nested), Err(DecodeError::NestedContainer));

        let mut lying = MSG_CONTAINER.to_le_bytes().to_vec();
        lying.extend(1i32.to_le_bytes());
        lying.extend(4i64.to_le_bytes());
        lying.extend(1i32.to_le_bytes());
        lying.extend(1000i32.to_le_bytes());
        let lying = Message {
            msg_id: 8,
            seqno: 2,
            body: lying,
        };
        assert!(matches!(
            unpack(lying),
            Err(DecodeError::BadBodyLength { len: 1000, .. })
        ));
    }

    #[test]
    fn envelopes_check_lengths_and_padding() {
        let envelope = Envelope {
            session_id: 77,
            message: Message {
                msg_id: 5,
                seqno: 1,
                body: vec![1, 2, 3, 4],
            },
        };
        let mut plaintext = envelope.encode();
        assert_eq!(
            Envelope::decode(&plaintext),
            Err(DecodeError::BadPadding(0))
        );
        plaintext.extend([0; 12]);
        assert_eq!(Envelope::decode(&plaintext), Ok(envelope));
        plaintext[28] = 0xff; // the body length
        assert!(matches!(
            Envelope::decode(&plaintext),
            Err(DecodeError::BadBodyLength { .. })
        ));
        assert_eq!(Envelope::decode(&[0; 20]), Err(DecodeError::Short(20)));
    }
}
