//! One client connection.
//!
//! The first bytes name the transport ([`transport::detect`]); the first
//! packet names the auth key, which the [`KeyRing`] must know, else the
//! connection gets Telegram's `-404` and closes. From then on a reader
//! unpacks requests and starts each API call in its own task, so a call
//! that waits (a user waiting for a bot's callback answer) holds up nothing
//! else, and a single writer sends answers, quick acks and pushed updates,
//! batching whatever is ready into one container. The loop is the same for
//! every transport. Any protocol violation closes the connection; nothing a
//! client sends can panic the server, stall it or make it grow unbounded
//! (see [`super::admission`]).
//!
//! One auth key is served on one live connection at a time, as Telegram
//! insists when one key is used from two places at once (several daemons
//! sharing a bot must not both use it): a later connection with a key whose
//! first connection is still live (open, its NAT mapping not dead) gets
//! `406 AUTH_KEY_DUPLICATED` for every call, while the first one is served
//! on; once it closed, the key is free.
//! grammers opens one connection per DC, each DC with its own key, so a
//! single client never trips this.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use grammers_tl_types as tl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use super::admission::{Admission, BufferCharge, Counts, OverBudget};
use super::codec::{self, DecodeError, Envelope, Message, Request};
use super::crypto::{self, DecryptError, ServerKey};
use super::session::{MAX_BATCH_BYTES, MAX_BATCH_LEN, ServerMessage, ServerSession};
use super::traffic::Traffic;
use super::transport::{self, Codec, Detected, Detection, Frame, FrameError};
use crate::sandbox::{
    Caller, Faults, KeyRing, NatMapping, Outbox, PUSH_QUEUE_LEN, RpcOutcome, Service,
};

/// How long a new connection may take to send its first packet.
const FIRST_PACKET_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence after which a connection closes, unless the client asked for
/// another delay with `ping_delay_disconnect` (grammers pings every 60 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the rest of a packet may take once its first bytes arrived.
const PACKET_TIMEOUT: Duration = Duration::from_secs(30);
/// Results larger than this go out `gzip_packed`.
const GZIP_THRESHOLD: usize = 128 * 1024;
/// Bytes read from the socket at once: the buffer grows by at most this
/// beyond what has arrived, whatever length a packet declares.
const READ_CHUNK: usize = 16 * 1024;
/// Client msg_ids remembered for `msgs_state_req`.
const REMEMBERED_MSG_IDS: usize = 4096;
/// How long a connection whose auth key another live connection is served
/// with waits for that one to end before it is refused (see
/// [`super::admission::ServedKeys::claim`]).
const DUPLICATE_GRACE: Duration = Duration::from_millis(250);

/// What every connection of one DC shares.
pub struct Context {
    pub dc_id: i32,
    pub service: Arc<dyn Service>,
    pub keys: Arc<dyn KeyRing>,
    pub outbox: Arc<Outbox>,
    pub faults: Arc<Faults>,
    pub traffic: Arc<Traffic>,
    pub(crate) admission: Arc<Admission>,
    /// Live `(auth_key_id, session_id)`s, for `destroy_session`.
    pub(crate) sessions: Counts<(i64, i64)>,
}

/// Why no packet could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("no packet for {0:?}")]
    Idle(Duration),
    #[error("packet not complete after {PACKET_TIMEOUT:?} ({0} bytes arrived)")]
    Stalled(usize),
    #[error("connection closed in the middle of a packet ({0} bytes arrived)")]
    Truncated(usize),
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}

/// Why a connection was closed by the server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("socket write: {0}")]
    Write(io::Error),
    #[error("unencrypted message: the sandbox does no key exchange, provision an auth key")]
    Unencrypted,
    #[error("unknown auth key id {0}")]
    UnknownKey(i64),
    #[error("too many connections ({0}); answered -429")]
    TooManyConnections(&'static str),
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("message of session {got} on the connection of session {expected}")]
    SessionChanged { expected: i64, got: i64 },
    #[error("more than {0} bytes of answers wait for a client that does not read them")]
    SendQueueFull(usize),
    #[error("more than {0} pushed updates wait for a client that does not read them")]
    UpdatesOverflow(usize),
    #[error("reset in the middle of a frame (fault injected)")]
    ResetByFault,
}

