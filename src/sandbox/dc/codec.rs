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
/// Ids a `msgs_state_req` may ask about at once.
const MAX_STATE_REQUEST_IDS: u32 = 8192;
/// Occurrences of self-nesting constructors one API call may hold: real
/// requests hold a handful (an `inputPeerUserFromMessage`, a poll), a
/// hostile one thousands, which would overflow the parser's stack.
const MAX_RECURSIVE_CONSTRUCTORS: usize = 64;
/// Every constructor of the layer's API schema that can contain, directly
/// or not, a value of its own type: the only way TL nests without a bound.
/// Derived from grammers-tl-types' `api.tl` (types reachable from one of
/// their own fields); the test `recursive_constructors_are_of_this_layer`
/// checks each id still names a constructor.
const RECURSIVE: [u32; 59] = [
    0xa87b0a1c, // inputPeerUserFromMessage
    0xbd2a0840, // inputPeerChannelFromMessage
    0x405fef0d, // inputMediaInvoice
    0x883a4108, // inputMediaPoll
    0xc4103386, // inputMediaPaidMedia
    0xddf10c3b, // messageMediaWebPage
    0xf6a548d3, // messageMediaInvoice
    0x773f4e66, // messageMediaPoll
    0x68cb6283, // messageMediaStory
    0xa8852491, // messageMediaPaidMedia
    0xe89c45b2, // webPage
    0x6724abc4, // textBold
    0xd912a59c, // textItalic
    0xc12622c4, // textUnderline
    0x9bf8bb95, // textStrike
    0x6c3f19b9, // textFixed
    0x3c2884c1, // textUrl
    0xde5a0dd6, // textEmail
    0x7e6260d7, // textConcat
    0xed6a8504, // textSubscript
    0xc7fb5e01, // textSuperscript
    0x034b8621, // textMarked
    0x1ccb966a, // textPhone
    0x35553762, // textAnchor
    0x4c2a5d62, // textSpoiler
    0xcd24cf44, // textMention
    0x519524ea, // textHashtag
    0x02ff29d3, // textBotCommand
    0x7b9e1801, // textCashtag
    0xac6a83aa, // textAutoUrl
    0xc556a45d, // textAutoEmail
    0x24c26789, // textAutoPhone
    0xb956812d, // textBankCard
    0x01a9fbfc, // textMentionName
    0xa5b45e2b, // textDate
    0x9686cb50, // textDiff
    0xafc79cd6, // textButton
    0x3cd2a36a, // textTonAddress
    0xe4e88011, // pageBlockList
    0x39f23300, // pageBlockCover
    0xf259a80b, // pageBlockEmbedPost
    0x65a0fa4d, // pageBlockCollage
    0x031f9590, // pageBlockSlideshow
    0x1fd6f6c1, // pageBlockOrderedList
    0x76768bed, // pageBlockDetails
    0x0e6e47c4, // pageBlockBlockquoteBlocks
    0x027477b4, // secureRequiredTypeOneOf
    0xc0de1bd9, // jsonObjectValue
    0xf7444763, // jsonArray
    0x99c1d49d, // jsonObject
    0x63ca67aa, // pageListItemBlocks
    0x8ff2d5f0, // pageListOrderedItemBlocks
    0x4b7d786a, // pollAnswer
    0x199fed96, // inputPollAnswer
    0x966e2dbf, // poll
    0xba7bb15e, // pollResults
    0x2e94c3e7, // webPageAttributeStory
    0xee479c64, // messageExtendedMedia
    0x16a4b93c, // storyItem
];
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
    #[error("{0} self-nesting TL objects in one call, at most {MAX_RECURSIVE_CONSTRUCTORS}")]
    TooDeep(usize),
    #[error("constructor {0:#010x} is not of this layer")]
    UnknownConstructor(u32),
    #[error("{0} message ids in one request, at most {MAX_STATE_REQUEST_IDS}")]
    TooManyIds(u32),
    #[error("malformed TL: {0}")]
    Tl(String),
}

