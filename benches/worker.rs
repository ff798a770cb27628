//! The worker's figures, each against an in-process sandbox with the release
//! `telegate run` as a child process (as tests/worker.rs drives it):
//!
//! - start to ready (spawn until the "ready" log line: store, session,
//!   connection, sign-in) and idle RSS;
//! - limits on: the achieved rate over 600 chats as a fraction of 30 msg/s,
//!   and the FLOOD_WAITs drawn.
//!
//! The worker's cost with limits off, beside a raw grammers client, is
//! `benches/cost.rs`: there the DC runs in a process of its own, so it does
//! not share this process with the benchmark.
//!
//! Run: `cargo bench --bench worker`.

#[path = "../tests/worker_support/mod.rs"]
mod worker_support;

use std::time::{Duration, Instant};

use telegate::sandbox::telegram::AccountId;
use worker_support::{Pace, Worker, World};

const ROUNDS: usize = 3;
const LIMITED_CHATS: usize = 600;
const BOT_RATE: f64 = 30.0;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        startup_and_idle().await;
        limits_on().await;
    });
}

async fn startup_and_idle() {
    let started = Instant::now();
    let mut world = World::start(Pace::Limited).await;
    let first = started.elapsed();
    let mut restarts = Vec::new();
    for _ in 0..ROUNDS + 2 {
        world.worker().terminate();
        let started = Instant::now();
        world.worker = Some(Worker::start(world.dir.path()).await);
        restarts.push(started.elapsed().as_secs_f64() * 1e3);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib(world.worker().child.id());
    println!(
        "start to ready: first start (sign-in) {:.0} ms",
        first.as_secs_f64() * 1e3
    );
    println!("start to ready: restart {}", median_of(&mut restarts, "ms"));
    println!(
        "idle RSS: {} KiB",
        rss.map_or("unknown".into(), |r| r.to_string())
    );
    world.stop().await;
}

async fn limits_on() {
    let world = World::start(Pace::Limited).await;
    let users = world.users(LIMITED_CHATS);
    let jobs: Vec<(AccountId, String)> = users.iter().map(|&u| (u, format!("hello {u}"))).collect();
    let telegram = world.sandbox.telegram().clone();
    let enqueue = world.enqueue_all(&jobs);
    // Time from the 10th message to the last: the start-up burst is left out.
    let skip = 10;
    let measure = async {
        let mut first: Option<Instant> = None;
        loop {
            let sent = telegram.stats().messages_from_bot;
            if first.is_none() && sent >= skip {
                first = Some(Instant::now());
            }
            if sent >= LIMITED_CHATS as u64 {
                break first.map(|f| f.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let (_, elapsed) = tokio::join!(enqueue, measure);
    let elapsed = elapsed.expect("timed").as_secs_f64();
    let rate = (LIMITED_CHATS as u64 - skip) as f64 / elapsed;
    let stats = telegram.stats();
    let floods = stats.flood_waits + stats.rpc_errors.get("FLOOD_WAIT").copied().unwrap_or(0);
    world.assert_delivered_exactly(&jobs);
    println!(
        "limits on, {LIMITED_CHATS} chats: {rate:.2} msg/s = {:.3} of {BOT_RATE}/s; FLOOD_WAITs drawn: {floods}",
        rate / BOT_RATE
    );
    world.stop().await;
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_of(values: &mut [f64], unit: &str) -> String {
    let m = median(values);
    let shown: Vec<String> = values.iter().map(|v| format!("{v:.0}")).collect();
    format!("median {m:.0} {unit} (sorted: {})", shown.join(", "))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
