//! Many bots in one daemon, the sandbox out of process:
//!
//! - `BOTS` bots (`telegate sandbox --bots N --dc-only` as one process,
//!   release `telegate run` as another), Telegram's limits on, each bot
//!   offered its 30 msg/s over 40 chats for `SECONDS` s: the delivered rate
//!   against BOTS × 30 msg/s, the FLOOD_WAITs drawn, p50/p99 enqueue → sent;
//! - `IDLE_BOTS` idle bots signed in: start to all-ready and the daemon's RSS
//!   per bot over the one-bot figure.
//!
//! Run: `cargo bench --bench bots` (`BOTS=… IDLE_BOTS=… SECONDS=…` to
//! change the sizes).

#[path = "../tests/worker_support/mod.rs"]
mod worker_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::Method;
use bytes::Bytes;
use serde_json::{Value, json};
use telegate::api::client::Client;
use telegate::config::Secret;
use worker_support::{Worker, body};

const OPERATOR: &str = "bench-operator";
const CHATS_PER_BOT: usize = 40;
const RATE_PER_BOT: usize = 30;

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        limits_on(size("BOTS", 100), size("SECONDS", 10)).await;
        idle(size("IDLE_BOTS", 1000)).await;
    });
}

/// `telegate sandbox --bots N --dc-only` in `dir`, until its ready message.
fn sandbox(dir: &Path, bots: usize, limits: bool) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_telegate"));
    command
        .arg("--state-dir")
        .arg(dir)
        .args(["sandbox", "--dc-only", "--bots", &bots.to_string()])
        .env("TELEGATE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if !limits {
        command.arg("--no-limits");
    }
    let mut child = command.spawn().expect("sandbox");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // bot1's DC alone prints no key list.
    if bots > 1 {
        let mut seen = 0;
        for line in lines.by_ref() {
            let line = line.expect("sandbox output");
            if line.starts_with("  bot") {
                seen += 1;
                if seen == bots {
                    break;
                }
            }
        }
    } else {
        std::thread::sleep(Duration::from_secs(2));
    }
    // Keep reading so the pipe never fills.
    std::thread::spawn(move || for _ in lines {});
    let mut table: toml::Table = std::fs::read_to_string(dir.join("telegate.toml"))
        .expect("config")
        .parse()
        .expect("toml");
    table.insert(
        "api".into(),
        toml::Value::Table(toml::Table::from_iter([(
            "admin_keys".to_owned(),
            toml::Value::Array(vec![OPERATOR.into()]),
        )])),
    );
    std::fs::write(dir.join("telegate.toml"), toml::to_string(&table).unwrap()).unwrap();
    child
}

fn control_socket(dir: &Path, bot: usize) -> PathBuf {
    match bot {
        1 => dir.join("sandbox.sock"),
        _ => dir.join(format!("sandboxes/bot{bot}/sandbox.sock")),
    }
}

async fn request(client: &Client, method: Method, path: &str, body: String) -> Value {
    let mut connection = client.connect().await.expect("connect");
    let answer = connection
        .send(method, path, &[], Bytes::from(body))
        .await
        .expect("request");
    answer.json().unwrap_or(Value::Null)
}

/// `count` users of bot `bot`'s model who have written to it.
async fn users(dir: &Path, bot: usize, count: usize) -> Vec<i64> {
    let client = Client::new(control_socket(dir, bot));
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let user = request(
            &client,
            Method::POST,
            "/users",
            json!({"first_name": format!("u{i}")}).to_string(),
        )
        .await;
        let id = user["id"].as_i64().expect("user id");
        request(
            &client,
            Method::POST,
            &format!("/users/{id}/messages"),
            json!({"text": "/start"}).to_string(),
        )
        .await;
        ids.push(id);
    }
    ids
}

