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
use telegate::sandbox::dc::auth_key_id;
use telegate::sandbox::{AuthKeyBytes, KeyRing};
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
    fn auth_key(&self, auth_key_id: i64) -> Option<AuthKeyBytes> {
        self.0.get(&auth_key_id).copied()
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
    telegate::sandbox::telegram::config()
}
