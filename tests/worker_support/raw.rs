//! A bare grammers client sending `messages.sendMessage` in a loop, and the
//! process CPU reader: the baseline the benchmarks set telegate's cost
//! beside, one copy for every benchmark that needs it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use telegate::api::client::Client;
use telegate::chat::ChatId;
use telegate::outgoing::text_message;
use telegate::sandbox::telegram::AccountId;
use telegate::session::SessionStore;
use telegate::telegram::Telegram;
use tokio::time::Instant;

/// What a raw run used.
pub struct RawRun {
    /// This process's user + system CPU over the timed sends.
    pub cpu: Duration,
    pub elapsed: Duration,
    /// Messages sent in the timed part (at least the invokes asked for).
    pub sent: usize,
}

/// `invokes` raw sends spread over the sandbox's users, as `bot` (whose
/// session the worker or the sandbox wrote in `dir`), after one warm-up
/// send per chat.
pub async fn raw_sends(dir: &Path, bot: &str, invokes: usize) -> RawRun {
    let control = Client::new(dir.join("sandbox.sock"));
    let users: Vec<AccountId> = control
        .get("/users")
        .await
        .expect("users")
        .json()
        .expect("json")
        .as_array()
        .expect("list")
        .iter()
        .map(|u| u["id"].as_i64().expect("id"))
        .collect();
    // Opening a missing file would create an empty session, which grammers
    // would point at its built-in (real) Telegram addresses: refuse instead.
    let path = dir.join(format!("sessions/{bot}.session"));
    assert!(path.exists(), "no session at {}", path.display());
    let session = SessionStore::open(&path).expect("session");
    let telegram = Arc::new(Telegram::start(Arc::new(session), 1));
    let send = |user: AccountId, count: usize| {
        let telegram = Arc::clone(&telegram);
        tokio::spawn(async move {
            let peer = ChatId::user(user).input_peer(0);
            for _ in 0..count {
                let request = text_message(peer.clone(), "raw".into(), None, rand::random());
                telegram.invoke(&request).await.expect("raw send");
            }
        })
    };
    // Warm up: connected, every chat touched once.
    for task in users.iter().map(|&u| send(u, 1)).collect::<Vec<_>>() {
        task.await.expect("warm-up");
    }
    let before = cpu_time(std::process::id());
    let started = Instant::now();
    let per_chat = invokes.div_ceil(users.len());
    for task in users.iter().map(|&u| send(u, per_chat)).collect::<Vec<_>>() {
        task.await.expect("raw task");
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(std::process::id()) - before;
    telegram.shutdown().await;
    RawRun {
        cpu,
        elapsed,
        sent: per_chat * users.len(),
    }
}

/// A process's user + system CPU time, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // After the command name (in parentheses, may hold spaces): utime is
    // field 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse::<u64>().expect("ticks"))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Duration::from_secs_f64(ticks as f64 / per_second)
}
