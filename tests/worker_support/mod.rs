//! A sandbox with `telegate run` attached, for the worker's tests and its
//! benchmark: the DC in this process, the worker a child process (killed on
//! drop), jobs enqueued over `telegate.sock`, chats read from the sandbox.

// Each binary that includes this module uses a different part of it.
#![allow(dead_code)]

pub mod daemons;
pub mod link;
pub mod raw;
pub mod store;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use telegate::api::client::Client;
use telegate::cli::sandbox::write_worker_files;
use telegate::sandbox::server::{Sandbox, SandboxOptions};
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{AccountId, NewUser, UserMessage};
use tempfile::TempDir;
use tokio::time::{Instant, sleep};

/// How long anything may take on a loaded machine before a test gives up.
pub const PATIENCE: Duration = Duration::from_secs(60);
pub const INTERACTIVE: &str = "/api/v1/telegram/interactive";

/// Telegram's pace, or none (for tests about order and faults).
#[derive(Clone, Copy, PartialEq)]
pub enum Pace {
    Limited,
    Unlimited,
}

/// Polls `probe` every 50 ms until it gives something; fails the test
/// naming `what` after [`PATIENCE`].
pub async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Option<T>) -> T {
    poll(what, probe, String::new).await
}

/// [`eventually`], the failure showing `context()` (a worker's log, say).
async fn poll<T>(
    what: &str,
    mut probe: impl AsyncFnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "never: {what}\n{}", context());
        sleep(Duration::from_millis(50)).await;
    }
}

/// A sandbox with a worker attached, in a temporary state directory.
pub struct World {
    /// The sandbox's state and the worker's log (and, unless the world was
    /// started with one of its own, the worker's state directory).
    pub dir: TempDir,
    /// The worker's state directory.
    pub state: PathBuf,
    pub sandbox: Sandbox,
    pub worker: Option<Worker>,
    pub client: Client,
}

impl World {
    /// [`eventually`], a failure showing the worker's log.
    pub async fn eventually<T>(&self, what: &str, probe: impl AsyncFnMut() -> Option<T>) -> T {
        poll(what, probe, || {
            let log = self.worker.as_ref().map(Worker::log).unwrap_or_default();
            format!("the worker's log:\n{log}")
        })
        .await
    }

    pub async fn start(pace: Pace) -> World {
        World::start_with(pace, "").await
    }

    /// [`World::start`] with `config` (TOML) added to the worker's file.
    pub async fn start_with(pace: Pace, config: &str) -> World {
        World::start_prepared(pace, config, &[], |_, _| {}).await
    }

    /// [`World::start_with`], the worker's environment given `env` too.
    pub async fn start_with_env(pace: Pace, config: &str, env: &[(&str, &str)]) -> World {
        World::start_prepared(pace, config, env, |_, _| {}).await
    }

    /// [`World::start_with`], the worker's state directory at `state` (an
    /// existing empty directory, a small tmpfs say) instead of in `dir`.
    pub async fn start_with_state(pace: Pace, config: &str, state: &Path) -> World {
        let mut world = World::offline_in(pace, config, Some(state)).await;
        world.start_worker().await;
        world
    }

