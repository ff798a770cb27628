//! The worker's CPU per job, every piece in its own process: the sandbox DC
//! (`telegate sandbox --dc-only --no-limits`), the worker (`telegate run`,
//! limits off), 8 local clients in this process posting
//! `remove_reply_keyboard` jobs to 100 chats over the socket, and a raw
//! grammers client (this binary again, as `raw-client`) invoking
//! `messages.sendMessage` against the same DC with one message in flight
//! per chat. The worker's CPU is read from `/proc/PID/stat` (utime+stime)
//! around each phase of a round:
//!
//! - enqueue only: jobs posted while the DC is down (the worker takes jobs
//!   while it cannot reach Telegram; its sender has not started);
//! - send only: the DC started, those jobs drained;
//! - end to end: jobs posted while everything runs, until the last is sent.
//!
//! After the phases, this process measures the store's floor on a copy of
//! the worker's schema: the least CPU per job SQLite takes for the writes
//! the durability contract needs, with nothing else (see [`Floors`]), so
//! the worker's figures can be read against what no worker on this store
//! can go below.
//!
//! Each round uses a fresh state directory. With `TELEGATE_COST_BASELINE`
//! naming another `telegate` binary (e.g. main's release build), each round
//! also runs the same phases with it as the worker (the DC and the raw
//! client stay this build's), so the two are compared on the same machine
//! in the same run.
//!
//! Run: `cargo bench --bench cost` (`TELEGATE_COST_ROUNDS`, default 3;
//! `TELEGATE_COST_JOBS` per phase, default 3000; `TELEGATE_COST_LOG`, the
//! worker's log filter, e.g. `info,telegate::queue::writer=debug` to print
//! how many commits its store made for how many changes). With `TELEGATE_COST_PERF`
//! naming a directory, the first round records the worker's phases with
//! `perf record` there (`enqueue.data`, `send.data`, `e2e.data`). With
//! `TELEGATE_COST_CALLGRIND` naming a directory instead, the first round's
//! worker runs under `valgrind --tool=callgrind` and each phase is dumped
//! there on its own (`worker.PID.N` with the phase's name in its header:
//! `callgrind_annotate` it); instruction counts, unlike CPU time, do not
//! move with the machine's load.

#[path = "../tests/worker_support/mod.rs"]
mod worker_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use telegate::api::client::Client;
use telegate::queue::DEFAULT_BOT;
use telegate::sandbox::telegram::AccountId;
use worker_support::raw::{cpu_time, raw_sends};
use worker_support::{CONNECTIONS, PATIENCE, post_all};