/// Waits until every bot is `ready`; returns how long it took.
async fn all_ready(client: &Client, bots: usize) -> Duration {
    let started = Instant::now();
    loop {
        let seen = request(client, Method::GET, "/api/v1/bots", String::new()).await;
        let ready = seen["bots"]
            .as_array()
            .map_or(0, |b| b.iter().filter(|b| b["state"] == "ready").count());
        if ready == bots {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{ready} of {bots} ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn limits_on(bots: usize, seconds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut dc = sandbox(dir.path(), bots, true);
    let mut people = Vec::with_capacity(bots);
    for bot in 1..=bots {
        people.push(users(dir.path(), bot, CHATS_PER_BOT).await);
    }
    let mut worker = Worker::start(dir.path()).await;
    let client =
        Client::new(dir.path().join("telegate.sock")).with_key(Some(Secret::new(OPERATOR)));
    let ready = all_ready(&client, bots).await;
    println!(
        "{bots} bots: start to all ready {:.2} s",
        ready.as_secs_f64()
    );

    // Each second, every bot is offered its 30 messages over its chats.
    let started = Instant::now();
    let mut ids = Vec::new();
    for second in 0..seconds {
        let tick = started + Duration::from_secs(second as u64);
        tokio::time::sleep_until(tick.into()).await;
        let mut batch = Vec::new();
        for (bot, users) in (1..).zip(&people) {
            let client = client.clone();
            let users = users.clone();
            batch.push(tokio::spawn(async move {
                let mut connection = client.connect().await.expect("connect");
                let mut ids = Vec::new();
                for i in 0..RATE_PER_BOT {
                    let user = users[(second * RATE_PER_BOT + i) % users.len()];
                    let path = format!("/api/v1/telegram/interactive?bot=bot{bot}");
                    let answer = connection
                        .send(
                            Method::POST,
                            &path,
                            &[],
                            Bytes::from(body(user, &format!("m{second}-{i}"))),
                        )
                        .await
                        .expect("enqueue");
                    ids.push(answer.json().unwrap()["job_id"].as_i64().expect("job id"));
                }
                ids
            }));
        }
        for task in batch {
            ids.extend(task.await.unwrap());
        }
    }
    let offered = ids.len();
    // Read every job back once all are settled.
    let deadline = Instant::now() + Duration::from_secs(seconds as u64 * 10 + 60);
    let jobs = loop {
        let mut jobs = Vec::with_capacity(offered);
        let mut after = 0;
        loop {
            let page = request(
                &client,
                Method::GET,
                &format!("/api/v1/jobs?after={after}&limit=1000"),
                String::new(),
            )
            .await;
            let page = page["jobs"].as_array().cloned().unwrap_or_default();
            let Some(last) = page.last() else { break };
            after = last["job_id"].as_i64().unwrap();
            jobs.extend(page);
        }
        let sent = jobs.iter().filter(|j| j["state"] == "sent").count();
        if sent >= offered || Instant::now() > deadline {
            break jobs;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let millis = |job: &Value, field: &str| -> i64 {
        let text = job[field].as_str().unwrap_or_default();
        chrono_millis(text)
    };
    let sent: Vec<&Value> = jobs.iter().filter(|j| j["state"] == "sent").collect();
    let mut latency: Vec<i64> = sent
        .iter()
        .map(|j| millis(j, "updated_at") - millis(j, "created_at"))
        .collect();
    latency.sort_unstable();
    let first = sent
        .iter()
        .map(|j| millis(j, "created_at"))
        .min()
        .unwrap_or(0);
    let last = sent
        .iter()
        .map(|j| millis(j, "updated_at"))
        .max()
        .unwrap_or(0);
    let span = (last - first).max(1) as f64 / 1e3;
    let rate = sent.len() as f64 / span;
    let target = (bots * RATE_PER_BOT) as f64;
    let mut floods = 0;
    for bot in 1..=bots {
        let stats = request(
            &Client::new(control_socket(dir.path(), bot)),
            Method::GET,
            "/stats",
            String::new(),
        )
        .await;
        floods += stats["flood_waits"].as_u64().unwrap_or(0)
            + stats["rpc_errors"]["FLOOD_WAIT"].as_u64().unwrap_or(0);
    }
    let pct = |p: f64| {
        latency
            .get(((latency.len() as f64 * p) as usize).min(latency.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{bots} bots, limits on: {} of {offered} sent, {rate:.0} msg/s = {:.3} of {target:.0} msg/s, {floods} FLOOD_WAITs; enqueue -> sent p50 {} ms, p99 {} ms",
        sent.len(),
        rate / target,
        pct(0.50),
        pct(0.99),
    );
    worker.terminate();
    let _ = dc.kill();
    let _ = dc.wait();
}

/// Milliseconds since the epoch of an RFC 3339 UTC time (`...Z`, ms).
fn chrono_millis(text: &str) -> i64 {
    // YYYY-MM-DDTHH:MM:SS.mmmZ
    let num = |range: std::ops::Range<usize>| -> i64 {
        text.get(range).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm, ss) = (num(11..13), num(14..16), num(17..19));
    let ms = text.get(20..23).and_then(|s| s.parse().ok()).unwrap_or(0);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms
}

async fn idle(bots: usize) {
    let rss = |bots: usize| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut dc = sandbox(dir.path(), bots, false);
        let started = Instant::now();
        let mut worker = Worker::start(dir.path()).await;
        let client =
            Client::new(dir.path().join("telegate.sock")).with_key(Some(Secret::new(OPERATOR)));
        let ready = started.elapsed().max(all_ready(&client, bots).await);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss = rss_kib(worker.child.id()).unwrap_or(0);
        worker.terminate();
        let _ = dc.kill();
        let _ = dc.wait();
        (rss, ready)
    };
    let (one, _) = rss(1).await;
    let (many, ready) = rss(bots).await;
    let per_bot = (many.saturating_sub(one)) as f64 / 1024.0 / (bots - 1).max(1) as f64;
    println!(
        "{bots} idle bots: start to all ready {:.1} s; RSS {:.1} MiB vs one bot {:.1} MiB = {per_bot:.3} MiB per extra bot",
        ready.as_secs_f64(),
        many as f64 / 1024.0,
        one as f64 / 1024.0,
    );
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
