//! The sandbox's MTProto server against the real, unmodified grammers client.
//!
//! A small test `Service` stands in for the Telegram half: it answers the
//! calls grammers makes on its own (`help.getConfig`, `updates.getState`),
//! echoes what it received, fails on request, and can hold a call open.

mod sandbox_dc_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grammers_client::{InvocationError, tl};
use grammers_mtproto::mtp::Deserialization;
use sandbox_dc_support::{
    Keys, RawClient, TestClient, config, dc_parts, get_self, get_self_over, init_connection, key,
};
use telegate::sandbox::dc::transport;
use telegate::sandbox::dc::{Dc, DcAdmission, DcLimits, Traffic, auth_key_id};
use telegate::sandbox::{AuthKeyBytes, Caller, Faults, Outbox, RpcFuture, RpcOutcome, Service};
use tl::{Identifiable, Serializable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::timeout;

/// Generous: the machine is small and shared.
const WAIT: Duration = Duration::from_secs(30);

/// Answers what the tests need and records who called what.
#[derive(Default)]
struct TestService {
    calls: Mutex<Vec<(Caller, u32)>>,
    connections: AtomicUsize,
    /// Released by the test; `messages.getBotCallbackAnswer` waits for it.
    release: Notify,
}

impl TestService {
    fn count(&self, constructor: u32) -> usize {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|(_, id)| *id == constructor).count()
    }
}

struct Shared(Arc<TestService>);

impl Service for Shared {
    fn call(&self, caller: Caller, request: Vec<u8>) -> RpcFuture {
        let service = Arc::clone(&self.0);
        Box::pin(async move {
            let id = u32::from_le_bytes(request[..4].try_into().unwrap());
            service.calls.lock().unwrap().push((caller, id));
            match id {
                tl::functions::help::GetConfig::CONSTRUCTOR_ID => {
                    service.connections.fetch_add(1, Ordering::SeqCst);
                    RpcOutcome::Ok(config().to_bytes())
                }
                tl::functions::updates::GetState::CONSTRUCTOR_ID => RpcOutcome::Ok(
                    tl::enums::updates::State::State(tl::types::updates::State {
                        pts: 10,
                        qts: 0,
                        date: 1_700_000_000,
                        seq: 1,
                        unread_count: 0,
                    })
                    .to_bytes(),
                ),
                // Echoes the username's length: proves the whole request arrived.
                tl::functions::contacts::ResolveUsername::CONSTRUCTOR_ID => {
                    let request = <tl::functions::contacts::ResolveUsername as tl::Deserializable>::from_bytes(&request[4..]).unwrap();
                    RpcOutcome::Ok(
                        tl::enums::contacts::ResolvedPeer::Peer(
                            tl::types::contacts::ResolvedPeer {
                                peer: tl::enums::Peer::User(tl::types::PeerUser {
                                    user_id: request.username.len() as i64,
                                }),
                                chats: Vec::new(),
                                users: Vec::new(),
                            },
                        )
                        .to_bytes(),
                    )
                }
                // The caller's own user, as an empty user with a known id.
                tl::functions::users::GetUsers::CONSTRUCTOR_ID => RpcOutcome::Ok(
                    vec![tl::enums::User::Empty(tl::types::UserEmpty { id: SELF_ID })].to_bytes(),
                ),
                tl::functions::help::GetNearestDc::CONSTRUCTOR_ID => RpcOutcome::Err {
                    code: 420,
                    message: "FLOOD_WAIT_3".into(),
                },
                tl::functions::messages::GetBotCallbackAnswer::CONSTRUCTOR_ID => {
                    service.release.notified().await;
                    RpcOutcome::Ok(
                        tl::enums::messages::BotCallbackAnswer::Answer(
                            tl::types::messages::BotCallbackAnswer {
                                alert: false,
                                has_url: false,
                                native_ui: false,
                                message: Some("done".into()),
                                url: None,
                                cache_time: 0,
                            },
                        )
                        .to_bytes(),
                    )
                }
                _ => RpcOutcome::Err {
                    code: 400,
                    message: format!("METHOD_NOT_IN_TEST_{id:08x}"),
                },
            }
        })
    }
}

/// What `users.getUsers([inputUserSelf])` answers in these tests.
const SELF_ID: i64 = 4242;

/// A DC on a free loopback port that knows the keys made from `seeds`.
struct Sandbox {
    dc: Dc,
    service: Arc<TestService>,
    outbox: Arc<Outbox>,
    faults: Arc<Faults>,
    traffic: Arc<Traffic>,
}

impl Sandbox {
    async fn start(seeds: &[u8]) -> Sandbox {
        Sandbox::with_limits(seeds, DcLimits::default()).await
    }