impl ConnectionError {
    /// Whether the client broke the protocol or a bound, rather than the
    /// network failing, the client going quiet or a fault firing.
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(
            self,
            ConnectionError::Write(_)
                | ConnectionError::ResetByFault
                | ConnectionError::Read(ReadError::Io(_) | ReadError::Idle(_))
        )
    }
}

/// Serves one accepted connection until the client leaves, it breaks the
/// protocol, a fault drops it (`drops` changes), or the DC shuts down.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    context: Arc<Context>,
    mut drops: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let result = tokio::select! {
        result = run(stream, peer, &context) => result,
        _ = drops.changed() => {
            debug!(%peer, "dropping connection (fault injected)");
            Ok(())
        }
        _ = shutdown.changed() => Ok(()),
    };
    match result {
        Ok(()) => debug!(%peer, "connection closed"),
        Err(error) if error.is_protocol_violation() => {
            warn!(%peer, %error, "closing connection")
        }
        Err(error) => info!(%peer, %error, "connection lost"),
    }
}

async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    context: &Arc<Context>,
) -> Result<(), ConnectionError> {
    // Answers are small and awaited by a client: never hold them back.
    stream.set_nodelay(true).map_err(ConnectionError::Write)?;
    let limits = context.admission.limits;
    // Taken at once so that idle connections count too; refused (below)
    // once the transport is known, so that the -429 is framed.
    let address_slot = context
        .admission
        .addresses
        .take(peer.ip(), limits.connections_per_address);
    let (read, write) = stream.into_split();
    let mut inbound = Inbound {
        socket: read,
        buffer: BytesMut::new(),
        charge: context.admission.buffer_charge(),
    };
    let Some(detected) = inbound.detect().await? else {
        return Ok(());
    };
    context.traffic.transport(detected.kind.name());
    if let Some(dc_id) = detected.dc_id
        && i32::from(dc_id).abs() != context.dc_id
    {
        debug!(%peer, dc_id, "obfuscated init names another DC");
    }
    let mut reader = PacketReader {
        inbound,
        codec: detected.reader,
    };
    let mut writer = PacketWriter {
        socket: write,
        codec: detected.writer,
        out: Vec::new(),
    };
    if address_slot.is_none() {
        context.traffic.refused("connections_per_address");
        return refuse(&mut writer, 429, "per address").await;
    }

    let Some(mut first) = reader.next(FIRST_PACKET_TIMEOUT).await? else {
        return Ok(());
    };
    let key = match crypto::peek_auth_key_id(&first.payload) {
        None | Some(0) => return Err(ConnectionError::Unencrypted),
        Some(id) => match context.keys.auth_key(context.dc_id, id) {
            Some(bytes) => ServerKey::new(bytes),
            None => {
                // Telegram's answer to an unknown key; the socket closes next.
                context.traffic.refused("unknown_auth_key");
                let _ = writer.send_error(404).await;
                return Err(ConnectionError::UnknownKey(id));
            }
        },
    };
    let max_per_key = context.faults.max_connections().unwrap_or(usize::MAX);
    let Some(_key_slot) = context.admission.keys.take(key.id(), max_per_key) else {
        context.faults.served("max_connections");
        return refuse(&mut writer, 429, "per auth key").await;
    };
    let (envelope, quick_ack) = open(&key, &mut first)?;
    let mapping = Arc::new(NatMapping::new(Arc::clone(&context.faults), key.id()));
    let served = context
        .admission
        .served_keys
        .claim(key.id(), &mapping, DUPLICATE_GRACE)
        .await;
    let claim = match served {
        Some((slot, live)) => {
            context.traffic.served_key(live);
            Some(slot)
        }
        None => {
            context.traffic.auth_key_duplicate_refused();
            info!(%peer, auth_key_id = key.id(), "auth key served on another connection: answering 406 AUTH_KEY_DUPLICATED");
            None
        }
    };
    let session_id = envelope.session_id;
    let _session = context.sessions.take((key.id(), session_id), usize::MAX);
    debug!(auth_key_id = key.id(), "connection authenticated");

    let (answers_tx, answers) = mpsc::unbounded_channel();
    let (quick_acks, quick_acks_rx) = mpsc::unbounded_channel();
    let (subscribe, subscription) = oneshot::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let mut dispatcher = Dispatcher {
        context: Arc::clone(context),
        caller: Caller {
            auth_key_id: key.id(),
            dc_id: context.dc_id,
        },
        session_id,
        answers: AnswerQueue {
            tx: answers_tx,
            queued: Arc::clone(&queued),
        },
        idle: IDLE_TIMEOUT,
        subscribe: Some(subscribe),
        received: RecentIds::default(),
        duplicate: claim.is_none(),
    };
    let reading = ReadState {
        mapping: Arc::clone(&mapping),
        key: key.clone(),
        session_id,
        quick_acks,
        queue_limit: limits.queued_bytes,
    };
    if mapping.is_dead() {
        context.faults.served("blackhole");
    } else {
        if let Some(token) = quick_ack {
            let _ = reading.quick_acks.send(token);
        }
        dispatcher.dispatch(envelope.message)?;
    }

    let session = ServerSession::new(key.clone(), session_id);
    let writing = WriteState {
        session,
        answers,
        queued,
        quick_acks: quick_acks_rx,
        subscription: Some(subscription),
        updates: None,
        faults: Arc::clone(&context.faults),
        key_id: key.id(),
        mapping,
    };
    tokio::select! {
        result = read_loop(reader, reading, dispatcher) => result,
        result = write_loop(writer, writing) => result,
    }
}