    /// [`World::start_with_env`], calling `prepare` with the state
    /// directory and the sandbox once the worker's files are written, before
    /// it starts (e.g. to provision more bots' sessions).
    pub async fn start_prepared(
        pace: Pace,
        config: &str,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path, &Sandbox),
    ) -> World {
        let mut world = World::offline(pace, config).await;
        prepare(&world.state, &world.sandbox);
        world.worker = Some(Worker::start_logged(&world.state, world.dir.path(), env).await);
        world
    }

    /// [`World::start_with`], the sandbox's bot given `api_keys`: its
    /// `[telegram] bot_token` becomes a `[[bots]]` table named `default`
    /// that lists them. The harness's client sends the first.
    pub async fn start_keyed(pace: Pace, config: &str, api_keys: &[&str]) -> World {
        let keys: Vec<String> = api_keys.iter().map(|key| (*key).to_owned()).collect();
        let mut world = World::start_prepared(pace, config, &[], move |dir, _| {
            let file = dir.join("telegate.toml");
            let mut table: toml::Table = fs::read_to_string(&file).unwrap().parse().unwrap();
            let token = table["telegram"]
                .as_table_mut()
                .unwrap()
                .remove("bot_token")
                .unwrap();
            let mut bot = toml::Table::new();
            bot.insert("name".into(), "default".into());
            bot.insert("bot_token".into(), token);
            bot.insert("api_keys".into(), keys.into());
            table.insert("bots".into(), toml::Value::Array(vec![bot.into()]));
            fs::write(&file, toml::to_string(&table).unwrap()).unwrap();
        })
        .await;
        let key = telegate::config::Secret::new(api_keys[0]);
        world.client = world.client.clone().with_key(Some(key));
        world
    }

    /// The sandbox and the worker's files, the worker not started yet.
    pub async fn offline(pace: Pace, config: &str) -> World {
        World::offline_in(pace, config, None).await
    }

    /// [`World::offline`], the worker's state directory at `state` if given.
    async fn offline_in(pace: Pace, config: &str, state: Option<&Path>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let state = state.unwrap_or(dir.path()).to_owned();
        let limits = match pace {
            Pace::Unlimited => {
                "[limits]\nbot_per_second = 1000000\nprivate_chat_per_second = 1000000\n\
                 group_per_minute = 1000000\n"
            }
            Pace::Limited => "",
        };
        let toml = format!("{limits}{config}");
        if !toml.is_empty() {
            fs::write(state.join("telegate.toml"), toml).unwrap();
        }
        let sandbox = Sandbox::start(SandboxOptions {
            state_dir: Some(dir.path().to_owned()),
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        sandbox.telegram().set_limits_enabled(pace == Pace::Limited);
        write_worker_files(&state, &sandbox).unwrap();
        let client = Client::new(state.join("telegate.sock"));
        World {
            dir,
            state,
            sandbox,
            worker: None,
            client,
        }
    }

    /// Starts (or restarts) the worker and waits until it is ready.
    pub async fn start_worker(&mut self) {
        self.worker = Some(Worker::start_logged(&self.state, self.dir.path(), &[]).await);
    }

    /// `n` users who have each written to the bot.
    pub fn users(&self, n: usize) -> Vec<AccountId> {
        let telegram = self.sandbox.telegram();
        (0..n)
            .map(|i| {
                let user = telegram
                    .create_user(NewUser {
                        id: None,
                        first_name: format!("User {i}"),
                        username: None,
                        lang_code: None,
                    })
                    .unwrap();
                telegram
                    .user_sends(user.id, BOT_ID, UserMessage::Text("/start".into()), None)
                    .unwrap();
                user.id
            })
            .collect()
    }

    /// [`World::users`], once the worker has recorded their `/start`s
    /// (`cursor` moves past them).
    pub async fn users_recorded(&self, n: usize, cursor: &mut i64) -> Vec<AccountId> {
        let users = self.users(n);
        self.read_events_until(cursor, |read| read.len() >= n).await;
        users
    }

    /// Enqueues `texts` in order (per user), over a few connections at once;
    /// returns the job ids in the same order.
    pub async fn enqueue_all(&self, jobs: &[(AccountId, String)]) -> Vec<i64> {
        post_all(&self.client, jobs).await
    }

    pub async fn job(&self, id: i64) -> Value {
        let answer = self
            .client
            .get(&format!("/api/v1/jobs/{id}"))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        answer.json().unwrap()
    }

    /// Waits until job `id` is `sent` or `failed`.
    pub async fn settled(&self, id: i64) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let job = self.job(id).await;
            if job["state"] == "sent" || job["state"] == "failed" {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} never settled: {job}");
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the bot has posted `count` messages in all.
    pub async fn bot_messages(&self, count: u64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let sent = self.sandbox.telegram().stats().messages_from_bot;
            if sent >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the bot posted {sent} of {count} messages"
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// The bot's messages in `user`'s chat, as the user sees them.
    pub fn bot_posts(&self, user: AccountId) -> Vec<Value> {
        let chat = self.sandbox.telegram().chat(user, BOT_ID).unwrap();
        chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["from"] == "bot")
            .cloned()
            .collect()
    }

    pub fn bot_texts(&self, user: AccountId) -> Vec<String> {
        self.bot_posts(user)
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Every job arrived once, in order per user.
    pub fn assert_delivered_exactly(&self, jobs: &[(AccountId, String)]) {
        let mut expected: BTreeMap<AccountId, Vec<String>> = BTreeMap::new();
        for (user, text) in jobs {
            expected.entry(*user).or_default().push(text.clone());
        }
        for (user, texts) in expected {
            assert_eq!(self.bot_texts(user), texts, "chat of user {user}");
        }
    }

    /// The inbound events after `cursor`, over the socket, waiting up to
    /// `wait` seconds for the first (nothing while no worker answers).
    pub async fn events(&self, cursor: i64, wait: u32) -> Vec<Value> {
        let path = format!("/api/v1/events?after={cursor}&wait={wait}&limit=1000");
        let Ok(answer) = self.client.get(&path).await else {
            return Vec::new();
        };
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        std::str::from_utf8(&answer.body)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Reads events from `cursor` on until `done` says the ones read so far
    /// are enough; returns them (and moves `cursor` past them).
    pub async fn read_events_until(
        &self,
        cursor: &mut i64,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let mut read = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while !done(&read) {
            assert!(
                Instant::now() < deadline,
                "events never came: {} read, the last {:?}; the worker's log:\n{}",
                read.len(),
                read.last(),
                self.worker.as_ref().map(Worker::log).unwrap_or_default()
            );
            for line in self.events(*cursor, 1).await {
                *cursor = line["cursor"].as_i64().unwrap();
                read.push(line["event"].clone());
            }
        }
        read
    }

    /// `POST /faults` on the sandbox's control socket (so the control API's
    /// checks run too); the settings it answers.
    pub async fn faults(&self, body: Value) -> Value {
        let socket = self
            .sandbox
            .control_socket()
            .expect("the sandbox serves its control socket");
        let answer = Client::new(socket.to_owned())
            .post("/faults", &[], body.to_string())
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.json());
        answer.json().unwrap()
    }

    pub fn worker(&mut self) -> &mut Worker {
        self.worker.as_mut().unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(mut worker) = self.worker.take() {
            let status = worker.terminate();
            assert!(status.success(), "telegate run exited with {status}");
            let log = worker.log();
            let token = self.sandbox.telegram().bot_token(BOT_ID).unwrap();
            assert!(!log.contains(token.expose()), "the log shows the bot token");
        }
        self.sandbox.shutdown().await.unwrap();
    }
}

/// Connections [`post_all`] spreads its jobs over.
pub const CONNECTIONS: usize = 8;

/// Posts `jobs` to the socket of `client` in order (per user) over
/// [`CONNECTIONS`] keep-alive connections at once (a user's jobs on one of
/// them); returns the job ids in the same order.
pub async fn post_all(client: &Client, jobs: &[(AccountId, String)]) -> Vec<i64> {
    let mut lanes: Vec<Vec<(usize, AccountId, String)>> = vec![Vec::new(); CONNECTIONS];
    for (index, (user, text)) in jobs.iter().enumerate() {
        let lane = usize::try_from(*user).unwrap() % CONNECTIONS;
        lanes[lane].push((index, *user, text.clone()));
    }
    let tasks: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut connection = client.connect().await.unwrap();
                let mut ids = Vec::new();
                for (index, user, text) in lane {
                    let answer = connection
                        .post(INTERACTIVE, &[], body(user, &text))
                        .await
                        .unwrap();
                    assert_eq!(answer.status, 202, "{:?}", answer.body);
                    ids.push((index, answer.json().unwrap()["job_id"].as_i64().unwrap()));
                }
                ids
            })
        })
        .collect();
    let mut ids = vec![0; jobs.len()];
    for task in tasks {
        for (index, id) in task.await.unwrap() {
            ids[index] = id;
        }
    }
    ids
}

