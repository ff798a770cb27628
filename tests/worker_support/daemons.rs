//! Several `telegate run` daemons serving one sandbox's fleet of bots: on one
//! fresh PostgreSQL database they share (the bots' sessions imported into
//! it, so no daemon has a session file), or one daemon on its own SQLite
//! file. For the failover tests and the shared-store benchmark.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::Method;
use bytes::Bytes;
use telegate::api::client::Client;
use telegate::cli::sandbox::write_fleet_files;
use telegate::config::{BotName, StateDir};
use telegate::queue::{Job, JobFilter, JobState, Queue};
use telegate::sandbox::server::{Sandbox, SandboxOptions};
use telegate::sandbox::telegram::{AccountId, NewUser, UserMessage};
use telegate::session::Sessions;
use telegate::store::Location;
use tempfile::TempDir;

use super::Worker;

/// A sandbox, its bots, and the daemons serving them.
pub struct Daemons {
    pub root: TempDir,
    /// The database the daemons share (`None`: one daemon on SQLite).
    pub store: Option<Location>,
    /// Its URL, as the test reaches it.
    pub url: Option<String>,
    pub sandbox: Sandbox,
    pub bots: Vec<AccountId>,
    /// Each bot's name and API key, in the order of `bots`.
    pub keys: Vec<(String, String)>,
    /// `None` once killed.
    pub daemons: Vec<Option<Worker>>,
    pub clients: Vec<Option<Client>>,
    /// Each daemon's log file, a killed one's too.
    logs: Vec<PathBuf>,
}

/// Which store the daemons use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stores {
    /// `n` daemons on one fresh database of the test server.
    Postgres(usize),
    /// One daemon on its SQLite file.
    Sqlite,
}

impl Daemons {
    /// `bots` bots and the daemons of `stores`, each with `config` as its
    /// `telegate.toml`; the sandbox applies Telegram's limits if `limits`.
    pub async fn start(bots: usize, stores: Stores, config: &str, limits: bool) -> Daemons {
        Daemons::start_routed(bots, stores, config, limits, |_, url| url.to_owned()).await
    }