impl DecodeError {
    /// The `rpc_error` a request that fails this way gets.
    pub fn rpc_error_name(&self) -> &'static str {
        match self {
            DecodeError::UnknownConstructor(_) => "INPUT_CONSTRUCTOR_INVALID",
            _ => "INPUT_FETCH_FAIL",
        }
    }
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
    /// `without_updates`: it came in `invokeWithoutUpdates`, so it does not
    /// subscribe its connection to pushed updates.
    Call {
        body: Vec<u8>,
        without_updates: bool,
    },
    /// `ping` or `ping_delay_disconnect`; the latter asks the server to
    /// close the connection after `disconnect_delay` seconds of silence.
    Ping {
        ping_id: i64,
        disconnect_delay: Option<i32>,
    },
    /// `get_future_salts`: answered with `future_salts`.
    FutureSalts { num: i32 },
    /// `destroy_session`: answered `destroy_session_ok` or `_none`.
    DestroySession { session_id: i64 },
    /// `msgs_state_req` or `msg_resend_req`: answered with
    /// `msgs_state_info` (the sandbox keeps no sent messages to resend).
    MsgsState { msg_ids: Vec<i64>, resend: bool },
    /// Something to answer with `rpc_error 400` (named by the error).
    Malformed(DecodeError),
    /// Needs no answer (`msgs_ack`, `http_wait`).
    Notice,
}

/// Unpacks a client's message into its requests, each with the `msg_id`
/// its answer refers to. Errors here are fatal to the connection: the
/// message boundaries themselves cannot be trusted.
pub fn unpack(mut message: Message) -> Result<Vec<(i64, Request)>, DecodeError> {
    // grammers (like most clients) gzips any large body, containers too.
    // (Bad gzip is left for `classify`: an rpc_error, not a closed socket.)
    if constructor(&message.body) == Some(GZIP_PACKED)
        && let Ok(unpacked) = gunzip(&message.body[4..])
    {
        message.body = unpacked;
    }
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
    match try_classify(body) {
        Ok(request) => request,
        Err(error) => Request::Malformed(error),
    }
}

fn try_classify(body: Vec<u8>) -> Result<Request, DecodeError> {
    use tl::functions::{DestroySession, GetFutureSalts, Ping, PingDelayDisconnect};
    use tl::types::{HttpWait, MsgResendReq, MsgsAck, MsgsStateReq};

    let body = match constructor(&body) {
        Some(GZIP_PACKED) => gunzip(&body[4..])?,
        _ => body,
    };
    let id = constructor(&body).ok_or_else(|| DecodeError::Tl("empty message body".into()))?;
    let mut cursor = Cursor::from_slice(&body[4..]);
    Ok(match id {
        Ping::CONSTRUCTOR_ID => Request::Ping {
            ping_id: Ping::deserialize(&mut cursor)?.ping_id,
            disconnect_delay: None,
        },
        PingDelayDisconnect::CONSTRUCTOR_ID => {
            let ping = PingDelayDisconnect::deserialize(&mut cursor)?;
            Request::Ping {
                ping_id: ping.ping_id,
                disconnect_delay: Some(ping.disconnect_delay),
            }
        }
        GetFutureSalts::CONSTRUCTOR_ID => Request::FutureSalts {
            num: GetFutureSalts::deserialize(&mut cursor)?.num,
        },
        DestroySession::CONSTRUCTOR_ID => Request::DestroySession {
            session_id: DestroySession::deserialize(&mut cursor)?.session_id,
        },
        MsgsStateReq::CONSTRUCTOR_ID | MsgResendReq::CONSTRUCTOR_ID => Request::MsgsState {
            msg_ids: read_msg_ids(&mut cursor)?,
            resend: id == MsgResendReq::CONSTRUCTOR_ID,
        },
        MsgsAck::CONSTRUCTOR_ID | HttpWait::CONSTRUCTOR_ID => Request::Notice,
        _ => {
            let (body, without_updates) = peel_wrappers(body)?;
            check_call(&body)?;
            Request::Call {
                body,
                without_updates,
            }
        }
    })
}