/// A minimal interactive job for `user`.
pub fn body(user: AccountId, text: &str) -> String {
    json!({
        "destination_user_id": user.to_string(),
        "telegram_interactive_message": {
            "type": "remove_reply_keyboard",
            "text": text,
            "reply_markup": {"remove_keyboard": true}
        }
    })
    .to_string()
}

/// `telegate run` as a child process, killed on drop.
pub struct Worker {
    pub child: Child,
    log: PathBuf,
}

impl Worker {
    /// Starts it and waits until it logs that it is ready.
    /// (Polls its log often: the benchmark times start to ready with it.)
    pub async fn start(dir: &Path) -> Worker {
        Worker::start_with_env(dir, &[]).await
    }

    /// [`Worker::start`] with `env` set for it (`TELEGATE_LOG` among them).
    pub async fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Worker {
        Worker::start_logged(dir, dir, env).await
    }

    /// [`Worker::start_with_env`] over the state directory `state`, logging
    /// to a file in `log_dir`.
    pub async fn start_logged(state: &Path, log_dir: &Path, env: &[(&str, &str)]) -> Worker {
        let mut worker = Worker::spawn_logged(state, log_dir, env);
        let deadline = Instant::now() + PATIENCE;
        while !worker.log().contains("ready: connected") {
            if let Ok(Some(status)) = worker.child.try_wait() {
                panic!("telegate run exited with {status}:\n{}", worker.log());
            }
            assert!(
                Instant::now() < deadline,
                "telegate run never got ready:\n{}",
                worker.log()
            );
            sleep(Duration::from_millis(2)).await;
        }
        worker
    }