/// Sends transport error `code` and ends the connection.
async fn refuse(
    writer: &mut PacketWriter,
    code: i32,
    what: &'static str,
) -> Result<(), ConnectionError> {
    let _ = writer.send_error(code).await;
    Err(ConnectionError::TooManyConnections(what))
}

/// Decrypts a packet: its envelope, and its quick-ack token if asked for.
fn open(key: &ServerKey, frame: &mut Frame) -> Result<(Envelope, Option<u32>), ConnectionError> {
    let plaintext = key.decrypt(&mut frame.payload)?;
    let token = frame.quick_ack.then(|| key.quick_ack_token(plaintext));
    Ok((Envelope::decode(plaintext)?, token))
}

/// Bytes arriving on a connection, before and after the transport is known.
struct Inbound {
    socket: OwnedReadHalf,
    buffer: BytesMut,
    charge: BufferCharge,
}

impl Inbound {
    /// Reads more; `false` when the peer closed its side.
    async fn fill(&mut self, wait: Duration) -> Result<bool, ReadError> {
        self.buffer.reserve(READ_CHUNK);
        let read = tokio::time::timeout(wait, self.socket.read_buf(&mut self.buffer)).await;
        let n = match read {
            Err(_) if self.buffer.is_empty() => return Err(ReadError::Idle(wait)),
            Err(_) => return Err(ReadError::Stalled(self.buffer.len())),
            Ok(result) => result?,
        };
        self.charge.set(self.buffer.len())?;
        Ok(n > 0)
    }

    /// Reads until the transport is known; `None` if the peer left first.
    async fn detect(&mut self) -> Result<Option<Detected>, ReadError> {
        loop {
            match transport::detect(&self.buffer)? {
                Detection::Found {
                    header_len,
                    detected,
                } => {
                    self.buffer.advance(header_len);
                    return Ok(Some(detected));
                }
                Detection::NeedMore => {
                    if !self.fill(FIRST_PACKET_TIMEOUT).await? {
                        return if self.buffer.is_empty() {
                            Ok(None)
                        } else {
                            Err(ReadError::Truncated(self.buffer.len()))
                        };
                    }
                }
            }
        }
    }
}

/// The receiving end of one connection: yields packets in order.
struct PacketReader {
    inbound: Inbound,
    codec: Box<dyn Codec>,
}

impl PacketReader {
    /// The next packet; `Ok(None)` when the peer closed the connection
    /// between packets. A packet must start within `idle`.
    async fn next(&mut self, idle: Duration) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.inbound.buffer)? {
                self.inbound.charge.set(self.inbound.buffer.len())?;
                return Ok(Some(frame));
            }
            let wait = if self.inbound.buffer.is_empty() {
                idle
            } else {
                PACKET_TIMEOUT
            };
            if !self.inbound.fill(wait).await? {
                return match self.inbound.buffer.len() {
                    0 => Ok(None),
                    n => Err(ReadError::Truncated(n)),
                };
            }
        }
    }
}