    async fn with_limits(seeds: &[u8], limits: DcLimits) -> Sandbox {
        let service = Arc::new(TestService::default());
        let mut parts = dc_parts(
            Arc::new(Shared(Arc::clone(&service))),
            Arc::new(Keys::from_seeds(seeds)),
        );
        parts.admission = DcAdmission::new(limits);
        let (outbox, faults, traffic) = (
            Arc::clone(&parts.outbox),
            Arc::clone(&parts.faults),
            Arc::clone(&parts.traffic),
        );
        let dc = Dc::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), parts)
            .await
            .expect("bind on loopback");
        Sandbox {
            dc,
            service,
            outbox,
            faults,
            traffic,
        }
    }

    /// A grammers client whose session points at this DC with `key`.
    fn client(&self, key: AuthKeyBytes) -> TestClient {
        TestClient::connect(self.dc.local_addr(), key)
    }
}

async fn within<T>(future: impl Future<Output = T>) -> T {
    timeout(WAIT, future).await.expect("timed out")
}

#[tokio::test]
async fn grammers_connects_and_gets_answers() {
    let sandbox = Sandbox::start(&[1]).await;
    let test = sandbox.client(key(1));

    // `is_authorized` is `updates.getState`, after the connection's getConfig.
    assert!(within(test.client.is_authorized()).await.unwrap());
    let state = within(test.client.invoke(&tl::functions::updates::GetState {}))
        .await
        .unwrap();
    let tl::enums::updates::State::State(state) = state;
    assert_eq!(state.pts, 10);

    let calls = sandbox.service.calls.lock().unwrap().clone();
    let expected_caller = Caller {
        auth_key_id: auth_key_id(&key(1)),
        dc_id: sandbox_dc_support::HOME_DC,
    };
    assert!(calls.iter().all(|(caller, _)| *caller == expected_caller));
    assert_eq!(
        calls.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
        vec![
            tl::functions::help::GetConfig::CONSTRUCTOR_ID,
            tl::functions::updates::GetState::CONSTRUCTOR_ID,
            tl::functions::updates::GetState::CONSTRUCTOR_ID,
        ]
    );
}

#[tokio::test]
async fn rpc_errors_surface_as_grammers_rpc_errors() {
    let sandbox = Sandbox::start(&[1]).await;
    let test = sandbox.client(key(1));
    let error = within(test.client.invoke(&tl::functions::help::GetNearestDc {}))
        .await
        .unwrap_err();
    let InvocationError::Rpc(error) = error else {
        panic!("expected an RPC error, got {error:?}");
    };
    assert_eq!(error.code, 420);
    assert_eq!(error.name, "FLOOD_WAIT");
    assert_eq!(error.value, Some(3));
}

#[tokio::test]
async fn large_requests_arrive_whole() {
    let sandbox = Sandbox::start(&[1]).await;
    let test = sandbox.client(key(1));
    for len in [3_000, 200_000] {
        let request = tl::functions::contacts::ResolveUsername {
            username: "u".repeat(len),
            referer: None,
        };
        // grammers gzips requests of 512 bytes or more.
        let resolved = within(test.client.invoke(&request)).await.unwrap();
        let tl::enums::contacts::ResolvedPeer::Peer(resolved) = resolved;
        assert_eq!(
            resolved.peer,
            tl::enums::Peer::User(tl::types::PeerUser {
                user_id: len as i64
            })
        );
    }
}

#[tokio::test]
async fn many_concurrent_calls_on_one_client() {
    let sandbox = Sandbox::start(&[1]).await;
    let test = sandbox.client(key(1));
    let calls = (1..=300).map(|len| {
        let client = test.client.clone();
        async move {
            let request = tl::functions::contacts::ResolveUsername {
                username: "c".repeat(len),
                referer: None,
            };
            let tl::enums::contacts::ResolvedPeer::Peer(resolved) =
                client.invoke(&request).await.unwrap();
            assert_eq!(
                resolved.peer,
                tl::enums::Peer::User(tl::types::PeerUser {
                    user_id: len as i64
                })
            );
        }
    });
    let handles: Vec<_> = calls.map(tokio::spawn).collect();
    for handle in handles {
        within(handle).await.unwrap();
    }
    let resolved = tl::functions::contacts::ResolveUsername::CONSTRUCTOR_ID;
    assert_eq!(sandbox.service.count(resolved), 300);
}

