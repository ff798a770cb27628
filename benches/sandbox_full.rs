//! How many RPCs a second the whole sandbox serves — DC and Telegram model
//! (`benches/sandbox.rs` measures the DC alone) — so that it never limits
//! the worker's benchmarks.
//!
//! One in-process sandbox, limits off, and one unmodified grammers bot client
//! (one connection, as telegate holds) with many requests in flight. Two
//! loads: `updates.getState` (the cheapest call: transport + crypto + dispatch)
//! and `messages.sendMessage` to 100 chats (the worker's call: + validation,
//! storage, pts and the push to the user); both again with the state file
//! on (as `telegate sandbox` runs). Client and server share the machine.
//! Run: `cargo bench --bench sandbox_full`.

use std::collections::HashMap;
use std::net::SocketAddrV6;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use grammers_client::Client;
use grammers_mtsender::{ConnectionParams, NoRetries, SenderPool};
use grammers_session::SessionData;
use grammers_session::storages::MemorySession;
use grammers_session::types::DcOption;
use grammers_tl_types as tl;
use telegate::sandbox::server::{Sandbox, SandboxOptions};
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{DC_ID, NewUser, UserMessage};

const IN_FLIGHT: usize = 64;
const WINDOW: Duration = Duration::from_secs(2);
const ROUNDS: usize = 5;
const CHATS: usize = 100;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let (state, send) = measure_sandbox(SandboxOptions::default(), "in memory").await;
    println!(
        "sendMessage / getState throughput ratio: {:.2}",
        send / state
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let with_file = SandboxOptions {
        state_dir: Some(dir.path().to_owned()),
        ..SandboxOptions::default()
    };
    let (_, send_saved) = measure_sandbox(with_file, "with state file").await;
    println!(
        "sendMessage with / without state file ratio: {:.2}",
        send_saved / send
    );
}

/// Returns the median RPC/s of `updates.getState` and `messages.sendMessage`.
async fn measure_sandbox(options: SandboxOptions, label: &str) -> (f64, f64) {
    println!("sandbox {label}:");
    let sandbox = Sandbox::start(options).await.expect("sandbox");
    let telegram = sandbox.telegram().clone();
    telegram.set_limits_enabled(false);
    let mut users = Vec::new();
    for i in 0..CHATS {
        let user = telegram
            .create_user(NewUser {
                first_name: format!("User {i}"),
                ..NewUser::default()
            })
            .expect("user");
        telegram
            .user_sends(user.id, BOT_ID, UserMessage::Text("hi".into()), None)
            .expect("first message");
        users.push(user.id);
    }
    let client = connect(&sandbox);
    client
        .bot_sign_in(telegram.bot_token(BOT_ID).unwrap().expose(), "bench")
        .await
        .expect("sign in");
    let users = Arc::new(users);
    let random_id = Arc::new(AtomicI64::new(1));

    let state = measure("updates.getState", &client, |client| async move {
        client
            .invoke(&tl::functions::updates::GetState {})
            .await
            .is_ok()
    })
    .await;
    let send = measure("messages.sendMessage", &client, move |client| {
        let users = Arc::clone(&users);
        let random_id = Arc::clone(&random_id);
        async move {
            let n = random_id.fetch_add(1, Ordering::Relaxed);
            let user = users[n as usize % users.len()];
            client.invoke(&send(user, n)).await.is_ok()
        }
    })
    .await;
    drop(client);
    sandbox.shutdown().await.expect("shutdown");
    (state, send)
}

/// Runs `call` with `IN_FLIGHT` requests outstanding for `ROUNDS` windows;
/// prints each window's rate and the median, and returns the median.
async fn measure<F, Fut>(name: &str, client: &Client, call: F) -> f64
where
    F: Fn(Client) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let workers: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let client = client.clone();
                let call = call.clone();
                tokio::spawn(async move {
                    let (mut ok, mut failed) = (0u64, 0u64);
                    while started.elapsed() < WINDOW {
                        if call(client.clone()).await {
                            ok += 1;
                        } else {
                            failed += 1;
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        let (mut ok, mut failed) = (0, 0);
        for worker in workers {
            let (o, f) = worker.await.expect("worker");
            ok += o;
            failed += f;
        }
        assert_eq!(failed, 0, "{name}: {failed} calls failed");
        rates.push(ok as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let shown: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "  {name}: median {median:.0} RPC/s over {ROUNDS} x {WINDOW:?} windows, {IN_FLIGHT} in flight (sorted: {})",
        shown.join(", ")
    );
    median
}

fn connect(sandbox: &Sandbox) -> Client {
    let addr = sandbox.dc_addr();
    let option = DcOption {
        id: DC_ID,
        ipv4: addr,
        ipv6: SocketAddrV6::new(addr.ip().to_ipv6_mapped(), addr.port(), 0, 0),
        auth_key: Some(sandbox.telegram().bot_auth_key(BOT_ID).unwrap()),
    };
    let data = SessionData {
        home_dc: DC_ID,
        dc_options: HashMap::from([(DC_ID, option)]),
        ..SessionData::default()
    };
    let params = ConnectionParams {
        retry_policy: Box::new(NoRetries),
        ..ConnectionParams::default()
    };
    let pool = SenderPool::with_configuration(Arc::new(MemorySession::from(data)), 1, params);
    tokio::spawn(pool.runner.run());
    // Updates are not read here; grammers drops what overflows its buffer.
    drop(pool.updates);
    Client::new(pool.handle)
}

fn send(user_id: i64, random_id: i64) -> tl::functions::messages::SendMessage {
    let peer = telegate::ChatId::user(user_id).input_peer(0);
    telegate::outgoing::text_message(peer, format!("bench {random_id}"), None, random_id)
}