/// The sending end of one connection.
struct PacketWriter {
    socket: OwnedWriteHalf,
    codec: Box<dyn Codec>,
    out: Vec<u8>,
}

impl PacketWriter {
    async fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        self.out.clear();
        self.codec.encode(payload, &mut self.out);
        self.socket.write_all(&self.out).await
    }

    async fn send_quick_ack(&mut self, token: u32) -> io::Result<()> {
        self.out.clear();
        self.codec.encode_quick_ack(token, &mut self.out);
        self.socket.write_all(&self.out).await
    }

    async fn send_error(&mut self, code: i32) -> io::Result<()> {
        self.out.clear();
        self.codec.encode_error(code, &mut self.out);
        self.socket.write_all(&self.out).await?;
        self.socket.flush().await
    }

    /// Sends the first half of the packet for `payload`, then makes the
    /// socket reset (not close) when it is dropped.
    async fn send_cut(&mut self, payload: &[u8]) -> io::Result<()> {
        self.out.clear();
        self.codec.encode(payload, &mut self.out);
        let half = self.out.len() / 2;
        self.socket.write_all(&self.out[..half]).await?;
        self.socket.flush().await?;
        let stream: &TcpStream = self.socket.as_ref();
        #[allow(deprecated)] // linger 0 does not block: it only resets
        stream.set_linger(Some(Duration::ZERO))
    }
}

/// What the read loop needs beside the dispatcher.
struct ReadState {
    mapping: Arc<NatMapping>,
    key: ServerKey,
    session_id: i64,
    quick_acks: mpsc::UnboundedSender<u32>,
    queue_limit: usize,
}

async fn read_loop(
    mut reader: PacketReader,
    state: ReadState,
    mut dispatcher: Dispatcher,
) -> Result<(), ConnectionError> {
    let faults = Arc::clone(&dispatcher.context.faults);
    while let Some(mut frame) = reader.next(dispatcher.idle).await? {
        if state.mapping.is_dead() {
            faults.served("blackhole");
            continue;
        }
        let (envelope, quick_ack) = open(&state.key, &mut frame)?;
        if envelope.session_id != state.session_id {
            return Err(ConnectionError::SessionChanged {
                expected: state.session_id,
                got: envelope.session_id,
            });
        }
        if let Some(token) = quick_ack {
            let _ = state.quick_acks.send(token);
        }
        dispatcher.dispatch(envelope.message)?;
        let queued = dispatcher.answers.queued.load(Ordering::Relaxed);
        if queued > state.queue_limit {
            dispatcher.context.traffic.refused("send_queue_full");
            return Err(ConnectionError::SendQueueFull(state.queue_limit));
        }
    }
    Ok(())
}

/// What the write loop works with.
struct WriteState {
    mapping: Arc<NatMapping>,
    session: ServerSession,
    answers: mpsc::UnboundedReceiver<ServerMessage>,
    /// Bytes in `answers`, shared with the [`AnswerQueue`].
    queued: Arc<AtomicUsize>,
    quick_acks: mpsc::UnboundedReceiver<u32>,
    /// Delivers the connection's update stream once it makes an API call.
    subscription: Option<oneshot::Receiver<crate::sandbox::Pushes>>,
    updates: Option<crate::sandbox::Pushes>,
    faults: Arc<Faults>,
    key_id: i64,
}

impl WriteState {
    fn take_answer(&mut self, message: ServerMessage) -> ServerMessage {
        self.queued
            .fetch_sub(message.batch_len(), Ordering::Relaxed);
        message
    }

    /// The next message ready without waiting, if any.
    fn try_next(&mut self) -> Option<ServerMessage> {
        if let Ok(answer) = self.answers.try_recv() {
            return Some(self.take_answer(answer));
        }
        let update = self.updates.as_mut()?.try_recv().ok()?;
        Some(ServerMessage::push(update))
    }
}

