//! Many bots in one daemon, the sandbox out of process (`telegate sandbox
//! --bots N --dc-only`: one Telegram model holding every bot) and the
//! daemon a release `telegate run`:
//!
//! - `BOTS` bots, Telegram's limits on, each offered its 30 msg/s over 40
//!   chats for `SECONDS` s: the delivered rate against BOTS × 30 msg/s
//!   (0.97 × that is the target), the FLOOD_WAITs drawn, p50/p99 enqueue →
//!   sent; the worker process's CPU (utime + stime from `/proc`) per
//!   delivered job;
//! - click → answer: one bot's clicker alone, then every bot's clicker at
//!   once (each bot answers its own clicks with the button's stored
//!   answer), p50/p99 of the time the sandbox measured per click;
//! - a raw grammers client (this binary again, as `raw-client`, signed in
//!   as one more bot of the same sandbox that the daemon does not run)
//!   invoking `messages.sendMessage` with the limits off: its own CPU per
//!   invoke, beside the worker's per job;
//! - `IDLE_BOTS` idle bots signed in: start to all-ready and the daemon's
//!   RSS per bot over a one-bot daemon's.
//!
//! Run: `cargo bench --bench bots` (`BOTS=… IDLE_BOTS=… SECONDS=… CLICKS=…
//! RAW_INVOKES=…` to change the sizes; `BOTS=0` runs only the idle part).

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
use worker_support::raw::{cpu_time, raw_sends};
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
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if args.get(1).map(String::as_str) == Some("raw-client") {
        let dir = PathBuf::from(&args[2]);
        let bot = &args[3];
        let invokes: usize = args[4].parse().expect("invoke count");
        runtime.block_on(raw_client(&dir, bot, invokes));
        return;
    }
    runtime.block_on(async {
        let bots = size("BOTS", 100);
        if bots > 0 {
            limits_on(bots, size("SECONDS", 10), size("CLICKS", 20)).await;
        }
        idle(size("IDLE_BOTS", 1000)).await;
    });
}

/// `telegate sandbox --bots N --dc-only` in `dir`, until it has written the
/// worker's files; `hold_back` bots are left out of the worker's config.
fn sandbox(dir: &Path, bots: usize, limits: bool, hold_back: usize) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_telegate"));
    command
        .arg("--state-dir")
        .arg(dir)
        .args(["sandbox", "--dc-only", "--web", "off", "--bots"])
        .arg(bots.to_string())
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
    if bots > 1 {
        // The ready message lists the bots (after writing their files).
        let mut seen = 0;
        for line in lines.by_ref() {
            if line.expect("sandbox output").starts_with("  bot") {
                seen += 1;
                if seen == bots {
                    break;
                }
            }
        }
    }
    // Keep reading so the pipe never fills.
    std::thread::spawn(move || for _ in lines {});
    let path = dir.join("telegate.toml");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut table = loop {
        let table = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok());
        let complete = table.as_ref().is_some_and(|t| {
            t.contains_key("bots")
                || t.get("telegram")
                    .is_some_and(|t| t.get("dc_addr").is_some())
        });
        if let (true, Some(table)) = (complete && dir.join("sandbox.sock").exists(), table) {
            break table;
        }
        assert!(
            Instant::now() < deadline,
            "the sandbox never wrote {path:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(toml::Value::Array(tables)) = table.get_mut("bots") {
        tables.truncate(tables.len() - hold_back);
    }
    table.insert(
        "api".into(),
        toml::Value::Table(toml::Table::from_iter([(
            "admin_keys".to_owned(),
            toml::Value::Array(vec![OPERATOR.into()]),
        )])),
    );
    std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
    child
}

async fn request(client: &Client, method: Method, path: &str, body: String) -> Value {
    let mut connection = client.connect().await.expect("connect");
    let answer = connection
        .send(method, path, &[], Bytes::from(body))
        .await
        .expect("request");
    answer.json().unwrap_or(Value::Null)
}

/// `count` users of the sandbox who have each written to bots 1..=`bots`.
async fn users(dir: &Path, bots: usize, count: usize) -> Vec<i64> {
    let client = Client::new(dir.join("sandbox.sock"));
    let mut connection = client.connect().await.expect("connect");
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let user = json!({"first_name": format!("u{i}")}).to_string();
        let user = connection
            .send(Method::POST, "/users", &[], Bytes::from(user))
            .await
            .expect("user");
        let id = user.json().unwrap()["id"].as_i64().expect("user id");
        for bot in 1..=bots {
            let path = format!("/users/{id}/messages?bot=bot{bot}");
            let start = Bytes::from(json!({"text": "/start"}).to_string());
            let sent = connection
                .send(Method::POST, &path, &[], start)
                .await
                .expect("start");
            assert_eq!(sent.status, 200, "{:?}", sent.body);
        }
        ids.push(id);
    }
    ids
}

