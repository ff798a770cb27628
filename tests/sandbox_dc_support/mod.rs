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

/// `help.getConfig`'s answer: an empty `dc_options`, so the client keeps
/// the session's loopback address.
pub fn config() -> tl::enums::Config {
    tl::enums::Config::Config(tl::types::Config {
        default_p2p_contacts: false,
        preload_featured_stickers: false,
        revoke_pm_inbox: false,
        blocked_mode: false,
        force_try_ipv6: false,
        date: 1_700_000_000,
        expires: 1_800_000_000,
        test_mode: true,
        this_dc: HOME_DC,
        dc_options: Vec::new(),
        dc_txt_domain_name: String::new(),
        chat_size_max: 200,
        megagroup_size_max: 200_000,
        forwarded_count_max: 100,
        online_update_period_ms: 120_000,
        offline_blur_timeout_ms: 5_000,
        offline_idle_timeout_ms: 30_000,
        online_cloud_timeout_ms: 300_000,
        notify_cloud_delay_ms: 30_000,
        notify_default_delay_ms: 1_500,
        push_chat_period_ms: 60_000,
        push_chat_limit: 2,
        edit_time_limit: 172_800,
        revoke_time_limit: i32::MAX,
        revoke_pm_time_limit: i32::MAX,
        rating_e_decay: 2_419_200,
        stickers_recent_limit: 200,
        channels_read_media_period: 604_800,
        tmp_sessions: None,
        call_receive_timeout_ms: 20_000,
        call_ring_timeout_ms: 90_000,
        call_connect_timeout_ms: 30_000,
        call_packet_timeout_ms: 10_000,
        me_url_prefix: String::new(),
        autoupdate_url_prefix: None,
        gif_search_username: None,
        venue_search_username: None,
        img_search_username: None,
        static_maps_provider: None,
        caption_length_max: 1024,
        message_length_max: 4096,
        webfile_dc_id: HOME_DC,
        suggested_lang_code: None,
        lang_pack_version: None,
        base_lang_pack_version: None,
        reactions_default: None,
        autologin_token: None,
    })
}