/// Sends answers, quick acks and pushed updates, each batch as one packet.
async fn write_loop(
    mut writer: PacketWriter,
    mut state: WriteState,
) -> Result<(), ConnectionError> {
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(message) => message,
            None => tokio::select! {
                biased;
                Some(token) = state.quick_acks.recv() => {
                    if !state.mapping.is_dead() {
                        writer.send_quick_ack(token).await.map_err(ConnectionError::Write)?;
                    }
                    continue;
                }
                subscribed = async { state.subscription.as_mut().expect("guarded").await },
                    if state.subscription.is_some() => {
                    state.subscription = None;
                    state.updates = subscribed.ok();
                    continue;
                }
                Some(answer) = state.answers.recv() => state.take_answer(answer),
                update = async { state.updates.as_mut().expect("guarded").recv().await },
                    if state.updates.is_some() => match update {
                        Some(update) => ServerMessage::push(update),
                        None => return Err(ConnectionError::UpdatesOverflow(PUSH_QUEUE_LEN)),
                    },
                else => return Ok(()),
            },
        };
        if first.batch_len() > MAX_BATCH_BYTES {
            // Only pushed updates can be this large (answers are checked);
            // the client notices the gap and asks for the difference.
            error!(
                bytes = first.batch_len(),
                "update too large to send, skipped"
            );
            continue;
        }
        let mut size = first.batch_len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_LEN {
            let Some(next) = state.try_next() else {
                break;
            };
            if size + next.batch_len() > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            size += next.batch_len();
            batch.push(next);
        }
        if state.mapping.is_dead() {
            // A dead NAT: whatever the server sends is lost.
            continue;
        }
        let payload = state.session.seal(batch);
        if state.faults.take_reset_mid_frame(state.key_id) {
            writer
                .send_cut(&payload)
                .await
                .map_err(ConnectionError::Write)?;
            return Err(ConnectionError::ResetByFault);
        }
        writer
            .send(&payload)
            .await
            .map_err(ConnectionError::Write)?;
    }
}

/// Answers waiting for the writer, with their size in bytes.
#[derive(Clone)]
struct AnswerQueue {
    tx: mpsc::UnboundedSender<ServerMessage>,
    queued: Arc<AtomicUsize>,
}

impl AnswerQueue {
    fn send(&self, body: Vec<u8>) {
        let message = ServerMessage::answer(body);
        self.queued
            .fetch_add(message.batch_len(), Ordering::Relaxed);
        if let Err(unsent) = self.tx.send(message) {
            // The connection is gone; nobody waits for this.
            self.queued
                .fetch_sub(unsent.0.batch_len(), Ordering::Relaxed);
        }
    }
}

/// The client msg_ids seen lately, for `msgs_state_req`.
#[derive(Default)]
struct RecentIds {
    order: VecDeque<i64>,
    seen: HashSet<i64>,
}