const CHATS: usize = 100;
const RAW_INVOKES: usize = 20_000;
const UNLIMITED: &str = "[limits]\nbot_per_second = 1000000\nprivate_chat_per_second = 1000000\n\
                         group_per_minute = 1000000\n";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if args.get(1).map(String::as_str) == Some("raw-client") {
        let dir = PathBuf::from(&args[2]);
        let invokes: usize = args[3].parse().expect("invoke count");
        runtime.block_on(raw_client(&dir, invokes));
        return;
    }
    let rounds = env_number("TELEGATE_COST_ROUNDS", 3);
    let jobs = env_number("TELEGATE_COST_JOBS", 3000);
    let mut workers = vec![("this build", PathBuf::from(env!("CARGO_BIN_EXE_telegate")))];
    if let Ok(baseline) = std::env::var("TELEGATE_COST_BASELINE") {
        workers.push(("baseline", PathBuf::from(baseline)));
    }
    println!(
        "cost: {rounds} rounds, {jobs} jobs a phase, {CHATS} chats, {CONNECTIONS} clients, \
         {RAW_INVOKES} raw invokes a round"
    );
    let mut figures: Vec<Vec<Round>> = vec![Vec::new(); workers.len()];
    let mut raw = Vec::new();
    let profiler = Profiler::from_env();
    runtime.block_on(async {
        for round in 0..rounds {
            for (index, (name, binary)) in workers.iter().enumerate() {
                let profiler = profiler.as_ref().filter(|_| round == 0 && index == 0);
                let measured = worker_round(binary, jobs, index == 0, profiler).await;
                println!("round {round} {name}: {measured}");
                if let Some(invoke) = measured.raw.clone() {
                    raw.push(invoke);
                }
                figures[index].push(measured);
            }
        }
    });
    let raw_cpu = median(raw.iter().map(|r| r.cpu_us).collect());
    let raw_rate = median(raw.iter().map(|r| r.rate).collect());
    println!();
    println!("medians of {rounds} rounds:");
    println!(
        "| worker | enqueue only µs/job | send only µs/job | end to end µs/job | end to end jobs/s | enqueue jobs/s |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut summaries = Vec::new();
    for ((name, _), rounds) in workers.iter().zip(&figures) {
        let summary = Summary::of(rounds);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} |",
            summary.enqueue_cpu,
            summary.send_cpu,
            summary.e2e_cpu,
            summary.e2e_rate,
            summary.enqueue_rate
        );
        summaries.push(summary);
    }
    println!("| raw grammers client | | {raw_cpu:.1} per invoke | | {raw_rate:.0} invokes/s | |");
    let floors: Vec<&Floors> = figures[0].iter().filter_map(|r| r.floor.as_ref()).collect();
    let floor = |f: fn(&Floors) -> f64| median(floors.iter().map(|&x| f(x)).collect());
    let (enqueue_floor, send_floor) = (floor(|f| f.durable.enqueue), floor(|f| f.durable.send));
    println!(
        "| store floor (no reads; {CONNECTIONS} enqueues, {CHATS} claims or sends a commit) | {enqueue_floor:.1} | {send_floor:.1} | {:.1} | | |",
        enqueue_floor + send_floor
    );
    println!(
        "| store floor, {CHATS} enqueues a commit | {:.1} | | | | |",
        floor(|f| f.durable.enqueue_wide)
    );
    println!(
        "| store floor, statements alone (synchronous=OFF) | {:.1} ({:.1} at {CHATS} a commit) | {:.1} | | | |",
        floor(|f| f.statements.enqueue),
        floor(|f| f.statements.enqueue_wide),
        floor(|f| f.statements.send)
    );
    println!();
    println!(
        "least a durable worker can spend sending a job: raw invoke + store floor = {:.1} µs = {:.2}x raw \
         (statements alone: {:.2}x)",
        raw_cpu + send_floor,
        (raw_cpu + send_floor) / raw_cpu,
        (raw_cpu + floor(|f| f.statements.send)) / raw_cpu
    );
    let this = &summaries[0];
    println!();
    println!(
        "this build: send only / raw = {:.2}x, end to end / raw = {:.2}x (target ≤ 2x); \
         enqueue only {:.1} µs/job (target ≤ 25)",
        this.send_cpu / raw_cpu,
        this.e2e_cpu / raw_cpu,
        this.enqueue_cpu
    );
    if let Some(baseline) = summaries.get(1) {
        println!(
            "this build / baseline: end to end jobs/s {:.1}x (target ≥ 10x), CPU per job: \
             enqueue {:.2}x, send {:.2}x, end to end {:.2}x",
            this.e2e_rate / baseline.e2e_rate,
            this.enqueue_cpu / baseline.enqueue_cpu,
            this.send_cpu / baseline.send_cpu,
            this.e2e_cpu / baseline.e2e_cpu
        );
    }
}

/// One round's figures for one worker binary.
#[derive(Clone)]
struct Round {
    enqueue_cpu: f64,
    enqueue_rate: f64,
    send_cpu: f64,
    send_rate: f64,
    e2e_cpu: f64,
    e2e_rate: f64,
    raw: Option<RawFigures>,
    floor: Option<Floors>,
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "enqueue {:.1} µs/job ({:.0}/s), send {:.1} µs/job ({:.0}/s), end to end {:.1} µs/job ({:.0}/s)",
            self.enqueue_cpu,
            self.enqueue_rate,
            self.send_cpu,
            self.send_rate,
            self.e2e_cpu,
            self.e2e_rate
        )?;
        if let Some(raw) = &self.raw {
            write!(f, "; raw {:.1} µs/invoke ({:.0}/s)", raw.cpu_us, raw.rate)?;
        }
        if let Some(floor) = &self.floor {
            write!(
                f,
                "; store floor enqueue {:.1} ({:.1} at {CHATS} a commit) / send {:.1} µs/job \
                 (statements alone {:.1} / {:.1})",
                floor.durable.enqueue,
                floor.durable.enqueue_wide,
                floor.durable.send,
                floor.statements.enqueue,
                floor.statements.send
            )?;
        }
        Ok(())
    }
}

