//! How many RPCs per second the sandbox DC serves, so that it never limits
//! the worker's own benchmarks.
//!
//! Stock grammers clients (each its own connection and auth key) keep a
//! fixed number of trivial calls (`updates.getState`, answered at once by a
//! test Service) in flight for one-second rounds; the figure is the median
//! of the rounds. Clients and DC share the process and the machine's cores,
//! so this is a floor for the DC alone.
//!
//! Run: `cargo bench --bench sandbox` (`-- --quick` for fewer rounds).

#[path = "../tests/sandbox_dc_support/mod.rs"]
mod sandbox_dc_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use grammers_client::tl::{self, Identifiable, Serializable};
use sandbox_dc_support::{Keys, TestClient, config, dc_parts, key};
use telegate::sandbox::dc::Dc;
use telegate::sandbox::{Caller, RpcFuture, RpcOutcome, Service};

const ROUND: Duration = Duration::from_secs(1);
/// (clients, calls in flight per client)
const SHAPES: [(usize, usize); 4] = [(1, 1), (1, 64), (8, 16), (32, 4)];

/// Answers `help.getConfig` (sent on every new connection) and anything
/// else with an `updates.state`.
struct Trivial {
    config: Vec<u8>,
    state: Vec<u8>,
}

impl Service for Trivial {
    fn call(&self, _: Caller, request: Vec<u8>) -> RpcFuture {
        let get_config = tl::functions::help::GetConfig::CONSTRUCTOR_ID.to_le_bytes();
        let answer = if request.starts_with(&get_config) {
            self.config.clone()
        } else {
            self.state.clone()
        };
        Box::pin(std::future::ready(RpcOutcome::Ok(answer)))
    }
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let rounds = if quick { 3 } else { 7 };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let seeds: Vec<u8> = (1..=32).collect();
        let service = Trivial {
            config: config().to_bytes(),
            state: tl::enums::updates::State::State(tl::types::updates::State {
                pts: 1,
                qts: 0,
                date: 1_700_000_000,
                seq: 0,
                unread_count: 0,
            })
            .to_bytes(),
        };
        let dc = Dc::bind(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            dc_parts(Arc::new(service), Arc::new(Keys::from_seeds(&seeds))),
        )
        .await
        .expect("bind on loopback");

        println!("sandbox DC: RPC/s, median of {rounds} rounds of {ROUND:?}");
        for (clients, in_flight) in SHAPES {
            let clients: Vec<TestClient> = seeds[..clients]
                .iter()
                .map(|&seed| TestClient::connect(dc.local_addr(), key(seed)))
                .collect();
            for test in &clients {
                // Connect (and send getConfig) before measuring.
                call(test).await;
            }
            let mut rates: Vec<f64> = Vec::new();
            for _ in 0..rounds {
                rates.push(round(&clients, in_flight).await);
            }
            rates.sort_by(f64::total_cmp);
            println!(
                "{:>3} clients x {in_flight:>2} in flight: {:>8.0} RPC/s  (min {:.0}, max {:.0})",
                clients.len(),
                rates[rates.len() / 2],
                rates[0],
                rates[rates.len() - 1],
            );
        }
        dc.shutdown().await;
    });
}

async fn call(test: &TestClient) {
    test.client
        .invoke(&tl::functions::updates::GetState {})
        .await
        .expect("the sandbox answers");
}

/// Keeps `in_flight` calls per client going for one round; returns RPC/s.
async fn round(clients: &[TestClient], in_flight: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + ROUND;
    let mut workers = tokio::task::JoinSet::new();
    for test in clients {
        for _ in 0..in_flight {
            let client = test.client.clone();
            let done = Arc::clone(&done);
            workers.spawn(async move {
                while Instant::now() < deadline {
                    client
                        .invoke(&tl::functions::updates::GetState {})
                        .await
                        .expect("the sandbox answers");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
    workers.join_all().await;
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