impl RecentIds {
    fn insert(&mut self, msg_id: i64) {
        if self.seen.insert(msg_id) {
            self.order.push_back(msg_id);
            if self.order.len() > REMEMBERED_MSG_IDS
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }

    /// The `msgs_state_info` byte for `msg_id`: 4 received, 1 older than
    /// anything remembered, 3 newer, 2 in range but never received.
    fn state(&self, msg_id: i64) -> u8 {
        if self.seen.contains(&msg_id) {
            return 4;
        }
        // Clients number their messages increasingly: oldest first.
        match (self.order.front(), self.order.back()) {
            (Some(&low), _) if msg_id < low => 1,
            (_, Some(&high)) if msg_id > high => 3,
            (None, _) | (_, None) => 1,
            _ => 2,
        }
    }
}

/// Turns a connection's requests into answers.
struct Dispatcher {
    context: Arc<Context>,
    caller: Caller,
    session_id: i64,
    answers: AnswerQueue,
    /// Silence allowed before the connection closes.
    idle: Duration,
    /// Subscribes the connection to pushed updates, at its first API call
    /// not wrapped in `invokeWithoutUpdates` (as Telegram does).
    subscribe: Option<oneshot::Sender<crate::sandbox::Pushes>>,
    received: RecentIds,
    /// The key is served on another live connection: every call here is
    /// answered `406 AUTH_KEY_DUPLICATED`, nothing reaches the service.
    duplicate: bool,
}

impl Dispatcher {
    fn dispatch(&mut self, message: Message) -> Result<(), DecodeError> {
        for (msg_id, request) in codec::unpack(message)? {
            self.received.insert(msg_id);
            match request {
                Request::Call { .. } if self.duplicate => {
                    self.answer(codec::rpc_error(msg_id, 406, "AUTH_KEY_DUPLICATED"));
                }
                Request::Call {
                    body,
                    without_updates,
                } => {
                    if !without_updates && let Some(subscribe) = self.subscribe.take() {
                        let updates = self.context.outbox.register(self.caller.auth_key_id);
                        let _ = subscribe.send(updates);
                    }
                    self.call(msg_id, body)
                }
                Request::Ping {
                    ping_id,
                    disconnect_delay,
                } => {
                    if let Some(seconds) = disconnect_delay.and_then(|s| u64::try_from(s).ok()) {
                        self.idle = Duration::from_secs(seconds.max(1));
                    }
                    self.answer(codec::pong(msg_id, ping_id));
                }
                Request::FutureSalts { num } => {
                    self.answer(codec::future_salts(msg_id, num, unix_now()));
                }
                Request::DestroySession { session_id } => {
                    let key = self.caller.auth_key_id;
                    let existed = session_id != self.session_id
                        && self.context.sessions.contains(&(key, session_id));
                    self.answer(codec::destroy_session(session_id, existed));
                }
                Request::MsgsState { msg_ids, resend } => {
                    // Nothing the server sent is kept for resending.
                    let info = msg_ids
                        .iter()
                        .map(|&id| if resend { 1 } else { self.received.state(id) })
                        .collect();
                    self.answer(codec::msgs_state_info(msg_id, info));
                }
                Request::Malformed(error) => {
                    debug!(%error, "malformed request");
                    self.answer(codec::rpc_error(msg_id, 400, error.rpc_error_name()));
                }
                Request::Notice => {}
            }
        }
        Ok(())
    }

    /// Runs an API call in its own task and answers with its outcome.
    fn call(&self, msg_id: i64, body: Vec<u8>) {
        let id = body
            .get(..4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if let Some((code, message)) = self
            .context
            .faults
            .take_rpc_error(tl::name_for_id(id), self.caller.auth_key_id)
        {
            self.answer(codec::rpc_error(msg_id, code, &message));
            return;
        }
        let call = self.context.service.call(self.caller, body);
        let faults = Arc::clone(&self.context.faults);
        let answers = self.answers.clone();
        tokio::spawn(async move {
            // A panicking handler must not leave the client waiting forever.
            let outcome = tokio::spawn(call).await.unwrap_or_else(|error| {
                error!(%error, "sandbox service failed");
                RpcOutcome::Err {
                    code: 500,
                    message: "INTERNAL_SERVER_ERROR".into(),
                }
            });
            send_after_latency(&faults, &answers, rpc_answer(msg_id, outcome)).await;
        });
    }

    /// Answers a service message (a pong, an error) without the Service.
    fn answer(&self, body: Vec<u8>) {
        let faults = Arc::clone(&self.context.faults);
        if faults.latency().is_zero() {
            self.answers.send(body);
            return;
        }
        let answers = self.answers.clone();
        tokio::spawn(async move { send_after_latency(&faults, &answers, body).await });
    }
}

fn unix_now() -> i32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i32::try_from(elapsed.as_secs()).unwrap_or(i32::MAX)
        })
}

async fn send_after_latency(faults: &Faults, answers: &AnswerQueue, body: Vec<u8>) {
    let latency = faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    answers.send(body);
}

/// `rpc_result` for an outcome, compressed when large.
fn rpc_answer(msg_id: i64, outcome: RpcOutcome) -> Vec<u8> {
    match outcome {
        RpcOutcome::Ok(result) if result.len() > GZIP_THRESHOLD => {
            let packed = codec::gzip_packed(&result);
            // rpc_result's own header, and the message header around it.
            if packed.len() + 12 + 16 > MAX_BATCH_BYTES {
                error!(bytes = result.len(), "result too large to send");
                return codec::rpc_error(msg_id, 500, "RESULT_TOO_LARGE");
            }
            codec::rpc_result(msg_id, &packed)
        }
        RpcOutcome::Ok(result) => codec::rpc_result(msg_id, &result),
        RpcOutcome::Err { code, message } => codec::rpc_error(msg_id, code, &message),
    }
}