    /// [`Worker::start_with_env`], waiting only until the socket API
    /// answers `/healthz` (for a daemon that is never meant to sign in).
    pub async fn start_serving(dir: &Path, env: &[(&str, &str)]) -> Worker {
        let mut worker = Worker::spawn(dir, env);
        let client = Client::new(dir.join("telegate.sock"));
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(answer) = client.get("/healthz").await
                && answer.status == 200
            {
                return worker;
            }
            if let Ok(Some(status)) = worker.child.try_wait() {
                panic!("telegate run exited with {status}:\n{}", worker.log());
            }
            assert!(
                Instant::now() < deadline,
                "telegate run never answered /healthz:\n{}",
                worker.log()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts `telegate run` over `dir` without waiting for it.
    pub fn spawn(dir: &Path, env: &[(&str, &str)]) -> Worker {
        Worker::spawn_logged(dir, dir, env)
    }

    fn spawn_logged(dir: &Path, log_dir: &Path, env: &[(&str, &str)]) -> Worker {
        let log = log_dir.join(format!("worker-{}.log", rand_suffix()));
        let mut command = Command::new(telegate_bin());
        command
            .arg("--state-dir")
            .arg(dir)
            .arg("run")
            .env("TELEGATE_LOG", "info")
            .env_remove("TELEGATE_LOG_FORMAT")
            .env_remove("TELEGATE_BOT_TOKEN")
            .env_remove("TELEGATE_API_ID")
            .env_remove("TELEGATE_API_HASH")
            .env_remove("TELEGATE_DC_ADDR")
            .env_remove("TELEGATE_CONFIG")
            .env_remove("TELEGATE_STORE_URL")
            .envs(store::env(dir))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        let child = command.spawn().unwrap();
        Worker { child, log }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The file its log goes to (kept after it exits).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        self.child.wait().unwrap()
    }

    /// Sends SIGTERM and waits up to `patience` for the exit (`None`: it
    /// did not exit; it is killed on drop).
    pub async fn terminate_within(
        &mut self,
        patience: Duration,
    ) -> Option<std::process::ExitStatus> {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn rand_suffix() -> u32 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    u32::try_from(NEXT.fetch_add(1, Ordering::Relaxed)).unwrap()
}

/// The `telegate` binary to run: `TELEGATE_TEST_BIN` if set (worktrees that
/// share one target directory overwrite each other's
/// `target/debug/telegate`; a copy of one's own is safe), else Cargo's.
pub fn telegate_bin() -> PathBuf {
    std::env::var_os("TELEGATE_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_telegate")),
        PathBuf::from,
    )
}

/// A tmpfs of a given size mounted over a fresh directory, unmounted on
/// drop (after whatever used it, declared later, is dropped). Mounting needs
/// root, as in CI; a test that needs one fails, loudly, without it.
pub struct Tmpfs {
    _dir: TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts `size` (`mount -o size=`, e.g. "3m") with mode 0700.
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tmpfs");
        fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .expect("cannot run mount(8)");
        assert!(
            mounted.status.success(),
            "cannot mount a {size} tmpfs at {} (the test needs root): {}",
            path.display(),
            String::from_utf8_lossy(&mounted.stderr)
        );
        Tmpfs { _dir: dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `name` until the file system is full; returns its size.
    pub fn fill(&self, name: &str) -> u64 {
        use std::io::Write;
        let mut file = fs::File::create(self.path.join(name)).unwrap();
        let chunk = vec![0xa5_u8; 16 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(error) => panic!("cannot fill the tmpfs: {error}"),
            }
        }
        // The last partial page too.
        while let Ok(n) = file.write(&chunk[..1]) {
            if n == 0 {
                break;
            }
            written += 1;
        }
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