struct Summary {
    enqueue_cpu: f64,
    enqueue_rate: f64,
    send_cpu: f64,
    e2e_cpu: f64,
    e2e_rate: f64,
}

impl Summary {
    fn of(rounds: &[Round]) -> Summary {
        let of = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
        Summary {
            enqueue_cpu: of(|r| r.enqueue_cpu),
            enqueue_rate: of(|r| r.enqueue_rate),
            send_cpu: of(|r| r.send_cpu),
            e2e_cpu: of(|r| r.e2e_cpu),
            e2e_rate: of(|r| r.e2e_rate),
        }
    }
}

#[derive(Clone)]
struct RawFigures {
    cpu_us: f64,
    rate: f64,
}

/// The three phases with `binary` as the worker, in a fresh state
/// directory; then (with `raw`) the raw client against the same DC.
async fn worker_round(binary: &Path, jobs: usize, raw: bool, profiler: Option<&Profiler>) -> Round {
    let dir = tempfile::tempdir().expect("state dir");
    let dir = dir.path();
    fs::write(dir.join("telegate.toml"), UNLIMITED).expect("config");
    let port = free_port();
    let mut dc = Process::dc(dir, port).await;
    let control = Client::new(dir.join("sandbox.sock"));
    let users = create_users(&control).await;
    dc.stop();

    let mut worker = Process::worker(binary, dir, profiler).await;
    let socket = Client::new(dir.join("telegate.sock"));
    let batch = |tag: &str| -> Vec<(AccountId, String)> {
        (0..jobs)
            .map(|i| (users[i % users.len()], format!("{tag} {i}")))
            .collect()
    };

    // Enqueue only: the DC is down, so nothing is sent.
    let recording = worker.record(profiler, "enqueue");
    let cpu = worker.cpu();
    let started = Instant::now();
    post_all(&socket, &batch("queued")).await;
    let enqueue_time = started.elapsed();
    let enqueue_cpu = worker.cpu() - cpu;
    drop(recording);

    // Send only: the DC comes up, the worker signs in and drains.
    let recording = worker.record(profiler, "send");
    let cpu = worker.cpu();
    let mut dc = Process::dc(dir, port).await;
    worker.wait_for_log("ready: connected").await;
    let started = Instant::now();
    delivered(&control, jobs as u64).await;
    let send_time = started.elapsed();
    let send_cpu = worker.cpu() - cpu;
    drop(recording);

    // End to end.
    let recording = worker.record(profiler, "e2e");
    let cpu = worker.cpu();
    let started = Instant::now();
    post_all(&socket, &batch("live")).await;
    delivered(&control, 2 * jobs as u64).await;
    let e2e_time = started.elapsed();
    let e2e_cpu = worker.cpu() - cpu;
    drop(recording);
    let failed = socket
        .get("/api/v1/jobs?state=failed&limit=1")
        .await
        .expect("jobs")
        .json()
        .expect("json");
    assert_eq!(
        failed["jobs"],
        serde_json::json!([]),
        "failed jobs: {failed}"
    );
    worker.stop();
    // With TELEGATE_COST_LOG=telegate::queue::writer=debug: commits and ops.
    for line in worker
        .log()
        .lines()
        .filter(|l| l.contains("store writer closing"))
    {
        println!("  worker: {line}");
    }

    let floor = raw.then(|| Floors::measure(dir, jobs));
    let raw = raw.then(|| {
        let output = Command::new(std::env::current_exe().expect("this binary"))
            .arg("raw-client")
            .arg(dir)
            .arg(RAW_INVOKES.to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("raw client");
        assert!(output.status.success(), "raw client: {}", output.status);
        let text = String::from_utf8_lossy(&output.stdout);
        let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().unwrap());
        let (cpu_us, secs) = (fields.next().unwrap(), fields.next().unwrap());
        RawFigures {
            cpu_us: cpu_us / RAW_INVOKES as f64,
            rate: RAW_INVOKES as f64 / secs,
        }
    });
    dc.stop();
    let per_job = |cpu: Duration| cpu.as_secs_f64() * 1e6 / jobs as f64;
    let rate = |time: Duration| jobs as f64 / time.as_secs_f64();
    Round {
        enqueue_cpu: per_job(enqueue_cpu),
        enqueue_rate: rate(enqueue_time),
        send_cpu: per_job(send_cpu),
        send_rate: rate(send_time),
        e2e_cpu: per_job(e2e_cpu),
        e2e_rate: rate(e2e_time),
        raw,
        floor,
    }
}

