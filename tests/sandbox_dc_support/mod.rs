//! Scaffolding shared by the DC's integration tests and its benchmark: auth
//! keys, a key ring, the `Config` grammers asks for on every connection, and
//! a stock grammers client whose session points at a local DC.

// Each binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV6};
use std::sync::Arc;

use grammers_client::Client;
use grammers_client::sender::{ConnectionParams, NoRetries, SenderPool, SenderPoolFatHandle};
use grammers_client::session::SessionData;
use grammers_client::session::storages::MemorySession;
use grammers_client::session::types::{DcOption, UpdatesState};
use grammers_client::session::updates::UpdatesLike;
use grammers_client::tl;
use grammers_mtproto::mtp::{Deserialization, Mtp};
use telegate::sandbox::dc::transport::{self, Codec};
use telegate::sandbox::dc::{DcAdmission, DcParts, Traffic, auth_key_id};
use telegate::sandbox::{AuthKeyBytes, Faults, KeyRing, Outbox, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const HOME_DC: i32 = 2;

/// A deterministic auth key per seed.
pub fn key(seed: u8) -> AuthKeyBytes {
    std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
}

/// The keys made from some seeds.
pub struct Keys(HashMap<i64, AuthKeyBytes>);

impl Keys {
    pub fn from_seeds(seeds: &[u8]) -> Keys {
        Keys(
            seeds
                .iter()
                .map(|&seed| (auth_key_id(&key(seed)), key(seed)))
                .collect(),
        )
    }
}

impl KeyRing for Keys {
    fn auth_key(&self, _dc_id: i32, auth_key_id: i64) -> Option<AuthKeyBytes> {
        self.0.get(&auth_key_id).copied()
    }
}

/// The parts of a DC with id [`HOME_DC`], default bounds and fresh
/// outbox, faults and counters around `service` and `keys`.
pub fn dc_parts(service: Arc<dyn Service>, keys: Arc<dyn KeyRing>) -> DcParts {
    DcParts {
        dc_id: HOME_DC,
        service,
        keys,
        outbox: Arc::new(Outbox::default()),
        faults: Arc::new(Faults::default()),
        traffic: Arc::new(Traffic::default()),
        admission: DcAdmission::default(),
    }
}

/// A stock grammers client (no retries) with its session pointing at `dc`.
/// Dropping it stops its sender pool.
pub struct TestClient {
    pub client: Client,
    pub updates: Option<mpsc::Receiver<UpdatesLike>>,
    handle: SenderPoolFatHandle,
    runner: JoinHandle<()>,
}

impl TestClient {
    pub fn connect(dc: SocketAddr, key: AuthKeyBytes) -> TestClient {
        let SocketAddr::V4(ipv4) = dc else {
            panic!("the sandbox DC listens on IPv4");
        };
        let option = DcOption {
            id: HOME_DC,
            ipv4,
            ipv6: SocketAddrV6::new(ipv4.ip().to_ipv6_mapped(), ipv4.port(), 0, 0),
            auth_key: Some(key),
        };
        let data = SessionData {
            home_dc: HOME_DC,
            dc_options: HashMap::from([(HOME_DC, option)]),
            peer_infos: HashMap::new(),
            updates_state: UpdatesState::default(),
        };
        let pool = SenderPool::with_configuration(
            Arc::new(MemorySession::from(data)),
            1,
            ConnectionParams {
                retry_policy: Box::new(NoRetries),
                ..Default::default()
            },
        );
        TestClient {
            client: Client::new(pool.handle.clone()),
            updates: Some(pool.updates),
            handle: pool.handle,
            runner: tokio::spawn(pool.runner.run()),
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.handle.quit();
        self.runner.abort();
    }
}

/// `help.getConfig`'s answer, as the sandbox gives it (empty `dc_options`,
/// so the client keeps the session's loopback address).
pub fn config() -> tl::enums::Config {
    telegate::sandbox::telegram::config(HOME_DC, &[])
}

/// `invokeWithLayer(initConnection(query))`, as a stock client opens with.
pub fn init_connection<R: tl::RemoteCall>(query: R) -> impl tl::RemoteCall<Return = R::Return> {
    tl::functions::InvokeWithLayer {
        layer: tl::LAYER,
        query: tl::functions::InitConnection {
            api_id: 1,
            device_model: "sandbox test".into(),
            system_version: "1".into(),
            app_version: "1".into(),
            system_lang_code: "en".into(),
            lang_pack: String::new(),
            lang_code: "en".into(),
            proxy: None,
            params: None,
            query,
        },
    }
}

/// `users.getUsers([inputUserSelf])`.
pub fn get_self() -> tl::functions::users::GetUsers {
    tl::functions::users::GetUsers {
        id: vec![tl::enums::InputUser::UserSelf],
    }
}

/// Connects a grammers sender over `transport` with `key` and runs
/// `initConnection` + `users.getUsers([inputUserSelf])` on it.
pub async fn get_self_over<T: grammers_mtproto::transport::Transport>(
    transport: T,
    dc: SocketAddr,
    key: AuthKeyBytes,
) -> Result<Vec<tl::enums::User>, grammers_mtsender::InvocationError> {
    let addr = grammers_mtsender::ServerAddr::Tcp { address: dc };
    let mut sender = grammers_mtsender::connect_with_auth(transport, addr, key).await?;
    sender.invoke(&init_connection(get_self())).await
}

/// A hand-driven client: grammers' client-side MTProto over a socket,
/// framed by any codec (the sandbox's own, for the transports grammers
/// lacks), for tests that send what no stock client would.
pub struct RawClient {
    pub socket: tokio::net::TcpStream,
    pub mtp: grammers_mtproto::mtp::Encrypted,
    codec: Box<dyn Codec>,
    received: bytes::BytesMut,
}

impl RawClient {
    /// Connects and sends `tag` (the transport's first bytes).
    pub async fn connect(
        dc: SocketAddr,
        key: AuthKeyBytes,
        tag: &[u8],
        codec: Box<dyn Codec>,
    ) -> RawClient {
        // A small receive buffer: a client that does not read fills it soon.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
        let mut socket = socket.connect(dc).await.expect("connect");
        socket.write_all(tag).await.expect("send tag");
        RawClient {
            socket,
            mtp: grammers_mtproto::mtp::Encrypted::build().finish(key),
            codec,
            received: bytes::BytesMut::new(),
        }
    }

    /// Over the sandbox's own intermediate framing (tag `0xeeeeeeee`).
    pub async fn intermediate(dc: SocketAddr, key: AuthKeyBytes) -> RawClient {
        RawClient::connect(dc, key, &[0xee; 4], Box::new(transport::Intermediate)).await
    }

    /// Encrypts `requests` into one packet (a container if several).
    pub fn packet(&mut self, requests: &[Vec<u8>]) -> Vec<u8> {
        let mut buffer = grammers_crypto::DequeBuffer::with_capacity(0, 64);
        for request in requests {
            self.mtp
                .push(&mut buffer, request)
                .expect("fits in a container");
        }
        self.mtp.finalize(&mut buffer).expect("non-empty");
        let mut out = Vec::new();
        self.codec.encode(&buffer[..], &mut out);
        out
    }

    /// Sends `requests` as one packet.
    pub async fn send(&mut self, requests: &[Vec<u8>]) -> std::io::Result<()> {
        let packet = self.packet(requests);
        self.socket.write_all(&packet).await
    }

    /// The next packet's payload; `None` once the server closed.
    pub async fn next_payload(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.received).expect("valid frame") {
                return Some(frame.payload);
            }
            match self.socket.read_buf(&mut self.received).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next packet decrypted by hand: the bodies of its messages (a
    /// container's, one by one), for service answers grammers keeps to itself.
    pub async fn next_bodies(&mut self, key: AuthKeyBytes) -> Vec<Vec<u8>> {
        let mut payload = self.next_payload().await.expect("a packet, not a close");
        let auth_key = grammers_crypto::AuthKey::from_bytes(key);
        let plaintext = grammers_crypto::decrypt_data_v2(&mut payload, &auth_key).expect("ours");
        // salt, session_id, then one message: msg_id, seqno, bytes, body.
        let body = message_body(&plaintext[16..]);
        if body[..4] != 0x73f1f8dc_u32.to_le_bytes() {
            return vec![body.to_vec()];
        }
        let count = u32::from_le_bytes(body[4..8].try_into().unwrap());
        let mut rest = &body[8..];
        (0..count)
            .map(|_| {
                let inner = message_body(rest).to_vec();
                rest = &rest[16 + inner.len()..];
                inner
            })
            .collect()
    }

    /// The next packet, decrypted into what grammers makes of it.
    pub async fn next_results(&mut self) -> Vec<Deserialization> {
        let mut payload = self.next_payload().await.expect("a packet, not a close");
        self.mtp
            .deserialize(&mut payload)
            .expect("a valid server message")
    }
}

/// The body of the MTProto message at the start of `message`.
fn message_body(message: &[u8]) -> &[u8] {
    let len = u32::from_le_bytes(message[12..16].try_into().unwrap()) as usize;
    &message[16..16 + len]
}