/// Waits until every bot is `ready`.
async fn all_ready(client: &Client, bots: usize) {
    let started = Instant::now();
    loop {
        let seen = request(client, Method::GET, "/api/v1/bots", String::new()).await;
        let ready = seen["bots"]
            .as_array()
            .map_or(0, |b| b.iter().filter(|b| b["state"] == "ready").count());
        if ready == bots {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{ready} of {bots} ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// utime + stime of process `pid` so far.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    let at = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).copied().unwrap_or(0)
}

fn millis(job: &Value, field: &str) -> i64 {
    job[field]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(0, |t| t.as_millisecond())
}

async fn limits_on(bots: usize, seconds: usize, clicks: usize) {
    let dir = tempfile::tempdir().unwrap();
    // One more bot for the raw client, not run by the daemon.
    let mut dc = sandbox(dir.path(), bots + 1, true, 1);
    let control = Client::new(dir.path().join("sandbox.sock"));
    let people = users(dir.path(), bots + 1, CHATS_PER_BOT).await;
    let mut worker = Worker::start(dir.path()).await;
    let pid = worker.child.id();
    let client =
        Client::new(dir.path().join("telegate.sock")).with_key(Some(Secret::new(OPERATOR)));
    all_ready(&client, bots).await;

    // Each second, every bot is offered its 30 messages over its chats.
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let mut ids = Vec::new();
    for second in 0..seconds {
        let tick = started + Duration::from_secs(second as u64);
        tokio::time::sleep_until(tick.into()).await;
        let mut batch = Vec::new();
        for bot in 1..=bots {
            let client = client.clone();
            let people = people.clone();
            batch.push(tokio::spawn(async move {
                let mut connection = client.connect().await.expect("connect");
                let mut ids = Vec::new();
                for i in 0..RATE_PER_BOT {
                    let user = people[(second * RATE_PER_BOT + i) % people.len()];
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
    let offering = started.elapsed();
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
        let settled = jobs
            .iter()
            .filter(|j| j["state"] == "sent" || j["state"] == "failed")
            .count();
        if settled >= offered || Instant::now() > deadline {
            break jobs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let worker_cpu = cpu_time(pid) - cpu_before;
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
    let stats = request(&control, Method::GET, "/stats", String::new()).await;
    let floods = stats["flood_waits"].as_u64().unwrap_or(0)
        + stats["rpc_errors"]["FLOOD_WAIT"].as_u64().unwrap_or(0);
    let failed = jobs.len() - sent.len();
    println!(
        "{bots} bots, limits on, {seconds} s: offered {offered} in {:.1} s ({:.0}/s); {} sent ({failed} not), {rate:.0} msg/s = {:.3} of {target:.0} msg/s (target 0.97), {floods} FLOOD_WAITs; enqueue -> sent p50 {} ms, p99 {} ms",
        offering.as_secs_f64(),
        offered as f64 / offering.as_secs_f64(),
        sent.len(),
        rate / target,
        percentile(&latency, 0.50),
        percentile(&latency, 0.99),
    );
    let worker_us = worker_cpu.as_secs_f64() * 1e6 / sent.len().max(1) as f64;

    // Clicks: one bot's clicker alone, then every bot's at once.
    let mut buttons = Vec::with_capacity(bots);
    for bot in 1..=bots {
        let message = json!({
            "destination_user_id": people[0].to_string(),
            "telegram_interactive_message": {"type": "reply_buttons", "text": "ok?",
                "reply_markup": {"inline_keyboard": [[
                    {"text": "Yes", "callback_data": "yes", "answer": {"text": "Noted"}}]]}}
        });
        let path = format!("/api/v1/telegram/interactive?bot=bot{bot}&wait=60");
        let sent = request(&client, Method::POST, &path, message.to_string()).await;
        let id: i64 = sent["channel_message_id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("bot{bot}'s buttons: {sent}"));
        buttons.push(id);
    }
    let clicking = |messages: Vec<i64>, clicks: usize| {
        let (control, user) = (control.clone(), people[0]);
        async move {
            let tasks: Vec<_> = messages
                .into_iter()
                .map(|message| {
                    let control = control.clone();
                    tokio::spawn(async move {
                        let mut connection = control.connect().await.expect("connect");
                        let mut times = Vec::with_capacity(clicks);
                        for _ in 0..clicks {
                            let click = json!({"message_id": message, "data": "yes"});
                            let started = Instant::now();
                            let answer = connection
                                .send(
                                    Method::POST,
                                    &format!("/users/{user}/click"),
                                    &[],
                                    Bytes::from(click.to_string()),
                                )
                                .await
                                .expect("click");
                            let elapsed = started.elapsed();
                            let answer = answer.json().unwrap();
                            assert_eq!(answer["answer"]["message"], "Noted", "{answer}");
                            times.push(i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX));
                        }
                        times
                    })
                })
                .collect();
            let mut times = Vec::new();
            for task in tasks {
                times.extend(task.await.unwrap());
            }
            times.sort_unstable();
            times
        }
    };
    // One clicker, as many clicks as all of them make together.
    let alone = clicking(vec![buttons[0]; 1], clicks * bots).await;
    let together = clicking(buttons.clone(), clicks).await;
    let ms = |us: i64| us as f64 / 1000.0;
    let (p99_alone, p99_together) = (percentile(&alone, 0.99), percentile(&together, 0.99));
    println!(
        "click -> answer seen by the clicker: 1 bot clicked alone ({} clicks one after another) p50 {:.2} ms, p99 {:.2} ms; all {bots} bots clicked at once ({} clicks, one clicker a bot) p50 {:.2} ms, p99 {:.2} ms ({:.1}x the one-bot p99)",
        alone.len(),
        ms(percentile(&alone, 0.50)),
        ms(p99_alone),
        together.len(),
        ms(percentile(&together, 0.50)),
        ms(p99_together),
        p99_together as f64 / p99_alone.max(1) as f64,
    );

    // The raw client: the held-back bot, limits off, same sandbox.
    request(
        &control,
        Method::POST,
        "/faults",
        json!({"limits": false}).to_string(),
    )
    .await;
    let invokes = size("RAW_INVOKES", 5000);
    let output = Command::new(std::env::current_exe().expect("this binary"))
        .arg("raw-client")
        .arg(dir.path())
        .arg(format!("bot{}", bots + 1))
        .arg(invokes.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("raw client");
    assert!(output.status.success(), "raw client: {}", output.status);
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().unwrap());
    let (raw_us, raw_secs) = (fields.next().unwrap(), fields.next().unwrap());
    println!(
        "CPU: worker {worker_us:.0} µs per delivered job ({:.2} s over {} jobs, {bots} bots, limits on); raw grammers client {raw_us:.0} µs per sendMessage ({invokes} invokes at {:.0}/s, limits off) = {:.2}x (target <= 2x)",
        worker_cpu.as_secs_f64(),
        sent.len(),
        invokes as f64 / raw_secs,
        worker_us / raw_us.max(1.0),
    );
    worker.terminate();
    let _ = dc.kill();
    let _ = dc.wait();
}

/// The raw client: `sendMessage` after `sendMessage` in each of the users'
/// chats as bot `bot`, all chats at once; prints its own CPU (µs per
/// invoke) and wall time (s) for `invokes`.
async fn raw_client(dir: &Path, bot: &str, invokes: usize) {
    let run = raw_sends(dir, bot, invokes).await;
    let done = run.sent as f64;
    println!(
        "{} {}",
        run.cpu.as_secs_f64() * 1e6 / done,
        run.elapsed.as_secs_f64() * invokes as f64 / done
    );
}

async fn idle(bots: usize) {
    let rss = |bots: usize| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut dc = sandbox(dir.path(), bots, false, 0);
        let started = Instant::now();
        let mut worker = Worker::start(dir.path()).await;
        let client =
            Client::new(dir.path().join("telegate.sock")).with_key(Some(Secret::new(OPERATOR)));
        all_ready(&client, bots).await;
        let ready = started.elapsed();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss = rss_kib(worker.child.id()).unwrap_or(0);
        worker.terminate();
        let _ = dc.kill();
        let _ = dc.wait();
        (rss, ready)
    };
    let (one, one_ready) = rss(1).await;
    let (many, ready) = rss(bots).await;
    let per_bot = (many.saturating_sub(one)) as f64 / 1024.0 / (bots - 1).max(1) as f64;
    println!(
        "{bots} idle bots: start to all ready {:.1} s (one bot {:.2} s); RSS {:.1} MiB vs one bot {:.1} MiB = {per_bot:.3} MiB per extra bot (target <= 0.25)",
        ready.as_secs_f64(),
        one_ready.as_secs_f64(),
        many as f64 / 1024.0,
        one as f64 / 1024.0,
    );
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
