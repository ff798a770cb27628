//! Jobs per second through several daemons on one PostgreSQL store, beside
//! one daemon on SQLite, in one run: durable enqueue (every job's `202`
//! read) and end to end (every job posted in its chat in the sandbox).
//!
//! `source .ci/postgres; cargo bench --bench shared_store` (the script
//! exports `TELEGATE_TEST_POSTGRES`, a server the bench creates a database
//! on per setup; env `BENCH_ROUNDS`, default 3; `BENCH_JOBS` per setup and
//! round, default 6000; `BENCH_BOTS`, default 6). Each round starts, in
//! turn, one daemon on SQLite and 1, 2 and 3 daemons on a fresh PostgreSQL
//! database (`telegate run` child processes, release build; the sessions
//! imported into the database), with the sandbox in this process and
//! Telegram's limits off on both sides, so the store is what is measured.
//! The jobs go in over 16 socket connections spread over the daemons, each
//! connection posting its chats' jobs one after the other; 50 chats a bot.
//! Prints every round, the medians, and each setup's ratio to SQLite.

#[path = "../tests/worker_support/mod.rs"]
mod worker_support;

use std::time::{Duration, Instant};

use axum::http::Method;
use bytes::Bytes;
use telegate::sandbox::telegram::AccountId;
use tokio::time::sleep;
use worker_support::body;
use worker_support::daemons::{Daemons, Stores};

const CONNECTIONS: usize = 16;
const CHATS_PER_BOT: usize = 50;
const UNLIMITED: &str = "[limits]\nbot_per_second = 1000000\nprivate_chat_per_second = 1000000\ngroup_per_minute = 1000000\n";
const SETUPS: [Stores; 4] = [
    Stores::Sqlite,
    Stores::Postgres(1),
    Stores::Postgres(2),
    Stores::Postgres(3),
];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn name(setup: Stores) -> String {
    match setup {
        Stores::Sqlite => "SQLite, 1 daemon".into(),
        Stores::Postgres(1) => "PostgreSQL, 1 daemon".into(),
        Stores::Postgres(n) => format!("PostgreSQL, {n} daemons"),
    }
}

/// One run of `jobs` jobs through `setup`: (enqueue jobs/s, end-to-end jobs/s).
async fn run(setup: Stores, bots: usize, jobs: usize) -> (f64, f64) {
    let mut fleet = Daemons::start(bots, setup, UNLIMITED, false).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !fleet.spread().await {
        assert!(Instant::now() < deadline, "{setup:?}: bots never all ran");
        sleep(Duration::from_millis(100)).await;
    }
    let telegram = fleet.sandbox.telegram().clone();
    let chats = fleet.chats(CHATS_PER_BOT);
    let before = telegram.stats().messages_from_bot;
    let started = Instant::now();
    let mut enqueuers = Vec::new();
    let live: Vec<_> = fleet.clients.iter().flatten().cloned().collect();
    for lane in 0..CONNECTIONS {
        let client = live[lane % live.len()].clone();
        let mine: Vec<(usize, AccountId)> = chats
            .iter()
            .enumerate()
            .filter(|(n, _)| n % CONNECTIONS == lane)
            .map(|(_, chat)| *chat)
            .collect();
        let count = jobs / CONNECTIONS;
        let keys = fleet.keys.clone();
        enqueuers.push(tokio::spawn(async move {
            let mut connection = client.connect().await.unwrap();
            for n in 0..count {
                let (b, user) = mine[n % mine.len()];
                let answer = connection
                    .send(
                        Method::POST,
                        "/api/v1/telegram/interactive",
                        &[("x-octopods-auth", keys[b].1.as_str())],
                        Bytes::from(body(user, &format!("job {n}"))),
                    )
                    .await
                    .unwrap();
                assert_eq!(answer.status, 202, "{:?}", answer.body);
            }
        }));
    }
    for enqueuer in enqueuers {
        enqueuer.await.unwrap();
    }
    let enqueued = started.elapsed();
    let total = (jobs / CONNECTIONS * CONNECTIONS) as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while telegram.stats().messages_from_bot - before < total {
        assert!(Instant::now() < deadline, "{setup:?}: jobs never all sent");
        sleep(Duration::from_millis(20)).await;
    }
    let delivered = started.elapsed();
    fleet.terminate();
    (
        total as f64 / enqueued.as_secs_f64(),
        total as f64 / delivered.as_secs_f64(),
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if std::env::var_os("TELEGATE_TEST_POSTGRES").is_none() {
        eprintln!("shared_store: set TELEGATE_TEST_POSTGRES (source .ci/postgres) to run it");
        return;
    }
    let rounds = env_number("BENCH_ROUNDS", 3);
    let jobs = env_number("BENCH_JOBS", 6000);
    let bots = env_number("BENCH_BOTS", 6);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut figures: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); SETUPS.len()];
    runtime.block_on(async {
        for round in 1..=rounds {
            for (setup, (enqueue, e2e)) in SETUPS.iter().zip(&mut figures) {
                let (rate, end_to_end) = run(*setup, bots, jobs).await;
                println!(
                    "round {round}: {:<24} enqueue {rate:>7.0} jobs/s, end to end {end_to_end:>7.0} jobs/s",
                    name(*setup)
                );
                enqueue.push(rate);
                e2e.push(end_to_end);
            }
        }
    });
    let medians: Vec<(f64, f64)> = figures
        .iter_mut()
        .map(|(enqueue, e2e)| (median(enqueue), median(e2e)))
        .collect();
    println!(
        "medians of {rounds} rounds, {jobs} jobs, {bots} bots, {} chats:",
        bots * CHATS_PER_BOT
    );
    let (sqlite_enqueue, sqlite_e2e) = medians[0];
    for (setup, (enqueue, e2e)) in SETUPS.iter().zip(&medians) {
        println!(
            "  {:<24} enqueue {enqueue:>7.0} jobs/s ({:.2}x SQLite), end to end {e2e:>7.0} jobs/s ({:.2}x SQLite)",
            name(*setup),
            enqueue / sqlite_enqueue,
            e2e / sqlite_e2e
        );
    }
}