    /// [`Daemons::start`], daemon `n` reaching the shared database at
    /// `route(n, url)` (e.g. through a [`super::link::Link`]).
    pub async fn start_routed(
        bots: usize,
        stores: Stores,
        config: &str,
        limits: bool,
        route: impl Fn(usize, &str) -> String,
    ) -> Daemons {
        let root = tempfile::tempdir().unwrap();
        let sandbox_dir = root.path().join("sandbox");
        StateDir::new(&sandbox_dir).prepare().unwrap();
        let sandbox = Sandbox::start(SandboxOptions {
            state_dir: Some(sandbox_dir),
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        sandbox.telegram().set_limits_enabled(limits);
        let bot_ids = sandbox.telegram().ensure_bots(bots);
        let count = match stores {
            Stores::Postgres(n) => n,
            Stores::Sqlite => 1,
        };
        let dirs: Vec<PathBuf> = (0..count)
            .map(|n| root.path().join(format!("daemon{n}")))
            .collect();
        StateDir::new(&dirs[0]).prepare().unwrap();
        fs::write(dirs[0].join("telegate.toml"), config).unwrap();
        let keys = write_fleet_files(&dirs[0], &sandbox, &bot_ids).unwrap();
        let (store, url) = match stores {
            Stores::Sqlite => (None, None),
            Stores::Postgres(_) => {
                let url = super::store::shared_database();
                let store = Location::postgres(&url).unwrap();
                import_sessions(&dirs[0], &store, &keys).await;
                (Some(store), Some(url))
            }
        };
        for dir in &dirs[1..] {
            copy_dir(&dirs[0], dir);
        }
        let urls: Vec<Option<String>> = (0..count)
            .map(|n| url.as_deref().map(|url| route(n, url)))
            .collect();
        let daemons: Vec<Option<Worker>> = dirs
            .iter()
            .zip(&urls)
            .map(|(dir, url)| {
                let env: Vec<(&str, &str)> = url
                    .iter()
                    .map(|url| ("TELEGATE_STORE_URL", url.as_str()))
                    .collect();
                Some(Worker::spawn(dir, &env))
            })
            .collect();
        Daemons {
            logs: daemons
                .iter()
                .flatten()
                .map(|daemon| daemon.log_path().to_owned())
                .collect(),
            daemons,
            clients: dirs
                .iter()
                .map(|dir| Some(Client::new(dir.join("telegate.sock"))))
                .collect(),
            root,
            store,
            url,
            sandbox,
            bots: bot_ids,
            keys,
        }
    }

    /// `per_bot` people for each bot, each having written `/start` to it:
    /// (the bot's index, the person) for every chat.
    pub fn chats(&self, per_bot: usize) -> Vec<(usize, AccountId)> {
        let telegram = self.sandbox.telegram();
        let mut chats = Vec::new();
        for (b, &bot) in self.bots.iter().enumerate() {
            for u in 0..per_bot {
                let user = telegram
                    .create_user(NewUser {
                        id: None,
                        first_name: format!("U{b}-{u}"),
                        username: None,
                        lang_code: None,
                    })
                    .unwrap()
                    .id;
                telegram
                    .user_sends(user, bot, UserMessage::Text("/start".into()), None)
                    .unwrap();
                chats.push((b, user));
            }
        }
        chats
    }

    /// Which daemon runs each bot now (bots running nowhere are left out).
    pub async fn holders(&self) -> BTreeMap<usize, usize> {
        let mut held = BTreeMap::new();
        for (bot, (_, key)) in self.keys.iter().enumerate() {
            for (daemon, client) in self.clients.iter().enumerate() {
                if let Some(client) = client
                    && bot_state(client, key).await.as_deref() == Some("ready")
                {
                    held.insert(bot, daemon);
                }
            }
        }
        held
    }

    /// Whether every bot runs, each live daemon its share (rounded down).
    pub async fn spread(&self) -> bool {
        let held = self.holders().await;
        let live = self.clients.iter().flatten().count();
        let mut per_daemon = vec![0; self.clients.len()];
        for &daemon in held.values() {
            per_daemon[daemon] += 1;
        }
        held.len() == self.bots.len()
            && per_daemon
                .iter()
                .zip(&self.clients)
                .all(|(&n, client)| client.is_none() || n >= self.bots.len() / live)
    }

    /// What a failed test needs to tell a stuck job from a slow machine:
    /// the jobs not sent yet, by bot and state (with their attempts and
    /// errors), which daemon runs each bot, and every daemon's warnings.
    pub async fn diagnosis(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        if let Some(store) = &self.store {
            let queue = Queue::open_at(store).unwrap();
            for state in [JobState::Queued, JobState::Sending, JobState::Failed] {
                let mut by_bot: BTreeMap<String, Vec<Job>> = BTreeMap::new();
                let mut after = None;
                loop {
                    let filter = JobFilter {
                        state: Some(state),
                        after,
                        limit: Some(JobFilter::MAX_LIMIT),
                        ..JobFilter::default()
                    };
                    let page = queue.jobs(filter).await.unwrap();
                    let Some(last) = page.last() else { break };
                    after = Some(last.id);
                    for job in page {
                        by_bot.entry(job.bot.clone()).or_default().push(job);
                    }
                }
                for (bot, jobs) in by_bot {
                    let first = &jobs[0];
                    let _ = writeln!(
                        out,
                        "{bot}: {} {state:?}; first {} (chat {}, attempts {}, not before {:?}, error {:?})",
                        jobs.len(),
                        first.id,
                        first.chat,
                        first.attempts,
                        first.not_before,
                        first.error,
                    );
                }
            }
            queue.close().await;
        }
        let _ = writeln!(out, "holders (bot → daemon): {:?}", self.holders().await);
        for (n, log) in self.logs.iter().enumerate() {
            let log = fs::read_to_string(log).unwrap_or_default();
            let warnings: Vec<&str> = log
                .lines()
                .filter(|line| line.contains("WARN") || line.contains("ERROR"))
                .collect();
            let _ = writeln!(out, "daemon {n}: {} warnings, the last:", warnings.len());
            for line in warnings.iter().rev().take(25).rev() {
                let _ = writeln!(out, "  {line}");
            }
        }
        out
    }

    /// SIGKILLs daemon `n`; nobody restarts it.
    pub fn kill(&mut self, n: usize) {
        if let Some(mut daemon) = self.daemons[n].take() {
            daemon.kill();
        }
        self.clients[n] = None;
    }

    /// Stops every daemon left with SIGTERM.
    pub fn terminate(&mut self) {
        for daemon in self.daemons.iter_mut().flatten() {
            daemon.terminate();
        }
    }
}

/// Bot `key`'s state as daemon `client` reports it (`None`: not running
/// there).
pub async fn bot_state(client: &Client, key: &str) -> Option<String> {
    // A daemon cut off from its store may not answer at all.
    tokio::time::timeout(Duration::from_secs(2), ask_bot_state(client, key))
        .await
        .ok()
        .flatten()
}

async fn ask_bot_state(client: &Client, key: &str) -> Option<String> {
    let mut connection = client.connect().await.ok()?;
    let answer = connection
        .send(
            Method::GET,
            "/api/v1/bots",
            &[("x-octopods-auth", key)],
            Bytes::new(),
        )
        .await
        .ok()?;
    let bots = answer.json().ok()?;
    bots["bots"][0]["state"].as_str().map(str::to_owned)
}

/// Moves the session files `write_fleet_files` wrote in `dir` into the
/// shared `store` (as a daemon's first start would) and deletes them.
async fn import_sessions(dir: &Path, store: &Location, keys: &[(String, String)]) {
    Queue::open_at(store).unwrap().close().await;
    let sessions = Sessions::new(&StateDir::new(dir), store);
    for (name, _) in keys {
        let session = sessions
            .open(&BotName::new(name.as_str()).unwrap(), None)
            .await
            .unwrap();
        assert!(
            session.is_signed_in().await.unwrap(),
            "{name}'s session is imported"
        );
    }
    fs::remove_dir_all(dir.join("sessions")).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}
