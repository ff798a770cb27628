//! Several daemons sharing one PostgreSQL store: each bot is held by one
//! daemon under a lease; a daemon killed mid-burst has its bots taken over
//! by the others within 15 s, and every job is delivered once, in its
//! chat's order, with no bot's session on two connections at once.

mod worker_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::Method;
use bytes::Bytes;
use telegate::api::client::Client;
use telegate::cli::sandbox::write_fleet_files;
use telegate::config::StateDir;
use telegate::sandbox::server::{Sandbox, SandboxOptions};
use telegate::sandbox::telegram::{AccountId, NewUser, UserMessage};
use tokio::time::{Instant, sleep};
use worker_support::{Worker, body};

const BOTS: usize = 20;
const DAEMONS: usize = 3;
const USERS_PER_BOT: usize = 25;
const JOBS_PER_CHAT: usize = 10;
/// Telegram's rate for a bot.
const BOT_PER_SECOND: u32 = 30;
const TAKEOVER: Duration = Duration::from_secs(15);

/// Bot `bot`'s state as daemon `client` reports it (`None`: not running
/// there).
async fn state(client: &Client, key: &str) -> Option<String> {
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

/// Which daemon runs each bot now (bots running nowhere are left out).
async fn holders(clients: &[Option<Client>], keys: &[(String, String)]) -> BTreeMap<usize, usize> {
    let mut held = BTreeMap::new();
    for (bot, (_, key)) in keys.iter().enumerate() {
        for (daemon, client) in clients.iter().enumerate() {
            if let Some(client) = client
                && state(client, key).await.as_deref() == Some("ready")
            {
                held.insert(bot, daemon);
            }
        }
    }
    held
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_bots_are_taken_over_by_the_others() {
    let root = tempfile::tempdir().unwrap();
    let sandbox_dir = root.path().join("sandbox");
    StateDir::new(&sandbox_dir).prepare().unwrap();
    let sandbox = Sandbox::start(SandboxOptions {
        state_dir: Some(sandbox_dir),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let telegram = sandbox.telegram();
    telegram.set_limits_enabled(true);
    let bots = telegram.ensure_bots(BOTS);

    // One set of files (config, keys, a session per bot) copied to every
    // daemon: the same auth key per bot on every daemon, as when bots move
    // with their sessions.
    let dirs: Vec<PathBuf> = (0..DAEMONS)
        .map(|n| root.path().join(format!("daemon{n}")))
        .collect();
    StateDir::new(&dirs[0]).prepare().unwrap();
    fs::write(
        dirs[0].join("telegate.toml"),
        format!("[limits]\nbot_per_second = {BOT_PER_SECOND}\n"),
    )
    .unwrap();
    let keys = write_fleet_files(&dirs[0], &sandbox, &bots).unwrap();
    for dir in &dirs[1..] {
        copy_dir(&dirs[0], dir);
    }
    let url = worker_support::store::shared_database();
    let env = [("TELEGATE_STORE_URL", url.as_str())];
    let mut daemons: Vec<Option<Worker>> = dirs
        .iter()
        .map(|dir| Some(Worker::spawn(dir, &env)))
        .collect();
    let mut clients: Vec<Option<Client>> = dirs
        .iter()
        .map(|dir| Some(Client::new(dir.join("telegate.sock"))))
        .collect();

    // Every bot runs somewhere, each daemon its share (7, 7, 6).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held = holders(&clients, &keys).await;
        let mut per_daemon = [0; DAEMONS];
        for &daemon in held.values() {
            per_daemon[daemon] += 1;
        }
        if held.len() == BOTS && per_daemon.iter().all(|&n| n >= BOTS / DAEMONS) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bots never spread over the daemons: {per_daemon:?} of {}",
            held.len()
        );
        sleep(Duration::from_millis(200)).await;
    }

    // Users who wrote to their bot, and ten numbered jobs for each chat,
    // each chat's through one daemon (any bot's work may come in at any
    // daemon: the one that holds the bot sends it).
    let mut chats: Vec<(usize, AccountId)> = Vec::new();
    for (b, &bot) in bots.iter().enumerate() {
        for u in 0..USERS_PER_BOT {
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
    // Each chat's jobs go in through one connection, in order, at one of
    // the daemons that will live (work for any bot may come in at any
    // daemon: the one that holds the bot sends it); many connections at
    // once, so the store's commits take many jobs each.
    const CONNECTIONS: usize = 16;
    let mut enqueuers = Vec::new();
    for lane in 0..CONNECTIONS {
        let client = clients[1 + lane % (DAEMONS - 1)].clone().unwrap();
        let mine: Vec<(usize, AccountId)> = chats
            .iter()
            .enumerate()
            .filter(|(n, _)| n % CONNECTIONS == lane)
            .map(|(_, chat)| *chat)
            .collect();
        let keys = keys.clone();
        enqueuers.push(tokio::spawn(async move {
            let mut connection = client.connect().await.unwrap();
            for seq in 0..JOBS_PER_CHAT {
                for &(b, user) in &mine {
                    let text = format!("b{b}-{user}-{seq}");
                    let answer = connection
                        .send(
                            Method::POST,
                            "/api/v1/telegram/interactive",
                            &[("x-octopods-auth", keys[b].1.as_str())],
                            Bytes::from(body(user, &text)),
                        )
                        .await
                        .unwrap();
                    assert_eq!(answer.status, 202, "{:?}", answer.body);
                }
            }
        }));
    }
    let total = chats.len() * JOBS_PER_CHAT;
    assert_eq!(total, 5_000);
    let delivered = |chats: &[(usize, AccountId)]| -> usize {
        chats
            .iter()
            .map(|&(b, user)| {
                telegram.chat(user, bots[b]).unwrap()["messages"]
                    .as_array()
                    .unwrap()
                    .len()
                    - 1
            })
            .sum()
    };

    // Mid-burst (a fifth delivered): the first daemon dies, and nobody
    // restarts it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered(&chats) < total / 5 {
        assert!(Instant::now() < deadline, "the burst never got going");
        sleep(Duration::from_millis(50)).await;
    }
    let victim = 0;
    let before = holders(&clients, &keys).await;
    let orphans: Vec<usize> = before
        .iter()
        .filter(|&(_, &daemon)| daemon == victim)
        .map(|(&bot, _)| bot)
        .collect();
    assert!(!orphans.is_empty(), "the victim held no bot: {before:?}");
    let sent_at_kill = delivered(&chats);
    daemons[victim].as_mut().unwrap().kill();
    let killed = Instant::now();
    daemons[victim] = None;
    clients[victim] = None;
    assert!(
        sent_at_kill < total,
        "the burst was over before the kill: {sent_at_kill} of {total}"
    );

    // Its bots run again elsewhere within 15 s.
    loop {
        let held = holders(&clients, &keys).await;
        if orphans.iter().all(|bot| held.contains_key(bot)) {
            break;
        }
        assert!(
            killed.elapsed() < TAKEOVER,
            "bots {orphans:?} not taken over in {TAKEOVER:?}: {held:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    let takeover = killed.elapsed();

    for enqueuer in enqueuers {
        enqueuer.await.unwrap();
    }

    // Every job arrives, once, in its chat's order.
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered(&chats) < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} delivered",
            delivered(&chats)
        );
        sleep(Duration::from_millis(200)).await;
    }
    for &(b, user) in &chats {
        let chat = telegram.chat(user, bots[b]).unwrap();
        let texts: Vec<&str> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["text"].as_str())
            .skip(1)
            .collect();
        let expected: Vec<String> = (0..JOBS_PER_CHAT)
            .map(|seq| format!("b{b}-{user}-{seq}"))
            .collect();
        assert_eq!(texts, expected, "bot {b}, user {user}");
    }
    // No bot's key was on two live connections: the takeover waited for
    // the killed daemon's connections to close.
    let traffic = sandbox.traffic();
    assert_eq!(traffic.auth_key_duplicates_refused, 0, "{traffic:?}");
    assert_eq!(traffic.max_live_connections_per_key, 1, "{traffic:?}");
    let stats = telegram.stats();
    eprintln!(
        "took over {} bots in {takeover:?}; {sent_at_kill} of {total} sent at the kill; \
         {} resends suppressed",
        orphans.len(),
        stats.duplicates_suppressed
    );
    for daemon in daemons.iter_mut().flatten() {
        daemon.terminate();
    }
}