/// [`CHATS`] sandbox users who have each written `/start` to the bot.
async fn create_users(control: &Client) -> Vec<AccountId> {
    let mut users = Vec::with_capacity(CHATS);
    for i in 0..CHATS {
        let body = serde_json::json!({ "first_name": format!("User {i}") }).to_string();
        let created = control.post("/users", &[], body).await.expect("user");
        assert_eq!(created.status, 201, "{:?}", created.body);
        let id = created.json().expect("json")["id"].as_i64().expect("id");
        let start = serde_json::json!({ "text": "/start" }).to_string();
        let sent = control
            .post(&format!("/users/{id}/messages"), &[], start)
            .await
            .expect("/start");
        assert!(sent.status.is_success(), "{:?}", sent.body);
        users.push(id);
    }
    users
}

/// Waits until the bot has posted `count` messages.
async fn delivered(control: &Client, count: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = control.get("/stats").await.expect("stats");
        let sent = stats.json().expect("json")["messages_from_bot"]
            .as_u64()
            .expect("count");
        if sent >= count {
            assert_eq!(sent, count, "the bot posted more than it was asked to");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the bot posted {sent} of {count}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A child process of the benchmark, with its log in the state directory.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    async fn dc(dir: &Path, port: u16) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_telegate"));
        command
            .arg("--state-dir")
            .arg(dir)
            .args([
                "sandbox",
                "--dc-only",
                "--no-limits",
                "--web",
                "off",
                "--port",
            ])
            .arg(port.to_string());
        let process = Process::spawn(command, dir, "dc");
        process.wait_for_log("sandbox ready").await;
        process
    }

    /// `telegate run` from `binary` (under callgrind if that is the
    /// profiler), once it serves its socket.
    async fn worker(binary: &Path, dir: &Path, profiler: Option<&Profiler>) -> Process {
        let mut command = match profiler {
            Some(Profiler::Callgrind(out)) => {
                let mut command = Command::new("valgrind");
                command
                    .args(["--tool=callgrind", "--quiet"])
                    .arg(format!("--callgrind-out-file={}/worker.%p", out.display()))
                    .arg(binary);
                command
            }
            _ => Command::new(binary),
        };
        command.arg("--state-dir").arg(dir).arg("run");
        let process = Process::spawn(command, dir, "worker");
        process.wait_for_log("serving the socket API").await;
        process
    }

    fn spawn(mut command: Command, dir: &Path, name: &str) -> Process {
        let log = dir.join(format!("{name}-{}.log", rand::random::<u32>()));
        let child = command
            .env(
                "TELEGATE_LOG",
                std::env::var("TELEGATE_COST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("TELEGATE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn telegate");
        Process { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_for_log(&self, line: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.log().contains(line) {
            assert!(
                Instant::now() < deadline,
                "no `{line}` in the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A profile of this process from now until dropped: `perf record`
    /// into `DIR/NAME.data`, or callgrind's counters zeroed now and dumped
    /// on drop (nothing without a profiler).
    fn record(&self, profiler: Option<&Profiler>, name: &str) -> Option<Recording> {
        let pid = self.child.id().to_string();
        match profiler? {
            Profiler::Perf(dir) => {
                let child = Command::new("perf")
                    .args([
                        "record",
                        "-q",
                        "-e",
                        "cpu-clock",
                        "-F",
                        "1000",
                        "--call-graph",
                        "dwarf,16384",
                        "-p",
                    ])
                    .arg(&pid)
                    .arg("-o")
                    .arg(dir.join(format!("{name}.data")))
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("perf");
                std::thread::sleep(Duration::from_millis(300));
                Some(Recording::Perf(child))
            }
            Profiler::Callgrind(_) => {
                callgrind_control(&["--zero", &pid]);
                Some(Recording::Callgrind {
                    pid,
                    name: name.to_owned(),
                })
            }
        }
    }

    /// utime + stime so far.
    fn cpu(&self) -> Duration {
        cpu_time(self.child.id())
    }

    /// SIGTERM, and a clean exit.
    fn stop(&mut self) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "exited with {status}:\n{}", self.log());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the first round's worker is profiled, from the environment.
enum Profiler {
    /// `TELEGATE_COST_PERF`: `perf record` into this directory.
    Perf(PathBuf),
    /// `TELEGATE_COST_CALLGRIND`: the worker under callgrind, its output
    /// in this directory.
    Callgrind(PathBuf),
}

impl Profiler {
    fn from_env() -> Option<Profiler> {
        let dir = |name| std::env::var_os(name).map(PathBuf::from);
        dir("TELEGATE_COST_CALLGRIND")
            .map(Profiler::Callgrind)
            .or_else(|| dir("TELEGATE_COST_PERF").map(Profiler::Perf))
    }
}

/// A phase being profiled: `perf record` running (stopped with SIGINT, so
/// it writes its file) or callgrind counting (dumped), on drop.
enum Recording {
    Perf(Child),
    Callgrind { pid: String, name: String },
}

impl Drop for Recording {
    fn drop(&mut self) {
        match self {
            Recording::Perf(child) => {
                let pid = i32::try_from(child.id()).expect("pid");
                // SAFETY: kill(2) on our own child's pid.
                unsafe { libc::kill(pid, libc::SIGINT) };
                let _ = child.wait();
            }
            Recording::Callgrind { pid, name } => {
                callgrind_control(&[&format!("--dump={name}"), pid]);
            }
        }
    }
}

fn callgrind_control(args: &[&str]) {
    let status = Command::new("callgrind_control")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("callgrind_control");
    assert!(status.success(), "callgrind_control {args:?}: {status}");
}

/// The raw client: one `sendMessage` after another in each chat, all
/// chats at once; prints its own CPU (µs) and wall time (s) for `invokes`.
async fn raw_client(dir: &Path, invokes: usize) {
    // The worker's session (it signed in during the send phase).
    let run = raw_sends(dir, DEFAULT_BOT, invokes).await;
    let done = run.sent as f64;
    println!(
        "{} {}",
        run.cpu.as_secs_f64() * 1e6 * invokes as f64 / done,
        run.elapsed.as_secs_f64() * invokes as f64 / done
    );
}

/// The least CPU the store can take per job under the worker's durability
/// contract, measured in this process on a copy of the worker's own schema
/// (from its `telegate.db`) with its own payload, wire and event sizes:
/// only the writes every job needs (enqueue: its row and its part's
/// `random_id`; claim: `sending`; sent: the part's message id and `sent`;
/// the result event), prepared once, as many jobs a commit as the run
/// could ever gather (enqueues: [`CONNECTIONS`], each client waiting for
/// its durable `202`; claims and sends: [`CHATS`], a chat having one job
/// in flight), and no reads at all: no line heads, no holds, no checks. A
/// worker on this store spends at least this beside its HTTP and its
/// invoke.
#[derive(Clone)]
struct Floors {
    /// WAL, `synchronous=FULL`: as the worker's store commits.
    durable: Floor,
    /// `synchronous=OFF`: the statements without their `fsync`s.
    statements: Floor,
}

#[derive(Clone, Copy)]
struct Floor {
    enqueue: f64,
    /// Enqueues [`CHATS`] a commit, as more clients in flight would allow.
    enqueue_wide: f64,
    /// Claim, sent and the result event.
    send: f64,
}

impl Floors {
    fn measure(dir: &Path, jobs: usize) -> Floors {
        Floors {
            durable: Floor::measure(dir, jobs, "FULL"),
            statements: Floor::measure(dir, jobs, "OFF"),
        }
    }
}

impl Floor {
    fn measure(dir: &Path, jobs: usize, synchronous: &str) -> Floor {
        use rusqlite::{Connection, params};
        let worker = Connection::open(dir.join("telegate.db")).expect("worker db");
        let schema: Vec<String> = worker
            .prepare(
                "SELECT sql FROM sqlite_master WHERE sql NOT NULL AND name NOT LIKE 'sqlite_%'",
            )
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("schema");
        let (payload, wire): (String, Option<Vec<u8>>) = worker
            .query_row(
                "SELECT payload, wire FROM jobs ORDER BY id LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("a job");
        let body: String = worker
            .query_row(
                "SELECT body FROM events ORDER BY cursor DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .expect("an event");
        let path = dir.join(format!("floor-{synchronous}.db"));
        let db = Connection::open(&path).expect("floor db");
        db.pragma_update(None, "journal_mode", "wal").expect("wal");
        db.pragma_update(None, "synchronous", synchronous)
            .expect("synchronous");
        for sql in &schema {
            db.execute_batch(sql).expect("schema");
        }
        let jobs = i64::try_from(jobs).expect("jobs");
        let chats = i64::try_from(CHATS).expect("chats");
        let phase = |batch: usize, write: &dyn Fn(&Connection, i64) -> rusqlite::Result<usize>| {
            let cpu = thread_cpu();
            for first in (1..=jobs).step_by(batch) {
                let tx = db.unchecked_transaction().expect("begin");
                for id in first..(first + batch as i64).min(jobs + 1) {
                    write(&tx, id).expect("write");
                }
                tx.commit().expect("commit");
            }
            (thread_cpu() - cpu).as_secs_f64() * 1e6 / jobs as f64
        };
        let at = 1_800_000_000_000_i64;
        let enqueue = |db: &Connection, id: i64| {
            db.prepare_cached(
                "INSERT INTO jobs (id, request_id, bot, chat, kind, payload, state, attempts,
                                   not_before, created_at, updated_at, wire)
                 VALUES (?1, ?2, 'default', ?3, 'interactive', ?4, 'queued', 0, ?5, ?5, ?5, ?6)",
            )?
            .execute(params![
                id,
                format!("{id:036}"),
                id % chats + 1,
                payload,
                at,
                wire
            ])?;
            db.prepare_cached("INSERT INTO parts (job_id, seq, random_id) VALUES (?1, 0, ?2)")?
                .execute(params![id, id.wrapping_mul(0x5851_F42D_4C95_7F2D)])
        };
        let enqueue_wide = phase(CHATS, &|db, id| enqueue(db, id + jobs));
        let enqueue = phase(CONNECTIONS, &enqueue);
        let claim = phase(CHATS, &|db, id| {
            db.prepare_cached(
                "UPDATE jobs SET state = 'sending', attempts = attempts + 1, updated_at = ?2
                 WHERE id = ?1",
            )?
            .execute(params![id, at + 1])
        });
        let sent = phase(CHATS, &|db, id| {
            db.prepare_cached(
                "UPDATE parts SET channel_message_id = ?2 WHERE job_id = ?1 AND seq = 0",
            )?
            .execute(params![id, id])?;
            db.prepare_cached("UPDATE jobs SET state = 'sent', updated_at = ?2 WHERE id = ?1")?
                .execute(params![id, at + 2])
        });
        let event = phase(CHATS, &|db, id| {
            db.prepare_cached(
                "INSERT INTO events (bot, event_id, chat, body, created_at)
                 VALUES ('default', ?1, ?2, ?3, ?4)",
            )?
            .execute(params![format!("{id:036}"), id % chats + 1, body, at + 2])
        });
        Floor {
            enqueue,
            enqueue_wide,
            send: claim + sent + event,
        }
    }
}

/// The calling thread's user + system time.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage(2) fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    listener.local_addr().expect("addr").port()
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