#[tokio::test]
async fn a_waiting_call_does_not_hold_up_the_others() {
    let sandbox = Sandbox::start(&[1]).await;
    let test = sandbox.client(key(1));
    within(test.client.is_authorized()).await.unwrap();
    let waiting = tokio::spawn({
        let client = test.client.clone();
        async move {
            client
                .invoke(&tl::functions::messages::GetBotCallbackAnswer {
                    game: false,
                    peer: tl::enums::InputPeer::PeerSelf,
                    msg_id: 1,
                    data: Some(b"click".to_vec()),
                    password: None,
                })
                .await
        }
    });
    let slow = tl::functions::messages::GetBotCallbackAnswer::CONSTRUCTOR_ID;
    within(async {
        while sandbox.service.count(slow) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    for _ in 0..5 {
        within(test.client.invoke(&tl::functions::updates::GetState {}))
            .await
            .unwrap();
    }
    assert!(!waiting.is_finished());
    sandbox.service.release.notify_one();
    let tl::enums::messages::BotCallbackAnswer::Answer(answer) =
        within(waiting).await.unwrap().unwrap();
    assert_eq!(answer.message.as_deref(), Some("done"));
}

#[tokio::test]
async fn pushed_updates_reach_the_update_stream() {
    let sandbox = Sandbox::start(&[1, 2]).await;
    let mut test = sandbox.client(key(1));
    let other = sandbox.client(key(2));
    within(test.client.is_authorized()).await.unwrap();
    within(other.client.is_authorized()).await.unwrap();

    let update = tl::enums::Updates::UpdateShort(tl::types::UpdateShort {
        update: tl::enums::Update::UserStatus(tl::types::UpdateUserStatus {
            user_id: 777,
            status: tl::enums::UserStatus::Empty,
        }),
        date: 1_700_000_001,
    });
    let key_id = auth_key_id(&key(1));
    assert_eq!(sandbox.outbox.push(key_id, &update.to_bytes()), 1);

    let updates = test.updates.take().unwrap();
    let mut stream = within(test.client.stream_updates(updates, Default::default()))
        .await
        .unwrap();
    let (received, _, _) = within(stream.next_raw()).await.unwrap();
    let tl::enums::Update::UserStatus(status) = received else {
        panic!("expected the pushed user status, got {received:?}");
    };
    assert_eq!(status.user_id, 777);
}

#[tokio::test]
async fn dropped_connections_recover_on_the_next_call() {
    let sandbox = Sandbox::start(&[1]).await;
    let test = sandbox.client(key(1));
    within(test.client.is_authorized()).await.unwrap();
    assert_eq!(sandbox.service.connections.load(Ordering::SeqCst), 1);

    sandbox.faults.drop_connections();
    // grammers reconnects lazily: a call racing the close may fail once.
    let mut failures = 0;
    let state = loop {
        match within(test.client.invoke(&tl::functions::updates::GetState {})).await {
            Ok(state) => break state,
            Err(error) => {
                assert!(
                    matches!(error, InvocationError::Dropped(_) | InvocationError::Io(_)),
                    "{error:?}"
                );
                failures += 1;
                assert!(failures < 5, "no recovery after {failures} failures");
            }
        }
    };
    let tl::enums::updates::State::State(state) = state;
    assert_eq!(state.pts, 10);
    assert_eq!(sandbox.service.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn latency_delays_answers_but_loses_nothing() {
    let sandbox = Sandbox::start(&[1]).await;
    let test = sandbox.client(key(1));
    within(test.client.is_authorized()).await.unwrap();
    sandbox.faults.set_latency(Duration::from_millis(50));
    let started = tokio::time::Instant::now();
    within(test.client.invoke(&tl::functions::updates::GetState {}))
        .await
        .unwrap();
    // A lower bound only: the delay must have been applied.
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn an_unknown_auth_key_is_refused() {
    let sandbox = Sandbox::start(&[1]).await;
    let stranger = sandbox.client(key(9));
    let result = within(stranger.client.invoke(&tl::functions::updates::GetState {})).await;
    assert!(result.is_err(), "{result:?}");
    assert!(sandbox.service.calls.lock().unwrap().is_empty());

    // The DC still serves everyone else.
    let test = sandbox.client(key(1));
    assert!(within(test.client.is_authorized()).await.unwrap());
}

#[tokio::test]
async fn an_unknown_key_gets_telegrams_404() {
    let sandbox = Sandbox::start(&[1]).await;
    let mut socket = tokio::net::TcpStream::connect(sandbox.dc.local_addr())
        .await
        .unwrap();
    // A well-framed packet with an encrypted message for a key nobody has.
    let mut payload = 0x1234_5678_i64.to_le_bytes().to_vec();
    payload.extend([0u8; 56]);
    socket.write_all(&packet(0, &payload)).await.unwrap();
    let mut reply = Vec::new();
    within(socket.read_to_end(&mut reply)).await.unwrap();
    // On the full transport Telegram repeats the code where seq and the
    // payload would be.
    assert_eq!(reply, (-404i32).to_le_bytes().repeat(3));
}

#[tokio::test]
async fn garbage_closes_the_connection() {
    let sandbox = Sandbox::start(&[1]).await;
    for garbage in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        // A sane length and a broken crc.
        {
            let mut bad = packet(0, &[0; 16]);
            bad[20] ^= 1;
            bad
        },
        // A plaintext (auth_key_id 0) DH request: the sandbox has no DH.
        packet(0, &[0; 40]),
    ] {
        let mut socket = tokio::net::TcpStream::connect(sandbox.dc.local_addr())
            .await
            .unwrap();
        socket.write_all(&garbage).await.unwrap();
        let mut reply = Vec::new();
        // The server closes (a reset is fine too) instead of waiting.
        let _ = within(socket.read_to_end(&mut reply)).await;
        assert!(reply.is_empty());
    }
    // Still serving.
    let test = sandbox.client(key(1));
    assert!(within(test.client.is_authorized()).await.unwrap());
}

#[tokio::test]
async fn shutdown_closes_every_connection() {
    let sandbox = Sandbox::start(&[1]).await;
    let test = sandbox.client(key(1));
    within(test.client.is_authorized()).await.unwrap();
    let addr = sandbox.dc.local_addr();
    within(sandbox.dc.shutdown()).await;
    let result = within(test.client.invoke(&tl::functions::updates::GetState {})).await;
    assert!(result.is_err(), "{result:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A "full" transport packet, built by hand.
fn packet(seq: i32, payload: &[u8]) -> Vec<u8> {
    let mut packet = ((payload.len() + 12) as i32).to_le_bytes().to_vec();
    packet.extend(seq.to_le_bytes());
    packet.extend(payload);
    let crc = crc32fast::hash(&packet);
    packet.extend(crc.to_le_bytes());
    packet
}

#[tokio::test]
async fn ping_delay_disconnect_gets_a_pong_and_sets_the_idle_limit() {
    use grammers_crypto::DequeBuffer;
    use grammers_mtproto::mtp::{Deserialization, Encrypted, Mtp};
    use grammers_mtproto::transport::{Full, Transport};

    let sandbox = Sandbox::start(&[1]).await;
    let mut socket = tokio::net::TcpStream::connect(sandbox.dc.local_addr())
        .await
        .unwrap();
    let mut mtp = Encrypted::build().finish(key(1));
    let mut transport = Full::new();
    let mut buffer = DequeBuffer::with_capacity(0, 64);
    let ping = tl::functions::PingDelayDisconnect {
        ping_id: 42,
        disconnect_delay: 1,
    };
    let msg_id = mtp.push(&mut buffer, &ping.to_bytes()).unwrap();
    mtp.finalize(&mut buffer);
    transport.pack(&mut buffer);
    socket.write_all(&buffer[..]).await.unwrap();

    let mut received = Vec::new();
    let offset = loop {
        let mut chunk = [0u8; 1024];
        let n = within(socket.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "closed before the pong");
        received.extend_from_slice(&chunk[..n]);
        if let Ok(offset) = transport.unpack(&mut received) {
            break offset;
        }
    };
    let results = mtp.deserialize(&mut received[offset.data_range]).unwrap();
    let [Deserialization::RpcResult(pong)] = &results[..] else {
        panic!("expected exactly the pong");
    };
    assert_eq!(pong.msg_id, msg_id);
    let tl::enums::Pong::Pong(pong) =
        <tl::enums::Pong as tl::Deserializable>::from_bytes(&pong.body).unwrap();
    assert_eq!(pong.ping_id, 42);

    // Silent from now on: the DC closes after about a second (its default
    // idle limit is minutes, far beyond this wait).
    let mut rest = Vec::new();
    within(socket.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
}

fn expect_self(users: Vec<tl::enums::User>) {
    assert_eq!(
        users,
        vec![tl::enums::User::Empty(tl::types::UserEmpty { id: SELF_ID })]
    );
}

/// The `rpc_result` body in one packet of results.
fn only_result(results: &[Deserialization]) -> Vec<u8> {
    match results {
        [Deserialization::RpcResult(result)] => result.body.clone(),
        other => panic!("expected one rpc_result, got {} messages", other.len()),
    }
}

#[tokio::test]
async fn every_transport_serves_init_connection_and_get_users() {
    use grammers_mtproto::transport::{Abridged, Full, Intermediate, Obfuscated};
    let sandbox = Sandbox::start(&[1]).await;
    let addr = sandbox.dc.local_addr();
    expect_self(
        within(get_self_over(Abridged::new(), addr, key(1)))
            .await
            .unwrap(),
    );
    expect_self(
        within(get_self_over(Intermediate::new(), addr, key(1)))
            .await
            .unwrap(),
    );
    expect_self(
        within(get_self_over(Full::new(), addr, key(1)))
            .await
            .unwrap(),
    );
    let obfuscated = Obfuscated::new(Abridged::new());
    expect_self(
        within(get_self_over(obfuscated, addr, key(1)))
            .await
            .unwrap(),
    );
    let obfuscated = Obfuscated::new(Intermediate::new());
    expect_self(
        within(get_self_over(obfuscated, addr, key(1)))
            .await
            .unwrap(),
    );
    // grammers has no padded intermediate: framed by the sandbox's codec.
    let padded = Box::new(transport::PaddedIntermediate);
    let mut raw = RawClient::connect(addr, key(1), &[0xdd; 4], padded).await;
    raw.send(&[init_connection(get_self()).to_bytes()])
        .await
        .unwrap();
    let body = only_result(&within(raw.next_results()).await);
    expect_self(<Vec<tl::enums::User> as tl::Deserializable>::from_bytes(&body).unwrap());

    let counts = sandbox.traffic.counts();
    for name in [
        "abridged",
        "intermediate",
        "full",
        "obfuscated_abridged",
        "obfuscated_intermediate",
        "padded_intermediate",
    ] {
        assert_eq!(
            counts.connections_by_transport.get(name),
            Some(&1),
            "{name}"
        );
    }
    assert_eq!(counts.connections_by_dc.get(&2), Some(&6));
}

#[tokio::test]
async fn transport_errors_are_framed_per_transport() {
    use grammers_mtproto::transport::{Abridged, Error, Full, Intermediate, Obfuscated};
    use grammers_mtsender::InvocationError as SenderError;
    let sandbox = Sandbox::start(&[1]).await;
    let addr = sandbox.dc.local_addr();
    let is_404 = |result: Result<Vec<tl::enums::User>, SenderError>| {
        assert!(
            matches!(
                result,
                Err(SenderError::Transport(Error::BadStatus { status: 404 }))
            ),
            "{result:?}"
        );
    };
    is_404(within(get_self_over(Abridged::new(), addr, key(9))).await);
    is_404(within(get_self_over(Intermediate::new(), addr, key(9))).await);
    is_404(within(get_self_over(Full::new(), addr, key(9))).await);
    is_404(
        within(get_self_over(
            Obfuscated::new(Abridged::new()),
            addr,
            key(9),
        ))
        .await,
    );
    is_404(
        within(get_self_over(
            Obfuscated::new(Intermediate::new()),
            addr,
            key(9),
        ))
        .await,
    );
    assert_eq!(
        sandbox.traffic.counts().refused.get("unknown_auth_key"),
        Some(&5)
    );
}

#[tokio::test]
async fn a_quick_ack_comes_before_the_answer() {
    let sandbox = Sandbox::start(&[1]).await;
    let mut raw = RawClient::intermediate(sandbox.dc.local_addr(), key(1)).await;
    let mut packet = raw.packet(&[tl::functions::Ping { ping_id: 5 }.to_bytes()]);
    packet[3] |= 0x80; // the length's top bit asks for a quick ack
    raw.socket.write_all(&packet).await.unwrap();
    let mut ack = [0u8; 4];
    within(raw.socket.read_exact(&mut ack)).await.unwrap();
    assert_ne!(u32::from_le_bytes(ack) & 0x8000_0000, 0, "{ack:02x?}");
    let pong = only_result(&within(raw.next_results()).await);
    let tl::enums::Pong::Pong(pong) =
        <tl::enums::Pong as tl::Deserializable>::from_bytes(&pong).unwrap();
    assert_eq!(pong.ping_id, 5);
}

/// `messages.sendMessage` whose `peer` nests `inputPeerUserFromMessage`
/// `depth` deep: a request that overflowed the stack before the bound.
fn deeply_nested_send_message(depth: usize) -> Vec<u8> {
    let mut body = tl::functions::messages::SendMessage::CONSTRUCTOR_ID
        .to_le_bytes()
        .to_vec();
    0u32.serialize(&mut body); // flags
    for _ in 0..depth {
        tl::types::InputPeerUserFromMessage::CONSTRUCTOR_ID.serialize(&mut body);
    }
    tl::types::InputPeerSelf::CONSTRUCTOR_ID.serialize(&mut body);
    for _ in 0..depth {
        7i32.serialize(&mut body); // msg_id
        9i64.serialize(&mut body); // user_id
    }
    "hi".to_string().serialize(&mut body);
    1i64.serialize(&mut body); // random_id
    body
}

/// The `rpc_error` in one packet of results: code and message.
fn only_error(results: &[Deserialization]) -> (i32, String) {
    match results {
        [Deserialization::RpcError(error)] => {
            (error.error.error_code, error.error.error_message.clone())
        }
        other => panic!("expected one rpc_error, got {} messages", other.len()),
    }
}

#[tokio::test]
async fn hostile_requests_get_rpc_errors_and_the_connection_lives_on() {
    let sandbox = Sandbox::start(&[1]).await;
    let mut raw = RawClient::intermediate(sandbox.dc.local_addr(), key(1)).await;
    // A ping before any initConnection.
    raw.send(&[tl::functions::Ping { ping_id: 1 }.to_bytes()])
        .await
        .unwrap();
    let pong = only_result(&within(raw.next_results()).await);
    assert!(!pong.is_empty());

    let hostile = deeply_nested_send_message(20_000);
    assert!(hostile.len() > 300_000);
    raw.send(&[hostile]).await.unwrap();
    let (code, message) = only_error(&within(raw.next_results()).await);
    assert_eq!((code, message.as_str()), (400, "INPUT_FETCH_FAIL"));

    raw.send(&[0x0bad_f00d_u32.to_le_bytes().to_vec()])
        .await
        .unwrap();
    let (code, message) = only_error(&within(raw.next_results()).await);
    assert_eq!((code, message.as_str()), (400, "INPUT_CONSTRUCTOR_INVALID"));

    // Still the same, working connection; nothing reached the service.
    raw.send(&[init_connection(get_self()).to_bytes()])
        .await
        .unwrap();
    let body = only_result(&within(raw.next_results()).await);
    expect_self(<Vec<tl::enums::User> as tl::Deserializable>::from_bytes(&body).unwrap());
    let send = tl::functions::messages::SendMessage::CONSTRUCTOR_ID;
    assert_eq!(sandbox.service.count(send), 0);
}

/// This process's resident memory, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test]
async fn connections_declaring_huge_packets_cost_no_memory_and_meet_the_address_cap() {
    let limits = DcLimits {
        connections_per_address: 200,
        ..DcLimits::default()
    };
    let sandbox = Sandbox::with_limits(&[1], limits).await;
    let before = resident_bytes();
    let mut sockets = Vec::new();
    for _ in 0..500 {
        let mut socket = tokio::net::TcpStream::connect(sandbox.dc.local_addr())
            .await
            .unwrap();
        // Intermediate, a packet of 1 MiB declared, 8 bytes of it sent.
        let mut head = vec![0xee; 4];
        head.extend((1u32 << 20).to_le_bytes());
        head.extend([0; 8]);
        socket.write_all(&head).await.unwrap();
        sockets.push(socket);
    }
    // Beyond the cap the DC answers -429 in the client's framing and closes.
    let mut refused = 0;
    for socket in sockets.iter_mut().skip(200) {
        let mut reply = Vec::new();
        let _ = within(socket.read_to_end(&mut reply)).await;
        assert_eq!(reply, [4, 0, 0, 0, 0x53, 0xfe, 0xff, 0xff]);
        refused += 1;
    }
    assert_eq!(refused, 300);
    // 500 MiB were declared; the DC holds what arrived (and read buffers).
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 100 << 20, "resident memory grew by {grown} bytes");
    drop(sockets.split_off(200));
    // The held connections do not stop a good one once the cap has room.
    drop(sockets.pop());
    let test = sandbox.client(key(1));
    within(async {
        loop {
            match test.client.is_authorized().await {
                Ok(authorized) => break assert!(authorized),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    let counts = sandbox.traffic.counts();
    assert!(counts.refused.get("connections_per_address") >= Some(&300));
}

/// A `msg_container` of `count` pings, built by hand (grammers puts at
/// most 100 messages in one).
fn ping_container(count: i64) -> Vec<u8> {
    let mut body = 0x73f1f8dc_u32.to_le_bytes().to_vec();
    (count as i32).serialize(&mut body);
    for i in 0..count {
        let ping = tl::functions::Ping { ping_id: i }.to_bytes();
        (i * 4 + 4).serialize(&mut body); // msg_id
        (i as i32 * 2 + 1).serialize(&mut body); // seqno
        (ping.len() as i32).serialize(&mut body);
        body.extend(ping);
    }
    body
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_disconnected() {
    let limits = DcLimits {
        queued_bytes: 256 * 1024,
        ..DcLimits::default()
    };
    let sandbox = Sandbox::with_limits(&[1], limits).await;
    let mut raw = RawClient::intermediate(sandbox.dc.local_addr(), key(1)).await;
    let container = ping_container(1000);
    let closed = within(async {
        // Far more pongs than the socket buffers and the queue hold.
        for _ in 0..100_000 {
            if raw.send(std::slice::from_ref(&container)).await.is_err() {
                return true;
            }
        }
        false
    })
    .await;
    assert!(closed, "the DC kept reading without bound");
    let counts = sandbox.traffic.counts();
    assert_eq!(counts.refused.get("send_queue_full"), Some(&1));
    // Others are still served.
    let test = sandbox.client(key(1));
    assert!(within(test.client.is_authorized()).await.unwrap());
}

#[test]
fn fuzzed_transports_never_crash_the_dc_or_stop_a_good_client() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sandbox = runtime.block_on(Sandbox::start(&[1]));
    let addr = sandbox.dc.local_addr();
    let good = runtime.block_on(async { sandbox.client(key(1)) });
    assert!(
        runtime
            .block_on(within(good.client.is_authorized()))
            .unwrap()
    );

    let tags: [&[u8]; 5] = [
        &[0xef],
        &[0xee; 4],
        &[0xdd; 4],
        &[16, 0, 0, 0, 0, 0, 0, 0],
        &[],
    ];
    let huge: [&[u8]; 4] = [
        &[0x7f, 0xff, 0xff, 0x7f],
        &[0xff, 0xff, 0xff, 0x7f],
        &[],
        &[0x10, 0, 0, 0x10],
    ];
    let strategy = (
        0..tags.len(),
        0..huge.len(),
        proptest::collection::vec(any::<u8>(), 0..3000),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config::with_cases(64));
    runner
        .run(&strategy, |(tag, length, junk, truncate)| {
            runtime.block_on(async {
                let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
                let mut wire = tags[tag].to_vec();
                wire.extend(huge[length]);
                wire.extend(&junk);
                if truncate {
                    wire.truncate(wire.len() / 2);
                }
                let _ = socket.write_all(&wire).await;
                let _ = socket.shutdown().await;
                let mut reply = Vec::new();
                // The DC closes (or answers a transport error) instead of hanging.
                let _ = within(socket.read_to_end(&mut reply)).await;
                prop_assert!(
                    reply.len() <= 12,
                    "{} bytes answered to garbage",
                    reply.len()
                );
                Ok(())
            })
        })
        .unwrap();
    // The good connection was served throughout and still is.
    let state = runtime.block_on(within(
        good.client.invoke(&tl::functions::updates::GetState {}),
    ));
    assert!(state.is_ok(), "{state:?}");
    drop(good);
    runtime.block_on(sandbox.dc.shutdown());
}

#[tokio::test]
async fn service_messages_get_telegrams_answers() {
    use tl::Deserializable;
    let sandbox = Sandbox::start(&[1]).await;
    let mut raw = RawClient::intermediate(sandbox.dc.local_addr(), key(1)).await;

    raw.send(&[tl::functions::GetFutureSalts { num: 3 }.to_bytes()])
        .await
        .unwrap();
    let bodies = within(raw.next_bodies(key(1))).await;
    let tl::enums::FutureSalts::Salts(salts) =
        tl::enums::FutureSalts::from_bytes(&bodies[0]).unwrap();
    assert_eq!(salts.salts.0.len(), 3);

    raw.send(&[tl::functions::DestroySession { session_id: 12345 }.to_bytes()])
        .await
        .unwrap();
    let bodies = within(raw.next_bodies(key(1))).await;
    assert!(matches!(
        tl::enums::DestroySessionRes::from_bytes(&bodies[0]),
        Ok(tl::enums::DestroySessionRes::DestroySessionNone(none)) if none.session_id == 12345
    ));

    // Ids around the ones sent: older than all, never sent, newer than all.
    let state = tl::enums::MsgsStateReq::Req(tl::types::MsgsStateReq {
        msg_ids: vec![1, i64::MAX],
    });
    raw.send(&[state.to_bytes()]).await.unwrap();
    let bodies = within(raw.next_bodies(key(1))).await;
    let tl::enums::MsgsStateInfo::Info(info) =
        tl::enums::MsgsStateInfo::from_bytes(&bodies[0]).unwrap();
    assert_eq!(info.info, [1, 3]);

    // A call wrapped in invokeWithoutUpdates does not subscribe the
    // connection to pushed updates; a plain call does.
    let key_id = auth_key_id(&key(1));
    let quiet = tl::functions::InvokeWithoutUpdates {
        query: tl::functions::updates::GetState {},
    };
    raw.send(&[quiet.to_bytes()]).await.unwrap();
    within(raw.next_bodies(key(1))).await;
    assert_eq!(
        sandbox
            .outbox
            .push(key_id, &tl::enums::Updates::TooLong.to_bytes()),
        0
    );
    raw.send(&[tl::functions::updates::GetState {}.to_bytes()])
        .await
        .unwrap();
    within(raw.next_bodies(key(1))).await;
    within(async {
        while sandbox
            .outbox
            .push(key_id, &tl::enums::Updates::TooLong.to_bytes())
            == 0
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn dcs_given_one_admission_share_its_bounds() {
    let admission = DcAdmission::new(DcLimits {
        connections_per_address: 1,
        ..DcLimits::default()
    });
    let mut dcs = Vec::new();
    let mut traffic = Vec::new();
    for dc_id in [1, 2] {
        let mut parts = dc_parts(
            Arc::new(Shared(Arc::new(TestService::default()))),
            Arc::new(Keys::from_seeds(&[1])),
        );
        parts.dc_id = dc_id;
        parts.admission = admission.clone();
        traffic.push(Arc::clone(&parts.traffic));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        dcs.push(Dc::bind(addr, parts).await.unwrap());
    }
    // One connection held open at DC 1 (the transport is known, so its
    // place is taken)...
    let mut held = tokio::net::TcpStream::connect(dcs[0].local_addr())
        .await
        .unwrap();
    held.write_all(&[0xee; 4]).await.unwrap();
    within(async {
        while traffic[0].counts().connections_by_transport.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // ...and DC 2 refuses the address's second one with -429, framed.
    let mut refused = tokio::net::TcpStream::connect(dcs[1].local_addr())
        .await
        .unwrap();
    refused.write_all(&[0xef]).await.unwrap();
    let mut reply = Vec::new();
    within(refused.read_to_end(&mut reply)).await.unwrap();
    assert_eq!(reply, [1, 0x53, 0xfe, 0xff, 0xff]);
}

#[tokio::test]
async fn a_client_that_never_reads_its_updates_is_let_go() {
    let sandbox = Sandbox::start(&[1]).await;
    let mut raw = RawClient::intermediate(sandbox.dc.local_addr(), key(1)).await;
    raw.send(&[tl::functions::updates::GetState {}.to_bytes()])
        .await
        .unwrap();
    within(raw.next_bodies(key(1))).await;
    // Subscribed now; then updates pile up while the client reads nothing.
    let key_id = auth_key_id(&key(1));
    let large: Vec<u8> = {
        // Many updates in one `updates` object.
        let many = tl::enums::Updates::Updates(tl::types::Updates {
            updates: vec![
                tl::enums::Update::UserStatus(tl::types::UpdateUserStatus {
                    user_id: 1,
                    status: tl::enums::UserStatus::Empty,
                });
                64
            ],
            users: Vec::new(),
            chats: Vec::new(),
            date: 1,
            seq: 0,
        });
        many.to_bytes()
    };
    let mut pushed = 0;
    within(async {
        while sandbox.outbox.push(key_id, &large) == 1 {
            pushed += 1;
            if pushed % 256 == 0 {
                tokio::task::yield_now().await;
            }
        }
    })
    .await;
    assert!(pushed >= telegate::sandbox::PUSH_QUEUE_LEN, "{pushed}");
    // The DC closes the connection: the client reads what was sent, then EOF.
    let mut rest = Vec::new();
    within(raw.socket.read_to_end(&mut rest)).await.unwrap();
}

#[tokio::test]
async fn a_second_live_connection_with_one_key_gets_auth_key_duplicated() {
    let sandbox = Sandbox::start(&[1, 2]).await;
    let addr = sandbox.dc.local_addr();
    let get_state = || tl::functions::updates::GetState {}.to_bytes();
    let served = || {
        sandbox
            .service
            .count(tl::functions::updates::GetState::CONSTRUCTOR_ID)
    };

    let mut first = RawClient::intermediate(addr, key(1)).await;
    first.send(&[get_state()]).await.unwrap();
    assert!(!only_result(&within(first.next_results()).await).is_empty());
    assert_eq!(served(), 1);

    // Same key, the first connection still open: refused, with an answer.
    let mut second = RawClient::intermediate(addr, key(1)).await;
    for _ in 0..2 {
        second.send(&[get_state()]).await.unwrap();
        let (code, message) = only_error(&within(second.next_results()).await);
        assert_eq!((code, message.as_str()), (406, "AUTH_KEY_DUPLICATED"));
    }
    assert_eq!(served(), 1, "the refused connection reached the service");

    // Another key is not affected, and the first connection is served on.
    let mut other = RawClient::intermediate(addr, key(2)).await;
    other.send(&[get_state()]).await.unwrap();
    assert!(!only_result(&within(other.next_results()).await).is_empty());
    first.send(&[get_state()]).await.unwrap();
    assert!(!only_result(&within(first.next_results()).await).is_empty());
    assert_eq!(served(), 3);

    // Once the first closed, the key is free again.
    drop(first);
    let mut third = RawClient::intermediate(addr, key(1)).await;
    third.send(&[get_state()]).await.unwrap();
    assert!(!only_result(&within(third.next_results()).await).is_empty());
    assert_eq!(served(), 4);

    let counts = sandbox.traffic.counts();
    assert_eq!(counts.auth_key_duplicates_refused, 1);
    assert_eq!(counts.max_live_connections_per_key, 1);
    drop(second);
}
