//! Durable enqueue throughput over the socket, side by side with raw
//! single-row SQLite inserts on the same disk in the same run.
//!
//! `cargo bench --bench enqueue` (env `BENCH_ROUNDS`, default 7;
//! `BENCH_JOBS`, socket jobs per round, default 40000; `BENCH_RAW_ROWS`,
//! default 4000). Each round runs both, alternating, on fresh files in the
//! system temp dir:
//! - socket: `telegate`'s API served in-process on a Unix socket, 16 clients
//!   each on its own keep-alive connection posting interactive bodies one
//!   after the other; a job counts once its 202 (sent after its commit) is
//!   read.
//!   Request logging is on at `info` as in `telegate run`, written to a
//!   sink.
//! - raw: one connection, `journal_mode=WAL`, `synchronous=FULL`, one
//!   `INSERT` per transaction into a table shaped like `jobs`.
//!
//! - with `TELEGATE_BENCH_POSTGRES=postgres://…` (a server the bench may
//!   create databases on, e.g. `source .ci/postgres` then
//!   `TELEGATE_BENCH_POSTGRES=$TELEGATE_TEST_POSTGRES`), the same socket
//!   round again with the store on PostgreSQL, a fresh database a round.
//!
//! Prints every round, the medians and their ratio, against the targets
//! (≥ 20,000 jobs/s and ≥ 0.5 × raw).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde_json::json;
use telegate::api::client::Client;
use telegate::config::ApiConfig;
use telegate::queue::Queue;
use telegate::store::Location;
use tokio::sync::oneshot;

const CLIENTS: usize = 16;
const TARGET_RATE: f64 = 20_000.0;
const TARGET_RATIO: f64 = 0.5;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A body the interactive model accepts (the seed's shape, or the stub's).
fn body(chat: usize, n: usize) -> String {
    let text = format!("Your order {n} is ready. What would you like to do?");
    let seed = json!({
        "destination_user_id": (1000 + chat).to_string(),
        "telegram_interactive_message": {
            "type": "highlight_reply",
            "text": text,
            "reply_markup": { "force_reply": true, "input_field_placeholder": "Type here" },
        },
    })
    .to_string();
    if telegate::interactive::InteractiveRequest::from_json(seed.as_bytes()).is_ok() {
        return seed;
    }
    json!({ "destination_user_id": (1000 + chat).to_string(), "text": text }).to_string()
}

/// A new database on the PostgreSQL server `server` names.
fn postgres_store(server: &str) -> Location {
    let name = format!("bench_{:016x}", rand::random::<u64>());
    let admin = server.to_owned();
    let create = format!("CREATE DATABASE {name}");
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("server");
        client.batch_execute(&create).expect("database");
    })
    .join()
    .expect("created");
    match Location::postgres(server).expect("a postgres:// URL") {
        Location::Postgres(url) => Location::Postgres(Box::new(url.with_database(&name))),
        sqlite => sqlite,
    }
}

/// Jobs per second through the socket with [`CLIENTS`] concurrent clients,
/// the store in the temp dir or on `postgres`.
async fn socket_round(jobs: usize, postgres: Option<&str>) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let location = match postgres {
        Some(server) => postgres_store(server),
        None => Location::Sqlite(dir.path().join("telegate.db")),
    };
    let queue = Queue::open_at(&location).expect("store");
    let path = dir.path().join("telegate.sock");
    let (listener, socket_file) = telegate::api::socket::bind(&path).await.expect("bind");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn({
        let queue = queue.clone();
        async move {
            let config = ApiConfig::default();
            let served = telegate::api::serve(listener, queue, &config, async {
                let _ = stopped.await;
            })
            .await;
            drop(socket_file);
            served
        }
    });
    let client = Client::new(&path);
    let per_client = jobs / CLIENTS;
    let bodies: Arc<Vec<Vec<String>>> = Arc::new(
        (0..CLIENTS)
            .map(|c| (0..per_client).map(|n| body(c, n)).collect())
            .collect(),
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, bodies) = (client.clone(), Arc::clone(&bodies));
            tokio::spawn(async move {
                let mut conn = client.connect().await.expect("connect");
                for body in &bodies[c] {
                    let answer = conn
                        .post("/api/v1/telegram/interactive", &[], body.clone())
                        .await
                        .expect("post");
                    assert_eq!(answer.status, 202, "{:?}", answer.body);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client");
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    server.await.expect("server").expect("serve");
    queue.close().await;
    (per_client * CLIENTS) as f64 / elapsed.as_secs_f64()
}

/// Rows per second of single-row WAL inserts, one transaction each.
fn raw_round(rows: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = Connection::open(dir.path().join("raw.db")).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute_batch(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, chat INTEGER NOT NULL,
                            payload TEXT NOT NULL, random_id INTEGER NOT NULL,
                            created_at INTEGER NOT NULL)",
    )
    .expect("schema");
    let mut insert = conn
        .prepare("INSERT INTO jobs (chat, payload, random_id, created_at) VALUES (?1, ?2, ?3, ?4)")
        .expect("prepare");
    let payload = body(0, 0);
    let started = Instant::now();
    for n in 0..rows {
        // Autocommit: each INSERT is its own transaction, one fsync.
        insert
            .execute(params![n as i64, payload, rand::random::<i64>(), n as i64])
            .expect("insert");
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

/// The 1-minute load average, to tell a busy machine from a slow build.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

fn main() {
    let rounds = env_number("BENCH_ROUNDS", 7).max(1);
    let jobs = env_number("BENCH_JOBS", 40_000).max(CLIENTS);
    let raw_rows = env_number("BENCH_RAW_ROWS", 4_000).max(1);
    // The daemon logs every request at info: pay for formatting it here too.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "enqueue: {rounds} rounds; socket {jobs} jobs over {CLIENTS} clients; raw {raw_rows} rows; \
         {} CPUs; temp dir {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        std::env::temp_dir().display()
    );
    // Warm-up: page cache, allocator, code paths.
    let server = std::env::var("TELEGATE_BENCH_POSTGRES").ok();
    runtime.block_on(socket_round(jobs / 10, None));
    raw_round(raw_rows / 10);

    let (mut socket, mut raw, mut shared) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let s = runtime.block_on(socket_round(jobs, None));
        let r = raw_round(raw_rows);
        let p = server
            .as_deref()
            .map(|server| runtime.block_on(socket_round(jobs, Some(server))));
        println!(
            "round {round}: socket {s:>9.0} jobs/s   raw insert {r:>8.0} rows/s   ratio {:.2}{}   load {}",
            s / r,
            p.map_or_else(String::new, |p| format!("   on PostgreSQL {p:>8.0} jobs/s")),
            load_average()
        );
        socket.push(s);
        raw.push(r);
        shared.extend(p);
        std::thread::sleep(Duration::from_millis(200));
    }
    if !shared.is_empty() {
        let (s, p) = (median(&mut socket.clone()), median(&mut shared));
        println!(
            "median on PostgreSQL: {p:.0} jobs/s = {:.2} x SQLite's {s:.0}",
            p / s
        );
    }
    let (s, r) = (median(&mut socket), median(&mut raw));
    let ratio = s / r;
    println!("median: socket {s:.0} jobs/s, raw insert {r:.0} rows/s, ratio {ratio:.2}");
    println!(
        "targets: >= {TARGET_RATE:.0} jobs/s: {}; >= {TARGET_RATIO} x raw: {}",
        if s >= TARGET_RATE { "met" } else { "MISSED" },
        if ratio >= TARGET_RATIO {
            "met"
        } else {
            "MISSED"
        },
    );
}