/// `msg_ids:Vector<long>`, bounded before anything is allocated.
fn read_msg_ids(cursor: &mut Cursor) -> Result<Vec<i64>, DecodeError> {
    expect_constructor(cursor, VECTOR)?;
    let count = u32::deserialize(cursor)?;
    if count > MAX_STATE_REQUEST_IDS {
        return Err(DecodeError::TooManyIds(count));
    }
    (0..count).map(|_| Ok(i64::deserialize(cursor)?)).collect()
}

/// Checks an API call before any generated (recursive, unbounded) parser
/// sees it: its constructor must be one of this layer, and the
/// constructors that can nest inside themselves ([`RECURSIVE`]) must not
/// occur more than [`MAX_RECURSIVE_CONSTRUCTORS`] times. TL objects are
/// 4-byte aligned, so scanning the aligned words finds every nested one
/// (and, rarely, data that happens to look like one: harmless below the
/// bound); the nesting depth can never exceed that count.
fn check_call(body: &[u8]) -> Result<(), DecodeError> {
    let id = constructor(body).unwrap_or_default();
    if matches!(tl::name_for_id(id), "(unknown)" | "") {
        return Err(DecodeError::UnknownConstructor(id));
    }
    let nested = body
        .chunks_exact(4)
        .filter(|word| {
            RECURSIVE.contains(&u32::from_le_bytes([word[0], word[1], word[2], word[3]]))
        })
        .count();
    if nested > MAX_RECURSIVE_CONSTRUCTORS {
        return Err(DecodeError::TooDeep(nested));
    }
    Ok(())
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
/// `invokeAfterMsg(s)` off an API call, in any order and nesting; says
/// whether `invokeWithoutUpdates` was among them. (The sandbox answers in
/// order of completion; `invokeAfterMsg` only orders calls that a client
/// already sends one after the other on one connection.)
pub fn peel_wrappers(mut body: Vec<u8>) -> Result<(Vec<u8>, bool), DecodeError> {
    let mut without_updates = false;
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
                without_updates = true;
            }
            Some(InvokeAfterMsg::<Query>::CONSTRUCTOR_ID) => {
                InvokeAfterMsg::<Query>::deserialize(&mut cursor)?;
            }
            Some(InvokeAfterMsgs::<Query>::CONSTRUCTOR_ID) => {
                InvokeAfterMsgs::<Query>::deserialize(&mut cursor)?;
            }
            _ => return Ok((body, without_updates)),
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

/// `future_salts#ae500895 req_msg_id now salts`, sent bare: `num` (1..=64)
/// hour-long salts from now. The sandbox accepts any salt (0 included), so
/// these are for clients that insist on asking.
pub fn future_salts(req_msg_id: i64, num: i32, now: i32) -> Vec<u8> {
    let salts = tl::RawVec(
        (0..num.clamp(1, 64))
            .map(|i| tl::types::FutureSalt {
                valid_since: now.saturating_add(i * 3600),
                valid_until: now.saturating_add((i + 1) * 3600),
                salt: rand::random(),
            })
            .collect(),
    );
    tl::enums::FutureSalts::Salts(tl::types::FutureSalts {
        req_msg_id,
        now,
        salts,
    })
    .to_bytes()
}

/// `destroy_session_ok` or `destroy_session_none`, sent bare.
pub fn destroy_session(session_id: i64, existed: bool) -> Vec<u8> {
    use tl::enums::DestroySessionRes;
    if existed {
        DestroySessionRes::DestroySessionOk(tl::types::DestroySessionOk { session_id })
    } else {
        DestroySessionRes::DestroySessionNone(tl::types::DestroySessionNone { session_id })
    }
    .to_bytes()
}

/// `msgs_state_info#04deb57d req_msg_id:long info:string`, sent bare: one
/// state byte per asked id.
pub fn msgs_state_info(req_msg_id: i64, info: Vec<u8>) -> Vec<u8> {
    tl::enums::MsgsStateInfo::Info(tl::types::MsgsStateInfo { req_msg_id, info }).to_bytes()
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
        Request::Call {
            body: body.to_vec(),
            without_updates: false,
        }
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
        assert_eq!(
            peel_wrappers(wrapped.to_bytes()),
            Ok((inner.to_bytes(), true))
        );
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
    fn recursive_constructors_are_of_this_layer() {
        for id in RECURSIVE {
            assert!(!tl::name_for_id(id).is_empty(), "{id:#010x}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        // A call whose words hold self-nesting constructors past the bound
        // (the end-to-end test sends a real 20 000-deep sendMessage).
        let call = |nested: usize| {
            let mut body = tl::functions::messages::SendMessage::CONSTRUCTOR_ID
                .to_le_bytes()
                .to_vec();
            for _ in 0..nested {
                tl::types::InputPeerUserFromMessage::CONSTRUCTOR_ID.serialize(&mut body);
            }
            body
        };
        assert_eq!(
            classify(call(MAX_RECURSIVE_CONSTRUCTORS + 1)),
            Request::Malformed(DecodeError::TooDeep(MAX_RECURSIVE_CONSTRUCTORS + 1))
        );
        let fine = call(3);
        assert_eq!(classify(fine.clone()), self::call(&fine));
    }

    #[test]
    fn unknown_constructors_are_named_errors() {
        let unknown = 0x0bad_f00d_u32.to_le_bytes().to_vec();
        let request = classify(unknown);
        assert_eq!(
            request,
            Request::Malformed(DecodeError::UnknownConstructor(0x0bad_f00d))
        );
        let Request::Malformed(error) = request else {
            unreachable!()
        };
        assert_eq!(error.rpc_error_name(), "INPUT_CONSTRUCTOR_INVALID");
    }

    #[test]
    fn service_requests_are_recognised() {
        let salts = tl::functions::GetFutureSalts { num: 3 };
        assert_eq!(classify(salts.to_bytes()), Request::FutureSalts { num: 3 });
        let destroy = tl::functions::DestroySession { session_id: 5 };
        assert_eq!(
            classify(destroy.to_bytes()),
            Request::DestroySession { session_id: 5 }
        );
        let state = tl::enums::MsgsStateReq::Req(tl::types::MsgsStateReq {
            msg_ids: vec![1, 2],
        });
        assert_eq!(
            classify(state.to_bytes()),
            Request::MsgsState {
                msg_ids: vec![1, 2],
                resend: false
            }
        );
        let resend = tl::enums::MsgResendReq::Req(tl::types::MsgResendReq { msg_ids: vec![3] });
        assert_eq!(
            classify(resend.to_bytes()),
            Request::MsgsState {
                msg_ids: vec![3],
                resend: true
            }
        );
        let wait = tl::enums::HttpWait::Wait(tl::types::HttpWait {
            max_delay: 0,
            wait_after: 0,
            max_wait: 25_000,
        });
        assert_eq!(classify(wait.to_bytes()), Request::Notice);
        let mut huge = tl::types::MsgsStateReq::CONSTRUCTOR_ID
            .to_le_bytes()
            .to_vec();
        VECTOR.serialize(&mut huge);
        u32::MAX.serialize(&mut huge);
        assert_eq!(
            classify(huge),
            Request::Malformed(DecodeError::TooManyIds(u32::MAX))
        );
    }

    #[test]
    fn service_answers_parse_as_their_tl_types() {
        let salts = future_salts(9, 3, 1_700_000_000);
        let tl::enums::FutureSalts::Salts(salts) =
            tl::enums::FutureSalts::from_bytes(&salts).unwrap();
        assert_eq!((salts.req_msg_id, salts.salts.0.len()), (9, 3));
        assert!(salts.salts.0[0].valid_until <= salts.salts.0[1].valid_since);
        assert!(matches!(
            tl::enums::DestroySessionRes::from_bytes(&destroy_session(4, false)),
            Ok(tl::enums::DestroySessionRes::DestroySessionNone(_))
        ));
        let tl::enums::MsgsStateInfo::Info(info) =
            tl::enums::MsgsStateInfo::from_bytes(&msgs_state_info(3, vec![4, 1])).unwrap();
        assert_eq!(info.info, [4, 1]);
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
