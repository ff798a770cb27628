//! The worker's figures, each against an in-process sandbox with the release
//! `telegate run` as a child process (as tests/worker.rs drives it):
//!
//! - start to ready (spawn until the "ready" log line: store, session,
//!   connection, sign-in) and idle RSS;
//! - limits on: the achieved rate over 600 chats as a fraction of 30 msg/s,
//!   and the FLOOD_WAITs drawn;
//! - limits off: jobs/s from the socket through the queue to MTProto, side
//!   by side (same sandbox, same run) with a raw grammers
//!   `invoke(messages.sendMessage)` loop under the same rule of one message
//!   in flight per chat.
//!
//! Run: `cargo bench --bench worker`.

#[path = "../tests/worker_support/mod.rs"]
mod worker_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use telegate::chat::ChatId;
use telegate::interactive::InteractiveRequest;
use telegate::outgoing::text_message;
use telegate::queue::{JobKind, NewJob, Queue};
use telegate::sandbox::telegram::AccountId;
use telegate::session::SessionStore;
use telegate::telegram::Telegram;
use worker_support::{Pace, Worker, World};

const ROUNDS: usize = 3;
const LIMITED_CHATS: usize = 600;
const BOT_RATE: f64 = 30.0;
const UNLIMITED_CHATS: usize = 100;
const JOBS_PER_ROUND: usize = 3000;
const RAW_WINDOW: Duration = Duration::from_secs(2);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        startup_and_idle().await;
        limits_on().await;
        limits_off().await;
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

async fn limits_off() {
    let mut world = World::start(Pace::Unlimited).await;
    let users = world.users(UNLIMITED_CHATS);
    let mut delivered = 0u64;
    let mut telegate_rates = Vec::new();
    for round in 0..ROUNDS {
        let jobs: Vec<(AccountId, String)> = (0..JOBS_PER_ROUND)
            .map(|i| (users[i % users.len()], format!("round {round} job {i}")))
            .collect();
        let started = Instant::now();
        world.enqueue_all(&jobs).await;
        delivered += JOBS_PER_ROUND as u64;
        world.bot_messages(delivered).await;
        telegate_rates.push(JOBS_PER_ROUND as f64 / started.elapsed().as_secs_f64());
    }

    // Queue -> MTProto alone: jobs stored while the worker is down, then
    // timed from its start until the last is delivered.
    let mut sender_rates = Vec::new();
    for round in 0..ROUNDS {
        let status = world.worker().terminate();
        assert!(status.success());
        world.worker = None;
        let queue = Queue::open(&world.dir.path().join("telegate.db")).expect("queue");
        let stored = (0..JOBS_PER_ROUND).map(|i| {
            let user = users[i % users.len()];
            let body = worker_support::body(user, &format!("stored {round} {i}"));
            let request = InteractiveRequest::from_json(body.as_bytes()).expect("valid");
            let payload = serde_json::to_string(&request).expect("payload");
            let queue = queue.clone();
            async move {
                let job = NewJob::new("bench", ChatId::user(user), JobKind::Interactive, payload);
                queue.enqueue(job).await.expect("enqueue")
            }
        });
        futures_join_all(stored).await;
        queue.close().await;
        let started = Instant::now();
        world.worker = Some(Worker::start(world.dir.path()).await);
        delivered += JOBS_PER_ROUND as u64;
        world.bot_messages(delivered).await;
        sender_rates.push(JOBS_PER_ROUND as f64 / started.elapsed().as_secs_f64());
    }

    // The raw loop uses the worker's session: stop the worker first (one
    // connection per session).
    let status = world.worker().terminate();
    assert!(status.success());
    world.worker = None;
    let session =
        SessionStore::open(&world.dir.path().join("sessions/bot.session")).expect("session");
    let telegram = Arc::new(Telegram::start(Arc::new(session), 1));
    let mut raw_rates = Vec::new();
    for _ in 0..ROUNDS {
        raw_rates.push(raw_round(&telegram, &users).await);
    }
    telegram.shutdown().await;

    let telegate = median(&mut telegate_rates);
    let raw = median(&mut raw_rates);
    println!(
        "limits off, {UNLIMITED_CHATS} chats: socket -> queue -> MTProto {} ({JOBS_PER_ROUND} jobs a round, enqueue start to last delivery)",
        median_of(&mut telegate_rates, "jobs/s")
    );
    let sender = median(&mut sender_rates);
    println!(
        "limits off, {UNLIMITED_CHATS} chats: queue -> MTProto alone {} (jobs stored beforehand; worker start to last delivery)",
        median_of(&mut sender_rates, "jobs/s")
    );
    println!(
        "limits off, {UNLIMITED_CHATS} chats: raw grammers invoke(sendMessage) loop {} (one in flight per chat, {RAW_WINDOW:?} windows)",
        median_of(&mut raw_rates, "msg/s")
    );
    println!(
        "limits off: telegate / raw = {:.2} (socket -> MTProto), {:.2} (queue -> MTProto)",
        telegate / raw,
        sender / raw
    );
    world.stop().await;
}

/// One window of the raw loop: per chat, one `sendMessage` after another.
async fn raw_round(telegram: &Arc<Telegram>, users: &[AccountId]) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = users
        .iter()
        .map(|&user| {
            let telegram = Arc::clone(telegram);
            tokio::spawn(async move {
                let peer = ChatId::user(user).input_peer(0);
                let mut sent = 0u64;
                while started.elapsed() < RAW_WINDOW {
                    let request = text_message(peer.clone(), "raw".into(), None, rand::random());
                    telegram.invoke(&request).await.expect("raw send");
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut sent = 0;
    for task in tasks {
        sent += task.await.expect("raw task");
    }
    sent as f64 / started.elapsed().as_secs_f64()
}

/// Runs the futures concurrently on the runtime and waits for them all.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    for task in tasks {
        task.await.expect("task");
    }
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
