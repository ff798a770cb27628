//! One client connection.
//!
//! The first packet names the auth key; the [`KeyRing`] must know it, else
//! the connection gets Telegram's `-404` and closes. From then on a reader
//! unpacks requests and starts each API call in its own task, so a call
//! that waits (a user waiting for a bot's callback answer) holds up nothing
//! else, and a single writer sends answers and pushed updates, batching
//! whatever is ready into one container. Any protocol violation closes the
//! connection; nothing a client sends can panic or stall the server.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use super::codec::{self, DecodeError, Envelope, Message, Request};
use super::crypto::{self, DecryptError, ServerKey};
use super::session::{MAX_BATCH_BYTES, MAX_BATCH_LEN, Outgoing, ServerSession};
use super::transport::{PacketReader, PacketWriter, ReadError};
use crate::sandbox::{Caller, Faults, KeyRing, Outbox, RpcOutcome, Service};

/// How long a new connection may take to send its first packet.
const FIRST_PACKET_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence after which a connection closes, unless the client asked for
/// another delay with `ping_delay_disconnect` (grammers pings every 60 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Results larger than this go out `gzip_packed`.
const GZIP_THRESHOLD: usize = 128 * 1024;

/// What every connection of one DC shares.
pub struct Context {
    pub service: Arc<dyn Service>,
    pub keys: Arc<dyn KeyRing>,
    pub outbox: Arc<Outbox>,
    pub faults: Arc<Faults>,
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
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("message of session {got} on the connection of session {expected}")]
    SessionChanged { expected: i64, got: i64 },
}

impl ConnectionError {
    /// Whether the client broke the protocol, rather than the network
    /// failing or the client going quiet.
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(
            self,
            ConnectionError::Write(_)
                | ConnectionError::Read(ReadError::Io(_) | ReadError::Idle(_))
        )
    }
}

/// Serves one accepted connection until the client leaves, it breaks the
/// protocol, a fault drops it (`drops` changes), or the DC shuts down.
pub async fn serve(
    stream: TcpStream,
    context: Arc<Context>,
    mut drops: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = stream.peer_addr().ok();
    let result = tokio::select! {
        result = run(stream, &context) => result,
        _ = drops.changed() => {
            debug!(?peer, "dropping connection (fault injected)");
            Ok(())
        }
        _ = shutdown.changed() => Ok(()),
    };
    match result {
        Ok(()) => debug!(?peer, "connection closed"),
        Err(error) if error.is_protocol_violation() => {
            warn!(?peer, %error, "closing connection")
        }
        Err(error) => info!(?peer, %error, "connection lost"),
    }
}

async fn run(stream: TcpStream, context: &Arc<Context>) -> Result<(), ConnectionError> {
    // Answers are small and awaited by a client: never hold them back.
    stream.set_nodelay(true).map_err(ConnectionError::Write)?;
    let (read, write) = stream.into_split();
    let mut reader = PacketReader::new(read);
    let mut writer = PacketWriter::new(write);

    let Some(mut first) = reader.next(FIRST_PACKET_TIMEOUT).await? else {
        return Ok(());
    };
    let key = match crypto::peek_auth_key_id(&first) {
        None | Some(0) => return Err(ConnectionError::Unencrypted),
        Some(id) => match context.keys.auth_key(id) {
            Some(bytes) => ServerKey::new(bytes),
            None => {
                // Telegram's answer to an unknown key; the socket closes next.
                let _ = writer.send_status(404).await;
                return Err(ConnectionError::UnknownKey(id));
            }
        },
    };
    let envelope = Envelope::decode(key.decrypt(&mut first)?)?;
    let session_id = envelope.session_id;
    debug!(auth_key_id = key.id(), "connection authenticated");

    let updates = context.outbox.register(key.id());
    let (answers_tx, answers) = mpsc::unbounded_channel();
    let mut dispatcher = Dispatcher {
        context: Arc::clone(context),
        caller: Caller {
            auth_key_id: key.id(),
        },
        answers: answers_tx,
        idle: IDLE_TIMEOUT,
    };
    dispatcher.dispatch(envelope.message)?;

    let session = ServerSession::new(key.clone(), session_id);
    tokio::select! {
        result = read_loop(reader, key, session_id, dispatcher) => result,
        result = write_loop(writer, session, answers, updates) => result,
    }
}

async fn read_loop(
    mut reader: PacketReader<OwnedReadHalf>,
    key: ServerKey,
    session_id: i64,
    mut dispatcher: Dispatcher,
) -> Result<(), ConnectionError> {
    while let Some(mut packet) = reader.next(dispatcher.idle).await? {
        let envelope = Envelope::decode(key.decrypt(&mut packet)?)?;
        if envelope.session_id != session_id {
            return Err(ConnectionError::SessionChanged {
                expected: session_id,
                got: envelope.session_id,
            });
        }
        dispatcher.dispatch(envelope.message)?;
    }
    Ok(())
}

/// Sends answers and pushed updates, each batch as one packet.
async fn write_loop(
    mut writer: PacketWriter<OwnedWriteHalf>,
    mut session: ServerSession,
    mut answers: mpsc::UnboundedReceiver<Outgoing>,
    mut updates: crate::sandbox::Pushes,
) -> Result<(), ConnectionError> {
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(outgoing) => outgoing,
            None => tokio::select! {
                Some(answer) = answers.recv() => answer,
                Some(update) = updates.recv() => Outgoing::push(update),
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
            let next = match answers.try_recv() {
                Ok(answer) => answer,
                Err(_) => match updates.try_recv() {
                    Ok(update) => Outgoing::push(update),
                    Err(_) => break,
                },
            };
            if size + next.batch_len() > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            size += next.batch_len();
            batch.push(next);
        }
        let payload = session.seal(batch);
        writer
            .send(&payload)
            .await
            .map_err(ConnectionError::Write)?;
    }
}

/// Turns a connection's requests into answers.
struct Dispatcher {
    context: Arc<Context>,
    caller: Caller,
    answers: mpsc::UnboundedSender<Outgoing>,
    /// Silence allowed before the connection closes.
    idle: Duration,
}

impl Dispatcher {
    fn dispatch(&mut self, message: Message) -> Result<(), DecodeError> {
        for (msg_id, request) in codec::unpack(message)? {
            match request {
                Request::Call(body) => self.call(msg_id, body),
                Request::Ping {
                    ping_id,
                    disconnect_delay,
                } => {
                    if let Some(seconds) = disconnect_delay.and_then(|s| u64::try_from(s).ok()) {
                        self.idle = Duration::from_secs(seconds.max(1));
                    }
                    self.answer(codec::pong(msg_id, ping_id));
                }
                Request::Malformed(error) => {
                    debug!(%error, "malformed request");
                    self.answer(codec::rpc_error(msg_id, 400, "INPUT_FETCH_FAIL"));
                }
                Request::Notice => {}
            }
        }
        Ok(())
    }

    /// Runs an API call in its own task and answers with its outcome.
    fn call(&self, msg_id: i64, body: Vec<u8>) {
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
            let _ = self.answers.send(Outgoing::answer(body));
            return;
        }
        let answers = self.answers.clone();
        tokio::spawn(async move { send_after_latency(&faults, &answers, body).await });
    }
}

async fn send_after_latency(
    faults: &Faults,
    answers: &mpsc::UnboundedSender<Outgoing>,
    body: Vec<u8>,
) {
    let latency = faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // The connection may be gone by now; then nobody waits for this.
    let _ = answers.send(Outgoing::answer(body));
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
